"""The store's history of failed polls (poll_failures): each failure of a source and the success that ended them,
kept after that success empties sources.last_error; real polls of real servers on 127.0.0.1, a real store."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakeserver import FakeServer, Reply
from ports import reserved_port

from miner.cli import main
from miner.collectors.poller import Poller
from miner.config import parse_config
from miner.held_polls import HeldPolls
from miner.pipeline import Pipeline
from miner.records import FetchResult, SourceState
from miner.store import Store
from miner.store.poll_failures import PER_SOURCE, TRIM_EVERY
from miner.timeutil import iso, parse_iso

pytestmark = pytest.mark.usefixtures("no_proxy_nor_trust")

T0 = datetime(2026, 12, 6, 18, 0, tzinfo=UTC)
FEED = "rss/forum_latest.rss"


def test_each_failed_poll_and_the_recovery_stay_after_a_success_empties_last_error(store: Store) -> None:
    # A 503 asking for 120 s, a 429 asking for 300 s, a refused connection (the server gone from its port), then the
    # feed again: each failure with its error, status and wait, and the success that ended them.
    with reserved_port() as port:
        config = parse_config(f'[[services]]\nname = "Fibre"\n[[sources]]\nname = "feed"\ntype = "rss"\n'
                              f'url = "http://127.0.0.1:{port}/feed.rss"\n')
        pipe = Pipeline(config, store)
        errors, reports = [], []
        for i, answer in enumerate(["503", "429", None, FEED, FEED]):
            server = FakeServer(port=port)
            if answer is not None:
                server.start()
                if answer == FEED:
                    server.serve_fixture("/feed.rss", FEED, "application/rss+xml")
                else:
                    server.fault("/feed.rss", answer, retry_after="120" if answer == "503" else "300")
            # A poller a round: its client would send the next poll down the kept-alive connection to the last server.
            try:
                with Poller(config.collect, hash_key=b"k", environ={}) as poller:
                    reports += pipe.collect(T0 + timedelta(minutes=10 * i), poller, due_only=False)
            finally:
                server.stop()
            errors.append((store.source_row("feed") or {})["last_error"])
    assert [r.error is None for r in reports] == [False, False, False, True, True]
    assert errors[3] is None  # the success emptied the source's last error
    rows = store.database.rows("SELECT * FROM poll_failures ORDER BY id")
    assert [(r["source"], r["outcome"], r["failures"], r["http_status"], r["retry_after"]) for r in rows] == [
        ("feed", "failed", 1, 503, 120.0), ("feed", "failed", 2, 429, 300.0), ("feed", "failed", 3, None, None),
        ("feed", "recovered", 3, None, None)]  # the second success after them records nothing
    assert [r["polled_at"] for r in rows] == [iso(T0 + timedelta(minutes=10 * i)) for i in range(4)]
    assert [r["error"] for r in rows] == [*errors[:3], None]  # as last_error had each
    assert rows[0]["error"] == "HTTP 503 from 127.0.0.1 (retry after 120 s)", rows[0]["error"]
    assert rows[1]["error"].startswith("HTTP 429 from 127.0.0.1") and "refused" in rows[2]["error"], rows
    assert [parse_iso(r["next_poll_at"]) for r in rows] == [r.next_poll_at.replace(microsecond=0) for r in reports[:4]]
    assert parse_iso(rows[1]["next_poll_at"]) >= T0 + timedelta(minutes=10, seconds=300)


def test_a_failure_keeps_no_credential_that_its_error_quotes(store: Store) -> None:
    # Collectors name a URL without its secrets; an internal error quotes whatever it was given.
    store.sync_sources(parse_config('[[sources]]\nname = "feed"\ntype = "rss"\nurl = "https://feeds.example/x"\n'
                                    ).sources)
    store.record_poll_failure("feed", "internal error in the rss collector: ValueError: bad link "
                              "https://admin:hunter2@feeds.example/x?token=s3cr3tvalue", T0, T0 + timedelta(minutes=1))
    row = store.database.one("SELECT error FROM poll_failures")
    assert row is not None and "hunter2" not in row["error"] and "s3cr3tvalue" not in row["error"], row
    assert "feeds.example/x" in row["error"]


def test_a_failure_keeps_no_email_address_that_its_error_quotes(store: Store) -> None:
    # A server redirects a list's feed to a page named by a person's address, which answers 404 or HTML: the error
    # names the URL, and the record of failed polls kept it for bucket_retention_days, as a post's text keeps none.
    with FakeServer() as server:
        for name, target in (("html", "/by/alice.victim@example.org/feed.rss"), ("gone", "/gone/bob@example.net")):
            server.serve(f"/{name}.rss", Reply(302, b"", headers={"Location": f"{server.url}{target}"}))
        server.serve("/by/alice.victim@example.org/feed.rss", Reply(200, b"<html>moved</html>",
                                                                    content_type="text/html"))
        config = parse_config('[[services]]\nname = "Fibre"\n' + "".join(
            f'[[sources]]\nname = "{name}"\ntype = "rss"\nurl = "{server.url}/{name}.rss"\n'
            for name in ("html", "gone")))
        with Poller(config.collect, hash_key=b"k", environ={}) as poller:
            reports = Pipeline(config, store).collect(T0, poller, due_only=False)
        base = server.url
    assert all(r.error for r in reports) and len(reports) == 2, reports
    errors = {r["source"]: r["error"] for r in store.database.rows("SELECT source, error FROM poll_failures")}
    assert errors == {"html": f"expected a feed from {base}/by/[email]/feed.rss, got an HTML page (text/html)",
                      "gone": f"HTTP 404 from 127.0.0.1 (no such resource: {base}/gone/[email])"}, errors


def test_each_source_keeps_its_latest_rows_only(store: Store) -> None:
    # A source failing every minute for a year must not fill the store before the next prune: its oldest rows go.
    store.sync_sources(parse_config('[[sources]]\nname = "flaky"\ntype = "rss"\nurl = "https://a.example/x"\n'
                                    '[[sources]]\nname = "calm"\ntype = "rss"\nurl = "https://b.example/x"\n').sources)
    store.record_poll_failure("calm", "HTTP 500 from b.example", T0, T0 + timedelta(minutes=1), http_status=500)
    most = 0
    with store.database.transaction():  # one transaction for the test's speed; each poll is one of its own
        for i in range(PER_SOURCE + TRIM_EVERY + 50):
            at = T0 + timedelta(minutes=i)
            store.record_poll_failure("flaky", f"HTTP 503 from a.example ({i})", at, at + timedelta(minutes=1))
            held = store.database.one("SELECT count(*) AS n FROM poll_failures WHERE source = 'flaky'")
            most = max(most, held["n"] if held else 0)
    kept = store.database.rows("SELECT polled_at, failures FROM poll_failures WHERE source = 'flaky' ORDER BY id")
    # Cut to the latest PER_SOURCE at its 1,100th poll, then 50 more.
    assert len(kept) == PER_SOURCE + 50 and kept[0]["failures"] == TRIM_EVERY + 1, (len(kept), kept[0])
    assert kept[-1]["failures"] == PER_SOURCE + TRIM_EVERY + 50 and most == PER_SOURCE + TRIM_EVERY - 1
    assert [r["source"] for r in store.poll_failures("calm", 10)] == ["calm"]


def test_a_source_failing_and_recovering_in_turn_is_cut_too(store: Store) -> None:
    # Fail, recover, then two plain successes, over and over: its every hundredth poll is a plain success, which must
    # cut it as a failure would.
    store.sync_sources(parse_config('[[sources]]\nname = "flaky"\ntype = "rss"\nurl = "https://a.example/x"\n'
                                    ).sources)
    with store.database.transaction():
        for i in range(4 * PER_SOURCE):
            at = T0 + timedelta(minutes=i)
            if i % 4 == 0:
                store.record_poll_failure("flaky", "HTTP 502 from a.example", at, at, http_status=502)
            else:
                store.save_fetch("flaky", FetchResult(posts=[], state=SourceState(), not_modified=True), at, at)
    rows = store.poll_failures("flaky", 10 * PER_SOURCE)
    assert PER_SOURCE <= len(rows) < PER_SOURCE + TRIM_EVERY, len(rows)
    assert [r["outcome"] for r in rows[:2]] == ["recovered", "failed"] and rows[0]["failures"] == 1


def test_prune_deletes_the_failed_polls_older_than_the_alert_history_keeps(tmp_path: Path) -> None:
    db = tmp_path / "m.sqlite"
    store = Store.open(db)
    store.sync_sources(parse_config('[[sources]]\nname = "feed"\ntype = "rss"\nurl = "https://a.example/x"\n'
                                    ).sources)
    now = datetime.now(UTC).replace(microsecond=0)
    for days in (500, 401, 399, 1):
        at = now - timedelta(days=days)
        store.record_poll_failure("feed", "HTTP 503 from a.example", at, at + timedelta(minutes=5), http_status=503)
    assert store.prune_poll_failures(now - timedelta(days=450), batch=1) == 1  # a batch at a time
    store.close()
    config = tmp_path / "feeds.toml"
    config.write_text(f'[store]\npath = "{db}"\nbucket_retention_days = 400\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["--config", str(config), "prune"])
    assert result.exit_code == 0, result.output
    assert "and 1 failed poll record older than 400 days" in result.output, result.output
    store = Store.open(db)
    left = [r["polled_at"] for r in store.database.rows("SELECT polled_at FROM poll_failures ORDER BY id")]
    store.close()
    assert left == [iso(now - timedelta(days=d)) for d in (399, 1)]


def test_a_failure_held_while_the_store_took_no_writes_is_recorded_with_its_status_once_stored(store: Store) -> None:
    # The service holds the polls the store refuses (locked, a full disk) and stores them at a later round: the
    # failure's status and wait must survive the wait in memory.
    with FakeServer() as server:
        server.fault("/feed.rss", "429", retry_after="300")
        config = parse_config(f'[[services]]\nname = "Fibre"\n[[sources]]\nname = "feed"\ntype = "rss"\n'
                              f'url = "{server.url}/feed.rss"\n')
        pipe, held = Pipeline(config, store), HeldPolls()
        store.sync_sources(config.sources)
        store.database.conn.execute("PRAGMA busy_timeout = 100")
        other = sqlite3.connect(store.database.path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another writer holds the lock all round
            with Poller(config.collect, hash_key=b"k", environ={}) as poller:
                pipe.collect(T0, poller, due_only=False, held=held)
            assert held.store_error is not None and held.sources == ["feed"]
        finally:
            other.execute("ROLLBACK")
            other.close()
        server.serve_fixture("/feed.rss", FEED, "application/rss+xml")
        with Poller(config.collect, hash_key=b"k", environ={}) as poller:
            reports = pipe.collect(T0 + timedelta(minutes=10), poller, due_only=False, held=held)
    assert [(r.source, r.late, r.error is None) for r in reports] == [("feed", True, False), ("feed", False, True)]
    rows = store.poll_failures("feed", 10)[::-1]
    assert [(r["outcome"], r["polled_at"], r["http_status"], r["retry_after"]) for r in rows] == [
        ("failed", iso(T0), 429, 300.0), ("recovered", iso(T0 + timedelta(minutes=10)), None, None)]

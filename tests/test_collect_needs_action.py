"""A failing source says whether someone must act: `miner collect` against real servers on 127.0.0.1 (a revoked
token's 401, a 503, a TLS certificate nobody trusts, an HTML page where the feed was), a real store, and what
`miner status` and the service's /metrics make of it."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fakeserver import FakeServer, Reply
from netfaults import ok_server, self_signed

from miner.cli import main
from miner.collectors.poller import Poller
from miner.collectors.settings import CollectSettings
from miner.config import SourceConfig, load_config, parse_config
from miner.errors import BAD_CONTENT_POLLS, SourceError
from miner.held_polls import HeldPolls
from miner.pipeline import Pipeline
from miner.store import Store
from miner.store.migrations import MIGRATIONS, apply_migrations
from miner.timeutil import iso, utcnow

pytestmark = pytest.mark.usefixtures("no_proxy_nor_trust")

FEED = "rss/forum_latest.rss"
TIME = r"20\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC"


def _config(tmp_path: Path, sources: dict[str, str]) -> list[str]:
    """A config polling ``sources`` (name: url) into a store in ``tmp_path``; the CLI's options naming both."""
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "m.sqlite"}"\n\n[[services]]\nname = "GitHub"\n' + "".join(
        f'\n[[sources]]\nname = "{name}"\ntype = "rss"\nurl = "{url}"\n' for name, url in sources.items()))
    return ["--config", str(cfg)]


def _collect(base: list[str]) -> None:
    res = CliRunner().invoke(main, [*base, "collect", "--once", "--all"])
    assert res.exit_code in (0, 1), res.output


def _status(base: list[str]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """`miner status`: its lines about sources needing action, and its JSON's sources by name."""
    run = CliRunner()
    text = run.invoke(main, [*base, "status"])
    assert text.exit_code == 0, text.output  # as for an alert channel failing: status reports, it does not fail
    shown = run.invoke(main, [*base, "status", "--format", "json"])
    assert shown.exit_code == 0, shown.output
    lines = [ln for ln in text.output.splitlines() if ln.startswith("source ") and "needs someone to act" in ln]
    return lines, {s["source"]: s for s in json.loads(shown.output)["sources"]}


def _scrape(tmp_path: Path) -> list[str]:
    """The service's /metrics text, read from the store the collect runs wrote: the service polls nothing here."""
    from miner.service import Service, ServiceOptions

    service = Service(load_config(tmp_path / "feeds.toml"), tmp_path / "m.sqlite", ServiceOptions(jobs=(), http=False))
    service.start()
    try:
        return [ln for ln in service.metrics_text().splitlines() if ln.startswith("miner_source_needs_action{")]
    finally:
        service.stop()


@pytest.fixture
def feeds() -> Iterator[FakeServer]:
    with FakeServer() as server:
        server.serve_fixture("/ok.rss", FEED)
        server.serve("/private.rss", Reply(401, b'{"error": "token revoked"}', content_type="application/json"))
        server.fault("/busy.rss", "503", retry_after="1")
        yield server


def test_status_and_metrics_tell_a_revoked_token_and_an_untrusted_certificate_from_a_503(
        tmp_path: Path, feeds: FakeServer) -> None:
    with ok_server(tls=self_signed(tmp_path)) as tls_port:
        base = _config(tmp_path, {"ok": f"{feeds.url}/ok.rss", "private": f"{feeds.url}/private.rss",
                                  "busy": f"{feeds.url}/busy.rss", "tls": f"https://127.0.0.1:{tls_port}/feed.rss"})
        _collect(base)
    lines, sources = _status(base)
    # Was nothing: the 401 and the certificate, which last until someone acts, read as the 503 that passes.
    assert len(lines) == 2, lines
    assert re.fullmatch(rf"source private needs someone to act \(since {TIME}, 1 failed poll in a row\): "
                        rf"HTTP 401 from 127\.0\.0\.1 \(check the source's credentials and URL\)", lines[0])
    assert re.fullmatch(rf"source tls needs someone to act \(since {TIME}, 1 failed poll in a row\): TLS "
                        rf"certificate of 127\.0\.0\.1:{tls_port} not trusted \(self-signed certificate\): .*",
                        lines[1])
    assert {name: s["needs_action"] for name, s in sources.items()} == {
        "ok": False, "private": True, "busy": False, "tls": True}
    assert sources["private"]["needs_action_since"] is not None and sources["busy"]["needs_action_since"] is None
    assert sources["busy"]["failures"] == 1 and "HTTP 503" in sources["busy"]["last_error"]
    assert sorted(_scrape(tmp_path)) == ['miner_source_needs_action{source="busy"} 0',
                                         'miner_source_needs_action{source="ok"} 0',
                                         'miner_source_needs_action{source="private"} 1',
                                         'miner_source_needs_action{source="tls"} 1']


def test_a_source_needs_action_from_its_first_such_failure_until_a_poll_succeeds(tmp_path: Path,
                                                                                 feeds: FakeServer) -> None:
    base = _config(tmp_path, {"private": f"{feeds.url}/private.rss"})
    _collect(base)
    _, first = _status(base)
    _collect(base)
    lines, again = _status(base)
    # The run's first failure is when it began: the second 401 does not move it.
    assert again["private"]["needs_action_since"] == first["private"]["needs_action_since"] is not None
    assert "2 failed polls in a row" in lines[0]

    feeds.serve_fixture("/private.rss", FEED)  # a new token put in place
    _collect(base)
    lines, healed = _status(base)
    assert lines == []
    assert healed["private"]["needs_action"] is False and healed["private"]["needs_action_since"] is None
    assert _scrape(tmp_path) == ['miner_source_needs_action{source="private"} 0']


def test_a_failure_that_passes_by_itself_ends_the_run_that_needed_action(tmp_path: Path, feeds: FakeServer) -> None:
    base = _config(tmp_path, {"private": f"{feeds.url}/private.rss"})
    _collect(base)
    assert _status(base)[1]["private"]["needs_action"] is True
    feeds.fault("/private.rss", "503", retry_after="1")  # the server down says nothing of the token
    _collect(base)
    lines, sources = _status(base)
    assert lines == [] and sources["private"]["needs_action_since"] is None and sources["private"]["failures"] == 2


def test_a_page_that_is_no_feed_needs_action_only_once_it_lasts(tmp_path: Path, feeds: FakeServer) -> None:
    # A maintenance page or captive portal passes; the feed moved and its URL now an HTML page does not.
    feeds.fault("/moved.rss", "wrong_type")
    base = _config(tmp_path, {"moved": f"{feeds.url}/moved.rss"})
    for _ in range(BAD_CONTENT_POLLS - 1):
        _collect(base)
    lines, sources = _status(base)
    assert lines == [] and sources["moved"]["failures"] == BAD_CONTENT_POLLS - 1
    _collect(base)
    lines, sources = _status(base)
    assert len(lines) == 1 and lines[0].startswith("source moved needs someone to act (since ")
    assert lines[0].endswith(f"{BAD_CONTENT_POLLS} failed polls in a row): expected a feed from {feeds.url}/moved.rss, "
                             "got an HTML page (text/html)")
    assert sources["moved"]["needs_action_since"] is not None
    assert _scrape(tmp_path) == ['miner_source_needs_action{source="moved"} 1']


def test_the_upgrade_marks_the_sources_failing_for_good_by_their_last_error(tmp_path: Path, feeds: FakeServer) -> None:
    # The errors real polls give now, stored in a store of the schema before 0024_sources_needs_action.
    feeds.fault("/gone.rss", "not_found")
    feeds.serve("/removed.rss", Reply(410, b"", content_type="text/plain"))
    feeds.fault("/moved.rss", "wrong_type")
    with ok_server(tls=self_signed(tmp_path)) as tls_port:
        urls = {"private": f"{feeds.url}/private.rss", "gone": f"{feeds.url}/gone.rss",
                "removed": f"{feeds.url}/removed.rss", "tls": f"https://127.0.0.1:{tls_port}/feed.rss",
                "busy": f"{feeds.url}/busy.rss", "moved": f"{feeds.url}/moved.rss"}
        errors = {name: _error(url) for name, url in urls.items()}
    path, at = tmp_path / "old.sqlite", iso(utcnow())
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        apply_migrations(conn, [m for m in MIGRATIONS if m.id < "0024"])
        conn.executemany("INSERT INTO sources (name, type, last_error, last_error_at, consecutive_failures) "
                         "VALUES (?, 'rss', ?, ?, 3)", [(name, error, at) for name, error in errors.items()])
        conn.execute("INSERT INTO sources (name, type, last_ok_at) VALUES ('ok', 'rss', ?)", (at,))
    conn.close()
    store = Store.open(path)
    try:
        marked = {r["name"]: r["needs_action_since"] for r in store.source_rows()}
    finally:
        store.close()
    assert marked == {"private": at, "gone": at, "removed": at, "tls": at, "busy": None, "moved": None, "ok": None}


def _error(url: str) -> str:
    with (Poller(CollectSettings(), hash_key=b"k", environ={}) as poller, pytest.raises(SourceError) as info):
        poller.poll(SourceConfig("s", "rss", url=url, timeout=5))
    return str(info.value)


def test_a_failure_held_while_the_store_took_no_writes_is_stored_as_needing_action(store: Store) -> None:
    # A source's polls made while the store takes no writes (a full disk) are held and stored later, in order: the
    # 401 held behind a success is stored then, and as needing action.
    t0 = datetime(2026, 12, 1, 12, tzinfo=UTC)
    items = "".join(f"<item><guid>item-{n}</guid><title>down {n}</title><description>{'x' * 2000}</description>"
                    f"<pubDate>{format_datetime(t0 - timedelta(minutes=n))}</pubDate></item>" for n in range(4))
    feed = f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{items}</channel></rss>'.encode()
    answers = iter([Reply(200, feed, content_type="application/rss+xml"),  # each item a page of the store's own
                    Reply(401, b"revoked", content_type="text/plain")])
    with FakeServer() as server:
        server.serve("/private.rss", lambda request: next(answers))
        config = parse_config(f'[[sources]]\nname = "private"\ntype = "rss"\nurl = "{server.url}/private.rss"\n'
                              "interval = 60\n")
        pipe, held = Pipeline(config, store), HeldPolls()
        pages = store.database.one("PRAGMA page_count")["page_count"]  # type: ignore[index]
        store.database.conn.execute(f"PRAGMA max_page_count = {pages}")  # full: no write may add a page
        with Poller(config.collect, hash_key=b"k") as poller:
            assert pipe.collect(t0, poller, held=held)[0].held > 0
            (failed,) = pipe.collect(t0 + timedelta(seconds=61), poller, held=held)
            assert failed.error is not None and failed.error.startswith("HTTP 401")
            assert len(held.polls["private"]) == 2
            store.database.conn.execute("PRAGMA max_page_count = 1073741823")  # space freed
            pipe.collect(t0 + timedelta(seconds=75), poller, held=held)
    assert not held.polls
    row = store.source_row("private")
    assert row is not None and row["consecutive_failures"] == 1
    assert row["needs_action_since"] == iso(t0 + timedelta(seconds=61))

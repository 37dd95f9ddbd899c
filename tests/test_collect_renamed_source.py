"""A source renamed in feeds.toml (same type and url) keeps what the store holds of its feed: its failed polls, its
backoff, its validators and cursor (Store.follow_renames). Real polls of a real server on 127.0.0.1, a real store."""

from __future__ import annotations

import random
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from fakeserver import FakeServer

from miner.collect_stage import CollectReport
from miner.collectors.poller import Poller
from miner.config import Config, parse_config
from miner.held_polls import HeldPolls
from miner.pipeline import Pipeline
from miner.status import source_status
from miner.store import Store

pytestmark = pytest.mark.usefixtures("no_proxy_nor_trust")

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
FEED = "rss/forum_latest.rss"


def _config(name: str, url: str) -> Config:
    return parse_config(f'[[services]]\nname = "Fibre"\n[[sources]]\nname = "{name}"\ntype = "rss"\nurl = "{url}"\n')


def _collect(store: Store, config: Config, at: datetime, *, due_only: bool = False) -> list[CollectReport]:
    with Poller(config.collect, hash_key=b"k", environ={}) as poller:
        return Pipeline(config, store).collect(at, poller, due_only=due_only, rng=random.Random(7))


def test_a_renamed_source_keeps_its_failed_polls_backoff_and_validators(store: Store) -> None:
    # Read once, then two 503s asking for 120 s, under the old name; renamed, its backoff holds, `miner status` shows
    # its failures, its first poll sends the validators of the last read, and its recovery ends the old name's run.
    with FakeServer() as server:
        url = f"{server.url}/feed.rss"
        old, new = _config("telco", url), _config("telco-feed", url)
        server.serve_fixture("/feed.rss", FEED, "application/rss+xml")
        assert [r.error for r in _collect(store, old, T0)] == [None]
        etag = (store.source_row("telco") or {})["etag"]
        server.fault("/feed.rss", "503", retry_after="120")
        for i in (1, 2):
            assert _collect(store, old, T0 + timedelta(minutes=10 * i))[0].error is not None
        asked = len(server.requests_to("/feed.rss"))
        # A minute into the server's 120 s: the renamed source is not due (started afresh, it was polled at once).
        assert _collect(store, new, T0 + timedelta(minutes=21), due_only=True) == []
        assert len(server.requests_to("/feed.rss")) == asked
        status = source_status(store, new)
        assert [(s["source"], s["failures"]) for s in status] == [("telco-feed", 2)], status
        assert status[0]["last_error"] == "HTTP 503 from 127.0.0.1 (retry after 120 s)", status
        server.serve_fixture("/feed.rss", FEED, "application/rss+xml")
        reports = _collect(store, new, T0 + timedelta(minutes=30))
        assert [(r.source, r.error, r.not_modified) for r in reports] == [("telco-feed", None, True)], reports
        assert server.requests_to("/feed.rss")[-1].headers.get("if-none-match") == etag
    rows = store.database.rows("SELECT source, outcome, failures FROM poll_failures ORDER BY id")
    assert [(r["source"], r["outcome"], r["failures"]) for r in rows] == [
        ("telco-feed", "failed", 1), ("telco-feed", "failed", 2), ("telco-feed", "recovered", 2)], rows
    row = store.source_row("telco-feed") or {}
    assert (row["polls"], row["consecutive_failures"], row["last_error"]) == (4, 0, None), row
    assert row["posts_stored"] > 0 and row["posts_stored"] == store.database.one(
        "SELECT count(*) AS n FROM posts")["n"], row  # the old name's posts: its row counts them now
    # The old name's row stays bare (its posts keep the name, and are still told apart from the new name's).
    bare = store.source_row("telco") or {}
    assert [bare[k] for k in ("last_poll_at", "last_error", "consecutive_failures", "etag", "polls",
                              "posts_stored")] == [None, None, 0, None, 0, 0], bare


def test_a_failure_held_under_the_old_name_follows_the_rename_once_stored(store: Store) -> None:
    # The service held a failed poll while the store took no writes, then a reload renamed the source: the held poll
    # is stored under the name it was made by, and must follow the rename with the rest, not stay behind there.
    with FakeServer() as server:
        url = f"{server.url}/feed.rss"
        old, new = _config("telco", url), _config("telco-feed", url)
        server.fault("/feed.rss", "503", retry_after="120")
        held = HeldPolls()
        store.sync_sources(old.sources)
        store.database.conn.execute("PRAGMA busy_timeout = 100")
        other = sqlite3.connect(store.database.path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another writer holds the lock all round
            with Poller(old.collect, hash_key=b"k", environ={}) as poller:
                Pipeline(old, store).collect(T0, poller, due_only=False, held=held)
            assert held.store_error is not None and held.sources == ["telco"]
        finally:
            other.execute("ROLLBACK")
            other.close()
        asked = len(server.requests_to("/feed.rss"))
        with Poller(new.collect, hash_key=b"k", environ={}) as poller:
            reports = Pipeline(new, store).collect(T0 + timedelta(minutes=1), poller, held=held)
        assert len(server.requests_to("/feed.rss")) == asked  # within the 120 s the server asked for
    assert [(r.source, r.late, r.error is not None) for r in reports] == [("telco", True, True)], reports
    rows = store.database.rows("SELECT source, outcome, failures, http_status FROM poll_failures ORDER BY id")
    assert [tuple(r.values()) for r in rows] == [("telco-feed", "failed", 1, 503)], rows
    assert [(s["source"], s["failures"]) for s in source_status(store, new)] == [("telco-feed", 1)]
    assert (store.source_row("telco") or {})["consecutive_failures"] == 0

"""PollPool's worker threads when a poll raises past the poller's own handling (PollPool._work): real loopback
servers, real SQLite stores."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fakeserver import FakeServer
from streams import T0
from test_collect_carry import feed, posts_of, service_config, wait_for

from miner.collectors import Poller
from miner.collectors.base import PollContext
from miner.collectors.poller import PollOutcome, default_collectors
from miner.config import Config, SourceConfig, parse_config
from miner.pipeline import Pipeline
from miner.records import FetchResult, SourceState
from miner.store import Store
from miner.timeutil import iso, utcnow


class _RaisingOnce(Poller):
    """A poller whose first poll of ``bad`` raises what Poller._outcome does not catch (a MemoryError building its
    outcome, past the one it caught)."""

    raised = False

    def _outcome(self, source: SourceConfig, state: SourceState | None, started: datetime, clock: float
                 ) -> PollOutcome:
        if source.name == "bad" and not self.raised:
            self.raised = True
            raise MemoryError("building the outcome")
        return super()._outcome(source, state, started, clock)


def down_an_hour_ago(db: Path, config: Config) -> dict[str, Any] | None:
    """A store whose sources were polled, and whose buckets scored, up to an hour ago, when the host went down: the
    detector's state then."""
    down = utcnow() - timedelta(hours=1)
    store = Store.open(db)
    try:
        store.sync_sources(config.sources)
        store.database.conn.execute("UPDATE sources SET last_ok_at = ?, next_poll_at = ?", (iso(down), iso(down)))
        Pipeline(config, store).detect(down)
        return store.database.one("SELECT last_bucket FROM detector_state")
    finally:
        store.close()


def test_a_poll_that_raises_costs_its_source_one_round_not_the_pools_worker(store: Store) -> None:
    # The worker thread died with the error, still counted: with max_workers = 1 no poll ever started again, a
    # service's collect job went on succeeding with nothing polled, and `miner collect --once` waited forever.
    with FakeServer() as server:
        server.serve("/bad.rss", feed("b", T0))
        server.serve("/fast.rss", feed("f", T0))
        config = parse_config('[collect]\nmax_workers = 1\n[[services]]\nname = "MTN"\n'
                              f'[[sources]]\nname = "bad"\ntype = "rss"\nurl = "{server.url}/bad.rss"\n'
                              f'[[sources]]\nname = "fast"\ntype = "rss"\nurl = "{server.url}/fast.rss"\n'
                              "interval = 10\n")
        pipe = Pipeline(config, store)
        with _RaisingOnce(config.collect, hash_key=b"k") as poller:
            first = pipe.collect(T0, poller, wait=5.0)
            assert [(r.source, r.stored) for r in first] == [("bad", 0), ("fast", 3)]  # bad's poll raised: its error
            assert poller.pool.in_flight() == set()
            again = pipe.collect(T0 + timedelta(seconds=300), poller, wait=5.0)  # bad's interval, its backoff past
            assert [(r.source, r.stored) for r in again] == [("bad", 3), ("fast", 0)]  # bad due again, and polled


class _Unprintable(Exception):
    """A collector's error whose text cannot be had: Poller._outcome, making the source's error of it, raises."""

    def __str__(self) -> str:
        raise ValueError("no text")


class _RaisingCollector:
    def poll(self, source: SourceConfig, state: SourceState, ctx: PollContext) -> FetchResult:
        raise _Unprintable()


def test_a_poll_that_raises_at_every_run_is_its_sources_error_and_backs_off(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    # Nothing of it was stored: the source was polled again at every run (every 15 s, past its interval, and with no
    # backoff), a traceback logged each time, while `miner status` and /metrics showed no error for it; the run said
    # it was left unstarted for want of workers, and `miner collect --once` left it out of its table and exited 0.
    with FakeServer() as server:
        server.serve("/fast.rss", feed("f", T0))
        config = parse_config('[collect]\nmax_workers = 1\n[[services]]\nname = "MTN"\n'
                              '[[sources]]\nname = "bad"\ntype = "hackernews"\nquery = "down"\n'
                              f'[[sources]]\nname = "fast"\ntype = "rss"\nurl = "{server.url}/fast.rss"\n'
                              "interval = 10\n")
        pipe = Pipeline(config, store)
        collectors = {"rss": default_collectors()["rss"], "hackernews": _RaisingCollector()}
        with Poller(config.collect, hash_key=b"k", collectors=collectors) as poller:
            caplog.set_level("INFO", logger="miner.pipeline")
            first = {r.source: r for r in pipe.collect(T0, poller, wait=5.0)}
            assert set(first) == {"bad", "fast"}
            assert (first["bad"].error or "").startswith("internal error: the poll failed with ValueError")
            assert "not started in this round" not in caplog.text
            again = pipe.collect(T0 + timedelta(seconds=15), poller, wait=5.0)
            assert [r.source for r in again] == ["fast"]  # bad is not polled again before its backoff
    row = store.source_row("bad")
    assert row is not None and row["consecutive_failures"] == 1
    assert row["next_poll_at"] > iso(T0 + timedelta(seconds=15))
    assert (row["last_error"] or "").startswith("internal error")


def test_the_buckets_of_a_downtime_wait_for_the_first_runs_polls_carried_over(tmp_path: Path) -> None:
    # At a start, the process job scores the buckets of the time the service was down only once the first collect
    # round has stored their posts. A first run returns with its slow polls carried over, and that counted as the
    # round's end: the buckets of the downtime (all but settle_minutes' worth) were scored, for good, without the
    # posts the slow source was still fetching.
    from miner.config import load_config
    from miner.service import JobSpec, Service, ServiceOptions

    db = tmp_path / "miner.sqlite"
    before = down_an_hour_ago(db, load_config(service_config(tmp_path, "http://127.0.0.1:9")))
    with FakeServer() as server:
        server.serve("/fast.rss", feed("f", utcnow()))
        server.serve("/slow.rss", feed("s", utcnow(), delay=6.0))
        service = Service(load_config(service_config(tmp_path, server.url)), db,
                          ServiceOptions(jobs=(JobSpec("collect", 1.0), JobSpec("process", 0.5)), http=False))
        service.start()
        try:
            wait_for(lambda: posts_of(db, "fast") == 3 and service.health["process"].runs >= 3, timeout=30)
            assert posts_of(db, "slow") == 0  # still in flight
            assert last_bucket(db) == before  # nothing scored without its posts
            wait_for(lambda: posts_of(db, "slow") == 3, timeout=30)
            wait_for(lambda: last_bucket(db) != before, timeout=30)  # then scored
        finally:
            service.stop()


def last_bucket(db: Path) -> dict[str, str]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        return {"last_bucket": conn.execute("SELECT last_bucket FROM detector_state").fetchone()[0]}


def test_the_buckets_of_a_downtime_wait_for_the_first_runs_sources_left_unstarted(tmp_path: Path) -> None:
    # With every worker busy, the first run withdrew the sources due it had no time to start, and the next runs
    # started them: the downtime's buckets were scored once the polls the first run had started were stored, without
    # the posts of those started later.
    from miner.config import load_config
    from miner.service import JobSpec, Service, ServiceOptions

    db = tmp_path / "miner.sqlite"
    cfg = tmp_path / "feeds.toml"

    def write(url: str) -> Path:
        cfg.write_text(f'[store]\npath = "{db}"\n[collect]\nmax_workers = 1\n[[services]]\nname = "MTN"\n'
                       f'[[sources]]\nname = "busy"\ntype = "rss"\nurl = "{url}/busy.rss"\n'
                       f'[[sources]]\nname = "later"\ntype = "rss"\nurl = "{url}/later.rss"\n', encoding="utf-8")
        return cfg

    before = down_an_hour_ago(db, load_config(write("http://127.0.0.1:9")))
    with FakeServer() as server:
        server.serve("/busy.rss", feed("b", utcnow(), delay=2.0))  # holds the one worker past the first run
        server.serve("/later.rss", feed("l", utcnow(), delay=6.0))
        service = Service(load_config(write(server.url)), db,
                          ServiceOptions(jobs=(JobSpec("collect", 1.0), JobSpec("process", 0.5)), http=False))
        service.start()
        try:
            wait_for(lambda: posts_of(db, "busy") == 3 and len(server.requests_to("/later.rss")) == 1, timeout=30)
            runs = service.health["process"].runs
            wait_for(lambda: service.health["process"].runs >= runs + 3, timeout=30)
            assert posts_of(db, "later") == 0  # started by a later run, still in flight
            assert last_bucket(db) == before  # nothing scored without its posts
            wait_for(lambda: posts_of(db, "later") == 3, timeout=30)
            wait_for(lambda: last_bucket(db) != before, timeout=30)  # then scored
        finally:
            service.stop()

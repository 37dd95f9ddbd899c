"""Polls carried over from one collect run to the next (PollPool): a source that hangs until its timeout delays no
other source's next poll, and its late answer is stored by a later run, with its own round time, once; at a stop,
a reload, and while the store takes no writes. Real loopback servers, real SQLite stores, real services."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fakeserver import FakeServer, Reply
from streams import T0
from test_reload import write_config
from test_reload_handover import reloading

from miner.collectors import Poller
from miner.config import parse_config
from miner.held_polls import HeldPolls
from miner.pipeline import Pipeline
from miner.store import Store
from miner.timeutil import parse_iso, utcnow

if TYPE_CHECKING:
    from miner.config import Config
    from miner.service import Service


def wait_for(check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def feed(prefix: str, at: datetime, delay: float = 0.0) -> Reply:
    """Three items, large enough that storing them takes new pages (see fill)."""
    items = "".join(f"<item><guid>{prefix}{n}</guid><title>MTN down {n}</title><description>{'x' * 2000}"
                    f"</description><pubDate>{format_datetime(at - timedelta(minutes=n))}</pubDate></item>"
                    for n in range(3))
    return Reply(200, f'<rss version="2.0"><channel><title>t</title>{items}</channel></rss>'.encode(),
                 content_type="application/rss+xml", delay=delay)


def two_sources(url: str) -> Config:
    return parse_config('[[services]]\nname = "MTN"\n'
                        f'[[sources]]\nname = "fast"\ntype = "rss"\nurl = "{url}/fast.rss"\ninterval = 10\n'
                        f'[[sources]]\nname = "slow"\ntype = "rss"\nurl = "{url}/slow.rss"\ninterval = 60\n'
                        "timeout = 120\n")


def posts_of(db: str | Path, source: str) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        return int(conn.execute("SELECT count(*) FROM posts WHERE source = ?", (source,)).fetchone()[0])


def fill(store: Store, full: bool) -> None:
    """A store on a full disk: no write may add a page (SQLite's own limit, on this connection only)."""
    pages = store.database.one("PRAGMA page_count")["page_count"] if full else 1 << 30  # type: ignore[index]
    store.database.conn.execute(f"PRAGMA max_page_count = {pages}")


def test_a_poll_carried_over_is_stored_by_a_later_run_with_its_own_round_time(store: Store) -> None:
    # A run waited for its slowest poll: the fast source's next poll waited for the slow one's answer.
    with FakeServer() as server:
        server.serve("/fast.rss", feed("f", T0))
        server.serve("/slow.rss", feed("s", T0, delay=3.0))
        config = two_sources(server.url)
        pipe = Pipeline(config, store)
        with Poller(config.collect, hash_key=b"k") as poller:
            assert [r.source for r in pipe.collect(T0, poller, wait=0.3)] == ["fast"]
            assert poller.pool.in_flight() == {"slow"}
            assert [r.source for r in pipe.collect(T0 + timedelta(seconds=15), poller, wait=0.3)] == ["fast"]
            assert len(server.requests_to("/slow.rss")) == 1  # in flight: not started again
            wait_for(lambda: not poller.pool.running_for())
            reports = pipe.collect(T0 + timedelta(seconds=30), poller, wait=5.0)
            assert [(r.source, r.stored, r.error) for r in reports] == [("fast", 0, None), ("slow", 3, None)]
            assert poller.pool.in_flight() == set()
            assert pipe.collect(T0 + timedelta(seconds=45), poller, wait=5.0)[0].source == "fast"
            assert len(server.requests_to("/slow.rss")) == 1
    row = store.source_row("slow")
    assert row is not None and row["polls"] == 1
    # Its round's time: the settle rule and its next poll count from when the poll was asked for.
    assert parse_iso(row["last_ok_at"]) == T0 and parse_iso(row["next_poll_at"]) == T0 + timedelta(seconds=60)
    assert posts_of(store.database.path, "slow") == 3
    assert store.source_row("fast")["polls"] == 4  # type: ignore[index]


def test_a_poll_carried_over_that_ends_while_the_store_takes_no_writes_is_held_and_stored_once(store: Store) -> None:
    with FakeServer() as server:
        server.serve("/fast.rss", feed("f", T0))
        server.serve("/slow.rss", feed("s", T0, delay=2.0))
        config = two_sources(server.url)
        pipe = Pipeline(config, store)
        held = HeldPolls()
        with Poller(config.collect, hash_key=b"k") as poller:
            assert [r.source for r in pipe.collect(T0, poller, held=held, wait=0.3)] == ["fast"]
            fill(store, full=True)
            wait_for(lambda: not poller.pool.running_for())
            reports = pipe.collect(T0 + timedelta(seconds=15), poller, held=held, wait=5.0)
            assert {(r.source, r.stored, r.held) for r in reports} == {("fast", 0, 3), ("slow", 0, 3)}
            assert "disk full" in str(held.store_error) and held.sources == ["slow", "fast"]
            fill(store, full=False)
            reports = pipe.collect(T0 + timedelta(seconds=16), poller, held=held, wait=5.0)
            assert [(r.source, r.late, r.stored) for r in reports] == [("slow", True, 3), ("fast", True, 0)]
            assert len(server.requests_to("/slow.rss")) == 1
    assert held.store_error is None and not held.polls
    row = store.source_row("slow")
    assert row is not None and row["polls"] == 1 and parse_iso(row["last_ok_at"]) == T0
    assert posts_of(store.database.path, "slow") == 3


def test_a_source_due_while_every_worker_is_busy_is_started_by_a_later_run_with_its_time(store: Store) -> None:
    with FakeServer() as server:
        server.serve("/fast.rss", feed("f", T0))
        server.serve("/slow.rss", feed("s", T0, delay=2.0))
        config = parse_config('[collect]\nmax_workers = 1\n[[services]]\nname = "MTN"\n'
                              f'[[sources]]\nname = "slow"\ntype = "rss"\nurl = "{server.url}/slow.rss"\n'
                              f'[[sources]]\nname = "fast"\ntype = "rss"\nurl = "{server.url}/fast.rss"\n'
                              "interval = 10\n")
        pipe = Pipeline(config, store)
        with Poller(config.collect, hash_key=b"k") as poller:
            assert pipe.collect(T0, poller, wait=0.3) == []
            assert poller.pool.in_flight() == {"slow"}  # the other one is not queued with a stale round time
            wait_for(lambda: not poller.pool.running_for())
            reports = pipe.collect(T0 + timedelta(seconds=15), poller, wait=5.0)
            assert [(r.source, r.stored) for r in reports] == [("slow", 3), ("fast", 3)]
    assert parse_iso(store.source_row("slow")["last_ok_at"]) == T0  # type: ignore[index]
    assert parse_iso(store.source_row("fast")["last_ok_at"]) == T0 + timedelta(seconds=15)  # type: ignore[index]


def service_config(tmp_path: Path, url: str) -> Path:
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "miner.sqlite"}"\n[[services]]\nname = "MTN"\n'
                   f'[[sources]]\nname = "fast"\ntype = "rss"\nurl = "{url}/fast.rss"\ninterval = 10\n'
                   f'[[sources]]\nname = "slow"\ntype = "rss"\nurl = "{url}/slow.rss"\ninterval = 60\n'
                   "timeout = 120\n", encoding="utf-8")
    return cfg


def fast_service(tmp_path: Path, url: str) -> Service:
    """A service whose one job is collect, each second, on a clock that runs 15 times as fast: each run is the
    next 15 s tick, and the 10 s source is due at each."""
    from miner.config import load_config
    from miner.service import JobSpec, Service, ServiceOptions

    start = utcnow()
    return Service(load_config(service_config(tmp_path, url)), tmp_path / "miner.sqlite",
                   ServiceOptions(jobs=(JobSpec("collect", 1.0),), http=False,
                                  clock=lambda: start + (utcnow() - start) * 15))


def test_a_source_is_polled_on_its_interval_while_another_hangs_and_a_stop_gives_the_hanging_one_up(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # One source hanging until its timeout (120 s) made every other source's real interval the round's length.
    with FakeServer() as server:
        server.serve("/fast.rss", feed("f", utcnow()))
        server.serve("/slow.rss", feed("s", utcnow(), delay=60.0))
        service = fast_service(tmp_path, server.url)
        caplog.set_level("INFO", logger="miner.service")
        service.start()
        try:
            service._poller.stop_grace = 0.5  # the default is 5 s: the test only needs it shorter than the hang
            wait_for(lambda: len(server.requests_to("/fast.rss")) >= 3, timeout=30)
            assert len(server.requests_to("/slow.rss")) == 1
            wait_for(lambda: service.metrics.get("miner_polls_in_flight") == 1.0, timeout=10)
            wait_for(lambda: "carried over to the next run: slow" in caplog.text, timeout=10)
            ok, detail = service.healthz()
            assert ok, detail
        finally:
            started = time.monotonic()
            service.stop()
            took = time.monotonic() - started
    assert took < 0.5 + 10.0  # the grace, not the hanging server's 60 s
    store = Store.open(tmp_path / "miner.sqlite")
    try:
        row = store.source_row("slow")
        assert row is not None and (row["polls"], row["consecutive_failures"]) == (0, 0)
        assert store.due_sources(["slow"], utcnow()) == ["slow"]  # polled again at the next start
        assert store.source_row("fast")["polls"] >= 3  # type: ignore[index]
    finally:
        store.close()


def test_the_last_run_at_a_stop_says_the_polls_in_flight_are_given_up_not_carried_over(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The round a stop ended said, right after "stop requested: 1 polls still in flight given up after 5 s", that
    # its poll in flight was "carried over to the next run": there is none, and nothing of that poll is stored (the
    # source is polled again at the next start). The run waits up to 59 s for its polls here, so the stop comes
    # while it runs, with the slow poll (60 s) in flight.
    from miner.config import load_config
    from miner.service import JobSpec, Service, ServiceOptions

    with FakeServer() as server:
        server.serve("/fast.rss", feed("f", utcnow()))
        server.serve("/slow.rss", feed("s", utcnow(), delay=60.0))
        service = Service(load_config(service_config(tmp_path, server.url)), tmp_path / "miner.sqlite",
                          ServiceOptions(jobs=(JobSpec("collect", 60.0),), http=False))
        caplog.set_level("INFO", logger="miner")
        service.start()
        try:
            service._poller.stop_grace = 0.5  # the default is 5 s: the test only needs it shorter than the hang
            wait_for(lambda: len(server.requests_to("/slow.rss")) == 1, timeout=30)
        finally:
            service.stop()
    lines = [r.getMessage() for r in caplog.records]
    assert "stop requested: 1 poll still in flight given up after 0.5 s" in lines
    last = [line for line in lines if line.startswith("collected from")][-1]
    assert "carried over" not in last
    assert "; 1 poll in flight given up at the stop, polled again at the next start: slow " in last, last


def test_a_poll_carried_over_that_ends_within_the_stops_grace_is_stored_once(tmp_path: Path) -> None:
    with FakeServer() as server:
        server.serve("/fast.rss", feed("f", utcnow()))
        server.serve("/slow.rss", feed("s", utcnow(), delay=4.0))
        service = fast_service(tmp_path, server.url)
        service.start()
        try:
            wait_for(lambda: service.health["collect"].runs >= 2, timeout=30)
            assert len(server.requests_to("/slow.rss")) == 1
            assert posts_of(tmp_path / "miner.sqlite", "slow") == 0  # in flight, carried over
        finally:
            service.stop()  # within its 5 s grace
    store = Store.open(tmp_path / "miner.sqlite")
    try:
        row = store.source_row("slow")
        assert row is not None and row["polls"] == 1 and row["last_error"] is None
    finally:
        store.close()
    assert posts_of(tmp_path / "miner.sqlite", "slow") == 3


def test_a_poll_in_flight_at_a_reload_is_dropped_and_polled_again_at_once(tmp_path: Path) -> None:
    # The new service's poller is new: the old one's poll, given up after the stop's grace, must not be stored
    # after the new service's poll of the same source, nor be lost with the source left waiting its interval.
    from miner.service import JobSpec, Service, ServiceOptions

    cfg = tmp_path / "feeds.toml"
    db = tmp_path / "miner.sqlite"
    built: list[Service] = []

    def make(config: Config) -> Service:
        built.append(Service(config, db, ServiceOptions(jobs=(JobSpec("collect", 1.0),), http=False)))
        return built[-1]

    with FakeServer() as server:
        server.serve("/alpha.rss", feed("a", utcnow(), delay=4.0))
        write_config(cfg, server.url)
        with reloading(cfg, make) as hup:
            wait_for(lambda: bool(built) and built[0].health["collect"].runs >= 2)
            assert len(server.requests_to("/alpha.rss")) == 1 and posts_of(db, "alpha") == 0  # carried over
            built[0]._poller.stop_grace = 0.5
            hup()
            wait_for(lambda: len(built) == 2 and len(server.requests_to("/alpha.rss")) == 2)
            wait_for(lambda: posts_of(db, "alpha") == 3)
            time.sleep(1.0)  # the old poll has answered too by now: nobody stores it
            assert len(server.requests_to("/alpha.rss")) == 2
    store = Store.open(db)
    try:
        row = store.source_row("alpha")
        assert row is not None and row["polls"] == 1
    finally:
        store.close()


def test_sources_left_unstarted_by_busy_workers_go_first_at_the_next_run(store: Store) -> None:
    # Due sources were started in the config's order: with more due than the workers could start before the run
    # returned, those at the end of the config were withdrawn at every run, while the first ones, due again at the
    # next tick, took the workers again: the last sources were never polled.
    names = "abcdef"
    with FakeServer() as server:
        for name in names:
            server.serve(f"/{name}.rss", feed(name, T0, delay=0.3))
        config = parse_config('[collect]\nmax_workers = 1\n[[services]]\nname = "MTN"\n' + "".join(
            f'[[sources]]\nname = "{name}"\ntype = "rss"\nurl = "{server.url}/{name}.rss"\ninterval = 10\n'
            for name in names))
        pipe = Pipeline(config, store)
        with Poller(config.collect, hash_key=b"k") as poller:
            for tick in range(4):
                pipe.collect(T0 + timedelta(seconds=15 * tick), poller, wait=1.0)
            wait_for(lambda: not poller.pool.running_for())
        polled = {name: len(server.requests_to(f"/{name}.rss")) for name in names}
    assert all(polled.values()), polled

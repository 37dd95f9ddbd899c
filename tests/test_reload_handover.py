"""What a reload hands from the service it stops to the one it starts, in a real service run by the reloader in a
thread (Signals.handle is what the signal handlers call), on a real store: the store lock, held throughout, the polls
held in memory while the store takes no writes, and the user reports' rate limits and reporter key."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from fakeserver import FakeServer, Reply
from ports import bound_port
from test_reload import feeds, write_config  # noqa: F401 (feeds: the fixture)
from test_service import roomy_feed

from miner.errors import MinerError
from miner.service_lock import ServiceLock
from miner.store import Store

if TYPE_CHECKING:
    from miner.config import Config
    from miner.service import Service, ServiceOptions


def wait_for(check: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@contextmanager
def reloading(cfg: Path, make: Callable[[Config], Service]) -> Iterator[Callable[[], None]]:
    """The reloader running ``make``'s services in a thread; yields what sends it a SIGHUP, and stops it after."""
    from miner.config_files import load_checked
    from miner.service_reload import Reloader, Signals

    signals = Signals()
    thread = threading.Thread(target=Reloader(load_checked(cfg), lambda: load_checked(cfg), make, signals).run,
                              daemon=True)
    thread.start()
    try:
        yield lambda: signals.handle(signal.SIGHUP)
    finally:
        signals.handle(signal.SIGTERM)
        thread.join(timeout=60)
    assert not thread.is_alive()



def full_disk_first(db: Path, built: list[Service]) -> Callable[[Config], Service]:
    """A ``make`` whose first service finds the disk full (its polls held), the ones after it not."""
    from miner.service import Service

    def make(config: Config) -> Service:
        built.append(Service(config, db, collector()))
        if len(built) == 1:
            disk_full(built[0])
        return built[-1]

    return make

def collector(options: ServiceOptions | None = None) -> ServiceOptions:
    from miner.service import JobSpec, ServiceOptions

    return options or ServiceOptions(jobs=(JobSpec("collect", 3600.0),), http=False)


def rivalled(db: Path, built: list[Service], rivals: list[str]) -> Callable[[Config], Service]:
    """A ``make`` whose services, given what the service before handed over, first have a `miner replay` try the
    store lock on ``db``: the service before has stopped by then (or failed to start), and the new one has not
    started. Each on its config's store."""
    from miner.service import Service
    from miner.service_handover import Handover

    class Rivalled(Service):
        def take_over(self, handover: Handover) -> None:
            rival = ServiceLock(db, role="replay")
            try:
                rival.acquire()
            except MinerError as exc:
                rivals.append(str(exc))
            else:
                rivals.append("taken")
                rival.release()
            super().take_over(handover)

    def make(config: Config) -> Service:
        built.append(Rivalled(config, config.store.path, collector()))
        return built[-1]

    return make


def test_the_store_lock_is_held_across_a_reload(tmp_path: Path, feeds: FakeServer) -> None:  # noqa: F811
    # Released at the stop and taken again by the new service: a `miner replay` (or a second `miner run`) on the store
    # starting in between took it, and the reload then failed on it twice (the config before too), and `miner run`
    # exited 1.
    cfg = tmp_path / "feeds.toml"
    db = tmp_path / "miner.sqlite"
    write_config(cfg, feeds.url)
    built: list[Service] = []
    rivals: list[str] = []
    with reloading(cfg, rivalled(db, built, rivals)) as hup:
        wait_for(lambda: bool(built) and built[0].health["collect"].runs == 1)
        hup()
        wait_for(lambda: len(built) == 2 and built[1].health["collect"].runs == 1)
        assert len(rivals) == 1 and "another miner service" in rivals[0] and "is already using" in rivals[0]
    assert not built[1].lock.held
    rival = ServiceLock(db, role="replay")
    rival.acquire()  # released at the stop
    rival.release()


def test_the_lock_goes_to_the_config_before_when_the_new_one_fails_to_start(
        tmp_path: Path, feeds: FakeServer, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    cfg = tmp_path / "feeds.toml"
    db = tmp_path / "miner.sqlite"
    write_config(cfg, feeds.url)
    built: list[Service] = []
    rivals: list[str] = []
    with reloading(cfg, rivalled(db, built, rivals)) as hup:
        wait_for(lambda: bool(built) and built[0].health["collect"].runs == 1)
        # A store that is no SQLite file: only the start finds out, once the service before has stopped.
        (tmp_path / "other.sqlite").write_bytes(b"not a database " * 512)
        write_config(cfg, feeds.url)
        cfg.write_text(cfg.read_text().replace("miner.sqlite", "other.sqlite"))
        hup()
        wait_for(lambda: len(built) == 3 and built[2].health["collect"].runs == 1)
        assert "config reload failed: the service did not start with the new config" in caplog.text
        # Neither between the stop and the new service's start, nor between its failure and the start again.
        assert len(rivals) == 2 and all("is already using" in r for r in rivals), rivals
        assert built[2].lock.held
    assert not built[2].lock.held


def test_a_reload_to_a_store_another_process_holds_is_refused_with_the_service_before_untouched(
        tmp_path: Path, feeds: FakeServer, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    # Found at the new service's start, once the service before had stopped: that one was started again, its jobs
    # and endpoint anew. Taken while it runs, as nginx and Prometheus refuse a config they cannot apply.
    cfg = tmp_path / "feeds.toml"
    db = tmp_path / "miner.sqlite"
    write_config(cfg, feeds.url)
    built: list[Service] = []
    rivals: list[str] = []
    other = ServiceLock(tmp_path / "other.sqlite", role="replay")
    with reloading(cfg, rivalled(db, built, rivals)) as hup:
        wait_for(lambda: bool(built) and built[0].health["collect"].runs == 1)
        other.acquire()
        try:
            write_config(cfg, feeds.url)
            cfg.write_text(cfg.read_text().replace("miner.sqlite", "other.sqlite"))
            hup()
            wait_for(lambda: "config reload failed" in caplog.text)
        finally:
            other.release()
        failed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("config reload failed")]
        assert failed == [f"config reload failed, still running with the config read before: another miner replay "
                          f"(pid {os.getpid()}) is already using {tmp_path / 'other.sqlite'}; stop it first, or "
                          "give this one its own --db"], failed
        # Nothing stopped: no service was handed anything, and the one before runs on with its lock.
        assert len(built) == 2 and rivals == [] and built[0].lock.held and not built[1].lock.held
        assert built[0].health["collect"].runs == 1 and not built[0]._stop.is_set()
    assert not built[0].lock.held


def stored_ids(db: Path) -> set[str]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        return {row[0].rsplit("/", 1)[-1] for row in conn.execute("SELECT external_id FROM posts")}


def disk_full(service: Service) -> None:
    """The collect job's next connection is on a disk with no room left (SQLite's own limit)."""
    if (previous := service._stores.open.get("collect")) is not None:
        previous.close()
    store = Store.open(service.db_path)
    store.database.execute(f"PRAGMA max_page_count = {store.database.one('PRAGMA page_count')['page_count']}")
    service._stores.open["collect"] = store


def test_polls_held_while_the_store_takes_no_writes_go_to_the_service_after_a_reload(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Still held at the reload's stop (the store full then too), they were lost with a warning: the new service
    # polled the source again from the store's cursor, and the items that had scrolled off the feed since were gone.
    cfg = tmp_path / "feeds.toml"
    db = tmp_path / "miner.sqlite"
    built: list[Service] = []

    make = full_disk_first(db, built)

    with FakeServer() as feed:
        served = ["n-"]

        def reply(request: object) -> Reply:
            return roomy_feed(served[0])

        feed.serve("/alpha.rss", reply)
        write_config(cfg, feed.url)
        with reloading(cfg, make) as hup:
            wait_for(lambda: bool(built) and built[0].health["collect"].runs == 1)
            assert "3 posts of 1 poll are held in memory" in str(built[0].health["collect"].last_error)
            disk_full(built[0])  # still full at the stop's last try
            served[0] = "m-"  # the items polled have scrolled off the feed
            hup()
            wait_for(lambda: len(built) == 2 and built[1].health["collect"].runs == 1)
            assert built[1].health["collect"].last_error is None
            assert stored_ids(db) == {"n-0", "n-1", "n-2"}
            assert len(feed.requests_to("/alpha.rss")) == 1  # polled again on the schedule the held poll set
    assert "they are lost" not in caplog.text


def test_polls_held_for_a_source_whose_url_a_reload_changed_leave_it_to_start_afresh(tmp_path: Path) -> None:
    # Stored after the new service had reset the source's poll state (its url changed), the held polls wrote the old
    # feed's back: its validators, cursor and last success, and its next poll an interval on, so the new url was
    # first polled an hour later, with the old feed's validators and its undated items not taken as backlog.
    cfg = tmp_path / "feeds.toml"
    db = tmp_path / "miner.sqlite"
    built: list[Service] = []

    make = full_disk_first(db, built)

    with FakeServer() as feed:
        feed.serve("/alpha.rss", roomy_feed("n-"))
        feed.serve("/moved/alpha.rss", roomy_feed("m-"))
        write_config(cfg, feed.url)
        with reloading(cfg, make) as hup:
            wait_for(lambda: bool(built) and built[0].health["collect"].runs == 1)
            assert "3 posts of 1 poll are held in memory" in str(built[0].health["collect"].last_error)
            disk_full(built[0])  # still full at the stop's last try
            write_config(cfg, f"{feed.url}/moved")
            hup()
            wait_for(lambda: len(built) == 2 and built[1].health["collect"].runs == 1)
            assert built[1].health["collect"].last_error is None
            assert len(feed.requests_to("/moved/alpha.rss")) == 1  # at once, as a source whose url changed is
            assert stored_ids(db) == {"n-0", "n-1", "n-2", "m-0", "m-1", "m-2"}  # the held posts kept too
    store = Store.open(db)
    try:
        row = store.source_row("alpha")
        assert row is not None and row["polls"] == 2 and row["url"].endswith("/moved/alpha.rss")
    finally:
        store.close()


def report(port: int) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{port}/report", json={"service": "MTN", "symptom": "connectivity"}, timeout=10)


def test_a_reload_keeps_the_report_rate_limits_and_the_reporter_of_the_day(tmp_path: Path,
                                                                       feeds: FakeServer) -> None:  # noqa: F811
    # Both started afresh in the new service: a client that had used its hour's reports got a new burst at each
    # reload, and its reports after it were a second complainer in the same bucket (a new key of the day).
    from miner.service import JobSpec, Service, ServiceOptions

    cfg = tmp_path / "feeds.toml"
    db = tmp_path / "miner.sqlite"

    def configure(rate: int) -> None:
        write_config(cfg, feeds.url, 0)  # any free port, kept by each reload (the same host and port: handed over)
        cfg.write_text(cfg.read_text().replace("port = 0\n", f"port = 0\nreport_rate_per_hour = {rate}\n"))

    configure(3)
    built: list[Service] = []

    def make(config: Config) -> Service:
        built.append(Service(config, db, ServiceOptions(jobs=(JobSpec("collect", 3600.0),))))
        return built[-1]

    def started(n: int) -> Callable[[], bool]:
        return lambda: len(built) > n and built[n].health["collect"].runs == 1

    with reloading(cfg, make) as hup:
        wait_for(started(0))
        port = bound_port(built[0])
        assert [report(port).status_code for _ in range(2)] == [202, 202]
        hup()  # unchanged
        wait_for(started(1))
        assert [report(port).status_code for _ in range(2)] == [202, 429]
        configure(30)  # a higher rate: the client's bucket, empty, fills at the new rate
        hup()
        wait_for(started(2))
        refused = report(port)
        assert refused.status_code == 429 and 0 < int(refused.headers["Retry-After"]) <= 120
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        authors = [row[0] for row in conn.execute("SELECT author_hash FROM posts WHERE source = 'reports'")]
    assert len(authors) == 3 and len(set(authors)) == 1 and authors[0]

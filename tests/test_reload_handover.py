"""What a reload hands from the service it stops to the one it starts, in a real service run by the reloader in a
thread (Signals.handle is what the signal handlers call), on a real store: the store lock, held throughout."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fakeserver import FakeServer
from test_reload import feeds, free_port, write_config  # noqa: F401 (feeds: the fixture)

from miner.errors import MinerError
from miner.service_lock import ServiceLock

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


def collector(options: ServiceOptions | None = None) -> ServiceOptions:
    from miner.service import JobSpec, ServiceOptions

    return options or ServiceOptions(jobs=(JobSpec("collect", 3600.0),), http=False)


def rivalled(db: Path, built: list[Service], rivals: list[str]) -> Callable[[Config], Service]:
    """A ``make`` that, from the second service on, first has a `miner replay` try the store lock: the service
    before has stopped by then and the new one has not started."""
    from miner.service import Service

    def make(config: Config) -> Service:
        if built:
            rival = ServiceLock(db, role="replay")
            try:
                rival.acquire()
            except MinerError as exc:
                rivals.append(str(exc))
            else:
                rivals.append("taken")
                rival.release()
        built.append(Service(config, db, collector()))
        return built[-1]

    return make


def test_the_store_lock_is_held_across_a_reload(tmp_path: Path, feeds: FakeServer) -> None:  # noqa: F811
    # Released at the stop and taken again by the new service: a `miner replay` (or a second `miner run`) on the store
    # starting in between took it, and the reload then failed on it twice (the config before too), and `miner run`
    # exited 1.
    cfg = tmp_path / "feeds.toml"
    db = tmp_path / "miner.sqlite"
    write_config(cfg, feeds.url, free_port())
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
    write_config(cfg, feeds.url, free_port())
    built: list[Service] = []
    rivals: list[str] = []
    with reloading(cfg, rivalled(db, built, rivals)) as hup:
        wait_for(lambda: bool(built) and built[0].health["collect"].runs == 1)
        (tmp_path / "no-model").mkdir()
        write_config(cfg, feeds.url, free_port(), extra='\n[classifier]\nmodel_dir = "no-model"\n')
        hup()
        wait_for(lambda: len(built) == 3 and built[2].health["collect"].runs == 1)
        assert "config reload failed: the service did not start with the new config" in caplog.text
        # Neither between the stop and the new service's start, nor between its failure and the start again.
        assert len(rivals) == 2 and all("is already using" in r for r in rivals), rivals
        assert built[2].lock.held
    assert not built[2].lock.held

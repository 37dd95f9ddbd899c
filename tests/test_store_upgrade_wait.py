"""A wait for another process's upgrade of the store (up to 15 minutes) ends at a signal: real SQLite files, the real
CLI in a subprocess, a real service."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_interrupts import ended, env, opened, start, wait_for
from test_store_upgrade import _release_0_1_0_store, write_lock_held

from miner.errors import StoreError


@pytest.fixture
def upgrading(tmp_path: Path) -> Iterator[Path]:
    """A store of 0.1.0, its write lock held by another process (as for a long migration) for longer than a test."""
    path = tmp_path / "miner.sqlite"
    _release_0_1_0_store(path, buckets=10)
    with write_lock_held(path, 300):
        yield path


def config(tmp_path: Path, store: Path) -> Path:
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(f'[store]\npath = "{store}"\n[[services]]\nname = "MTN"\n'
                   '[[sources]]\nname = "s"\ntype = "rss"\nurl = "http://127.0.0.1:9/s.rss"\n', encoding="utf-8")
    return cfg


@pytest.mark.usefixtures("sigint_as_from_a_terminal")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_command_waiting_for_another_process_upgrading_the_store_stops_at_a_signal(
        tmp_path: Path, upgrading: Path, sig: int) -> None:
    # SQLite's wait for the lock (a busy timeout of 15 minutes) held off Python's signal handlers: a cron job's
    # `miner collect --once`, or Ctrl-C at a terminal, was not answered until the other process's upgrade ended.
    proc = start(tmp_path, "--config", str(config(tmp_path, upgrading)), "collect", "--once")
    wait_for(lambda: opened(proc, upgrading), proc)
    time.sleep(0.5)  # waiting for the lock
    sent = time.monotonic()
    proc.send_signal(sig)
    code, _out, _err = ended(proc, sig)
    assert code == {signal.SIGINT: 130, signal.SIGTERM: 143}[sig]
    assert time.monotonic() - sent < 10


def test_a_service_starting_while_another_process_upgrades_the_store_stops_when_asked(
        tmp_path: Path, upgrading: Path) -> None:
    # A SIGTERM (systemd's stop) only asks the service to stop: its start went on waiting for the lock.
    from miner.config import load_config
    from miner.service import JobSpec, Service, ServiceOptions

    service = Service(load_config(config(tmp_path, upgrading)), upgrading,
                      ServiceOptions(jobs=(JobSpec("collect", 15.0),), http=False))
    failed: list[BaseException] = []

    def run() -> None:
        try:
            service.start()
        except BaseException as exc:
            failed.append(exc)
        else:
            service.stop()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    time.sleep(1.0)  # waiting for the lock, at the check that the store takes writes
    assert thread.is_alive()
    service.request_stop()
    thread.join(timeout=10)
    assert not thread.is_alive(), "still waiting for the lock 10 s after the stop was asked for"
    assert isinstance(failed[0], StoreError)


def test_miner_run_stopped_while_another_process_upgrades_the_store_exits_as_stopped(
        tmp_path: Path, upgrading: Path) -> None:
    # Stopped by systemd while it waited, the service exited 1 with "locked by another writer": not what happened.
    proc = start(tmp_path, "--config", str(config(tmp_path, upgrading)), "run", "--no-http")
    wait_for(lambda: opened(proc, upgrading), proc)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    try:
        _out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"still running 30 s after SIGTERM: {proc.communicate()}") from None
    assert proc.returncode == 0, err
    assert "stopped before the service started, while it waited for the store" in err


def test_a_command_that_only_looks_during_the_services_upgrade_says_to_wait_for_it(
        tmp_path: Path, upgrading: Path) -> None:
    # `miner status` asked while the service upgraded the store said "run `miner run`", which was running.
    cfg = str(config(tmp_path, upgrading))
    proc = start(tmp_path, "--config", cfg, "run", "--no-http")
    wait_for(lambda: opened(proc, upgrading), proc)

    def status() -> str:
        res = subprocess.run([sys.executable, "-m", "miner", "--config", cfg, "status"], cwd=tmp_path, env=env(),
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 1
        return res.stderr

    try:
        err = status()
        assert f"the miner service running on it (pid {proc.pid}) upgrades it as it starts" in err, err
        assert "run `miner run`" not in err
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert "run `miner run`" in status()  # nothing holds the store's lock now

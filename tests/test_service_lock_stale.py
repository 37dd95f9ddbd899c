"""Whether a service holds the store is asked of its lock, not of the PID in `<store>.lock`: a service killed with
SIGKILL leaves its PID there, and once the system gives that PID to another process, `miner status` said a service
was running. Real SQLite stores, a real `miner run` and real processes holding the lock or named by a stale file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_interrupts import env, start, wait_for
from test_store_upgrade import _release_0_1_0_store

from miner.cli import main
from miner.errors import MinerError
from miner.service_lock import ServiceLock, lock_owner
from miner.store import Store

NONE = {"running": False, "pid": None, "holder": None}


def config(tmp_path: Path, store: Path) -> Path:
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(f'[store]\npath = "{store}"\n[[services]]\nname = "MTN"\n'
                   '[[sources]]\nname = "s"\ntype = "rss"\nurl = "http://127.0.0.1:9/s.rss"\n', encoding="utf-8")
    return cfg


def status(cfg: Path, *fmt: str) -> str:
    res = CliRunner().invoke(main, ["--config", str(cfg), "status", *fmt])
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture
def live_process() -> Iterator[int]:
    """The PID of a live process that is no miner: what the system may give a dead service's PID to."""
    proc = subprocess.Popen(["sleep", "600"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_a_service_killed_by_sigkill_reads_as_stopped_once_its_pid_names_another_process(
        tmp_path: Path, live_process: int) -> None:
    db = tmp_path / "miner.sqlite"
    cfg = config(tmp_path, db)
    lock = Path(f"{db}.lock")
    Store.open(db).close()  # the lock is taken before the store is made
    proc = start(tmp_path, "--config", str(cfg), "run", "--no-http")
    try:
        wait_for(lambda: lock.exists() and lock.read_text().split()[:1] == [str(proc.pid)], proc)
        for _ in range(2):  # asking leaves the service's hold as it was
            assert json.loads(status(cfg, "--format", "json"))["service"] == {
                "running": True, "pid": proc.pid, "holder": "service"}
        with pytest.raises(MinerError, match=f"another miner service \\(pid {proc.pid}\\)"):
            ServiceLock(db, role="replay").acquire()
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    assert lock.read_text() == f"{proc.pid} service\n"  # the kernel dropped the lock; the file still names it

    # The system gives that PID to another process: the file then names a live one.
    lock.write_text(f"{live_process} service\n", encoding="ascii")
    assert json.loads(status(cfg, "--format", "json"))["service"] == NONE
    assert status(cfg).splitlines()[0].startswith("service: no `miner run` is running on this store: nothing polls")
    with ServiceLock(db):  # and a service starts on it
        assert lock_owner(db) == (os.getpid(), "service")


@pytest.mark.parametrize("role", ["service", "replay"])
def test_a_lock_file_naming_a_live_process_that_does_not_hold_the_lock_names_no_holder(
        tmp_path: Path, role: str) -> None:
    # This test's own process: alive, holding nothing.
    db = tmp_path / "miner.sqlite"
    cfg = config(tmp_path, db)
    Store.open(db).close()
    Path(f"{db}.lock").write_text(f"{os.getpid()} {role}\n", encoding="ascii")
    assert lock_owner(db) is None
    assert json.loads(status(cfg, "--format", "json"))["service"] == NONE


def test_a_stale_lock_file_does_not_say_a_service_upgrades_an_older_store(tmp_path: Path, live_process: int) -> None:
    # A read-only command on a store needing an upgrade told the user to wait for the service's upgrade: none ran.
    db = tmp_path / "miner.sqlite"
    _release_0_1_0_store(db, buckets=2)
    Path(f"{db}.lock").write_text(f"{live_process} service\n", encoding="ascii")
    res = subprocess.run([sys.executable, "-m", "miner", "--config", str(config(tmp_path, db)), "status"],
                         cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res.stderr
    assert "run `miner run`" in res.stderr and "the miner service running on it" not in res.stderr, res.stderr


def test_a_held_lock_whose_file_names_no_pid_reads_as_a_service_running(tmp_path: Path) -> None:
    # A service that could not write its PID (a full disk) holds the store all the same: it read as none running.
    db = tmp_path / "miner.sqlite"
    cfg = config(tmp_path, db)
    Store.open(db).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys\n"
         f"fd = os.open({str(db) + '.lock'!r}, os.O_RDWR | os.O_CREAT)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\nsys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert json.loads(status(cfg, "--format", "json"))["service"] == {
            "running": True, "pid": None, "holder": "service"}
        assert status(cfg).splitlines()[0] == "service: `miner run` is running on this store (pid unknown)"
    finally:
        holder.communicate(timeout=30)

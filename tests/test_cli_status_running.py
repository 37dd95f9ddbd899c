"""`miner status` says whether a `miner run` is running on the store: it read the same with the service stopped (it
crashed, or was never started) as running, each source's next poll long past the only sign."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from miner.cli import main
from miner.service_lock import ServiceLock
from miner.store import Store


@pytest.mark.parametrize(("role", "line", "running"), [
    (None, "service: no `miner run` is running on this store: nothing polls, classifies or alerts until it is "
           "started (the next polls below are when it would poll)", {"running": False, "pid": None, "holder": None}),
    ("service", "service: `miner run` is running on this store (pid {pid})",
     {"running": True, "pid": "{pid}", "holder": "service"}),
    ("replay", "service: no `miner run` is running on this store; a `miner replay` (pid {pid}) holds it: nothing "
               "polls, classifies or alerts", {"running": False, "pid": "{pid}", "holder": "replay"}),
])
def test_status_says_whether_a_service_is_running_on_the_store(tmp_path: Path, role: str | None, line: str,
                                                               running: dict[str, object]) -> None:
    cfg, db = tmp_path / "feeds.toml", tmp_path / "miner.sqlite"
    cfg.write_text('[[services]]\nname = "MTN"\n')
    Store.open(db).close()
    lock = ServiceLock(db, role=role) if role else None
    if lock is not None:
        lock.acquire()  # as the process holding it: this one, alive
    try:
        base = ["--config", str(cfg), "--db", str(db), "status"]
        text = CliRunner().invoke(main, base)
        data = CliRunner().invoke(main, [*base, "--format", "json"])
    finally:
        if lock is not None:
            lock.release()
    assert text.exit_code == 0 and data.exit_code == 0, text.output + data.output
    pid = os.getpid()
    assert text.output.splitlines()[0].startswith(line.format(pid=pid)), text.output
    expected = {k: pid if v == "{pid}" else v for k, v in running.items()}
    assert json.loads(data.output)["service"] == expected


def test_a_role_the_lock_file_names_reaches_the_terminal_without_its_controls(tmp_path: Path) -> None:
    # The lock file is anyone's text who can write the store's folder (the service's user): its role, printed raw,
    # drove the terminal of whoever ran `miner status` (an OSC 52 clipboard write, a title, a cleared screen).
    cfg, db = tmp_path / "feeds.toml", tmp_path / "miner.sqlite"
    cfg.write_text('[[services]]\nname = "MTN"\n')
    Store.open(db).close()
    Path(f"{db}.lock").write_text(f"{os.getpid()} \x1b]52;c;cGF5bG9hZA==\x07\x1b[2Jreplay\u202e", encoding="utf-8")
    fd = os.open(f"{db}.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held, as by the process its file names
        text = CliRunner().invoke(main, ["--config", str(cfg), "--db", str(db), "status"])
    finally:
        os.close(fd)
    assert text.exit_code == 0, text.output
    first = text.output.splitlines()[0]
    assert "\x1b" not in text.output and "\x07" not in text.output, first
    assert first.startswith("service: no `miner run` is running on this store; a `miner \\x1b]52;c;cGF5bG9hZA==\\x07"
                            "\\x1b[2Jreplay"), first


@pytest.mark.parametrize("pid", ["99999999999999999999", "0", "-1"])
def test_a_lock_file_naming_no_process_says_none_is_running(tmp_path: Path, pid: str) -> None:
    # A PID past what kill() takes raised OverflowError out of `miner status` ("internal error"); 0 and -1 name no
    # process, but this one's group or every one, which kill(pid, 0) found alive: "`miner run` is running (pid -1)".
    cfg, db = tmp_path / "feeds.toml", tmp_path / "miner.sqlite"
    cfg.write_text('[[services]]\nname = "MTN"\n')
    Store.open(db).close()
    Path(f"{db}.lock").write_text(f"{pid} service\n", encoding="ascii")
    data = CliRunner().invoke(main, ["--config", str(cfg), "--db", str(db), "status", "--format", "json"])
    assert data.exit_code == 0, data.output
    assert json.loads(data.output)["service"] == {"running": False, "pid": None, "holder": None}

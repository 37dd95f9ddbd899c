"""SIGHUP (the terminal closed, the session ended) during `miner backup` and `miner train`, which write a temporary copy
or a staging folder to rename into place, as `classify -o` and `detect -o` write a temporary file (see
test_classify_hangup.py): the run ends as at SIGTERM, with status 129 and one line, the temporary copy or staging folder
removed and the destination as it was, where SIGHUP's default action killed it and left them behind."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from test_classify_train import TWICE, _digests, _previous_model, _write

from miner.records import Post
from miner.store import Store

ROOT = Path(__file__).resolve().parent.parent


def _env(**extra: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("MINER_CONFIG", "MINER_DB")} | {
        "PYTHONPATH": str(ROOT), **extra}


def _hangup_as_from_a_terminal() -> None:
    """SIGHUP's default action in the command started, as a terminal's session starts it: a suite run under `nohup`
    would pass on SIGHUP ignored, which the commands rightly keep ignoring."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def _start(args: list[str], **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env=_env(**extra), preexec_fn=_hangup_as_from_a_terminal)


def _hung_up_when(made: Callable[[], bool], proc: subprocess.Popen[str]) -> tuple[int, str]:
    """Send SIGHUP once ``made()`` holds, the command still running: (exit status, stderr)."""
    deadline = time.monotonic() + 120
    try:
        while not made():
            assert proc.poll() is None, f"exited early ({proc.returncode}): {proc.communicate()}"
            assert time.monotonic() < deadline, "nothing made in 120 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGHUP)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, err


def _held_backup(tmp_path: Path) -> tuple[list[str], Path]:
    """The command line of a backup of a small store that waits, once its copy is made, until a signal comes; and its
    TARGET."""
    db = tmp_path / "m.sqlite"
    store = Store.open(db)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    store.insert_posts([Post("feed", str(i), f"post {i}", at) for i in range(100)], at)
    store.close()
    target = tmp_path / "backups" / "b.sqlite"
    # The copy is whole and checked, about to be linked to TARGET: held there until SIGHUP comes, which a backup of a
    # small store otherwise reaches within a millisecond of making its temporary copy, before the test sees it. The
    # gate is a FIFO no one writes to: opening it waits until a signal interrupts the wait.
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    code = textwrap.dedent(f"""
        import os
        from miner.entry import main
        link = os.link
        def held(*args, **kwargs):
            open({str(gate)!r}, "rb").close()
            return link(*args, **kwargs)
        os.link = held
        main()
    """)
    return [sys.executable, "-c", code, "--db", str(db), "backup", str(target)], target


def test_sighup_during_a_backup_removes_its_temporary_copy(tmp_path: Path) -> None:
    args, target = _held_backup(tmp_path)
    proc = _start(args)
    code_, err = _hung_up_when(lambda: any(target.parent.glob(".b.sqlite.*.tmp")), proc)
    assert code_ == 128 + signal.SIGHUP, err
    assert err == "Interrupted by SIGHUP\n"
    assert list(target.parent.iterdir()) == []  # neither TARGET nor the temporary copy (nor its -journal)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backups", "gate", "m.sqlite"]


def test_sighup_during_training_removes_the_staging_folder_and_keeps_the_model(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    data = _write(tmp_path / "t.jsonl", TWICE)
    out = _previous_model(tmp_path / "model")
    before = _digests(out)
    # --reuse-oof from a FIFO (as `<(zcat oof.jsonl.gz)` gives one), read once the staging folder is made: the build
    # waits on it, its staging folder there, until SIGHUP comes, with no training to wait for.
    oof = tmp_path / "oof.jsonl"
    os.mkfifo(oof)
    args = ["train", "--data", str(data), "--out", str(out), "--no-extra", "--weak", "0", "--folds", "0",
            "--max-steps", "1", "--reuse-oof", str(oof)]
    proc = _start([sys.executable, "-m", "miner", *args], MINER_SHARED_DATA=str(tmp_path / "none"))
    code, err = _hung_up_when(lambda: any(out.glob(".train-*")), proc)
    assert code == 128 + signal.SIGHUP, err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == "Interrupted by SIGHUP"
    assert _digests(out) == before  # the previous model, and no staging folder beside it


def test_a_backup_whose_terminal_closes_exits_129_and_leaves_nothing(tmp_path: Path) -> None:
    # The terminal itself closing, as a window or an ssh session does: the kernel sends SIGHUP, and every write to the
    # terminal fails after it (EIO). Writing "Interrupted by SIGHUP" there failed, and the backup, cleaned up, exited 1.
    args, target = _held_backup(tmp_path)
    master, slave = pty.openpty()
    name = os.ttyname(slave)

    def in_the_terminal() -> None:  # a session of its own (start_new_session), whose terminal is the pty
        os.close(os.open(name, os.O_RDWR))
        _hangup_as_from_a_terminal()

    try:
        proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, env=_env(),
                                start_new_session=True, preexec_fn=in_the_terminal)
    finally:
        os.close(slave)
    try:
        deadline = time.monotonic() + 120
        while not any(target.parent.glob(".b.sqlite.*.tmp")):
            assert proc.poll() is None, f"exited early ({proc.returncode})"
            assert time.monotonic() < deadline, "no temporary copy made in 120 s"
            time.sleep(0.05)
        os.close(master)  # the terminal closes
        master = -1
        assert proc.wait(timeout=120) == 128 + signal.SIGHUP
    finally:
        if master >= 0:
            os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert list(target.parent.iterdir()) == []

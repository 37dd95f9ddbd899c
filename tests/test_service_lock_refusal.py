"""The refusal of a second miner on a store names the lock's holder as its file does, without the file's controls."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from miner.cli import main
from miner.errors import MinerError
from miner.service_lock import ServiceLock
from miner.store import Store


def test_the_refusal_names_the_lock_files_role_and_pid_without_their_controls(tmp_path: Path) -> None:
    # The lock file is anyone's text who can write the store's folder (the service's user): its role, printed raw in
    # the refusal, drove the terminal of whoever was refused (an OSC 52 clipboard write, a cleared screen).
    db = tmp_path / "miner.sqlite"
    Store.open(db).close()
    lock = Path(f"{db}.lock")
    lock.write_text("4\x1b[2J2 \x1b]52;c;cGF5bG9hZA==\x07replay\u202e\n", encoding="utf-8")
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a holder that is alive, as the file's would be
        with pytest.raises(MinerError) as refused:
            ServiceLock(db, role="demo").acquire()
        message = str(refused.value)
        assert "\x1b" not in message and "\x07" not in message, message
        assert message.startswith("another miner \\x1b]52;c;cGF5bG9hZA==\\x07replay\ufffd\ufffd\ufffd (pid 4\\x1b[2J2) "
                                  "is already using "), message

        # And as `miner replay` prints it.
        cfg, posts = tmp_path / "feeds.toml", tmp_path / "posts.jsonl"
        cfg.write_text('[[services]]\nname = "MTN"\n')
        posts.write_text('{"id": "1", "text": "MTN is down", "source": "replayed", '
                         '"created_at": "2026-12-01T10:00:00+00:00"}\n')
        result = CliRunner().invoke(main, ["--config", str(cfg), "--db", str(db), "replay", str(posts)])
        assert result.exit_code == 1, result.output
        assert "\x1b" not in result.output and "another miner \\x1b]52;c;" in result.output, result.output
    finally:
        os.close(fd)

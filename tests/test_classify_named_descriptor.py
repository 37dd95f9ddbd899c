"""`miner classify -o /dev/stdout` (or /dev/stderr, /dev/fd/N) writes through the descriptor the caller opened: with
standard output a regular file, the rows went to a temporary file renamed onto it, so `>> log.jsonl` lost the log's
earlier lines, and what the calling script wrote to its standard output afterwards went to the file replaced."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_output_named_by_a_descriptor_is_appended_to_as_the_shell_opened_it(tmp_path: Path) -> None:
    posts = tmp_path / "posts.jsonl"
    posts.write_bytes(b'{"id": 1, "text": "whatsapp is down"}\n{"id": 2, "text": "calm down"}\n')
    env = {k: v for k, v in os.environ.items() if k != "MINER_CONFIG"} | {"PYTHONPATH": str(ROOT)}
    for name, fd in (("/dev/stdout", 1), ("/dev/stderr", 2), ("/dev/fd/1", 1)):
        log = tmp_path / "log.jsonl"
        log.write_bytes(b'{"earlier": "line"}\n')
        inode = log.stat().st_ino
        with log.open("ab") as appended:
            streams = {"stdout": appended} if fd == 1 else {"stderr": appended, "stdout": subprocess.DEVNULL}
            proc = subprocess.run([sys.executable, "-m", "miner", "classify", str(posts), "-o", name], cwd=tmp_path,
                                  env=env, timeout=120, **streams)  # type: ignore[call-overload]
            appended.write(b'{"after": "line"}\n')  # the caller goes on writing to the file it opened
        assert proc.returncode == 0, name
        assert log.stat().st_ino == inode, name
        lines = [line for line in log.read_text().splitlines() if line.startswith("{")]  # stderr: "classifying"
        assert [line.split(",")[0] for line in lines] == ['{"earlier": "line"}', '{"id": 1', '{"id": 2',
                                                          '{"after": "line"}'], name
        assert sorted(p.name for p in tmp_path.iterdir()) == ["log.jsonl", "posts.jsonl"], name

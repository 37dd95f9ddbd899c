"""SIGHUP (the terminal closed, the session ended) during `miner classify -o`: the run ends as at SIGTERM, its temporary
file removed and the -o file left as it was, where SIGHUP's default action killed it with the temporary file left
behind (.NAME.XXXXXXXX.tmp, beside the -o one)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "MINER_CONFIG"} | {"PYTHONPATH": str(ROOT)}


def _started(proc: subprocess.Popen[bytes], folder: Path) -> None:
    """Wait for the run's temporary file: its signal handlers are in place before it is made."""
    deadline = time.monotonic() + 120
    while not list(folder.glob(".out.jsonl.*.tmp")):
        # Its stderr read only once it ended: read while it runs (no temporary file made), the read waited for ever.
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "no temporary file made"
        time.sleep(0.05)


def test_sighup_leaves_the_output_file_as_it_was_and_no_temporary_file(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text("an earlier run's rows\n")
    proc = subprocess.Popen([sys.executable, "-m", "miner", "classify", "-", "-o", str(out)], stdin=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=tmp_path, env=_env())
    assert proc.stdin is not None and proc.stderr is not None
    try:
        proc.stdin.write(b'{"id": 1, "text": "whatsapp is down"}\n')  # and the pipe left open: the run waits on it
        proc.stdin.flush()
        _started(proc, tmp_path)
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=120) == 128 + signal.SIGHUP
        stderr = proc.stderr.read().decode()
    finally:
        proc.kill()
        proc.wait()
        proc.stdin.close()
        proc.stderr.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]
    assert out.read_text() == "an earlier run's rows\n"
    assert f"{out}: not written (the file there is an earlier run's)" in stderr
    assert stderr.splitlines()[-1] == "Interrupted by SIGHUP"


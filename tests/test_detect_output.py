"""`miner detect -o` writes as `miner classify -o` does: through a descriptor named by a path (/dev/stdout), and
otherwise through a temporary file renamed onto the -o file once all rows are written. It was written in place:
`-o /dev/stdout >> log.csv` emptied the log first, a full disk left the -o file cut short with its earlier rows gone,
and nothing of a run cut short by a signal said the file was not this run's (SIGHUP killed it outright)."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EARLIER = "timestamp,value,score,opened\n2025-03-03 00:00:00,1,0.0000,0\n"


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "MINER_CONFIG"} | {"PYTHONPATH": str(ROOT),
                                                                            "PYTHONDONTWRITEBYTECODE": "1"}


def _series(rows: int) -> bytes:
    lines = ["timestamp,value"] + [f"2025-03-03 {i // 12:02d}:{i % 12 * 5:02d}:00,{20 + i % 7}" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def test_output_named_by_a_descriptor_is_appended_to_as_the_shell_opened_it(tmp_path: Path) -> None:
    series = tmp_path / "series.csv"
    series.write_bytes(_series(24))
    log = tmp_path / "log.csv"
    log.write_text("earlier line\n")
    inode = log.stat().st_ino
    with log.open("a") as appended:
        proc = subprocess.run([sys.executable, "-m", "miner", "detect", str(series), "-o", "/dev/stdout"],
                              stdout=appended, stderr=subprocess.PIPE, cwd=tmp_path, env=_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert log.stat().st_ino == inode
    lines = log.read_text().splitlines()
    assert lines[:2] == ["earlier line", "timestamp,value,score,opened"]
    assert len(lines) == 2 + 24
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv", "series.csv"]


def test_a_write_that_fails_leaves_the_output_file_as_it_was(tmp_path: Path) -> None:
    # A file size limit stands in for a full disk: the write fails part-way (EFBIG; Python ignores SIGXFSZ).
    series = tmp_path / "series.csv"
    series.write_bytes(_series(288))  # some 9 KB of scores
    out = tmp_path / "out.csv"
    out.write_text(EARLIER)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    proc = subprocess.run([sys.executable, "-m", "miner", "detect", str(series), "-o", str(out)],
                          stderr=subprocess.PIPE, cwd=tmp_path, env=_env(), timeout=120, preexec_fn=limit)
    stderr = proc.stderr.decode()
    assert proc.returncode == 1, stderr
    assert out.read_text() == EARLIER
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "series.csv"]
    assert f"{out}: not written (the file there is an earlier run's)" in stderr
    assert stderr.splitlines()[-1] == f"Error: cannot write {out} (File too large)"


def test_a_descriptor_that_takes_no_write_is_said_as_the_write_error(tmp_path: Path) -> None:
    # -o /dev/fd/3 with 3 opened for reading: the write's error was said, then the close flushed the rows still
    # buffered and failed again, and that "internal error: OSError: [Errno 9] Bad file descriptor" replaced it.
    series = tmp_path / "series.csv"
    series.write_bytes(_series(24))
    other = tmp_path / "other.csv"
    other.write_text(EARLIER)
    with other.open("rb") as read_only:
        fd = read_only.fileno()
        proc = subprocess.run([sys.executable, "-m", "miner", "detect", str(series), "-o", f"/dev/fd/{fd}"],
                              stderr=subprocess.PIPE, cwd=tmp_path, env=_env(), timeout=120, pass_fds=(fd,))
    stderr = proc.stderr.decode()
    assert proc.returncode == 1, stderr
    assert stderr.splitlines()[-1] == f"Error: cannot write /dev/fd/{fd} (Bad file descriptor)", stderr


# SIGINT as a terminal's Ctrl-C finds it: a suite run in a script's background starts with it ignored, and so would
# the command, which keeps it so (a SIGINT did nothing, and the test waited for its exit).
@pytest.mark.usefixtures("sigint_as_from_a_terminal")
@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM, signal.SIGINT])
def test_a_signal_leaves_the_output_file_as_it_was_and_no_temporary_file(tmp_path: Path, sig: int) -> None:
    out = tmp_path / "out.csv"
    out.write_text(EARLIER)
    proc = subprocess.Popen([sys.executable, "-m", "miner", "detect", "-", "-o", str(out)], stdin=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=tmp_path, env=_env())
    assert proc.stdin is not None and proc.stderr is not None
    try:
        proc.stdin.write(_series(12))  # and the pipe left open: the run waits on it, its -o file opened
        proc.stdin.flush()
        deadline = time.monotonic() + 120
        # Its signal handlers are in place before the temporary file is made.
        while not list(tmp_path.glob(".out.csv.*.tmp")):
            # Its stderr read only once it ended: read while it runs, the read waits for ever.
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "no temporary file made"
            time.sleep(0.05)
        proc.send_signal(sig)
        assert proc.wait(timeout=120) == 128 + sig
        stderr = proc.stderr.read().decode()
    finally:
        proc.kill()
        proc.wait()
        proc.stdin.close()
        proc.stderr.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]
    assert out.read_text() == EARLIER
    assert f"{out}: not written (the file there is an earlier run's)" in stderr
    assert stderr.splitlines()[-1] == f"Interrupted by {signal.Signals(sig).name}"

"""SIGINT and SIGTERM in the middle of a command's work, on the real CLI in a subprocess: one line, exit 130 or 143,
no traceback, nothing half-done (the store's transactions, the service lock, output files), and the work done before
the signal kept. `miner collect`'s stop is tested in test_interrupts_collect.py, `miner run`'s graceful stop (exit 0)
in test_service.py."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import gzip
import itertools
import json
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import termios
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fakeserver import FakeServer, Reply
from test_alerts_support import open_incident

from miner.replay import demo_stream_path
from miner.store import Store
from miner.timeutil import utcnow

ROOT = Path(__file__).resolve().parent.parent
EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


# Every test here sends SIGINT to a command, as a terminal's Ctrl-C would (see the fixture).
pytestmark = pytest.mark.usefixtures("sigint_as_from_a_terminal")


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("MINER_CONFIG", "MINER_DB")} | {"PYTHONPATH": str(ROOT)}


def start(tmp_path: Path, *args: str, **kwargs: object) -> subprocess.Popen[str]:
    kwargs.setdefault("env", env())
    return subprocess.Popen([sys.executable, "-m", "miner", *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)  # type: ignore[call-overload]


def wait_for(check: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if proc.poll() is not None:
            raise AssertionError(f"exited early ({proc.returncode}): {proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting: {proc.communicate()}")
        time.sleep(0.05)


def interrupt(proc: subprocess.Popen[str], sig: int) -> tuple[int, str, str]:
    """Send ``sig``, wait for the exit, and check the one line on stderr that says so."""
    os.kill(proc.pid, sig)
    return ended(proc, sig)


def ended(proc: subprocess.Popen[str], sig: int) -> tuple[int, str, str]:
    """Wait for the exit ``sig`` caused: (exit status, stdout, stderr), stderr ending in the line saying so."""
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"still running 60 s after {signal.Signals(sig).name}: {err}") from None
    assert "Traceback" not in err
    assert err.splitlines()[-1] == f"Interrupted by {signal.Signals(sig).name}", err
    return proc.returncode, out, err


def count(db: Path, sql: str) -> int:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            return int(conn.execute(sql).fetchone()[0])
        finally:
            conn.close()
    except sqlite3.OperationalError:  # no store or table yet
        return 0


def opened(proc: subprocess.Popen[str], path: Path) -> bool:
    """Whether ``proc`` holds ``path`` open (Linux)."""
    fds = Path(f"/proc/{proc.pid}/fd")
    try:
        return any(os.path.realpath(fd) == str(path.resolve()) for fd in fds.iterdir())
    except (FileNotFoundError, ProcessLookupError):  # it exited, or closed one while we looked
        return False


def cpu_seconds(proc: subprocess.Popen[str]) -> float:
    """The CPU time ``proc`` has used so far (Linux)."""
    fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime and stime


def still_running(proc: subprocess.Popen[str], sig: int) -> None:
    """Fail if ``proc`` exits within half a second of ``sig``: a command that stops at once has gone by then (on a
    loaded machine perhaps not, and the test passes). Not longer: the command waits for its step in flight only
    so long (5 s for a poll), and the test must let that step end well within it."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=0.5)
    assert proc.poll() is None, f"exited at once on {signal.Signals(sig).name}: {proc.communicate()}"


def demo_posts(path: Path, n: int) -> Path:
    with gzip.open(demo_stream_path(), "rt", encoding="utf-8") as fh:
        path.write_text("".join(itertools.islice(fh, n)), encoding="utf-8")
    return path


def store_config(tmp_path: Path, extra: str = "") -> Path:
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(f"""
[store]
path = "{tmp_path / 'miner.sqlite'}"
retention_days = 36500  # the demo stream's posts are from 2019

[[services]]
name = "MTN"
aliases = ["mtnug", "mtn uganda"]
{extra}""")
    return cfg


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_long_query_stops_at_once(tmp_path: Path, sig: int) -> None:
    # SQLite runs a statement without returning to Python, where signal handlers run: Ctrl-C did nothing until
    # the statement ended, here never.
    db = tmp_path / "miner.sqlite"
    cfg = store_config(tmp_path)
    Store.open(db).close()  # a store with its tables
    endless = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n"
    proc = start(tmp_path, "--config", str(cfg), "query", endless)
    wait_for(lambda: opened(proc, db), proc)
    # Well into the statement, which is all CPU: half a second of it since the store was opened (on a loaded
    # machine, far more than half a second of wall time).
    used = cpu_seconds(proc)
    wait_for(lambda: cpu_seconds(proc) > used + 0.5, proc)
    code, out, _ = interrupt(proc, sig)
    assert code == EXIT[sig]
    assert out == ""


def test_a_replay_stopped_by_sigterm_releases_the_lock_and_resumes(tmp_path: Path) -> None:
    # SIGTERM's default action killed the replay outright: no message, and no cleanup (the lock file still named
    # it). Now it ends like an error: the transaction in progress rolled back, the lock released, the store
    # closed, and a replay of the same file resumes where it stopped.
    posts = demo_posts(tmp_path / "posts.jsonl", 300)
    cfg = store_config(tmp_path)
    db = tmp_path / "miner.sqlite"
    args = ["--config", str(cfg), "replay", str(posts), "--out", str(tmp_path / "out")]
    # Paced, so that it is still going whenever the signal comes: 5 minutes of posts take 0.3 s.
    proc = start(tmp_path, *args, "--speed", "1000")
    wait_for(lambda: count(db, "SELECT count(*) FROM classifications") > 0, proc)
    code, out, _ = interrupt(proc, signal.SIGTERM)
    assert code == 143
    assert "replayed" not in out  # it did not run to its end
    assert (tmp_path / "miner.sqlite.lock").read_text() == ""  # released by miner, not only by the kernel
    stored = count(db, "SELECT count(*) FROM posts")
    assert 0 < stored < 300

    again = subprocess.run([sys.executable, "-m", "miner", *args], capture_output=True, text=True, timeout=300,
                           env=env())
    assert again.returncode == 0, again.stderr
    assert "replayed 300 posts" in again.stdout
    assert count(db, "SELECT count(DISTINCT external_id) FROM posts") == count(db, "SELECT count(*) FROM posts") == 300
    assert count(db, "SELECT count(*) FROM classifications") == 300


def test_an_interrupted_classify_keeps_the_earlier_output_and_leaves_no_partial_one(tmp_path: Path) -> None:
    # The rows of the chunks done so far look like the whole result to whatever reads the file next; and the -o file
    # was emptied at the start and deleted at the interrupt, losing an earlier run's results.
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "an earlier run"}\n')
    proc = start(tmp_path, "classify", "-", "-o", str(out), stdin=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write("".join(f'{{"id": {i}, "text": "down {i}"}}\n' for i in range(5000)))  # 1 chunk and more
    proc.stdin.flush()  # and left open: it waits for the rest

    def first_chunk_written() -> bool:  # to a temporary file beside the -o one
        return any(p.read_text().count("\n") >= 4096 for p in tmp_path.glob(".out.jsonl.*.tmp"))

    wait_for(first_chunk_written, proc)
    assert out.read_text() == '{"id": "an earlier run"}\n'
    code, _, err = interrupt(proc, signal.SIGINT)
    assert code == 130
    assert out.read_text() == '{"id": "an earlier run"}\n'
    assert sorted(tmp_path.iterdir()) == [out]
    # "Interrupted by SIGINT" alone let the earlier run's file there pass for this run's results.
    assert f"{out}: not written (the file there is an earlier run's)\nInterrupted by SIGINT\n" in err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_classify_interrupted_while_its_stdout_pipe_is_full_ends_its_output_with_a_whole_line(
    tmp_path: Path, sig: int
) -> None:
    # `miner classify big.jsonl | slow-reader`, then Ctrl-C: Python's buffered write gave up where the pipe was full,
    # and the reader got half a row, the last line of the output not JSON.
    read_end, write_end = os.pipe()
    full = fcntl.fcntl(read_end, fcntl.F_GETPIPE_SZ)
    src = tmp_path / "in.jsonl"
    # The first row alone is more than the pipe holds: the write waits part-way through it.
    rows = [{"id": "x" * (full + 10_000), "text": "whatsapp is down"}, {"id": 2, "text": "calm down"}]
    src.write_text("".join(json.dumps(row) + "\n" for row in rows))
    proc = subprocess.Popen([sys.executable, "-m", "miner", "classify", str(src)], cwd=tmp_path, stdout=write_end,
                            stderr=subprocess.PIPE, text=True, env=env())
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        # The pipe is full, so the main thread is in its write; asleep there, so the signal lands within the write.
        wait_for(lambda: _unread(reader.fileno()) >= full and _state(proc.pid) == "S", proc)
        # To the main thread, as the kernel may deliver a Ctrl-C: one taken by another thread lets the write end.
        assert ctypes.CDLL(None, use_errno=True).tgkill(proc.pid, proc.pid, sig) == 0
        assert proc.stderr is not None
        # Its handler's first word, once the write has given way: read before then, the pipe let it end.
        said = proc.stderr.readline()
        out = reader.read()
    _, err = proc.communicate(timeout=60)
    assert (said + err).splitlines()[-1] == f"Interrupted by {signal.Signals(sig).name}", said + err
    assert proc.returncode == EXIT[sig]
    assert out.endswith(b"\n"), out[-80:]
    ids = [json.loads(line)["id"] for line in out.splitlines()]  # every line whole JSON
    assert ids[0] == rows[0]["id"]


def _unread(fd: int) -> int:
    """The bytes waiting in the pipe ``fd`` reads from."""
    return int(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0])


def _state(pid: int) -> str:
    """The state of the main thread of process ``pid`` (Linux): "S" while it sleeps, in a system call or a wait."""
    try:
        return Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):  # it exited: wait_for says so
        return ""


def test_outbox_send_finishes_the_notification_in_flight_and_sends_no_other(tmp_path: Path) -> None:
    # Cut short mid-send, the notification was left claimed ('sending'): neither sent nor failed in `miner outbox`
    # until its lease ran out, and then sent again whether or not it had gone out.
    gate = threading.Event()
    cfg = store_config(tmp_path, """
[[services]]
name = "WhatsApp"

[alerts]
group_wait = 0

[[alerts.webhooks]]
name = "hook"
url_env = "MINER_TEST_HOOK"

[[alerts.routes]]
name = "first"
webhooks = ["hook"]

[[alerts.routes]]
name = "second"
webhooks = ["hook"]
""")
    db = tmp_path / "miner.sqlite"
    store = Store.open(db)
    open_incident(store, "WhatsApp", utcnow(), posts=False, series=False)  # one notification per route
    store.close()
    with FakeServer() as server:
        server.serve("/hook", lambda request: Reply(200, b"ok") if gate.wait(60) else Reply(500))
        proc = start(tmp_path, "--config", str(cfg), "outbox", "send",
                     env=env() | {"MINER_TEST_HOOK": f"{server.url}/hook"})
        wait_for(lambda: bool(server.requests_to("/hook")), proc)
        os.kill(proc.pid, signal.SIGTERM)
        still_running(proc, signal.SIGTERM)
        gate.set()
        code, out, err = ended(proc, signal.SIGTERM)
        assert len(server.requests_to("/hook")) == 1
    # Said at once: the send can take as long as the webhook's timeout, with no sign the signal was taken.
    assert ("Stopping: the notification being sent is finished (an email still sending 5 s on stays pending), "
            "no other is sent (a second signal stops at once)") in err
    assert code == 143
    assert out == "sent 1, retrying 0, failed 0\n"
    store = Store.open(db)
    rows = store.outbox_listing(["pending", "sending", "sent", "failed"])
    store.close()
    assert sorted(r["status"] for r in rows) == ["pending", "sent"]  # none left claimed


def test_a_ctrl_c_while_the_command_line_loads_is_one_line_and_exit_130() -> None:
    # The interrupt lands in the imports, before any command's handler is set: made certain here by an import
    # hook, as a real Ctrl-C only lands there within the first half second.
    code = textwrap.dedent("""
        import sys
        class Interrupt:
            def find_spec(self, name, path=None, target=None):
                if name == "miner.cli.app":
                    raise KeyboardInterrupt
        sys.meta_path.insert(0, Interrupt())
        import runpy
        runpy.run_module("miner", run_name="__main__")
    """)
    proc = subprocess.run([sys.executable, "-c", code, "status"], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert proc.returncode == 130 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip() == "Interrupted by SIGINT"


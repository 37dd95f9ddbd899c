"""SIGINT and SIGTERM in the middle of a command's work, on the real CLI in a subprocess: one line, exit 130 or 143,
no traceback, nothing half-done (the store's transactions, the service lock, output files), and the work done before
the signal kept. `miner run`'s graceful stop (exit 0) is tested in test_service.py."""

from __future__ import annotations

import contextlib
import gzip
import itertools
import os
import select
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fakeserver import FakeServer, Recorded, Reply
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


def stderr_until(proc: subprocess.Popen[str], start: str, timeout: float = 60.0) -> str:
    """What ``proc`` wrote on stderr up to and with a line starting with ``start``. Read from the pipe, not through
    ``proc.stderr``'s buffer, which would keep what follows from communicate()."""
    assert proc.stderr is not None
    fd, got, deadline = proc.stderr.fileno(), b"", time.monotonic() + timeout
    while not any(line.startswith(start.encode()) for line in got.split(b"\n")[:-1]):
        if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
            proc.kill()
            raise AssertionError(f"no line {start!r} on stderr in {timeout:g} s: {got!r}")
        if not (chunk := os.read(fd, 4096)):
            raise AssertionError(f"exited ({proc.wait()}) without a line {start!r} on stderr: {got!r}")
        got += chunk
    return got.decode()


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


@pytest.fixture
def gated() -> Iterator[tuple[FakeServer, threading.Event]]:
    """A feed that answers at once, and a status page that answers only once the event is set."""
    gate = threading.Event()
    with FakeServer() as server:
        server.serve_fixture("/forum.rss", "rss/forum_latest.rss")
        body = server.fixture_bytes("statuspage/incidents.json")

        def held(request: Recorded) -> Reply:
            gate.wait(60)
            return Reply(200, body, content_type="application/json")

        server.serve("/api/v2/incidents.json", held)
        yield server, gate
        gate.set()


def collect_config(tmp_path: Path, url: str) -> Path:
    return store_config(tmp_path, f"""
[[services]]
name = "GitHub"

[[sources]]
name = "forum"
type = "rss"
url = "{url}/forum.rss"

[[sources]]
name = "status:github"
type = "statuspage"
url = "{url}"
services = ["GitHub"]
""")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_collect_stops_after_the_polls_in_flight(tmp_path: Path, gated: tuple[FakeServer, threading.Event],
                                                 sig: int) -> None:
    # The polling loop, as in the service: the first signal starts no further poll, the poll in flight gets its
    # 5 s and is stored, and the round's table is printed. It exited at once, giving up the poll in flight.
    server, gate = gated
    db = tmp_path / "miner.sqlite"
    proc = start(tmp_path, "--config", str(collect_config(tmp_path, server.url)), "collect")
    wait_for(lambda: count(db, "SELECT count(*) FROM posts") > 0 and bool(server.requests_to("/api/v2/incidents.json")),
             proc)
    os.kill(proc.pid, sig)
    still_running(proc, sig)
    gate.set()
    code, out, _ = ended(proc, sig)
    assert code == EXIT[sig]
    rows = round_rows(out)
    assert set(rows) == {"forum", "status:github"}
    assert rows["status:github"][-1].endswith("ok")
    assert count(db, "SELECT count(*) FROM official_incidents") > 0  # the poll in flight, stored
    assert count(db, "SELECT count(*) FROM sources WHERE last_ok_at IS NOT NULL") == 2


def round_rows(out: str) -> dict[str, list[str]]:
    """Source -> its rows in the tables `miner collect` printed, one a round, in order."""
    rows: dict[str, list[str]] = {}
    for line in out.splitlines():
        if line and not line.startswith(("source ", "-")):
            rows.setdefault(line.split()[0], []).append(line)
    return rows


def test_collect_polls_on_while_a_source_hangs(tmp_path: Path, gated: tuple[FakeServer, threading.Event]) -> None:
    # Without --once, a round waited for its slowest poll: the status page answering only after a minute kept the
    # forum, due every 10 s, from being polled again until it did. Its poll is carried over to later rounds now.
    server, gate = gated
    db = tmp_path / "miner.sqlite"
    cfg = store_config(tmp_path, f"""
[[services]]
name = "GitHub"

[[sources]]
name = "forum"
type = "rss"
url = "{server.url}/forum.rss"
interval = 10

[[sources]]
name = "status:github"
type = "statuspage"
url = "{server.url}"
services = ["GitHub"]
timeout = 90
""")
    proc = start(tmp_path, "--config", str(cfg), "collect")
    wait_for(lambda: len(server.requests_to("/forum.rss")) >= 3, proc)  # the gate holds the status page 60 s
    assert len(server.requests_to("/api/v2/incidents.json")) == 1  # in flight all along, not asked again
    # Stopped between rounds (a round waits 5 s for its polls, then the command sleeps 5 s) with the poll carried
    # over from the first: it gets the stop's 5 s, and is stored and printed. It was given up.
    time.sleep(6)
    os.kill(proc.pid, signal.SIGINT)
    still_running(proc, signal.SIGINT)
    gate.set()
    code, out, _ = ended(proc, signal.SIGINT)
    assert code == 130
    assert count(db, "SELECT count(*) FROM official_incidents") > 0
    rows = round_rows(out)
    assert len(rows["forum"]) >= 3
    assert len(rows["status:github"]) == 1 and rows["status:github"][0].endswith("ok")


def test_a_second_signal_stops_collect_at_once(tmp_path: Path, gated: tuple[FakeServer, threading.Event]) -> None:
    server, _gate = gated
    db = tmp_path / "miner.sqlite"
    proc = start(tmp_path, "--config", str(collect_config(tmp_path, server.url)), "collect")
    wait_for(lambda: count(db, "SELECT count(*) FROM posts") > 0 and bool(server.requests_to("/api/v2/incidents.json")),
             proc)
    # The SIGTERM once the SIGINT was taken, as the command says. Sent back to back, they were now and then taken the
    # other way round (exit 130, at once): the kernel may hand the SIGINT to a poll's thread, whose handler only
    # flags it for the main thread, which may by then have run the SIGTERM's as the first.
    os.kill(proc.pid, signal.SIGINT)
    said = stderr_until(proc, "Stopping: ")
    assert said.endswith("Stopping: no further poll starts, the polls in flight get 5 s to end "
                         "(a second signal stops at once)\n")
    code, out, _ = interrupt(proc, signal.SIGTERM)  # well within the 5 s the poll in flight is given
    assert code == 143
    assert out == ""  # the round never ended
    assert count(db, "SELECT count(*) FROM official_incidents") == 0
    assert count(db, "SELECT count(*) FROM posts") > 0  # the poll that ended before, kept


def test_collect_all_polls_every_source_in_its_first_round_only(tmp_path: Path) -> None:
    # Without --once, --all polled every source in every round, 5 s apart, past its interval, backoff and
    # Retry-After: a rate-limited API was asked again every 5 s for as long as the command ran.
    with FakeServer() as server:
        server.serve_fixture("/forum.rss", "rss/forum_latest.rss")
        server.fault("/limited.rss", "429", retry_after="120")
        cfg = store_config(tmp_path, f"""
[[sources]]
name = "forum"
type = "rss"
url = "{server.url}/forum.rss"

[[sources]]
name = "limited"
type = "rss"
url = "{server.url}/limited.rss"
""")
        proc = start(tmp_path, "--config", str(cfg), "collect", "--all")
        wait_for(lambda: bool(server.requests_to("/forum.rss")) and bool(server.requests_to("/limited.rss")), proc)
        time.sleep(7)  # past the 5 s to the next round
        code, out, _ = interrupt(proc, signal.SIGINT)
        assert code == 130
        assert len(server.requests_to("/forum.rss")) == 1 and len(server.requests_to("/limited.rss")) == 1, out


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
    assert "Stopping: the notification being sent is finished, no other is sent (a second signal stops at once)" in err
    assert code == 143
    assert out == "sent 1, retrying 0, failed 0\n"
    store = Store.open(db)
    rows = store.outbox_rows(["pending", "sending", "sent", "failed"])
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


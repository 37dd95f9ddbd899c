"""`miner collect` stopped by SIGINT and SIGTERM, on the real CLI in a subprocess, as the service stops its round: the
first signal starts no further poll and gives those in flight their grace, stored and printed; a second stops it at
once. The helpers, and the other commands' interrupts, are in test_interrupts."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakeserver import FakeServer, Recorded, Reply
from test_interrupts import EXIT, count, ended, interrupt, start, still_running, store_config, wait_for

# Every test here sends SIGINT to a command, as a terminal's Ctrl-C would (see the fixture).
pytestmark = pytest.mark.usefixtures("sigint_as_from_a_terminal")


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

"""A reader of a command's output that stops early (`miner ... | head -1`), on the real CLI in a subprocess: the
command ends quietly with exit status 141, as one SIGPIPE ended (cat, grep); one that changes something finishes
the change first."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fakeserver import FakeServer

from miner.records import Post
from miner.store import Store

ROOT = Path(__file__).resolve().parent.parent
READER_STOPPED = 141  # 128 + SIGPIPE

CONFIG = """
[store]
path = "{db}"
retention_days = 3650

[[services]]
name = "GitHub"
aliases = ["githubstatus"]

[alerts]
from_addr = "miner <miner@example.org>"

[alerts.smtp]
host = "127.0.0.1"
port = 9
security = "none"

[[alerts.routes]]
name = "oncall"
email = ["oncall@example.org"]

[[alerts.routes]]
name = "managers"
email = ["managers@example.org"]
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "feeds.toml").write_text(CONFIG.format(db=tmp_path / "m.sqlite"), encoding="utf-8")
    store = Store.open(tmp_path / "m.sqlite")
    at = datetime(2026, 1, 1, tzinfo=UTC)
    store.insert_posts([Post("feed", str(i), f"post {i} " + "x" * 200, at) for i in range(5000)], at)
    store.close()
    return tmp_path


@pytest.fixture
def feed() -> Iterator[FakeServer]:
    with FakeServer() as server:
        server.serve_fixture("/forum.rss", "rss/forum_latest.rss")
        yield server


def command(folder: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "miner", "--config", str(folder / "feeds.toml"), *args]


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MINER_CONFIG", "MINER_DB")}
    return env | {"PYTHONPATH": str(ROOT), "MINER_HASH_KEY": "a test key, long enough to be a secret"}


def run_with_reader_gone(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``miner ARGS`` whose standard output is a pipe whose reader has gone before it writes."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(command(folder, *args), stdout=write, stderr=subprocess.PIPE, text=True, cwd=folder,
                              env=environment(), timeout=120)
    finally:
        os.close(write)


def count(folder: Path, sql: str) -> int:
    with sqlite3.connect(folder / "m.sqlite") as conn:
        (n,) = conn.execute(sql).fetchone()
    conn.close()
    return int(n)


@pytest.mark.parametrize("fmt", ["csv", "json", "table"])
def test_a_reader_that_stops_after_the_first_line_ends_the_command_quietly_with_the_status_of_sigpipe(
        folder: Path, fmt: str) -> None:
    # It exited 0, so a script (`set -o pipefail`) took an output cut short for a whole one; cat, grep and git exit
    # 141 there (SIGPIPE), click's own handling 1.
    proc = subprocess.Popen(command(folder, "query", "--format", fmt, "SELECT * FROM posts"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=folder, env=environment() | {"PYTHONUNBUFFERED": ""})
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline()  # `head -1`
    proc.stdout.close()
    try:
        status = proc.wait(timeout=120)
    finally:
        stderr = proc.stderr.read().decode()
        proc.stderr.close()
    assert (status, stderr) == (READER_STOPPED, "")  # no traceback, no "Exception ignored" at exit


def test_a_command_that_acts_finishes_its_change_when_its_reader_stops(folder: Path) -> None:
    # `miner digest | head -1`: the report's first line failed, and the routes after the first were left unqueued,
    # with exit status 0 as if all were done.
    res = run_with_reader_gone(folder, "digest")
    assert count(folder, "SELECT count(*) FROM outbox WHERE kind = 'digest'") == 2
    assert (res.returncode, res.stderr) == (READER_STOPPED, "")


def test_collect_stops_as_at_a_signal_when_its_reader_stops(folder: Path, feed: FakeServer) -> None:
    # Without --once it polls until stopped: once the reader of its tables has gone, it stores what is in flight and
    # ends, rather than poll for ever printing to no one.
    cfg = folder / "feeds.toml"
    cfg.write_text(cfg.read_text(encoding="utf-8") + f'\n[[sources]]\nname = "forum"\ntype = "rss"\n'
                   f'url = "{feed.url}/forum.rss"\n', encoding="utf-8")
    res = run_with_reader_gone(folder, "collect")
    assert (res.returncode, res.stderr) == (READER_STOPPED, "")
    assert count(folder, "SELECT count(*) FROM posts WHERE source = 'forum'") > 0

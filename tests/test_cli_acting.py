"""Commands that change something and then report it on standard output (stdio.acts): a standard output they cannot
write is refused before anything is done; a report that fails once the change is made leaves the change and says so.

Run as an operator runs them, in a real process: a closed descriptor (`>&-`) is not /dev/null, which takes writes."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from miner.records import Post
from miner.store import Store
from miner.store.outbox import Finish
from miner.timeutil import iso, utcnow

ROOT = Path(__file__).resolve().parent.parent

CONFIG = """
[[services]]
name = "WhatsApp"

[alerts]
from_addr = "miner <miner@example.org>"

[alerts.smtp]
host = "127.0.0.1"
port = 9
security = "none"

[[alerts.routes]]
name = "oncall"
email = ["oncall@example.org"]
digest = "0 * * * *"
"""

REFUSED = ("nothing done, as this command reports there what it does; redirect it to a file (> FILE) or a pipe, or "
           "to /dev/null to do without the report\n")
FULL = ("Error: cannot write the output: No space left on device; what the command did stands, only its report is "
        "missing\n")


@pytest.fixture
def setup(tmp_path: Path) -> Path:
    """tmp_path with feeds.toml, a store holding posts of January (older than any --days 1 prune), a silence and a
    failed digest, a file of posts to replay and one of labels to train on."""
    (tmp_path / "feeds.toml").write_text(CONFIG, encoding="utf-8")
    store = Store.open(tmp_path / "m.sqlite")
    at = datetime(2026, 1, 1, tzinfo=UTC)
    store.insert_posts([Post("feed", str(i), f"whatsapp down {i}", at, services=("WhatsApp",)) for i in range(3)], at)
    now = utcnow()
    store.add_silence("WhatsApp", now, now + timedelta(hours=1), "deploy", now)
    store.enqueue_digest("digest:0", "oncall", "<0@example.org>", {}, now, "digest_anchor:oncall", iso(now))
    assert store.claim_due(1, "test", now, now) is not None
    assert store.finish_notification(1, "test", now, Finish("failed"))  # for outbox retry
    store.close()
    posts = [{"id": str(i), "text": f"whatsapp is down {i}", "source": "feed",
              "created_at": (at + timedelta(minutes=i)).isoformat()} for i in range(3)]
    (tmp_path / "posts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in posts), encoding="utf-8")
    (tmp_path / "labels.jsonl").write_text('{"text": "whatsapp is down", "label": 1}\n', encoding="utf-8")
    return tmp_path


def miner(folder: Path, args: list[str], *, stdout: str) -> subprocess.CompletedProcess[str]:
    """``miner ARGS`` in ``folder`` on its feeds.toml and store: standard output "closed" (`>&-`), "read-only" (`1<
    /dev/null`), "full" (/dev/full), "broken" (a pipe whose reader has gone) or "file"."""
    command = [sys.executable, "-m", "miner", "--config", str(folder / "feeds.toml"), "--db", str(folder / "m.sqlite"),
               *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MINER_CONFIG", None)
    env.pop("MINER_DB", None)
    if stdout == "closed":
        command = ["sh", "-c", '"$@" >&-', "sh", *command]
    with _stdout(stdout, folder) as out:
        return subprocess.run(command, stdout=out, stderr=subprocess.PIPE, text=True, cwd=folder, env=env, timeout=120)


class _Pipe:
    def __enter__(self) -> int:
        read, self.write = os.pipe()
        os.close(read)  # the reader gone before the command writes: its write fails with EPIPE
        return self.write

    def __exit__(self, *exc: object) -> None:
        os.close(self.write)


def _stdout(kind: str, folder: Path) -> Any:
    if kind == "broken":
        return _Pipe()
    if kind in ("closed", "read-only"):
        return open(os.devnull)  # for closed, sh's >&- closes it
    return open("/dev/full" if kind == "full" else folder / "out.txt", "w")


def state(folder: Path) -> tuple[list[str], list[str]]:
    """The store's rows, and the files in ``folder`` (but a store's -wal and -shm): what a command changes."""
    with sqlite3.connect(f"file:{folder / 'm.sqlite'}?mode=ro", uri=True) as conn:
        rows = list(conn.iterdump())
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                   if not p.name.endswith(("-wal", "-shm")) and p.name not in ("out.txt", "__pycache__"))
    return rows, files


ACTING = [
    ["backup", "b.sqlite"],
    ["prune", "--days", "1", "--force"],
    ["collect", "--once"],
    ["silence", "add", "WhatsApp", "--for", "1h"],
    ["silence", "remove", "1"],
    ["digest"],
    ["digest", "--dry-run", "--out", "d"],
    ["outbox", "send"],
    ["outbox", "retry", "1"],
    ["replay", "posts.jsonl"],
    ["reclassify", "--since", "400d"],
    ["ui", "--metadata-only"],
    ["train", "--data", "labels.jsonl", "--out", "model", "--folds", "0", "--no-extra", "--max-steps", "1"],
    ["demo", "--out", "demo"],
]


@pytest.mark.parametrize("args", ACTING, ids=" ".join)
def test_a_command_that_acts_refuses_a_closed_standard_output_before_it_does_anything(setup: Path,
                                                                                      args: list[str]) -> None:
    # `miner backup x.db >&-` made the copy and exited 0, having reported it nowhere (click.echo writes nothing to a
    # closed stdout): so did prune, collect --once, silence add, and every other command that acts and then reports.
    before = state(setup)
    res = miner(setup, args, stdout="closed")
    assert (res.returncode, res.stderr) == (1, f"Error: standard output is closed: {REFUSED}")
    assert state(setup) == before


@pytest.mark.parametrize("args", [["backup", "b.sqlite"], ["silence", "add", "WhatsApp", "--for", "1h"]],
                         ids=" ".join)
def test_a_command_that_acts_refuses_a_standard_output_open_for_reading_only_before_it_does_anything(
        setup: Path, args: list[str]) -> None:
    # `miner backup` made the copy, then failed on its report as if it had not ("cannot write the output"), and
    # before that as an "internal error: OSError: [Errno 9] Bad file descriptor".
    before = state(setup)
    res = miner(setup, args, stdout="read-only")
    assert (res.returncode, res.stderr) == (1, f"Error: standard output is not open for writing: {REFUSED}")
    assert state(setup) == before


def _count(db: Path, table: str) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def _posts(db: Path) -> int:
    return _count(db, "posts")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_report_that_cannot_be_written_once_the_change_is_made_leaves_it_and_says_so(setup: Path) -> None:
    # On a full disk `miner backup ... > log` said only "cannot write the output: No space left on device", which
    # read as a backup that failed: run again, a silence or a digest was added twice.
    res = miner(setup, ["backup", "b.sqlite"], stdout="full")
    assert (res.returncode, res.stderr) == (1, FULL)
    assert _posts(setup / "b.sqlite") == 3
    res = miner(setup, ["silence", "add", "WhatsApp", "--for", "1h"], stdout="full")
    assert (res.returncode, res.stderr, _count(setup / "m.sqlite", "silences")) == (1, FULL, 2)
    res = miner(setup, ["silence", "add", "WhatsApp", "--for", "1h"], stdout="file")  # and as ever to a file
    assert (res.returncode, res.stderr) == (0, "")
    assert (setup / "out.txt").read_text(encoding="utf-8").startswith("silence 3: WhatsApp until ")
    # A reader that stopped early (`| head`) is no error: the backup is made, nothing said, and the exit status is
    # SIGPIPE's, as for every command (test_cli_reader_stopped).
    res = miner(setup, ["backup", "b2.sqlite"], stdout="broken")
    assert (res.returncode, res.stderr) == (141, "")
    assert _posts(setup / "b2.sqlite") == 3
    res = miner(setup, ["prune", "--days", "1", "--force"], stdout="full")
    assert (res.returncode, res.stderr, _posts(setup / "m.sqlite")) == (1, FULL, 0)

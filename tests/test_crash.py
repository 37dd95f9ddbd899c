"""Crash safety of the whole pipeline in a real process: SIGKILL in the middle of a replay, then a restart,
must lose nothing, duplicate nothing, re-open nothing and send nothing twice; a full disk is one clear error."""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from streams import CONFIG, write_stream

ROOT = Path(__file__).resolve().parent.parent
ALERTS = """
[alerts]
from_addr = "miner <miner@example.org>"
group_wait = 0

[[alerts.routes]]
name = "oncall"
email = ["oncall@example.org"]
"""


def replay(cfg: Path, posts: Path, db: Path, out: Path, *, speed: float | None = None,
           **kwargs: object) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "miner", "--config", str(cfg), "--db", str(db), "replay", str(posts),
            "--out", str(out)]
    if speed:
        args += ["--speed", str(speed)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, **kwargs)  # type: ignore[call-overload]


def scalar(db: Path, sql: str) -> int:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return int(conn.execute(sql).fetchone()[0] or 0)
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return 0


def test_sigkill_mid_replay_then_restart(tmp_path: Path, real_posts: dict[str, list[str]]) -> None:
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG + ALERTS)
    posts = write_stream(real_posts, tmp_path / "posts.jsonl")
    total = sum(1 for _ in posts.open())
    db, out = tmp_path / "m.sqlite", tmp_path / "out"

    # Paced so that the kill lands while the burst is being detected and alerted.
    first = replay(cfg, posts, db, out, speed=20000)
    deadline = time.monotonic() + 180
    while scalar(db, "SELECT count(*) FROM incidents") == 0:
        assert first.poll() is None, first.communicate()[1]
        assert time.monotonic() < deadline, "no incident opened in time"
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)

    second = replay(cfg, posts, db, out)
    _, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    assert "warning" not in err  # everything the detector had stepped past was stored by the first run

    assert scalar(db, "SELECT count(*) FROM posts") == total
    assert scalar(db, "SELECT count(DISTINCT post_id) FROM classifications") == total
    assert scalar(db, "SELECT count(*) FROM incidents") == 1
    assert scalar(db, "SELECT count(*) FROM incident_events WHERE kind = 'open'") == 1
    assert scalar(db, "SELECT count(*) FROM incident_events WHERE kind = 'resolve'") == 1
    # One alert and one resolve notice, each delivered exactly once, each written to one file.
    assert scalar(db, "SELECT count(*) FROM outbox WHERE kind IN ('alert', 'resolved')") == 2
    assert scalar(db, "SELECT count(*) FROM outbox WHERE status != 'sent'") == 0
    assert scalar(db, "SELECT max(n) FROM (SELECT count(*) AS n FROM deliveries WHERE outcome = 'sent' "
                      "GROUP BY outbox_id)") == 1
    sent_files = list((out / "outbox").glob("*.eml"))
    assert len(sent_files) == scalar(db, "SELECT count(*) FROM outbox WHERE channel = 'email'")


def test_full_disk_is_one_clear_error_and_keeps_what_was_committed(tmp_path: Path,
                                                                   real_posts: dict[str, list[str]]) -> None:
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG)
    posts = write_stream(real_posts, tmp_path / "posts.jsonl")
    db = tmp_path / "m.sqlite"

    def small_disk() -> None:  # a file-size limit: writes past it fail as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, 150_000))

    proc = replay(cfg, posts, db, tmp_path / "out", preexec_fn=small_disk)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1
    lines = [ln for ln in err.splitlines() if ln.startswith("Error")]
    assert len(lines) == 1 and "disk full" in lines[0], err
    assert "Traceback" not in err
    # The store is still a valid database: what was committed before the disk filled is intact.
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()

"""Commands that only look, run on a store file that may not be written (a `chmod 444`, another user's store) in a
folder that may: they leave the folder as they found it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from miner.records import Post
from miner.store import Store

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 1, 1, tzinfo=UTC)
# Without its capabilities root is held to the permission bits like anyone else.
DROP = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"] if os.geteuid() == 0 else []
needs_permissions = pytest.mark.skipif(os.geteuid() == 0 and not shutil.which("setpriv"),
                                       reason="root ignores permission bits")


def miner(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DROP, sys.executable, "-m", "miner", "--config", str(ROOT / "feeds.toml"), "--db", str(db),
                           *args], capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@needs_permissions
def test_commands_that_only_look_leave_no_wal_or_shm_beside_a_read_only_store_file(tmp_path: Path) -> None:
    # SQLite creates a -wal and -shm to read a WAL store, and only a read-write connection removes them: beside a
    # store file they may not write, each of these left both behind, read-only and owned by whoever looked.
    folder = tmp_path / "store"
    folder.mkdir()
    db = folder / "miner.sqlite"
    store = Store.open(db)  # WAL mode, as every store miner has written; closed, so its -wal and -shm are gone
    store.insert_posts([Post("feed", "1", "x", T0)], T0)
    store.close()
    db.chmod(0o444)
    before = files(folder)
    for args in [["status"], ["outbox"], ["silence", "list"], ["digest", "--dry-run", "--out", str(tmp_path / "out")],
                 ["query", "SELECT count(*) FROM posts"]]:
        res = miner(db, *args)
        assert res.returncode == 0, (args, res.stderr)
        if args[0] == "query":
            assert res.stdout.split()[-1] == "1", res.stdout
        assert files(folder) == before, args


@needs_permissions
def test_a_read_only_store_file_in_use_is_read_with_the_commits_in_its_wal(tmp_path: Path) -> None:
    # Made read-only while the service had it open: the service still writes it, through its -wal, and a command
    # that looks must read those commits (which a store read as immutable, as if nothing wrote it, would not).
    db = tmp_path / "miner.sqlite"
    Store.open(db).close()
    writer = Store.open(db)
    try:
        writer.database.conn.execute("PRAGMA wal_autocheckpoint = 0")  # the post stays in the -wal
        db.chmod(0o444)
        writer.insert_posts([Post("feed", "1", "x", T0)], T0)
        assert os.path.getsize(f"{db}-wal") > 0
        res = miner(db, "query", "SELECT count(*) FROM posts")
        assert res.returncode == 0, res.stderr
        assert res.stdout.split()[-1] == "1", res.stdout
    finally:
        writer.close()
        db.chmod(0o644)


@needs_permissions
def test_backup_copies_a_read_only_store_file(tmp_path: Path) -> None:
    # The copy was created with the store file's mode, 0444 here, before SQLite wrote it: "cannot write the backup
    # ... (attempt to write a readonly database)", and no backup of a read-only store could be made.
    folder = tmp_path / "store"
    folder.mkdir()
    db = folder / "miner.sqlite"
    store = Store.open(db)
    store.insert_posts([Post("feed", "1", "x", T0)], T0)
    store.close()
    db.chmod(0o444)
    before = files(folder)
    target = tmp_path / "backups" / "copy.sqlite"
    res = miner(db, "backup", str(target))
    assert res.returncode == 0, res.stderr
    assert files(folder) == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["copy.sqlite"]
    assert target.stat().st_mode & 0o777 == 0o444  # the store's permissions, as a backup gets
    copy = Store.open(target, readonly=True)
    try:
        assert copy.database.one("SELECT count(*) AS n FROM posts") == {"n": 1}
    finally:
        copy.close()

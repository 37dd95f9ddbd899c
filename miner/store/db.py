"""Opening the SQLite file: WAL mode, migrations, explicit transactions, and clear errors.

The connection runs in autocommit mode and every write goes through :meth:`Database.transaction`, so a batch
is committed whole or not at all (sqlite-utils' own write helpers open and commit transactions of their own,
which would split ours; they are used for schema and reads only).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlite_utils

from miner.errors import StoreError
from miner.folders import file_in_the_way
from miner.store.foreign import refuse_foreign, user_tables
from miner.store.migrations import pending_migrations
from miner.store.upgrade import BUSY_TIMEOUT_MS, OnPhase, UpgradeStopped, begin_waiting, upgrade_store

# Bytes the -wal file is cut back to once checkpointed. SQLite reuses the file from its start but never shrinks it
# by itself: one large transaction (a changed detector.bucket_minutes recounting 30 days of 300 services wrote
# 420 MB) left a -wal that size for as long as the service ran. The jobs' own transactions stay far below this.
WAL_SIZE_LIMIT = 32 * 1024 * 1024
# The oldest SQLite the store's SQL is tested on (tools/old_sqlite.py): RHEL 8's 3.26, the oldest library a supported
# distribution's Python 3.11 links (Ubuntu 20.04: 3.31, RHEL 9 and Debian 11: 3.34). So the store uses no SQL newer
# than that (RETURNING, 3.35) and binds no more than 999 variables a statement (the limit before 3.32).
MIN_SQLITE = (3, 26, 0)


def require_sqlite() -> None:
    """Refuse, before any store is opened, an SQLite library older than the store's SQL is tested on or built
    without its JSON functions, rather than fail where such SQL is first run, perhaps hours after the start."""
    if (problem := _sqlite_problem()) is not None:
        raise StoreError(f"miner needs SQLite {'.'.join(map(str, MIN_SQLITE))} or newer with its JSON functions; this "
                         f"Python's sqlite3 module uses {problem}: run miner with a Python linked to a newer SQLite, "
                         "such as one `uv python install` fetches, which carries its own")


@functools.cache
def _sqlite_problem() -> str | None:
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        return f"SQLite {sqlite3.sqlite_version}"
    try:
        with contextlib.closing(sqlite3.connect(":memory:")) as conn:
            conn.execute("SELECT json_valid('{}')")
    except sqlite3.Error:
        return f"SQLite {sqlite3.sqlite_version} built without its JSON functions"
    return None


def sqlite_error_cause(exc: BaseException) -> str:
    """What kind of failure a SQLite or OS error is, in a word (see StoreError.cause)."""
    low = str(exc).lower()
    if "not a database" in low or "malformed" in low or "file is encrypted" in low:
        return "corrupt"
    if "readonly" in low or "read-only" in low:
        return "read_only"
    if "disk is full" in low or "disk i/o error" in low or getattr(exc, "errno", None) == errno.ENOSPC:
        return "disk_full"
    if "locked" in low or "busy" in low:
        return "locked"
    if "unable to open" in low:
        return "cannot_open"
    return "other"


def describe_sqlite_error(path: str, exc: BaseException) -> str:
    """One line saying what went wrong with the store file and what to do."""
    msg = str(exc)
    cause = sqlite_error_cause(exc)
    if cause == "corrupt":
        # A -wal left beside a restored file would be replayed into it, so it goes too.
        return (f"store {path} is not a SQLite database or is corrupt ({msg}); to restore it, stop miner, copy a "
                f"backup made by `miner backup` over it and delete {path}-wal and -shm if present")
    if cause == "read_only":
        return f"store {path} is read-only ({msg}); check file and folder permissions"
    if cause == "disk_full":
        return f"store {path}: disk full or I/O error ({msg}); free space, nothing from this batch was written"
    if cause == "locked":
        return f"store {path} is locked by another writer ({msg})"
    if cause == "cannot_open":
        return f"cannot open store {path} ({msg}); does the folder exist and is it writable?"
    return f"store {path}: {msg}"


@contextlib.contextmanager
def translate_errors(path: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.IntegrityError:
        raise
    except (sqlite3.DatabaseError, OSError) as exc:
        where = exc.where if isinstance(exc, UpgradeStopped) else ""
        raise StoreError(describe_sqlite_error(path, exc) + where, cause=sqlite_error_cause(exc)) from exc


class _TidyConnection(sqlite3.Connection):
    """A read-only connection that leaves no -wal or -shm behind where the store had none.

    A read-only connection to a WAL store creates them to read it, but cannot remove them: only a read-write one
    does, when it closes as the store's last. So one is opened and closed after it; SQLite removes nothing while
    another connection (the service's) uses them, and this one reads only."""

    tidy_path = ""

    def close(self) -> None:
        super().close()
        path = self.tidy_path
        if not (os.path.exists(f"{path}-wal") or os.path.exists(f"{path}-shm")):
            return  # none made (a store not in WAL mode: another program's database)
        if not _can_tidy(path):
            return  # it would open read-only, and remove nothing
        with contextlib.suppress(sqlite3.Error):
            conn = sqlite3.connect(f"file:{quote(path)}?mode=rw", uri=True, isolation_level=None)
            try:
                conn.execute("PRAGMA query_only = ON")
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # it opens the -wal only to read
            finally:
                conn.close()


def _can_tidy(path: str) -> bool:
    """Whether a read-write connection could be opened on ``path`` to remove the -wal and -shm after a read."""
    return os.access(path, os.W_OK) and os.access(os.path.dirname(path) or ".", os.W_OK)


def _in_wal_mode(path: str) -> bool:
    """Whether the file's header marks a database in WAL mode (its read and write format versions are 2)."""
    try:
        with open(path, "rb") as f:
            header = f.read(20)
    except OSError:
        return False  # SQLite says why when it opens it
    return header.startswith(b"SQLite format 3\0") and header[18:20] == b"\x02\x02"


def connect_readonly(path: str, *, immutable: bool = False) -> sqlite3.Connection:
    tidy = not immutable and not os.path.exists(f"{path}-wal") and not os.path.exists(f"{path}-shm")
    if tidy and not _can_tidy(path) and _in_wal_mode(path):
        # A read-only store file in a folder we may write: SQLite would create a -wal and -shm to read it (read-only,
        # owned by whoever looked, which kept the service from starting) that nothing closing after could remove.
        # With neither there, no connection has it open (one to a WAL store keeps both while it is), so every
        # commit is in the main file and it reads correctly as immutable. Only a store in WAL mode: another
        # program's rollback-journal database may have a writer, whose locks immutable would ignore.
        immutable, tidy = True, False
    # Quoted: a "?", "#" or "%41" in a file name is part of the name, not of the URI.
    conn = sqlite3.connect(f"file:{quote(path)}?mode=ro{'&immutable=1' if immutable else ''}", uri=True,
                           isolation_level=None, check_same_thread=False,
                           factory=_TidyConnection if tidy else sqlite3.Connection)
    if isinstance(conn, _TidyConnection):
        conn.tidy_path = path
    conn.execute("PRAGMA query_only = ON")
    if immutable:
        return conn
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError as exc:
        low = str(exc).lower()
        wal = Path(f"{path}-wal")
        # On a read-only file system (a mount, a snapshot) SQLite says "unable to open" for the -shm it cannot
        # create there, where a folder without write permission gives "readonly".
        read_only_fs = "unable to open" in low and not os.access(os.path.dirname(path) or ".", os.W_OK)
        if not ("readonly" in low or "disk i/o error" in low or "full" in low or read_only_fs):
            raise
        conn.close()
        # A WAL store in a folder we cannot write (a read-only copy or mount), or on a full disk: SQLite cannot
        # create its -shm index there, or give it its size. With no -wal file, or an empty one (the failed try
        # leaves one), no commit waits in a write-ahead log: every one is in the main file, so it reads correctly
        # as immutable, which would not read the commits in one that holds some.
        if wal.exists() and wal.stat().st_size > 0:
            return _connect_without_shm(path, exc)
        return connect_readonly(path, immutable=True)
    return conn


def _connect_without_shm(path: str, failed: sqlite3.OperationalError) -> sqlite3.Connection:
    """A read-only connection to a WAL store whose -wal holds commits, where no -shm index can be created (a
    snapshot of a store taken while the service ran, without its -shm, on a read-only mount): its index is built in
    memory, as SQLite does in exclusive locking mode, on a VFS that takes no file locks, which a file opened
    read-only cannot take an exclusive one of. No -shm means no connection of SQLite's has the store open: none
    writes it while this one reads, and it changes nothing."""
    if os.path.exists(f"{path}-shm"):
        raise failed  # another process's index, which it cannot read: the store is in use, not a copy to read so
    conn = sqlite3.connect(f"file:{quote(path)}?mode=ro&vfs=unix-none", uri=True, isolation_level=None,
                           check_same_thread=False)
    try:
        conn.execute("PRAGMA locking_mode = EXCLUSIVE")
        conn.execute("PRAGMA query_only = ON")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(f"cannot read store {path}: {path}-wal holds commits not yet in the store file, and SQLite "
                         f"cannot create the {path}-shm index it reads them with in that folder ({exc}): copy the "
                         "store and its -wal to a writable folder and read the copy, or checkpoint the store before "
                         "copying it (stop the service, which checkpoints it, or use `miner backup`, which makes a "
                         "copy with nothing in a -wal)", cause=sqlite_error_cause(exc)) from exc
    return conn


def restore_sidecar_modes(path: str) -> None:
    """Give the store's -wal and -shm back the write permission the store file has, where they lost it.

    SQLite gives an empty -wal, and a new -shm, the store file's mode when a connection opens them: one opened
    while the file was read-only (a chmod) left them read-only, and after the file was writable again every new
    connection was read-only too ("attempt to write a readonly database"), until a restart deleted them."""
    effective = os.access in os.supports_effective_ids
    try:
        if not os.access(path, os.W_OK, effective_ids=effective):
            return  # read-only on purpose, or not yet fixed: the sidecars follow it
        mode = os.stat(path).st_mode & 0o777
    except OSError:
        return
    for side in (f"{path}-wal", f"{path}-shm"):
        # Not there, or not ours to change: SQLite opens it read-only then and the error says so.
        with contextlib.suppress(OSError):
            if os.path.isfile(side) and not os.access(side, os.W_OK, effective_ids=effective):
                os.chmod(side, mode)


def empty_store_message(path: str | Path) -> str:
    return (f"store {path} is empty: no miner store was written to it yet (`miner collect --once` creates one; "
            "`miner demo` writes its own, demo-out/miner.sqlite)")


def _require_current_schema(conn: sqlite3.Connection, path: str) -> None:
    """A read-only open cannot migrate: an older store is refused with what will upgrade it, rather than read
    with tables or columns missing (or upgraded behind the back of a command that only looks)."""
    try:
        pending = pending_migrations(conn)
    except StoreError as exc:
        raise StoreError(f"store {path} {exc}") from None
    if pending and not user_tables(conn):
        # An empty file (SQLite's view of a new database) is no older miner's store: upgrading it creates one.
        raise StoreError(empty_store_message(path))
    if pending:
        from miner.service_lock import lock_owner

        what = (f"store {path} was made by an older version of miner and needs upgrading (migration "
                f"{', '.join(pending)})")
        if (owner := lock_owner(path)) is not None and owner[1] == "service":
            # Asked during the service's own upgrade (a large store takes a while), "run `miner run`" read as if the
            # running service would not.
            raise StoreError(f"{what}; the miner service running on it (pid {owner[0] or 'unknown'}) upgrades it as it "
                             "starts with this version: wait for its log line 'store ...: upgraded' and ask again, or, "
                             "if it was started before this version was installed, restart it")
        raise StoreError(f"{what}; this command only reads it and does not upgrade it: run `miner run`, or any command "
                         "that writes to the store, once to upgrade it")


class Database:
    """One connection to one store file. Not shared across threads: open one per thread or job."""

    def __init__(self, conn: sqlite3.Connection, path: str, *, readonly: bool) -> None:
        self.conn = conn
        self.path = path
        self.readonly = readonly
        self.db = sqlite_utils.Database(conn)
        self._lock = threading.RLock()
        self.upgrade_pending = False  # opened with upgrade False, migrations pending: see check_writable

    @classmethod
    def connect(cls, path: str | Path, *, readonly: bool = False, migrate: bool = True,
                upgrade: bool = True, stop: threading.Event | None = None, on_phase: OnPhase | None = None
                ) -> Database:
        """``migrate``: apply pending migrations, or with ``readonly`` refuse a store that lacks some. ``upgrade``
        False: check the store as a migrating open does (another program's database, a newer miner's store) but
        leave pending migrations for a later open. ``stop`` set ends a wait for another process's upgrade;
        ``on_phase`` is told of each migration and wait (see upgrade.upgrade_store)."""
        pending = False
        spath = str(path)
        require_sqlite()
        if Path(spath).is_dir():  # SQLite says "disk I/O error" or "unable to open", which point elsewhere
            raise StoreError(f"store {spath} is a folder; the store path must name a file in it, such as "
                             f"{Path(spath) / 'miner.sqlite'}")
        with translate_errors(spath):
            if readonly:
                if not Path(spath).exists():
                    raise StoreError(f"store {spath} does not exist")
                conn = connect_readonly(spath)
            else:
                if spath != ":memory:":
                    if (blocker := file_in_the_way(Path(spath).parent)) is not None:
                        raise StoreError(f"cannot create store {spath}: {blocker} is a file, not a folder")
                    Path(spath).parent.mkdir(parents=True, exist_ok=True)
                    # A new store is readable by its owner only: SQLite created it as the umask had it (0644 on
                    # most boxes), so any user of the machine could read its posts and author hashes. Its -wal,
                    # -shm and backups take its mode; a `chmod` of it (0640 for a group) is kept.
                    with contextlib.suppress(OSError):  # there already, or not ours to make: SQLite says why
                        os.close(os.open(spath, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                    restore_sidecar_modes(spath)
                conn = sqlite3.connect(spath, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys = ON")
            # Touch the file so corruption is reported at open, not at the first query.
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            if readonly and migrate:
                _require_current_schema(conn, spath)
            if not readonly:
                if migrate:  # before WAL mode: another program's database is left exactly as it was
                    try:
                        refuse_foreign(conn)
                    except StoreError as exc:
                        raise StoreError(f"store {spath} {exc}") from None
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
                # Deleted rows are overwritten with zeros. SQLite's own default (kept by many builds; Debian's turns
                # it on) leaves their bytes in the file's free pages until reused: the text of every pruned post
                # stayed readable in the store and in each backup of it. No measurable cost: a prune of 100,000 posts
                # (of a 190 MB store) took 2.1-4.0 s with it, 2.1-3.9 s without, 0.9 s of CPU and a 12 MB -wal both.
                conn.execute("PRAGMA secure_delete = ON")
                if migrate:
                    try:
                        pending = upgrade_store(conn, spath, apply=upgrade, stop=stop, on_phase=on_phase)
                    except StoreError as exc:
                        raise StoreError(f"store {spath} {exc}") from None
        database = cls(conn, spath, readonly=readonly)
        database.upgrade_pending = pending
        return database

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()

    def check_writable(self, stop: threading.Event | None = None, on_phase: OnPhase | None = None) -> None:
        """Raise StoreError unless a write would succeed. SQLite opens a file it cannot write (permissions, a
        read-only mount, an immutable file) read-only without a word, and even BEGIN IMMEDIATE succeeds on it:
        only a real write, rolled back here, tells. On a store left to upgrade, the lock is waited for as an upgrade
        does (another process may be upgrading it), until ``stop`` is set, and ``on_phase`` told of it."""
        with self._lock, translate_errors(self.path):
            if self.upgrade_pending:
                begin_waiting(self.conn, stop, self.path, on_phase)
            else:
                self.conn.execute("BEGIN IMMEDIATE")
            try:
                self.conn.execute("CREATE TABLE main._miner_write_check (x)")
            finally:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error. Nested calls join the outer transaction."""
        with self._lock, translate_errors(self.path):
            if self.conn.in_transaction:
                yield self.conn
                return
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Every read in the block sees the store as its first read did (BEGIN ... ROLLBACK: one read transaction),
        not each statement as it is then, with what another connection committed between them. Joins an outer
        transaction. Not for writes: a write in it may find the store changed since and fail as busy."""
        with self._lock:
            if self.conn.in_transaction:
                yield
                return
            self.execute("BEGIN")
            try:
                yield
            finally:
                # Left open, the connection would answer every later read from this moment on.
                if self.conn.in_transaction:
                    self.execute("ROLLBACK")

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        with translate_errors(self.path):
            return self.conn.execute(sql, params)

    def rows(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        with translate_errors(self.path):
            return [dict(r) for r in self.conn.execute(sql, params).fetchall()]

    def one(self, sql: str, params: Any = ()) -> dict[str, Any] | None:
        with translate_errors(self.path):
            row = self.conn.execute(sql, params).fetchone()
        return dict(row) if row is not None else None

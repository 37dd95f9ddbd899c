"""Upgrading a store an older miner wrote: the pending migrations applied with a log line for the upgrade and each
slow migration, and an error that names the migration it stopped at.

A store of 0.1.0 with 1 M posts took 11 s to upgrade (2.5 M: 30 s, 13 s of it in 0017_stored_links) on two shared
cores, with nothing in the log from the model's load to `http endpoint on`, and /healthz not answering meanwhile
(it answers 503 "starting" now, with the migration under way: miner.service_starting):
the operator could not tell an upgrade from a hang, and a full disk part-way was told as "nothing from this batch
was written", with no word of the upgrade, how far it got or what the next start does. A write of another process
waiting for the lock meanwhile (a cron job's `miner collect --once`, or the service started while such a job
upgraded) gave up after the store's 10 s busy timeout, shorter than one migration there, and failed with "locked by
another writer": an upgrade waits for the lock for as long as another process's migrations may take, in short
waits: a signal's handler runs only between SQLite's calls, and one busy timeout of 15 minutes left Ctrl-C and
SIGTERM unanswered that long.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable

from miner.store.migrations import CORE, MIGRATIONS, apply_migrations, pending_migrations

log = logging.getLogger(__name__)

# The wait for the write lock of every open of the store, and an upgrade's: another process upgrading the store
# holds the lock for one migration at a time, minutes on a store far larger than 2.5 M posts.
BUSY_TIMEOUT_MS = 10_000
UPGRADE_BUSY_TIMEOUT_MS = 15 * 60_000
# The longest SQLite waits for the lock at once in an upgrade's wait, before Python (a signal's handler) runs again.
_WAIT_SLICE_MS = 200
# Told what the open is doing, for the service's endpoint to answer while it starts (see miner.service_starting): a
# phase's key (store_wait, store_upgrade) and its words.
OnPhase = Callable[[str, str], None]
WAITING = "waiting for another process's upgrade of the store (it holds the write lock)"

# The stores whose wait for another process's upgrade this process has logged, until its own upgrade of one ends.
# That process takes the lock for each migration in turn, so a process waiting on it waits again and again (the
# service's check that the store takes writes, then its upgrade, migration after migration): each wait logged the
# same warning, up to once a migration.
_TOLD: set[str] = set()


def begin_waiting(conn: sqlite3.Connection, stop: threading.Event | None = None, path: str = "",
                  on_phase: OnPhase | None = None) -> None:
    """BEGIN IMMEDIATE, waiting for the write lock up to UPGRADE_BUSY_TIMEOUT_MS in slices: a signal's handler that
    raises (a command's Ctrl-C or SIGTERM) ends the wait, and so does ``stop`` set (the service's), with SQLite's
    "database is locked". A wait is logged once, as a warning (which a command at a terminal shows), naming the
    store ``path`` (and not again for that store until this process's upgrade of it ends, see _TOLD): the service
    started during a cron job's upgrade waited minutes with nothing in its log, before even loading its model.
    ``on_phase`` is told of each wait as it begins."""
    deadline = time.monotonic() + UPGRADE_BUSY_TIMEOUT_MS / 1000
    told = False
    try:
        while True:
            left = int((deadline - time.monotonic()) * 1000)
            conn.execute(f"PRAGMA busy_timeout = {max(0, min(_WAIT_SLICE_MS, left))}")
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or left <= 0 or (stop is not None
                                                                                        and stop.is_set()):
                    raise
                if not told:
                    told = True
                    if on_phase is not None:  # at each wait: the endpoint's phase says what goes on now
                        on_phase("store_wait", WAITING)
                    if path in _TOLD:
                        continue
                    _TOLD.add(path)
                    log.warning("store %s: waiting for the write lock, which another process holds (another miner "
                                "upgrading this store holds it throughout each migration): up to %d min, Ctrl-C or "
                                "SIGTERM ends the wait", path or "?", UPGRADE_BUSY_TIMEOUT_MS // 60_000)
    finally:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


def upgrade_store(conn: sqlite3.Connection, path: str, *, apply: bool = True,
                  stop: threading.Event | None = None, on_phase: OnPhase | None = None) -> bool:
    """Apply the migrations the store lacks (``apply`` False: only check it can be), each waiting for the write lock
    (see begin_waiting). A new store's are applied without a word; an older store's upgrade is logged, and an error
    names the migration that was rolled back. True when ``apply`` is False and migrations are pending: the
    connection's check that the store takes writes then waits for the lock as an upgrade does (the service checks
    that before its model loads and it upgrades the store, and that check failed while a cron job upgraded it).
    ``on_phase`` is told of each migration as it begins, and of each wait for the lock."""
    pending = pending_migrations(conn)
    if not pending or not apply:
        return bool(pending)
    new = pending[0] == CORE.id
    if not new:
        log.info("store %s: upgrading it for this version of miner: %d migrations to apply (%s to %s), each in one "
                 "transaction; `miner run` starts its jobs once they are done (its /healthz answers 503 \"starting\" "
                 "meanwhile)", path, len(pending), pending[0], pending[-1])
    started = time.monotonic()
    running: list[str] = []
    done = len(MIGRATIONS) - len(pending)

    def progress(migration_id: str, seconds: float | None) -> None:
        nonlocal done
        if seconds is None:
            running[:] = [migration_id]
            return
        done += 1
        if not new:  # the slow ones only, at info: most take milliseconds
            log.log(logging.INFO if seconds >= 1 else logging.DEBUG, "store %s: migration %s applied in %.1f s",
                    path, migration_id, seconds)

    def begin() -> None:
        begin_waiting(conn, stop, path, on_phase)
        if on_phase is not None:  # once it holds the lock: a wait for it is told as it begins
            step = done - (len(MIGRATIONS) - len(pending)) + 1
            on_phase("store_upgrade", f"{'creating' if new else 'upgrading'} the store: migration {running[0]} "
                                      f"({step} of {len(pending)})")

    try:
        apply_migrations(conn, progress=progress, begin=begin)
    except sqlite3.IntegrityError:
        raise  # a fault of miner's own, raised as it is (as db.translate_errors does)
    except sqlite3.Error as exc:
        raise UpgradeStopped(exc, f"; the upgrade stopped at migration {running[0] if running else pending[0]}, "
                                  f"rolled back whole ({done} of {len(MIGRATIONS)} applied, the rest at the next "
                                  "open)") from exc
    finally:
        _TOLD.discard(path)
    if not new:
        log.info("store %s: upgraded in %.1f s", path, time.monotonic() - started)
    return False


class UpgradeStopped(sqlite3.OperationalError):
    """A migration's SQLite error, with where the upgrade stopped: db.translate_errors words it as it words the
    error itself (a full disk, a lock) and adds ``where``."""

    def __init__(self, error: sqlite3.Error, where: str) -> None:
        super().__init__(str(error))
        self.where = where


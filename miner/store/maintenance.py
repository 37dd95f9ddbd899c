"""Online backup, retention, and queue depths."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import secrets
import sqlite3
import stat
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from miner.errors import StoreError
from miner.folders import file_in_the_way
from miner.records import REPORT_SOURCE
from miner.store.posts import LAST_PRUNED_ID, SOURCE_DATED, UNCLASSIFIED
from miner.store.sql_lists import IN_LIST, json_list
from miner.timeutil import iso, parse_iso

if TYPE_CHECKING:
    from miner.store.db import Database

log = logging.getLogger(__name__)

# store_state key of the latest cutoff any prune used (see prune_posts).
PRUNED_BEFORE = "pruned_before"

# store_state key of the last retention prune held back (see hold_prune): JSON of its times.
PRUNE_HELD = "prune_held"

# Posts dated by their source (store.posts.SOURCE_DATED), user reports aside: one is dated when it came. Also the
# WHERE of the index posts_source_dated (migration 0012): SQLite reads a partial index only for a query whose WHERE
# implies the index's, so a change here needs a new index (test_store_scale checks the plan).
_SOURCE_DATED = f"{SOURCE_DATED} AND source != '{REPORT_SOURCE}'"

# The posts the open incidents cite as samples, kept by prune_posts. A sample_post_ids that is not JSON (a row edited
# by hand, cut short) names none: json_each raised "malformed JSON" on it, and every prune failed. CASE, not AND:
# SQLite does not stop at a false json_valid. As migrations 0006, 0018 and 0019 read them. No NULL (a JSON null, as in
# "[12, null]"): "id NOT IN (..., NULL)" is never true, and every prune deleted nothing.
_OPEN_SAMPLES = ("SELECT value FROM incidents, json_each(CASE WHEN json_valid(sample_post_ids) THEN sample_post_ids "
                 "ELSE '[]' END) WHERE status = 'open' AND value IS NOT NULL")

# Posts deleted per transaction by prune_posts: a fraction of a second of holding the write lock.
PRUNE_BATCH = 5000

# Bucket rows deleted per transaction by prune_buckets. On bench/scale_bench.py's store (300 services), a first
# prune of 30 days (2.6 M rows) held the write lock 0.2 s per batch on average, 1.4 s at most (a checkpoint on a
# loaded disk; 2.7 s at most with 5,000 rows a batch, so smaller batches only make it slower); 6 hours' rows (the
# retention job's usual share, 21,600) take 0.5 s in all.
BUCKET_PRUNE_BATCH = 20000

# Finished notifications deleted per transaction by prune_alert_history, each with its items and deliveries. With
# three attempts each, a first prune of 40,000 held the write lock 27 ms per batch on average, 50 ms at most.
ALERT_PRUNE_BATCH = 2000

# Finished notifications last touched before :before (planned, last due, or sent: a retried row's next_attempt_at is
# that of the retry, or of an attempt since). Kept whatever their age: pending and sending ones; those with an item
# of an incident still open (its repeats, late openings and resolve notice are planned from them and from
# alert_incidents, which is kept); and the newest row, so that SQLite never gives a later row the id of a deleted
# one (rowid is max + 1), which logs, `miner outbox retry ID` and its delivered:ID key would mistake for the old one.
_FINISHED_NOTIFICATIONS = """
    SELECT id FROM outbox o WHERE status IN ('sent', 'failed', 'suppressed')
    AND max(created_at, next_attempt_at, coalesce(sent_at, created_at)) < :before
    AND id < (SELECT max(id) FROM outbox)
    AND NOT EXISTS (SELECT 1 FROM outbox_items i JOIN incidents inc ON inc.id = i.incident_id
                    WHERE i.outbox_id = o.id AND inc.status = 'open')
    LIMIT :batch
"""


def held_prune_message(held: dict[str, str]) -> str:
    """Why a retention prune (see MaintenanceMixin.hold_prune) deleted nothing, and what to check, in one line."""
    return (f"retention: nothing pruned at {held['at']}: its cutoff {held['cutoff']} is after the newest post a "
            f"source dated ({held['newest_post']}), so every post would have been deleted for good. Is the system "
            "clock ahead (check NTP)? If it is right, no source has posted for as long as posts are kept (or only "
            "one dating its posts ahead of the clock), and the prune goes on once one has (`miner prune --force` "
            "prunes now)")


def _backup_failure(target: Path, exc: BaseException) -> str:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    if isinstance(exc, (FileExistsError, NotADirectoryError)) and (blocker := file_in_the_way(target.parent)):
        reason = f"{blocker} is a file, not a folder"  # "File exists" read as if the backup were there already
    low = reason.lower()
    if "full" in low or "i/o" in low or getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        hint = "; free space there or choose another folder"
    elif "permission" in low or "read-only" in low or "readonly" in low or "unable to open" in low:
        hint = "; check that its folder exists and is writable"
    else:
        hint = ""
    return f"cannot write the backup {target} ({reason}){hint}; nothing was left at {target}"


def _quick_check(conn: sqlite3.Connection) -> list[str]:
    """``["ok"]``, or the first problems SQLite's quick_check finds (a page too damaged to check is one too)."""
    try:
        rows = conn.execute("PRAGMA quick_check(2)").fetchall()
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    return [line for row in rows for line in row[0].splitlines() if not line.startswith("*** ")]


def _move_unless_there(partial: Path, target: Path) -> None:
    """Rename ``partial`` to ``target`` unless ``target`` exists, as one step: a rename replaces it, so of two
    backups to one path at once, the one ending last replaced the other's copy."""
    try:
        os.link(partial, target)  # fails if target exists, whoever made it since it was looked for
    except FileExistsError:
        raise StoreError(f"backup target {target} exists; choose a new path") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK):
            raise
        # A filesystem without hard links (FAT, some network shares): the rename, with only a small window
        if target.exists():
            raise StoreError(f"backup target {target} exists; choose a new path") from None
        partial.replace(target)
        return
    with contextlib.suppress(OSError):  # the copy is at target; a leftover hidden file is all a failure leaves
        partial.unlink()


def _sync_folder(folder: Path) -> None:
    """Make a rename into ``folder`` durable: the copy's own data is already synced by SQLite's commit."""
    with contextlib.suppress(OSError):  # some filesystems cannot open or sync a folder; the copy is complete
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class MaintenanceMixin:
    database: Database

    def backup(self, target: Path, *, check: bool = True) -> int:
        """Copy the live store with SQLite's online backup API (consistent even while the service writes).

        The copy is written to a hidden temporary file beside ``target`` and renamed to it once complete: written
        in place, a copy that failed half-way (a full disk) stayed at ``target``, where it looked like a backup.
        ``check``: refuse to keep a copy of a corrupt store (without it, a salvage copy is kept as it is)."""
        if target.exists():
            raise StoreError(f"backup target {target} exists; choose a new path")
        partial = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # Made with the store's own permissions (SQLite would create it as the umask has it, 0644 at most
            # boxes): a copy of a store kept from other users (posts, author hashes) was readable by all of them.
            # With write permission for its owner while it is written: one made 0444 as a store file chmod 444 is,
            # SQLite could not write the copy ("attempt to write a readonly database"), and no backup of it was made.
            mode = self._file_mode()
            os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode | stat.S_IWUSR))
            dest = sqlite3.connect(str(partial))
            try:
                self.database.conn.backup(dest)
                # The backup API copies pages as they are: a store with a damaged page made a backup that looked
                # fine, until restoring it failed. The copy is checked, not the live store, which stays unlocked.
                problems = _quick_check(dest) if check else ["ok"]
            finally:
                dest.close()
            if problems != ["ok"]:
                raise StoreError(
                    f"store {self.database.path} is corrupt ({'; '.join(problems[:2])}), so no backup was written: a "
                    "copy of it would not restore a working store; restore an earlier backup, or recover what it "
                    f"holds with `sqlite3 {self.database.path} .recover | sqlite3 recovered.sqlite`")
            if not mode & stat.S_IWUSR:
                os.chmod(partial, stat.S_IMODE(os.stat(partial).st_mode) & ~stat.S_IWUSR)
            _move_unless_there(partial, target)
        except BaseException as exc:
            for leftover in [partial, *(Path(f"{partial}-{suffix}") for suffix in ("journal", "wal", "shm"))]:
                with contextlib.suppress(OSError):
                    leftover.unlink(missing_ok=True)
            if isinstance(exc, (sqlite3.Error, OSError)):
                raise StoreError(_backup_failure(target, exc)) from exc
            raise
        _sync_folder(target.parent)
        return target.stat().st_size

    def _file_mode(self) -> int:
        """The store file's read and write permissions (0o600 for a store in memory or gone)."""
        try:
            return os.stat(self.database.path).st_mode & 0o666
        except OSError:
            return 0o600

    def prune_posts(self, before: datetime, batch: int = PRUNE_BATCH, stop: threading.Event | None = None) -> int:
        """Delete raw posts (and their matches/classifications) created before ``before``.

        Incidents and official incidents are kept: they are the long-term record, and so are buckets for longer
        (see prune_buckets). Posts cited as an open incident's samples are kept until it resolves (one whose
        sample_post_ids is not JSON cites none: a warning says so). A cutoff is recorded (the latest any prune
        reached): the buckets that start before it, the one holding it included, lost posts and are never recounted
        from the posts left (see refresh_buckets), and collect does not store their posts again.

        The cutoff recorded is the second after the newest post deleted, not ``before``: ``before`` comes from the
        clock, and a clock ahead by more than the days kept put it in the future, where it made every bucket up to
        it final and collect dropped every new post until real time passed it. The buckets past the newest post
        deleted lost nothing, and stay open. One still in the future (an older miner's, or past posts that such a
        clock dated in the future) is taken back once the clock is right (Store.rewind_prune_cutoff).

        The posts go ``batch`` at a time, each batch in a transaction of its own, with a pause after it as long
        as it held the write lock. In one transaction, a prune of 60 days of 90 (530,000 posts) held the lock
        for 9 s, near the 10 s that the service's other jobs wait for it before failing with "database is
        locked" (a longer prune went past it), and left a 290 MB -wal file behind. Once ``stop`` is set, no
        further batch starts (the rest waits for the next prune).
        """
        for row in self.database.rows("SELECT id FROM incidents WHERE status = 'open' AND NOT json_valid("
                                      "sample_post_ids) ORDER BY id"):
            log.warning("prune: the sample_post_ids of open incident %d is not JSON (edited by hand?): the prune "
                        "keeps none of its sample posts", row["id"])

        def one_batch(conn: sqlite3.Connection) -> int:
            # Read, then deleted by id, in one write transaction (not DELETE ... RETURNING: SQLite 3.35 or later).
            deleted = conn.execute(f"SELECT created_at, id FROM posts WHERE created_at < ? AND id NOT IN "
                                   f"({_OPEN_SAMPLES}) LIMIT ?", (iso(before), batch)).fetchall()
            if deleted:
                conn.execute(f"DELETE FROM posts WHERE id {IN_LIST}", (json_list(row[1] for row in deleted),))
                # With the deletions, so no post goes into a bucket they emptied before its cutoff is known.
                # Times are whole seconds: the second after the newest is never past ``before``. ISO times of
                # one format compare as text; max() keeps the cutoff from moving back.
                cutoff = parse_iso(max(row[0] for row in deleted)) + timedelta(seconds=1)
                conn.execute("INSERT INTO store_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                             "SET value = max(value, excluded.value)", (PRUNED_BEFORE, iso(cutoff)))
                # So that no later post gets the id of one deleted here (see LAST_PRUNED_ID).
                conn.execute("INSERT INTO store_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                             "SET value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
                             (LAST_PRUNED_ID, max(row[1] for row in deleted)))
            return len(deleted)

        return self._in_batches(one_batch, batch, stop)

    def prune_buckets(self, before: datetime, batch: int = BUCKET_PRUNE_BATCH,
                      stop: threading.Event | None = None) -> int:
        """Delete the bucket rows that start before ``before`` and are final (start before the posts' prune cutoff,
        see prune_posts). Returns how many went.

        Only final rows go: the others are still recounted from their posts, so a row deleted there would come back
        with the next recount (a reclassify), without its score. Final rows are never recounted nor written again,
        and the detector never reads them: it steps the buckets after its last one, at most
        detector.max_fill_hours back, and a changed bucket width recounts and learns again from the first bucket
        after the cutoff (and reads a missing row as an empty bucket).

        Rows go ``batch`` at a time, each batch in a transaction of its own with a pause after it, as posts do
        (and no further batch once ``stop`` is set).
        SQLite keeps the pages freed for the rows to come; the file only shrinks with a VACUUM.
        """
        def one_batch(conn: sqlite3.Connection) -> int:
            # Under the write lock, as a recount reads it: a prune beside this one may move it on meanwhile.
            cutoff = self.pruned_before()
            if cutoff is None:
                return 0
            return int(conn.execute(
                "DELETE FROM buckets WHERE rowid IN (SELECT rowid FROM buckets WHERE bucket_start < ? LIMIT ?)",
                (iso(min(before, cutoff)), batch),
            ).rowcount)

        return self._in_batches(one_batch, batch, stop)

    def prune_alert_history(self, before: datetime, batch: int = ALERT_PRUNE_BATCH,
                            stop: threading.Event | None = None) -> tuple[int, int]:
        """Delete notifications finished (sent, failed, suppressed) before ``before``, with their items, delivery
        attempts and ``delivered:ID`` key, and silences that ended before it. Returns (notifications, silences).

        Without it the outbox grew with every digest and alert for as long as the store lived. Nothing planned
        later reads what goes: the planner plans transitions after its cursor only and reminders numbered from
        alert_incidents (kept, one row per route and incident, as incidents are), and digests from their anchors, so
        no deleted dedupe key is ever planned again; see _FINISHED_NOTIFICATIONS for what stays. A silence that
        ended goes with the notifications that cite it (they were suppressed while it held), the newest one
        excepted so that its id is never given to another.

        Notifications go ``batch`` at a time, each batch in a transaction of its own with a pause after it, as
        posts do (and no further batch, nor the silences, once ``stop`` is set).
        """
        def one_batch(conn: sqlite3.Connection) -> int:
            ids = json.dumps([row[0] for row in conn.execute(_FINISHED_NOTIFICATIONS,
                                                              {"before": iso(before), "batch": batch})])
            chosen = "(SELECT value FROM json_each(?))"
            conn.execute(f"DELETE FROM deliveries WHERE outbox_id IN {chosen}", (ids,))
            conn.execute(f"DELETE FROM outbox_items WHERE outbox_id IN {chosen}", (ids,))
            conn.execute("DELETE FROM alert_state WHERE key IN (SELECT 'delivered:' || value FROM json_each(?))",
                         (ids,))
            return int(conn.execute(f"DELETE FROM outbox WHERE id IN {chosen}", (ids,)).rowcount)

        removed = self._in_batches(one_batch, batch, stop)
        if stop is not None and stop.is_set():
            return removed, 0
        with self.database.transaction() as conn:
            silences = conn.execute("DELETE FROM silences WHERE ends_at < ? AND id < (SELECT max(id) FROM silences)",
                                    (iso(before),)).rowcount
        return removed, silences

    def _in_batches(self, one_batch: Callable[[sqlite3.Connection], int], batch: int,
                    stop: threading.Event | None = None) -> int:
        """Run ``one_batch`` (which deletes at most ``batch`` rows and returns how many) in a transaction of its own
        until it deletes fewer, pausing after each as long as it held the write lock so that a waiting writer gets
        its turn (SQLite has no queue). Returns the rows deleted in all.

        Until ``stop`` is set: the service's first prune of a large store (after an upgrade, or retention_days
        lowered) ran for minutes, and a SIGTERM waited for all of it, past systemd's TimeoutStopSec, whose SIGKILL
        lost the polls held in memory without a word. What each batch deleted is committed."""
        removed = 0
        while True:
            started = time.monotonic()
            with self.database.transaction() as conn:
                deleted = one_batch(conn)
            removed += deleted
            if deleted < batch or (stop is not None and stop.is_set()):
                return removed
            if not self.database.conn.in_transaction:  # not inside a caller's transaction
                pause = time.monotonic() - started
                if stop is not None:
                    stop.wait(pause)
                else:
                    time.sleep(pause)

    def hold_prune(self, before: datetime, now: datetime, *, check: bool = True) -> dict[str, str] | None:
        """Whether a retention prune of the posts created before ``before`` must wait: when ``before`` is after the
        newest post a source dated, the hold, recorded (see prune_held) for `miner status` and /metrics; else None,
        and the record of an earlier hold goes (as it does without ``check``: a prune forced by hand).

        ``before`` is the clock's now less the days kept: a clock ahead by more than those days (an NTP step, a
        wrong RTC at boot) put it after every post, and the prune deleted them all, for good. Posts a source dated
        tell roughly what time it is: with a right clock, a cutoff after the newest of them means no source has
        posted for as long as posts are kept, and waiting for the next post costs only keeping old ones a little
        longer. Posts dated by our clock (user reports, items without a time) are left out: a clock ahead dated
        them ahead too. A store without a post a source dated gives nothing to check the clock against.

        So are the posts dated at or after their fetch. A source's time more than 10 minutes after our clock's is
        replaced by our clock's (collectors.base.make_post): a source that dates its posts ahead (a wrong year on its
        server) had each of them dated by the clock ahead, after its cutoff, and the prune went on. Those are the only
        posts of a source that such a clock stores, too (collect drops the others as older than the days kept). Such
        a post was dated in its poll, so never before the poll's start, its fetched_at; a real post was published
        before it. (A source ahead by less than the clock is not told apart: its posts are a right source's read by a
        clock ahead by the difference, and are held back only when that is more than the days kept. Only other
        sources could tell, and a store may have one.)
        """
        newest = self.newest_source_dated() if check else None
        if newest is not None and before > newest:
            held = {"at": iso(now), "cutoff": iso(before), "newest_post": iso(newest)}
            with self.database.transaction() as conn:
                conn.execute("INSERT INTO store_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                             "SET value = excluded.value", (PRUNE_HELD, json.dumps(held)))
            return held
        if self.prune_held() is not None:  # read first: the write lock only when there is a record to clear
            with self.database.transaction() as conn:
                conn.execute("DELETE FROM store_state WHERE key = ?", (PRUNE_HELD,))
        return None

    def newest_source_dated(self) -> datetime | None:
        """When the newest post a source dated (see hold_prune) was created: roughly what time it was when the store
        was last written. None for a store without one."""
        row = self.database.one(f"SELECT created_at FROM posts WHERE {_SOURCE_DATED} ORDER BY created_at DESC LIMIT 1")
        return parse_iso(row["created_at"]) if row else None

    def prune_held(self) -> dict[str, str] | None:
        """The last retention prune held back (see hold_prune), while no prune has gone on since: ``at`` (when),
        ``cutoff`` and ``newest_post`` (the newest post a source dated), ISO 8601 times."""
        row = self.database.one("SELECT value FROM store_state WHERE key = ?", (PRUNE_HELD,))
        return dict(json.loads(row["value"])) if row else None

    def pruned_before(self) -> datetime | None:
        """The latest cutoff any prune recorded: posts created before it were deleted. None before the first prune
        that deleted a post."""
        row = self.database.one("SELECT value FROM store_state WHERE key = ?", (PRUNED_BEFORE,))
        return parse_iso(row["value"]) if row else None

    def queue_depths(self) -> dict[str, int]:
        """Work waiting: posts without a verdict, and notifications not yet delivered."""
        # Counted as posts_to_classify picks them: a scan of every post stored ran on each /metrics scrape.
        row = self.database.one(
            f"SELECT (SELECT count(*) FROM posts p WHERE {UNCLASSIFIED}) AS classify, "
            "(SELECT count(*) FROM outbox WHERE status IN ('pending', 'sending')) AS outbox"
        )
        return {k: int(v) for k, v in (row or {}).items()}

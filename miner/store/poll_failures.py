"""The history of failed polls: each failure of a source, and the success that ended a run of them.

``sources`` keeps only a source's last error, emptied by its next success: "which sources failed last night, and
why?" could be answered from the service's log alone once they had recovered. A row per failed poll (written with
the source's row, in the same transaction) and one per recovery make the spans of a source's outages readable with
SQL (docs/queries.md). Bounded twice: the retention job and `miner prune` delete the rows older than
store.bucket_retention_days, as the alert history, and each source keeps its latest PER_SOURCE rows (see TRIM_EVERY),
so that one failing every minute for a year is not half a million rows.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from miner.email_addresses import redact_emails
from miner.text_links import public_text_links
from miner.timeutil import iso

if TYPE_CHECKING:
    from miner.store.db import Database

# Migration 0039. By source and time: a source's history, and the trim to PER_SOURCE; by time: the prune, and the
# failures since a time of every source.
POLL_FAILURES_SQL = """
    CREATE TABLE poll_failures (
        id INTEGER PRIMARY KEY,
        source TEXT NOT NULL,
        polled_at TEXT NOT NULL,
        outcome TEXT NOT NULL CHECK (outcome IN ('failed', 'recovered', 'reset')),
        failures INTEGER NOT NULL,
        error TEXT,
        http_status INTEGER,
        retry_after REAL,
        next_poll_at TEXT
    );
    CREATE INDEX poll_failures_source ON poll_failures (source, polled_at);
    CREATE INDEX poll_failures_time ON poll_failures (polled_at);
"""

# Rows a source keeps (failures and recoveries): its oldest go beyond them, at every TRIM_EVERY-th poll of the source
# (sources.polls), so that a poll does not walk the source's rows each time: the cut's walk and deletes cost more than
# the row's insert (bench/poll_failures_bench.py). A source holds PER_SOURCE + TRIM_EVERY - 1 rows at most.
PER_SOURCE = 1000
TRIM_EVERY = 100

# Rows deleted per transaction by prune_poll_failures: rows as small as buckets' (see BUCKET_PRUNE_BATCH).
PRUNE_BATCH = 20000

# A failed poll's error as sources.last_error and poll_failures keep it (cut at 2,000 characters): a link in it without
# a credential and an e-mail address in it as "[email]", as a post's text keeps them. Collectors name a URL by
# shown_url already, but an internal error quotes whatever it was given, and a server's redirect to a page named by a
# person's address (a list's /by/<address>/feed.rss) that failed was named so, kept for bucket_retention_days here,
# and in the source's row (shown by `miner status` and the API) until its next success.
_ERROR_CHARS = 2000


def stored_error(error: str) -> str:
    """``error`` as the store keeps a failed poll's (see _ERROR_CHARS)."""
    return redact_emails(public_text_links(error[:_ERROR_CHARS]))[:_ERROR_CHARS]


_TRIM = ("DELETE FROM poll_failures WHERE id IN (SELECT id FROM poll_failures WHERE source = ? "
         "ORDER BY polled_at DESC, id DESC LIMIT -1 OFFSET ?)")


# A source's poll state started afresh (its type or url changed in feeds.toml: store/sources.py) while it failed: a run
# of failures that no success ends, where the next ones are another endpoint's. Without it, the failures-since query
# (docs/queries.md) took the old url's and the new one's for one outage, ended by the new one's first success. The
# time is the clock's: the reset is a config's, read with no poll's time at hand.
RESET_ROW = ("INSERT INTO poll_failures (source, polled_at, outcome, failures) "
             "SELECT name, strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now'), 'reset', consecutive_failures FROM sources "
             "WHERE name = ? AND consecutive_failures > 0")


def log_failure(conn: sqlite3.Connection, source: str, error: str, now: datetime, next_poll_at: datetime,
                http_status: int | None, retry_after: float | None) -> None:
    """Record a failed poll of ``source``, after its row counted it (``failures`` is its place in the run, and
    ``polls`` counts it)."""
    row = conn.execute("SELECT consecutive_failures, polls FROM sources WHERE name = ?", (source,)).fetchone()
    if row is None:
        return
    conn.execute(
        "INSERT INTO poll_failures (source, polled_at, outcome, failures, error, http_status, retry_after, "
        "next_poll_at) VALUES (?, ?, 'failed', ?, ?, ?, ?, ?)",
        (source, iso(now), row[0], stored_error(error), http_status, retry_after, iso(next_poll_at)))
    if row[1] % TRIM_EVERY == 0:
        conn.execute(_TRIM, (source, PER_SOURCE))


def log_recovery(conn: sqlite3.Connection, source: str, now: datetime, next_poll_at: datetime) -> None:
    """Record a successful poll of ``source`` that ends a run of failures (``failures``: how many), before its row
    forgets them (and counts this poll)."""
    row = conn.execute("SELECT consecutive_failures, polls FROM sources WHERE name = ?", (source,)).fetchone()
    if row is None:
        return
    if row[0]:
        conn.execute("INSERT INTO poll_failures (source, polled_at, outcome, failures, next_poll_at) "
                     "VALUES (?, ?, 'recovered', ?, ?)", (source, iso(now), row[0], iso(next_poll_at)))
    if (row[1] + 1) % TRIM_EVERY == 0:  # a success too: a source whose every hundredth poll succeeds is cut as well
        conn.execute(_TRIM, (source, PER_SOURCE))


class PollFailuresMixin:
    database: Database

    if TYPE_CHECKING:  # MaintenanceMixin's, beside this one in Store
        def _in_batches(self, one_batch: Callable[[sqlite3.Connection], int], batch: int,
                        stop: threading.Event | None = None) -> int: ...

    def poll_failures(self, source: str, limit: int) -> list[dict[str, Any]]:
        """The source's latest ``limit`` rows of poll_failures, newest first."""
        return self.database.rows("SELECT * FROM poll_failures WHERE source = ? ORDER BY polled_at DESC, id DESC "
                                  "LIMIT ?", (source, limit))

    def prune_poll_failures(self, before: datetime, batch: int = PRUNE_BATCH,
                            stop: threading.Event | None = None) -> int:
        """Delete the poll_failures rows of polls made before ``before``; returns how many went. ``batch`` at a
        time, each in a transaction of its own with a pause after it (and no further batch once ``stop`` is set), as
        the other prunes."""
        def one_batch(conn: sqlite3.Connection) -> int:
            return int(conn.execute("DELETE FROM poll_failures WHERE id IN (SELECT id FROM poll_failures "
                                    "WHERE polled_at < ? LIMIT ?)", (iso(before), batch)).rowcount)

        return self._in_batches(one_batch, batch, stop)

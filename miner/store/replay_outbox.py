"""Which outbox rows a replay may send: those it planned, never what a stopped service had queued.

A replay into a stopped service's store sends to files on a simulated clock. It used to send every due row: the
service's alerts queued while its mail server was down were written to the replay's files and marked sent, and the
service never sent them. A replay's handle takes only the rows after the last one there when it began
(``outbox_after``). That id is kept in alert_state until the replay has finished, so the run that resumes a killed
one sends what the killed run had planned too; anything else that plans a notification meanwhile (the service,
`miner outbox send`, `miner digest`) forgets it, and the next replay starts after its rows again. A replay's rows
are never the service's to send (a replay pages nobody): what one leaves waiting, held past its end or planned
before it was killed, is recorded as suppressed when its mark goes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite3

    from miner.store.db import Database

REPLAY_KEY = "replay_outbox_after"  # alert_state: outbox_after of a replay that has not finished


def forget_replay(conn: sqlite3.Connection,
                  reason: str = "planned by a replay that did not finish (a replay pages nobody)") -> int:
    """A row planned outside a replay: an unfinished replay's mark no longer separates its rows from others', so the
    rows it left waiting are recorded as suppressed, never sent by the service; returns how many."""
    row = conn.execute("SELECT value FROM alert_state WHERE key = ?", (REPLAY_KEY,)).fetchone()
    if row is None:
        return 0
    conn.execute("DELETE FROM alert_state WHERE key = ?", (REPLAY_KEY,))
    return int(conn.execute(
        "UPDATE outbox SET status = 'suppressed', reason = ?, claimed_by = NULL, claimed_at = NULL "
        "WHERE id > ? AND status IN ('pending', 'sending')", (reason, int(row[0]))).rowcount)


class ReplayOutboxMixin:
    database: Database
    outbox_after: int | None = None  # None: not a replay's handle, every row is this handle's to send

    def begin_replay(self) -> int:
        """Take only the rows planned from now on (or since an unfinished replay began); returns how many rows
        before those wait to be sent."""
        with self.database.transaction() as conn:
            row = conn.execute("SELECT value FROM alert_state WHERE key = ?", (REPLAY_KEY,)).fetchone()
            # SQLite gives a new row the largest id plus one: every row planned after this gets a larger one
            after = int(row[0]) if row else int(conn.execute("SELECT coalesce(max(id), 0) FROM outbox").fetchone()[0])
            conn.execute("INSERT INTO alert_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                         "SET value = excluded.value", (REPLAY_KEY, str(after)))
        self.outbox_after = after
        return self.count_waiting()

    def outbox_scope(self, column: str = "id") -> tuple[str, tuple[int, ...]]:
        """A condition on ``column`` (an outbox id) with its parameters: the rows this handle may read or change.

        Every queue reader a replay runs goes through it: muting queued rows on the simulated clock (a silence or
        maintenance window active then) suppressed the stopped service's own pending rows, never sent. Any other
        handle leaves alone the rows of a replay that has not finished (killed), which are never its to send.
        """
        if self.outbox_after is not None:
            return f"{column} > ?", (self.outbox_after,)
        return (f"{column} <= coalesce((SELECT CAST(value AS INTEGER) FROM alert_state WHERE key = '{REPLAY_KEY}'), "
                f"{column})"), ()

    def end_replay(self) -> int:
        """The replay has finished: what it planned and left waiting (held for group_interval past its end) is
        recorded as suppressed, not sent by the service later; returns how many."""
        with self.database.transaction() as conn:
            return forget_replay(conn, "the replay ended before it was due (a replay pages nobody)")

    def holds_only_a_replay_mark(self) -> bool:
        """Whether no table has a row, but the record of its migrations and a replay's mark: a demo begins its
        replay before its model loads, and one stopped then (or failing there) left the mark and nothing else."""
        tables = [r["name"] for r in self.database.rows(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' "
            "AND name != 'schema_migrations'")]

        def empty(name: str) -> bool:
            where, args = ("key != ?", (REPLAY_KEY,)) if name == "alert_state" else ("1", ())
            return self.database.one(f'SELECT 1 AS x FROM "{name}" WHERE {where} LIMIT 1', args) is None

        return all(empty(name) for name in tables)

    def count_waiting(self) -> int:
        """How many rows up to outbox_after, not the replay's, wait to be sent (pending or claimed)."""
        return int(self.database.rows(
            "SELECT count(*) AS n FROM outbox WHERE id <= ? AND status IN ('pending', 'sending')",
            (self.outbox_after or 0,))[0]["n"])

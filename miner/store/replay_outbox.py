"""Which outbox rows a replay may send: those it planned, never what a stopped service had queued.

A replay into a stopped service's store sends to files on a simulated clock. It used to send every due row: the
service's alerts queued while its mail server was down were written to the replay's files and marked sent, and the
service never sent them. A replay's handle takes only the rows after the last one there when it began
(``outbox_after``). That id is kept in alert_state until the replay has finished, so the run that resumes a killed
one sends what the killed run had planned too; anything else that plans a notification meanwhile (the service,
`miner outbox send`, `miner digest`) forgets it, and the next replay starts after its rows again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite3

    from miner.store.db import Database

REPLAY_KEY = "replay_outbox_after"  # alert_state: outbox_after of a replay that has not finished


def forget_replay(conn: sqlite3.Connection) -> None:
    """A row planned outside a replay: an unfinished replay's mark no longer separates its rows from others'."""
    conn.execute("DELETE FROM alert_state WHERE key = ?", (REPLAY_KEY,))


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
        return self.count_waiting(theirs=True)

    def outbox_scope(self, column: str = "id") -> tuple[str, tuple[int, ...]]:
        """A condition on ``column`` (an outbox id) with its parameters: the rows this handle may read or change.

        Every queue reader a replay runs goes through it: muting queued rows on the simulated clock (a silence or
        maintenance window active then) suppressed the stopped service's own pending rows, never sent.
        """
        return f"{column} > ?", (self.outbox_after or 0,)

    def end_replay(self) -> None:
        with self.database.transaction() as conn:
            forget_replay(conn)

    def count_waiting(self, *, theirs: bool) -> int:
        """How many rows wait to be sent (pending or claimed): up to outbox_after (``theirs``), or after it."""
        return int(self.database.rows(
            f"SELECT count(*) AS n FROM outbox WHERE id {'<=' if theirs else '>'} ? AND status IN ('pending', "
            "'sending')", (self.outbox_after or 0,))[0]["n"])

"""``group_interval``: after a message of a group on a route and channel, the next one of its kind waits, as in
Alertmanager.

An outage spreading over detector buckets opens one service per bucket. Without this, each opening was a message
of its own once its ``group_wait`` was over; with it, what is planned for a route, channel and group (outbox.group_key,
from ``group_by``: a provider, a service, or "" for the whole route) within ``group_interval`` of its last message
(alert or resolve notice, each kind on its own as they are batched) waits in one batch due ``group_interval`` after
that message, which everything planned meanwhile joins. Another group's messages hold nothing: an unrelated outage
goes out after its group wait.

The wait is set when the batch is planned (a message went out already) and checked again just before a batch is
claimed (the message before it went out after it was planned: it was due, or being sent, or retried through an
outage). Only a batch never tried is held: one retried through an outage is late already, and one partly
delivered cannot take in more incidents.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from miner.timeutil import iso, parse_iso

if TYPE_CHECKING:
    import sqlite3

    from miner.store.db import Database


def held_until(conn: sqlite3.Connection, route: str, channel: str, group: str, kind: str, interval: float,
               now: datetime, exclude_id: int = 0) -> datetime | None:
    """When the next ``kind`` message of ``route``, ``channel`` and ``group`` may go out, if that is after ``now``.

    The last message is the latest sent, or being sent (its claim's time). One stamped more than CLOCK_SLACK after
    ``now`` was stamped by a clock that was ahead: it would hold every message after it until real time passed
    that stamp, so it does not count (a time within the slack counts as ``now``).
    """
    from miner.store.clock import CLOCK_SLACK  # clock.py imports the outbox, which imports this module

    if interval <= 0:
        return None
    row = conn.execute(
        "SELECT max(coalesce(sent_at, claimed_at)) FROM outbox WHERE route = ? AND channel = ? AND group_key = ? "
        "AND kind = ? AND status IN ('sent', 'sending') AND id != ? AND coalesce(sent_at, claimed_at) <= ?",
        (route, channel, group, kind, exclude_id, iso(now + CLOCK_SLACK))).fetchone()
    if row is None or row[0] is None:
        return None
    until = min(parse_iso(str(row[0])), now) + timedelta(seconds=interval)
    return until if until > now else None


def waiting_batch(conn: sqlite3.Connection, route: str, channel: str, group: str, kind: str, now: datetime,
                  exclude_id: int = 0, after_id: int = 0) -> tuple[int, str, str] | None:
    """(id, message_id, next_attempt_at) of a batch of ``route``, ``channel``, ``group`` and ``kind`` that can still
    take in more: due after ``now`` (in its group wait or group interval), nobody has claimed or tried it yet; one
    after ``after_id`` (ReplayOutboxMixin)."""
    row = conn.execute(
        "SELECT id, message_id, next_attempt_at FROM outbox WHERE route = ? AND channel = ? AND group_key = ? "
        "AND kind = ? AND status = 'pending' AND attempts = 0 AND claimed_by IS NULL AND next_attempt_at > ? "
        "AND id != ? AND id > ? ORDER BY id LIMIT 1", (route, channel, group, kind, iso(now), exclude_id, after_id)
    ).fetchone()
    return None if row is None else (int(row[0]), str(row[1]), str(row[2]))


class GroupIntervalMixin:
    database: Database
    outbox_after: int | None  # ReplayOutboxMixin's
    outbox_scope: Callable[..., tuple[str, tuple[int, ...]]]  # ReplayOutboxMixin's

    def shorten_waits(self, waits: Mapping[str, tuple[float, float]], now: datetime) -> int:
        """Bring forward the alerts and resolve notices waiting (never tried) longer than their route's group wait and
        group interval now allow; ``waits``: route -> (group_wait, group_interval) in seconds. Returns how many.

        The wait was set when the batch was planned or held: a route given a shorter one by a config reload (a pager
        set to group_interval = 0 because its pages came late) still held what was waiting, and everything of its
        group planned meanwhile, for the old one. A longer one needs nothing: a batch is held again when it is due.
        """
        scope, args = self.outbox_scope()
        moved = 0
        with self.database.transaction() as conn:
            rows = conn.execute(
                "SELECT id, route, channel, group_key, kind, created_at, next_attempt_at FROM outbox WHERE "
                "status = 'pending' AND claimed_by IS NULL AND attempts = 0 AND kind IN ('alert', 'resolved') "
                f"AND next_attempt_at > ? AND {scope}", (iso(now), *args)).fetchall()
            for outbox_id, route, channel, group, kind, created_at, next_at in rows:
                if route not in waits:
                    continue  # a route no longer configured: it fails when it is sent
                group_wait, interval = waits[route]
                due = parse_iso(created_at) + timedelta(seconds=group_wait)
                if (until := held_until(conn, route, channel, group, kind, interval, now, outbox_id)) is not None:
                    due = max(due, until)
                # Stored times are whole seconds: a wait with a fraction is not "shorter" by what rounding cut off.
                if due < parse_iso(next_at) - timedelta(seconds=1):
                    conn.execute("UPDATE outbox SET next_attempt_at = ? WHERE id = ?", (iso(max(due, now)), outbox_id))
                    moved += 1
        return moved

    def hold_for_group_interval(self, outbox_id: int, interval: float, now: datetime) -> datetime | None:
        """Move a due alert or resolve notice never tried to ``interval`` after the last message of its kind of its
        route, channel and group, when that is still to come, or into a batch of theirs already waiting; returns the
        time it is held until, or None (send it now).

        Conditional like a claim: a row another worker claimed, held or rescheduled meanwhile is left alone.
        """
        with self.database.transaction() as conn:
            row = conn.execute(
                "SELECT route, channel, group_key, kind, message_id FROM outbox WHERE id = ? AND status = 'pending' "
                "AND claimed_by IS NULL AND attempts = 0 AND kind IN ('alert', 'resolved') AND next_attempt_at <= ?",
                (outbox_id, iso(now))).fetchone()
            if row is None:
                return None
            route, channel, group, kind, message_id = (str(v) for v in row)
            until = held_until(conn, route, channel, group, kind, interval, now, outbox_id)
            if until is None:
                return None
            # A batch already waiting (held, or in its group wait) takes this one in: batches due together and
            # held one by one would each wait for the one before, k batches k group intervals.
            into = waiting_batch(conn, route, channel, group, kind, now, outbox_id, self.outbox_after or 0)
            if into is None:
                conn.execute("UPDATE outbox SET next_attempt_at = ? WHERE id = ?", (iso(until), outbox_id))
                return until
            # Never tried, so nothing else refers to the row: no delivery, no delivered:ID. Resolve notices thread
            # under the Message-ID of the batch that carries the opening.
            conn.execute("UPDATE outbox_items SET outbox_id = ? WHERE outbox_id = ?", (into[0], outbox_id))
            conn.execute("UPDATE alert_incidents SET message_id = ? WHERE message_id = ?", (into[1], message_id))
            conn.execute("DELETE FROM outbox WHERE id = ?", (outbox_id,))
            return parse_iso(into[2])

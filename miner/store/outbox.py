"""The alert outbox: planned notifications, their claims and delivery attempts, and planner state.

A notification row is written before anything is sent, claimed by one worker with a conditional UPDATE, and
finished by that worker; a claim older than the lease goes back to pending. Each incident transition becomes
an ``outbox_items`` row whose ``item_key`` is unique per route and channel, so planning twice never doubles it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from miner.store.group_interval import held_until, waiting_batch
from miner.store.replay_outbox import forget_replay
from miner.store.sql_lists import IN_LIST, json_list
from miner.timeutil import iso

if TYPE_CHECKING:
    import sqlite3

    from miner.store.db import Database

OUTBOX_SQL = """
    CREATE TABLE alert_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        dedupe_key TEXT NOT NULL UNIQUE,
        route TEXT NOT NULL,
        channel TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('alert', 'resolved', 'digest')),
        status TEXT NOT NULL CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'suppressed')),
        message_id TEXT NOT NULL,
        payload TEXT NOT NULL DEFAULT '{}',
        reason TEXT,
        created_at TEXT NOT NULL,
        next_attempt_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        claimed_by TEXT,
        claimed_at TEXT,
        sent_at TEXT,
        last_error TEXT
    );
    CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
    CREATE TABLE outbox_items (
        item_key TEXT PRIMARY KEY,
        outbox_id INTEGER NOT NULL REFERENCES outbox (id),
        incident_id INTEGER NOT NULL REFERENCES incidents (id),
        kind TEXT NOT NULL CHECK (kind IN ('open', 'repeat', 'resolve'))
    );
    CREATE INDEX outbox_items_outbox ON outbox_items (outbox_id);
    CREATE TABLE alert_incidents (
        route TEXT NOT NULL,
        incident_id INTEGER NOT NULL REFERENCES incidents (id),
        open_outcome TEXT NOT NULL CHECK (open_outcome IN ('queued', 'suppressed')),
        message_id TEXT,
        last_notified_at TEXT NOT NULL,
        repeats INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (route, incident_id)
    );
    CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY,
        outbox_id INTEGER NOT NULL REFERENCES outbox (id),
        attempt INTEGER NOT NULL,
        worker TEXT NOT NULL,
        at TEXT NOT NULL,
        outcome TEXT NOT NULL CHECK (outcome IN ('sent', 'retry', 'failed')),
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX deliveries_outbox ON deliveries (outbox_id, id);
    CREATE TABLE silences (
        id INTEGER PRIMARY KEY,
        service TEXT NOT NULL,
        starts_at TEXT NOT NULL,
        ends_at TEXT NOT NULL,
        comment TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL
    );
"""

_CURSOR = "planner_event_cursor"


@dataclass(frozen=True)
class PlannedItem:
    """One incident transition for one route and channel, as the planner decided it.

    ``suppressed`` (a reason) records it without sending. Otherwise it joins a pending, unclaimed batch of the
    same route, channel, group and kind still inside its group wait, or starts a new batch due at ``due_at``.
    """

    item_key: str
    route: str
    channel: str
    kind: str  # alert | resolved
    item_kind: str  # open | repeat | resolve
    incident_id: int
    message_id: str  # used when this item starts a new batch
    due_at: datetime
    suppressed: str | None = None
    group_interval: float = 0.0  # seconds: a new batch waits this long after the last message (group_interval.py)
    group: str = ""  # outbox.group_key (AlertSettings.group_of): "" is the whole route
    # An opening first seen more than stale_after after it happened: when it was, and how late (outbox_items).
    seen_late_at: datetime | None = None
    late_seconds: float | None = None


@dataclass(frozen=True)
class Finish:
    """How one claimed attempt ended: sent, retry at ``next_attempt_at``, or failed."""

    outcome: str  # sent | retry | failed
    detail: str = ""
    next_attempt_at: datetime | None = None
    # False: done with nothing left to send (delivery.NothingSent). No sent_at then: a message that never went out
    # must not hold back the next of its group for group_interval, nor count for repeat_interval.
    delivered: bool = True
    # False: no attempt of the message's (a send cut by the service's stop): its attempts, which count towards giving
    # it up (alerts/retry.py), stay as they were. Its deliveries row has the number the next attempt takes.
    counts: bool = True


class OutboxMixin:
    database: Database
    outbox_after: int | None  # ReplayOutboxMixin's: rows up to it are not a replay's to send or add to
    outbox_scope: Callable[..., tuple[str, tuple[int, ...]]]  # ReplayOutboxMixin's

    # Planner ------------------------------------------------------------------------------------------

    def alert_cursor(self) -> int:
        row = self.database.one("SELECT value FROM alert_state WHERE key = ?", (_CURSOR,))
        return int(row["value"]) if row else 0

    def incident_events_after(self, cursor: int, limit: int = 1000) -> list[dict[str, Any]]:
        """Transitions after ``cursor`` with their incident's service and status."""
        return self.database.rows(
            "SELECT e.id, e.incident_id, e.kind, e.at, e.details, i.service, i.status, i.group_id "
            "FROM incident_events e JOIN incidents i ON i.id = e.incident_id WHERE e.id > ? ORDER BY e.id LIMIT ?",
            (cursor, limit),
        )

    def alert_incident_states(self, incident_ids: Sequence[int]) -> dict[tuple[str, int], dict[str, Any]]:
        if not incident_ids:
            return {}
        rows = self.database.rows(f"SELECT * FROM alert_incidents WHERE incident_id {IN_LIST}",
                                  (json_list(incident_ids),))
        return {(r["route"], r["incident_id"]): r for r in rows}

    def undelivered_alerts(self, incident_ids: Sequence[int]) -> set[tuple[str, str, int]]:
        """(route, channel, incident) of alerts (openings, reminders) still waiting to go out: group wait or retries."""
        return self._queued_alerts(incident_ids, "o.status IN ('pending', 'sending')")

    def unsent_alerts(self, incident_ids: Sequence[int]) -> set[tuple[str, str, int]]:
        """(route, channel, incident) of alerts nobody has received yet, that will show the incident's state when
        they go out: pending and unclaimed, with no recipient that already has it (a partly delivered email)."""
        return self._queued_alerts(incident_ids, "o.status = 'pending' AND o.claimed_by IS NULL AND NOT EXISTS "
                                                 "(SELECT 1 FROM alert_state WHERE key = 'delivered:' || o.id)")

    def reached_alerts(self, incident_ids: Sequence[int]) -> set[tuple[str, str, int]]:
        """(route, channel, incident) of alerts that went out (or are going out), whole or in part."""
        return self._queued_alerts(
            incident_ids, "(o.status = 'sent' AND o.sent_at IS NOT NULL OR o.status = 'sending' "
                          "OR EXISTS (SELECT 1 FROM alert_state WHERE key = 'delivered:' || o.id))")

    def _queued_alerts(self, incident_ids: Sequence[int], where: str) -> set[tuple[str, str, int]]:
        if not incident_ids:
            return set()
        rows = self.database.rows(
            "SELECT DISTINCT o.route, o.channel, i.incident_id FROM outbox_items i JOIN outbox o ON o.id = i.outbox_id "
            f"WHERE o.kind = 'alert' AND i.incident_id {IN_LIST} AND {where}", (json_list(incident_ids),))
        return {(str(r["route"]), str(r["channel"]), int(r["incident_id"])) for r in rows}

    def apply_alert_plan(self, expected_cursor: int, new_cursor: int, items: Sequence[PlannedItem],
                         now: datetime) -> int | None:
        """Write planned items and move the cursor, atomically; None when another planner moved it first."""
        added = 0
        batches: dict[tuple[str, str, str, str], tuple[int, str]] = {}
        with self.database.transaction() as conn:
            row = conn.execute("SELECT value FROM alert_state WHERE key = ?", (_CURSOR,)).fetchone()
            if (int(row[0]) if row else 0) != expected_cursor:
                return None
            if items and self.outbox_after is None:
                forget_replay(conn)  # first: nothing of the service's joins a batch of the replay's
            for item in items:
                if conn.execute("SELECT 1 FROM outbox_items WHERE item_key = ?", (item.item_key,)).fetchone():
                    continue
                outbox_id, message_id = _place(conn, item, now, batches, self.outbox_after or 0)
                conn.execute("INSERT INTO outbox_items (item_key, outbox_id, incident_id, kind, seen_late_at, "
                             "late_seconds) VALUES (?, ?, ?, ?, ?, ?)",
                             (item.item_key, outbox_id, item.incident_id, item.item_kind,
                              iso(item.seen_late_at) if item.seen_late_at else None, item.late_seconds))
                _note_incident(conn, item, message_id, now)
                added += 1
            conn.execute("INSERT INTO alert_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                         "SET value = excluded.value", (_CURSOR, str(new_cursor)))
        return added

    def alert_state(self, key: str) -> str | None:
        row = self.database.one("SELECT value FROM alert_state WHERE key = ?", (key,))
        return str(row["value"]) if row else None

    def first_alert_state(self, key: str, value: str) -> str:
        """``key``'s value, set to ``value`` when it has none: whichever process sets it first, all read that one."""
        with self.database.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO alert_state (key, value) VALUES (?, ?)", (key, value))
            return str(conn.execute("SELECT value FROM alert_state WHERE key = ?", (key,)).fetchone()[0])

    def set_alert_state(self, key: str, value: str) -> None:
        with self.database.transaction() as conn:
            conn.execute("INSERT INTO alert_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                         "SET value = excluded.value", (key, value))

    def enqueue_digest(self, dedupe_key: str, route: str, message_id: str, payload: dict[str, Any],
                       now: datetime, state_key: str, state_value: str) -> bool:
        """Insert one digest notification and move its route's schedule anchor in one transaction.

        A digest already queued under ``dedupe_key`` (by another planner, which moved the anchor with it, or by a
        clock that was ahead, whose anchor has been taken back since) leaves the anchor where it is: the next digest
        covers the time since the last one queued, and nothing resolved in between goes unreported.
        """
        with self.database.transaction() as conn:
            if self.outbox_after is None:
                forget_replay(conn)
            cur = conn.execute(
                "INSERT OR IGNORE INTO outbox (dedupe_key, route, channel, kind, status, message_id, payload, "
                "created_at, next_attempt_at) VALUES (?, ?, 'email', 'digest', 'pending', ?, ?, ?, ?)",
                (dedupe_key, route, message_id, json.dumps(payload), iso(now), iso(now)),
            )
            if cur.rowcount == 1:
                conn.execute("INSERT INTO alert_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                             "SET value = excluded.value", (state_key, state_value))
        return cur.rowcount == 1

    # Dispatch -----------------------------------------------------------------------------------------

    def due_notifications(self, now: datetime, limit: int, *, exclude_channels: Sequence[str] = (),
                          exclude_ids: Sequence[int] = ()) -> list[dict[str, Any]]:
        skip = f"AND channel NOT IN ({','.join('?' * len(exclude_channels))}) " if exclude_channels else ""
        scope, args = self.outbox_scope()
        return self.database.rows(
            f"SELECT * FROM outbox WHERE status = 'pending' AND next_attempt_at <= ? AND {scope} {skip}"
            f"AND id NOT {IN_LIST} ORDER BY next_attempt_at, id LIMIT ?",
            (iso(now), *args, *exclude_channels, json_list(exclude_ids), limit),
        )

    def finish_notification(self, outbox_id: int, worker: str, now: datetime, finish: Finish) -> bool:
        """Record an attempt and its outcome; False when our claim had lapsed and been taken over."""
        status = {"sent": "sent", "retry": "pending", "failed": "failed"}[finish.outcome]
        with self.database.transaction() as conn:
            cur = conn.execute(
                "UPDATE outbox SET status = ?, attempts = attempts + ?, claimed_by = NULL, claimed_at = NULL, "
                "sent_at = CASE WHEN ? = 'sent' AND ? THEN ? ELSE sent_at END, "
                # A delivered row has no current error: the old one would read as a problem in `miner outbox --all`
                # (the attempts that failed keep theirs in deliveries).
                "last_error = CASE WHEN ? = 'sent' THEN NULL ELSE ? END, "
                "reason = CASE WHEN ? = 'failed' THEN ? ELSE reason END, "
                "next_attempt_at = coalesce(?, next_attempt_at) "
                "WHERE id = ? AND status = 'sending' AND claimed_by = ?",
                (status, int(finish.counts), finish.outcome, finish.delivered, iso(now), finish.outcome, finish.detail,
                 finish.outcome, finish.detail, iso(finish.next_attempt_at) if finish.next_attempt_at else None,
                 outbox_id, worker),
            )
            if finish.outcome == "sent" and finish.delivered:
                # repeat_interval counts from the alert reaching its receiver, as in Alertmanager, not from its
                # planning: an alert held back by an outage for longer than that is not followed by a reminder.
                conn.execute(
                    "UPDATE alert_incidents SET last_notified_at = max(last_notified_at, ?) "
                    "WHERE open_outcome = 'queued' AND (route, incident_id) IN (SELECT o.route, i.incident_id "
                    "FROM outbox o JOIN outbox_items i ON i.outbox_id = o.id WHERE o.id = ? AND o.kind = 'alert')",
                    (iso(now), outbox_id))
            attempt = conn.execute("SELECT attempts FROM outbox WHERE id = ?", (outbox_id,)).fetchone()
            number = int(attempt[0]) + (0 if finish.counts else 1) if attempt else 0
            # A failure recorded after our claim lapsed failed nothing: the worker that took the row over decides
            # it. Kept as 'failed', it read as the give-up a `miner outbox retry` requeued after (REQUEUED_AFTER),
            # and a row never requeued started a new run of failures before it was given up.
            outcome = "retry" if finish.outcome == "failed" and cur.rowcount != 1 else finish.outcome
            conn.execute(
                "INSERT INTO deliveries (outbox_id, attempt, worker, at, outcome, detail) VALUES (?, ?, ?, ?, ?, ?)",
                (outbox_id, number, worker, iso(now), outcome, finish.detail),
            )
        return cur.rowcount == 1

    def notification(self, outbox_id: int) -> dict[str, Any] | None:
        return self.database.one("SELECT * FROM outbox WHERE id = ?", (outbox_id,))

    def notification_items(self, outbox_id: int) -> list[dict[str, Any]]:
        return self.database.rows(
            "SELECT item_key, incident_id, kind, seen_late_at, late_seconds FROM outbox_items WHERE outbox_id = ? "
            "ORDER BY incident_id",
            (outbox_id,),
        )

    def open_message_id(self, route: str, incident_id: int) -> str | None:
        row = self.database.one("SELECT message_id FROM alert_incidents WHERE route = ? AND incident_id = ?",
                                (route, incident_id))
        return str(row["message_id"]) if row and row["message_id"] else None

    def earlier_alert_id(self, route: str, incident_id: int, message_id: str) -> str | None:
        """The Message-ID of the last alert email about ``incident_id`` sent on ``route``, other than ``message_id``:
        the one a re-opening's alert replies to (alert_incidents keeps the re-opening's own from its planning)."""
        row = self.database.one(
            "SELECT o.message_id FROM outbox_items i JOIN outbox o ON o.id = i.outbox_id WHERE i.incident_id = ? "
            "AND i.kind = 'open' AND o.route = ? AND o.channel = 'email' AND o.status = 'sent' AND o.message_id != ? "
            "ORDER BY o.id DESC LIMIT 1", (incident_id, route, message_id))
        return str(row["message_id"]) if row and row["message_id"] else None

    def has_sent_notifications(self) -> bool:
        """Whether any notification was sent (or claimed for sending) from this store."""
        return self.database.one("SELECT 1 AS x FROM outbox WHERE status IN ('sent', 'sending') LIMIT 1") is not None

    def outbox_counts(self) -> dict[str, int]:
        """Notifications per status (only statuses that occur)."""
        rows = self.database.rows("SELECT status, count(*) AS n FROM outbox GROUP BY status")
        return {str(r["status"]): int(r["n"]) for r in rows}

    def deliveries(self, outbox_id: int) -> list[dict[str, Any]]:
        return self.database.rows("SELECT * FROM deliveries WHERE outbox_id = ? ORDER BY id", (outbox_id,))

    def retry_notification(self, outbox_id: int, now: datetime) -> bool:
        """Put a failed notification back in the queue, due now (after the cause was fixed). Its created_at stays
        when it was planned, its attempts go on counting (the failures since count towards giving it up again:
        alerts/retry.py); set to now, created_at made a message requeued each time it was given up never old."""
        with self.database.transaction() as conn:
            return conn.execute(
                "UPDATE outbox SET status = 'pending', next_attempt_at = ?, reason = NULL "
                "WHERE id = ? AND status = 'failed'", (iso(now), outbox_id),
            ).rowcount == 1


def _place(conn: sqlite3.Connection, item: PlannedItem, now: datetime,
           batches: dict[tuple[str, str, str, str], tuple[int, str]], after_id: int = 0) -> tuple[int, str]:
    """The outbox row this item goes in: one of its group planned in the same transaction (``batches``), a batch of
    its group still waiting out its group wait (or group interval), or a new one, due after its group wait and group
    interval. A batch up to ``after_id`` is not joined (ReplayOutboxMixin)."""
    key = (item.route, item.channel, item.group, item.kind)
    if item.suppressed is None:
        # Openings planned together are simultaneous whatever group_wait is: with group_wait = 0 a batch is due at
        # once, so the lookup below never found it, and a provider outage opening 300 services sent 300 messages.
        if key in batches:
            return batches[key]
        # Only a batch nobody has claimed or tried yet can grow; its content is read when it is sent.
        row = waiting_batch(conn, item.route, item.channel, item.group, item.kind, now, after_id=after_id)
        if row:
            batches[key] = row[0], row[1]
            return batches[key]
    status = "suppressed" if item.suppressed is not None else "pending"
    # A suppressed row's next_attempt_at is when it was suppressed (`miner outbox`): it has no attempt to come.
    due = item.due_at if item.suppressed is None else now
    if item.suppressed is None and (until := held_until(conn, item.route, item.channel, item.group, item.kind,
                                                        item.group_interval, now)) is not None:
        due = max(due, until)
    cur = conn.execute(
        "INSERT INTO outbox (dedupe_key, route, channel, group_key, kind, status, message_id, reason, created_at, "
        "next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (item.item_key, item.route, item.channel, item.group, item.kind, status, item.message_id, item.suppressed,
         iso(now), iso(due)),
    )
    if item.suppressed is None:
        batches[key] = int(cur.lastrowid or 0), item.message_id
    return int(cur.lastrowid or 0), item.message_id


def _note_incident(conn: sqlite3.Connection, item: PlannedItem, message_id: str, now: datetime) -> None:
    """Remember per route what happened to an incident's alerts: for inhibition, repeats and threading."""
    if item.item_kind == "open":
        outcome = "suppressed" if item.suppressed else "queued"
        # A re-opening (a new open event) replaces the outcome; only email has a Message-ID to thread on.
        conn.execute(
            "INSERT INTO alert_incidents (route, incident_id, open_outcome, message_id, last_notified_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (route, incident_id) DO UPDATE SET "
            "open_outcome = excluded.open_outcome, last_notified_at = excluded.last_notified_at, "
            "message_id = coalesce(excluded.message_id, alert_incidents.message_id)",
            (item.route, item.incident_id, outcome,
             message_id if item.channel == "email" and not item.suppressed else None, iso(now)),
        )
    elif item.item_kind == "repeat":
        # A muted reminder goes nowhere: the next still counts from the last alert that went out, so it is due as soon
        # as the mute ends (Store.muted_reminders keeps muted ones to one per repeat_interval).
        conn.execute(
            "UPDATE alert_incidents SET last_notified_at = CASE WHEN ? THEN last_notified_at ELSE ? END, "
            "repeats = repeats + 1 WHERE route = ? AND incident_id = ?",
            (item.suppressed is not None, iso(now), item.route, item.incident_id),
        )

"""Silences, and the queued notifications they (or maintenance windows) mute before they are sent.

A silence mutes one service, or every service of a provider (as feeds.toml says when it is matched), for a span of
time; the planner records what it mutes as ``suppressed`` with its
reason, whether the item was planned while the silence held or was already queued (waiting out ``group_wait``,
or retried through an outage) when it began.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from miner.store.sql_lists import IN_LIST, json_list
from miner.timeutil import iso, parse_iso

if TYPE_CHECKING:
    from miner.store.db import Database


def silence_label(silence: dict[str, Any]) -> str:
    """What a silence mutes, for people: ``WhatsApp``, or ``provider Meta``."""
    return f"provider {silence['provider']}" if silence["provider"] else str(silence["service"])


def silence_matches(silence: dict[str, Any], service: str, provider: str | None) -> bool:
    """Whether ``silence`` mutes ``service``, whose provider (feeds.toml's, now) is ``provider``; any case."""
    if silence["provider"]:
        return provider is not None and provider.lower() == str(silence["provider"]).lower()
    return str(silence["service"]).lower() == service.lower()


@dataclass(frozen=True)
class MutedItem:
    """A queued item that a silence or maintenance window now mutes (see Store.suppress_queued)."""

    outbox_id: int
    item_key: str
    item_kind: str  # open | repeat | resolve
    incident_id: int
    reason: str
    message_id: str  # of the suppressed row it moves to, when its notification has other items
    # It reached its receiver already (a PagerDuty trigger accepted, an email some recipients have, before the rest
    # of the notification failed): muting the rest leaves its opening as delivered, so its resolve still goes.
    delivered: bool = False


class MutesMixin:
    database: Database
    outbox_scope: Callable[..., tuple[str, tuple[int, ...]]]  # ReplayOutboxMixin's

    def queued_alert_items(self) -> list[dict[str, Any]]:
        """Items of alerts and resolve notices not sent yet (group wait, retries), with their incident's service and
        status; a replay's only (outbox_scope)."""
        scope, args = self.outbox_scope("o.id")
        return self.database.rows(
            "SELECT o.id AS outbox_id, o.route, o.channel, i.item_key, i.incident_id, i.kind, inc.service, inc.status "
            "FROM outbox o JOIN outbox_items i ON i.outbox_id = o.id JOIN incidents inc ON inc.id = i.incident_id "
            f"WHERE o.status = 'pending' AND o.claimed_by IS NULL AND o.kind IN ('alert', 'resolved') AND {scope} "
            "ORDER BY o.id, i.item_key", args)

    def suppress_queued(self, muted: Sequence[MutedItem], now: datetime) -> int:
        """Record queued items that a silence or maintenance window now mutes as suppressed; returns how many.

        A notification all of whose items are muted becomes ``suppressed`` with their reasons; from one that also
        has other items, each muted item moves to a suppressed row of its own. Only a row still pending and
        unclaimed is touched, so nothing a worker is sending changes under it. An opening muted so counts as
        suppressed (its resolve is inhibited, it is announced when the mute ends if still open), unless the same
        opening already went out on another channel of the route.
        """
        done = 0
        by_row: dict[int, list[MutedItem]] = {}
        for m in muted:
            by_row.setdefault(m.outbox_id, []).append(m)
        with self.database.transaction() as conn:
            for outbox_id, these in by_row.items():
                row = conn.execute("SELECT * FROM outbox WHERE id = ? AND status = 'pending' AND claimed_by IS NULL",
                                   (outbox_id,)).fetchone()
                if row is None:
                    continue
                keys = {str(r[0]) for r in conn.execute("SELECT item_key FROM outbox_items WHERE outbox_id = ?",
                                                         (outbox_id,))}
                these = [m for m in these if m.item_key in keys]
                if not these:
                    continue
                if keys == {m.item_key for m in these}:
                    reason = "; ".join(dict.fromkeys(m.reason for m in these))
                    # next_attempt_at: when it was suppressed (`miner outbox`), as a row suppressed apart has.
                    conn.execute("UPDATE outbox SET status = 'suppressed', reason = ?, next_attempt_at = ? "
                                 "WHERE id = ?", (reason, iso(now), outbox_id))
                else:
                    for m in these:
                        cur = conn.execute(
                            "INSERT INTO outbox (dedupe_key, route, channel, group_key, kind, status, message_id, "
                            "reason, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, 'suppressed', ?, ?, ?, ?)",
                            (f"{m.item_key}:muted", row["route"], row["channel"], row["group_key"], row["kind"],
                             m.message_id, m.reason, iso(now), iso(now)))
                        conn.execute("UPDATE outbox_items SET outbox_id = ? WHERE item_key = ?",
                                     (cur.lastrowid, m.item_key))
                for m in these:
                    if m.item_kind == "repeat":
                        # A reminder nobody got: repeat_interval counts from the last alert that went out again, so
                        # the next is due as soon as the mute ends (rather than a repeat_interval after this one).
                        conn.execute(
                            "UPDATE alert_incidents SET last_notified_at = coalesce((SELECT max(o.sent_at) "
                            "FROM outbox o JOIN outbox_items i ON i.outbox_id = o.id WHERE o.route = ? "
                            "AND i.incident_id = ? AND o.kind = 'alert' AND o.status = 'sent' "
                            "AND o.sent_at IS NOT NULL), last_notified_at) WHERE route = ? AND incident_id = ?",
                            (row["route"], m.incident_id, row["route"], m.incident_id))
                    if m.item_kind != "open" or m.delivered:
                        continue
                    # The same opening on the route's other channels: its key with another channel at the end.
                    opening = m.item_key[: len(m.item_key) - len(str(row["channel"]))]
                    conn.execute(
                        "UPDATE alert_incidents SET open_outcome = 'suppressed' WHERE route = ? AND incident_id = ? "
                        "AND open_outcome = 'queued' AND NOT EXISTS (SELECT 1 FROM outbox_items i JOIN outbox o "
                        "ON o.id = i.outbox_id WHERE substr(i.item_key, 1, ?) = ? AND o.status IN ('sent', 'sending'))",
                        (row["route"], m.incident_id, len(opening), opening))
                done += len(these)
        return done

    def muted_reminders(self, incident_ids: Sequence[int]) -> dict[tuple[str, int], datetime]:
        """Per (route, incident): when its last reminder recorded as suppressed (muted) was planned. A muted reminder
        went nowhere, so it does not count for repeat_interval; this keeps it to one per repeat_interval."""
        if not incident_ids:
            return {}
        rows = self.database.rows(
            "SELECT o.route, i.incident_id, max(o.created_at) AS at FROM outbox o JOIN outbox_items i "
            f"ON i.outbox_id = o.id WHERE o.status = 'suppressed' AND i.kind = 'repeat' AND i.incident_id {IN_LIST} "
            "GROUP BY o.route, i.incident_id", (json_list(incident_ids),))
        return {(str(r["route"]), int(r["incident_id"])): parse_iso(str(r["at"])) for r in rows}

    def add_silence(self, service: str | None, starts_at: datetime, ends_at: datetime, comment: str,
                    now: datetime, *, provider: str | None = None) -> int:
        """A silence of ``service``, or with ``service`` None, of every service of ``provider``."""
        if (service is None) == (provider is None):
            raise ValueError("a silence is of a service or of a provider")
        with self.database.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO silences (service, provider, starts_at, ends_at, comment, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)", (service, provider, iso(starts_at), iso(ends_at), comment, iso(now)),
            )
            return int(cur.lastrowid or 0)

    def silences(self, *, active_at: datetime | None = None) -> list[dict[str, Any]]:
        if active_at is None:
            return self.database.rows("SELECT * FROM silences ORDER BY id")
        return self.database.rows("SELECT * FROM silences WHERE starts_at <= ? AND ends_at > ? ORDER BY id",
                                  (iso(active_at), iso(active_at)))

    def end_silence(self, silence_id: int, now: datetime) -> tuple[str, dict[str, Any] | None]:
        """End a silence at ``now``: ("ended", row), ("already ended", row) or ("unknown", None).

        The row is kept with its new end: suppressed notifications cite it by id ("silenced by silence #3").
        """
        with self.database.transaction() as conn:
            found = conn.execute("SELECT * FROM silences WHERE id = ?", (silence_id,)).fetchone()
            if found is None:
                return "unknown", None
            row = dict(found)
            if row["ends_at"] <= iso(now):
                return "already ended", row
            # A silence that has not started yet ends empty (start = end) rather than before it starts.
            row["ends_at"] = max(iso(now), row["starts_at"])
            conn.execute("UPDATE silences SET ends_at = ? WHERE id = ?", (row["ends_at"], silence_id))
            return "ended", row

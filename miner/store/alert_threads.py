"""Which alert emails an alert email follows in its thread, read back from the outbox, so a later reply's
``References`` can name the whole chain (RFC 5322 3.6.4) without the store keeping every message's headers."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from miner.store.db import Database


class AlertThreadsMixin:
    database: Database

    def alert_chain(self, route: str, incident_id: int, message_id: str, limit: int = 1000) -> list[str]:
        """The Message-IDs of the alert email ``message_id`` about ``incident_id`` on ``route`` and of the alerts it
        replied to in turn, oldest first, ending with ``message_id``: at most ``limit`` of them, the newest.

        The outbox row is found through the incident (outbox_items is indexed by incident, outbox has no index by
        Message-ID); each step up is :meth:`_alert_parent`, as render_alert chose the parent then."""
        row = self.database.one(
            "SELECT o.id FROM outbox_items i JOIN outbox o ON o.id = i.outbox_id WHERE i.incident_id = ? "
            "AND o.message_id = ? AND o.route = ? AND o.channel = 'email' AND o.kind = 'alert' LIMIT 1",
            (incident_id, message_id, route))
        chain = [message_id]
        outbox_id = int(row["id"]) if row else None
        while outbox_id is not None and len(chain) < limit:
            parent = self._alert_parent(route, outbox_id)
            if parent is None or parent[1] in chain:
                break
            outbox_id = parent[0]
            chain.append(parent[1])
        return chain[::-1]

    def _alert_parent(self, route: str, outbox_id: int) -> tuple[int, str] | None:
        """The outbox id and Message-ID of the alert email that alert ``outbox_id`` replied to; None: it replied to
        none.

        A re-opening's alert replied to the last alert about its incidents the route sent before it, when all of
        them had one and it was the same one; an incident's first opening has none, so its alert replied to nothing.
        A reminder (or openings with reminders) had no such parent, and replies go only to alerts."""
        items = self.database.rows("SELECT DISTINCT incident_id, kind FROM outbox_items WHERE outbox_id = ?",
                                   (outbox_id,))
        if not items or any(it["kind"] != "open" for it in items):
            return None
        earlier: set[tuple[int, str] | None] = set()
        for incident_id in {int(it["incident_id"]) for it in items}:
            found = self.database.one(
                "SELECT o.id, o.message_id FROM outbox_items i JOIN outbox o ON o.id = i.outbox_id "
                "WHERE i.incident_id = ? AND i.kind = 'open' AND o.route = ? AND o.channel = 'email' "
                "AND o.status = 'sent' AND o.id < ? ORDER BY o.id DESC LIMIT 1", (incident_id, route, outbox_id))
            earlier.add((int(found["id"]), str(found["message_id"])) if found and found["message_id"] else None)
        return earlier.pop() if len(earlier) == 1 else None

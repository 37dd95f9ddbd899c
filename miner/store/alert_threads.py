"""The alert emails before a reply in its thread, read back from the outbox, so the reply's ``References`` can name
the whole chain (RFC 5322 3.6.4) without the store keeping every message's headers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from miner.store.sql_lists import IN_LIST, json_list

if TYPE_CHECKING:
    from miner.store.db import Database


class AlertThreadsMixin:
    database: Database

    def alert_thread(self, route: str, incident_ids: Sequence[int], parent: str) -> list[str]:
        """The Message-IDs of the alert emails about ``incident_ids`` sent on ``route`` up to ``parent``, the one a
        reply answers, oldest first and ending with it (just ``parent`` where it is none of them). A reply answers
        its incidents' opening alert or their last re-opening's (render_alert), and each re-opening's alert answered
        the alert before it: these are the reply's ancestors."""
        rows = self.database.rows(
            "SELECT o.message_id FROM outbox o WHERE o.id IN (SELECT outbox_id FROM outbox_items WHERE kind = 'open' "
            f"AND incident_id {IN_LIST}) AND o.route = ? AND o.channel = 'email' AND o.kind = 'alert' "
            "AND o.status = 'sent' AND o.message_id IS NOT NULL ORDER BY o.id", (json_list(incident_ids), route))
        sent = list(dict.fromkeys(str(r["message_id"]) for r in rows))
        return sent[:sent.index(parent) + 1] if parent in sent else [parent]

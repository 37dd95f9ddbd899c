"""Queued digests that a newer digest of the same route supersedes: one digest goes out after an outage, not many.

With hourly digests and the mail server down for ten hours, each hour's digest waited in the outbox, and all ten
went out when the server came back, each rendered as of its own hour: the on-call got ten digests at once, the
first nine out of date. Before a dispatch run sends anything, the digests of a route that nobody has received yet
(pending, unclaimed, not delivered to any recipient) are folded into the one rendered as of the latest time: it
takes the earliest ``since`` of them, so it covers every period they did (an incident that opened and resolved in
the first hour of the outage is in it), and the others are recorded as ``suppressed`` with the reason, never
deleted.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from miner.timeutil import iso

if TYPE_CHECKING:
    from miner.store.db import Database


def _period(payload: str | None) -> tuple[str, str] | None:
    """A queued digest's (since, as_of) as stored (ISO text, which sorts as time), or None when it lacks one."""
    try:
        value = json.loads(payload or "{}")
    except ValueError:
        return None
    if not isinstance(value, dict) or not all(isinstance(value.get(k), str) for k in ("since", "as_of")):
        return None
    return value["since"], value["as_of"]


class DigestBacklogMixin:
    database: Database
    outbox_scope: Callable[..., tuple[str, tuple[int, ...]]]  # ReplayOutboxMixin's

    def supersede_digests(self, now: datetime) -> int:
        """Fold each route's unsent digests into its latest (see the module docstring); returns how many were
        superseded. Only rows still pending and unclaimed are touched, in one transaction, so a digest a worker is
        sending (or one some recipients have) goes out as it is."""
        scope, args = self.outbox_scope()
        done = 0
        with self.database.transaction() as conn:
            rows = conn.execute(
                "SELECT id, route, payload FROM outbox WHERE kind = 'digest' AND status = 'pending' "
                f"AND claimed_by IS NULL AND {scope} AND NOT EXISTS "
                "(SELECT 1 FROM alert_state WHERE key = 'delivered:' || outbox.id) ORDER BY id", args).fetchall()
            payloads = {int(row["id"]): str(row["payload"]) for row in rows}
            queued: dict[str, list[tuple[str, str, int]]] = {}
            for row in rows:
                if (period := _period(row["payload"])) is not None:
                    queued.setdefault(str(row["route"]), []).append((period[1], period[0], int(row["id"])))
            for these in queued.values():
                if len(these) < 2:
                    continue
                these.sort()
                as_of, _, keep = these[-1]
                since = min(s for _, s, _ in these)
                payload: dict[str, Any] = json.loads(payloads[keep])
                payload["since"] = since
                conn.execute("UPDATE outbox SET payload = ? WHERE id = ?", (json.dumps(payload), keep))
                for _, _, outbox_id in these[:-1]:
                    done += conn.execute(
                        # next_attempt_at: when it was superseded (`miner outbox`), not its due time, long past.
                        "UPDATE outbox SET status = 'suppressed', reason = ?, next_attempt_at = ? WHERE id = ?",
                        (f"superseded: digest {keep} covers its period too ({since} to {as_of}) and goes out in "
                         "its place", iso(now), outbox_id)).rowcount
        return done

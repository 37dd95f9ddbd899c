"""The alert channels whose server the last delivery attempt could not reach, as the dispatcher records them in
``alert_state`` (one key per channel, the error as its value, emptied once a message gets through), read back with
the time of each channel's last failed attempt for `miner status` and /metrics."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import TYPE_CHECKING, Any

from miner.timeutil import iso

if TYPE_CHECKING:
    from miner.store.db import Database

# alert_state key prefix, then the channel ("email", "webhook:NAME").
UNREACHABLE = "unreachable:"


def unreachable_key(channel: str) -> str:
    """alert_state: the error with which ``channel``'s server was last found unreachable; empty once it answered."""
    return f"{UNREACHABLE}{channel}"


# The failed rows, each with when it failed, the latest first, and their count and earliest failure beside it: one
# statement, so that the count and the latest row are of one snapshot (a `miner outbox retry` may come between two).
# Read through outbox_due, by status: the failed rows alone, whatever the size of the outbox (retention deletes them
# with the sent ones). 2.4 ms for 1,000 failed rows of 100,000, 27 ms for 10,000.
FAILED_SQL = (
    "SELECT id, channel, reason, at, count(*) OVER () AS n, min(at) OVER () AS first_at FROM (SELECT o.id, o.channel, "
    "o.reason, coalesce((SELECT d.at FROM deliveries d WHERE d.outbox_id = o.id ORDER BY d.id DESC LIMIT 1), "
    "o.next_attempt_at) AS at FROM outbox o WHERE o.status = 'failed') ORDER BY at DESC, id DESC LIMIT 1")


class ChannelHealthMixin:
    database: Database

    def unreachable_channels(self) -> list[dict[str, Any]]:
        """Each channel recorded unreachable now, by name: ``channel``, ``error``, and ``at``, the time of its last
        delivery attempt that was not sent (None when none is kept)."""
        return [dict(r) for r in self.database.rows(
            "SELECT substr(s.key, length(?) + 1) AS channel, s.value AS error, "
            "(SELECT max(d.at) FROM deliveries d JOIN outbox o ON o.id = d.outbox_id WHERE o.channel = "
            "substr(s.key, length(?) + 1) AND d.outcome != 'sent') AS at "
            "FROM alert_state s WHERE s.key LIKE ? AND s.value != '' ORDER BY s.key",
            (UNREACHABLE, UNREACHABLE, UNREACHABLE + "%"))]

    def due_after_outage(self, channel: str, now: datetime, keep: Collection[int]) -> int:
        """Make ``channel``'s pending messages that wait out a retry due at ``now``, as its server answers again after
        it was found unreachable; ``keep``: rows whose wait is their own (the one just tried, the one a rate limit
        names). Returns how many.

        A message tried at each run its retry was due through an outage waits out a backoff grown to retry_max (30
        min): the server back, messages planned since, never tried, went at once, and the page that had probed the
        dead server up to half an hour after them, after the digest that named its incident."""
        marks = ", ".join("?" * len(keep))
        with self.database.transaction() as conn:
            return conn.execute(
                "UPDATE outbox SET next_attempt_at = ? WHERE channel = ? AND status = 'pending' AND attempts > 0 "
                f"AND next_attempt_at > ? AND id NOT IN ({marks})", (iso(now), channel, iso(now), *keep),
            ).rowcount

    def failed_notifications(self) -> dict[str, Any] | None:
        """The notifications that failed for good (status 'failed': a permanent error, or given up on) and wait for a
        `miner outbox retry`, None for none: ``count``, ``first_at`` and ``last_at``, the earliest and latest time
        one of them failed (its last delivery attempt; its last due time where none is kept), and the latest one's
        ``id``, ``channel`` and ``reason`` (see FAILED_SQL)."""
        last = self.database.one(FAILED_SQL)
        if last is None:
            return None
        return {"count": int(last["n"]), "first_at": last["first_at"], "last_at": last["at"], "id": int(last["id"]),
                "channel": last["channel"], "reason": last["reason"] or ""}

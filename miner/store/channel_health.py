"""The alert channels whose server the last delivery attempt could not reach, as the dispatcher records them in
``alert_state`` (one key per channel, the error as its value, emptied once a message gets through), read back with
the time of each channel's last failed attempt for `miner status` and /metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from miner.store.db import Database

# alert_state key prefix, then the channel ("email", "webhook:NAME").
UNREACHABLE = "unreachable:"


def unreachable_key(channel: str) -> str:
    """alert_state: the error with which ``channel``'s server was last found unreachable; empty once it answered."""
    return f"{UNREACHABLE}{channel}"


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

"""Until when a service's alerts are muted (`miner silence add` silences, alerts.maintenance windows): the one
rule, mute_end's, of `miner status` and `miner silence remove`'s hint, outside the CLI for the read API to share.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from miner.alerts.mute_end import mute_end
from miner.store.mutes import silence_matches
from miner.timeutil import parse_iso

if TYPE_CHECKING:
    from miner.config import Config
    from miner.store import Store


def pending_silences(store: Store, now: datetime) -> list[dict[str, Any]]:
    """The silences not ended at ``now``, any not started yet included (the planner mutes by each one's span)."""
    return [r for r in store.silences() if parse_iso(r["ends_at"]) > now]


def muted_until(config: Config, silences: list[dict[str, Any]], service: str, at: datetime) -> datetime | None:
    """mute_end of ``service`` at ``at``, its maintenance windows and the ``silences`` matching it taken in."""
    return mute_end(config.alerts.maintenance, service, at, [_span(r) for r in _matching(config, silences, service)])


def _matching(config: Config, silences: list[dict[str, Any]], service: str) -> list[dict[str, Any]]:
    provider = config.alerts.provider_of(service)
    return [r for r in silences if silence_matches(r, service, provider)]


def _span(silence: dict[str, Any]) -> tuple[datetime, datetime]:
    return parse_iso(silence["starts_at"]), parse_iso(silence["ends_at"])

"""Whether a service's alerts are muted, until when and by what (`miner silence add` silences, alerts.maintenance
windows): the one rule, mute_end's, of `miner status`, `miner silence remove`'s hint, the read API's ``muted_until``
and ``muted`` of a service (docs/api.md) and the status board's note of it.

Only `miner status` said so: an on-call looking at the board, or a dashboard reading the API, in an outage saw an
open incident and no alert of it, with nothing saying its alerts were muted.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from miner.alerts.mute_end import holds, mute_end, windows_in_effect
from miner.store.mutes import silence_matches
from miner.timeutil import iso, parse_iso

if TYPE_CHECKING:
    from miner.alerts.settings import AlertSettings
    from miner.config import Config
    from miner.store import Store


def pending_silences(store: Store, now: datetime) -> list[dict[str, Any]]:
    """The silences not ended at ``now``, any not started yet included (the planner mutes by each one's span)."""
    return [r for r in store.silences() if parse_iso(r["ends_at"]) > now]


def in_effect(silences: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """Those of ``silences`` muting at ``now`` (not any starting later)."""
    return [r for r in silences if holds(_span(r), now)]


def muted_until(alerts: AlertSettings, silences: list[dict[str, Any]], service: str, at: datetime) -> datetime | None:
    """mute_end of ``service`` at ``at``, its maintenance windows and the ``silences`` matching it taken in."""
    return mute_end(alerts.maintenance, service, at, [_span(r) for r in _matching(alerts, silences, service)])


def silenced_services(config: Config, silence: dict[str, Any]) -> list[str]:
    """The services ``silence`` mutes as feeds.toml stands: a provider's, those it gives the provider; a service's,
    itself."""
    if not silence["provider"]:
        return [str(silence["service"])]
    return [s.name for s in config.services if silence_matches(silence, s.name, s.provider)]


def service_mute(alerts: AlertSettings, silences: list[dict[str, Any]], service: str, now: datetime) -> dict[str, Any]:
    """``muted_until`` and ``muted`` of ``service`` at ``now`` as the read API gives them, ``silences`` being
    pending_silences: both None while its alerts are not muted. ``muted_until``: when they no longer are, windows
    and silences following on without a gap taken in (None as well where they follow on past mute_end.HORIZON);
    ``muted``: what mutes them at ``now``, ``silences`` ({"id", "service", "provider", "until", "comment"}, as
    `miner status --format json` gives them: a provider's has ``service`` None) and ``maintenance`` ({"window",
    "start", "end", "comment"}: ``window`` its index in alerts.maintenance, start and end of its span in effect)."""
    held = in_effect(_matching(alerts, silences, service), now)
    windows = alerts.maintenance
    effect = windows_in_effect(windows, service, now)
    if not held and not effect:  # mute_end would give ``now`` itself; a recurring window's span is costly to repeat
        return {"muted_until": None, "muted": None}
    end = muted_until(alerts, silences, service, now)
    return {"muted_until": None if end is None else iso(end), "muted": {
        "silences": [{"id": r["id"], "service": r["service"], "provider": r["provider"],
                      "until": iso(parse_iso(r["ends_at"])), "comment": r["comment"]} for r in held],
        "maintenance": [{"window": i, "start": iso(start), "end": iso(stop), "comment": windows[i].comment}
                        for i, (start, stop) in effect]}}


def _matching(alerts: AlertSettings, silences: list[dict[str, Any]], service: str) -> list[dict[str, Any]]:
    provider = alerts.provider_of(service)
    return [r for r in silences if silence_matches(r, service, provider)]


def _span(silence: dict[str, Any]) -> tuple[datetime, datetime]:
    return parse_iso(silence["starts_at"]), parse_iso(silence["ends_at"])

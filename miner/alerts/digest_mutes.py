"""What a digest says of an open incident whose alerts are muted: until when, and by which silences and maintenance
windows, as the status board, the read API and `miner status` say it (miner/muted.py, the same rule: mute_end).

The digest said nothing of it: a team reading it saw an incident open and could not tell that the on-call had
silenced it (the only way to acknowledge one) or that a maintenance window held its alerts.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from miner.alerts.mute_end import holds, mute_end, windows_in_effect
from miner.alerts.settings import AlertSettings
from miner.alerts.text import clean_text
from miner.store.mutes import silence_matches
from miner.timeutil import parse_iso

if TYPE_CHECKING:
    from miner.store import Store


def mute_notes(store: Store, settings: AlertSettings, services: Iterable[str], at: datetime) -> dict[str, str]:
    """Service -> "until 2026-12-08 06:17 UTC (silence 2 of provider Airtel Africa: on it)" for each of
    ``services`` whose alerts are muted at ``at``; the others are left out. Silences not started by ``at`` mute
    nothing then; one ended since (removed) neither."""
    names = sorted(set(services))
    if not names:
        return {}
    silences = [r for r in store.silences() if parse_iso(r["ends_at"]) > at]
    notes: dict[str, str] = {}
    for service in names:
        mine = [r for r in silences if silence_matches(r, service, settings.provider_of(service))]
        spans = [(parse_iso(r["starts_at"]), parse_iso(r["ends_at"])) for r in mine]
        held = [(r, span) for r, span in zip(mine, spans, strict=True) if holds(span, at)]
        windows = windows_in_effect(settings.maintenance, service, at)
        if not held and not windows:
            continue
        end = mute_end(settings.maintenance, service, at, spans)
        parts = [f"silence {r['id']}" + (f" of provider {r['provider']}" if r["provider"] else "")
                 + (f" until {_time(span[1])}" if span[1] != end else "") + _comment(r["comment"] or "")
                 for r, span in held]
        parts += [f"maintenance window alerts.maintenance[{i}]" + (f" until {_time(span[1])}" if span[1] != end else "")
                  + _comment(settings.maintenance[i].comment)
                  for i, span in windows]
        if end is not None and end not in [stop for _, (_, stop) in held] + [stop for _, (_, stop) in windows]:
            parts.append("then windows or silences following on")
        until = f"until {_time(end)}" if end is not None else "with no end in the next 7 days"
        notes[service] = f"{until} ({'; '.join(parts)})"
    return notes


def _comment(comment: str) -> str:
    return f": {clean_text(comment)}" if comment else ""


def _time(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M} UTC"

"""What a digest says of an open incident whose alerts are muted: until when, and by which silences and maintenance
windows, as the status board, the read API and `miner status` say it (miner/muted.py, the same rule: mute_end).

The digest said nothing of it: a team reading it saw an incident open and could not tell that the on-call had
silenced it (the only way to acknowledge one) or that a maintenance window held its alerts.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from miner.alerts.mute_end import HORIZON
from miner.alerts.settings import AlertSettings
from miner.alerts.text import clean_text
from miner.muted import pending_silences, service_mute
from miner.timeutil import parse_iso

if TYPE_CHECKING:
    from miner.store import Store


def mute_notes(store: Store, settings: AlertSettings, services: Iterable[str], at: datetime) -> dict[str, str]:
    """Service -> "until 2026-12-08 06:17 UTC (silence 2 of provider Airtel Africa: on it)" for each of
    ``services`` whose alerts are muted at ``at`` (muted.service_mute, as the read API gives it); the others are
    left out."""
    names = sorted(set(services))
    if not names:
        return {}
    silences = pending_silences(store, at)
    notes: dict[str, str] = {}
    for service in names:
        mute = service_mute(settings, silences, service, at)
        if (muted := mute["muted"]) is None:
            continue
        end = mute["muted_until"]
        parts = [f"silence {r['id']}" + (f" of provider {r['provider']}" if r["provider"] else "")
                 + _until(r["until"], end) + _comment(r["comment"] or "") for r in muted["silences"]]
        parts += [f"maintenance window alerts.maintenance[{w['window']}]" + _until(w["end"], end)
                  + _comment(w["comment"]) for w in muted["maintenance"]]
        if end is not None and end not in [r["until"] for r in muted["silences"]] + [w["end"] for w in
                                                                                    muted["maintenance"]]:
            parts.append("then windows or silences following on")
        until = f"until {_time(end)}" if end is not None else f"with no end in the next {HORIZON.days} days"
        notes[service] = f"{until} ({'; '.join(parts)})"
    return notes


def _until(stop: str, end: str | None) -> str:
    """" until <stop>" where one silence or window stops before the alerts are unmuted (``end``)."""
    return f" until {_time(stop)}" if stop != end else ""


def _comment(comment: str) -> str:
    return f": {clean_text(comment)}" if comment else ""


def _time(at: str) -> str:
    return f"{parse_iso(at):%Y-%m-%d %H:%M} UTC"

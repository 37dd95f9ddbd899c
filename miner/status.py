"""What `miner status` shows: each service's last hour against its baseline, and each source's health."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from miner.config import Config
from miner.store import Store
from miner.timeutil import floor_time, parse_iso


def service_status(store: Store, config: Config, now: datetime, window: timedelta,
                   shown: Callable[[str], str] = str) -> list[dict[str, Any]]:
    """Per service: the posts and complaints in the buckets overlapping the ``window`` before ``now``, and the score
    of the latest bucket that has ended (the one the detector scored last). ``shown`` writes the open incident's
    time: as stored (ISO 8601 with its offset, for JSON), or :func:`shown_time` for the terminal.

    Both are read on the bucket grid. Counted from ``now - window`` itself, a bucket as wide as the window (the
    demo's hour) was left out unless ``now`` fell on its boundary: the counts were those of the bucket in progress,
    and no score was shown, as the last scored bucket starts before ``now - window``.
    """
    bucket = timedelta(minutes=config.detector.bucket_minutes)
    end = floor_time(now, bucket) + bucket
    start = floor_time(now - window, bucket)
    last_ended = end - 2 * bucket
    out = []
    for svc in config.services:
        rows = store.series(svc.name, min(start, last_ended), end)
        counted = [r for r in rows if parse_iso(r["bucket_start"]) >= start]
        scored = [r for r in rows if r["score"] is not None]
        latest = scored[-1] if scored else None
        incident = store.open_incident_for(svc.name)
        out.append({
            "service": svc.name,
            "posts": sum(r["posts"] for r in counted),
            "complaints": sum(r["complaints"] for r in counted),
            "baseline": round(latest["baseline"], 2) if latest and latest["baseline"] is not None else None,
            "z": round(latest["score"], 1) if latest else None,
            "incident": f"#{incident['id']} since {shown(incident['opened_at'])}" if incident else "",
        })
    return out


def source_status(store: Store, config: Config) -> list[dict[str, Any]]:
    rows = {r["name"]: r for r in store.source_rows()}
    out = []
    for src in config.sources:
        row = rows.get(src.name, {})
        out.append({
            "source": src.name,
            "type": src.type,
            "last_ok": row.get("last_ok_at") or "never",
            "next_poll": "disabled" if not src.enabled else row.get("next_poll_at") or "now",
            "failures": row.get("consecutive_failures", 0),
            "last_error": row.get("last_error") or "",
            "posts_stored": row.get("posts_stored", 0),
        })
    return out




def shown_time(value: str) -> str:
    """A stored time as the terminal shows it, ``2026-11-28 04:50:00 UTC``; a word (``never``) as it is.

    The ISO text cut before its offset, as it was shown, reads as local time to whoever is not on UTC.
    """
    try:
        when = parse_iso(value)
    except ValueError:
        return value
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")

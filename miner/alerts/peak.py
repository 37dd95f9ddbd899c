"""The baseline an incident's peak is set against: that of the bucket of its peak (alerts, the replay's summary)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from miner.alerts.text import safe_number
from miner.timeutil import parse_iso


def peak_baseline(series: Sequence[Mapping[str, Any]], first: datetime | None, end: datetime, peak: int,
                  stored: float) -> float:
    """What the detector expected in the bucket of the incident's peak: "peak 60 vs baseline B" compares the two.

    The store keeps the baseline of the opening bucket: an outage opened at night (0.5 expected) that peaked in the
    evening (20 expected) read "peak 60 vs baseline 0.5 (120x)", where the chart's baseline at that bar said 20.
    ``first``: where the incident's buckets begin (miner.store.incidents.first_bucket; None before any detector
    recorded a bucket width). ``stored`` when no bucket of the incident holds the peak any more (pruned, or
    recounted since), or without ``first``.
    """
    if first is None:
        return stored
    # opened_at and resolved_at are bucket ends: the incident's buckets start from its first, before end. Taken an
    # hour back after a change from 5 to 60, a bucket before the incident, kept at 5 minutes, stood for its peak.
    for r in series:
        if (first <= parse_iso(r["bucket_start"]) < end and int(safe_number(r.get("complaints"))) == peak
                and r.get("baseline") is not None):
            return safe_number(r["baseline"], stored)
    return stored


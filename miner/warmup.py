"""When a service's detector is done warming up: the first bucket whose score can open an incident.

`miner status` showed a service with 35 complaints in its first hour, z 4.2 and no incident, and nothing said why:
a new service (a new store, a service added to feeds.toml) opens none before detector.warmup_hours of history."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from miner.detect import DetectorState
from miner.detect.params import DetectorParams
from miner.store.signals import SavedDetector
from miner.timeutil import iso


def warm_from(params: DetectorParams, last_bucket: datetime, state: DetectorState) -> datetime | None:
    """The start of the first bucket after ``last_bucket`` (the last one scored, ``state`` the detector's state
    after it) that the detector scores warm, as zscore._step_one decides it (the history learned before a bucket,
    ``seen``, at least warmup_hours of buckets); None when the next bucket is warm already. Each bucket scored adds
    one to ``seen``, gaps up to max_fill_hours too (as zero-complaint buckets), so this holds unless a gap longer
    than that, or a level far below the first, starts the warm-up again."""
    needed = params.warmup_hours * 60.0 / params.bucket_minutes
    if state.seen >= needed:
        return None
    # Bucket last + k is scored with seen + k - 1 buckets learned: warm once that reaches ``needed``.
    k = math.ceil(needed - state.seen) + 1
    return last_bucket + timedelta(minutes=params.bucket_minutes * k)


def warm_from_saved(params: DetectorParams, saved: SavedDetector | None) -> str | None:
    """The start of the first bucket whose score can open an incident while the service's detector is still in its
    warm-up (detector.warmup_hours of history), as an ISO time; None once it is over or before its first bucket
    scored. `miner status` and the read API (so the status board) both say it from here. A state that cannot be
    read says nothing: the detector, which reads it too, reports it."""
    if saved is None:
        return None
    try:
        state = DetectorState.from_json(saved.state)
    except ValueError:
        return None
    warm = warm_from(params, saved.last_bucket, state)
    return iso(warm) if warm else None


def health(incident: bool, saved: SavedDetector | None, warm: str | None) -> str:
    """What a service's badge says, the read API's ``health`` and `miner status`'s: ``incident`` while one is open,
    else ``no_data`` before its detector scored a bucket (``saved`` None), ``warming_up`` while it warms up (``warm``,
    warm_from_saved's, not None), ``ok`` otherwise. No state said ``ok``, though no incident can open then either:
    a service just added, or a new store, showed an OK badge beside "no baseline yet" where the truth was "cannot
    tell". Not ``warming_up``: its end, counted from a first bucket not scored yet, is unknown, and the detector may
    be failing for it rather than about to start."""
    if incident:
        return "incident"
    if saved is None:
        return "no_data"
    return "warming_up" if warm else "ok"

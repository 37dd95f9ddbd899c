"""When a service's first level is no usual one: the detector's learning starts again from a bucket.

A service is often added, or miner started, because it is down: its history begins inside an outage, and the first
level learned is the outage's. Clipping keeps the level from falling fast when the outage ends, and the hour-of-day
and day-of-week offsets, learning from the first day, make up the difference, so later outages of the same size
opened nothing for weeks. Two rules start the learning again, from the bucket that triggers them:

- in the first ``QUICK_MINUTES`` of history, any bucket ``clip_sigmas`` scales below the expected count (a first
  bucket of 100 complaints where 10 are usual, or a start an hour or two into an outage);
- a drop begun in the first ``DROP_START_MINUTES`` of history that lasts ``DROP_MINUTES``: buckets ``clip_sigmas``
  Poisson scales (``noise_floor``) below the expected count the drop began below, with at most ``DROP_RISEN`` of
  them (or 3) back within those scales of it (a start further into an outage). Three days, so that a day-and-night
  service's night and a quiet weekend, which come back every morning and every Monday, are not taken for one:
  with one day, a service started on a Friday learned the weekend as its usual level and opened an incident every
  Monday of its first weeks (bench/outage_start_bench.py).

Buckets learned while an incident is open (the baseline frozen) neither lengthen a drop nor end it.
"""

from __future__ import annotations

from miner.detect.params import DetectorParams

# History up to this long starts again from one bucket clip_sigmas below the expected count. Longer also restarted at
# a daily drop: 3 h opened 6 incidents where 2 h opened 3 (synthetic day/night series, 8 start hours, 3 seeds).
QUICK_MINUTES = 120.0
DROP_START_MINUTES = 1440.0  # a drop that begins later is the service's own (a quiet weekend), learned as before
DROP_MINUTES = 4320.0
# Buckets of a drop that may be back near where it began: 10 % ended one of five drops after a 12-hour 5x outage
# through the night (3:00 to 12:00), whose afternoon peak came within three scales of the outage's level.
DROP_RISEN = 0.25


def tracked(
    params: DetectorParams, seen: int, drop: tuple[int, int, float], y: float, expected: float
) -> tuple[int, int, float]:
    """The drop after one more bucket of stabilised count ``y``: (buckets since it began, those of them not low, the
    expected count it began below); (0, 0, 0.0): none. Low is ``clip_sigmas`` Poisson scales (``noise_floor``) below
    the expected count where the drop began, not the current one: the level and offsets learning the drop, clipped,
    brought that back down to it in days, which ended the drop before it could restart anything."""
    buckets, risen, below = drop
    if not buckets:
        started = y < expected - params.clip_sigmas * params.noise_floor
        return (1, 0, expected) if started and seen * params.bucket_minutes <= DROP_START_MINUTES else (0, 0, 0.0)
    buckets, risen = buckets + 1, risen + (y >= below - params.clip_sigmas * params.noise_floor)
    return (buckets, risen, below) if risen <= max(3.0, DROP_RISEN * buckets) else (0, 0, 0.0)


def due(params: DetectorParams, seen: int, drop: int, quick_low: bool) -> bool:
    """Whether this bucket starts the learning again: ``quick_low``, it is clip_sigmas scales below the expected
    count in the first hours, or the drop it is part of has lasted long enough."""
    if quick_low and seen * params.bucket_minutes <= QUICK_MINUTES:
        return True
    return drop * params.bucket_minutes >= DROP_MINUTES

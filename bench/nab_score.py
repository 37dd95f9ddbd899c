"""A scorer for the Numenta Anomaly Benchmark (NAB), written from its published rules.

Rules (Lavin & Ahmad 2015, and NAB's sweeper):

- The first 15% of rows, at most 750, are a probationary period: detections there are ignored, and a
  window lying wholly inside it is not scored.
- Within a labelled window only the earliest detection counts. A detection at relative position ``p`` (-1 at
  the window's first row, approaching 0 at its last) scores ``A_TP * S(p) / S(-1)`` where
  ``S(p) = 2 / (1 + exp(5p)) - 1`` is the scaled sigmoid; later detections inside the same window neither
  add nor cost anything. A window without a detection costs ``A_FN``.
- A detection outside every window costs ``A_FP * S(d)``, where ``d`` is its distance past the end of the
  preceding window in units of that window's width (so detections just after a window cost almost
  nothing and ones far from it cost the full ``A_FP``); with no preceding window it costs ``A_FP``.
- Over a set of series the score is normalised: ``100 * (raw - null) / (perfect - null)`` of the sums,
  where "null" detects nothing (scores ``-A_FN`` per window) and "perfect" detects every window at its
  first scorable row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Profile:
    """NAB's application profile: the weights of true positives, false positives and false negatives."""

    name: str
    tp: float
    fp: float
    fn: float
    tn: float = 1.0  # part of NAB's profiles; the window-based score never uses it


PROFILES: dict[str, Profile] = {
    "standard": Profile("standard", tp=1.0, fp=0.11, fn=1.0),
    "reward_low_FP_rate": Profile("reward_low_FP_rate", tp=1.0, fp=0.22, fn=1.0),
    "reward_low_FN_rate": Profile("reward_low_FN_rate", tp=1.0, fp=0.11, fn=2.0),
}

PROBATION_FRACTION = 0.15
PROBATION_MAX_ROWS = 750


def probation_rows(n_rows: int) -> int:
    """Rows at the start of a series whose detections are ignored."""
    return min(math.floor(PROBATION_FRACTION * n_rows), PROBATION_MAX_ROWS)


def scaled_sigmoid(position: float) -> float:
    """NAB's reward curve: ~0.987 at -1 (window start), 0 at the window end, -1 from 3 widths past it."""
    if position >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


@dataclass(frozen=True)
class SeriesScore:
    """One series under one profile. ``delays`` are minutes from each found window's centre (the labelled
    anomaly; negative means before it) to its first detection."""

    raw: float
    null: float
    perfect: float
    windows: int
    found: int
    false_positives: int
    delays: tuple[float, ...] = field(default=())


def _window_rows(timestamps: Sequence[datetime], windows: Sequence[tuple[datetime, datetime]]) -> list[range]:
    spans = []
    for start, end in sorted(windows):
        rows = [i for i, ts in enumerate(timestamps) if start <= ts <= end]
        if rows:
            spans.append(range(rows[0], rows[-1] + 1))
    return spans


def _raw_score(
    detections: Sequence[bool], spans: Sequence[range], skip: int, profile: Profile
) -> tuple[float, int, int, list[int]]:
    """Raw score, windows found, false positives, and the first detection row of each found window."""
    max_tp = scaled_sigmoid(-1.0)
    total = 0.0
    found = 0
    firsts: list[int] = []
    for span in spans:
        hits = [i for i in span if i >= skip and detections[i]]
        if hits:
            first = hits[0]
            position = -(span[-1] - first + 1) / len(span)
            total += profile.tp * scaled_sigmoid(position) / max_tp
            found += 1
            firsts.append(first)
        else:
            total -= profile.fn
    in_window = {i for span in spans for i in span}
    false_pos = 0
    for i, hit in enumerate(detections):
        if not hit or i < skip or i in in_window:
            continue
        false_pos += 1
        previous = [span for span in spans if span[-1] < i]
        if not previous:
            total -= profile.fp
            continue
        prev = previous[-1]
        distance = (i - prev[-1]) / (len(prev) - 1) if len(prev) > 1 else 3.0
        total += profile.fp * scaled_sigmoid(distance)
    return total, found, false_pos, firsts


def score_series(
    timestamps: Sequence[datetime],
    detections: Sequence[bool],
    windows: Sequence[tuple[datetime, datetime]],
    profile: Profile = PROFILES["standard"],
) -> SeriesScore:
    """Score one series: ``detections[i]`` is true where the detector fired on row ``i``."""
    if len(timestamps) != len(detections):
        raise ValueError("timestamps and detections differ in length")
    skip = probation_rows(len(timestamps))
    spans = [span for span in _window_rows(timestamps, windows) if span[-1] >= skip]
    raw, found, false_pos, firsts = _raw_score(detections, spans, skip, profile)
    ideal = [False] * len(timestamps)
    for span in spans:
        ideal[max(span[0], skip)] = True
    perfect, _, _, _ = _raw_score(ideal, spans, skip, profile)
    delays = []
    for first in firsts:
        span = next(s for s in spans if first in s)
        centre = timestamps[span[0]] + (timestamps[span[-1]] - timestamps[span[0]]) / 2
        delays.append((timestamps[first] - centre).total_seconds() / 60.0)
    return SeriesScore(
        raw=raw,
        null=-profile.fn * len(spans),
        perfect=perfect,
        windows=len(spans),
        found=found,
        false_positives=false_pos,
        delays=tuple(delays),
    )


def normalised(scores: Sequence[SeriesScore]) -> float:
    """NAB's normalised score of a set of series: 0 for detecting nothing, 100 for a perfect detector."""
    raw = sum(s.raw for s in scores)
    null = sum(s.null for s in scores)
    perfect = sum(s.perfect for s in scores)
    if perfect == null:
        raise ValueError("no scorable windows")
    return 100.0 * (raw - null) / (perfect - null)

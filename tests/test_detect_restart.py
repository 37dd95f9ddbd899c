"""A service whose history begins inside an outage learns again from its usual level: miner/detect/restart.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from miner.detect.params import DetectorParams
from miner.detect.zscore import BucketScore, DetectorState, detect_series, step

STEP = timedelta(minutes=5)
P = DetectorParams()
END = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)  # a Monday noon: the end of the outage the service was added in


def after_an_outage(left_hours: int, days: int, seed: int = 1) -> tuple[list[tuple[datetime, float]], int]:
    """10 complaints a bucket, the first ``left_hours`` of them in a 5x outage, a one-hour 5x outage at 14:00 on day
    ``days`` after its end; the rows and the index of that outage's first bucket."""
    start = END - timedelta(hours=left_hours)
    rng = np.random.default_rng(seed)
    n = left_hours * 12 + (days + 1) * 288
    rows = [(start + i * STEP, float(rng.poisson(50 if start + i * STEP < END else 10))) for i in range(n)]
    k = rows.index(next(r for r in rows if r[0] == END + timedelta(days=days, hours=2)))
    for i in range(k, k + 12):
        rows[i] = (rows[i][0], float(rng.poisson(50)))
    return rows, k


def opened(scores: list[BucketScore]) -> list[int]:
    return [i for i, s in enumerate(scores) if s.opened]


@pytest.mark.parametrize("left_hours", [9, 18, 21], ids=["9 h", "18 h", "21 h"])
def test_a_start_hours_before_an_outage_ends_opens_the_next_outage_days_after(left_hours: int) -> None:
    # Added 9 hours before the end of a 5x outage, the service opened a one-hour 5x outage 5 or 6 days after its end;
    # 18 or 21 hours before, 15 or 16 days after. Its level was the outage's, and clipping and the offsets kept it.
    rows, k = after_an_outage(left_hours, days=4)
    scores = detect_series(P, rows)
    assert opened(scores) == [k + P.persist_k - 1]
    assert scores[k - 1].baseline < 15


def test_a_drop_that_comes_back_restarts_nothing() -> None:
    # A day-and-night service started by day, and a quiet-weekend one started on Friday: their drops are their usual
    # nights and weekends, which come back; learning from the night or the weekend opened incidents the next morning.
    monday = END.replace(hour=0)
    rng = np.random.default_rng(2)
    day_night = [(END + i * STEP, float(rng.poisson(30 if (END + i * STEP).hour in range(8, 21) else 2)))
                 for i in range(4 * 288)]
    friday = monday + timedelta(days=4, hours=12)
    weekend = [(friday + i * STEP, float(rng.poisson(8 if (friday + i * STEP).weekday() >= 5 else 40)))
               for i in range(5 * 288)]
    for rows in (day_night, weekend):
        state: DetectorState | None = None
        for bucket_start, count in rows:
            before = state.seen if state else 0
            state, _ = step(P, state, bucket_start, count)
            assert state.seen >= before, bucket_start  # learning never started again


def test_a_state_stored_during_the_drop_goes_on_and_an_older_one_loads() -> None:
    rows, k = after_an_outage(18, days=4)
    whole = detect_series(P, rows)
    state: DetectorState | None = None
    scores = []
    for i, (bucket_start, count) in enumerate(rows):
        if i in (18 * 12 + 400, 18 * 12 + 700) and state is not None:  # restarts in the drop, stored as JSON
            assert state.drop[0] > 0
            state = DetectorState.from_json(state.to_json())
        state, score = step(P, state, bucket_start, count)
        scores.append(score)
    assert scores == whole and opened(scores) == [k + P.persist_k - 1]
    # A state written before the drop was recorded has none.
    data = json.loads(state.to_json() if state else "")
    del data["drop"]
    assert DetectorState.from_json(json.dumps(data)).drop == (0, 0, 0.0)

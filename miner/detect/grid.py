"""The bucket grid: which of a service's buckets its detector steps next. Pure: ``now`` is passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from miner.detect.params import DetectorParams
from miner.detect.zscore import DetectorState


def due_buckets(params: DetectorParams, state: DetectorState | None, now: datetime) -> list[datetime]:
    """Starts of the complete buckets after ``state.last`` up to ``now``, to step with their counts (0 when a
    bucket has no posts). Without state, only the latest complete bucket; after a gap longer than
    ``max_fill_hours``, only the buckets within that span of ``now``."""
    width = timedelta(minutes=params.bucket_minutes)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    latest = epoch + ((now - epoch) // width) * width - width  # the last bucket that has ended
    if state is None or state.last is None:
        return [latest]
    first = state.last + width
    horizon = latest - timedelta(hours=params.max_fill_hours)
    if first < horizon:
        first += ((horizon - first) // width) * width  # skip the unfillable part, staying on the bucket grid
    out = []
    cursor = first
    while cursor <= latest:
        out.append(cursor)
        cursor += width
    return out

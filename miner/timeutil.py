"""UTC timestamps as the store keeps them: ISO 8601 text that sorts in time order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime) -> str:
    """``2026-11-28T04:50:00+00:00``. Naive datetimes are taken as UTC."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat(timespec="seconds")


def parse_iso(text: str) -> datetime:
    """Parse ISO 8601 (a trailing ``Z`` too); naive values are taken as UTC."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def floor_time(dt: datetime, step: timedelta) -> datetime:
    """Start of the bucket of width ``step`` holding ``dt`` (buckets are aligned to the Unix epoch)."""
    seconds = int(step.total_seconds())
    ts = int(dt.timestamp())
    return datetime.fromtimestamp(ts - ts % seconds, UTC)

"""Cron schedules (digests, recurring maintenance windows), evaluated in a time zone with `now` passed in.

APScheduler 3's CronTrigger does the calendar arithmetic (month lengths, DST gaps and folds); this module only
adapts it to "next fire after t" and "latest fire at or before t" on aware UTC datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger


@lru_cache(maxsize=64)
def parse_cron(expr: str, timezone: str) -> CronTrigger:
    """A 5-field crontab (minute hour day month weekday) in ``timezone``; ValueError names the problem."""
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"cron {expr!r} must have 5 fields (minute hour day month weekday), got {len(fields)}")
    try:
        return CronTrigger.from_crontab(expr, timezone=ZoneInfo(timezone))
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"bad cron {expr!r}: {exc}") from None


def next_fire(expr: str, timezone: str, after: datetime) -> datetime | None:
    """The first fire time strictly after ``after`` (UTC)."""
    trigger = parse_cron(expr, timezone)
    start = after.replace(microsecond=0) + timedelta(seconds=1)
    fire = trigger.get_next_fire_time(None, start.astimezone(ZoneInfo(timezone)))
    return fire.astimezone(UTC) if fire is not None else None


def previous_fire(expr: str, timezone: str, at: datetime, *, lookback: timedelta) -> datetime | None:
    """The latest fire time in (at - lookback, at], or None when there was none in that span."""
    fire = next_fire(expr, timezone, at - lookback)
    last: datetime | None = None
    while fire is not None and fire <= at:
        last = fire
        fire = next_fire(expr, timezone, fire)
    return last

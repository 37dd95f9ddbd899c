"""Cron schedules (digests, recurring maintenance windows), evaluated in a time zone with `now` passed in.

APScheduler 3's CronTrigger does the calendar arithmetic (month lengths, DST gaps); this module adapts it to "next
fire after t" and "latest fire at or before t" on aware UTC datetimes, and to crontab's rules where they differ.

Daylight saving time, as vixie cron and cronie do it: a job at a fixed time (neither the minute nor the hour field
starts with ``*``) runs once on the day the clocks go back, at the first of the two occurrences of its wall time;
a wildcard job (``0 * * * *``) runs in both repeated hours, which are different real hours. A fixed time skipped by
the clocks going forward runs once that day (APScheduler moves it later by the length of the gap: 02:30 -> 03:30).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _weekdays(field: str) -> str:
    """Crontab weekdays (0 or 7 = Sunday, names, ranges, steps) as the day names APScheduler reads unambiguously.

    APScheduler 3 numbers weekdays from Monday = 0, so a crontab's ``1`` would silently mean Tuesday.
    """
    if field in ("*", "?"):
        return "*"
    days: set[int] = set()
    for item in field.lower().split(","):
        span, _, step_text = item.partition("/")
        step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else None
        if step_text and step is None:
            raise ValueError(f"bad weekday step in {item!r}")
        lo_text, dash, hi_text = span.partition("-")
        if span == "*":
            lo, hi = 0, 6
        else:
            lo = _day(lo_text)
            hi = _day(hi_text) if dash else (6 if step else lo)
            if dash and hi == 0 and hi_text.strip() == "7":
                hi = 7  # 5-7: Friday to Sunday
        if hi < lo:
            raise ValueError(f"weekday range {span!r} runs backwards")
        days.update(d % 7 for d in range(lo, hi + 1, step or 1))
    return ",".join(_DAYS[d] for d in sorted(days))


def _day(text: str) -> int:
    text = text.strip()
    if text.isdigit() and 0 <= int(text) <= 7:
        return int(text) % 7
    if text[:3] in _DAYS:
        return _DAYS.index(text[:3])
    raise ValueError(f"bad weekday {text!r} (use 0-7 or sun..sat)")


@lru_cache(maxsize=64)
def parse_cron(expr: str, timezone: str) -> tuple[CronTrigger, ...]:
    """A 5-field crontab (minute hour day month weekday) in ``timezone``; ValueError names the problem.

    Crontab fires when the day of the month OR the weekday matches if both are restricted (neither starts with
    ``*``): ``0 8 1 * 1`` is the 1st of each month and every Monday. APScheduler ANDs its fields, so that case is
    two triggers, one per day field, and a fire time is the earlier of theirs.
    """
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"cron {expr!r} must have 5 fields (minute hour day month weekday), got {len(fields)}")
    minute, hour, day, month, weekday = fields
    days = [(day, _weekdays(weekday))] if _unrestricted(day) or _unrestricted(weekday) else [
        (day, "*"), ("*", _weekdays(weekday))]
    try:
        return tuple(CronTrigger(minute=minute, hour=hour, day=d, month=month, day_of_week=w,
                                 timezone=ZoneInfo(timezone)) for d, w in days)
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"bad cron {expr!r}: {exc}") from None


def _unrestricted(field: str) -> bool:
    # As in vixie cron and cronie: a field starting with * (also */2) counts as unrestricted for the OR rule.
    return field.startswith(("*", "?"))


def next_fire(expr: str, timezone: str, after: datetime) -> datetime | None:
    """The first fire time strictly after ``after`` (UTC)."""
    triggers = parse_cron(expr, timezone)
    zone = ZoneInfo(timezone)
    minute, hour = expr.split()[:2]
    fixed_time = not minute.startswith("*") and not hour.startswith("*")
    start = after.replace(microsecond=0) + timedelta(seconds=1)
    for _ in range(1000):  # a repeated hour holds at most 60 fires to skip
        fires: list[datetime] = [f for t in triggers if (f := t.get_next_fire_time(None, start.astimezone(zone)))]
        if not fires:
            return None
        fire = min(f.astimezone(UTC) for f in fires)
        if not (fixed_time and _second_occurrence(fire, zone)):
            return fire
        start = fire + timedelta(seconds=1)
    return None


def _second_occurrence(at: datetime, zone: ZoneInfo) -> bool:
    """Whether ``at`` is the second time its wall-clock time happens in ``zone`` (the hour the clocks go back)."""
    local = at.astimezone(zone)
    return local.fold == 1 and local.utcoffset() != local.replace(fold=0).utcoffset()


def previous_fire(expr: str, timezone: str, at: datetime, *, lookback: timedelta) -> datetime | None:
    """The latest fire time in (at - lookback, at], or None when there was none in that span."""
    fire = next_fire(expr, timezone, at - lookback)
    last: datetime | None = None
    while fire is not None and fire <= at:
        last = fire
        fire = next_fire(expr, timezone, fire)
    return last

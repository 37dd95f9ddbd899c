"""Cron schedules (digests, recurring maintenance windows), evaluated in a time zone with `now` passed in.

APScheduler 3's CronTrigger does the calendar arithmetic (month lengths, leap days) on wall-clock times; this module
places them in the time zone, and adapts it to "next fire after t" and "latest fire at or before t" on aware UTC
datetimes, and to crontab's rules where they differ.

Daylight saving time, as vixie cron and cronie do it: a job at a fixed time (neither the minute nor the hour field
starts with ``*``) runs once on the day the clocks go back, at the first of the two occurrences of its wall time;
a wildcard job (``0 * * * *``) runs in both repeated hours, which are different real hours, and not in the hour the
clocks skip. A fixed time skipped by the clocks going forward runs once that day, at the jump, as cron runs such
jobs "immediately" (cron(8)): 02:30 at 03:00 (Berlin, New York), 00:00 at 01:00 where they go forward at midnight;
fixed times that share a gap (02:00 and 02:30) are one run. systemd's timers skip them (systemd issue #5595).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from miner.timeutil import clock_jump

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


# The most a time zone's clocks change by at once (Antarctica/Troll goes forward 2 h), short of a country moving
# across the date line (Samoa skipped 2011-12-30 whole, which no cron time can be moved into).
MAX_SKIP = timedelta(hours=2)


def next_fire(expr: str, timezone: str, after: datetime) -> datetime | None:
    """The first fire time strictly after ``after`` (UTC).

    The cron is matched against wall-clock times (UTC stands in for the wall clock) and each match is then placed
    in the zone, by the rules in the module's docstring. APScheduler, given the zone, did the placing itself, but
    its day arithmetic trips over a day that starts next to a DST change: a 00:15 run was left out the day after
    New York's clocks went forward, a run at midnight on the 1st the month after, and a 00:00 run on the day where
    the clocks go forward at midnight (Santiago, Havana, Cairo).
    """
    zone = ZoneInfo(timezone)
    minute, hour = expr.split()[:2]
    fixed = not minute.startswith("*") and not hour.startswith("*")
    triggers = parse_cron(expr, "UTC")
    wall = after.astimezone(zone).replace(tzinfo=UTC, microsecond=0, fold=0)
    if _changes_near(zone, after):
        wall -= MAX_SKIP  # a wall time before after's can come after it: a skipped 02:30, a repeated 02:10
    best: datetime | None = None
    best_wall: datetime | None = None
    for _ in range(100_000):
        fires = [f for t in triggers if (f := t.get_next_fire_time(None, wall + timedelta(seconds=1)))]
        if not fires:
            break
        wall = min(fires)
        if best_wall is not None and wall >= best_wall + MAX_SKIP:
            break
        for real in _placed(wall, zone, fixed):
            if real > after and (best is None or real < best):
                best, best_wall = real, wall
        if best is not None and not _changes_near(zone, best):
            break  # with no change of offset near it, no later wall time is placed before it
    return best


def _placed(wall: datetime, zone: ZoneInfo, fixed: bool) -> list[datetime]:
    """The real times (UTC) a wall time the cron matches fires at in ``zone``."""
    # fold=0: the first of a repeated wall time.
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if (jump := clock_jump(wall, zone)) is not None:
        # Skipped by the clocks going forward. fold=0 read it at the offset before the jump, an hour after it on the
        # wall clock (02:30 -> 03:30), where cron runs it at the jump.
        return [jump[0]] if fixed else []
    if fixed:
        return [first]
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return [first] if second == first else [first, second]


def _changes_near(zone: ZoneInfo, at: datetime) -> bool:
    """Whether the zone's offset changes within MAX_SKIP of ``at``."""
    return (at - MAX_SKIP).astimezone(zone).utcoffset() != (at + MAX_SKIP).astimezone(zone).utcoffset()


def previous_fire(expr: str, timezone: str, at: datetime, *, lookback: timedelta) -> datetime | None:
    """The latest fire time in (at - lookback, at], or None when there was none in that span.

    Found by halving the span, as the latest ``after`` whose next fire is still at or before ``at`` (fires fall on
    whole seconds, so within a second of it): stepping from fire to fire through the span took one step per fire,
    10 s for a window starting every minute (``* * * * *``) that lasts a year.
    """
    after = at - lookback
    fire = next_fire(expr, timezone, after)
    if fire is None or fire > at:
        return None
    before = at  # next_fire(at) is after at: no fire in (before, at]
    while before - after > timedelta(seconds=1):
        middle = after + (before - after) / 2
        if (later := next_fire(expr, timezone, middle)) is not None and later <= at:
            after, fire = middle, later
        else:
            before = middle
    return fire

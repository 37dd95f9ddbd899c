"""UTC timestamps as the store keeps them: ISO 8601 text that sorts in time order; durations and counts for people;
and HTTP's Retry-After: each read or written the same way by the collectors and the alerts (stages do not import each
other)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, tzinfo
from email.utils import parsedate_to_datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime) -> str:
    """``2026-11-28T04:50:00+00:00``. Naive datetimes are taken as UTC."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat(timespec="seconds")


def iso_exact(dt: datetime) -> str:
    """As :func:`iso`, with the fraction of a second where it has one: ``...T20:00:00.123+00:00`` (to the
    millisecond where that is all of it, as JavaScript's toISOString() gives it). For times a client gave."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    spec = "seconds" if not dt.microsecond else "milliseconds" if not dt.microsecond % 1000 else "microseconds"
    return dt.astimezone(UTC).isoformat(timespec=spec)


def second_at_or_after(dt: datetime) -> datetime:
    """The first whole second at or after ``dt``. The store's times are whole seconds: one is at or after ``dt``, or
    before it, just as it is at or after this second, or before it; iso() cut the fraction, taking in the second
    before ``dt``."""
    return dt if not dt.microsecond else dt.replace(microsecond=0) + timedelta(seconds=1)


def parse_iso(text: str, zone: tzinfo = UTC) -> datetime:
    """Parse ISO 8601 (a trailing ``Z`` too) into UTC; a time without an offset is taken in ``zone``. ValueError for
    text that is not such a time (a NUL anywhere in it too), OverflowError for one outside years 1-9999 in UTC."""
    dt = _read_iso(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=zone)
    return dt.astimezone(UTC)


def _read_iso(text: str) -> datetime:
    """ISO 8601 as written: naive where it gives no offset."""
    value = text.strip()
    if "\x00" in value:  # Python 3.11 reads a NUL after the time as its end: "...+01:00\x00" was taken as a time
        raise ValueError(f"Invalid isoformat string: {text!r}")
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    return datetime.fromisoformat(value)


def _date_alone(text: str) -> bool:
    """A date alone is its day's start: where the clocks go forward at midnight (Santiago, Cairo), the first time
    after the jump, as parse_iso reads it (at the offset before it)."""
    try:
        date.fromisoformat(text.strip())
    except ValueError:
        return False
    return True


def skipped_text(text: str, zone: tzinfo) -> str | None:
    """Why ``text``, an ISO 8601 time without an offset, is no time in ``zone``: the clocks skip it when they go
    forward ("2026-03-29T02:30" in Europe/Berlin). None for one with an offset, or a time the zone has (once, or
    twice where the clocks go back: :func:`parse_iso` reads that as the first, as zoneinfo's fold=0 does).

    parse_iso reads a skipped time at the offset before the jump, so "02:30" there is 03:30 summer time: a window
    from 02:30 to 03:30 ended as it began, refused as "end: must be after start", which did not say why."""
    wall = _read_iso(text)
    if wall.tzinfo is not None or _date_alone(text) or (jump := clock_jump(wall, zone)) is None:
        return None
    _, before, after = jump
    # Samoa skipped a whole day (2011-12-30): the dates then say more than the hours.
    gap = (f"from {before:%H:%M} straight to {after:%H:%M} on {after:%Y-%m-%d}" if before.date() == after.date() else
           f"from {before:%Y-%m-%d %H:%M} straight to {after:%Y-%m-%d %H:%M}")
    return (f"{text.strip()!r} is no time in {zone}: its clocks go {gap}; write a time outside that gap, or one "
            "with its UTC offset")


def clock_jump(wall: datetime, zone: tzinfo) -> tuple[datetime, datetime, datetime] | None:
    """Where the wall-clock time ``wall`` (naive, or its tzinfo ignored) does not exist in ``zone``, the clocks going
    forward over it: the instant they jump (UTC), and the wall times they jump from and to (naive: 02:00 and 03:00
    in Berlin on 2026-03-29). None where ``wall`` exists, once or twice (the hour repeated when they go back)."""
    naive = wall.replace(tzinfo=None, fold=0)
    # PEP 495: in a gap, fold=0 reads the wall time at the offset before the jump, fold=1 at the one after, so the
    # first is the later instant; elsewhere it is the same or (a repeated time) the earlier one.
    later = naive.replace(tzinfo=zone).astimezone(UTC)
    earlier = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if later <= earlier:
        return None
    after_offset = later.astimezone(zone).utcoffset()
    low, high = int(earlier.timestamp()), int(later.timestamp())  # whole seconds: the zone's offsets change on them
    while high - low > 1:  # the jump is the first second read at the offset after it
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, UTC).astimezone(zone).utcoffset() == after_offset:
            high = middle
        else:
            low = middle
    jump = datetime.fromtimestamp(high, UTC)
    before = (jump - timedelta(seconds=1)).astimezone(zone).replace(tzinfo=None) + timedelta(seconds=1)
    return jump, before, jump.astimezone(zone).replace(tzinfo=None)


# A year or a month alone (ISO 8601's reduced precision), which Python's fromisoformat refuses. ASCII digits only: \d
# would take the full-width ones.
_YEAR_MONTH = re.compile(r"([0-9]{4})(?:-([0-9]{2}))?")


# All ASCII digits: a year (4), a date as YYYYMMDD (8, ISO 8601's basic form), or Unix time in seconds (9 or 10) or
# milliseconds (12 or 13, what Grafana's ${__from} and JavaScript's Date.now() give). The length alone says which:
# each unit spans 1973-03-03T09:46:40Z to 2286-11-20T17:46:39Z, and 11 digits, seconds after 2286 or milliseconds
# before 1973, are neither, so no number reads as both. Seconds took 10 digits only: 915148800 (1999-01-01), a time
# `date +%s` gives, was refused; and so milliseconds before 2001-09-09, which a dashboard's picker gives, in step.
_DIGITS = re.compile(r"[0-9]+")
EPOCH_DIGITS = {9: 1, 10: 1, 12: 1000, 13: 1000}  # digits: units per second
DIGITS_RULE = ("a number is Unix time in seconds (9 or 10 digits) or milliseconds (12 or 13 digits), either from "
               "1973 to 2286, a year (4 digits) or a date as YYYYMMDD (8 digits)")


class DigitsError(ValueError):
    """All digits, but of a length that is no time: which one was meant (seconds, milliseconds) cannot be told."""


def parse_when(text: str) -> datetime:
    """A time a person gives (the read API's ``since=``, the command line's ``--since``): what :func:`parse_iso`
    reads, a year or a month alone (``2019``, ``2019-06``), read as its start in UTC as a date alone is its day's, or
    Unix time as 9 or 10 digits (seconds) or 12 or 13 (milliseconds). ValueError and OverflowError as parse_iso's,
    DigitsError for digits of another length (DIGITS_RULE). One rule for both: the API took ``2019`` and the CLI
    refused it."""
    if _DIGITS.fullmatch(digits := text.strip()) is not None and len(digits) not in (4, 8):
        if len(digits) not in EPOCH_DIGITS:
            raise DigitsError(f"{counted(len(digits), 'digit')}: {DIGITS_RULE}")
        # Integer arithmetic: a float of 13 digits over 1000 can be a microsecond off.
        whole, part = divmod(int(digits), EPOCH_DIGITS[len(digits)])
        return datetime.fromtimestamp(whole, UTC) + timedelta(milliseconds=part)
    if (reduced := _YEAR_MONTH.fullmatch(text.strip())) is not None:
        year, month = int(reduced[1]), int(reduced[2] or 1)
        if year >= 1 and 1 <= month <= 12:
            return datetime(year, month, 1, tzinfo=UTC)
    return parse_iso(text)


def check_timezone(name: str) -> None:
    """Raised as ``timezone: ...`` so the error names the key and its line, not just the entry."""
    # Files of the zone folder (Debian's), but no IANA zones.
    why = ("the machine's own zone, which another machine (or a change of its settings) makes another"
           if name == "localtime" else
           "a zone counting leap seconds, which miner's times do not: its clocks change 27 s late"
           if name.startswith("right/") else None)
    if why:
        raise ValueError(f"timezone: {name!r} is {why}; use an IANA name such as 'Europe/Berlin'")
    if zone_or_none(name) is None:
        raise ValueError(f"timezone: unknown time zone {name!r} (use an IANA name such as 'Europe/Berlin')")


def zone_or_none(name: str) -> ZoneInfo | None:
    """The time zone ``name`` names, or None where this machine's time zone database has none by that name."""
    try:
        return ZoneInfo(name)
    # OSError: a folder of the zone database ("Europe", "America") is found as a file that cannot be read.
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def floor_time(dt: datetime, step: timedelta) -> datetime:
    """Start of the bucket of width ``step`` holding ``dt`` (buckets are aligned to the Unix epoch)."""
    seconds = int(step.total_seconds())
    ts = int(dt.timestamp())
    return datetime.fromtimestamp(ts - ts % seconds, UTC)


def counted(count: int, noun: str) -> str:
    """``count`` and ``noun``, plural unless it is one ("1 service", "2 services", "0 sources")."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def duration_text(seconds: float) -> str:
    """A length of time for people: ``45 min``, ``1 h 05 min``, ``3 d 2 h``."""
    minutes = int(max(seconds, 0) // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    return f"{hours // 24} d {hours % 24} h"


# A server asking for more than a day is broken or misconfigured; honouring "until 9999" (or a delay too large
# for a timedelta) would park a source or a notification for good, so we try again after a day.
MAX_RETRY_AFTER = 86400.0


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date (RFC 9110 10.2.3), at most
    ``MAX_RETRY_AFTER``. A header sent more than once comes joined with commas ("120, 120", as httpx gives it): the
    longest wait of the values read."""
    if not value:
        return None
    if (whole := _one_retry_after(value, now)) is not None:
        return whole
    # Split at the commas; an HTTP date has one of its own ("Fri, 27 Nov 2026 ..."): a piece that reads as nothing
    # alone is read with the next.
    pieces, waits, i = value.split(","), [], 0
    while i < len(pieces):
        wait = _one_retry_after(pieces[i], now)
        if wait is None and i + 1 < len(pieces):
            wait = _one_retry_after(f"{pieces[i]},{pieces[i + 1]}", now)
            i += wait is not None
        if wait is not None:
            waits.append(wait)
        i += 1
    return max(waits, default=None)


def _one_retry_after(value: str, now: datetime) -> float | None:
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return min(float(text), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - now).total_seconds()), MAX_RETRY_AFTER)

"""Times and durations given on the command line, read one way by every command.

A time is ISO 8601: a date and time, a date, or a month or a year alone (its start), or Unix time in seconds (9 or
10 digits) or milliseconds (12 or 13), read as the read API reads its ``since=`` (timeutil.parse_when); one without
an offset (``Z``, ``+05:30``) is UTC, as the store's times are. A
duration is numbers with units (``30m``, ``2h``, ``1h30m``, ``1d``, ``1w``), in either case but for ``M``, which
could mean months as well as minutes and is refused.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from miner.errors import InputError
from miner.timeutil import DigitsError, parse_when

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# Every number needs its unit: searching for number-unit pairs anywhere took "1h30" as 1h and "1.2.3h" as 2.3h.
_DURATION = re.compile(r"(?:\s*\d+(?:\.\d+)?\s*[smhdw])+\s*")
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_NAMES = "s (seconds), m (minutes), h (hours), d (days), w (weeks)"
# A silence longer than this is a typo, or a service better left out of the config; far longer spans overflow a
# datetime when added to now (a traceback, not an error message).
MAX_DURATION = timedelta(days=3653)  # ten years
_REDUCED = "2026-11 or 2026 for its start"


def parse_duration(text: str) -> timedelta:
    """``2h``, ``90m``, ``1h30m``, ``1d``: a positive span of at most MAX_DURATION; InputError otherwise."""
    lowered = text.lower()
    if not _DURATION.fullmatch(lowered):
        raise InputError(f"bad duration {text!r}: use e.g. 30m, 2h, 1h30m, 1d (each number with its unit: {_NAMES})")
    if "M" in text:
        # Units are read in any case ("2H"), but "1M" is as likely a month as a minute: a silence meant for a
        # month ended after one minute, and nothing said so.
        raise InputError(f"bad duration {text!r}: M is no unit (a minute is m; a month, give it in days: 30d); "
                         f"units are {_NAMES}")
    seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(lowered))
    if seconds <= 0:
        raise InputError(f"duration {text!r} must be positive")
    if seconds > MAX_DURATION.total_seconds():
        raise InputError(f"duration {text!r} is longer than ten years ({MAX_DURATION.days} days)")
    return timedelta(seconds=seconds)


def parse_time(text: str, option: str) -> datetime:
    """An ISO 8601 time given as ``option`` (a year or a month alone too: its start), in UTC; InputError naming the
    option otherwise."""
    try:
        return parse_when(text)
    except DigitsError as exc:  # all digits, but neither seconds nor milliseconds by its length: say the rule
        raise InputError(f"{option} {text!r} is {exc}") from None
    except ValueError:
        raise InputError(f"{option} {text!r} is not an ISO 8601 date or time (e.g. 2026-11-28, 2026-11-28T04:50, "
                         f"2026-11-28T10:20+05:30, {_REDUCED}; without an offset it is UTC)") from None
    except OverflowError:  # its offset moves it past what a datetime holds
        raise InputError(f"{option} {text!r} is out of range") from None


def parse_since(text: str, option: str, now: datetime) -> datetime:
    """A time as :func:`parse_time` reads it, or a duration before ``now`` (``2h``: two hours ago)."""
    if _DURATION.fullmatch(text.lower()):
        return now - parse_duration(text)
    try:
        return parse_time(text, option)
    except InputError as exc:
        if "is not an ISO 8601" not in str(exc):
            raise
        # It named ISO 8601 only: "1h30", meant as a duration, was not told that durations are taken too.
        raise InputError(f"{option} {text!r} is neither an ISO 8601 date or time (e.g. 2026-11-28, 2026-11-28T04:50, "
                         f"2026-11-28T10:20+05:30, {_REDUCED}; without an offset it is UTC) nor a duration before "
                         "now (e.g. 2h, 1d, 1h30m: each number with its unit)") from None

"""The read API's times: ``since=`` and ``until=`` read one way wherever it takes them (the incidents, a series), and a
series' absolute window, ``since=`` to ``until=``, which a dashboard's time picker gives (Grafana's ``${__from}`` and
``${__to}``, Unix milliseconds) where ``?hours=`` could only count back from now."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from miner.query_fields import BadRequest
from miner.timeutil import DigitsError, iso_exact, parse_when

# "+00:00" in a query string that was not percent-encoded arrives as " 00:00": a plus is a space there.
_PLUS_AS_SPACE = re.compile(r" (\d\d(?::?\d\d)?)$")


def when(text: str, key: str = "since") -> datetime:
    """The time ``key`` gives (``since``, ``until``): as the command line reads one (timeutil.parse_when)."""
    for value in (text, _PLUS_AS_SPACE.sub(r"+\1", text)):
        try:
            return parse_when(value)
        except OverflowError:  # a time Python reads, but not in UTC: year 1 at a positive offset, 9999 at a negative
            raise BadRequest(f"{key}: {value[:60]!r} is out of range: in UTC it is before 0001-01-01T00:00:00Z or "
                             "after 9999-12-31T23:59:59Z; give a time between them") from None
        except DigitsError as exc:  # which of seconds or milliseconds was meant cannot be told: say the rule
            raise BadRequest(f"{key}: {text[:60]!r} is {exc}") from None
        except ValueError:
            pass
    raise BadRequest(f"{key}: not an ISO 8601 time (got {text[:60]!r}); give one such as 2026-11-27T12:00:00Z, "
                     "2026-11-27, 2026-11 or 2026 (a time without an offset is UTC), or Unix time: 1795780800 "
                     "(seconds) or 1795780800000 (milliseconds)")


def before(end: datetime, span: timedelta) -> datetime:
    """``span`` before ``end``, or the first time there is (``until=0001-01-02`` was a 500)."""
    try:
        return end - span
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)


def series_range(params: Mapping[str, str], now: datetime, default_hours: int, most_hours: int
                 ) -> tuple[datetime, datetime]:
    """The ``since`` and ``until`` a series' query gives, at most ``most_hours`` apart, as the hours ``?hours=``
    takes: until defaults to ``now``, since to ``default_hours`` before until."""
    if "hours" in params:
        given = " and ".join(key for key in ("since", "until") if key in params)
        raise BadRequest(f"hours: given with {given}; give hours (back from now) or since and until, not both")
    until = when(params["until"], "until") if "until" in params else now
    since = when(params["since"]) if "since" in params else before(until, timedelta(hours=default_hours))
    if until <= since:
        raise BadRequest(f"until: {iso_exact(until)} is not after since ({iso_exact(since)}): no time is in between")
    if until - since > timedelta(hours=most_hours):
        raise BadRequest(f"since: {iso_exact(since)} is more than {most_hours} hours before until "
                         f"({iso_exact(until)}); a series spans at most {most_hours} hours, as hours= does")
    return since, until

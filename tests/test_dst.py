"""Local times across daylight saving time changes: maintenance windows and cron schedules, Berlin and New York."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from miner.config import parse_config
from miner.errors import ConfigError

WINDOW = '[[services]]\nname = "A"\n\n[[alerts.maintenance]]\nservice = "A"\nstart = "{start}"\nend = "{end}"\n' \
         'timezone = "{zone}"\n'


def span(start: str, end: str, zone: str) -> list[str]:
    """A one-off window's start and end in UTC."""
    [window] = parse_config(WINDOW.format(start=start, end=end, zone=zone), "x.toml").alerts.maintenance
    bounds = window.span(datetime(2026, 1, 1, tzinfo=UTC))
    assert bounds is not None
    return [b.strftime("%H:%M") for b in bounds]


def test_a_one_off_window_at_a_time_the_clocks_skip_is_refused_saying_so() -> None:
    # 02:30 was read at the offset before the jump, 03:30 summer time: a window from 02:30 to 03:30 began as it
    # ended, refused as "end: must be after start", which did not say why; 02:30 to 04:30 was silently 03:30-04:30.
    for start, end, zone, key, line in [
        ("2026-03-29T02:30", "2026-03-29T03:30", "Europe/Berlin", "start", 6),
        ("2026-03-29T02:30", "2026-03-29T04:30", "Europe/Berlin", "start", 6),
        ("2026-03-08 01:30", "2026-03-08 02:15", "America/New_York", "end", 7),
    ]:
        with pytest.raises(ConfigError) as info:
            parse_config(WINDOW.format(start=start, end=end, zone=zone), "x.toml")
        given, day = (start if key == "start" else end), start[:10]
        assert str(info.value) == (
            f"x.toml:{line}: alerts.maintenance[0].{key}: {given!r} is no time in {zone}: its clocks go from 02:00 "
            f"straight to 03:00 on {day}; write a time outside that gap, or one with its UTC offset")

    # As docs/alerts.md says. With its offset, a time in the gap is an instant like any other; on either side of the
    # gap, the offset of that side.
    assert span("2026-03-29T02:30+01:00", "2026-03-29T04:00", "Europe/Berlin") == ["01:30", "02:00"]
    assert span("2026-03-29T01:59", "2026-03-29T03:00", "Europe/Berlin") == ["00:59", "01:00"]
    # The repeated hour (Berlin 2026-10-25, 02:00-03:00 twice; New York 2026-11-01, 01:00-02:00): the first of the
    # two, summer time, as zoneinfo's fold=0 reads it; the offset picks the second.
    assert span("2026-10-25T02:30", "2026-10-25T02:45", "Europe/Berlin") == ["00:30", "00:45"]
    assert span("2026-10-25T02:30", "2026-10-25T02:30+01:00", "Europe/Berlin") == ["00:30", "01:30"]
    assert span("2026-11-01T01:30", "2026-11-01T01:30-05:00", "America/New_York") == ["05:30", "06:30"]

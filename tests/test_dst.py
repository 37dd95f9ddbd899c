"""Local times across daylight saving time changes: maintenance windows and cron schedules, Berlin and New York."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from test_alerts_support import settings

from miner.alerts import enqueue_due_digests
from miner.alerts.schedule import next_fire
from miner.alerts.settings import MaintenanceWindow, RouteSettings
from miner.config import parse_config
from miner.errors import ConfigError
from miner.store import Store

WINDOW = '[[services]]\nname = "A"\n\n[[alerts.maintenance]]\nservice = "A"\nstart = "{start}"\nend = "{end}"\n' \
         'timezone = "{zone}"\n'


def rows(store: Store) -> list[dict[str, Any]]:
    return store.outbox_listing(["pending", "sending", "sent", "failed", "suppressed"])


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


def test_a_date_alone_on_a_day_that_starts_with_the_clocks_going_forward_is_that_day_s_start() -> None:
    # Santiago goes from 00:00 straight to 01:00 on 2026-09-06: the day starts at 01:00 (04:00 UTC), which is how
    # the date was read before skipped times were refused; a window for that whole day was refused with them.
    assert span("2026-09-06", "2026-09-07", "America/Santiago") == ["04:00", "03:00"]
    with pytest.raises(ConfigError, match="is no time in America/Santiago"):
        span("2026-09-06T00:00", "2026-09-07", "America/Santiago")


def test_a_fixed_time_the_clocks_skip_runs_at_the_jump_as_cron_runs_it(store: Store) -> None:
    # cron(8): jobs that would have run in the skipped interval "will be run immediately". They ran an hour later
    # on the wall clock (03:30), which the docs called cron's way.
    nightly = RouteSettings(name="team", email=("a@example.org",), digest="30 2 * * *", timezone="America/New_York",
                            digest_when_quiet=True)
    c = settings(routes=(nightly,), webhooks=())
    start = datetime(2026, 3, 7, 12, tzinfo=UTC)  # New York goes from 02:00 EST straight to 03:00 EDT on 2026-03-08
    for step in range(0, 96):  # every half hour for two days, as the service polls
        enqueue_due_digests(store, c, start + timedelta(minutes=30 * step))
    assert sorted(r["dedupe_key"] for r in rows(store)) == [
        "digest:team:2026-03-08T07:00:00+00:00",  # 03:00 EDT, the jump
        "digest:team:2026-03-09T06:30:00+00:00"]  # 02:30 EDT the day after

    # A recurring window at 02:30 starts at the jump and lasts its length in real time: 03:00-04:00 CEST.
    window = MaintenanceWindow(service="A", cron="30 2 * * *", duration_minutes=60, timezone="Europe/Berlin")
    window.validate()
    jump = datetime(2026, 3, 29, 1, tzinfo=UTC)
    assert window.span(jump - timedelta(hours=2)) == (jump, jump + timedelta(hours=1))
    assert [window.active(jump + timedelta(minutes=m)) for m in (-1, 0, 59, 60)] == [False, True, True, False]
    # Fixed times sharing the gap are one run; a wildcard hour runs in no skipped hour, as in cron.
    assert [next_fire(e, "Europe/Berlin", jump - timedelta(hours=1)) for e in ("0,30 2 * * *", "0 * * * *")] == [
        jump, jump]
    assert next_fire("0,30 2 * * *", "Europe/Berlin", jump) == datetime(2026, 3, 30, 0, tzinfo=UTC)
    # The day the clocks go back, once: New York's 01:30 window starts at the first 01:30, not again at the second.
    autumn = MaintenanceWindow(service="A", cron="30 1 * * *", duration_minutes=60, timezone="America/New_York")
    first = datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    assert [autumn.active(first + timedelta(minutes=m)) for m in (0, 59, 60, 61, 119)] == [True, True, False, False,
                                                                                             False]

"""The read API's times as a dashboard gives them (Grafana's ${__from} and ${__to} are Unix milliseconds), on a real
127.0.0.1 server over a real store: Unix seconds (9 or 10 digits) and milliseconds (12 or 13) read as the ISO 8601
time they are, digits of any other length refused naming the parameter, and a series from since= to until= as
hours= gives the same window."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from test_http_cache import cached
from test_read_api import NOW, Api, get, served, serving, write_config

from miner.cli.times import parse_since, parse_time
from miner.config import load_config
from miner.errors import InputError
from miner.read_api import ReadApi
from miner.store import Store
from miner.timeutil import iso_exact

SERIES = "/api/v1/services/WhatsApp/series"
RULE = ("a number is Unix time in seconds (9 or 10 digits) or milliseconds (12 or 13 digits), either from 1973 to "
        "2286, a year (4 digits) or a date as YYYYMMDD (8 digits)")


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with served(tmp_path, write_config(tmp_path)) as api:
        yield api


def seconds(at: datetime) -> str:
    return str(int(at.timestamp()))


def millis(at: datetime) -> str:
    return str(int(at.timestamp()) * 1000 + at.microsecond // 1000)


def test_unix_seconds_and_milliseconds_answer_as_the_iso_time_does(api: Api) -> None:
    since, until = NOW - timedelta(days=11), NOW.replace(second=0, microsecond=123_000)
    assert len(seconds(since)) == 10 and len(millis(until)) == 13
    query = "/api/v1/incidents?limit=1&since={}&until={}"
    status, want, _ = get(api, query.format(quote(iso_exact(since)), quote(iso_exact(until))))
    assert status == 200 and want["truncated"] and want["next"]  # a next link, carrying the times as applied
    assert want["until"] == "2026-11-27T12:07:00.123+00:00"
    for given in ((seconds(since), millis(until)), (millis(since), millis(until))):
        assert get(api, query.format(*given))[:2] == (200, want), given
    # Fewer digits are no Unix time: 4 are still a year, 8 a date (ISO 8601's basic form), as before.
    assert get(api, "/api/v1/incidents?since=2026")[1]["since"] == "2026-01-01T00:00:00+00:00"
    assert get(api, "/api/v1/incidents?since=20261101")[1]["since"] == "2026-11-01T00:00:00+00:00"


@pytest.mark.parametrize("given", ["17957808000", "17957808000000", "1", "0", "201906", "1234567"])
@pytest.mark.parametrize(("path", "key"), [("/api/v1/incidents", "since"), ("/api/v1/incidents", "until"),
                                           (SERIES, "since"), (SERIES, "until")])
def test_digits_of_another_length_are_refused_naming_the_parameter(api: Api, path: str, key: str, given: str
                                                                   ) -> None:
    status, body, _ = get(api, f"{path}?{key}={given}")
    digits = "1 digit" if len(given) == 1 else f"{len(given)} digits"  # not "1 digits"
    assert (status, body["error"]) == (400, f"{key}: {given!r} is {digits}: {RULE}")


BEFORE_2001 = {"915148800": "1999-01-01T00:00:00+00:00", "915148800000": "1999-01-01T00:00:00+00:00",
               "999999999": "2001-09-09T01:46:39+00:00", "999999999999": "2001-09-09T01:46:39.999+00:00",
               "100000000": "1973-03-03T09:46:40+00:00", "100000000000": "1973-03-03T09:46:40+00:00"}


@pytest.mark.parametrize(("given", "iso"), BEFORE_2001.items())
def test_unix_time_before_2001_is_read_in_seconds_of_9_digits_and_milliseconds_of_12(api: Api, given: str, iso: str
                                                                                   ) -> None:
    # `date -d 1999-01-01 +%s` gives 915148800: 9 digits, refused as "9 digits" though no reading but seconds was
    # possible (as milliseconds, 12 days after 1970-01-01). Each unit now spans 1973 to 2286, and 11 digits, which
    # would be seconds after 2286 or milliseconds before 1973, stay refused: no number reads as both.
    status, body, _ = get(api, f"/api/v1/incidents?since={given}")
    assert status == 200 and body["since"] == iso, body
    assert body["incidents"]  # everything since 1999, as since=1999 gives it
    assert [i["id"] for i in body["incidents"]] == [i["id"] for i in get(
        api, "/api/v1/incidents?since=1999")[1]["incidents"]]
    assert get(api, f"/api/v1/incidents?until={given}")[:2] == get(api, f"/api/v1/incidents?until={quote(iso)}")[:2]
    # A series' window: a day before the time given, as until=ISO gives it (no buckets then).
    series, by_iso = (get(api, f"{SERIES}?until={u}")[1] for u in (given, quote(iso)))
    assert series == by_iso and series["until"] == iso and series["buckets"] == []
    assert parse_time(given, "--at") == parse_time(iso, "--at")  # and the command line reads it as the API does


def test_a_negative_or_signed_unix_time_is_refused_as_no_time(api: Api) -> None:
    # Seconds before 1970 could only be negative: they are refused, as before, not read as a time.
    for given in ("-1795780800", "%2B1795780800"):
        status, body, _ = get(api, f"/api/v1/incidents?since={given}")
        assert status == 400 and body["error"].startswith("since: not an ISO 8601 time"), body
    # The refusal names Unix time among the forms taken.
    assert "or Unix time: 1795780800 (seconds) or 1795780800000 (milliseconds)" in get(
        api, "/api/v1/incidents?since=yesterday")[1]["error"]


def test_a_series_from_since_to_until_is_what_hours_gives_for_that_window(api: Api) -> None:
    status, hours, _ = get(api, f"{SERIES}?hours=2")
    assert status == 200 and len(hours["buckets"]) == 5
    assert (hours["since"], hours["until"]) == ("2026-11-27T10:07:30+00:00", "2026-11-27T12:07:30+00:00")
    for query in (f"since={millis(NOW - timedelta(hours=2))}&until={millis(NOW)}",
                  f"since={quote(iso_exact(NOW - timedelta(hours=2)))}&until={quote(iso_exact(NOW))}",
                  f"since={millis(NOW - timedelta(hours=2))}",  # until defaults to now
                  f"since={seconds(NOW - timedelta(hours=2))}&until={quote(iso_exact(NOW + timedelta(days=1)))}"):
        status, absolute, _ = get(api, f"{SERIES}?{query}")
        assert status == 200, absolute
        assert absolute["hours"] is None and absolute["buckets"] == hours["buckets"], query
    # Only until: the 24 hours before it, as hours= takes by default.
    assert get(api, f"{SERIES}?until={seconds(NOW)}")[1]["buckets"] == get(api, SERIES)[1]["buckets"]


def test_a_series_by_hours_repeats_its_window_as_the_answers_now_gives_the_time(tmp_path: Path) -> None:
    # The service's clock has microseconds; "now" was written to the second and "until", the same time, with its
    # microseconds (and "since" with them too), so a client comparing the two saw two times.
    config = load_config(write_config(tmp_path))
    Store.open(tmp_path / "miner.sqlite").close()
    reader = Store.open(tmp_path / "miner.sqlite")
    try:
        clock = NOW.replace(microsecond=123456)
        with serving(ReadApi(config, lambda: reader, lambda: None, lambda: clock)) as base:
            body = httpx.get(f"{base}{SERIES}?hours=2", timeout=10).json()
    finally:
        reader.close()
    assert (body["now"], body["since"], body["until"]) == (
        "2026-11-27T12:07:30+00:00", "2026-11-27T10:07:30+00:00", "2026-11-27T12:07:30+00:00")


def test_a_series_from_since_to_until_in_the_past_ends_at_the_bucket_holding_until(api: Api) -> None:
    # 10:00 to 11:50, as a time picker gives it: the buckets from 10:00 to 11:45, each complete.
    since, until = NOW.replace(hour=10, minute=0, second=0), NOW.replace(hour=11, minute=50, second=0)
    status, body, _ = get(api, f"{SERIES}?since={millis(since)}&until={millis(until)}")
    assert status == 200
    assert [(b["start"][11:16], b["posts"], b["complete"]) for b in body["buckets"]] == [
        ("10:00", 1, True), ("11:15", 1, True), ("11:30", 0, True), ("11:45", 2, True)]
    assert (body["since"], body["until"]) == ("2026-11-27T10:00:00+00:00", "2026-11-27T11:50:00+00:00")


@pytest.mark.parametrize(("query", "status", "expect"), [
    # 40 days of rows kept: 960 hours, as hours= takes at most.
    (f"since={seconds(NOW - timedelta(hours=960, seconds=1))}&until={seconds(NOW)}", 400,
     "since: 2026-10-18T12:07:29+00:00 is more than 960 hours before until (2026-11-27T12:07:30+00:00); a series "
     "spans at most 960 hours, as hours= does"),
    (f"since={seconds(NOW - timedelta(hours=960))}&until={seconds(NOW)}", 200, 5),
    (f"until={seconds(NOW - timedelta(days=3000))}", 200, 0),
    (f"since={seconds(NOW)}&until={seconds(NOW)}", 400,
     "until: 2026-11-27T12:07:30+00:00 is not after since (2026-11-27T12:07:30+00:00): no time is in between"),
    (f"since={seconds(NOW)}", 400, "until: 2026-11-27T12:07:30+00:00 is not after since"),
    ("hours=2&since=2026-11-27", 400,
     "hours: given with since; give hours (back from now) or since and until, not both"),
    (f"hours=2&until={seconds(NOW)}", 400, "hours: given with until; give hours"),
    ("since=9999-12-31T23:00:00Z&until=9999-12-31T23:59:59Z", 200, 0),  # no bucket after now's: none in year 10000
    ("since=0001-01-01&until=0001-01-01T10:00:00Z", 200, 0),
    ("until=0001-01-01T10:00:00Z", 200, 0),  # the 24 hours before it: before the first time there is
    ("since=2026-11-27&since=2026-11-26", 400, "since: given 2 times; give it once"),
    ("sinse=2026-11-27", 400, "unknown parameter 'sinse' (did you mean 'since'?); this endpoint takes hours, since, "
     "until"),
])
def test_a_series_window_is_bounded_as_hours_is(api: Api, query: str, status: int, expect: str | int) -> None:
    """``expect``: the error's start, or how many buckets the answer holds."""
    got, body, _ = get(api, f"{SERIES}?{query}")
    assert got == status, body
    if isinstance(expect, int):
        assert body["hours"] is None and len(body["buckets"]) == expect, body
    else:
        assert body["error"].startswith(expect), body


def test_each_window_of_a_series_is_kept_as_an_answer_of_its_own(tmp_path: Path) -> None:
    # http_cache keys the API's answers by the whole query string: a dashboard's panels asking for the same range
    # share one read, and another range is never given a kept answer for the first.
    with cached(tmp_path, seconds=30) as kept:
        one, other = (f"{SERIES}?since={millis(NOW - timedelta(hours=h))}&until={millis(NOW)}" for h in (2, 1))
        first, again = (httpx.get(kept.base + one, timeout=10) for _ in range(2))
        assert first.status_code == 200 and again.content == first.content and len(kept.reads) == 1
        shorter = httpx.get(kept.base + other, timeout=10)
        assert shorter.status_code == 200 and len(kept.reads) == 2
        assert [b["start"][11:16] for b in shorter.json()["buckets"]] == ["11:15", "11:30", "11:45", "12:00"]
        assert len(first.json()["buckets"]) == 5


def test_the_command_line_reads_unix_time_as_the_api_does() -> None:
    # One parser (timeutil.parse_when) for both, as docs/operations.md says.
    assert parse_time("1795780800", "--at") == parse_time("2026-11-27T12:00:00Z", "--at")
    assert parse_since("1795780800500", "--since", NOW) == parse_time("2026-11-27T12:00:00.5Z", "--at")
    with pytest.raises(InputError) as at:
        parse_time("17957808000", "--at")
    assert str(at.value) == f"--at '17957808000' is 11 digits: {RULE}"
    with pytest.raises(InputError) as since:
        parse_since("1795780800000000", "--since", NOW)
    assert str(since.value) == f"--since '1795780800000000' is 16 digits: {RULE}"

"""The read API's times as a dashboard gives them (Grafana's ${__from} and ${__to} are Unix milliseconds), on a real
127.0.0.1 server over a real store: Unix seconds and milliseconds read as the ISO 8601 time they are, digits of any
other length refused naming the parameter, and the command line reading them as the API does."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from test_read_api import NOW, Api, get, served, write_config

from miner.cli.times import parse_since, parse_time
from miner.errors import InputError
from miner.timeutil import iso_exact

RULE = ("digits: a number is Unix time in seconds (10 digits) or milliseconds (13 digits), a year (4 digits) or a "
        "date as YYYYMMDD (8 digits)")


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


@pytest.mark.parametrize("given", ["179578080", "17957808000", "179578080000", "17957808000000", "1", "201906"])
@pytest.mark.parametrize(("path", "key"), [("/api/v1/incidents", "since"), ("/api/v1/incidents", "until")])
def test_digits_of_another_length_are_refused_naming_the_parameter(api: Api, path: str, key: str, given: str
                                                                   ) -> None:
    status, body, _ = get(api, f"{path}?{key}={given}")
    assert (status, body["error"]) == (400, f"{key}: {given!r} is {len(given)} {RULE}")


def test_a_negative_or_signed_unix_time_is_refused_as_no_time(api: Api) -> None:
    # Seconds before 1970 could only be negative: they are refused, as before, not read as a time.
    for given in ("-1795780800", "%2B1795780800"):
        status, body, _ = get(api, f"/api/v1/incidents?since={given}")
        assert status == 400 and body["error"].startswith("since: not an ISO 8601 time"), body
    # The refusal names Unix time among the forms taken.
    assert "or Unix time: 1795780800 (seconds) or 1795780800000 (milliseconds)" in get(
        api, "/api/v1/incidents?since=yesterday")[1]["error"]


def test_the_command_line_reads_unix_time_as_the_api_does() -> None:
    # One parser (timeutil.parse_when) for both, as docs/operations.md says.
    assert parse_time("1795780800", "--at") == parse_time("2026-11-27T12:00:00Z", "--at")
    assert parse_since("1795780800500", "--since", NOW) == parse_time("2026-11-27T12:00:00.5Z", "--at")
    with pytest.raises(InputError) as at:
        parse_time("17957808000", "--at")
    assert str(at.value) == f"--at '17957808000' is 11 {RULE}"
    with pytest.raises(InputError) as since:
        parse_since("179578080", "--since", NOW)
    assert str(since.value) == f"--since '179578080' is 9 {RULE}"

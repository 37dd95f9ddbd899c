"""The command line's times read as the read API reads ``since=`` (one parser, timeutil.parse_when): a year or a month
alone is its start, durations are still taken where they were, and an error names the option."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_cli_core import ROOT, seeded_store

from miner.cli import main
from miner.cli.times import parse_since, parse_time
from miner.errors import InputError

NOW = datetime(2026, 11, 27, 12, 7, 30, tzinfo=UTC)


@pytest.mark.parametrize(("text", "read_as"), [
    ("2019", datetime(2019, 1, 1, tzinfo=UTC)), ("2019-06", datetime(2019, 6, 1, tzinfo=UTC)),
    (" 2019-06 ", datetime(2019, 6, 1, tzinfo=UTC)), ("0001", datetime(1, 1, 1, tzinfo=UTC)),
])
def test_a_time_may_be_a_year_or_a_month_alone(text: str, read_as: datetime) -> None:
    # `miner reclassify --since 2019` was "not an ISO 8601 date or time", where /api/v1/incidents?since=2019 was read.
    assert parse_time(text, "--at") == read_as
    assert parse_since(text, "--since", NOW) == read_as


@pytest.mark.parametrize(("text", "ago"), [("2d", timedelta(days=2)), ("1h30m", timedelta(hours=1, minutes=30)),
                                           ("2019s", timedelta(seconds=2019))])
def test_a_duration_is_still_one_beside_a_year(text: str, ago: timedelta) -> None:
    assert parse_since(text, "--since", NOW) == NOW - ago
    assert parse_since("2019", "--since", NOW) == datetime(2019, 1, 1, tzinfo=UTC)  # a number without a unit


@pytest.mark.parametrize("text", ["2019-13", "2019-00", "0000", "2019-6", "２０１９", "2019-06-"])
def test_what_is_no_time_is_refused_naming_the_option_and_the_forms_taken(text: str) -> None:
    with pytest.raises(InputError) as at:
        parse_time(text, "--at")
    assert str(at.value) == (f"--at {text!r} is not an ISO 8601 date or time (e.g. 2026-11-28, 2026-11-28T04:50, "
                             "2026-11-28T10:20+05:30, 2026-11 or 2026 for its start; without an offset it is UTC)")
    with pytest.raises(InputError) as since:
        parse_since(text, "--since", NOW)
    assert str(since.value).startswith(f"--since {text!r} is neither an ISO 8601 date or time (e.g. 2026-11-28, "
                                       "2026-11-28T04:50, 2026-11-28T10:20+05:30, 2026-11 or 2026 for its start;")


def test_digest_at_and_reclassify_since_take_a_year_or_a_month(runner: CliRunner, tmp_path: Path) -> None:
    db = tmp_path / "m.sqlite"
    seeded_store(db)
    base = ["--config", str(ROOT / "feeds.toml"), "--db", str(db)]
    out = tmp_path / "out"
    digest = runner.invoke(main, [*base, "digest", "--dry-run", "--out", str(out), "--at", "2026-01"])
    assert digest.exit_code == 0, digest.output
    assert list(out.iterdir())
    # Read, then refused for what it is (a time to come), before any model is loaded.
    later = runner.invoke(main, [*base, "reclassify", "--since", "3000"])
    assert later.exit_code == 1
    assert later.output.startswith("Error: --since 3000-01-01 00:00:00 UTC is after now ("), later.output
    bad = runner.invoke(main, [*base, "digest", "--dry-run", "--out", str(out), "--at", "2026-13"])
    assert bad.exit_code == 1
    assert bad.output.startswith("Error: --at '2026-13' is not an ISO 8601 date or time ("), bad.output

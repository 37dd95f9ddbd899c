"""`miner detect` end to end through click's CliRunner."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from miner.cli import main


def write_series(path: Path, counts: list[float], minutes: int = 5) -> None:
    t0 = datetime(2025, 3, 3)
    lines = ["timestamp,value"] + [
        f"{(t0 + timedelta(minutes=minutes * i)).strftime('%Y-%m-%d %H:%M:%S')},{c:g}" for i, c in enumerate(counts)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def outage_counts() -> list[float]:
    base = [float(x) for x in np.random.default_rng(3).poisson(20, 300)]
    return base + [300.0] * 6 + base[:20]


def test_detect_writes_scores_and_one_opening(tmp_path: Path) -> None:
    series = tmp_path / "series.csv"
    write_series(series, outage_counts())
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(main, ["detect", str(series), "-o", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert list(rows[0]) == ["timestamp", "value", "score", "opened"]
    assert len(rows) == 326
    assert [i for i, r in enumerate(rows) if r["opened"] == "1"] == [301]
    assert float(rows[302]["score"]) > 10 and rows[0]["timestamp"] == "2025-03-03 00:00:00"


def test_detect_refuses_to_write_over_its_input(tmp_path: Path) -> None:
    # `-o` naming the series wrote the scores over it: the counts were gone, with exit status 0.
    series = tmp_path / "series.csv"
    write_series(series, outage_counts())
    before = series.read_bytes()
    (tmp_path / "link.csv").symlink_to(series)
    for out in (series, tmp_path / "link.csv"):
        result = CliRunner().invoke(main, ["detect", str(series), "-o", str(out)])
        assert result.exit_code == 2, result.output
        assert f"Invalid value for '-o' / '--output': '{out}' is the input file; write the output elsewhere" in (
            result.output)
        assert series.read_bytes() == before


def test_detect_to_stdout_infers_the_bucket_size(tmp_path: Path) -> None:
    series = tmp_path / "hourly.csv"
    counts = outage_counts()
    write_series(series, counts, minutes=60)  # 300 hours of history: well past warm-up at any bucket size
    result = CliRunner().invoke(main, ["detect", str(series)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert sum(r["opened"] == "1" for r in rows) == 1


def test_detect_writes_each_timestamp_as_given(tmp_path: Path) -> None:
    # Timestamps with an offset were written back in UTC without one: 05:30 in Kolkata came out as 00:00.
    series = tmp_path / "kolkata.csv"
    t0 = datetime(2025, 3, 3, 5, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    stamps = [(t0 + timedelta(minutes=5 * i)).isoformat() for i in range(len(outage_counts()))]
    series.write_text("timestamp,value\n" + "".join(f"{t},{c:g}\n" for t, c in zip(stamps, outage_counts(),
                                                                                     strict=True)), encoding="utf-8")
    result = CliRunner().invoke(main, ["detect", str(series)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [r["timestamp"] for r in rows] == stamps and stamps[0] == "2025-03-03T05:30:00+05:30"
    assert [i for i, r in enumerate(rows) if r["opened"] == "1"] == [301]


def test_detect_writes_each_value_as_given(tmp_path: Path) -> None:
    # Values were written back as a float's "{:g}", to six digits: a count of 1234567 came out as 1.23457e+06.
    series = tmp_path / "large.csv"
    given = ["1234567", "0.123456789", "52345678", "7", "1e2", "3.0"]
    series.write_text("timestamp,value\n" + "".join(f"2025-03-03T{h:02d}:00:00Z,{v}\n" for h, v in enumerate(given)),
                      encoding="utf-8")
    result = CliRunner().invoke(main, ["detect", str(series)])
    assert result.exit_code == 0, result.output
    assert [r["value"] for r in csv.DictReader(io.StringIO(result.output))] == given


def test_config_overrides_the_defaults(tmp_path: Path) -> None:
    series = tmp_path / "series.csv"
    write_series(series, outage_counts())
    config = tmp_path / "feeds.toml"
    config.write_text("[detector]\nmin_count = 1000\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["--config", str(config), "detect", str(series)])
    assert result.exit_code == 0, result.output
    assert all(r["opened"] == "0" for r in csv.DictReader(io.StringIO(result.output)))
    config.write_text("[detector]\nz_close = 9.0\n", encoding="utf-8")
    bad = CliRunner().invoke(main, ["--config", str(config), "detect", str(series)])
    assert bad.exit_code != 0 and "detector.z_close" in bad.output



def test_tail_settings_that_cannot_score_are_config_errors(tmp_path: Path) -> None:
    # tail_quantile = 1 passed `config check`, then every bucket failed with an internal StatisticsError.
    series = tmp_path / "series.csv"
    write_series(series, outage_counts())
    config = tmp_path / "feeds.toml"
    for setting, message in (("tail_quantile = 1.0", "tail_quantile: must be between 0 and 1"),
                             ("tail_rate = -1.0", "tail_rate: must not be negative")):
        config.write_text(f"[detector]\n{setting}\n", encoding="utf-8")
        bad = CliRunner().invoke(main, ["--config", str(config), "detect", str(series)])
        assert bad.exit_code == 1 and f"feeds.toml:2: detector.{message}" in bad.output, bad.output
    for setting in ("tail_quantile = 0.5", "tail_rate = 0.0"):  # the documented ways to turn the tail off
        config.write_text(f"[detector]\n{setting}\n", encoding="utf-8")
        result = CliRunner().invoke(main, ["--config", str(config), "detect", str(series)])
        assert result.exit_code == 0, result.output
        assert sum(r["opened"] == "1" for r in csv.DictReader(io.StringIO(result.output))) == 1

def test_bad_csv_errors_name_the_line(tmp_path: Path) -> None:
    cases = {
        "time,count\n2025-03-03 00:00:00,1\n": ":1: header must be",
        "timestamp,value\n2025-03-03 00:00:00,1\n2025-03-03 00:05:00,abc\n": ":3: value 'abc' is not a number",
        "timestamp,value\n2025-03-03 00:00:00,1\nyesterday,2\n": ":3: bad timestamp",
        # In UTC before the year 1: an "internal error: OverflowError"
        "timestamp,value\n0001-01-01T00:30:00+01:00,1\n2025-03-03 00:05:00,2\n":
            ":2: timestamp '0001-01-01T00:30:00+01:00' is out of range",
        "timestamp,value\n2025-03-03 00:05:00,1\n2025-03-03 00:00:00,2\n": ":3: timestamp",
        "timestamp,value\n2025-03-03 00:00:00,1\n2025-03-03 00:05:00,-4\n": ":3: value must be",
        "timestamp,value\n2025-03-03 00:00:00,1\n": "need at least 2 rows",
    }
    seven = "".join(f"2025-03-03 {i * 7 // 60:02d}:{i * 7 % 60:02d}:00,{i}\n" for i in range(10))
    # Scored as if the service could run on them: its bucket_minutes must divide a day.
    cases["timestamp,value\n" + seven] = ("the rows are 7 min apart, a bucket size the detector refuses: "
                                          "bucket_minutes: must divide a day")
    for i, (text, message) in enumerate(cases.items()):
        path = tmp_path / f"bad{i}.csv"
        path.write_text(text, encoding="utf-8")
        result = CliRunner().invoke(main, ["detect", str(path)])
        assert result.exit_code != 0
        assert message in result.output, (text, result.output)
        assert "Traceback" not in result.output
    missing = CliRunner().invoke(main, ["detect", str(tmp_path / "nope.csv")])
    assert missing.exit_code != 0 and "cannot read" in missing.output


def test_detect_file_errors_read_as_the_other_commands_do(tmp_path: Path) -> None:
    # Python's own wording came through: "cannot write: [Errno 2] No such file or directory: '.../o.csv'".
    series = tmp_path / "series.csv"
    write_series(series, outage_counts())
    out = tmp_path / "no-folder" / "o.csv"
    result = CliRunner().invoke(main, ["detect", str(series), "-o", str(out)])
    # Refused before the series is scored, as classify refuses such an -o.
    assert result.exit_code == 2
    assert result.output.endswith(f"Invalid value for '-o' / '--output': '{out}': No such file or directory\n")
    missing = tmp_path / "nope.csv"
    result = CliRunner().invoke(main, ["detect", str(missing)])
    assert result.exit_code == 1
    assert result.output == f"Error: {missing}: cannot read (No such file or directory)\n"
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"timestamp,value\n2025-03-03 00:00:00,1\xe9\n")
    result = CliRunner().invoke(main, ["detect", str(latin)])
    assert result.output == f"Error: {latin}: not UTF-8 text (byte 0xe9 at offset 37): save it as UTF-8\n"


def test_detect_reads_the_series_from_standard_input_given_as_dash(tmp_path: Path) -> None:
    # As `miner classify -` and `miner query -` do: "-" was taken for a file of that name, "cannot read".
    series = tmp_path / "series.csv"
    write_series(series, outage_counts())
    from_file = CliRunner().invoke(main, ["detect", str(series)])
    result = CliRunner().invoke(main, ["detect", "-"], input=series.read_text(encoding="utf-8"))
    assert result.exit_code == 0, result.output
    assert result.output == from_file.output
    bad = CliRunner().invoke(main, ["detect", "-"], input="timestamp,value\nyesterday,1\n")
    assert bad.exit_code == 1 and "Error: <stdin>:2: bad timestamp 'yesterday'" in bad.output


def test_a_series_without_its_empty_buckets_scores_as_the_whole_one(tmp_path: Path) -> None:
    # A quiet service's counts grouped from its posts have no row for an empty bucket. With more than half of them
    # empty, most rows lay 10 minutes or more apart: the median spacing made it a 10-minute series, scored as such.
    counts = [float(x) for x in np.random.default_rng(4).poisson(0.5, 600)] + [12.0] * 6 + [0.0] * 20
    whole, sparse = tmp_path / "whole.csv", tmp_path / "sparse.csv"
    write_series(whole, counts)
    lines = whole.read_text(encoding="utf-8").splitlines()
    sparse.write_text("\n".join(lines[:1] + [line for line in lines[1:] if not line.endswith(",0")]) + "\n",
                      encoding="utf-8")
    scored = {}
    for path in (whole, sparse):
        result = CliRunner().invoke(main, ["detect", str(path)])
        assert result.exit_code == 0, result.output
        scored[path] = {r["timestamp"]: (r["score"], r["opened"]) for r in csv.DictReader(io.StringIO(result.output))}
    assert len(scored[sparse]) < len(scored[whole]) / 2
    assert scored[sparse] == {ts: scored[whole][ts] for ts in scored[sparse]}
    assert [ts for ts, (_, opened) in scored[sparse].items() if opened == "1"] == ["2025-03-05 02:05:00"]

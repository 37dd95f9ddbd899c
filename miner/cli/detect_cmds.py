"""`miner detect`: run the service's detector over a CSV of bucket counts, for evaluation and tuning."""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from miner.cli.app import AppContext, PathParam, main, pass_app
from miner.cli.output_file import input_stat, open_output
from miner.cli.stdio import read_stdin, require_stdout, stdin_unreadable
from miner.cli.stopping import raise_on_hangup
from miner.errors import InputError
from miner.timeutil import parse_iso

if TYPE_CHECKING:
    from miner.detect.params import DetectorParams


def _parse_time(text: str, where: str) -> datetime:
    try:
        return parse_iso(text)
    except ValueError:
        raise InputError(f"{where}: bad timestamp {text!r} (expected ISO 8601, e.g. 2015-02-26 21:42:53)") from None
    except OverflowError:  # its offset moves it past what a datetime holds: was an "internal error"
        raise InputError(f"{where}: timestamp {text!r} is out of range (in UTC it falls before the year 1 or "
                         "after 9999)") from None


def read_series(path: Path) -> tuple[list[tuple[datetime, float]], list[str], list[str]]:
    """Rows of a ``timestamp,value`` CSV (``-``: standard input), checked: increasing timestamps, finite
    non-negative values; and each row's timestamp and value as the file gives them."""
    stdin = str(path) == "-"
    if stdin:
        path = Path("<stdin>")  # the name its errors give
    try:
        data = read_stdin() if stdin else path.read_bytes()
    except OSError as exc:
        # Worded as the other commands' file errors: "[Errno 2] No such file or directory: 'x.csv'" was Python's own
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}): save it as "
                         "UTF-8") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or [h.strip().lower() for h in header[:2]] != ["timestamp", "value"]:
        raise InputError(f"{path}:1: header must be 'timestamp,value', got {','.join(header or [])!r}")
    rows: list[tuple[datetime, float]] = []
    labels: list[str] = []
    values: list[str] = []
    for row in reader:
        where = f"{path}:{reader.line_num}"
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2:
            raise InputError(f"{where}: expected 2 columns, got {len(row)}")
        ts = _parse_time(row[0], where)
        try:
            value = float(row[1])
        except ValueError:
            raise InputError(f"{where}: value {row[1]!r} is not a number") from None
        if not value >= 0 or value == float("inf"):
            raise InputError(f"{where}: value must be a finite count >= 0, got {row[1]!r}")
        if rows and ts <= rows[-1][0]:
            raise InputError(f"{where}: timestamp {row[0]!r} is not after the previous row's")
        rows.append((ts, value))
        labels.append(row[0].strip())
        values.append(row[1].strip())
    if len(rows) < 2:
        raise InputError(f"{path}: need at least 2 rows to infer the bucket size, got {len(rows)}")
    return rows, labels, values


def infer_bucket_minutes(rows: Sequence[tuple[datetime, float]]) -> int:
    """The most common spacing of the rows in whole minutes, the smallest of those as common: gaps do not skew it.

    Not the median: a series without its empty buckets (counts grouped from posts), more than half of them empty,
    has most rows 10 minutes or more apart, and a 5-minute one was scored as a 10-minute one."""
    spacings = Counter(max(round((b[0] - a[0]).total_seconds() / 60.0), 1) for a, b in itertools.pairwise(rows))
    return min(spacings, key=lambda minutes: (-spacings[minutes], minutes))


def run_detect(params: DetectorParams, rows: Sequence[tuple[datetime, float]],
               labels: Sequence[str] | None = None) -> list[tuple[str, float, float, int]]:
    """``(timestamp, value, score, opened)`` per input row, the bucket size taken from the rows. The timestamp is
    the row's ``labels`` entry, else its UTC time."""
    from miner.detect.zscore import detect_series

    params = replace(params, bucket_minutes=infer_bucket_minutes(rows))
    try:
        # The service refuses such a width (say, rows 7 min apart): scoring them anyway tuned for a detector that
        # cannot run on them, its hour-of-day profile learning from buckets shifted day by day.
        params.validate()
    except ValueError as exc:
        raise InputError(f"the rows are {params.bucket_minutes} min apart, a bucket size the detector refuses: "
                         f"{exc}") from None
    scores = detect_series(params, rows)
    shown = labels if labels is not None else [ts.strftime("%Y-%m-%d %H:%M:%S") for ts, _ in rows]
    return [
        (label, value, round(s.score, 4), int(s.opened))
        for label, (_, value), s in zip(shown, rows, scores, strict=True)
    ]


@main.command("detect")
@click.argument("series", type=PathParam(path_type=Path, dir_okay=False, allow_dash=True))
@click.option("-o", "--output", type=PathParam(path_type=Path, dir_okay=False),
              help="Write the CSV here instead of standard output (never SERIES itself).")
@pass_app
def detect(app: AppContext, series: Path, output: Path | None) -> None:
    """Run the detector over SERIES.csv ('-' = stdin; header timestamp,value: one bucket's count per row).

    Writes timestamp,value,score,opened: each row's timestamp and value as given, score is the z-score, opened is 1
    on the row where an incident opens. A timestamp without an offset (+05:30, Z) is UTC, and the detector's
    hour-of-day and weekday profile is read on the clock of detector.timezone (UTC by default).
    Uses the [detector] settings of --config when given, else the shipped defaults; the bucket size is
    inferred from the timestamps and must divide a day, as bucket_minutes must. Runs the service's own
    streaming detector (miner.detect.zscore.step).

    An -o file is written as a temporary file beside it (.NAME.XXXXXXXX.tmp), renamed to it once all rows are
    written (not one named by a descriptor, as /dev/stdout, /dev/stderr or /dev/fd/N are: written through it as
    opened, `>> log.csv` appended to): a run cut short (SIGINT, SIGTERM, SIGHUP: exit status 130, 143, 129; a bad
    series; a write error, a full disk) leaves the -o file as it was (or absent), never part of the rows, and says
    so on stderr.
    """
    # A closed terminal or ended session (SIGHUP) killed the run outright, its temporary -o file left behind.
    with raise_on_hangup():
        _detect(app, series, output)


def _detect(app: AppContext, series: Path, output: Path | None) -> None:
    from miner.detect.params import DetectorParams

    if str(series) == "-" and (why := stdin_unreadable()):
        raise click.BadParameter(f"standard input is {why}: give a file, or redirect or pipe the series into it",
                                 param_hint="'SERIES'")
    out, target = None, None
    if output is None:
        require_stdout()  # before the series is read and scored for nowhere
    else:
        # Opened before the series is read, as classify's: the scores written over the series (-o naming it) are
        # refused, and so is an -o that cannot be written, before the work. A dash names a file here.
        source = input_stat(sys.stdin) if str(series) == "-" else _stat(series)
        out, target = open_output(f".{os.sep}-" if str(output) == "-" else str(output), source)
    params = app.config.detector if app.config_path is not None else DetectorParams()
    try:
        text = _scores(params, series)
        if out is None:
            sys.stdout.write(text)
            return
        try:
            out.write(text)
            out.flush()
        except OSError as exc:
            raise InputError(f"cannot write {output} ({exc.strerror or exc})") from None
        if target is not None:
            target.commit(out)
    except BaseException:
        # SIGINT, SIGTERM or SIGHUP (miner.cli.stopping), a bad series, a failed write: the -o file keeps what an
        # earlier run left there, never half the scores (a full disk had left it cut short, its earlier rows gone).
        if target is not None and out is not None:
            with contextlib.suppress(OSError):  # stderr closed: the error stands without it
                click.echo(target.discard(out), err=True)
        raise


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except (OSError, ValueError):  # no series there: read_series says so
        return None


def _scores(params: DetectorParams, series: Path) -> str:
    """The CSV of the scores of ``series``."""
    # Each row keeps the timestamp it was given: one with an offset (+05:30), written back in UTC without one, read
    # as a different time and matched no input row.
    rows, labels, values = read_series(series)
    out_rows = run_detect(params, rows, labels)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["timestamp", "value", "score", "opened"])
    # And its value: written as a float's "{:g}", six digits, a count of 1234567 came out as 1.23457e+06.
    for (ts, _, score, opened), value in zip(out_rows, values, strict=True):
        writer.writerow([ts, value, f"{score:.4f}", opened])
    return buffer.getvalue()

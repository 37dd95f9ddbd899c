"""Score the detector on a sparse service: Washington power-outage tweets against the utility's outage events.

Builds one complaint count per bucket from ``--data/wa_tweets.csv`` (tweet times are UTC), runs the service's
streaming detector (:func:`miner.detect.detect_series`, as ``miner detect`` does) over the whole span at several
bucket widths and persistence settings, and scores its openings against ``washington_outages.csv`` (EIA major
disturbances; times are the utility's local clock, America/Los_Angeles).

A tweet counts as a complaint by its hand label in ``labels/train.jsonl`` (``wa-ROW`` ids) where one covers it,
else by the data set's rule-made ``outage`` column being 1 (its -1, a keyword outside a known event, is noisy and
not counted but with ``--noisy``). An event's window runs from 6 h before its start to its restoration, at least
12 h after its start (many rows give the start as the restoration); overlapping windows are one event. Per
setting: events found (an opening in the window), the delay from the event's start to the end of the opening
bucket, false openings (outside every window) and the detector's run time.

    PYTHONPATH=. .venv/bin/python bench/power_bench.py [--data FOLDER] [--labels FILE | --no-labels] [--noisy]

``--data`` defaults to ``$MINER_SHARED_DATA/power``, as the other benches read their data from $MINER_SHARED_DATA.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import describe

from miner.detect import DetectorParams, detect_series

LOCAL = ZoneInfo("America/Los_Angeles")
BEFORE = timedelta(hours=6)
MIN_AFTER = timedelta(hours=12)
WIDTHS = (60, 120, 240)
_D = DetectorParams()
# (name, persist_k, persist_n, min_count): the [detector] keys a sparse service may want changed.
SETTINGS: tuple[tuple[str, int, int, float], ...] = (
    ("defaults", _D.persist_k, _D.persist_n, _D.min_count),
    ("k=1 n=1", 1, 1, _D.min_count),
    ("k=2 n=2", 2, 2, _D.min_count),
    ("k=1 n=1 min_count=3", 1, 1, 3.0),
)


def _same_text(a: str, b: str) -> bool:
    # The labels' copies have their whitespace collapsed (no-break spaces, line breaks, trailing blanks).
    return a.split() == b.split()


def complaint_times(data: Path, labels: Path | None, noisy: bool = False
                    ) -> tuple[list[datetime], str, datetime, datetime]:
    """Complaint tweet times (UTC), a line saying what decided them, and the span of all tweets (the series covers
    it, empty buckets included)."""
    with (data / "wa_tweets.csv").open(encoding="utf-8", newline="") as fh:
        tweets = list(csv.DictReader(fh))
    hand: dict[str, int] = {}
    unmatched = 0
    if labels is not None and labels.is_file():
        by_row = {t["row"]: t for t in tweets}
        with labels.open(encoding="utf-8") as fh:
            for line in fh:
                item = json.loads(line)
                if not str(item["id"]).startswith("wa-"):
                    continue
                tweet = by_row.get(item["id"][3:])
                if tweet is None or not _same_text(tweet["text"], item["text"]):
                    unmatched += 1
                    continue
                hand[tweet["row"]] = int(item["label"])
    times = [datetime.fromisoformat(t["timestamp"]).replace(tzinfo=UTC) for t in tweets]
    rule = ("1", "-1") if noisy else ("1",)
    chosen = [ts for t, ts in zip(tweets, times, strict=True) if hand.get(t["row"], int(t["outage"] in rule)) == 1]
    by_hand = sum(hand.values())
    said = (f"{len(chosen)} complaint tweets of {len(tweets)}: {by_hand} by hand label (of {len(hand)} labelled, "
            f"{unmatched} labels matched no tweet), {len(chosen) - by_hand} by outage {'!= 0' if noisy else '== 1'} "
            "alone")
    return sorted(chosen), said, min(times), max(times)


def event_windows(data: Path) -> list[tuple[datetime, datetime, datetime]]:
    """(window start, event start, window end) in UTC, one per event, overlapping windows merged."""
    with (data / "washington_outages.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    spans = set()
    for row in rows:
        start = datetime.fromisoformat(row["Event Date and Time"]).replace(tzinfo=LOCAL).astimezone(UTC)
        restored = datetime.fromisoformat(row["Restoration Date and Time"]).replace(tzinfo=LOCAL).astimezone(UTC)
        spans.add((start - BEFORE, start, max(restored, start + MIN_AFTER)))
    merged: list[tuple[datetime, datetime, datetime]] = []
    for lo, start, hi in sorted(spans):
        if merged and lo <= merged[-1][2]:
            m_lo, m_start, m_hi = merged[-1]
            merged[-1] = (m_lo, m_start, max(m_hi, hi))
        else:
            merged.append((lo, start, hi))
    return merged


def bucket_series(times: list[datetime], first: datetime, last: datetime, minutes: int) -> list[tuple[datetime, float]]:
    """Every bucket of the span, empty ones too: a gap over max_fill_hours is read as the miner's own outage."""
    width = minutes * 60
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    counts = Counter(int((ts - epoch).total_seconds()) // width for ts in times)
    lo = int((first - epoch).total_seconds()) // width
    hi = int((last - epoch).total_seconds()) // width
    return [(epoch + timedelta(seconds=b * width), float(counts.get(b, 0))) for b in range(lo, hi + 1)]


def score(openings: list[datetime], minutes: int, windows: list[tuple[datetime, datetime, datetime]]
          ) -> tuple[list[int | None], int]:
    """Per event the delay in minutes (None: not found), and the openings outside every window."""
    width = timedelta(minutes=minutes)
    delays: list[int | None] = []
    for lo, start, hi in windows:
        inside = [b for b in openings if lo <= b < hi]
        # Known at the opening bucket's end: that is when the service could page anyone.
        delays.append(round((inside[0] + width - start).total_seconds() / 60) if inside else None)
    false = sum(1 for b in openings if not any(lo <= b < hi for lo, _, hi in windows))
    return delays, false


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = Path(os.environ.get("MINER_SHARED_DATA", "/work/shared/data"))
    parser.add_argument("--data", type=Path, default=shared / "power",
                        help="folder with wa_tweets.csv and washington_outages.csv (default: $MINER_SHARED_DATA/power)")
    parser.add_argument("--labels", type=Path, default=None,
                        help="hand labels (default: ../labels/train.jsonl beside --data, if there)")
    parser.add_argument("--no-labels", action="store_true", help="count the tweets with outage == 1 only")
    parser.add_argument("--noisy", action="store_true",
                        help="count the -1 tweets too (a keyword outside a known event): a classifier that over-calls")
    args = parser.parse_args()
    if not (args.data / "wa_tweets.csv").is_file() or not (args.data / "washington_outages.csv").is_file():
        parser.error(f"no power data in {args.data} (wa_tweets.csv and washington_outages.csv, from "
                     "EthanHenley/power-outage-detection): pass --data or set MINER_SHARED_DATA")
    labels = args.labels if args.labels is not None else args.data.parent / "labels" / "train.jsonl"
    times, said, first, last = complaint_times(args.data, None if args.no_labels else labels, args.noisy)
    windows = event_windows(args.data)
    print(f"machine: {describe()}")
    print(f"{said}; {first:%Y-%m-%d} to {last:%Y-%m-%d} (UTC); {len(windows)} utility events")
    with_posts = [sum(1 for t in times if lo <= t < hi) for lo, _, hi in windows]
    print("events with complaints in their window: "
          + ", ".join(f"{s:%Y-%m-%d} ({n})" for (_, s, _), n in zip(windows, with_posts, strict=True) if n))
    print(f"{'width':>6}  {'setting':<22}{'found':>7}{'false':>7}{'median delay (min)':>20}{'run (s)':>9}  found")
    for minutes in WIDTHS:
        rows = bucket_series(times, first, last, minutes)
        for name, k, n, min_count in SETTINGS:
            params = replace(_D, bucket_minutes=minutes, persist_k=k, persist_n=n, min_count=min_count)
            params.validate()
            t0 = time.perf_counter()
            scores = detect_series(params, rows)
            took = time.perf_counter() - t0
            openings = [ts for (ts, _), s in zip(rows, scores, strict=True) if s.opened]
            delays, false = score(openings, minutes, windows)
            found = [d for d in delays if d is not None]
            median = f"{statistics.median(found):.0f}" if found else "-"
            names = ", ".join(f"{s:%Y-%m-%d} {d:+d}" for (_, s, _), d in zip(windows, delays, strict=True)
                              if d is not None)
            print(f"{minutes:>6}  {name:<22}{f'{len(found)}/{len(windows)}':>7}{false:>7}{median:>20}{took:>9.2f}"
                  f"  {names}")
    print("(delay: minutes from the utility's event start to the end of the opening bucket; found: event start "
          "and delay)")


if __name__ == "__main__":
    main()

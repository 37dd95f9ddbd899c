"""Score `miner detect` on NAB's realTweets series with NAB's standard profile.

Runs the real CLI command in-process (``miner [--config X] detect SERIES -o OUT``) on every CSV in
``--data/realTweets``, reads back the ``opened`` column as the detections, and scores them against
``windows.json`` with :mod:`bench.nab_score`.

    PYTHONPATH=. .venv/bin/python bench/nab_bench.py [--data FOLDER] [--config feeds.toml]

``--data`` defaults to ``$MINER_SHARED_DATA/nab``, as the other benches read their data from $MINER_SHARED_DATA.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nab_score import PROFILES, SeriesScore, normalised, score_series


def run_cli(series: Path, out: Path, config: Path | None) -> tuple[list[datetime], list[bool]]:
    from miner.cli import main

    args = (["--config", str(config)] if config else []) + ["detect", str(series), "-o", str(out)]
    main.main(args=args, prog_name="miner", standalone_mode=False)
    with out.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [datetime.fromisoformat(r["timestamp"]) for r in rows], [r["opened"] == "1" for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = Path(os.environ.get("MINER_SHARED_DATA", "/work/shared/data"))
    parser.add_argument("--data", type=Path, default=shared / "nab",
                        help="folder with realTweets/*.csv and windows.json (default: $MINER_SHARED_DATA/nab)")
    parser.add_argument("--config", type=Path, default=None, help="feeds.toml whose [detector] table to use")
    args = parser.parse_args()
    if not (args.data / "windows.json").is_file() or not any((args.data / "realTweets").glob("*.csv")):
        # A traceback for a missing data set told a new user nothing about where to get it.
        parser.error(f"no NAB data in {args.data} (realTweets/*.csv and windows.json): see docs/detector.md, "
                     "'Benchmark: NAB realTweets', for where to get them; then pass --data or set MINER_SHARED_DATA")
    windows = json.loads((args.data / "windows.json").read_text(encoding="utf-8"))
    results: dict[str, dict[str, SeriesScore]] = {name: {} for name in PROFILES}
    print(f"{'series':<28}{'score':>8}{'found':>8}{'FP':>5}{'median delay (min)':>20}")
    with tempfile.TemporaryDirectory() as tmp:
        for path in sorted((args.data / "realTweets").glob("*.csv")):
            key = f"realTweets/{path.name}"
            limits = [(datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b in windows.get(key, [])]
            timestamps, detections = run_cli(path, Path(tmp) / path.name, args.config)
            for name, profile in PROFILES.items():
                results[name][key] = score_series(timestamps, detections, limits, profile)
            s = results["standard"][key]
            delay = f"{statistics.median(s.delays):.0f}" if s.delays else "-"
            print(
                f"{path.stem:<28}{normalised([s]):>8.1f}{f'{s.found}/{s.windows}':>8}{s.false_positives:>5}{delay:>20}"
            )
    std = list(results["standard"].values())
    delays = [d for s in std for d in s.delays]
    total_delay = f"{statistics.median(delays):.0f}" if delays else "-"
    print(
        f"{'TOTAL':<28}{normalised(std):>8.1f}{f'{sum(s.found for s in std)}/{sum(s.windows for s in std)}':>8}"
        f"{sum(s.false_positives for s in std):>5}{total_delay:>20}"
    )
    for name in ("reward_low_FP_rate", "reward_low_FN_rate"):
        print(f"{name}: {normalised(list(results[name].values())):.1f}")
    print("(delay: minutes from the window centre, NAB's labelled anomaly, to the first detection)")


if __name__ == "__main__":
    main()

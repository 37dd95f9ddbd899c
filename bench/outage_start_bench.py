"""A service whose history begins inside an outage: how long until the detector opens the next outages.

Synthetic Poisson counts per 5-minute bucket around a daily cycle (``--mean`` 10, +-40 % over the day as
``--amplitude`` 0.4 gives, peak at 18:00 UTC). History starts ``--into`` hours into a 5x outage of ``--length`` hours (a
service added, or miner started, because it was down; ``--into`` = ``--length``: a start just after it, the control),
the rest of the outage follows, then normal traffic for ``--days`` days. A one-hour 5x outage is tried on each day
d = 1.. after the initial outage's end (12:00 UTC) at 14:00 UTC, each on its own (the detector state is forked before
it, so one tried outage never teaches the next): the first day on which one opens, and how many of the days do. False
openings: the same series without the tried outages, counted after the initial outage's end (its own opening, if any,
is the service's outage and not counted).

Services without outages count the openings of their first ``--days`` days (``--day-night`` seeds): a day-and-night
one (2 complaints a bucket from 21:00 to 8:00, 30 by day) and the daily cycle above, started at each hour, and a
quiet-weekend one (40 on weekdays, 8 at weekends) started at midnight and noon of each day.

    PYTHONPATH=. .venv/bin/python bench/outage_start_bench.py [--seeds 5] [--days 28] [--amplitude 0.4]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import describe

from miner.detect import DetectorParams
from miner.detect.zscore import DetectorState, step

STEP = timedelta(minutes=5)
PER_HOUR = 12
P = DetectorParams()


def cycle(mean: float, amplitude: float = 0.4) -> Callable[[datetime], float]:
    def rate(t: datetime) -> float:
        return mean * (1.0 + amplitude * math.sin(2 * math.pi * (t.hour + t.minute / 60 - 12) / 24))
    return rate


def day_night(t: datetime) -> float:
    return 2.0 if t.hour >= 21 or t.hour < 8 else 30.0


def weekend(t: datetime) -> float:
    return 8.0 if t.weekday() >= 5 else 40.0


def run(state: DetectorState | None, start: datetime, counts: list[float]) -> tuple[DetectorState | None, list[int]]:
    """Step ``counts`` from ``start``; the indexes of the buckets where an incident opened."""
    opened = []
    for i, count in enumerate(counts):
        state, score = step(P, state, start + i * STEP, count)
        if score.opened:
            opened.append(i)
    return state, opened


def scenario(
    seed: int, into: float, length: float, days: int, rate: Callable[[datetime], float]
) -> tuple[int | None, int, int]:
    """(first day a tried outage opens, days it opens, false openings) for one start."""
    rng = np.random.default_rng(seed)
    end = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)  # the initial outage's end, a Monday noon
    start = end - timedelta(hours=length - into)
    total = int(((end - start) + timedelta(days=days + 1)) / STEP)
    times = [start + i * STEP for i in range(total)]
    counts = [float(rng.poisson(rate(t) * (5.0 if t < end else 1.0))) for t in times]
    # The tried outages, each 5x for an hour at 14:00 on day d after the end, with the same noise.
    tried = [int((end.replace(hour=14) + timedelta(days=d) - start) / STEP) for d in range(1, days + 1)]
    state: DetectorState | None = None
    done = 0
    found: list[int] = []
    false = 0
    for d, at in enumerate(tried, 1):
        state, opened = run(state, times[done], counts[done:at])
        false += sum(1 for i in opened if times[done + i] >= end)
        done = at
        outage = [float(rng.poisson(5.0 * rate(times[at + i]))) for i in range(PER_HOUR)]
        _, tried_open = run(state, times[at], outage)
        if tried_open:
            found.append(d)
    _, opened = run(state, times[done], counts[done:])
    false += sum(1 for i in opened if times[done + i] >= end)
    return (found[0] if found else None), len(found), false


def pattern_openings(seed: int, start: datetime, days: int, rate: Callable[[datetime], float]) -> int:
    rng = np.random.default_rng(seed)
    times = [start + i * STEP for i in range(days * 288)]
    counts = [float(rng.poisson(rate(t))) for t in times]
    return len(run(None, start, counts)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--mean", type=float, default=10.0)
    parser.add_argument("--amplitude", type=float, default=0.4, help="of the daily cycle, a fraction of the mean")
    parser.add_argument("--into", type=float, nargs="*", default=[1.0, 3.0, 6.0, 12.0, 24.0])
    parser.add_argument("--length", type=float, nargs="*", default=[12.0, 24.0])
    parser.add_argument("--day-night", type=int, default=3, help="seeds of the day-and-night starts (0: none)")
    args = parser.parse_args()
    print(describe())
    began = time.perf_counter()
    print(f"{'outage h':>9}{'start into':>11}  first day found per seed (days found of {args.days}) / false openings")
    for length in args.length:
        for into in args.into:
            if into > length:
                continue
            cells = []
            for seed in range(args.seeds):
                first, found, false = scenario(seed, into, length, args.days, cycle(args.mean, args.amplitude))
                cells.append(f"{first if first is not None else '-'}({found})/{false}")
            print(f"{length:>9g}{into:>11g}  " + "  ".join(cells))
    if args.day_night:
        print(f"day-and-night service, openings in its first {args.days} days per start hour "
              f"(sum over {args.day_night} seeds):")
        monday = datetime(2025, 3, 3, tzinfo=UTC)
        per_hour = {hour: sum(pattern_openings(seed, monday.replace(hour=hour), args.days, day_night)
                              for seed in range(args.day_night)) for hour in range(24)}
        print("  " + " ".join(f"{h}:{n}" for h, n in per_hour.items()) + f"  total {sum(per_hour.values())}")
        print(f"the daily cycle above, no outage, openings in its first {args.days} days per start hour "
              f"(sum over {args.day_night} seeds):")
        rate = cycle(args.mean, args.amplitude)
        per_hour = {hour: sum(pattern_openings(seed, monday.replace(hour=hour), args.days, rate)
                              for seed in range(args.day_night)) for hour in range(24)}
        print("  " + " ".join(f"{h}:{n}" for h, n in per_hour.items()) + f"  total {sum(per_hour.values())}")
        print(f"quiet-weekend service (40 a bucket on weekdays, 8 at weekends), openings in its first {args.days} days "
              f"per start (sum over {args.day_night} seeds):")
        per_start = {f"{('Mo', 'Tu', 'We', 'Th', 'Fr', 'Sa', 'Su')[day]}{hour:02}": sum(
            pattern_openings(seed, monday + timedelta(days=day, hours=hour), args.days, weekend)
            for seed in range(args.day_night)) for day in range(7) for hour in (0, 12)}
        print("  " + " ".join(f"{k}:{n}" for k, n in per_start.items()) + f"  total {sum(per_start.values())}")
    print(f"{time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()

"""What the history of failed polls (store/poll_failures.py) adds to a poll's write: each kind of poll stored through
the Store API into a real store file, with the history and without it (its two writes made to do nothing), in
alternating rounds; the median of the rounds' mean per poll.

    .venv/bin/python bench/poll_failures_bench.py [--polls 2000] [--rounds 5]

Kinds: a failure of a source under its 1,000 rows (four sources in turn), one of a source at them (every hundredth
poll then cuts its oldest), a success after a success (the common poll: a 304), and a source that fails and recovers
in turn (each success records a recovery).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import describe  # noqa: E402

from miner.config import parse_config  # noqa: E402
from miner.records import FetchResult, SourceState  # noqa: E402
from miner.store import Store, poll_failures, posts, sources  # noqa: E402

T0 = datetime(2026, 12, 6, tzinfo=UTC)
NOT_MODIFIED = FetchResult(posts=[], state=SourceState(), not_modified=True)


def _timed(polls: int, one: Callable[[int], None]) -> float:
    started = time.perf_counter()
    for i in range(polls):
        one(i)
    return (time.perf_counter() - started) / polls


def one_round(polls: int, history: bool) -> dict[str, float]:
    sources.log_failure = poll_failures.log_failure if history else lambda *args: None  # type: ignore[assignment]
    posts.log_recovery = poll_failures.log_recovery if history else lambda *args: None  # type: ignore[assignment]
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "bench.sqlite")
        store.sync_sources(parse_config("".join(f'[[sources]]\nname = "{n}"\ntype = "rss"\nurl = "https://{n}.example/"\n'
                                                for n in ("down", "up", "flaky", "a", "b", "c", "d"))).sources)
        with store.database.transaction():  # the failing source's first 1,000 rows: the polls timed are past them
            for i in range(poll_failures.PER_SOURCE):
                at = T0 - timedelta(days=1, minutes=-i)
                store.record_poll_failure("down", "HTTP 503 from down.example", at, at, http_status=503)

        def under_cap(i: int) -> None:
            at = T0 + timedelta(minutes=i)
            store.record_poll_failure("abcd"[i % 4], "HTTP 500 from a.example", at, at + timedelta(minutes=2),
                                      http_status=500)

        def failure(i: int) -> None:
            at = T0 + timedelta(minutes=i)
            store.record_poll_failure("down", "HTTP 503 from down.example (retry after 120 s)", at,
                                      at + timedelta(minutes=2), http_status=503, retry_after=120.0)

        def success(i: int) -> None:
            at = T0 + timedelta(minutes=i)
            store.save_fetch("up", NOT_MODIFIED, at, at + timedelta(minutes=5))

        def flapping(i: int) -> None:
            at = T0 + timedelta(minutes=i)
            if i % 2:
                store.save_fetch("flaky", NOT_MODIFIED, at, at + timedelta(minutes=5))
            else:
                store.record_poll_failure("flaky", "connection refused by flaky.example:443", at, at)

        timings = {"failure, under the cap": _timed(polls, under_cap),
                   "failure, at the cap": _timed(polls, failure), "success": _timed(polls, success),
                   "fail and recover in turn": _timed(polls, flapping)}
        store.close()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if args.polls > 4 * poll_failures.PER_SOURCE:
        parser.error(f"--polls: at most {4 * poll_failures.PER_SOURCE}, or the sources under the cap reach it")
    print(describe())
    runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for _ in range(args.rounds):
        for history in (False, True):
            runs[history].append(one_round(args.polls, history))
    for kind in runs[False][0]:
        without = statistics.median(r[kind] for r in runs[False]) * 1e6
        with_it = statistics.median(r[kind] for r in runs[True]) * 1e6
        print(f"{kind}: {without:.0f} us a poll without the history, {with_it:.0f} us with it "
              f"(+{with_it - without:.0f} us)")


if __name__ == "__main__":
    main()

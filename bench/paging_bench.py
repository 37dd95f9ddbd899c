"""Paging through /api/v1/incidents on a store of many incidents: the first page and a deep one, with and without the
index of opening times (migration 0032), and the query plan of each.

The store holds ``--incidents`` resolved incidents of ``--services`` services over ``--years`` years up to now (and
one open per ten services), written in bulk as the detector would have left them. Each case is timed through
ReadApi.answer and the JSON of its body, as the HTTP endpoint answers: the first page (limit=1000, since the first
incident) and the middle one of that list (followed by its ``next`` links from the first), the same of one year
(``since=YEAR&until=YEAR+1``) and of one service's (limit=100), and the default answer. No ANALYZE: miner runs none,
so the planner has no statistics, as on a real store.

    .venv/bin/python bench/paging_bench.py [--incidents 100000 --services 300 --years 3] [--keep /tmp/paging.sqlite]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from miner.config import load_config
from miner.read_api import ReadApi
from miner.store import Store
from miner.timeutil import iso

INDEX = "incidents_opened"
LIMIT = 1000


def build(path: Path, n: int, services: list[str], years: int, now: datetime, seed: int = 7) -> None:
    rng = random.Random(seed)
    Store.open(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    span = years * 365 * 86400
    conn.execute("BEGIN")
    rows = []
    for i in range(n):
        opened = now - timedelta(seconds=span * (n - i) / n + rng.uniform(0, 600))
        resolved = opened + timedelta(minutes=rng.randrange(30, 240))
        rows.append((services[rng.randrange(len(services))], iso(opened), iso(resolved), iso(resolved)))
    conn.executemany("INSERT INTO incidents (service, status, opened_at, updated_at, resolved_at, peak_complaints, "
                     "peak_score, baseline, total_complaints, symptoms, sample_post_ids) VALUES "
                     "(?, 'resolved', ?, ?, ?, 40, 9.5, 2.0, 200, '{\"connectivity\": 150}', '[]')", rows)
    conn.executemany("INSERT INTO incidents (service, status, opened_at, updated_at, peak_complaints, peak_score, "
                     "baseline, total_complaints) VALUES (?, 'open', ?, ?, 10, 4.0, 1.0, 10)",
                     [(s, iso(now - timedelta(days=d)), iso(now)) for d, s in enumerate(services[::10])])
    conn.execute("COMMIT")
    conn.close()


def timed(call: Callable[[], object], runs: int = 5) -> str:
    took = []
    for _ in range(runs):
        t = time.perf_counter()
        call()
        took.append(time.perf_counter() - t)
    return f"{took[0] * 1000:8.1f} ms first, {statistics.median(took) * 1000:7.1f} ms median of {runs}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--services", type=int, default=300)
    parser.add_argument("--years", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None, help="build the store here and keep it")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="paging-bench-"))
    try:
        now = datetime.now(UTC).replace(microsecond=0)
        services = [f"Service {i:03d}" for i in range(args.services)]
        cfg = work / "feeds.toml"
        db = args.keep or work / "paging.sqlite"
        cfg.write_text(f'[store]\npath = "{db}"\n\n' + "".join(f'[[services]]\nname = "{s}"\n\n' for s in services))
        t = time.perf_counter()
        build(db, args.incidents, services, args.years, now)
        print(f"built {args.incidents:,} incidents in {time.perf_counter() - t:.1f} s")
        config = load_config(cfg)
        store = Store.open(db)
        api = ReadApi(config, lambda: store, lambda: None, lambda: now)

        def page(query: str) -> dict[str, object]:
            answer = api.answer("/api/v1/incidents", query)
            assert answer is not None and answer[0] == 200, answer
            json.dumps(answer[1])
            return answer[1]

        def middle_query(query: str) -> tuple[str, int]:
            """The query of the middle page of the list that ``query`` starts, followed by next links, and how many
            pages it has (the last is short: a full page deep in the list is the one to time)."""
            queries = [query]
            while (following := page(queries[-1])["next"]) is not None:
                queries.append(urlsplit(str(following)).query)
            return queries[len(queries) // 2], len(queries)

        year = now.year - 1
        first_all = f"limit={LIMIT}&since=0001"
        first_year = f"limit={LIMIT}&since={year}&until={year + 1}"
        conn = store.database.conn
        for indexed in (False, True):
            conn.execute(f"DROP INDEX IF EXISTS {INDEX}")
            if indexed:
                t = time.perf_counter()
                conn.execute(f"CREATE INDEX {INDEX} ON incidents (opened_at)")
                print(f"\nindex created (as migration 0032 does) in {time.perf_counter() - t:.2f} s")
            print(f"\n{'with' if indexed else 'without'} the index on incidents (opened_at):")
            t = time.perf_counter()
            deep_all, n_all = middle_query(first_all)
            print(f"  followed all {n_all} pages in {time.perf_counter() - t:.1f} s")
            deep_year, n_year = middle_query(first_year)
            one = f"limit=100&since=0001&service={services[0].replace(' ', '+')}"
            deep_one, n_one = middle_query(one)
            for name, query in ((f"page 1 of {n_all}", first_all), (f"page {n_all // 2 + 1} of {n_all}", deep_all),
                                (f"{year}: page 1 of {n_year}", first_year),
                                (f"{year}: page {n_year // 2 + 1} of {n_year}", deep_year),
                                (f"one service: page 1 of {n_one}", one),
                                (f"one service: page {n_one // 2 + 1}", deep_one),
                                ("default (7 days, limit 100)", "")):
                print(f"  {name:30} {timed(lambda q=query: page(q))}")
                statements: list[str] = []
                conn.set_trace_callback(statements.append)
                page(query)
                conn.set_trace_callback(None)
                sql = next(s for s in statements if "ORDER BY opened_at DESC" in s)
                print("    plan:", " | ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}")))
        store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

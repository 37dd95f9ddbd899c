"""Paging through /api/v1/incidents on a store of many incidents: the first page and a deep one, of all incidents and
of one service's, and of the open ones, under the index sets the store had before migration 0032 (incidents by opening
time), before 0035 (incidents by service and opening time), before 0037 (the open incidents by opening time) and since,
in turn, with the query plan of each.

The store holds ``--incidents`` resolved incidents of ``--services`` services over ``--years`` years up to now
(``--busy`` of them the first service's, the rest spread over the others), and one open per ten services, written in
bulk as the detector would have left them. Each case is timed through ReadApi.answer and the JSON of its body, as the
HTTP endpoint answers, and its query alone: the first page (limit=1000, since the first incident) and the middle one
of that list (followed by its ``next`` links from the first), the same of one year (``since=YEAR&until=YEAR+1``), of
the busy service's (all, resolved; open; the default week; a year) and of another's (limit=100), the open incidents
of every service (``status=open``, as on-call dashboards poll it, and all of them since the first), and the default
answer; then the store's read of every open incident that the detector, the alerts planner and each metrics scrape
make (``Store.incidents(status="open")``). The index sets take turns, ``--rounds`` times, so that a change in the box's
load falls on each. No ANALYZE: miner runs none, so the planner has no statistics, as on a real store.

    .venv/bin/python bench/paging_bench.py [--incidents 100000 --services 300 --years 3 --busy 0.2] [--rounds 3]
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

from bench.machine import describe
from miner.config import load_config
from miner.read_api import ReadApi
from miner.store import Store
from miner.store.migrations import (
    INCIDENTS_BY_OPENING,
    INCIDENTS_BY_SERVICE,
    OPEN_INCIDENTS,
    Migration,
    apply_migrations,
)
from miner.store.sql_script import statements
from miner.timeutil import iso

LIMIT = 1000
OPEN_READ = 'store.incidents(status="open")'
# Its statement as it runs: SQLite prepares it again once 'open' is bound, and plans it with the value.
OPEN_PLAN = "EXPLAIN QUERY PLAN SELECT * FROM incidents WHERE 1 = 1 AND status = 'open' ORDER BY opened_at, id"
# The indexes of incidents that the sets below differ in (0035's as it makes them), and each set as the store had it:
# before 0032, before 0035, with 0035's index of opening times by service alone (the old (service, status) kept),
# before 0037 and since.
INDEXES = {"incidents_service": "CREATE INDEX incidents_service ON incidents (service, status)",
           "incidents_opened": INCIDENTS_BY_OPENING.sql,
           **{s.split()[2]: s for s in statements(INCIDENTS_BY_SERVICE.sql) if s.strip().startswith("CREATE")},
           "incidents_open": OPEN_INCIDENTS.sql}
VARIANTS = {"before 0032": ["incidents_service"],
            "before 0035": ["incidents_service", "incidents_opened"],
            "0035 but (service, status)": ["incidents_service", "incidents_opened", "incidents_service_opened"],
            "0035": ["incidents_opened", "incidents_service_opened", "incidents_service_status"],
            "0037": ["incidents_opened", "incidents_service_opened", "incidents_service_status", "incidents_open"]}


def setup(conn: sqlite3.Connection, names: list[str]) -> float:
    """Leave incidents with these of INDEXES alone; the seconds their making took."""
    for name in INDEXES:
        conn.execute(f"DROP INDEX IF EXISTS {name}")
    t = time.perf_counter()
    for name in names:
        conn.execute(INDEXES[name])
    return time.perf_counter() - t


def migrate(path: Path, migration: Migration, before: str) -> tuple[float, int]:
    """The seconds ``migration`` takes on the store at ``path``, its indexes made again as in ``before`` (and the file
    vacuumed), and the bytes the file grew by."""
    conn = sqlite3.connect(path, isolation_level=None)
    setup(conn, VARIANTS[before])
    conn.execute("DELETE FROM schema_migrations WHERE id = ?", (migration.id,))
    conn.execute("VACUUM")
    size = path.stat().st_size
    t = time.perf_counter()
    apply_migrations(conn, [migration])
    took = time.perf_counter() - t
    conn.close()
    return took, path.stat().st_size - size


def build(path: Path, n: int, services: list[str], years: int, now: datetime, busy: float, seed: int = 7) -> None:
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
        service = services[0] if rng.random() < busy else services[rng.randrange(1, len(services))]
        rows.append((service, iso(opened), iso(resolved), iso(resolved)))
    conn.executemany("INSERT INTO incidents (service, status, opened_at, updated_at, resolved_at, peak_complaints, "
                     "peak_score, baseline, total_complaints, symptoms, sample_post_ids) VALUES "
                     "(?, 'resolved', ?, ?, ?, 40, 9.5, 2.0, 200, '{\"connectivity\": 150}', '[]')", rows)
    conn.executemany("INSERT INTO incidents (service, status, opened_at, updated_at, peak_complaints, peak_score, "
                     "baseline, total_complaints) VALUES (?, 'open', ?, ?, 10, 4.0, 1.0, 10)",
                     [(s, iso(now - timedelta(days=d)), iso(now)) for d, s in enumerate(services[::10])])
    conn.execute("COMMIT")
    conn.close()


def timed(call: Callable[[], object], runs: int) -> list[float]:
    took = []
    for _ in range(runs):
        t = time.perf_counter()
        call()
        took.append(time.perf_counter() - t)
    return took


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:7.1f} ms ({min(values) * 1000:.1f}-{max(values) * 1000:.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--services", type=int, default=300)
    parser.add_argument("--years", type=int, default=3)
    parser.add_argument("--busy", type=float, default=0.2, help="the share of incidents of the first service")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over the index sets, in turn")
    parser.add_argument("--runs", type=int, default=5, help="runs of each case in each round")
    parser.add_argument("--keep", type=Path, default=None, help="build the store here and keep it")
    args = parser.parse_args()
    print(describe())
    work = Path(tempfile.mkdtemp(prefix="paging-bench-"))
    try:
        now = datetime.now(UTC).replace(microsecond=0)
        services = [f"Service {i:03d}" for i in range(args.services)]
        cfg = work / "feeds.toml"
        db = args.keep or work / "paging.sqlite"
        cfg.write_text(f'[store]\npath = "{db}"\n\n' + "".join(f'[[services]]\nname = "{s}"\n\n' for s in services))
        t = time.perf_counter()
        build(db, args.incidents, services, args.years, now, args.busy)
        print(f"built {args.incidents:,} incidents in {time.perf_counter() - t:.1f} s")
        for migration, before in ((INCIDENTS_BY_SERVICE, "before 0035"), (OPEN_INCIDENTS, "0035")):
            took, grew = migrate(db, migration, before)
            print(f"migration {migration.id} on them: {took:.2f} s; the store, {db.stat().st_size / 1e6:.1f} MB after "
                  f"it, grew by {grew / 1e3:,.0f} kB")
        config = load_config(cfg)
        store = Store.open(db)
        api = ReadApi(config, lambda: store, lambda: None, lambda: now)
        conn = store.database.conn
        busy = conn.execute("SELECT count(*) FROM incidents WHERE service = ?", (services[0],)).fetchone()[0]
        print(f"{services[0]}: {busy:,} of them, {services[1]}: "
              f"{conn.execute('SELECT count(*) FROM incidents WHERE service = ?', (services[1],)).fetchone()[0]:,}")

        def page(query: str) -> dict[str, object]:
            answer = api.answer("/api/v1/incidents", query)
            assert answer is not None and answer[0] == 200, answer
            json.dumps(answer[1])
            return answer[1]

        def pages(query: str) -> list[str]:
            """The queries of every page of the list that ``query`` starts, followed by next links."""
            queries = [query]
            while (following := page(queries[-1])["next"]) is not None:
                queries.append(urlsplit(str(following)).query)
            return queries

        def first_and_middle(name: str, query: str) -> list[tuple[str, str]]:
            # The last page is short: a full page deep in the list is the one to time.
            queries = pages(query)
            return [(f"{name}: page 1 of {len(queries)}", query),
                    (f"{name}: page {len(queries) // 2 + 1}", queries[len(queries) // 2])]

        year = now.year - 1
        one, other = (s.replace(" ", "+") for s in services[:2])
        setup(conn, list(INDEXES))  # the cursors are the same under every index set: followed at the fastest
        cases = [*first_and_middle("all", f"limit={LIMIT}&since=0001"),
                 *first_and_middle(str(year), f"limit={LIMIT}&since={year}&until={year + 1}"),
                 *first_and_middle("busy service", f"limit={LIMIT}&since=0001&service={one}"),
                 *first_and_middle("busy, resolved", f"limit={LIMIT}&since=0001&service={one}&status=resolved"),
                 ("busy, open", f"limit={LIMIT}&since=0001&service={one}&status=open"),
                 ("busy, default (7 days)", f"service={one}"),
                 ("busy, a year", f"limit={LIMIT}&since={year}&until={year + 1}&service={one}"),
                 ("another service: page 1", f"limit=100&since=0001&service={other}"),
                 ("open, every service", "status=open"),
                 ("open, every service, ever", f"limit={LIMIT}&since=0001&status=open"),
                 ("default (7 days, limit 100)", "")]
        took: dict[tuple[str, str], list[float]] = {}
        queried: dict[tuple[str, str], list[float]] = {}
        for round_ in range(args.rounds):
            for variant, ddl in VARIANTS.items():
                created = setup(conn, ddl)
                if round_ == 0:
                    print(f"\n{variant}: indexes made in {created:.2f} s")
                for name, query in cases:
                    took.setdefault((variant, name), []).extend(timed(lambda q=query: page(q), args.runs))
                    statements: list[str] = []
                    conn.set_trace_callback(statements.append)
                    page(query)
                    conn.set_trace_callback(None)
                    sql = next(s for s in statements if "ORDER BY opened_at DESC" in s)
                    queried.setdefault((variant, name), []).extend(
                        timed(lambda s=sql: conn.execute(s).fetchall(), args.runs))
                    if round_ == 0:
                        plan = " | ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
                        print(f"  {name:28} {plan}")
                took.setdefault((variant, OPEN_READ), []).extend(
                    timed(lambda: store.incidents(status="open"), args.runs))
                if round_ == 0:
                    print(f"  {OPEN_READ:28} {' | '.join(r[3] for r in conn.execute(OPEN_PLAN))}")
        print(f"\nmedian (min-max) of {args.rounds} rounds of {args.runs} runs, the index sets in turn; "
              "the answer, then its query alone")
        for name, _ in cases:
            print(f"  {name}")
            for variant in VARIANTS:
                print(f"    {variant:26} {ms(took[variant, name])}  query {ms(queried[variant, name])}")
        print(f"  {OPEN_READ}")
        for variant in VARIANTS:
            print(f"    {variant:26} {ms(took[variant, OPEN_READ])}")
        print(describe())
        store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""What a digest rendered as of an earlier time costs: its scheduled time's, sent late or retried, when the incidents
it shows went on after that time (their figures then are counted again from the buckets and posts, in one read for
the digest), against the same digest rendered now (the incidents' rows read as they are).

The store is written in bulk: ``--services`` services with a post every 10 minutes each over ``--days`` days (a third
of them complaints), and ``--outages`` of them in an outage (40 complaints per 5-minute bucket, each from its own
author, over four symptoms) open from three hours before the digest's time to 50 minutes after it, resolved then; the
others had an incident the day before. Run with the code to measure on PYTHONPATH:

    PYTHONPATH=. .venv/bin/python bench/digest_as_of_bench.py [--services 300 --outages 60 --days 3] [--keep PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from miner.alerts.render import render_digest
from miner.alerts.settings import AlertSettings, RouteSettings
from miner.store import Store
from miner.timeutil import iso

BUCKET = timedelta(minutes=5)
END = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)  # when the outages resolved, 10 minutes before now
AS_OF = END - timedelta(hours=1)  # the digest's time
SYMPTOMS = ("connectivity", "login", "messaging", "app")


def build(path: Path, services: int, outages: int, days: int) -> None:
    t0 = time.monotonic()
    store = Store.open(path)
    names = [f"Service {i:03d}" for i in range(services)]
    start = END - timedelta(days=days)
    opened = AS_OF - timedelta(hours=3)
    posts: list[tuple[Any, ...]] = []
    matched: list[tuple[int, str]] = []
    verdicts: list[tuple[Any, ...]] = []

    def post(service: str, at: datetime, author: str, outage: bool, symptom: str | None) -> None:
        pid = len(posts) + 1
        posts.append((pid, "bench", f"p{pid}", f"{service} post {pid}", iso(at), iso(at), author))
        matched.append((pid, service))
        verdicts.append((pid, "bench-model", int(outage), 0.9 if outage else 0.1, symptom, iso(at)))

    for s, name in enumerate(names):
        at = start + timedelta(seconds=37 * s)
        n = 0
        while at < END:
            post(name, at, f"a{s}-{n % 50}", n % 3 == 0, SYMPTOMS[n % 4] if n % 3 == 0 else None)
            at += timedelta(minutes=10)
            n += 1
    for s in range(outages):
        at, n = opened - BUCKET, 0
        while at < END:
            post(names[s], at, f"o{s}-{n}", True, SYMPTOMS[(n // 7) % 4])
            at += BUCKET / 40
            n += 1
    with store.database.transaction() as conn:
        conn.executemany("INSERT INTO posts (id, source, external_id, text, created_at, fetched_at, author_hash) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?)", posts)
        conn.executemany("INSERT INTO post_services (post_id, service) VALUES (?, ?)", matched)
        conn.executemany("INSERT INTO classifications (post_id, model_version, outage, score, symptom, classified_at) "
                         "VALUES (?, ?, ?, ?, ?, ?)", verdicts)
    store.refresh_buckets(start, END, BUCKET)
    store.set_bucket_minutes(5)
    with store.database.transaction() as conn:
        conn.execute("UPDATE buckets SET score = complaints / 4.0 - 0.5, baseline = 0.6, upper = 4.0")
        for s, name in enumerate(names):
            if s < outages:
                spell, resolved = (opened, END), END
            else:
                spell = (AS_OF - timedelta(hours=20), AS_OF - timedelta(hours=19))
                resolved = spell[1]
            fig = conn.execute("SELECT max(complaints), max(score), sum(complaints) FROM buckets WHERE service = ? "
                               "AND bucket_start >= ? AND bucket_start < ?",
                               (name, iso(spell[0] - BUCKET), iso(spell[1]))).fetchone()
            iid = conn.execute(
                "INSERT INTO incidents (service, status, opened_at, updated_at, resolved_at, peak_complaints, "
                "peak_score, baseline, total_complaints, symptoms, bucket_minutes) "
                "VALUES (?, 'resolved', ?, ?, ?, ?, ?, 0.6, ?, ?, 5)",
                (name, iso(spell[0]), iso(resolved), iso(resolved), fig[0] or 0, fig[1] or 0, fig[2] or 0,
                 json.dumps({"connectivity": fig[2] or 0}))).lastrowid
            for kind, at in (("open", spell[0]), ("resolve", resolved)):
                conn.execute("INSERT INTO incident_events (incident_id, kind, at, details) VALUES (?, ?, ?, '{}')",
                             (iid, kind, iso(at)))
    store.close()
    print(f"built {len(posts):,} posts, {services} services, {outages} outages in {time.monotonic() - t0:.0f} s")


def timed(label: str, fn: Callable[[], Any], runs: int) -> Any:
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    print(f"  {label}: median {statistics.median(times) * 1000:,.0f} ms (min {min(times) * 1000:,.0f}, {runs} runs)")
    return out


def measure(path: Path, runs: int) -> None:
    store = Store.open(path)
    cfg = AlertSettings(from_addr="miner <miner@example.org>",
                        routes=(RouteSettings(name="oncall", email=("oncall@example.org",)),))
    since = AS_OF - timedelta(days=1)
    for label, at in (("digest as of its time, the outages gone on since", AS_OF),
                      ("digest as of now, every row as it is", END + timedelta(minutes=10))):
        d = timed(label, lambda at=at: render_digest(store, cfg, at, "oncall", since=since), runs)
        print(f"    subject: {d.subject}; first: {d.incidents[0].service} {d.incidents[0].total_complaints} "
              f"complaints, peak {d.incidents[0].peak_complaints}")
    try:
        from miner.alerts.digest_content import digest_incidents
    except ImportError:  # before the figures as of a time: its incidents were content's
        from miner.alerts.content import digest_incidents  # type: ignore[attr-defined,no-redef]
    route = cfg.routes[0]
    for label, at in (("its incidents only (no charts, no HTML), as of its time", AS_OF),
                      ("its incidents only, as of now", END + timedelta(minutes=10))):
        timed(label, lambda at=at: digest_incidents(store, cfg, route.matches, since, at, limit=50), runs)
    store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=300)
    ap.add_argument("--outages", type=int, default=60)
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--keep", type=Path, help="build the store here and keep it")
    ap.add_argument("--reuse", type=Path, help="measure on a store built earlier with --keep")
    args = ap.parse_args()
    if args.reuse:
        measure(args.reuse, args.runs)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "digest.sqlite"
        build(path, args.services, args.outages, args.days)
        measure(path, args.runs)


if __name__ == "__main__":
    main()

"""A store after months of a large deployment, built in bulk, and the per-run cost of each periodic job on it.

store_bench.py builds its store through the pipeline, hour by hour, which takes too long for hundreds of services.
This one writes the rows as the service would have left them, in bulk: posts of the last ``--post-days`` (real
texts from shared/data, repeated with shifted times; the retention keeps no older ones), their services and
verdicts, a bucket per service per 5 minutes for ``--bucket-days`` (the detector scores every bucket, empty ones
too, and buckets are kept for good), detector states learnt over the last week, resolved incidents with their
events and notifications, the same notices on more routes grouped by service (the outbox that group_interval reads).
Then it times the read API's answers, the status board's index and the store reads behind them, one run of each job of
the service, and the read commands, and lists the query plans that scan a large table.

    .venv/bin/python bench/scale_bench.py [--posts 2500000 --services 300] [--keep /tmp/scale.sqlite]
    .venv/bin/python bench/scale_bench.py --reuse /tmp/scale.sqlite      # measure again on a store kept earlier
    .venv/bin/python bench/scale_bench.py --reuse /tmp/scale.sqlite --prune-buckets 60   # the bucket prune only
    .venv/bin/python bench/scale_bench.py --reuse /tmp/scale.sqlite --reads   # the read API, board and store reads only
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import describe  # noqa: E402
from store_bench import KEY, SERVICES, StoredVerdicts, cli, insert_bucket_grid, real_texts  # noqa: E402

from miner.collectors.normalise import hash_author  # noqa: E402
from miner.config import Config, parse_config  # noqa: E402
from miner.detect import step  # noqa: E402
from miner.http_api import Endpoints, HttpApi  # noqa: E402
from miner.pipeline import Pipeline  # noqa: E402
from miner.read_api import ReadApi  # noqa: E402
from miner.records import FetchResult, Post, SourceState  # noqa: E402
from miner.source_settings import ServiceConfig  # noqa: E402
from miner.status_board import StatusBoard  # noqa: E402
from miner.store import Store  # noqa: E402
from miner.store.group_interval import held_until, waiting_batch  # noqa: E402
from miner.store.maintenance import BUCKET_PRUNE_BATCH  # noqa: E402
from miner.timeutil import floor_time, iso, parse_iso  # noqa: E402

BUCKET = timedelta(minutes=5)
BIG_TABLES = ("posts", "post_services", "classifications", "buckets", "incident_events", "outbox", "deliveries")
# More routes that get every incident's alert and resolve notice, by two channels each, grouped by service
# (group_by = "service"): 8 x 5,400 rows beside the oncall route's, as group_interval's lookups read them.
GROUP_ROUTES = tuple(f"team{i}" for i in range(4))
GROUP_CHANNELS = ("email", "webhook")
# Services configured that no post names (the read bench adds them to a copy): every bucket of theirs is empty, so a
# read that looks for one with posts finds none. The first is named by the oldest post only (a service quiet since).
QUIET = tuple(f"Quiet {i:02d}" for i in range(30))


def service_names(n: int) -> list[str]:
    return [*SERVICES, *(f"Service {i:03d}" for i in range(len(SERVICES), n))][:n]


def config_text(n_services: int, n_sources: int) -> str:
    parts = [f'[[services]]\nname = "{name}"\n' for name in service_names(n_services)]
    for i in range(n_sources):
        parts.append(f'[[sources]]\nname = "src{i:03d}"\ntype = "rss"\nurl = "https://feeds.example.org/{i}.rss"\n')
    parts.append('[alerts]\nfrom_addr = "bench <bench@example.org>"\n\n[[alerts.routes]]\nname = "oncall"\n'
                 'email = ["oncall@example.org"]\ndigest = "0 8 * * *"\n')
    return "\n".join(parts)


def build(path: Path, config: Config, n_posts: int, post_days: int, bucket_days: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    outage, other, _ = real_texts()
    services = [s.name for s in config.services]
    sources = [s.name for s in config.sources]
    weights = [1.0 / (i + 1) ** 1.1 for i in range(len(services))]
    authors = [hash_author(f"user{i}", KEY) for i in range(50_000)]
    end = floor_time(datetime.now(UTC), BUCKET)
    store = Store.open(path)
    store.sync_sources(list(config.sources))
    store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -400000")
    t0 = time.monotonic()
    span = post_days * 86400
    start = end - timedelta(seconds=span)
    first_ts = int(start.timestamp())
    chosen = rng.choices(range(len(services)), weights, k=n_posts)
    conn.execute("BEGIN")

    def posts() -> Iterator[tuple[Any, ...]]:
        for i in range(n_posts):
            at = datetime.fromtimestamp(first_ts + i * span // n_posts, UTC)
            src = sources[(i * 7919) % len(sources)]
            hit = rng.random() < 0.12
            yield (i + 1, src, str(i + 1), rng.choice(outage if hit else other), f"https://social.example.org/{i}",
                   iso(at), iso(at + timedelta(seconds=40)), None if src.endswith("0") else rng.choice(authors), "en")

    conn.executemany("INSERT INTO posts (id, source, external_id, text, url, created_at, fetched_at, author_hash, "
                     "lang) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", posts())
    conn.executemany("INSERT INTO post_services (post_id, service) VALUES (?, ?)",
                     ((i + 1, services[s]) for i, s in enumerate(chosen)))
    conn.execute("INSERT INTO classifications (post_id, model_version, outage, score, symptom, classified_at) "
                 "SELECT id, 'bench-stored-labels', abs(random()) % 8 = 0, 0.5, NULL, fetched_at FROM posts")
    conn.execute("UPDATE classifications SET score = CASE outage WHEN 1 THEN 0.93 ELSE 0.04 END, "
                 "symptom = CASE outage WHEN 1 THEN 'connectivity' END")
    conn.execute("COMMIT")
    print(f"  posts: {time.monotonic() - t0:,.0f} s", flush=True)
    # Every bucket of every service for bucket_days, scored as the detector leaves them; counts from the posts.
    first_bucket = int((end - timedelta(days=bucket_days)).timestamp())
    n_buckets = bucket_days * 86400 // int(BUCKET.total_seconds())
    conn.execute("BEGIN")
    insert_bucket_grid(conn, services, first_bucket, n_buckets)
    conn.execute("COMMIT")
    print(f"  buckets: {time.monotonic() - t0:,.0f} s", flush=True)
    store = Store.open(path)
    store.refresh_buckets(start, end, BUCKET)
    store.set_bucket_minutes(5)
    print(f"  bucket counts: {time.monotonic() - t0:,.0f} s", flush=True)
    # Detector states learnt over the last week of each service's buckets.
    params = config.detector
    week = end - timedelta(days=7)
    last = end - BUCKET
    for svc in services:
        counts = store.bucket_counts(svc, week, end)
        state = None
        at = week
        while at <= last:
            state, _ = step(params, state, at, counts.get(iso(at), (0, 0))[1])
            at += BUCKET
        assert state is not None
        store.save_detector_step(svc, last, state.to_json(), [], end)
    print(f"  detector states: {time.monotonic() - t0:,.0f} s", flush=True)
    # Resolved incidents (one per service per 10 days), their events and notifications, daily digests.
    with store.database.transaction() as tx:
        for svc in services:
            for k in range(max(1, bucket_days // 10)):
                opened = end - timedelta(days=bucket_days - 10 * k - rng.uniform(0, min(9, bucket_days - 10 * k - 1)))
                resolved = opened + timedelta(minutes=rng.randrange(30, 240))
                iid = tx.execute(
                    "INSERT INTO incidents (service, status, opened_at, updated_at, resolved_at, peak_complaints, "
                    "peak_score, baseline, total_complaints, symptoms, sample_post_ids) VALUES "
                    "(?, 'resolved', ?, ?, ?, 40, 9.5, 2.0, 200, '{\"connectivity\": 150}', '[]')",
                    (svc, iso(opened), iso(resolved), iso(resolved))).lastrowid
                kinds = ["open", *["update"] * rng.randrange(2, 12), "resolve"]
                for j, kind in enumerate(kinds):
                    tx.execute("INSERT INTO incident_events (incident_id, kind, at, details) VALUES (?, ?, ?, ?)",
                               (iid, kind, iso(opened + j * BUCKET), json.dumps({"z": 9.5, "count": 40})))
                for kind, item in (("alert", "open"), ("resolved", "resolve")):
                    oid = tx.execute(
                        "INSERT INTO outbox (dedupe_key, route, channel, kind, status, message_id, created_at, "
                        "next_attempt_at, attempts, sent_at) VALUES (?, 'oncall', 'email', ?, 'sent', ?, ?, ?, 1, ?)",
                        (f"{item}:{iid}:oncall:email", kind, f"<{iid}.{kind}@bench>", iso(opened), iso(opened),
                         iso(opened))).lastrowid
                    tx.execute("INSERT INTO outbox_items (item_key, outbox_id, incident_id, kind) VALUES (?, ?, ?, ?)",
                               (f"{item}:{iid}:oncall:email", oid, iid, item))
                    tx.execute("INSERT INTO deliveries (outbox_id, attempt, worker, at, outcome) "
                               "VALUES (?, 1, 'bench:1', ?, 'sent')", (oid, iso(opened)))
                tx.execute("INSERT INTO alert_incidents (route, incident_id, open_outcome, message_id, "
                           "last_notified_at) VALUES ('oncall', ?, 'queued', ?, ?)", (iid, f"<{iid}@b>", iso(opened)))
        for d in range(bucket_days):
            at = end - timedelta(days=d)
            tx.execute("INSERT INTO outbox (dedupe_key, route, channel, kind, status, message_id, created_at, "
                       "next_attempt_at, attempts, sent_at) VALUES (?, 'oncall', 'email', 'digest', 'sent', ?, ?, ?, "
                       "1, ?)", (f"digest:oncall:{iso(at)}", f"<d{d}@b>", iso(at), iso(at), iso(at)))
        cursor = tx.execute("SELECT max(id) FROM incident_events").fetchone()[0]
        tx.execute("INSERT INTO alert_state (key, value) VALUES ('planner_event_cursor', ?)", (str(cursor),))
        tx.execute("INSERT INTO alert_state (key, value) VALUES ('digest_anchor:oncall', ?)", (iso(end),))
        add_grouped_notices(tx)
    store.close()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    print(f"built in {time.monotonic() - t0:,.0f} s", flush=True)


def add_grouped_notices(conn: sqlite3.Connection) -> int:
    """The oncall route's alert and resolve notices again on GROUP_ROUTES, by GROUP_CHANNELS, each in its service's
    group, sent when oncall's was; a store built without them gets them here (idempotent). Rows added."""
    if conn.execute("SELECT 1 FROM outbox WHERE route = ? LIMIT 1", (GROUP_ROUTES[0],)).fetchone():
        return 0
    values = ", ".join(f"('{r}', '{c}')" for r in GROUP_ROUTES for c in GROUP_CHANNELS)
    before = conn.total_changes  # the cursor's rowcount is -1 for a statement that starts with WITH
    conn.execute(
        f"WITH rc(route, channel) AS (VALUES {values}) "
        "INSERT INTO outbox (dedupe_key, route, channel, group_key, kind, status, message_id, created_at, "
        "next_attempt_at, attempts, sent_at) "
        "SELECT i.kind || ':' || inc.id || ':' || rc.route || ':' || rc.channel, rc.route, rc.channel, "
        "'service:' || lower(inc.service), o.kind, 'sent', "
        "'<' || inc.id || '.' || o.kind || '.' || rc.route || '.' || rc.channel || '@bench>', "
        "o.created_at, o.created_at, 1, o.sent_at "
        "FROM outbox o JOIN outbox_items i ON i.outbox_id = o.id JOIN incidents inc ON inc.id = i.incident_id, rc "
        "WHERE o.route = 'oncall' AND o.kind IN ('alert', 'resolved') ORDER BY o.created_at, o.id, rc.route, "
        "rc.channel")
    return conn.total_changes - before


class Trace:
    """Every statement run on a store's connection, and the longest write transaction."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.statements: list[str] = []
        self.longest_write = 0.0
        self._begin: float | None = None
        store.database.conn.set_trace_callback(self._seen)

    def _seen(self, sql: str) -> None:
        self.statements.append(sql)
        head = sql.lstrip()[:16].upper()
        if head.startswith("BEGIN IMMEDIATE"):
            self._begin = time.perf_counter()
        elif head.startswith(("COMMIT", "ROLLBACK")) and self._begin is not None:
            self.longest_write = max(self.longest_write, time.perf_counter() - self._begin)
            self._begin = None

    def reset(self) -> None:
        self.statements, self.longest_write = [], 0.0

    def scans(self) -> list[str]:
        """The statements whose plan scans one of the big tables (whole, or a covering index of it)."""
        conn = self.store.database.conn
        conn.set_trace_callback(None)
        found: dict[str, str] = {}
        for sql in self.statements:
            if not sql.lstrip().upper().startswith(("SELECT", "INSERT", "UPDATE", "DELETE", "WITH")):
                continue
            for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}"):
                line = row[3]
                if line.startswith("SCAN") and any(f"SCAN {t}" in line or f"SCAN {t[0]} " in line or
                                                   line.startswith(f"SCAN {t} ") for t in BIG_TABLES):
                    found.setdefault(" ".join(sql.split())[:160], line)
        conn.set_trace_callback(self._seen)
        return [f"{plan}  <-  {sql}" for sql, plan in found.items()]


@contextmanager
def timed(results: dict[str, str], name: str, trace: Trace | None = None,
          note: Callable[[], str] | None = None) -> Iterator[None]:
    if trace is not None:
        trace.reset()
    t = time.perf_counter()
    yield
    took = time.perf_counter() - t
    extra = []
    if trace is not None:
        extra.append(f"{len(trace.statements)} statements, longest write {trace.longest_write:.2f} s")
    if note is not None:
        extra.append(note())
    results[name] = f"{took:8.2f} s  " + "; ".join(extra)
    print(f"  {name}: {results[name]}", flush=True)
    if trace is not None:
        for line in trace.scans():
            print(f"      scan: {line}", flush=True)


def measure(path: Path, config: Config, cfg_path: Path, work: Path, rebucket: bool = False) -> dict[str, str]:
    results: dict[str, str] = {}
    db = work / "m.sqlite"
    shutil.copyfile(path, db)
    with db.open("rb+") as f:  # or the first checkpoint's fsync writes the whole copy out, inside a job's commit
        os.fsync(f.fileno())
    wal = Path(f"{db}-wal")
    results.update(measure_reads(db, config))
    from miner.alerts.files import FileSenders

    _, _, labels = real_texts()
    texts = list(labels)
    names = [s.name for s in config.services]
    now = floor_time(datetime.now(UTC), BUCKET) + timedelta(minutes=1)
    store = Store.open(db)
    trace = Trace(store)
    pipeline = Pipeline(config, store, StoredVerdicts(labels), senders=FileSenders(work / "outbox"))

    # collect: one poll of a source listing 100 items, 90 of them stored by earlier polls.
    old = store.database.rows("SELECT external_id FROM posts WHERE source = 'src001' ORDER BY id DESC LIMIT 90")
    poll = [Post("src001", r["external_id"], "seen", now - timedelta(minutes=1)) for r in old]
    poll += [Post("src001", f"new-{i}", texts[i], now - timedelta(seconds=i), author_hash=hash_author(f"n{i}", KEY),
                  services=(names[i % len(names)],)) for i in range(10)]
    with timed(results, "collect: save_fetch of a 100-item poll (90 seen)", trace):
        pipeline.ingest([], now)
        store.save_fetch("src001", FetchResult(posts=poll, state=SourceState()), now, now + timedelta(minutes=5))
    posts = [Post("src002", f"cycle-{i}", texts[i * 7 % len(texts)], now - timedelta(seconds=i % 300),
                  author_hash=hash_author(f"c{i}", KEY), services=(names[i % len(names)],)) for i in range(1000)]
    store.save_fetch("src002", FetchResult(posts=posts, state=SourceState()), now, now + timedelta(minutes=5))
    with timed(results, "process: classify 1,010 new posts (stored verdicts)", trace):
        pipeline.classify_pending(now)
    # A new source's first poll: its feed lists items of the last three weeks with today's.
    backfill = [Post("src003", f"back-{i}", texts[i * 11 % len(texts)], now - timedelta(hours=i * 5),
                     services=(names[i % len(names)],)) for i in range(100)]
    store.save_fetch("src003", FetchResult(posts=sorted(backfill, key=lambda p: p.created_at), state=SourceState()),
                     now, now + timedelta(minutes=5))
    with timed(results, "process: classify a new feed's 100 posts of the last 3 weeks", trace):
        pipeline.classify_pending(now)
    later = now + BUCKET
    with timed(results, f"process: detect, {len(names)} services, one new bucket", trace):
        pipeline.detect(later)
    with timed(results, "alerts: plan, digest due?, dispatch", trace):
        pipeline.alert(later)
    with timed(results, "metrics scrape: queue depths + open incidents", trace):
        store.queue_depths()
        store.incidents(status="open")
    with timed(results, "detector facts of one bucket (per bucket of an open incident)", trace):
        store.sample_posts(names[0], now - BUCKET, now, 5)
        store.symptom_counts(names[0], now - BUCKET, now)
    store.close()

    for args in (("status",), ("outbox",), ("outbox", "--all"), ("silence", "list", "--all"),
                 ("digest", "--dry-run", "--out", str(work / "digest"))):
        name = "miner " + " ".join(a for a in args if not a.startswith("/"))
        results[name] = f"{cli(cfg_path, db, *args):8.2f} s"
        print(f"  {name}: {results[name]}", flush=True)
    from store_bench import documented_queries

    for name, sql in documented_queries():
        t = cli(cfg_path, db, "query", sql)
        results[f"query {name}"] = f"{t:8.2f} s"
        print(f"  query {name}: {t:.2f} s", flush=True)
    export = "SELECT * FROM posts ORDER BY id DESC LIMIT 250000"
    t, rss = cli_rss(cfg_path, db, "query", "--format", "csv", export)
    results["miner query --format csv of 250,000 posts"] = f"{t:8.2f} s  peak RSS {rss:,.0f} MB"
    print(f"  export: {results['miner query --format csv of 250,000 posts']}", flush=True)
    t = cli(cfg_path, db, "backup", str(work / "backup.sqlite"))
    results["miner backup"] = f"{t:8.2f} s"
    print(f"  miner backup: {t:.2f} s", flush=True)

    store = Store.open(db)
    trace = Trace(store)
    with timed(results, "retention: prune the 6 h past the retention cutoff", trace,
               lambda: f"{removed:,} posts, -wal {wal.stat().st_size / 1e6 if wal.exists() else 0:,.0f} MB"):
        removed = store.prune_posts(datetime.now(UTC) - timedelta(days=config.store.retention_days - 1, hours=18))
    store.close()
    if rebucket:
        # A changed detector.bucket_minutes: every bucket since the first post is counted again, and each service's
        # baseline learnt again, in the next detect run.
        wider = replace(config, detector=replace(config.detector, bucket_minutes=10))
        store = Store.open(db)
        trace = Trace(store)
        with timed(results, "process: detect after bucket_minutes 5 -> 10", trace,
                   lambda: f"-wal {wal.stat().st_size / 1e6 if wal.exists() else 0:,.0f} MB"):
            Pipeline(wider, store, StoredVerdicts(labels)).detect(datetime.now(UTC))
        store.close()
    return results


def timings(call: Callable[[], object], runs: int = 5) -> str:
    """The first run's seconds (a cold cache, as a rare request finds it) and the median of ``runs``."""
    took = []
    for _ in range(runs):
        t = time.perf_counter()
        call()
        took.append(time.perf_counter() - t)
    return f"{took[0] * 1000:8.1f} ms first, {statistics.median(took) * 1000:7.1f} ms median of {runs}"


def plan_lines(store: Store, call: Callable[[], object]) -> list[str]:
    """Each distinct query plan of the statements ``call`` runs, with one statement that has it."""
    statements: list[str] = []
    conn = store.database.conn
    conn.set_trace_callback(statements.append)
    try:
        call()
    finally:
        conn.set_trace_callback(None)
    found: dict[str, str] = {}
    for sql in statements:
        if sql.lstrip().upper().startswith(("SELECT", "WITH")):
            plan = " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
            found.setdefault(plan, " ".join(sql.split())[:140])
    return [f"{plan}  <-  {sql}" for plan, sql in found.items()]


def measure_reads(db: Path, config: Config) -> dict[str, str]:
    """The read API's answers (ReadApi.answer and the JSON of its body; /services through the real HTTP server too) and
    the status board's index (StatusBoard.page), with QUIET services added for the while, group_interval's outbox
    lookups and the retention prune's guard, each timed and its query plans listed."""
    results: dict[str, str] = {}
    t = time.perf_counter()
    store = Store.open(db)  # a store built by an older miner gets its pending migrations here
    print(f"  opened in {time.perf_counter() - t:.1f} s", flush=True)
    with store.database.transaction() as tx:
        if added := add_grouped_notices(tx):
            print(f"  added {added:,} grouped notices to the outbox", flush=True)
    counts = store.database.one("SELECT count(*) AS n, count(DISTINCT route || channel || group_key) AS groups "
                                "FROM outbox") or {}
    print(f"  outbox: {counts['n']:,} rows in {counts['groups']:,} groups (route, channel, group)", flush=True)
    names = [s.name for s in config.services]  # build() gives the first the most posts
    with store.database.transaction() as tx:
        if not tx.execute("SELECT 1 FROM buckets WHERE service = ? LIMIT 1", (QUIET[0],)).fetchone():
            tx.execute(f"WITH q(name) AS (VALUES {', '.join('(?)' for _ in QUIET)}) "
                       "INSERT INTO buckets (service, bucket_start, posts, complaints, score, baseline, upper) "
                       "SELECT q.name, b.bucket_start, 0, 0, 0.1, 0.6, 4.0 FROM buckets b, q WHERE b.service = ?",
                       (*QUIET, names[0]))
            print(f"  added {len(QUIET)} services no post names, each with empty buckets", flush=True)
            # The first named by the oldest post only, as a service quiet since: its newest bucket with posts is 90
            # days of empty ones back.
            oldest = tx.execute("SELECT id, created_at FROM posts ORDER BY created_at LIMIT 1").fetchone()
            tx.execute("INSERT INTO post_services (post_id, service) VALUES (?, ?)", (oldest[0], QUIET[0]))
            tx.execute("UPDATE buckets SET posts = 1, complaints = 1 WHERE service = ? AND bucket_start = ?",
                       (QUIET[0], iso(floor_time(parse_iso(oldest[1]), BUCKET))))
    config = replace(config, services=(*config.services, *(ServiceConfig(name) for name in QUIET)))
    now = datetime.now(UTC)
    api = ReadApi(config, lambda: store, lambda: None, lambda: now)
    busiest, most = names[0], api.max_hours  # 35 days of 5-minute buckets (MAX_SERIES_BUCKETS), not the 90 kept
    group = f"service:{busiest.lower()}"  # group_by = "service"

    def get(path: str, query: str = "") -> Callable[[], object]:
        def call() -> object:
            answer = api.answer(path, query)
            assert answer is not None and answer[0] == 200, answer
            return json.dumps(answer[1])
        return call

    def board_page(path: str, query: str = "") -> Callable[[], object]:
        board = StatusBoard(api)

        def call() -> object:
            answer = board.page(path, query)
            assert answer is not None and answer[0] == 200, answer
            return answer[1]
        return call

    conn = store.database.conn
    cases: list[tuple[str, Callable[[], object]]] = [
        (f"GET /api/v1/services ({len(config.services)} services, {len(QUIET) - 1} never named, 1 only by the "
         "oldest post)",
         get("/api/v1/services")),
        (f"status board GET / ({len(config.services)} services' state and sparkline)", board_page("/")),
        ("last_counted_post_at of the busiest service", lambda: store.last_counted_post_at(busiest, BUCKET)),
        ("last_counted_post_at of a service never named", lambda: store.last_counted_post_at(QUIET[-1], BUCKET)),
        ("last_counted_post_at of a service whose only post is the oldest",
         lambda: store.last_counted_post_at(QUIET[0], BUCKET)),
        ("GET /api/v1/incidents", get("/api/v1/incidents")),
        ("GET /api/v1/incidents?limit=1000&since=(90 days)",
         get("/api/v1/incidents", f"limit=1000&since={iso(now - timedelta(days=90))[:19]}Z")),
        (f"GET /api/v1/incidents?service={busiest}", get("/api/v1/incidents", f"service={busiest}")),
        ("GET /api/v1/incidents?status=open", get("/api/v1/incidents", "status=open")),
        (f"GET /api/v1/services/{busiest}/series", get(f"/api/v1/services/{busiest}/series")),
        (f"GET /api/v1/services/{busiest}/series?hours={most}", get(f"/api/v1/services/{busiest}/series",
                                                                       f"hours={most}")),
        (f"group_interval: held_until (route team0, email, group {group})",
         lambda: held_until(conn, "team0", "email", group, "alert", 300, now)),
        ("group_interval: held_until (route oncall, email, the whole route)",
         lambda: held_until(conn, "oncall", "email", "", "alert", 300, now)),
        (f"group_interval: waiting_batch (route team0, email, group {group})",
         lambda: waiting_batch(conn, "team0", "email", group, "alert", now)),
        ("retention: hold_prune's newest source-dated post",
         lambda: store.hold_prune(now - timedelta(days=config.store.retention_days), now)),
    ]
    for name, call in cases:
        results[name] = timings(call)
        print(f"  {name}: {results[name]}", flush=True)
        for line in plan_lines(store, call):
            print(f"      plan: {line}", flush=True)
    # The same /services through the service's HTTP server on 127.0.0.1, on a store connection of the server's own.
    local = threading.local()

    def api_store() -> Store:
        if not hasattr(local, "store"):
            local.store = Store.open(db)
        return local.store

    served = ReadApi(config, api_store, lambda: None, lambda: now)
    server = HttpApi("127.0.0.1", 0, Endpoints(lambda: (True, {}), lambda: "", lambda p, c: {}, served.answer))
    server.start()
    host, port = server.address
    try:
        with httpx.Client(base_url=f"http://{host}:{port}", timeout=60) as client:
            def fetch() -> object:
                response = client.get("/api/v1/services")
                assert response.status_code == 200, response.text
                return response.content

            name = "HTTP GET /api/v1/services on 127.0.0.1"
            results[name] = timings(fetch) + f", {len(fetch()) / 1e3:,.0f} kB"
            print(f"  {name}: {results[name]}", flush=True)
    finally:
        server.stop()
    with store.database.transaction() as tx:  # the jobs measured next count the configured services' buckets only
        tx.execute(f"DELETE FROM buckets WHERE service IN ({', '.join('?' for _ in QUIET)})", QUIET)
        tx.execute("DELETE FROM post_services WHERE service = ?", (QUIET[0],))
    store.close()
    return results


def measure_bucket_prune(path: Path, work: Path, days: float, batch: int) -> dict[str, str]:
    """The retention job's bucket prune on a copy of the store: once down to ``days`` (an upgraded store's first
    prune), then the next 6 hours' worth (each later run). SQLite keeps the pages freed for new rows, so the file
    keeps its size: what is freed shows as free pages (a VACUUM would give them back to the file system)."""
    results: dict[str, str] = {}
    db = work / "m.sqlite"
    shutil.copyfile(path, db)
    store = Store.open(db)
    trace = Trace(store)
    conn = store.database.conn
    page = conn.execute("PRAGMA page_size").fetchone()[0]

    def free_mb() -> float:
        return conn.execute("PRAGMA freelist_count").fetchone()[0] * page / 1e6

    now = datetime.now(UTC)
    store.prune_posts(now - timedelta(days=30))  # records the posts' cutoff, which bounds the rows that may go
    seen = {"removed": 0, "free": free_mb()}

    def note() -> str:
        return (f"{seen['removed']:,} rows, {free_mb() - seen['free']:,.0f} MB of free pages, file "
                f"{db.stat().st_size / 1e6:,.0f} MB")

    for name, keep in ((f"retention: first bucket prune, down to {days:g} days", days),
                       ("retention: bucket prune of the next 6 h", days - 0.25)):
        with timed(results, name, trace, note):
            seen["removed"] = store.prune_buckets(now - timedelta(days=keep), batch)
        seen["free"] = free_mb()
    store.close()
    return results


def cli_rss(cfg: Path, db: Path, *args: str) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of one miner command, its output thrown away."""
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "miner", "--config", str(cfg), "--db", str(db), *args],
                            stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"miner {' '.join(args)} failed")
    return time.perf_counter() - t, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=2_500_000)
    parser.add_argument("--post-days", type=int, default=30)
    parser.add_argument("--bucket-days", type=int, default=90)
    parser.add_argument("--services", type=int, default=300)
    parser.add_argument("--sources", type=int, default=200)
    parser.add_argument("--keep", type=Path, help="Keep the built store here (for --reuse).")
    parser.add_argument("--reuse", type=Path, help="Measure on this store, built earlier, instead of building one.")
    parser.add_argument("--build-only", action="store_true")
    parser.add_argument("--rebucket", action="store_true", help="Also time a changed bucket width (minutes).")
    parser.add_argument("--prune-buckets", type=float, metavar="DAYS",
                        help="Only time the retention job's bucket prune, keeping DAYS of bucket rows.")
    parser.add_argument("--prune-batch", type=int, default=BUCKET_PRUNE_BATCH, help="Bucket rows per transaction.")
    parser.add_argument("--reads", action="store_true",
                        help="Only time the read API, the status board's index, group_interval's lookups and the "
                             "prune's guard.")
    args = parser.parse_args()
    text = config_text(args.services, args.sources)
    config = parse_config(text)
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        work = Path(tmp)
        cfg_path = work / "feeds.toml"
        cfg_path.write_text(text, encoding="utf-8")
        path = args.reuse or args.keep or work / "scale.sqlite"
        if not args.reuse:
            print(f"building {args.posts:,} posts over {args.post_days} days, buckets of {args.services} services "
                  f"over {args.bucket_days} days, {args.sources} sources into {path}", flush=True)
            build(path, config, args.posts, args.post_days, args.bucket_days)
        with sqlite3.connect(path) as conn:
            counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                      for t in ("posts", "buckets", "incidents", "incident_events", "outbox")}
        print("store: " + ", ".join(f"{k} {v:,}" for k, v in counts.items())
              + f", {path.stat().st_size / 1e6:,.0f} MB", flush=True)
        if args.build_only:
            return
        if args.prune_buckets is not None:
            results = measure_bucket_prune(path, work, args.prune_buckets, args.prune_batch)
        elif args.reads:
            db = work / "m.sqlite"
            shutil.copyfile(path, db)
            results = measure_reads(db, config)
        else:
            results = measure(path, config, cfg_path, work, args.rebucket)
    print(f"machine: {describe()} (at the end)")
    print(f"peak RSS: this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB, "
          f"children {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:,.0f} MB")
    for name, value in results.items():
        print(f"{name:<60} {value}")


if __name__ == "__main__":
    main()

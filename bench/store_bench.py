"""The store at the size a deployment reaches after months: build one through the Store API, then time what
runs against it (a pipeline cycle, status, digest, prune, reclassify, the documented queries).

The store is built as the service fills it, hour by simulated hour up to now: each source's poll is one
``save_fetch`` (posts with services and keyed author hashes), then ``classify_pending`` and ``detect`` run.
Texts are real posts from shared/data (hand labels, Washington power tweets, complaints to companies); the
classify stage of the build is given each text's label instead of running the model (1M posts would take the
model an hour), and the timed cycle runs the real model on its new posts.

    .venv/bin/python bench/store_bench.py [--posts 1500000] [--days 90] [--keep /tmp/big.sqlite]
    .venv/bin/python bench/store_bench.py --reuse /tmp/big.sqlite     # time again on a store kept earlier
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import describe  # noqa: E402

from miner.collectors.normalise import hash_author  # noqa: E402
from miner.config import Config, parse_config  # noqa: E402
from miner.pipeline import Pipeline  # noqa: E402
from miner.records import Decision, FetchResult, Post, Prediction, SourceState  # noqa: E402
from miner.store import Store  # noqa: E402

SHARED = Path(os.environ.get("MINER_SHARED_DATA", ROOT.parent / "shared" / "data"))  # as the other benches
if not SHARED.exists():
    SHARED = Path("/work/shared/data")
SERVICES = ["WhatsApp", "Instagram", "Facebook", "YouTube", "Gmail", "Outlook", "Discord", "Slack", "GitHub",
            "Netflix", "Spotify", "Steam", "PlayStation Network", "Xbox Live", "Zoom", "Teams", "iCloud",
            "Cloudflare", "AWS", "Azure", "Google Cloud", "Reddit", "Twitch", "TikTok", "Snapchat", "Telegram",
            "Signal", "Comcast", "Verizon", "AT&T", "T-Mobile", "Vodafone", "BT", "Airtel", "MTN", "PayPal",
            "Stripe", "Shopify", "Roblox", "Fortnite"]
KEY = b"bench-author-hash-key"


def config_text(n_services: int, n_sources: int) -> str:
    parts = [f'[[services]]\nname = "{name}"\n' for name in SERVICES[:n_services]]
    for i in range(n_sources):
        parts.append(f'[[sources]]\nname = "src{i:02d}"\ntype = "rss"\nurl = "https://feeds.example.org/{i}.rss"\n')
    parts.append('[alerts]\nfrom_addr = "bench <bench@example.org>"\n\n[[alerts.routes]]\nname = "oncall"\n'
                 'email = ["oncall@example.org"]\ndigest = "0 8 * * *"\n')
    return "\n".join(parts)


def real_texts() -> tuple[list[str], list[str], dict[str, int]]:
    """(outage texts, other texts, text -> label) from the shared data sets."""
    labels: dict[str, int] = {}
    with (SHARED / "labels" / "train.jsonl").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            labels.setdefault(row["text"], int(row["label"]))
    with (SHARED / "power" / "wa_tweets.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            labels.setdefault(row["text"], 1 if row["outage"] == "1" else 0)
    with (SHARED / "complaints" / "complaints-data.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            labels.setdefault(row["text"], 0)
    outage = [t for t, v in labels.items() if v == 1 and t.strip()]
    other = [t for t, v in labels.items() if v == 0 and t.strip()]
    return outage, other, labels


def insert_bucket_grid(conn: sqlite3.Connection, services: Sequence[str], first: int, n_buckets: int) -> None:
    """Every 5-minute bucket of every service from ``first`` (seconds since the epoch) on, ``n_buckets`` of them,
    scored as the detector leaves them (score, baseline, upper), with small counts at random, written in one
    statement: stepping the detector over them would take hours."""
    conn.execute("CREATE TEMP TABLE svc (name TEXT)")
    conn.executemany("INSERT INTO svc VALUES (?)", ((s,) for s in services))
    conn.execute(
        f"WITH RECURSIVE t(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM t WHERE n < {n_buckets - 1}) "
        "INSERT INTO buckets (service, bucket_start, posts, complaints, score, baseline, upper) "
        "SELECT svc.name, strftime('%Y-%m-%dT%H:%M:%S+00:00', ? + n * 300, 'unixepoch'), "
        "abs(random()) % 4, abs(random()) % 2, 0.1, 0.6, 4.0 FROM t, svc ORDER BY 2, 1", (first,))
    conn.execute("DROP TABLE svc")


class StoredVerdicts:
    """The classify stage given stored results: each text's label, as the model would have scored it."""

    def __init__(self, labels: dict[str, int], version: str = "bench-stored-labels") -> None:
        self.labels = labels
        self.version = version
        self.decision = Decision(0.5, early_exit=False)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        out = []
        for text in texts:
            hit = self.labels.get(text, 0) == 1
            out.append(Prediction(score=0.93 if hit else 0.04, outage=hit,
                                  symptom=("connectivity", "login", "app")[len(text) % 3] if hit else None))
        return out


def build(path: Path, n_posts: int, days: int, config: Config, seed: int = 7) -> dict[str, Any]:
    rng = random.Random(seed)
    outage_texts, other_texts, labels = real_texts()
    services = [s.name for s in config.services]
    sources = [s.name for s in config.sources]
    weights = [1.0 / (i + 1) ** 1.1 for i in range(len(services))]
    per_hour = n_posts / (days * 24) / sum(weights)
    # Each service is covered by 5 sources; a tenth of the sources give no author (feeds without one).
    covering = {svc: rng.sample(sources, 5) for svc in services}
    anonymous = set(sources[:: 10])
    # About one outage per service per 10 days, 1-3 hours of 4-12 times the volume, mostly complaints.
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=days)
    outages: dict[str, list[tuple[datetime, datetime, float]]] = {}
    for svc in services:
        spans = []
        for _ in range(max(1, days // 10)):
            at = start + timedelta(hours=rng.randrange(min(14, days // 2) * 24, days * 24))  # after the warm-up
            spans.append((at, at + timedelta(minutes=rng.randrange(60, 180)), rng.uniform(4, 12)))
        outages[svc] = spans
    store = Store.open(path)
    store.sync_sources(list(config.sources))
    pipeline = Pipeline(config, store, StoredVerdicts(labels))
    counter = stored = 0
    t0 = time.monotonic()
    hour = start
    while hour < end:
        by_source: dict[str, list[Post]] = {}
        diurnal = 1.0 + 0.6 * math.sin((hour.hour - 9) / 24 * 2 * math.pi)
        for svc, w in zip(services, weights, strict=True):
            lam = per_hour * w * diurnal
            for _ in range(_poisson(rng, lam)):
                at = hour + timedelta(seconds=rng.randrange(3600))
                burst = next((f for a, b, f in outages[svc] if a <= at < b), None)
                texts = outage_texts if rng.random() < (0.85 if burst else 0.12) else other_texts
                src = rng.choice(covering[svc])
                counter += 1
                handle = f"user{int(rng.paretovariate(0.7)) % 400_000}"
                by_source.setdefault(src, []).append(Post(
                    source=src, external_id=f"{counter}", text=rng.choice(texts), created_at=at,
                    url=f"https://social.example.org/{src}/statuses/{counter}",
                    author_hash=None if src in anonymous else hash_author(handle, KEY), lang="en", services=(svc,)))
            for a, b, factor in outages[svc]:  # the outage's extra volume
                if a < hour + timedelta(hours=1) and b > hour:
                    lo, hi = max(a, hour), min(b, hour + timedelta(hours=1))
                    extra = _poisson(rng, lam * (factor - 1) * (hi - lo).total_seconds() / 3600)
                    for _ in range(extra):
                        at = lo + timedelta(seconds=rng.random() * (hi - lo).total_seconds())
                        src = rng.choice(covering[svc])
                        counter += 1
                        handle = f"user{rng.randrange(2_000_000)}"
                        text = rng.choice(outage_texts if rng.random() < 0.85 else other_texts)
                        by_source.setdefault(src, []).append(Post(
                            source=src, external_id=f"{counter}", text=text, created_at=at,
                            url=f"https://social.example.org/{src}/statuses/{counter}",
                            author_hash=None if src in anonymous else hash_author(handle, KEY), lang="en",
                            services=(svc,)))
        now = hour + timedelta(hours=1)
        for src, posts in by_source.items():
            posts.sort(key=lambda p: p.created_at)
            stats = store.save_fetch(src, FetchResult(posts=posts, state=SourceState(cursor=posts[-1].external_id)),
                                     now, now + timedelta(minutes=5))
            stored += stats.posts_new
        pipeline.classify_pending(now)
        pipeline.detect(now)
        hour = now
        if hour.hour == 0:
            print(f"  built {hour:%Y-%m-%d}: {stored:,} posts, {time.monotonic() - t0:,.0f} s", flush=True)
    store.close()
    return {"posts": stored, "seconds": time.monotonic() - t0, "start": start, "end": end}


def _poisson(rng: random.Random, lam: float) -> int:
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    n, p, limit = 0, 1.0, math.exp(-lam)
    while True:
        p *= rng.random()
        if p <= limit:
            return n
        n += 1


class Trace:
    """Counts statements and the longest write transaction on a store's connection."""

    def __init__(self, store: Store) -> None:
        self.statements = 0
        self.longest_write = 0.0
        self._begin: float | None = None
        store.database.conn.set_trace_callback(self._seen)

    def _seen(self, sql: str) -> None:
        self.statements += 1
        head = sql.lstrip()[:16].upper()
        if head.startswith("BEGIN IMMEDIATE"):
            self._begin = time.perf_counter()
        elif (head.startswith(("COMMIT", "ROLLBACK"))) and self._begin is not None:
            self.longest_write = max(self.longest_write, time.perf_counter() - self._begin)
            self._begin = None


@contextmanager
def timed(results: dict[str, str], name: str, note: Callable[[], str] | None = None) -> Iterator[None]:
    t = time.perf_counter()
    yield
    took = time.perf_counter() - t
    results[name] = f"{took:8.2f} s" + (f"  {note()}" if note else "")
    print(f"  {name}: {results[name]}", flush=True)


def cli(cfg: Path, db: Path, *args: str) -> float:
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "miner", "--config", str(cfg), "--db", str(db), *args],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode != 0:
        sys.exit(f"miner {' '.join(args)} failed: {proc.stderr.strip()[-500:]}")
    return time.perf_counter() - t


def measure(path: Path, config: Config, cfg_path: Path, work: Path) -> dict[str, str]:
    """Time each operation on a copy of the store (prune and reclassify change it)."""
    results: dict[str, str] = {}
    _, _, labels = real_texts()
    db = work / "m.sqlite"
    shutil.copyfile(path, db)
    wal = Path(f"{db}-wal")

    # One cycle of the service, 5 minutes after the last: an hour's worth of new posts arrives late (a source
    # back after an outage), the real model classifies them, the detector and the alerts run.
    store = Store.open(db)
    trace = Trace(store)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    from miner.classify import load_classifier

    model = load_classifier(config.classifier, base_dir=ROOT)
    from miner.alerts.files import FileSenders

    pipeline = Pipeline(config, store, model, senders=FileSenders(work / "outbox"))
    texts = list(labels)
    posts = [Post(source="src00", external_id=f"cycle-{i}", text=texts[i * 7 % len(texts)],
                  created_at=now - timedelta(seconds=i % 300), author_hash=hash_author(f"c{i}", KEY),
                  services=(config.services[i % len(config.services)].name,)) for i in range(600)]
    store.save_fetch("src00", FetchResult(posts=posts, state=SourceState()), now, now + timedelta(minutes=5))
    with timed(results, "cycle: classify 600 new posts (real model)",
               lambda: f"{trace.statements} statements, longest write {trace.longest_write:.2f} s"):
        pipeline.classify_pending(now)
    trace.statements, trace.longest_write = 0, 0.0
    with timed(results, "cycle: detect", lambda: f"{trace.statements} statements"):
        pipeline.detect(now + timedelta(minutes=5))
    trace.statements = 0
    with timed(results, "cycle: alerts (plan, digest due?, send)", lambda: f"{trace.statements} statements"):
        pipeline.alert(now + timedelta(minutes=5))
    trace.statements = 0
    busiest, bucket = config.services[0].name, now - timedelta(minutes=5)
    with timed(results, f"detector facts of one bucket of {busiest} (per bucket of an open incident)"):
        store.sample_posts(busiest, bucket, now, config.detector.max_samples)
        store.symptom_counts(busiest, bucket, now)
    with timed(results, "metrics scrape: queue depths + open incidents", lambda: f"{trace.statements} statements"):
        store.queue_depths()
        store.incidents(status="open")
    store.close()

    # Twelve more hours of the service's process job (classify with stored verdicts, detect), with a three-hour
    # outage of the busiest service in the middle: the detector reads each of its buckets' samples and symptoms.
    store = Store.open(db)
    trace = Trace(store)
    pipeline = Pipeline(config, store, StoredVerdicts(labels))
    outage_texts, other_texts, _ = real_texts()
    rng = random.Random(11)
    names = [s.name for s in config.services]
    clock = now + timedelta(minutes=5)
    with timed(results, "12 h of classify + detect, 3 h outage of the busiest service",
               lambda: f"longest write {trace.longest_write:.2f} s"):
        for h in range(12):
            hour, outage = clock + timedelta(hours=h), h in (4, 5, 6)
            posts = [Post("src01", f"hour{h}-{i}", rng.choice(outage_texts if i % 3 == 0 or (outage and i % 2)
                                                               else other_texts),
                          hour + timedelta(seconds=rng.randrange(3600)), author_hash=hash_author(f"h{i}-{h}", KEY),
                          services=(names[0] if outage and i % 2 else names[i % len(names)],))
                     for i in range(1400 if outage else 700)]
            posts.sort(key=lambda p: p.created_at)
            store.save_fetch("src01", FetchResult(posts=posts, state=SourceState()), hour + timedelta(hours=1), hour)
            pipeline.classify_pending(hour + timedelta(hours=1))
            pipeline.detect(hour + timedelta(hours=1))
    store.close()

    results["miner status"] = f"{cli(cfg_path, db, 'status'):8.2f} s"
    print(f"  miner status: {results['miner status']}", flush=True)
    t = cli(cfg_path, db, "digest", "--dry-run", "--out", str(work / "digest"))
    results["miner digest --dry-run"] = f"{t:8.2f} s"
    print(f"  digest: {t:.2f} s", flush=True)
    for name, sql in documented_queries():
        t = cli(cfg_path, db, "query", sql)
        results[f"query {name}"] = f"{t:8.2f} s"
        print(f"  query {name}: {t:.2f} s", flush=True)

    # Reclassify one day with a new model version (store work only: the model's own speed is classify_bench's).
    store = Store.open(db)
    trace = Trace(store)
    pipeline = Pipeline(config, store, StoredVerdicts(labels, version="bench-new-model"))
    day = datetime.now(UTC) - timedelta(days=1)
    with timed(results, "reclassify --since 1 day (stored verdicts)",
               lambda: f"{n:,} posts, {trace.statements} statements, longest write {trace.longest_write:.2f} s"):
        n = pipeline.reclassify_since(day, lambda: datetime.now(UTC))
    store.close()

    # Retention: prune 60 of the 90 days, timed with the lock held as another job would see it.
    store = Store.open(db)
    trace = Trace(store)
    before = db.stat().st_size
    with timed(results, "prune 60 days",
               lambda: f"{removed:,} posts, longest write {trace.longest_write:.2f} s, "
                       f"WAL after {wal.stat().st_size / 1e6 if wal.exists() else 0:,.0f} MB"):
        removed = store.prune_posts(datetime.now(UTC) - timedelta(days=60))
    store.close()
    results["store size"] = f"{before / 1e6:,.0f} MB before prune"
    return results


def documented_queries() -> list[tuple[str, str]]:
    from miner.datasette_meta import CANNED

    return [("README example", "SELECT service, count(*) FROM post_services GROUP BY 1"),
            *((name, q["sql"]) for name, q in CANNED.items())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=1_500_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--services", type=int, default=30)
    parser.add_argument("--sources", type=int, default=50)
    parser.add_argument("--keep", type=Path, help="Keep the built store here (for --reuse).")
    parser.add_argument("--reuse", type=Path, help="Time on this store, built earlier, instead of building one.")
    args = parser.parse_args()
    text = config_text(args.services, args.sources)
    config = parse_config(text)
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        work = Path(tmp)
        cfg_path = work / "feeds.toml"
        cfg_path.write_text(text, encoding="utf-8")
        if args.reuse:
            path = args.reuse
        else:
            path = args.keep or work / "big.sqlite"
            print(f"building {args.posts:,} posts over {args.days} days, {args.services} services, "
                  f"{args.sources} sources into {path}", flush=True)
            built = build(path, args.posts, args.days, config)
            print(f"built {built['posts']:,} posts in {built['seconds']:,.0f} s "
                  f"({built['posts'] / built['seconds']:,.0f} posts/s through save_fetch, classify, detect)")
        with sqlite3.connect(path) as conn:
            counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                      for t in ("posts", "post_services", "classifications", "buckets", "incidents")}
        print("store: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
        results = measure(path, config, cfg_path, work)
    print(f"machine: {describe()} (at the end)")
    print(f"peak RSS: this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB, "
          f"children {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:,.0f} MB")
    for name, value in results.items():
        print(f"{name:<55} {value}")


if __name__ == "__main__":
    main()

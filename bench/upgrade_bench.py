"""The upgrade of a store as miner 0.1.0 left it after months of posts: each migration's time, the `-wal`'s peak and
the upgrading process's peak RSS, as `miner run` opens it (Store.open).

The 0.1.0 store is written in bulk with 0.1.0's two migrations: ``--posts`` posts over ``--days`` (real texts from
shared/data: the labelled posts, the Washington tweets and the complaints, about a third of them holding a link,
as real posts do, so 0022_text_links rewrites what it would in a real store), each matched to one of ``--services``
services and given a verdict, a 5-minute bucket per service for the whole span (the detector stores the empty ones
too), a few incidents. A quarter of the sources are RSS feeds whose posts' ids are their links, as 0.1.0 stored
them, half of them with a ``?utm_source=`` query (0017_stored_links reads those, and changes none). The upgrade runs
in a process of its own on a copy, so its RSS is its own.

    .venv/bin/python bench/upgrade_bench.py [--posts 1000000 --days 182 --services 19] [--keep /tmp/old.sqlite]
    .venv/bin/python bench/upgrade_bench.py --reuse /tmp/old.sqlite     # upgrade a copy of a store kept earlier
    .venv/bin/python bench/upgrade_bench.py --link-keys    # every post's link with a ?passkey= (0017 rewrites all)
    .venv/bin/python bench/upgrade_bench.py --bare-tokens  # every text with a reset link, no scheme (0025 rewrites all)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import describe  # noqa: E402
from store_bench import SERVICES, insert_bucket_grid, real_texts  # noqa: E402

from miner.store import Store  # noqa: E402
from miner.store import upgrade as store_upgrade  # noqa: E402
from miner.store.migrations import MIGRATIONS, apply_migrations  # noqa: E402
from miner.text_links import public_text_links  # noqa: E402
from miner.timeutil import iso  # noqa: E402

BUCKET = timedelta(minutes=5)
N_SOURCES = 20


def has_link(text: str) -> bool:
    return "://" in text or "www." in text.lower()


def build(path: Path, n_posts: int, days: int, n_services: int, link_keys: bool = False, bare_tokens: bool = False,
          seed: int = 7) -> dict[str, Any]:
    """A 0.1.0 store of ``n_posts`` real-text posts; returns what its texts hold (links, texts 0022 and 0025
    change)."""
    rng = random.Random(seed)
    outage, other, _ = real_texts()
    services = [*SERVICES, *(f"Service {i:03d}" for i in range(len(SERVICES), n_services))][:n_services]
    kinds = ("rss", "reddit", "mastodon", "bluesky")
    sources = [(f"src{i:02d}", kinds[i % len(kinds)]) for i in range(N_SOURCES)]
    end = datetime(2026, 6, 1, tzinfo=UTC)
    start = end - timedelta(days=days)
    span = days * 86400
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    apply_migrations(conn, MIGRATIONS[:2])
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -400000")
    t0 = time.monotonic()
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO sources (name, type, url) VALUES (?, ?, ?)",
                     [(name, kind, f"https://feeds.example.org/{name}.xml") for name, kind in sources])
    counts = {"links": 0, "changed": 0}
    changes: dict[str, bool] = {}

    def posts() -> Iterator[tuple[Any, ...]]:
        for i in range(n_posts):
            at = start + timedelta(seconds=i * span // n_posts)
            name, kind = sources[i % N_SOURCES]
            text = rng.choice(outage if rng.random() < 0.12 else other)
            if bare_tokens:  # real texts hold no such link: 0025's worst case, where it rewrites every text
                text = f"{text} reset link app.example.com/reset?token={i:012x}"
            if text not in changes:
                changes[text] = public_text_links(text) != text
            counts["links"] += has_link(text)
            counts["changed"] += changes[text]
            link = (f"https://news.example.org/{name}/item/{i}" + ("?utm_source=rss&utm_medium=feed" if i % 2 else "")
                    if kind == "rss" else f"https://social.example.org/{i}")
            if link_keys:
                link = f"https://news.example.org/{name}/item/{i}?passkey={i:016x}"
            yield (i + 1, name, link if kind == "rss" else str(i + 1), text, link, iso(at), iso(at + BUCKET),
                   f"{rng.randrange(50_000):016x}", "en")

    conn.executemany("INSERT INTO posts (id, source, external_id, text, url, created_at, fetched_at, author_hash, "
                     "lang) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", posts())
    conn.executemany("INSERT INTO post_services (post_id, service) VALUES (?, ?)",
                     ((i + 1, rng.choice(services)) for i in range(n_posts)))
    conn.execute("INSERT INTO classifications (post_id, model_version, outage, score, symptom, classified_at) "
                 "SELECT id, 'v0.1.0', abs(random()) % 8 = 0, 0.5, NULL, fetched_at FROM posts")
    n_buckets = span // int(BUCKET.total_seconds())
    insert_bucket_grid(conn, services, int(start.timestamp()), n_buckets)
    for k, svc in enumerate(services):
        opened = end - timedelta(days=1 + k)
        conn.execute("INSERT INTO incidents (service, status, opened_at, updated_at, resolved_at, sample_post_ids) "
                     "VALUES (?, ?, ?, ?, ?, ?)", (svc, "open" if k == 0 else "resolved", iso(opened), iso(opened),
                                                   None if k == 0 else iso(opened + timedelta(hours=2)),
                                                   json.dumps([n_posts - k * 10 - j for j in range(5)])))
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    print(f"built in {time.monotonic() - t0:,.0f} s", flush=True)
    return counts


def upgrade(path: Path) -> dict[str, Any]:
    """Open ``path`` with Store.open (the upgrade `miner run` does) in this process: each migration's seconds, the
    -wal's peak (sampled every 20 ms), the peak RSS before and after."""
    seconds: dict[str, float] = {}
    applied = store_upgrade.apply_migrations

    def timed(conn: sqlite3.Connection, migrations: Any = None,
              progress: Callable[[str, float | None], None] | None = None, begin: Any = None) -> list[str]:
        def record(migration_id: str, took: float | None) -> None:
            if took is not None:
                seconds[migration_id] = took
            if progress is not None:
                progress(migration_id, took)
        return applied(conn, migrations, record, begin)

    store_upgrade.apply_migrations = timed  # type: ignore[assignment]
    wal = Path(f"{path}-wal")
    peak = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.wait(0.02):
            with contextlib.suppress(OSError):  # none yet
                peak = max(peak, wal.stat().st_size)

    watcher = threading.Thread(target=watch, daemon=True)
    rss_before = peak_rss_mb()
    watcher.start()
    t0 = time.monotonic()
    store = Store.open(path)
    total = time.monotonic() - t0
    done.set()
    watcher.join()
    wal_after = wal.stat().st_size / 1e6 if wal.exists() else 0.0
    store.close()
    return {"total_s": total, "migrations": seconds, "wal_peak_mb": peak / 1e6, "wal_after_mb": wal_after,
            "rss_before_mb": rss_before, "rss_peak_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    # VmHWM, not getrusage's ru_maxrss: Linux keeps that across the exec of this child, so it was the parent's
    # (which built the store) at the fork.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def texts_changed(upgraded: Path, old: Path) -> int:
    conn = sqlite3.connect(upgraded)
    conn.execute("ATTACH DATABASE ? AS old", (f"file:{old}?mode=ro",))
    n: int = conn.execute("SELECT count(*) FROM posts p JOIN old.posts o ON o.id = p.id "
                          "WHERE o.text != p.text").fetchone()[0]
    conn.close()
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=182)
    parser.add_argument("--services", type=int, default=19, help="19 x 182 days of 5-minute buckets: 1 M rows")
    parser.add_argument("--link-keys", action="store_true",
                        help="every post's link (and an RSS post's id) with a ?passkey=: 0017's worst case")
    parser.add_argument("--bare-tokens", action="store_true",
                        help="every text with a reset link and its token, no scheme: 0025's worst case")
    parser.add_argument("--keep", type=Path, help="keep the 0.1.0 store built here (not upgraded)")
    parser.add_argument("--reuse", type=Path, help="upgrade a copy of a 0.1.0 store kept earlier")
    parser.add_argument("--upgrade-only", type=Path, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.upgrade_only:
        logging.basicConfig(level=logging.INFO, format="  %(message)s")
        print(json.dumps(upgrade(args.upgrade_only)))
        return
    print(describe(), flush=True)
    work = Path(tempfile.mkdtemp(prefix="upgrade-bench-"))
    try:
        old = args.reuse or args.keep or work / "old.sqlite"
        if not args.reuse:
            if old.exists():
                sys.exit(f"{old} exists: --reuse it or remove it")
            counts = build(old, args.posts, args.days, args.services, args.link_keys, args.bare_tokens)
            print(f"0.1.0 store: {args.posts:,} posts over {args.days} days, {counts['links']:,} texts with a link "
                  f"({counts['links'] / args.posts:.1%}), {counts['changed']:,} that 0022 and 0025 change "
                  f"({counts['changed'] / args.posts:.1%})", flush=True)
        copy = work / "upgraded.sqlite"
        shutil.copyfile(old, copy)
        print(f"store {old.stat().st_size / 1e6:,.0f} MB; upgrading a copy", flush=True)
        child = subprocess.run([sys.executable, __file__, "--upgrade-only", str(copy)], check=True,
                               capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        sys.stderr.write(child.stderr)
        result = json.loads(child.stdout.strip().splitlines()[-1])
        print(f"upgraded in {result['total_s']:.1f} s (Store.open); store after {copy.stat().st_size / 1e6:,.0f} MB, "
              f"-wal peak {result['wal_peak_mb']:,.0f} MB, after {result['wal_after_mb']:,.0f} MB; peak RSS "
              f"{result['rss_peak_mb']:,.0f} MB ({result['rss_before_mb']:,.0f} MB before the open)")
        for mid, took in sorted(result["migrations"].items(), key=lambda kv: -kv[1]):
            print(f"  {mid:32s} {took:7.2f} s")
        print(f"texts rewritten by the upgrade: {texts_changed(copy, old):,}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

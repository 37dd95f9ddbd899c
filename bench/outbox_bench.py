"""`miner outbox` on an outbox after a long mail outage: ``--sent`` messages sent, and a backlog of ``--pending``
pending: ``--held`` pages retried and waiting out their backoff, the resolve notice of each held behind it
(store/outbox_order.py), and the rest alerts due, with nothing older to wait for. Every message is about one
incident and has its item, as the planner writes them.

It times, median of ``--runs`` (and the first run, a cold cache): Store.outbox_listing as `miner outbox` reads it (the
newest 50 pending, sending or failed rows), as `miner outbox --all` does (the newest 50 of any status), and both with
a --limit of them all; and the dispatcher's listing of the rows due (Store.due_in_claim_order, 100), which reads the
same wait.

    .venv/bin/python bench/outbox_bench.py [--sent 100000 --pending 5000 --held 2000] [--keep PATH | --reuse PATH]

To compare with other code, copy this file into that tree's bench/ and run it there with --reuse on the same store.
"""

from __future__ import annotations

import argparse
import shutil
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

from miner.store import Store  # noqa: E402
from miner.timeutil import iso  # noqa: E402

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ALL = 2**63 - 1  # `miner outbox --all`'s limit: SQLite's largest integer


def build(path: Path, sent: int, pending: int, held: int) -> None:
    """The outbox of the module docstring: ``sent`` rows sent (a page and a resolve notice per incident), then the
    backlog, each held notice right after its page, the rest of it between them."""
    store = Store.open(path)
    t0 = time.monotonic()
    rows: list[tuple[str, int, str, str]] = []  # (kind, incident, status, next_attempt_at), in planning order
    for i in range(sent // 2):
        rows += [("alert", i, "sent", iso(NOW - timedelta(days=30))), ("resolved", i, "sent", iso(NOW))]
    first = sent // 2
    backoff = iso(NOW + timedelta(minutes=25))
    due = iso(NOW - timedelta(hours=3))
    plain = pending - 2 * held
    if plain < 0:
        raise SystemExit("--pending must hold each held notice and its page: at least twice --held")
    for k in range(held):
        rows += [("alert", first + k, "pending", backoff), ("resolved", first + k, "pending", due)]
        rows += [("alert", first + held + j, "pending", due) for j in range(k * plain // held, (k + 1) * plain // held)]
    with store.database.transaction() as tx:
        incidents = max(i for _, i, _, _ in rows) + 1
        tx.executemany("INSERT INTO incidents (id, service, status, opened_at, updated_at, peak_complaints, "
                       "peak_score, baseline, total_complaints, symptoms, sample_post_ids) VALUES (?, 'Svc', "
                       "'resolved', ?, ?, 40, 9.5, 2.0, 200, '{}', '[]')",
                       ((i + 1, iso(NOW), iso(NOW)) for i in range(incidents)))
        for n, (kind, incident, status, at) in enumerate(rows, start=1):
            key = f"{kind}:{incident}:{n}"
            tx.execute("INSERT INTO outbox (id, dedupe_key, route, channel, kind, status, message_id, created_at, "
                       "next_attempt_at, attempts, sent_at, last_error) VALUES (?, ?, 'oncall', 'email', ?, ?, ?, ?, "
                       "?, ?, ?, ?)",
                       (n, key, kind, status, f"<{n}@bench>", at, at, 1 if at == backoff else 0,
                        at if status == "sent" else None, "SMTP 451 try again later" if at == backoff else None))
            tx.execute("INSERT INTO outbox_items (item_key, outbox_id, incident_id, kind) VALUES (?, ?, ?, ?)",
                       (key, n, incident + 1, "open" if kind == "alert" else "resolve"))
    store.close()
    print(f"built {len(rows):,} rows ({sent:,} sent, {pending:,} pending, {held:,} held) in "
          f"{time.monotonic() - t0:.1f} s", flush=True)


def timings(call: Callable[[], object], runs: int) -> str:
    took = []
    for _ in range(runs):
        t = time.perf_counter()
        call()
        took.append(time.perf_counter() - t)
    return f"{statistics.median(took) * 1000:8.1f} ms median of {runs} (first {took[0] * 1000:.1f} ms)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sent", type=int, default=100_000)
    parser.add_argument("--pending", type=int, default=5_000)
    parser.add_argument("--held", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--keep", type=Path, help="build the store here and keep it")
    parser.add_argument("--reuse", type=Path, help="measure a store kept earlier")
    args = parser.parse_args()
    print(describe(), flush=True)
    work = Path(tempfile.mkdtemp(prefix="outbox-bench-"))
    try:
        path = args.reuse or args.keep or work / "outbox.sqlite"
        if not args.reuse:
            build(path, args.sent, args.pending, args.held)
        store = Store.open(path, readonly=True)
        try:
            listed = store.outbox_listing(["pending"], ALL)
            holding = sum(1 for r in listed if r.get("waits_for") or r.get("goes_after") is not None)
            print(f"{len(listed):,} pending rows listed, {holding:,} of them held", flush=True)
            queued, every = ["pending", "sending", "failed"], ["pending", "sending", "failed", "sent", "suppressed"]
            cases: list[tuple[str, Callable[[], object]]] = [
                ("`miner outbox` (the newest 50 pending, sending, failed)", lambda: store.outbox_listing(queued, 50)),
                ("`miner outbox --all` (the newest 50 rows)", lambda: store.outbox_listing(every, 50)),
                ("`miner outbox --limit N` (every pending row)", lambda: store.outbox_listing(queued, ALL)),
                ("`miner outbox --all --limit N` (every row)", lambda: store.outbox_listing(every, ALL)),
                ("due_in_claim_order (100)", lambda: store.due_in_claim_order(NOW, 100)),
            ]
            for name, call in cases:
                print(f"  {name:<58} {timings(call, args.runs)}", flush=True)
        finally:
            store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

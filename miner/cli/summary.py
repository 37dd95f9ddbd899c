"""The summary a person reads after a replay or the demo: what was stored, classified and detected."""

from __future__ import annotations

import json
from collections.abc import Callable

from miner.cli.output import table
from miner.config import Config
from miner.store import Store


def print_summary(store: Store, config: Config, echo: Callable[[str], None]) -> None:
    totals = store.totals()
    echo(f"\n{totals.get('posts', 0)} posts stored, {totals.get('matched', 0)} matched to a service, "
         f"{totals.get('complaints', 0)} classified as outage reports")
    rows = store.service_totals()
    if rows:
        echo(table(("service", "posts", "complaints"), [(r["service"], r["posts"], r["complaints"]) for r in rows]))
    incidents = store.incidents()
    echo(f"\n{len(incidents)} incidents detected (buckets of {config.detector.bucket_minutes} min)")
    if incidents:
        inc_rows = []
        for inc in incidents:
            symptoms = json.loads(inc["symptoms"] or "{}")
            top = ", ".join(f"{k} {v}" for k, v in list(symptoms.items())[:3])
            inc_rows.append((inc["id"], inc["service"], inc["opened_at"][:16].replace("T", " "),
                             (inc["resolved_at"] or "open")[:16].replace("T", " "), inc["peak_complaints"],
                             round(inc["peak_score"], 1), round(inc["baseline"], 1), top))
        echo(table(("id", "service", "opened (UTC)", "resolved", "peak", "z", "baseline", "symptoms"), inc_rows))
        first = incidents[0]
        samples = json.loads(first["sample_post_ids"] or "[]")
        if samples:
            echo(f"\nsample posts of incident {first['id']} ({first['service']}):")
            for post in store.posts_by_id(samples)[:3]:
                echo(f"  - {post['text'][:160]}")
    echo(f"\nstore: {store.path} (explore it: miner --db {store.path} query \"SELECT * FROM incidents\")")

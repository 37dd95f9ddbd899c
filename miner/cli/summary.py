"""The summary a person reads after a replay or the demo: what was stored, classified and detected."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from miner.alerts.content import baseline_text
from miner.cli.output import table
from miner.config import Config
from miner.store import Store
from miner.store.incidents import UnscoredGap
from miner.timeutil import counted

_T = TypeVar("_T", list[Any], dict[str, Any])


def _column(text: str | None, empty: _T) -> _T:
    # A JSON column of a row edited by hand (or cut short) is read as empty: the summary comes once a replay has
    # stored every post, and it failed there with "internal error".
    try:
        value = json.loads(text or "null")
    except ValueError:
        return empty
    return value if isinstance(value, type(empty)) else empty


class _Baseline(float):
    """A baseline written as alerts write it (0.35, 20.0), and aligned by the table as the number it is."""

    def __str__(self) -> str:
        return baseline_text(self)


def _baseline(store: Store, inc: dict[str, Any], width: timedelta | None) -> _Baseline:
    """The baseline the incident's alerts set its peak against (its peak bucket's): the table gave the opening
    bucket's to one decimal, 0.4 beside the demo's emails' 0.35."""
    return _Baseline(store.peak_baseline(inc, width, datetime.max.replace(tzinfo=UTC)) or 0)


def _ended(inc: dict[str, Any], unseen: UnscoredGap | None) -> str:
    """The summary's resolved column: when, or for an incident resolved after a gap in scoring, the bounds of its
    unseen end, as its alerts give them (its resolved_at is when miner scored again, hours after it maybe)."""
    if unseen is None:
        return str(inc["resolved_at"] or "open")[:16].replace("T", " ")
    end = unseen.end.strftime("%H:%M" if unseen.end.date() == unseen.ended_from.date() else "%Y-%m-%d %H:%M")
    return f"end not seen: {unseen.ended_from:%Y-%m-%d %H:%M} to {end}"


def print_summary(store: Store, config: Config, echo: Callable[[str], None]) -> None:
    totals = store.totals()
    echo(f"\n{totals.get('posts', 0)} posts stored, {totals.get('matched', 0)} matched to a service, "
         f"{totals.get('complaints', 0)} classified as outage reports")
    rows = store.service_totals()
    if rows:
        echo(table(("service", "posts", "complaints"), [(r["service"], r["posts"], r["complaints"]) for r in rows]))
    incidents = store.incidents()
    echo(f"\n{counted(len(incidents), 'incident')} detected (buckets of {config.detector.bucket_minutes} min)")
    if incidents:
        minutes = store.bucket_minutes()
        width = timedelta(minutes=minutes) if minutes else None
        inc_rows = []
        _, unseen = store.ended_unseen([inc["id"] for inc in incidents if inc["status"] == "resolved"])
        for inc in incidents:
            symptoms = _column(inc["symptoms"], {})
            top = ", ".join(f"{k} {v}" for k, v in list(symptoms.items())[:3])
            inc_rows.append((inc["id"], inc["service"], inc["opened_at"][:16].replace("T", " "),
                             _ended(inc, unseen.get(inc["id"])), inc["peak_complaints"],
                             round(inc["peak_score"], 1), _baseline(store, inc, width), top))
        echo(table(("id", "service", "opened (UTC)", "resolved", "peak", "z", "baseline", "symptoms"), inc_rows))
        first = incidents[0]
        # The ids only (not a bool, nor past SQLite's 64 bits): a list of anything else failed the read of the posts.
        samples = [i for i in _column(first["sample_post_ids"], []) if type(i) is int and -2**63 <= i < 2**63]
        if posts := store.posts_by_id(samples)[:3]:
            echo(f"\nsample posts of incident {first['id']} ({first['service']}):")
            for post in posts:
                echo(f"  - {post['text'][:160]}")
    echo(f"\nstore: {store.path} (explore it: miner --db {store.path} query \"SELECT * FROM incidents\")")

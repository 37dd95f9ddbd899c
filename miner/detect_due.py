"""When a service's buckets are scored: once the sources polled for its posts have brought them (see
collected_until), the detect stage (miner/detect_stage.py) and ``miner status`` alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from miner.config import Config
from miner.detect import DetectorState, due_buckets
from miner.source_settings import STATUS_TYPES
from miner.timeutil import parse_iso


def collected_until(config: Config, service: str, sources: dict[str, dict[str, Any]], now: datetime
                    ) -> tuple[datetime | None, dict[str, datetime]]:
    """Up to when ``service``'s posts are collected: its buckets that end later wait (None: none wait). With it, the
    sources waited for, each with the time up to which it has brought them: a bucket that ends later waits for the
    next poll of those (``miner status`` names them).

    While one of the sources polled for its posts works: the earliest of their last successful polls (the time
    that collect round began), but no earlier than detector.settle_minutes ago. Scored as soon as it ended, a
    bucket had only the posts the polls before its end had brought: with sources polled every 5 minutes, 2
    minutes into each 5-minute bucket, 40 % of its complaints; the rest came late and changed no score.

    Not while none of them has polled since settle_minutes ago though each was due to (its next poll time has
    passed): the collect job stalled, or the host was suspended, and its buckets scored empty resolved an outage
    still going on. Then as while every one fails, up to the latest of their last polls. A source polled less often
    than settle_minutes, not yet due, or one behind among others that polled, holds no bucket past settle_minutes.

    While every one of them fails: the last time one of them succeeded, up to which its posts can have been
    collected, unless that is more than max_fill_hours ago (or one never did): buckets that old are skipped as
    our own outage, and the user reports of the time since are scored rather than held for as long as a
    source stays broken. Their silence is our own outage, not the end of the service's: its buckets scored
    empty resolved an outage still going on and were learned as quiet, and the posts their cursors bring once
    they work again, late.
    """
    # Status page sources bring the provider's incidents, not posts: their failures leave no bucket short.
    mine = [s.name for s in config.sources if s.enabled and s.type not in STATUS_TYPES
            and (not s.services or service.lower() in {n.lower() for n in s.services})]
    rows = {name: sources.get(name) for name in mine}
    # A source not polled yet (just added) has nothing to wait for; one failing is waited for below, if all are.
    working = {name: r for name, r in rows.items()
               if r is not None and r["last_ok_at"] and not r["consecutive_failures"]}
    if working:
        settled = now - timedelta(minutes=config.detector.settle_minutes)
        # A poll that stopped before it had read everything new (its page cap, a rate limit: FetchResult.behind)
        # did not bring the posts up to its start: in a burst past the cap, an outage's, the bucket just ended
        # was scored on the pages read first.
        marks = {name: settled if r["behind"] else parse_iso(r["last_ok_at"]) for name, r in working.items()}
        polled = {name: parse_iso(r["last_ok_at"]) for name, r in working.items()}
        newest = max(polled.values())
        due = [r["next_poll_at"] for r in working.values() if r["next_poll_at"]]
        if newest >= settled or not due or any(parse_iso(at) > now for at in due):
            return max(settled, min(marks.values())), marks
        # None has polled for settle_minutes, though each is due (none polls less often than that): the collect
        # job stalled, or the host was suspended. Not the sources' silence, ours, as while they all fail below.
        return (newest, polled) if now - newest <= timedelta(hours=config.detector.max_fill_hours) else (None, {})
    if not rows or any(r is None or not r["last_ok_at"] for r in rows.values()):
        return None, {}
    marks = {name: parse_iso(r["last_ok_at"]) for name, r in rows.items() if r is not None}
    until = max(marks.values())
    return (until, marks) if now - until <= timedelta(hours=config.detector.max_fill_hours) else (None, {})


@dataclass(frozen=True)
class Due:
    """What a service's detector does at a time (see due_now)."""

    buckets: list[datetime]  # the starts of the buckets it scores
    waiting_for: list[str]  # when it scores none though a bucket has ended since: whose poll that one waits for


def due_now(config: Config, service: str, state: DetectorState | None, sources: dict[str, dict[str, Any]],
            now: datetime) -> Due:
    """The buckets ``service``'s detector, at ``state``, scores at ``now``: those that ended since its last one up
    to when its posts are collected (see collected_until), and when there are none though a bucket has ended, the
    sources whose next poll that bucket waits for. The detector steps these, and ``miner status`` shows them: status
    worked the wait out again on its own, and on a service's first run (the detector scores the latest bucket its
    posts are collected for, never waiting) said the service waited for its sources.
    """
    until, marks = collected_until(config, service, sources, now)
    due = due_buckets(config.detector, state, now if until is None else min(now, until))
    if due or until is None:
        return Due(due, [])
    ended = due_buckets(config.detector, state, now)
    if not ended:
        return Due([], [])
    end = ended[0] + timedelta(minutes=config.detector.bucket_minutes)
    return Due([], sorted(name for name, mark in marks.items() if mark < end))

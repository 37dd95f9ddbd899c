"""Digests into the outbox: each route's on its cron schedule, and one now (`miner digest`), over the period since
the last one.

A route's schedule keeps its anchor in the store (``alert_state``): the end of the period the last digest queued
covered, moved in the transaction that queues the next, so two planners queue each digest once.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from miner.alerts.digest_content import digest_incident_rows
from miner.alerts.digest_officials import digest_officials
from miner.alerts.planner import make_message_id
from miner.alerts.schedule import next_fire
from miner.alerts.settings import AlertSettings, RouteSettings
from miner.timeutil import iso, parse_iso

if TYPE_CHECKING:
    from miner.store import Store


def _anchor_key(route: RouteSettings) -> str:
    return f"digest_anchor:{route.name}"


def enqueue_due_digests(store: Store, settings: AlertSettings, now: datetime, *,
                        sources: Collection[str] | None = None) -> int:
    """Enqueue each route's digest whose scheduled time has come; missed runs coalesce into one.

    ``sources``: the configured sources' names; only their failures count as news for a quiet digest.
    """
    if not settings.enabled:
        return 0
    queued = 0
    for route in settings.routes:
        if not route.digest:
            continue
        anchor_text = store.alert_state(_anchor_key(route))
        if anchor_text is None:
            # First sight of this schedule: start counting from now rather than mailing the past.
            store.set_alert_state(_anchor_key(route), iso(now))
            continue
        anchor = parse_iso(anchor_text)
        fire = next_fire(route.digest, route.timezone, anchor)
        if fire is None or fire > now:
            continue
        for _ in range(100_000):
            later = next_fire(route.digest, route.timezone, fire)
            if later is None or later > now:
                break
            fire = later
        if not route.digest_when_quiet and not _has_news(store, route, anchor, fire, sources):
            store.set_alert_state(_anchor_key(route), iso(fire))
            continue
        payload = {"as_of": iso(fire), "since": iso(anchor)}
        if store.enqueue_digest(f"digest:{route.name}:{iso(fire)}", route.name, make_message_id(settings), payload,
                                now, _anchor_key(route), iso(fire)):
            queued += 1
    return queued


def digest_since(store: Store, route: RouteSettings, now: datetime) -> datetime:
    """Where a digest of ``route`` as of ``now`` outside its schedule starts: at the schedule's anchor, the end of the
    last digest's period, so it covers what the next scheduled one would; a day back where the route has none yet,
    or where ``now`` (`--at`) is not after it. `miner digest` queues this period and its --dry-run renders it."""
    return _since(store.alert_state(_anchor_key(route)), now)


def _since(anchor_text: str | None, now: datetime) -> datetime:
    if anchor_text and (anchor := parse_iso(anchor_text)) < now:
        return anchor
    return now - timedelta(days=1)


def enqueue_digest_now(store: Store, settings: AlertSettings, route: RouteSettings, now: datetime) -> bool:
    """Enqueue a digest of ``route`` as of ``now`` outside its schedule (`miner digest`)."""
    # The anchor read once: the period and the anchor the queueing checks are the same reading.
    anchor_text = store.alert_state(_anchor_key(route))
    since = _since(anchor_text, now)
    message_id = make_message_id(settings)
    # Each one asked for is queued: keyed by its time alone, a second `miner digest` in the same second, or with the
    # same --at, was taken for the first, queued nothing, and said it had.
    return store.enqueue_digest(f"digest:{route.name}:manual:{iso(now)}:{message_id}", route.name, message_id,
                                {"as_of": iso(now), "since": iso(since)}, now, _anchor_key(route),
                                anchor_text or iso(now))


def _has_news(store: Store, route: RouteSettings, since: datetime, as_of: datetime,
              sources: Collection[str] | None) -> bool:
    """Whether the digest rendered as of ``as_of`` has anything to say (the same window it is rendered over)."""
    if digest_incident_rows(store, route.matches, since, as_of):
        return True
    if digest_officials(store, route.matches, since, as_of, sources):
        return True
    return bool(store.failing_sources(sources))

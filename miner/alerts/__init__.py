"""Alert delivery: immediate alerts, resolve notices and digests by email and webhook, through an outbox.

Public API for the pipeline (``now`` is always passed in, so a replay sends what the service would have):

``plan_notifications(store, settings, now) -> int``
    Read incident transitions logged since the planner's cursor and write outbox rows: an alert per (re-)opening
    and a notice per resolve, per route and channel, after routes, silences, maintenance windows and
    inhibition; repeats of still-open incidents after ``repeat_interval``; queued alerts muted since they were
    planned are recorded as suppressed. Idempotent; safe in two processes.
``enqueue_due_digests(store, settings, now, *, sources=None) -> int``
    Queue each route's digest whose cron time has come (missed runs coalesce into one).
``dispatch(store, settings, now, *, worker_id, senders=None, sources=None, clock=None) -> DispatchStats``
    Claim the rows due at ``now`` one at a time (conditional UPDATE, stamped with ``clock()``: by default ``now``
    plus the real time elapsed), send them through ``senders`` (default: SMTP and httpx from the settings; the
    demo passes ``FileSenders(dir).senders()``), retry failures with backoff.
``render_digest(store, settings, now, route, *, sources=None) -> RenderedDigest``
    The digest email of a route: text, html, PNG charts by content id, and the ``EmailMessage``.
``write_digest_files(store, settings, now, out_dir, route=None, *, as_queued=False, sources=None) -> list[Path]``
    The digest as .eml, .html (+ PNGs) and .txt files, for the demo and ``miner digest --dry-run`` (``as_queued``:
    over the period ``miner digest`` would queue, since each route's last digest).
``run_alerts(store, settings, now, *, worker_id, senders=None, sources=None) -> DispatchStats``
    The three steps in order, for one service tick.

``sources`` is the config's enabled source names (``Config.polled_sources``): the digest lists only their poll
failures, not those of sources removed from feeds.toml (``None``: every source in the store).

Delivery is exactly once up to the SMTP/HTTP boundary and at least once across it: a crash after the server
accepted a message but before the outbox recorded it resends it, with the same Message-ID (email) or ``id``
(webhook JSON), so receivers can drop the duplicate. See docs/alerts.md.

Heavy imports (matplotlib, httpx, jinja2) load on first use, so reading feeds.toml stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from miner.alerts.delivery import DeliveryError, Senders, SmtpSender
    from miner.alerts.digests import enqueue_digest_now, enqueue_due_digests
    from miner.alerts.dispatcher import DispatchStats, dispatch
    from miner.alerts.files import FileSenders, write_digest_files
    from miner.alerts.planner import plan_notifications
    from miner.alerts.render import Rendered, RenderedDigest, render_digest
    from miner.alerts.runner import run_alerts
    from miner.alerts.webhook_send import HttpWebhookSender

_LAZY = {
    "DeliveryError": "delivery", "HttpWebhookSender": "webhook_send", "Senders": "delivery", "SmtpSender": "delivery",
    "DispatchStats": "dispatcher", "dispatch": "dispatcher",
    "FileSenders": "files", "write_digest_files": "files",
    "enqueue_digest_now": "digests", "enqueue_due_digests": "digests", "plan_notifications": "planner",
    "Rendered": "render", "RenderedDigest": "render", "render_digest": "render",
    "run_alerts": "runner",
}

__all__ = [
    "DeliveryError", "DispatchStats", "FileSenders", "HttpWebhookSender", "Rendered", "RenderedDigest", "Senders",
    "SmtpSender", "dispatch", "enqueue_digest_now", "enqueue_due_digests", "plan_notifications", "render_digest",
    "run_alerts", "write_digest_files",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'miner.alerts' has no attribute {name!r}")
    return getattr(importlib.import_module(f"miner.alerts.{module}"), name)

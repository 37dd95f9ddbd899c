"""Send what the outbox holds: reclaim stale claims, claim due rows one by one, send, record the outcome.

A row is claimed with a conditional UPDATE before anything leaves the process, so two dispatchers (threads or
processes on one store) never send the same row. Due rows are claimed pages first, each incident's messages in the
order they were planned (store/outbox_order.py). Each row is claimed, and each attempt recorded, at the clock's time
when it happens, not at the ``now`` the run started with: a run sending many slow messages must not claim its later
rows already looking older than the lease (another dispatcher would take them over mid-send). A worker that dies
mid-send leaves a 'sending' claim that returns to pending after ``lease_seconds`` and is sent again with the same
Message-ID. Failures retry with exponential backoff and jitter until they are given up (retry.py: old enough and
failed often enough); permanent errors fail at once with their reason. Once a channel's server (the SMTP server, one
webhook's endpoint) is found unreachable in a run, that channel's other rows are left pending for the next run,
unclaimed and untried: each would wait out the same timeout, and a page queued behind a run of emails to a dead mail
server went minutes late. A webhook that answers 429 (or sends Retry-After) holds its other rows too, in this run
and the next, until the time its throttled row is retried: each of them went straight into the rate limit it had
just announced. Given a ``deadline`` (the service's alerts job: its interval), a run claims no row past it, after
its first attempt, and leaves the rest pending for the next run: a backlog sent to a slow server in one run
outlasted the job's limit, and systemd's watchdog restarted the service mid-send, while nothing new was planned.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from miner.alerts.claim import Claim, NotRecorded
from miner.alerts.content import item_views, most_important
from miner.alerts.delivery import (
    DeliveryError,
    NothingSent,
    Senders,
    SendStopped,
    send_email,
)
from miner.alerts.pagerduty_events import pagerduty_events
from miner.alerts.pagerduty_send import pagerduty_store_key, send_events
from miner.alerts.render import alert_subject, render_outbox_row, still_resolved
from miner.alerts.retry import retry, store_failed
from miner.alerts.settings import AlertSettings
from miner.alerts.webhook_send import default_senders
from miner.alerts.webhooks import json_payload, slack_payload, teams_payload
from miner.errors import MinerError, StoreError
from miner.store.channel_health import unreachable_key
from miner.store.outbox import Finish
from miner.timeutil import counted, iso, parse_iso

if TYPE_CHECKING:
    from miner.store import Store

log = logging.getLogger(__name__)


@dataclass
class DispatchStats:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    reclaimed: int = 0  # stale claims returned to pending (a worker crashed or hung)
    lost_races: int = 0  # rows another worker claimed (or a failed attempt rescheduled) first
    lapsed: int = 0  # sent, but our claim had already lapsed and been reclaimed
    held: int = 0  # due, but held until group_interval after the last message of its route, channel and group
    waiting: int = 0  # due, but held until an older alert of its route, channel and incident has gone (outbox_order)
    deferred: int = 0  # due, but left for the next run: their channel's server was unreachable in this one
    throttled: int = 0  # due, but left until their webhook's rate limit (a 429, Retry-After) has passed
    needs_action: int = 0  # retried, but failed as retrying alone will not mend (TLS: DeliveryError.needs_action)
    left: int = 0  # due and listed, but left for the next run: this one had reached its deadline
    # Of the rows claimed, those whose attempt the store failed while their message was prepared (retried: nothing
    # went out), each with that StoreError's text, cause and same_as (not the error, which holds its frames); and
    # the others, which got past that, whatever came of them. The service's alerts job counts the first as a store
    # failure of its own (alerts/unprepared.py): the retries alone showed it nowhere but in the log.
    unprepared: dict[int, tuple[str, str, str]] = field(default_factory=dict)
    prepared: set[int] = field(default_factory=set)


def dispatch(store: Store, settings: AlertSettings, now: datetime, *, worker_id: str,
             senders: Senders | None = None, limit: int = 100, rng: random.Random | None = None,
             sources: Collection[str] | None = None, stop: threading.Event | None = None,
             clock: Callable[[], datetime] | None = None, deadline: float | None = None) -> DispatchStats:
    """Send every outbox row due at ``now`` (up to ``limit``) as ``worker_id``; see the module docstring.

    ``sources``: the configured sources' names, for the digests' failing sources (None: every stored source).
    ``stop``: once set (the service is stopping), no further row is claimed; the rest wait for the next run.
    ``clock``: the time of each claim, attempt and its record; by default ``now`` plus the real time elapsed since
    the call, so a replay on a simulated clock stays on it while slow sends still age their claims truthfully.
    ``deadline``: a time.monotonic() after which no further row is claimed once one has been (so each run gets on);
    the rest wait, unclaimed and untried, for the next run (None: every row due, up to ``limit``).
    """
    stats = DispatchStats()
    if not settings.enabled:
        return stats
    senders = senders or default_senders(settings.smtp, stop)
    rng = rng or random.Random()
    clock = clock or _elapsed_clock(now)
    stats.reclaimed = store.reclaim_stale(now - timedelta(seconds=settings.lease_seconds))
    if stats.reclaimed:
        log.warning("returned %s to pending", counted(stats.reclaimed, "stale outbox claim"))
    if superseded := store.supersede_digests(now):
        log.info("%s superseded by a later digest of their route, which covers their period too",
                 counted(superseded, "queued digest"))
    run = _Run(store, settings, now, worker_id, senders, rng, sources, clock, stats, stop=stop)
    listed = store.due_in_claim_order(now, limit)  # pages first (store/outbox_order.py)
    # Channels found unreachable at an earlier run go last: a page planned since goes out before the next try of
    # a dead mail server, not one SMTP timeout later at every run of its outage.
    suspect = {ch for ch in {str(r["channel"]) for r in listed} if store.alert_state(unreachable_key(ch))}
    seen: set[int] = set()
    while listed:
        full = len(listed) == limit
        gone_down = False
        ordered = sorted(listed, key=lambda r: str(r["channel"]) in suspect)
        for i, row in enumerate(ordered):
            if stop is not None and stop.is_set():
                return run.finish()  # a batch to a hanging server would outlast the stop timeout
            if deadline is not None and stats.claimed and time.monotonic() >= deadline:
                # Real time, not the clock's: a replay's simulated clock steps hours between its runs.
                stats.left = len(ordered) - i
                return run.finish()
            seen.add(int(row["id"]))
            gone_down |= run.one(row, suspect)
        if not (full and gone_down):
            break
        # The listing was full and a channel went down: rows of the other channels past it are due too, and would
        # wait behind the down channel's (due still, and listed first again) at every run while it stays down.
        # Rows tried already (held back, or lost to another worker) are left out by the query, not after it: left
        # out after, they made a full listing look short and the loop stopped with more rows due.
        listed = store.due_in_claim_order(now, limit, exclude_channels=sorted({*run.down, *run.waiting}),
                                         exclude_ids=sorted(seen))
    return run.finish()


def _throttled_key(channel: str) -> str:
    """alert_state: the outbox row ``channel``'s server last throttled (a 429, Retry-After); its channel waits for
    its retry. The row, not a time: a retry time stamped by a clock that was ahead is taken back with the row
    (Store.retime_alerts), where a time kept here held the channel until real time reached it."""
    return f"throttled:{channel}"


@dataclass
class _Run:
    """One dispatch run's rows, sent one at a time."""

    store: Store
    settings: AlertSettings
    now: datetime
    worker_id: str
    senders: Senders
    rng: random.Random
    sources: Collection[str] | None
    clock: Callable[[], datetime]
    stats: DispatchStats
    down: dict[str, int] = field(default_factory=dict)  # channel -> its rows left for the next run
    held_until: dict[str, datetime | None] = field(default_factory=dict)  # channel -> its rate limit's end
    waiting: dict[str, int] = field(default_factory=dict)  # channel -> its rows left until then
    stop: threading.Event | None = None

    def one(self, listed: dict[str, Any], suspect: set[str]) -> bool:
        """Send one listed row (unless held, taken, or its channel is down or throttled); True when its channel is
        found unreachable or throttled (its rows are then left out of a further listing in the run)."""
        store, stats, clock = self.store, self.stats, self.clock
        if (channel := str(listed["channel"])) in self.down:
            # Not claimed, so not an attempt: it is due still, and tried at the next run. Each of them waiting out
            # the same timeout held back the other channels' rows after them (a page behind 100 emails).
            self.down[channel] += 1
            stats.deferred += 1
            return False
        if (until := self._rate_limited(channel)) is not None and until > clock():
            first = channel not in self.waiting
            self.waiting[channel] = self.waiting.get(channel, 0) + 1
            stats.throttled += 1
            return first
        if _held(store, self.settings, listed, clock()):
            stats.held += 1
            return False
        row = store.claim_due(listed["id"], self.worker_id, clock(), self.now)
        if row is None and store.waits_for_older(int(listed["id"])):
            # Behind an older alert of its incident that failed in this run (claim_due refuses it): not claimed, not
            # an attempt. Asked only of a row not claimed: a claimed one had no older alert to wait for.
            log.info("outbox %d (%s %s, route %s): held until the older alert of its incident on the channel has "
                     "gone", listed["id"], listed["kind"], channel, listed["route"])
            stats.waiting += 1
            return False
        if row is None:
            stats.lost_races += 1
            return False
        stats.claimed += 1
        claim = Claim(store, row, self.worker_id, self.settings.lease_seconds, clock, self.stop)
        finish, reached, throttled = _attempt(store, self.settings, row, clock, self.senders, self.rng, self.sources,
                                              stats, claim)
        if int(row["id"]) not in stats.unprepared:
            stats.prepared.add(int(row["id"]))
        # The attempt is recorded first: what the server took must be marked sent before anything else can fail.
        if not claim.finish(finish):
            stats.lapsed += 1
            log.warning("outbox %d: our claim lapsed before we finished (%s)", row["id"], finish.outcome)
        if throttled and finish.next_attempt_at is not None:
            self.held_until[channel] = finish.next_attempt_at
            self.waiting.setdefault(channel, 0)
            store.set_alert_state(_throttled_key(channel), str(row["id"]))
        if reached is False:
            self.down[channel] = 0
            store.set_alert_state(unreachable_key(channel), finish.detail or "unreachable")
        elif reached and channel in suspect:
            suspect.discard(channel)
            store.set_alert_state(unreachable_key(channel), "")
            throttling = store.alert_state(_throttled_key(channel)) or ""
            keep = {int(row["id"]), *([int(throttling)] if throttling.isdigit() else [])}
            if released := store.due_after_outage(channel, clock(), keep):
                log.info("%s answers again: %s waiting out a retry from its outage %s due now", channel,
                         counted(released, "message"), "is" if released == 1 else "are")
        if finish.outcome == "sent":
            stats.sent += 1
        elif finish.outcome == "retry":
            stats.retried += 1
        else:
            stats.failed += 1
        return reached is False or (throttled and finish.next_attempt_at is not None)

    def _rate_limited(self, channel: str) -> datetime | None:
        """Until when ``channel``'s server asked to be left alone (by an earlier run too), or None: the retry time of
        the row it throttled, while that row waits for it (sent, muted or taken by a worker since: not held)."""
        if channel not in self.held_until:
            value = self.store.alert_state(_throttled_key(channel)) or ""
            row = self.store.notification(int(value)) if value.isdigit() else None
            self.held_until[channel] = (parse_iso(row["next_attempt_at"]) if row and row["status"] == "pending"
                                        and row["attempts"] else None)
        return self.held_until[channel]

    def finish(self) -> DispatchStats:
        if self.stats.left:
            # Debug: the service's alerts job sends a backlog in such runs, back to back, and says so at its first
            # and at its end (ServiceJobs.job_alerts); at INFO, this came at each, every 30 s for the whole backlog.
            log.debug("%s left for the next run (and any others due): this run reached its deadline, after %s",
                      counted(self.stats.left, "due outbox message"), counted(self.stats.claimed, "attempt"))
        for channel, n in self.down.items():
            if n:
                log.warning("%s for %s left for the next run: its server was unreachable",
                            counted(n, "due outbox message"), channel)
        for channel, n in self.waiting.items():
            if n:
                log.info("%s for %s held until %s: it asked to be left alone (429, Retry-After)",
                         counted(n, "due outbox message"), channel, iso(self.held_until[channel] or self.now))
        return self.stats


def _held(store: Store, settings: AlertSettings, row: dict[str, Any], now: datetime) -> bool:
    """Whether a due alert or resolve notice waits for its route's group_interval (store/group_interval.py): the message
    before it of its route, channel and group went out after it was planned, so what is planned meanwhile joins it."""
    route = settings.route(row["route"])
    if route is None or row["kind"] == "digest" or row["attempts"]:
        return False
    interval = settings.group_interval_for(route).total_seconds()
    if interval <= 0 or (until := store.hold_for_group_interval(row["id"], interval, now)) is None:
        return False
    group = f", group {row['group_key']}" if row["group_key"] else ""
    log.info("outbox %d (%s %s, route %s%s): held until %s, group_interval after the last message", row["id"],
             row["kind"], row["channel"], row["route"], group, iso(until))
    return True


def _elapsed_clock(start: datetime) -> Callable[[], datetime]:
    began = time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - began)


def _attempt(store: Store, settings: AlertSettings, row: dict[str, Any], clock: Callable[[], datetime],
             senders: Senders, rng: random.Random, sources: Collection[str] | None,
             stats: DispatchStats, claim: Claim) -> tuple[Finish, bool | None, bool]:
    """The attempt's outcome, whether the channel's server answered (False when it was unreachable,
    DeliveryError.unreachable; None when nothing was sent to it: nothing left to send, a rendering error, the store
    failing while the message was prepared), and whether it asked to be left alone for a while
    (DeliveryError.throttled)."""
    try:
        detail = send_row(store, settings, row, clock(), senders, claim, sources=sources)
    except NotRecorded:
        raise  # not the message's failure: the store's, which ends the run (the record's own error said what follows)
    except NothingSent as exc:
        log.info("outbox %d (%s %s, route %s): %s", row["id"], row["kind"], row["channel"], row["route"], exc)
        return Finish("sent", str(exc), delivered=False), None, False
    except SendStopped as exc:
        # Due at once, with no backoff, and the channel not taken for unreachable: the stop cut it, not the server.
        # Nor counted as an attempt: a server hanging through many stops (reloads) would bring the message closer to
        # being given up (retry.GIVE_UP_ATTEMPTS) at each.
        log.warning("outbox %d (%s): %s", row["id"], row["channel"], exc)
        return Finish("retry", str(exc), clock(), counts=False), exc.reached, False
    except DeliveryError as exc:
        if exc.permanent:
            log.error("outbox %d (%s): failed permanently: %s", row["id"], row["channel"], exc)
            return Finish("failed", str(exc)), not exc.unreachable, False
        if exc.needs_action:
            stats.needs_action += 1
        return (retry(settings, row, clock(), str(exc), exc.retry_after, rng, exc.needs_action),
                not exc.unreachable, exc.throttled)
    except MinerError as exc:
        if isinstance(exc, StoreError):
            # Nothing has gone out: after the first send, send_row touches the store only through the claim
            # (NotRecorded, above). The store's state, not the message's (retry.store_failed).
            stats.unprepared[int(row["id"])] = (str(exc), exc.cause, exc.same_as)
            return store_failed(settings, row, clock(), exc, rng), None, False
        log.error("outbox %d: cannot be rendered: %s", row["id"], exc)
        return Finish("failed", str(exc)), None, False
    except Exception as exc:  # a rendering bug must not wedge the queue: retry, and give up in time
        log.exception("outbox %d: unexpected error", row["id"])
        return retry(settings, row, clock(), f"{type(exc).__name__}: {exc}", None, rng), None, False
    log.info("outbox %d (%s %s, route %s): %s", row["id"], row["kind"], row["channel"], row["route"], detail)
    return Finish("sent", detail), True, False


def send_row(store: Store, settings: AlertSettings, row: dict[str, Any], now: datetime, senders: Senders,
             claim: Claim, *, sources: Collection[str] | None = None) -> str:
    """Render and send one claimed row; returns the sender's note, raises DeliveryError, NothingSent or MinerError
    (NotRecorded: whom it reached could not be recorded). Its ``claim`` records whom the message reached; its stop
    set, a PagerDuty message sends no further event (send_events). Any other StoreError comes before anything is
    sent: once something is, only the claim touches the store."""
    route = settings.route(row["route"])
    if route is None:
        raise MinerError(f"route {row['route']!r} is no longer configured")
    channel = str(row["channel"])
    if row["kind"] == "resolved" and not _any_still_resolved(store, row, now):
        # Sent after the re-opening's alert, "RESOLVED" would be the last word on an outage that is on again.
        raise NothingSent("nothing to send: its incidents opened again before their resolve notice went out")
    # Planned before feeds.toml changed: a channel the route no longer has is no longer where its news goes. An
    # email with no recipients left would otherwise be "sent" to nobody.
    if (why := settings.unsendable(route.name, channel)) is not None:
        raise MinerError(why)
    if channel == "email":
        rendered = render_outbox_row(store, settings, row, now, sources=sources)
        return send_email(store, claim, senders.email, rendered.message, list(route.email))
    webhook = settings.webhook(channel.removeprefix("webhook:"))
    assert webhook is not None  # unsendable said so otherwise
    items = store.notification_items(row["id"])
    views = most_important(item_views(store, settings, items, now))
    if not views:
        raise MinerError("its incidents are gone from the store")
    if row["kind"] == "resolved":
        views = still_resolved(views)
    reminders = {it["incident_id"] for it in items if it["kind"] == "repeat"}
    if webhook.format == "pagerduty":
        # Every incident of the batch, not the first MAX_INCIDENTS: each is an event of its own, and one left out
        # would be paged for never (or stay open on PagerDuty).
        events = pagerduty_events(row["kind"], views, route=route.name, reminders=reminders,
                                  severity=webhook.severity, providers=settings.providers,
                                  dashboard_url=settings.dashboard_url, resolve=route.notify_resolved,
                                  store_key=pagerduty_store_key(store))
        return send_events(store, claim, senders.webhook, webhook, events)
    if webhook.format in ("slack", "teams"):
        only_reminders = bool(reminders) and len(reminders) == len(items)
        subject = alert_subject(settings, row["kind"], views, reminder=only_reminders)
        chat = slack_payload if webhook.format == "slack" else teams_payload
        body = chat(row["kind"], views, subject=subject, reminders=reminders)
    else:
        body = json_payload(row["kind"], views, route=route.name, message_id=row["message_id"], now=now,
                            reminders=reminders)
    return senders.webhook(webhook, body)


def _any_still_resolved(store: Store, row: dict[str, Any], now: datetime) -> bool:
    """Whether any incident of resolve notice ``row`` is still resolved as of ``now`` (render.still_resolved)."""
    for item in store.notification_items(row["id"]):
        incident = store.incident(item["incident_id"])
        if incident is None or (incident.get("resolved_at") and parse_iso(incident["resolved_at"]) <= now):
            return True  # a vanished incident fails the row where it is rendered, as before
    return False

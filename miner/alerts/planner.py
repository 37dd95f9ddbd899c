"""Turn incident transitions into outbox rows: routes, silences, maintenance, inhibition, repeats.

The planner reads the transitions log after a cursor it keeps in the store, decides, and writes its items and
the new cursor in one transaction that fails over if another planner moved the cursor first, so running it
twice (or in two processes) plans each notification once. Nothing here sends anything.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import TYPE_CHECKING, Any

from miner.alerts.settings import AlertSettings, RouteSettings
from miner.alerts.text import idna_address
from miner.errors import StoreError
from miner.store.incidents import is_reopening
from miner.store.mutes import MutedItem, silence_matches
from miner.store.outbox import PlannedItem
from miner.timeutil import counted, iso, parse_iso

if TYPE_CHECKING:
    from miner.store import Store

log = logging.getLogger(__name__)


def make_message_id(settings: AlertSettings) -> str:
    """A Message-ID fixed when a notification is planned, so a resend carries the same one.

    Always ASCII: a from_addr domain such as bücher.example goes in its IDNA form. As written, it could not be put in
    a message sent without SMTPUTF8 (every email failed), and made the charts' Content-IDs non-ASCII.
    """
    domain = idna_address(parseaddr(settings.from_addr)[1]).rpartition("@")[2]
    return f"<miner.{uuid.uuid4().hex}@{domain if domain and domain.isascii() else 'localhost'}>"


def channels(route: RouteSettings) -> list[str]:
    return (["email"] if route.email else []) + [f"webhook:{name}" for name in route.webhooks]


@dataclass(frozen=True)
class _Context:
    settings: AlertSettings
    now: datetime
    silences: list[dict[str, Any]]
    # Whether the detector has run within stale_after of now, so an incident the store holds open is open now.
    detector_current: bool = True

    def muted(self, service: str) -> str | None:
        """Why alerts for ``service`` are muted right now, or None."""
        provider = self.settings.provider_of(service)
        for s in self.silences:
            if silence_matches(s, service, provider):
                note = f" ({s['comment']})" if s["comment"] else ""
                of = f" of provider {s['provider']}" if s["provider"] else ""
                return f"silenced by silence #{s['id']}{of} until {s['ends_at']}{note}"
        window = self.settings.in_maintenance(service, self.now)
        if window is not None:
            note = f": {window.comment}" if window.comment else ""
            return f"maintenance window for {window.service}{note}"
        return None

    def interval(self, route: RouteSettings) -> float:
        """The route's group_interval in seconds, for PlannedItem."""
        return self.settings.group_interval_for(route).total_seconds()


def plan_notifications(store: Store, settings: AlertSettings, now: datetime) -> int:
    """Plan alert and resolve notices for transitions logged since the last call. Returns items written."""
    if not settings.enabled:
        return 0
    clock = store.detector_clock()
    ctx = _Context(settings, now, store.silences(active_at=now),
                   clock is None or (now - clock).total_seconds() <= settings.stale_after)
    _mute_queued(store, ctx)
    waits = {r.name: (settings.group_wait_for(r).total_seconds(), ctx.interval(r)) for r in settings.routes}
    if n := store.shorten_waits(waits, now):
        log.info("%s brought forward: their route's group_wait or group_interval is shorter now",
                 counted(n, "queued alert message"))
    for _ in range(5):
        cursor = store.alert_cursor()
        events = store.incident_events_after(cursor)
        open_incidents = store.incidents(status="open")
        ids = sorted({e["incident_id"] for e in events} | {i["id"] for i in open_incidents})
        states = store.alert_incident_states(ids)
        resolved = sorted({e["incident_id"] for e in events if e["kind"] == "resolve"})
        items = _plan_events(ctx, events, states, store.unsent_alerts(sorted({e["incident_id"] for e in events})),
                             store.reached_alerts(resolved))
        # An incident (re-)opened in this run has just been alerted: no late opening or reminder on top of that.
        opened_now = {e["incident_id"] for e in events if _opening(e)}
        still_open = [i for i in open_incidents if i["id"] not in opened_now]
        new_cursor = events[-1]["id"] if events else cursor
        items += _plan_late(ctx, store, still_open, states)
        items += _plan_unheard(ctx, store, still_open, states, new_cursor)
        still_ids = [i["id"] for i in still_open]
        items += _plan_repeats(ctx, still_open, states, store.undelivered_alerts(still_ids),
                               store.muted_reminders(still_ids))
        added = store.apply_alert_plan(cursor, new_cursor, items, now)
        if added is not None:
            if added:
                log.info("planned %s from %s", counted(added, "alert item"), counted(len(events), "transition"))
            return added
    raise StoreError("alert planner: the event cursor kept moving under us (another planner is running)")


def _mute_queued(store: Store, ctx: _Context) -> None:
    """Suppress queued alerts and resolve notices that a silence or maintenance window mutes by now, and alerts
    their route no longer sends (_off_route).

    As in Alertmanager, a silence mutes what has not gone out yet, not only what is planned after it: an alert
    waiting out its group wait, or retried through an SMTP or webhook outage, when the on-call silences the service.
    """
    muted: list[MutedItem] = []
    for it in store.queued_alert_items():
        if (reason := _off_route(ctx.settings, it)) is not None:
            if not _delivered(store, ctx.settings, it):  # some recipients have it: the rest get it too
                muted.append(MutedItem(int(it["outbox_id"]), str(it["item_key"]), str(it["kind"]),
                                       int(it["incident_id"]), reason, make_message_id(ctx.settings)))
        elif (reason := ctx.muted(str(it["service"]))) is not None and not (
                _closes_page(ctx.settings, str(it["channel"])) and (it["kind"] == "resolve"
                                                                   or it["status"] == "resolved")):
            muted.append(MutedItem(int(it["outbox_id"]), str(it["item_key"]), str(it["kind"]),
                                   int(it["incident_id"]), reason, make_message_id(ctx.settings),
                                   _delivered(store, ctx.settings, it)))
    if muted and (n := store.suppress_queued(muted, ctx.now)):
        log.info("suppressed %s muted, or no longer their route's, since they were planned",
                 counted(n, "queued alert item"))


def _off_route(settings: AlertSettings, item: dict[str, Any]) -> str | None:
    """Why a queued opening or reminder is no longer its route's to send, or None: feeds.toml, reloaded since it was
    planned, took the service out of the route's ``services`` or made the route digest-only, and the on-call who
    did so expects no more pages for it. A resolve notice still goes: it follows an alert the route sent (and closes
    a PagerDuty alert, which would otherwise stay open for good). Suppressed like a muted opening, it is announced
    late (_plan_late) should the route cover the service again while the incident is open."""
    route = settings.route(str(item["route"]))
    if route is None or item["kind"] == "resolve":
        return None  # a route removed fails its rows when they are sent (dispatcher.send_row)
    if not route.immediate:
        return f"route {route.name!r} is digest-only now (immediate = false): feeds.toml changed after it was planned"
    if not route.matches(str(item["service"])):
        return f"route {route.name!r} no longer covers {item['service']}: feeds.toml changed after it was planned"
    return None


def _closes_page(settings: AlertSettings, channel: str) -> bool:
    """Whether ``channel`` is a pagerduty webhook, whose resolve notices no mute holds back: a resolve pages nobody,
    it closes the PagerDuty alert the trigger opened, which stayed open for good when the on-call, paged, silenced
    the service and the outage ended under the silence. Nor an alert there whose incident resolved meanwhile: it
    goes out as the resolve (pagerduty_events), its resolve notice recorded as inhibited in its favour."""
    hook = settings.webhook(channel.removeprefix("webhook:")) if channel.startswith("webhook:") else None
    return hook is not None and hook.format == "pagerduty"


def _delivered(store: Store, settings: AlertSettings, item: dict[str, Any]) -> bool:
    """Whether a queued item already reached its receiver in part (send_email's and send_events' record): an email
    some recipients have, a PagerDuty trigger accepted before a 429 or an outage stopped the rest of its batch."""
    done = store.alert_state(f"delivered:{item['outbox_id']}")
    if done is None:
        return False
    if not _closes_page(settings, str(item["channel"])):
        return True
    # Its dedup_key: miner/SERVICE/ID, SERVICE as the event showed it (cleaned, cut), ID whole.
    return any(str(key).endswith(f"/{item['incident_id']}") for key in json.loads(done))


def _opening(event: dict[str, Any]) -> bool:
    """An opening, or a re-opening: the detector opening within the cool-down brings the resolved incident back
    (an ``update`` with reason ``reopened``), which is news as much as an opening, whoever was told it resolved."""
    return event["kind"] == "open" or is_reopening(event)


def _plan_events(ctx: _Context, events: list[dict[str, Any]], states: dict[tuple[str, int], dict[str, Any]],
                 unsent: set[tuple[str, str, int]], reached: set[tuple[str, str, int]]) -> list[PlannedItem]:
    """``unsent``: (route, channel, incident) of alerts not sent yet (Store.unsent_alerts); ``reached``: of alerts
    that went out (Store.reached_alerts)."""
    items: list[PlannedItem] = []
    unsent = set(unsent)
    # Openings planned in this same run count for inhibiting their resolve notices.
    outcome = {key: st["open_outcome"] for key, st in states.items()}
    last_resolve = {e["incident_id"]: e["id"] for e in events if e["kind"] == "resolve"}
    for ev in events:
        service, iid = ev["service"], ev["incident_id"]
        at = parse_iso(ev["at"])
        seen_late = _seen_late(ctx, at, ctx.now)
        for route in ctx.settings.routes:
            # A route told of the opening is told of the resolve though the service has left its services since
            # (or feeds.toml, whose services the detector resolves): its PagerDuty alert stayed open for good.
            if not route.matches(service) and not (ev["kind"] == "resolve" and (route.name, iid) in outcome):
                continue
            due = ctx.now + ctx.settings.group_wait_for(route)
            if _opening(ev) and route.immediate:
                reason = ctx.muted(service)
                if reason is None and seen_late[0] is not None and not _still_open(ctx, ev, last_resolve):
                    reason = f"stale: opened at {iso(at)}, more than {ctx.settings.stale_after:.0f}s before planning"
                outcome[(route.name, iid)] = "suppressed" if reason else "queued"
                prefix = "open" if ev["kind"] == "open" else "reopen"
                # A channel whose alert about the incident is still queued (an outage retrying it) shows it open
                # again when that goes out: a second alert beside it would say the same.
                items += [PlannedItem(f"{prefix}:{iid}:{ev['id']}:{route.name}:{ch}", route.name, ch, "alert", "open",
                                      iid, make_message_id(ctx.settings), due, reason, ctx.interval(route),
                                      ctx.settings.group_of(route, service), *seen_late)
                          for ch in channels(route)
                          if reason is not None or (route.name, ch, iid) not in unsent]
                if reason is None:
                    unsent.update((route.name, ch, iid) for ch in channels(route))
            elif ev["kind"] == "resolve" and route.notify_resolved:
                prior = outcome.get((route.name, iid))
                if prior is None:
                    continue  # this route never alerted on the opening, so there is nothing to close
                inhibited = "inhibited: the opening alert was suppressed" if prior == "suppressed" else None
                muted = ctx.muted(service)
                for ch in channels(route):
                    # A resolve to PagerDuty pages nobody: no mute holds it back, nor, once a trigger of the
                    # incident went out there, a suppressed opening. The trigger an earlier opening left open (its
                    # resolve retried past a re-opening) was never closed once the re-opening was muted.
                    page = _closes_page(ctx.settings, ch)
                    paged = page and (route.name, ch, iid) in reached
                    reason = None if paged else inhibited or (None if page else muted)
                    # An alert still waiting to go out (an SMTP outage) shows the incident resolved when it does:
                    # a resolve notice would be a second message saying so, threaded under one nobody has.
                    late = (reason is None and (route.name, ch, iid) in unsent
                            and "inhibited: its alert, not sent yet, will show it resolved")
                    items.append(PlannedItem(f"resolve:{iid}:{ev['id']}:{route.name}:{ch}", route.name, ch,
                                             "resolved", "resolve", iid, make_message_id(ctx.settings), due,
                                             reason or late or None, ctx.interval(route),
                                             ctx.settings.group_of(route, service)))
    return items


def _still_open(ctx: _Context, event: dict[str, Any], last_resolve: dict[int, int]) -> bool:
    """Whether an opening planned late (miner was down, or caught up a backlog) is of an outage still going on,
    which is alerted however late, as Alertmanager alerts whatever still fires after a restart. Only one that ended
    meanwhile stays quiet (stale): paging for it after a long outage of miner, or for every past outage of a store
    alerts were just enabled on, would be a flood about nothing the on-call can act on. The store's status says so
    only once the detector has caught up to now; until then the opening is suppressed, and announced by
    _plan_late once it has, if still open."""
    return (ctx.detector_current and event["status"] == "open"
            and last_resolve.get(event["incident_id"], -1) < event["id"])


def _plan_repeats(ctx: _Context, open_incidents: list[dict[str, Any]], states: dict[tuple[str, int], dict[str, Any]],
                  undelivered: set[tuple[str, str, int]], muted: dict[tuple[str, int], datetime]) -> list[PlannedItem]:
    """Reminders of incidents alerted ``repeat_interval`` ago (counted from the last alert sent, see
    Store.finish_notification). A channel whose alert about the incident has not gone out yet (an SMTP outage
    retrying it) gets no reminder on top: it would arrive together with the alert it reminds of. A muted reminder
    (``muted``: when the last was planned) is recorded once per repeat_interval, and counts for nothing else."""
    items: list[PlannedItem] = []
    for inc in open_incidents:
        for route in ctx.settings.routes:
            repeat = ctx.settings.repeat_for(route)
            state = states.get((route.name, inc["id"]))
            # A route made digest-only (immediate = false) since it alerted gets no reminders: they are alerts.
            if (not route.immediate or not route.matches(inc["service"]) or state is None
                    or state["open_outcome"] != "queued"):
                continue
            if repeat <= timedelta(0) or parse_iso(state["last_notified_at"]) + repeat > ctx.now:
                continue
            n = state["repeats"] + 1
            reason = ctx.muted(inc["service"])
            last_muted = muted.get((route.name, inc["id"]))
            if reason is not None and last_muted is not None and last_muted + repeat > ctx.now:
                continue
            due = ctx.now + ctx.settings.group_wait_for(route)
            items += [PlannedItem(f"repeat:{inc['id']}:{n}:{route.name}:{ch}", route.name, ch, "alert", "repeat",
                                  inc["id"], make_message_id(ctx.settings), due, reason, ctx.interval(route),
                                  ctx.settings.group_of(route, inc["service"]))
                      for ch in channels(route)
                      if (route.name, ch, inc["id"]) not in undelivered]
    return items


def _plan_late(ctx: _Context, store: Store, open_incidents: list[dict[str, Any]],
               states: dict[tuple[str, int], dict[str, Any]]) -> list[PlannedItem]:
    """Suppressed openings announced once nothing holds them back and the incident is still open.

    As in Alertmanager, a silence or maintenance window delays the news rather than dropping it: otherwise an
    outage that outlasts a short silence is never announced, and its resolve is inhibited too. So does staleness:
    an opening seen too late to tell whether it was still on (the detector had not caught up) is announced once the
    detector says it still is. The late opening is an ordinary opening (threading, repeats and the resolve notice
    follow from it).
    """
    items: list[PlannedItem] = []
    if not ctx.detector_current:
        return items
    for inc in open_incidents:
        for route in ctx.settings.routes:
            state = states.get((route.name, inc["id"]))
            # Suppressed (muted, or stale) and muted no more: a stale opening of an incident still open is news as much
            # as one that was muted, the outage is going on. Suppressed first: muted() reads every silence and
            # maintenance window, for each incident and route.
            if (state is None or state["open_outcome"] != "suppressed" or not route.immediate
                    or not route.matches(inc["service"]) or ctx.muted(inc["service"]) is not None):
                continue
            due = ctx.now + ctx.settings.group_wait_for(route)
            # The suppressed opening's planning time tells this late opening apart from one after a later re-mute;
            # it is when miner first saw the opening too (a muted one it may have seen in time).
            key = f"open:{inc['id']}:unmuted:{state['last_notified_at']}:{route.name}"
            late = _seen_late(ctx, store.last_opened_at(inc), parse_iso(state["last_notified_at"]))
            items += [PlannedItem(f"{key}:{ch}", route.name, ch, "alert", "open", inc["id"],
                                  make_message_id(ctx.settings), due, None, ctx.interval(route),
                                  ctx.settings.group_of(route, inc["service"]), *late)
                      for ch in channels(route)]
    return items


def _plan_unheard(ctx: _Context, store: Store, open_incidents: list[dict[str, Any]],
                  states: dict[tuple[str, int], dict[str, Any]], cursor: int) -> list[PlannedItem]:
    """Openings of incidents still open that a route was never told of, as Alertmanager tells a new receiver what
    still fires: the route was added, renamed, given the service or made immediate since the incident opened.

    Without this a pager route added during an outage heard nothing of it, not even its resolve (which follows only
    an opening planned on the route), and a PagerDuty alert triggered under a route's old name stayed open for good.
    An incident with a transition after ``cursor`` (past the planner's page of events) is left to those events.
    """
    items: list[PlannedItem] = []
    if not ctx.detector_current:
        return items
    for inc in open_incidents:
        routes = [route for route in ctx.settings.routes if route.immediate and channels(route)
                  and (route.name, inc["id"]) not in states and route.matches(inc["service"])]
        # Muted: left for the planning after the mute ends (suppressed, _plan_late would announce it then as seen
        # late, miner "down or catching up", at the time the route was added).
        if (not routes or ctx.muted(inc["service"]) is not None
                or any(e["id"] > cursor for e in store.incident_events(inc["id"]))):
            continue
        for route in routes:
            due = ctx.now + ctx.settings.group_wait_for(route)
            items += [PlannedItem(f"open:{inc['id']}:unheard:{route.name}:{ch}", route.name, ch, "alert", "open",
                                  inc["id"], make_message_id(ctx.settings), due, None, ctx.interval(route),
                                  ctx.settings.group_of(route, inc["service"]))
                      for ch in channels(route)]
    return items


def _seen_late(ctx: _Context, opened: datetime, seen: datetime) -> tuple[datetime | None, float | None]:
    """When miner first saw an opening and how late, if that was more than stale_after after it happened (miner was
    down, or caught up a backlog): its alert says so, or it reads as an outage that has just begun, reported late.
    The one statement of the stale rule: an opening seen late is also suppressed (stale) unless still open."""
    late = (seen - opened).total_seconds()
    return (seen, late) if late > ctx.settings.stale_after else (None, None)


"""PagerDuty Events API v2 events of an alert batch: one per incident, deduped on its ``dedup_key``
(https://developer.pagerduty.com/docs/events-api-v2/trigger-events/); the sender (pagerduty_send.py) adds the
routing key and posts them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from miner.alerts.content import IncidentView
from miner.alerts.text import clean_text
from miner.alerts.webhooks import incident_json
from miner.timeutil import iso

PD_SUMMARY = 1024  # the most characters PagerDuty takes in payload.summary
PD_DEDUP_KEY = 255  # ... and in dedup_key


def pagerduty_dedup_key(v: IncidentView, store_key: str) -> str:
    """One per miner incident, the same for its alert, reminders and resolve notice: PagerDuty folds a re-sent or
    reminding trigger into the alert it opened, and the resolve closes it. A re-opening (the same incident) after
    the resolve opens a new PagerDuty alert under the same key, as PagerDuty does for a resolved key.

    ``store_key`` (random, one per store, pagerduty_send.pagerduty_store_key) tells apart the incidents of two stores,
    whose ids both start from 1: a new store's incident 1 was folded into the old one's alert if still open."""
    return f"miner/{store_key}/{v.service}/{v.id}"[:PD_DEDUP_KEY]


def pagerduty_summary(v: IncidentView, reminder: bool) -> str:
    """One line of what the json format's fields say (all cleaned in content.py), cut to PagerDuty's limit: what
    says when this outage began (a re-opening, an opening seen late) comes first, so a cut never takes it.

    Only a trigger has a summary: an incident miner closed itself (untracked) is resolved, with none."""
    ratio = f" ({v.ratio:.1f}x)" if v.ratio else ""
    text = (f"{v.service}: outage reported by users since {v.opened_at:%Y-%m-%d %H:%M} UTC"
            f"{' (reminder)' if reminder else ''}{f' (re-opened {v.reopen_text})' if v.reopened_at else ''}"
            f"{f' (seen late: {v.late_text})' if v.seen_late else ''}"
            f": peak {v.peak_complaints} complaints vs baseline {v.baseline_text}"
            f"{ratio}, z {v.peak_score:.1f}, {v.total_complaints} complaints in all")
    if v.symptoms:
        text += f"; symptoms: {v.symptom_line}"
    if v.official is not None:
        text += f"; provider: {v.official.title} ({v.official.status})"
    return clean_text(text, PD_SUMMARY)


def pagerduty_events(kind: str, views: list[IncidentView], *, route: str, reminders: set[int], severity: str,
                     providers: Mapping[str, str], dashboard_url: str, resolve: bool,
                     store_key: str) -> list[dict[str, Any]]:
    """One Events API v2 event per incident (PagerDuty takes one alert per request), without ``routing_key``: the
    sender adds it from the environment, so no file, store row or log line built from these ever holds it.

    An incident resolved by the time an alert goes out is resolved, not triggered: the planner recorded its resolve
    notice as suppressed, since the alert would say it resolved, and a trigger would page for an outage that is
    over and stay open on PagerDuty. Without ``resolve`` (the route's notify_resolved), such an incident gets no
    event at all, as a resolve notice would get none. A resolve notice's incidents open again by the time it goes
    out are left out before (dispatcher, render.still_resolved), for every format. ``providers``: lower-case
    service -> its provider, for ``payload.group``.
    """
    events: list[dict[str, Any]] = []
    seen: set[str] = set()
    for v in views:
        key = pagerduty_dedup_key(v, store_key)
        if key in seen:  # an opening and a reminder of one incident in one batch: one event
            continue
        seen.add(key)
        if kind == "resolved" or v.status == "resolved":
            if resolve:
                events.append({"event_action": "resolve", "dedup_key": key})
            continue
        payload: dict[str, Any] = {
            "summary": pagerduty_summary(v, v.id in reminders),
            "source": v.service,
            "severity": severity,
            # PagerDuty: "the time at which the emitting tool detected or generated the event": a re-opening's trigger
            # is about the re-opening, not the first opening (which its summary gives).
            "timestamp": iso(v.news_at),
            "class": "user-reported outage",
            "custom_details": {"route": route, **incident_json(v, v.id in reminders)},
        }
        if v.symptoms:
            payload["component"] = v.symptoms[0][0]
        if provider := providers.get(v.service.lower()):
            payload["group"] = provider
        links = []
        if v.official is not None and v.official.url:
            links.append({"href": v.official.url, "text": f"provider status: {v.official.title}"})
        event: dict[str, Any] = {"event_action": "trigger", "dedup_key": key, "payload": payload, "client": "miner"}
        if dashboard_url:
            event["client_url"] = dashboard_url
            links.append({"href": dashboard_url, "text": "miner dashboard"})
        if links:
            event["links"] = links
        events.append(event)
    return events

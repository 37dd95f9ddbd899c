"""A lead that is a lag: the provider posted the incident before miner opened its own. Each format once said "Our
lead: 4 min after the provider posted it" (the digest "lead -4 min"), read as miner being first."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from smtp_server import SmtpServer, smtp_server  # noqa: F401  (fixture)
from test_alerts_support import T0, add_official, open_incident, settings

from miner.alerts import render_digest
from miner.alerts.content import IncidentView, incident_view
from miner.alerts.render import Rendered, render_alert
from miner.alerts.webhooks import json_payload, slack_payload, teams_payload
from miner.store import Store

SAID = "miner first saw it on its status page 4 min before we detected it"


def _rendered(store: Store, head_start: timedelta) -> tuple[Rendered, Rendered, IncidentView | None, datetime]:
    """An incident opened at T0 that the provider posted ``head_start`` before: its alert and digest as rendered 5
    min later, its view, and that time."""
    add_official(store, "WhatsApp", T0 - head_start)
    iid = open_incident(store, "WhatsApp", T0)
    alerts = settings()
    route = alerts.routes[0]
    now = T0 + timedelta(minutes=5)
    alert = render_alert(store, alerts, route, "alert", [{"incident_id": iid, "kind": "open"}],
                         message_id="<m@example.org>", now=now)
    return alert, render_digest(store, alerts, now, route), incident_view(store, alerts, iid, now), now


def test_a_provider_that_posted_first_is_said_to_have_been_first(store: Store) -> None:
    # add_official stores the incident when it starts, as miner stores one the provider gave no start: first seen.
    alert, digest, view, now = _rendered(store, timedelta(minutes=4))
    assert f"Provider first: {SAID}" in " ".join(alert.text.split())
    assert f"<b>Provider first:</b> {SAID}" in alert.html
    assert f"Provider first: {SAID}" in " ".join(digest.text.split())
    assert "provider first by 4 min" in digest.html and "lead -4" not in digest.html
    for rendered in (alert.text, alert.html, digest.text, digest.html):
        assert "Our lead" not in rendered and "after miner first saw" not in rendered

    assert view is not None
    for payload in (slack_payload("alert", [view], subject="s", reminders=set()),
                    teams_payload("alert", [view], subject="s", reminders=set())):
        chat = json.dumps(payload)
        assert f"provider first: {SAID}" in chat and "our lead" not in chat
    # The number stays as the API and the JSON webhook give it: negative, the provider first.
    sent = json_payload("alert", [view], route="oncall", message_id="<m>", now=now, reminders=set())
    assert sent["incidents"][0]["lead_time_minutes"] == -4.0


def test_a_lag_under_a_minute_is_not_said_to_be_the_provider_first_by_0_min(store: Store) -> None:
    # Lead times are kept to a tenth of a minute: a post 30 s before our opening once read "Provider first: ... 0 min
    # before we detected it" (the digest "provider first by 0 min"), a head start of nothing.
    alert, digest, view, _now = _rendered(store, timedelta(seconds=30))
    assert view is not None and view.lead_minutes == -0.5
    chats = [json.dumps(payload) for payload in (slack_payload("alert", [view], subject="s", reminders=set()),
                                                 teams_payload("alert", [view], subject="s", reminders=set()))]
    for rendered in (alert.text, alert.html, digest.text, digest.html, *chats):
        flat = " ".join(rendered.split())
        assert "0 min before" not in flat and "by 0 min" not in flat and "lead -" not in flat, flat
    assert "Our lead: under a minute" in " ".join(alert.text.split())
    assert "lead under 1 min" in digest.html

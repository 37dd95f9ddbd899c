"""A digest says of each open incident whose alerts are muted until when and by what, as the status board, the read
API and `miner status` say it: over a real store and SMTP server."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from smtp_server import SmtpServer, smtp_server  # noqa: F401  (fixture)
from test_alerts_digest_official import html, route_settings, said
from test_alerts_support import T0, open_incident

from miner.alerts import dispatch, enqueue_due_digests
from miner.alerts.settings import MaintenanceWindow
from miner.store import Store


def test_the_digest_says_which_open_incidents_have_their_alerts_muted_and_by_what(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # WhatsApp's outage is open; the on-call silenced its provider (Meta) for 3 h, the only way miner has to
    # acknowledge it. Slack's is open too, muted by its maintenance window until 13:30; Gmail's is not muted.
    window = MaintenanceWindow(service="Slack", start="2026-11-27T12:00:00Z", end="2026-11-27T13:30:00Z",
                               comment="db migration")
    cfg = route_settings(smtp_server)
    cfg = replace(cfg, maintenance=(window,), providers={"whatsapp": "Meta", "instagram": "Meta"})
    enqueue_due_digests(store, cfg, T0)  # anchors the schedule at 12:00
    for service in ("WhatsApp", "Slack", "Gmail"):
        open_incident(store, service, T0 + timedelta(minutes=10))
    store.add_silence(None, T0 + timedelta(minutes=15), T0 + timedelta(hours=3, minutes=15), "on it, NOC 4411",
                      T0 + timedelta(minutes=15), provider="Meta")
    assert enqueue_due_digests(store, cfg, T0 + timedelta(hours=1)) == 1
    assert dispatch(store, cfg, T0 + timedelta(hours=1), worker_id="w").sent == 1
    [digest] = smtp_server.inbox.messages
    text, page = said(digest), " ".join(html(digest).split())
    assert ("Alerts: muted until 2026-11-27 15:15 UTC (silence 1 of provider Meta: on it, NOC 4411)") in text
    assert ("Alerts: muted until 2026-11-27 13:30 UTC (maintenance window alerts.maintenance[0]: db migration)"
            in text)
    assert text.count("Alerts: muted") == 2
    assert ("<b>Alerts muted</b> until 2026-11-27 15:15 UTC (silence 1 of provider Meta: on it, NOC 4411)"
            in page)
    assert page.count("Alerts muted") == 2

"""An incident resolved exactly at a digest's time, as a resolve dated at a bucket's end often is, over a real store
and SMTP server: open in that digest however late it is rendered, resolved in the next."""

from __future__ import annotations

from datetime import timedelta

from smtp_server import SmtpServer, smtp_server  # noqa: F401  (fixture)
from test_alerts_digest_official import route_settings, said
from test_alerts_support import T0, open_incident, resolve

from miner.alerts import dispatch, enqueue_due_digests
from miner.store import Store


def test_a_digest_rendered_after_a_resolve_at_its_own_time_shows_the_incident_open_not_no_incidents(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # Open from 12:10 to 13:00. The 13:00 digest is sent after the detector recorded the resolve (its first attempt
    # failed, or the process job ran first): it said "no incidents since 12:00", for an hour the outage filled.
    cfg = route_settings(smtp_server)
    enqueue_due_digests(store, cfg, T0)  # anchors the schedule at 12:00
    incident = open_incident(store, "WhatsApp", T0 + timedelta(minutes=10))
    resolve(store, incident, T0 + timedelta(hours=1))
    assert enqueue_due_digests(store, cfg, T0 + timedelta(hours=1)) == 1
    assert dispatch(store, cfg, T0 + timedelta(hours=1, minutes=1), worker_id="w").sent == 1
    first = said(smtp_server.inbox.messages[-1])
    assert "1 open, 0 resolved since 2026-11-27 12:00 UTC." in first and "WhatsApp: OPEN" in first
    # The next one says it resolved, once.
    assert enqueue_due_digests(store, cfg, T0 + timedelta(hours=2)) == 1
    assert dispatch(store, cfg, T0 + timedelta(hours=2), worker_id="w").sent == 1
    second = said(smtp_server.inbox.messages[-1])
    assert "0 open, 1 resolved since 2026-11-27 13:00 UTC." in second and "WhatsApp: RESOLVED" in second

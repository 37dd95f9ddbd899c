"""The periods of a route's digests, over a real SMTP server and store: each resolved incident is told resolved in
exactly one digest, and none falls between two."""

from __future__ import annotations

from datetime import datetime, timedelta
from email.message import EmailMessage

from smtp_server import SmtpServer, smtp_server  # noqa: F401  (fixture)
from test_alerts_support import T0, open_incident, resolve, settings

from miner.alerts import dispatch, enqueue_due_digests, plan_notifications
from miner.alerts.settings import AlertSettings, RouteSettings, SmtpSettings
from miner.store import Store


def digest_only(server: SmtpServer) -> AlertSettings:
    route = RouteSettings(name="team", email=("team@example.org",), immediate=False, digest="0 * * * *")
    smtp = SmtpSettings(host="127.0.0.1", port=server.port, security="none", timeout=5)
    return settings(routes=(route,), webhooks=(), smtp=smtp, group_wait=0.0)


def send_digest(store: Store, cfg: AlertSettings, now: datetime) -> None:
    plan_notifications(store, cfg, now)
    assert enqueue_due_digests(store, cfg, now) == 1
    assert dispatch(store, cfg, now, worker_id="w").sent == 1


def said(message: EmailMessage) -> str:
    return " ".join(message.get_body(("plain",)).get_content().split())  # type: ignore[union-attr]


def test_an_incident_resolved_at_a_digests_time_is_told_resolved_in_the_next_digest_alone(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # Hourly digests at 13:00 and 14:00. WhatsApp resolves at 13:00:00, recorded before the 13:00 digest is rendered
    # (a retry, or one sent late): that digest shows it open, as one rendered on time does, and the 14:00 one,
    # "resolved since 13:00", says it resolved (it was in neither, the 13:00 one silent of an incident open all its
    # hour). Messenger resolves at 13:00:00 as well, recorded after the 13:00 digest went out (the detector
    # scores the bucket ending then minutes later): that digest showed it open, so the 14:00 one must say it resolved.
    # Instagram resolves at 13:00:01: open at 13:00, resolved in the 14:00 digest only.
    cfg = digest_only(smtp_server)
    ids = {s: open_incident(store, s, T0 + timedelta(minutes=m), posts=False, series=False)
           for s, m in (("WhatsApp", 10), ("Messenger", 15), ("Instagram", 20))}
    enqueue_due_digests(store, cfg, T0)  # anchors the schedule at 12:00
    first, second = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    resolve(store, ids["WhatsApp"], first)
    send_digest(store, cfg, first)
    resolve(store, ids["Messenger"], first)
    resolve(store, ids["Instagram"], first + timedelta(seconds=1))
    send_digest(store, cfg, second)
    one, two = smtp_server.inbox.messages
    assert str(one["Subject"]) == "[miner] Digest 2026-11-27 13:00 UTC: 3 open, 0 resolved"
    assert all(f"{s}: OPEN" in said(one) for s in ids)
    assert str(two["Subject"]) == "[miner] Digest 2026-11-27 14:00 UTC: 0 open, 3 resolved"
    assert all(f"{s}: RESOLVED" in said(two) for s in ids)


def test_a_digest_after_missed_ones_leaves_one_resolved_at_its_time_to_the_next(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # The service down from 13:00:30 to 15:10: the 14:00 and 15:00 digests coalesce into one as of 15:00, over the
    # period since the 13:00 one. Instagram resolved at 14:00, a missed digest's time: in that one. WhatsApp resolved
    # at 15:00, its time: open in the coalesced one (as of 15:00), resolved in the 16:00 one alone.
    cfg = digest_only(smtp_server)
    whatsapp = open_incident(store, "WhatsApp", T0 + timedelta(minutes=10), posts=False, series=False)
    instagram = open_incident(store, "Instagram", T0 + timedelta(minutes=20), posts=False, series=False)
    enqueue_due_digests(store, cfg, T0)
    send_digest(store, cfg, T0 + timedelta(hours=1))
    resolve(store, instagram, T0 + timedelta(hours=2))
    resolve(store, whatsapp, T0 + timedelta(hours=3))
    send_digest(store, cfg, T0 + timedelta(hours=3, minutes=10))
    send_digest(store, cfg, T0 + timedelta(hours=4))
    _, coalesced, last = smtp_server.inbox.messages
    assert str(coalesced["Subject"]).endswith("15:00 UTC: 1 open, 1 resolved")
    assert "Instagram: RESOLVED" in said(coalesced) and "WhatsApp: OPEN" in said(coalesced)
    assert str(last["Subject"]).endswith("16:00 UTC: 0 open, 1 resolved")
    assert "WhatsApp: RESOLVED" in said(last) and "Instagram" not in said(last)

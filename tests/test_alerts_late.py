"""An opening miner saw late (it was down, or caught up a backlog) says so in every format, over a real SMTP server
and real webhook receivers on 127.0.0.1: the email's subject, text and HTML, Slack, Teams, the generic JSON and
PagerDuty. An opening seen in time, or one a silence held back, says nothing of the kind."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from fakeserver import FakeServer, Recorded, ScriptedWebhook
from smtp_server import SmtpServer, smtp_server  # noqa: F401  (fixture)
from test_alerts_support import T0, open_incident, resolve, settings

from miner.alerts import dispatch, plan_notifications, render_digest
from miner.alerts.content import incident_view
from miner.alerts.pagerduty_events import pagerduty_summary
from miner.alerts.render import alert_subject
from miner.alerts.settings import AlertSettings, RouteSettings, SmtpSettings, WebhookSettings
from miner.alerts.webhooks import json_payload, slack_payload, teams_payload
from miner.store import Store

FORMATS = ("json", "slack", "teams", "pagerduty")
LATE = "opened 10:10 UTC, first seen by miner at 12:00 UTC (1 h 50 min late: miner was down or catching up)"


class Receiver(ScriptedWebhook):
    def answer(self, request: Recorded, status: int) -> tuple[bytes, str | None]:
        return b'{"status": "success"}', "application/json"

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.body) for r in self.requests]


@pytest.fixture
def receivers(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, Receiver]:
    monkeypatch.setenv("MINER_TEST_PD_KEY", "R0UT1NGKEYR0UT1NGKEYR0UT1NGKEY42")
    for fmt in FORMATS:
        monkeypatch.setenv(f"MINER_TEST_{fmt.upper()}", f"{server.url}/{fmt}")
    return {fmt: Receiver(server, f"/{fmt}") for fmt in FORMATS}


def every_format(smtp: SmtpServer) -> AlertSettings:
    route = RouteSettings(name="oncall", email=("oncall@example.org",), webhooks=FORMATS)
    hooks = tuple(WebhookSettings(name=fmt, format=fmt, url_env=f"MINER_TEST_{fmt.upper()}", timeout=10.0,
                                  routing_key_env="MINER_TEST_PD_KEY" if fmt == "pagerduty" else None)
                  for fmt in FORMATS)
    return settings(routes=(route,), webhooks=hooks, group_wait=0.0, stale_after=3600.0,
                    smtp=SmtpSettings(host="127.0.0.1", port=smtp.port, security="none", timeout=5))


def send(store: Store, cfg: AlertSettings, now: datetime) -> None:
    plan_notifications(store, cfg, now)
    dispatch(store, cfg, now, worker_id="w")


def bodies(msg: EmailMessage) -> tuple[str, str]:
    """The text part with its lines joined (it wraps at 78 columns), and the HTML."""
    text, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert text is not None and html is not None
    return " ".join(str(text.get_content()).split()), str(html.get_content())


def test_an_opening_seen_late_says_so_in_every_format(store: Store, smtp_server: SmtpServer,  # noqa: F811
                                                      receivers: dict[str, Receiver]) -> None:
    cfg = every_format(smtp_server)
    # The outage began at 10:10; miner, down until noon, sees it only then, still going on.
    open_incident(store, "WhatsApp", T0 - timedelta(minutes=110))
    send(store, cfg, T0)
    [msg] = smtp_server.inbox.messages
    assert str(msg["Subject"]).strip().startswith("[miner] OPEN (seen late): WhatsApp outage reports")
    text, html = bodies(msg)
    assert f"Seen late: {LATE}" in text
    assert 'Miner saw an opening late (it was down or catching up): the outage marked "Seen late" below' in text
    assert f"<b>Seen late:</b> {LATE}" in html
    assert "Opened 2026-11-27 10:10 UTC, seen late: miner was down or catching up." in html
    assert "Detected 2026-11-27 10:10 UTC" not in html  # it was not: miner saw it at noon
    [payload] = receivers["json"].bodies
    [incident] = payload["incidents"]
    assert incident["detected_late"] is True
    assert incident["seen_at"] == "2026-11-27T12:00:00+00:00" and incident["late_minutes"] == 110.0
    [slack] = receivers["slack"].bodies
    assert slack["text"].startswith("[miner] OPEN (seen late): WhatsApp")
    section = slack["blocks"][1]["text"]["text"].splitlines()
    assert section[1] == f":warning: seen late: {LATE}"
    [message] = receivers["teams"].bodies
    blocks = message["attachments"][0]["content"]["body"][1]["items"]
    assert blocks[1]["text"] == f"seen late: {LATE}" and blocks[1]["color"] == "Warning"
    [event] = receivers["pagerduty"].bodies
    assert f"(seen late: {LATE})" in event["payload"]["summary"]
    details = event["payload"]["custom_details"]
    assert details["detected_late"] is True and details["late_minutes"] == 110.0


def test_an_opening_seen_late_by_a_clock_between_seconds_gives_the_minute_it_opened(
        store: Store, smtp_server: SmtpServer, receivers: dict[str, Receiver]) -> None:  # noqa: F811
    # The service's clock is never on a whole second: seen at 12:00:00.7, stored as 12:00:00 (seen_late_at) beside
    # 6600.7 s late, which made it "opened 10:09 UTC" under "since 10:10 UTC" in every format.
    cfg = every_format(smtp_server)
    open_incident(store, "WhatsApp", T0 - timedelta(minutes=110))
    send(store, cfg, T0 + timedelta(microseconds=700000))
    text, html = bodies(smtp_server.inbox.messages[0])
    assert f"Seen late: {LATE}" in text and f"<b>Seen late:</b> {LATE}" in html
    assert receivers["slack"].bodies[0]["blocks"][1]["text"]["text"].splitlines()[1] == f":warning: seen late: {LATE}"
    assert f"(seen late: {LATE})" in receivers["pagerduty"].bodies[0]["payload"]["summary"]


def test_an_opening_seen_in_time_says_nothing_of_being_late(store: Store, smtp_server: SmtpServer,  # noqa: F811
                                                            receivers: dict[str, Receiver]) -> None:
    cfg = every_format(smtp_server)
    open_incident(store, "WhatsApp", T0 - timedelta(minutes=2))
    send(store, cfg, T0)
    [msg] = smtp_server.inbox.messages
    text, html = bodies(msg)
    assert str(msg["Subject"]).startswith("[miner] OPEN: WhatsApp outage reports")
    assert "Detected 2026-11-27 11:58 UTC." in html
    [payload] = receivers["json"].bodies
    assert {k: payload["incidents"][0][k] for k in ("detected_late", "seen_at", "late_minutes")} == {
        "detected_late": False, "seen_at": None, "late_minutes": None}
    [event] = receivers["pagerduty"].bodies
    assert event["payload"]["custom_details"]["detected_late"] is False
    others = [json.dumps(receivers[fmt].bodies) for fmt in ("slack", "teams")] + [event["payload"]["summary"]]
    assert not [t for t in [str(msg["Subject"]), text, html, *others] if "seen late" in t.lower()]


def test_a_reminder_and_the_resolve_of_an_opening_seen_late_say_nothing_of_it(
        store: Store, smtp_server: SmtpServer, receivers: dict[str, Receiver]) -> None:  # noqa: F811
    cfg = every_format(smtp_server)
    iid = open_incident(store, "WhatsApp", T0 - timedelta(minutes=110))
    send(store, cfg, T0)
    send(store, cfg, T0 + timedelta(hours=4, minutes=1))  # the reminder: by now the alert said when it opened
    resolve(store, iid, T0 + timedelta(hours=5))
    send(store, cfg, T0 + timedelta(hours=5))
    subjects = [str(m["Subject"]).strip() for m in smtp_server.inbox.messages]
    assert [s.split(":")[0] for s in subjects] == ["[miner] OPEN (seen late)", "[miner] STILL OPEN",
                                                   "[miner] RESOLVED"]
    assert [p["incidents"][0]["detected_late"] for p in receivers["json"].bodies] == [True, False, False]


def test_an_opening_held_by_a_silence_says_it_was_seen_late_only_if_miner_saw_it_late(store: Store) -> None:
    cfg = settings(group_wait=0.0, stale_after=600.0)
    # Seen in time, but muted by a silence until 12:20: miner was not late, the silence held the news.
    store.add_silence("WhatsApp", T0, T0 + timedelta(minutes=20), "", T0)
    on_time = open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    # Seen 30 min late under a silence until 12:20: it was late, whatever held it back after.
    store.add_silence("Telegram", T0, T0 + timedelta(minutes=20), "", T0)
    late = open_incident(store, "Telegram", T0 - timedelta(minutes=30), posts=False, series=False)
    plan_notifications(store, cfg, T0)
    assert plan_notifications(store, cfg, T0 + timedelta(minutes=21)) == 4  # email and webhook, each
    items = {int(i["incident_id"]): i for r in store.outbox_listing(["pending"])
             for i in store.notification_items(int(r["id"]))}
    assert items[on_time]["seen_late_at"] is None and items[on_time]["late_seconds"] is None
    assert items[late]["seen_late_at"] == "2026-11-27T12:00:00+00:00" and items[late]["late_seconds"] == 1800.0


def test_a_message_about_several_openings_says_how_many_were_seen_late(
        store: Store, smtp_server: SmtpServer, receivers: dict[str, Receiver]) -> None:  # noqa: F811
    cfg = replace(every_format(smtp_server), group_by="route")
    open_incident(store, "WhatsApp", T0 - timedelta(minutes=110))
    open_incident(store, "Telegram", T0 - timedelta(minutes=2))
    send(store, cfg, T0)
    [msg] = smtp_server.inbox.messages
    assert str(msg["Subject"]).strip() == "[miner] OPEN: WhatsApp, Telegram; 1 seen late"
    text, _ = bodies(msg)
    assert text.count("Seen late: opened") == 1
    [payload] = receivers["json"].bodies
    assert {i["service"]: i["detected_late"] for i in payload["incidents"]} == {"WhatsApp": True, "Telegram": False}


def test_every_format_agrees_on_whether_an_opening_was_seen_late(store: Store) -> None:
    # A row with a seen_late_at but no late_seconds: the JSON said detected_late while Slack, Teams, PagerDuty and
    # the email said nothing of it, each testing another field.
    iid = open_incident(store, "WhatsApp", T0 - timedelta(minutes=2), posts=False, series=False)
    view = incident_view(store, settings(), iid, T0)
    assert view is not None
    odd = replace(view, seen_late_at=T0, late_seconds=None)
    late = replace(view, seen_late_at=T0, late_seconds=6600.0)
    for v, expected in ((odd, False), (late, True)):
        payload = json_payload("alert", [v], route="oncall", message_id="<m@x>", now=T0, reminders=set())
        assert payload["incidents"][0]["detected_late"] is expected
        assert ("seen late" in json.dumps(slack_payload("alert", [v], subject="s", reminders=set()))) is expected
        assert ("seen late" in json.dumps(teams_payload("alert", [v], subject="s", reminders=set()))) is expected
        assert ("seen late" in pagerduty_summary(v, False)) is expected
        assert ("(seen late)" in alert_subject(settings(), "alert", [v])) is expected


def test_the_digest_marks_openings_seen_late_as_their_alerts_do(store: Store) -> None:
    # Only the alerts said so: in the digest an opening miner saw late read as an outage it had seen begin, and the
    # digest is all a route hears of one over before miner saw it (stale), or all a digest-only route hears at all.
    oncall = RouteSettings(name="oncall", email=("oncall@example.org",), digest="0 * * * *")
    team = RouteSettings(name="team", email=("team@example.org",), immediate=False, digest="0 13 * * *")
    cfg = settings(routes=(oncall, team), webhooks=(), group_wait=0.0, stale_after=3600.0)
    open_incident(store, "WhatsApp", T0 - timedelta(minutes=110))  # still open when miner sees it at noon
    over = open_incident(store, "Signal", T0 - timedelta(hours=3), posts=False, series=False)
    resolve(store, over, T0 - timedelta(hours=2))  # over before miner saw it: no alert, stale
    open_incident(store, "Telegram", T0 - timedelta(minutes=2), posts=False, series=False)  # seen in time
    # Seen late, resolved, then open again at 12:30 and seen in time: what the digest shows is that opening.
    again = open_incident(store, "Instagram", T0 - timedelta(minutes=110), posts=False, series=False)
    plan_notifications(store, cfg, T0)
    resolve(store, again, T0 + timedelta(minutes=10))
    store.update_incident(again, T0 + timedelta(minutes=30), {"status": "open", "resolved_at": None}, kind="update",
                          details={"reason": "reopened"})
    plan_notifications(store, cfg, T0 + timedelta(minutes=31))
    for route in ("oncall", "team"):
        d = render_digest(store, cfg, T0 + timedelta(hours=1), route)
        text = " ".join(d.text.split())
        assert text.count("Seen late: opened") == 2
        assert f"WhatsApp: OPEN Since: 2026-11-27 10:10 UTC (2 h 50 min) Seen late: {LATE}" in text
        signal = text.partition("Signal: RESOLVED Open: 2026-11-27 09:00 UTC to 2026-11-27 10:00 UTC")[2]
        assert signal.partition(") ")[2].startswith("Seen late: opened 09:00 UTC, first seen by miner at 12:00 UTC "
                                                     "(3 h 00 min late: miner was down or catching up)")
        assert 'Miner saw 2 openings late (it was down or catching up): the incidents marked "Seen late"' in text
        assert d.html.count("<b>Seen late:</b>") == 2 and f"<b>Seen late:</b> {LATE}" in d.html
        assert d.html.count('<span style="color:#e65100;">seen late</span>') == 2

"""An incident opening again while its resolve notice waits out group_interval, over a real SMTP server, a loopback
webhook receiver and store: each message names an incident once, and a notice that sent nothing holds nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest
from fakeserver import FakeServer, Recorded, ScriptedWebhook
from smtp_server import SmtpServer, smtp_server  # noqa: F401  (fixture)
from test_alerts_grouping import at, mail, run, sent
from test_alerts_pagerduty import PagerDuty, pd, pd_settings  # noqa: F401  (fixture)
from test_alerts_rules import reopen
from test_alerts_support import open_incident, resolve

from miner.alerts import dispatch, plan_notifications
from miner.alerts.references import MAX_REFERENCES, bounded
from miner.alerts.settings import RouteSettings, SmtpSettings, WebhookSettings
from miner.store import Store
from miner.timeutil import iso

PATH = "/hook"


class JsonHook(ScriptedWebhook):
    def answer(self, request: Recorded, status: int) -> tuple[bytes, str | None]:
        return b"", None

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.body) for r in self.requests]


@pytest.fixture
def hook(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> JsonHook:
    monkeypatch.setenv("MINER_TEST_HOOK", server.url + PATH)
    return JsonHook(server, PATH)


def test_a_resolve_notice_joined_by_the_same_incidents_next_resolve_names_it_once(
        store: Store, smtp_server: SmtpServer, hook: JsonHook) -> None:  # noqa: F811
    # Instagram's notice waits for WhatsApp's (its provider's) group interval; meanwhile Instagram opens again and
    # resolves again (a detector with quiet_minutes under group_interval), and its second notice joins the first.
    route = RouteSettings(name="oncall", email=("oncall@example.org",), webhooks=("hook",))
    cfg = replace(mail(smtp_server, route), webhooks=(WebhookSettings(name="hook", url_env="MINER_TEST_HOOK"),))
    ids = {s: open_incident(store, s, at(0), posts=False, series=False) for s in ("WhatsApp", "Instagram")}
    script: dict[datetime, Callable[[], object]] = {
        at(70): lambda: resolve(store, ids["WhatsApp"], at(70)),
        at(72): lambda: resolve(store, ids["Instagram"], at(72)),
        at(77): lambda: reopen(store, ids["Instagram"], at(77)),
        at(82): lambda: resolve(store, ids["Instagram"], at(82)),
    }
    run(store, cfg, at(0), at(90), script)
    assert [services for services, _ in sent(store, "resolved")] == [["WhatsApp"]] * 2 + [["Instagram"] * 2] * 2
    subjects = [str(m["Subject"]) for m in smtp_server.inbox.messages]
    assert subjects[-1] == "[miner] RESOLVED: Instagram after 1 h 22 min"
    assert [i["service"] for i in hook.bodies[-1]["incidents"]] == ["Instagram"]


def test_a_resolve_notice_that_sent_nothing_holds_back_no_later_notice(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    cfg = mail(smtp_server)
    ids = {s: open_incident(store, s, at(0), posts=False, series=False) for s in ("WhatsApp", "Instagram", "Messenger")}
    script: dict[datetime, Callable[[], object]] = {
        at(70): lambda: resolve(store, ids["WhatsApp"], at(70)),  # its notice goes at 70:30
        at(72): lambda: resolve(store, ids["Instagram"], at(72)),  # held until 85:30 ...
        at(77): lambda: reopen(store, ids["Instagram"], at(77)),  # ... when it has nothing left to say
        at(87): lambda: resolve(store, ids["Messenger"], at(87)),
    }
    run(store, cfg, at(0), at(110), script)
    # Messenger's notice waits for WhatsApp's, the last that went out (more than group_interval before), not for
    # Instagram's, which sent nothing: it goes after its group wait, not at 100:30.
    notices = sorted((r for r in store.outbox_listing(["sent"]) if r["kind"] == "resolved"), key=lambda r: int(r["id"]))
    assert [r["sent_at"] for r in notices] == [iso(at(70.5)), None, iso(at(87.5))]
    assert store.deliveries(notices[1]["id"])[-1]["detail"].startswith("nothing to send: its incidents opened again")
    assert [str(m["Subject"]).split(":")[0] for m in smtp_server.inbox.messages] == [
        "[miner] OPEN", "[miner] RESOLVED", "[miner] OPEN", "[miner] RESOLVED"]


def test_the_alert_about_a_reopening_says_when_it_came_back_not_only_when_it_first_opened(
        store: Store, smtp_server: SmtpServer, hook: JsonHook) -> None:  # noqa: F811
    # Opened at 0, resolved at 60 (the on-call got RESOLVED), back at 75: the next alert said "Detected 12:00",
    # read as the first alert sent again, with nothing saying the outage was on again since 13:15.
    route = RouteSettings(name="oncall", email=("oncall@example.org",), webhooks=("hook",))
    cfg = replace(mail(smtp_server, route), webhooks=(WebhookSettings(name="hook", url_env="MINER_TEST_HOOK"),))
    iid = open_incident(store, "WhatsApp", at(0), posts=False, series=False)
    run(store, cfg, at(0), at(80), {at(60): lambda: resolve(store, iid, at(60)),
                                    at(75): lambda: reopen(store, iid, at(75))})
    assert [str(m["Subject"]).split(":")[0] for m in smtp_server.inbox.messages] == [
        "[miner] OPEN", "[miner] RESOLVED", "[miner] OPEN"]
    again = smtp_server.inbox.messages[-1]
    text = again.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = again.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "Re-opened:  2026-11-27 13:15 UTC, 15 min after it resolved at 13:00 UTC" in text
    assert "Re-opened 2026-11-27 13:15 UTC (first detected 2026-11-27 12:00 UTC)." in html
    assert "<b>Re-opened</b> 2026-11-27 13:15 UTC, 15 min after it resolved at 13:00 UTC" in html
    assert [b["incidents"][0]["reopened_at"] for b in hook.bodies] == [None, None, iso(at(75))]
    first = smtp_server.inbox.messages[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Re-opened" not in first


def test_a_reopening_seen_late_is_dated_at_its_reopening_in_the_heading_and_on_pagerduty(
        store: Store, smtp_server: SmtpServer, pd: PagerDuty) -> None:  # noqa: F811
    # Resolved at 13:00 (RESOLVED mailed, PagerDuty's alert resolved), back at 13:15 while miner was down until
    # 15:00: the alert's heading said "Opened 12:00, seen late" over a card saying "seen late: opened 13:15", read
    # as the first alert again, and PagerDuty's new alert was dated 12:00, before the resolve of the one it follows.
    route = RouteSettings(name="oncall", email=("oncall@example.org",), webhooks=("pd",), group_interval=0.0)
    smtp = SmtpSettings(host="127.0.0.1", port=smtp_server.port, security="none", timeout=5)
    cfg = pd_settings(routes=(route,), smtp=smtp)
    iid = open_incident(store, "WhatsApp", at(0), posts=False, series=False)
    for minutes, change in ((0, None), (60, resolve), (180, reopen)):
        if change is not None:
            change(store, iid, at(75 if change is reopen else minutes))
        plan_notifications(store, cfg, at(minutes))
        dispatch(store, cfg, at(minutes), worker_id="w")
    assert [str(m["Subject"]).split(":")[0] for m in smtp_server.inbox.messages] == [
        "[miner] OPEN", "[miner] RESOLVED", "[miner] OPEN (seen late)"]
    again = smtp_server.inbox.messages[-1]
    text = " ".join(again.get_body(("plain",)).get_content().split())  # type: ignore[union-attr]
    html = again.get_body(("html",)).get_content()  # type: ignore[union-attr]
    when = ("Re-opened 2026-11-27 13:15 UTC (first detected 2026-11-27 12:00 UTC), seen late: miner was down or "
            "catching up.")
    assert when in text and when in " ".join(html.split())
    assert "Opened 2026-11-27 12:00 UTC" not in text
    triggers = [e["payload"] for e in pd.events if e["event_action"] == "trigger"]
    assert [e["event_action"] for e in pd.events] == ["trigger", "resolve", "trigger"]
    assert "(seen late: opened 13:15 UTC" in triggers[-1]["summary"]
    assert [p["timestamp"] for p in triggers] == [iso(at(0)), iso(at(75))]


def test_a_reopening_the_day_after_its_resolve_dates_the_resolve_in_every_format(
        store: Store, smtp_server: SmtpServer, server: FakeServer, pd: PagerDuty,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Resolved at 23:50, back at 00:10: "20 min after it resolved at 23:50 UTC" under "Re-opened 2026-11-28 00:10"
    # left the on-call to work out which day's 23:50, where the alerts' other times give the date when it differs.
    for name in ("slack", "teams"):
        monkeypatch.setenv(f"MINER_TEST_{name.upper()}", f"{server.url}/{name}")
    slack, teams = JsonHook(server, "/slack"), JsonHook(server, "/teams")
    route = RouteSettings(name="oncall", email=("oncall@example.org",), webhooks=("slack", "teams", "pd"),
                          group_interval=0.0)
    hooks = (WebhookSettings(name="slack", format="slack", url_env="MINER_TEST_SLACK"),
             WebhookSettings(name="teams", format="teams", url_env="MINER_TEST_TEAMS"), *pd_settings().webhooks)
    smtp = SmtpSettings(host="127.0.0.1", port=smtp_server.port, security="none", timeout=5)
    cfg = pd_settings(routes=(route,), webhooks=hooks, smtp=smtp)
    iid = open_incident(store, "WhatsApp", at(0), posts=False, series=False)
    for minutes, change in ((0, None), (710, resolve), (730, reopen)):
        if change is not None:
            change(store, iid, at(minutes))
        plan_notifications(store, cfg, at(minutes))
        dispatch(store, cfg, at(minutes), worker_id="w")
    said = "re-opened 2026-11-28 00:10 UTC, 20 min after it resolved at 2026-11-27 23:50 UTC"
    again = smtp_server.inbox.messages[-1]
    assert str(again["Subject"]).startswith("[miner] OPEN")
    text = " ".join(again.get_body(("plain",)).get_content().split())  # type: ignore[union-attr]
    html = " ".join(again.get_body(("html",)).get_content().split())  # type: ignore[union-attr]
    assert f"Re-opened: {said.removeprefix('re-opened ')}" in text
    assert f"<b>Re-opened</b> {said.removeprefix('re-opened ')}" in html
    assert said in json.dumps(slack.bodies[-1]) and said in json.dumps(teams.bodies[-1])
    assert f"({said}): peak" in [e["payload"]["summary"] for e in pd.events if e["event_action"] == "trigger"][-1]


def test_the_alert_about_a_reopening_replies_to_the_incidents_earlier_alert(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # Opened at 0, resolved at 60, back at 75, resolved at 130: one incident ("after 2 h 10 min" counts from its
    # first opening), whose re-opening's alert started a thread of its own, so the mail client showed a flapping
    # outage as two, the history apart from the alert it explains.
    iid = open_incident(store, "WhatsApp", at(0), posts=False, series=False)
    run(store, mail(smtp_server), at(0), at(140), {at(60): lambda: resolve(store, iid, at(60)),
                                                   at(75): lambda: reopen(store, iid, at(75)),
                                                   at(130): lambda: resolve(store, iid, at(130))})
    opened, resolved, again, resolved_again = smtp_server.inbox.messages
    assert [str(m["Subject"]) for m in (resolved, again, resolved_again)] == [
        "[miner] RESOLVED: WhatsApp after 1 h 00 min", "[miner] OPEN: WhatsApp outage reports (15.0x normal, z 8.4)",
        "[miner] RESOLVED: WhatsApp after 2 h 10 min"]
    assert resolved["In-Reply-To"] == resolved["References"] == opened["Message-ID"]
    assert again["In-Reply-To"] == again["References"] == opened["Message-ID"]
    assert resolved_again["In-Reply-To"] == again["Message-ID"]
    # The whole chain (RFC 5322 3.6.4): a client lacking the re-opening's alert still threads it under the first.
    assert resolved_again["References"] == f"{opened['Message-ID']} {again['Message-ID']}"


def test_each_reply_about_a_flapping_outage_references_its_whole_thread_oldest_first(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # Opened at 0, resolved at 20, back at 35, resolved at 50, back at 65, still open at 105 (the reminder, 40 min
    # after the last alert), resolved at 120. References named only the parent, so a client that threads on
    # References and lacked the parent (a recipient added later, a message deleted) started a thread of its own.
    iid = open_incident(store, "WhatsApp", at(0), posts=False, series=False)
    changes = {20: resolve, 35: reopen, 50: resolve, 65: reopen, 120: resolve}
    run(store, mail(smtp_server, repeat_interval=2400.0), at(0), at(130),
        {at(m): (lambda change=change, m=m: change(store, iid, at(m))) for m, change in changes.items()})
    mails = smtp_server.inbox.messages
    assert [str(m["Subject"]).split(":")[0] for m in mails] == [
        "[miner] OPEN", "[miner] RESOLVED", "[miner] OPEN", "[miner] RESOLVED", "[miner] OPEN", "[miner] STILL OPEN",
        "[miner] RESOLVED"]
    first, _, second, _, third, _, _ = (str(m["Message-ID"]) for m in mails)
    assert [(m["In-Reply-To"], m["References"]) for m in mails] == [
        (None, None), (first, first), (first, first), (second, f"{first} {second}"), (second, f"{first} {second}"),
        (third, f"{first} {second} {third}"), (third, f"{first} {second} {third}")]


def test_a_long_thread_references_its_first_message_and_the_latest_on_one_line() -> None:
    # A service flapping all day: each re-opening's alert adds one id, and the header would grow without end.
    ids = [f"<miner.{n:032x}@example.org>" for n in range(25)]
    assert bounded(ids[:10]) == ids[:10]
    assert bounded(ids) == [ids[0], *ids[-(MAX_REFERENCES - 1):]]
    # Ids of a long domain: still one line within RFC 5322's 998 octets, the first and the parent kept.
    long = [f"<miner.{n:032x}@{'a' * 60}.{'b' * 60}.{'c' * 60}.{'d' * 60}.example>" for n in range(25)]
    kept = bounded(long)
    assert kept[0] == long[0] and kept[-2:] == long[-2:] and 2 < len(kept) < MAX_REFERENCES
    assert len("References: " + " ".join(kept)) <= 998 < len("References: " + " ".join(long[:1] + long[-len(kept):]))

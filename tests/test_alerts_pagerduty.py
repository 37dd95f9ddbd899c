"""PagerDuty webhooks (Events API v2) against a real HTTP server on 127.0.0.1 that records every request."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fakeserver import FakeServer, Recorded, Reply, ScriptedWebhook
from test_alerts_rules import reopen
from test_alerts_support import BUCKET, T0, add_official, open_incident, resolve, seed_posts, settings, store_text

from miner.alerts import dispatch, plan_notifications
from miner.alerts.dispatcher import DispatchStats
from miner.alerts.settings import PAGERDUTY_URL, AlertSettings, RouteSettings, WebhookSettings
from miner.alerts.webhook_send import webhook_url
from miner.store import Store
from miner.timeutil import parse_iso

KEY = "R0UT1NGKEYR0UT1NGKEYR0UT1NGKEY42"  # what PagerDuty calls the integration key: the secret
PATH = "/v2/enqueue"


class PagerDuty(ScriptedWebhook):
    """The Events API at PATH; 400s quote the event, as a proxy or a verbose error page might, routing key included."""

    def __init__(self, server: FakeServer) -> None:
        super().__init__(server, PATH)

    def answer(self, request: Recorded, status: int) -> tuple[bytes, str | None]:
        if status == 202:
            body = b'{"status": "success", "message": "Event processed", "dedup_key": "x"}'
        elif status == 400:
            body = b'{"status": "invalid event", "message": "Event object is invalid", "errors": ["bad: ' + \
                request.body[:300] + b'"]}'
        else:
            body = b'{"status": "throttled"}'
        return body, "application/json"

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(r.body) for r in self.requests]


@pytest.fixture
def pd(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> PagerDuty:
    return serve_pagerduty(server, monkeypatch)


def serve_pagerduty(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> PagerDuty:
    """The Events API on ``server``, its URL and routing key in the variables pd_settings names."""
    monkeypatch.setenv("MINER_TEST_PD_KEY", KEY)
    monkeypatch.setenv("MINER_TEST_PD_URL", server.url + PATH)
    return PagerDuty(server)


def pd_settings(**overrides: Any) -> AlertSettings:
    route = RouteSettings(name="pager", webhooks=("pd",), group_interval=0.0)
    hook = WebhookSettings(name="pd", format="pagerduty", url_env="MINER_TEST_PD_URL",
                           routing_key_env="MINER_TEST_PD_KEY", timeout=10.0)
    base: dict[str, Any] = {"routes": (route,), "webhooks": (hook,), "group_wait": 0.0,
                            "dashboard_url": "https://miner.example.org/", "providers": {"whatsapp": "Meta"}}
    return settings(**(base | overrides))


def one_message_of_incidents(store: Store, services: tuple[str, ...] = ("WhatsApp", "Signal", "Telegram")
                             ) -> AlertSettings:
    """Settings grouping by route, and one PagerDuty message planned at T0: an event per service's open incident."""
    cfg = pd_settings(group_by="route")
    for service in services:
        open_incident(store, service, T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    return cfg


def test_an_incident_triggers_reminds_and_resolves_one_pagerduty_alert(store: Store, pd: PagerDuty,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    cfg = pd_settings(repeat_interval=3600.0)
    incident = open_incident(store, "WhatsApp", T0)
    add_official(store, "WhatsApp", T0 + timedelta(minutes=5))
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0 + timedelta(minutes=10), worker_id="w").sent == 1
    [trigger] = pd.events
    assert trigger["routing_key"] == KEY and trigger["event_action"] == "trigger"
    store_key = store.alert_state("pagerduty_store_key")
    assert store_key and trigger["dedup_key"] == f"miner/{store_key}/WhatsApp/{incident}"
    assert trigger["client"] == "miner" and trigger["client_url"] == "https://miner.example.org/"
    payload = trigger["payload"]
    assert payload["source"] == "WhatsApp" and payload["severity"] == "error" and payload["group"] == "Meta"
    assert payload["timestamp"] == T0.isoformat() and payload["component"] == "messaging"
    assert payload["summary"].startswith("WhatsApp: outage reported by users since 2026-11-27 12:00 UTC: peak 30")
    assert "provider: Some users are unable to send messages (investigating)" in payload["summary"]
    assert len(payload["summary"]) <= 1024
    # The details are the json format's incident, post text cleaned as there: nothing rawer.
    details = payload["custom_details"]
    assert details["route"] == "pager" and details["id"] == incident and details["reminder"] is False
    texts = [s["text"] for s in details["samples"]]
    assert texts and not any(ch in t for t in texts for ch in "\x1b\x07\u202e")
    assert {"href": "https://status.example.com/incidents/abc",
            "text": "provider status: Some users are unable to send messages"} in trigger["links"]

    plan_notifications(store, cfg, T0 + timedelta(hours=1, minutes=11))  # repeat_interval after the alert went out
    assert dispatch(store, cfg, T0 + timedelta(hours=1, minutes=11), worker_id="w").sent == 1
    reminder = pd.events[1]
    assert (reminder["event_action"], reminder["dedup_key"]) == ("trigger", trigger["dedup_key"])
    assert "(reminder)" in reminder["payload"]["summary"] and reminder["payload"]["custom_details"]["reminder"]

    resolve(store, incident, T0 + timedelta(hours=2))
    plan_notifications(store, cfg, T0 + timedelta(hours=2))
    assert dispatch(store, cfg, T0 + timedelta(hours=2), worker_id="w").sent == 1
    assert pd.events[2] == {"routing_key": KEY, "event_action": "resolve", "dedup_key": trigger["dedup_key"]}
    assert [d["detail"] for r in store.outbox_listing(["sent"]) for d in store.deliveries(r["id"])] == \
        ["1 PagerDuty event accepted"] * 3
    assert KEY not in store_text(store) and KEY not in caplog.text


def test_a_batch_is_one_event_per_incident_and_a_retry_sends_only_those_not_accepted(
        store: Store, pd: PagerDuty, caplog: pytest.LogCaptureFixture) -> None:
    cfg = pd_settings(group_by="route")
    ids = [open_incident(store, service, T0, posts=False, series=False) for service in ("WhatsApp", "Signal")]
    plan_notifications(store, cfg, T0)
    assert len(store.outbox_listing(["pending"])) == 1  # one message, two incidents
    pd.script = [202, (503, "120")]
    assert dispatch(store, cfg, T0, worker_id="w").retried == 1
    [row] = store.outbox_listing(["pending"])
    assert "HTTP 503" in row["last_error"] and "1 other event accepted" in row["last_error"]
    assert (row["next_attempt_at"] >= (T0 + timedelta(seconds=120)).isoformat())  # Retry-After honoured
    assert dispatch(store, cfg, T0 + timedelta(minutes=3), worker_id="w").sent == 1
    keys = [e["dedup_key"].split("/", 2)[2] for e in pd.events]
    assert keys == [f"WhatsApp/{ids[0]}", f"Signal/{ids[1]}", f"Signal/{ids[1]}"]
    [sent] = store.outbox_listing(["sent"])
    assert store.deliveries(sent["id"])[-1]["detail"] == "1 PagerDuty event accepted (1 more at an earlier attempt)"
    assert KEY not in store_text(store) and KEY not in caplog.text


@pytest.mark.parametrize("status", [429, 503, 500])
def test_throttling_and_server_errors_are_retried(store: Store, pd: PagerDuty, status: int) -> None:
    cfg = pd_settings()
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    pd.script = [status]
    assert dispatch(store, cfg, T0, worker_id="w").retried == 1
    assert f"HTTP {status}" in store.outbox_listing(["pending"])[0]["last_error"]
    assert dispatch(store, cfg, T0 + timedelta(seconds=cfg.retry_max), worker_id="w").sent == 1
    assert [e["event_action"] for e in pd.events] == ["trigger", "trigger"]


def test_an_invalid_event_is_not_retried_and_its_error_hides_the_routing_key(
        store: Store, pd: PagerDuty, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="miner")
    cfg = pd_settings(group_by="route")
    for service in ("WhatsApp", "Signal"):
        open_incident(store, service, T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    pd.script = [400]  # the first event refused, the second accepted: a 400 says nothing about the others
    assert dispatch(store, cfg, T0, worker_id="w").failed == 1
    assert len(pd.events) == 2
    [row] = store.outbox_listing(["failed"])
    assert row["reason"].startswith("webhook pd: HTTP 400 {\"status\": \"invalid event\"")
    assert "[redacted]" in row["reason"] and row["reason"].endswith("; 1 other event accepted")
    assert dispatch(store, cfg, T0 + timedelta(hours=1), worker_id="w").claimed == 0
    assert len(pd.events) == 2
    assert KEY not in store_text(store) and KEY not in caplog.text


def test_a_missing_routing_key_fails_at_once_naming_the_variable(store: Store, pd: PagerDuty,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINER_TEST_PD_KEY", "")
    cfg = pd_settings(group_by="route")
    for service in ("WhatsApp", "Signal"):
        open_incident(store, service, T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0, worker_id="w").failed == 1
    reason = store.outbox_listing(["failed"])[0]["reason"]
    assert reason.startswith("webhook pd: routing key: environment variable MINER_TEST_PD_KEY is not set (trigger ")
    assert reason.count("MINER_TEST_PD_KEY") == 1 and pd.events == []


@pytest.mark.parametrize("notify_resolved", [True, False])
def test_an_alert_going_out_after_its_incident_resolved_does_not_page(store: Store, pd: PagerDuty,
                                                                      notify_resolved: bool) -> None:
    # Its resolve notice is suppressed (the alert shows it resolved): a trigger would page for an outage that is
    # over, and stay open on PagerDuty for good.
    route = RouteSettings(name="pager", webhooks=("pd",), notify_resolved=notify_resolved)
    cfg = pd_settings(routes=(route,))
    incident = open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    pd.script = [503]
    assert dispatch(store, cfg, T0, worker_id="w").retried == 1
    resolve(store, incident, T0 + timedelta(minutes=5))
    plan_notifications(store, cfg, T0 + timedelta(minutes=5))
    assert dispatch(store, cfg, T0 + timedelta(minutes=10), worker_id="w").sent == 1
    actions = [e["event_action"] for e in pd.events]
    assert actions == (["trigger", "resolve"] if notify_resolved else ["trigger"])
    if not notify_resolved:
        [sent] = store.outbox_listing(["sent"])
        assert store.deliveries(sent["id"])[-1]["detail"].startswith("nothing to send")


def test_a_resolve_notice_retried_past_a_reopening_does_not_resolve_the_reopened_alert(store: Store,
                                                                                     pd: PagerDuty) -> None:
    cfg = pd_settings()
    incident = open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0, worker_id="w").sent == 1
    resolve(store, incident, T0 + timedelta(minutes=10))
    plan_notifications(store, cfg, T0 + timedelta(minutes=10))
    pd.script = [(429, "300")]  # the resolve is throttled for 5 minutes
    assert dispatch(store, cfg, T0 + timedelta(minutes=10), worker_id="w").retried == 1
    reopen(store, incident, T0 + timedelta(minutes=11))
    plan_notifications(store, cfg, T0 + timedelta(minutes=11))
    # The re-opening's trigger waits out the rate limit PagerDuty announced, then goes before the resolve notice.
    assert dispatch(store, cfg, T0 + timedelta(minutes=11), worker_id="w").throttled == 1
    assert dispatch(store, cfg, T0 + timedelta(minutes=20), worker_id="w").sent == 2
    # The outage is on again: the last word PagerDuty has is the re-opening's trigger, not the stale resolve.
    assert [e["event_action"] for e in pd.events] == ["trigger", "resolve", "trigger"]
    [notice] = [r for r in store.outbox_listing(["sent"]) if r["kind"] == "resolved"]
    assert store.deliveries(notice["id"])[-1]["detail"].startswith("nothing to send")


@pytest.mark.parametrize("silenced_at", [5, 31])  # before the resolve is planned, or while it waits its group wait
def test_an_outage_ending_under_a_silence_resolves_its_pagerduty_alert(store: Store, pd: PagerDuty,
                                                                       silenced_at: int) -> None:
    # The on-call, paged, silences the service; a resolve pages nobody, and muted it left the alert open for good.
    cfg = pd_settings(group_wait=120.0)
    incident = open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0 + timedelta(minutes=2), worker_id="w").sent == 1
    store.add_silence("WhatsApp", T0 + timedelta(minutes=silenced_at), T0 + timedelta(hours=2), "on it", T0)
    resolve(store, incident, T0 + timedelta(minutes=30))
    plan_notifications(store, cfg, T0 + timedelta(minutes=30))
    plan_notifications(store, cfg, T0 + timedelta(minutes=31))
    assert dispatch(store, cfg, T0 + timedelta(minutes=32), worker_id="w").sent == 1
    assert [e["event_action"] for e in pd.events] == ["trigger", "resolve"]


def test_a_silence_after_part_of_a_batch_was_accepted_still_resolves_what_paged(store: Store, pd: PagerDuty) -> None:
    cfg = pd_settings(group_by="route")
    ids = [open_incident(store, service, T0, posts=False, series=False) for service in ("WhatsApp", "Signal")]
    plan_notifications(store, cfg, T0)
    pd.script = [202, (429, "600")]  # WhatsApp paged, Signal throttled
    assert dispatch(store, cfg, T0, worker_id="w").retried == 1
    for service in ("WhatsApp", "Signal"):
        store.add_silence(service, T0 + timedelta(minutes=1), T0 + timedelta(hours=1), "on it", T0)
    plan_notifications(store, cfg, T0 + timedelta(minutes=1))  # the rest of the batch is muted
    assert [r["status"] for r in store.outbox_listing(["pending", "suppressed"])] == ["suppressed"]
    resolve(store, ids[0], T0 + timedelta(minutes=30))
    plan_notifications(store, cfg, T0 + timedelta(minutes=30))
    dispatch(store, cfg, T0 + timedelta(minutes=30), worker_id="w")
    plan_notifications(store, cfg, T0 + timedelta(hours=2))  # Signal, still open, is announced after the silence
    dispatch(store, cfg, T0 + timedelta(hours=2), worker_id="w")
    # WhatsApp's opening was delivered, not suppressed: its resolve is not inhibited, and it is not announced again.
    assert [(e["event_action"], e["dedup_key"].split("/", 2)[2]) for e in pd.events] == [
        ("trigger", f"WhatsApp/{ids[0]}"), ("trigger", f"Signal/{ids[1]}"),
        ("resolve", f"WhatsApp/{ids[0]}"), ("trigger", f"Signal/{ids[1]}")]


def test_notify_resolved_false_sends_no_resolve(store: Store, pd: PagerDuty) -> None:
    cfg = pd_settings(routes=(RouteSettings(name="pager", webhooks=("pd",), notify_resolved=False),))
    incident = open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0, worker_id="w").sent == 1
    resolve(store, incident, T0 + timedelta(hours=1))
    plan_notifications(store, cfg, T0 + timedelta(hours=1))
    dispatch(store, cfg, T0 + timedelta(hours=1), worker_id="w")
    assert [e["event_action"] for e in pd.events] == ["trigger"]


def test_the_summary_is_cleaned_and_cut_to_pagerdutys_limit(store: Store, pd: PagerDuty) -> None:
    cfg = pd_settings()
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    seed_posts(store, "WhatsApp", T0 - BUCKET, ["WhatsApp down \x1b[2J\u202e" + "x" * 300])
    add_official(store, "WhatsApp", T0)
    with store.database.transaction() as conn:  # the provider's title, long and with a line break
        conn.execute("UPDATE official_incidents SET title = ?", ("Outage\r\nINFO forged " + "y" * 2000,))
        conn.execute("UPDATE incidents SET symptoms = ?", (json.dumps({f"s{i}\x07": 1 for i in range(30)}),))
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0, worker_id="w").sent == 1
    [event] = pd.events
    summary = event["payload"]["summary"]
    assert len(summary) <= 1024 and not any(ch in summary for ch in "\r\n\x1b\x07\u202e")
    assert "WhatsApp down" not in summary  # post text stays in custom_details, as the json format sends it


def test_the_trigger_of_a_reopening_says_when_it_came_back_within_the_summary_limit(store: Store,
                                                                                   pd: PagerDuty) -> None:
    # Resolved at 13:00 (PagerDuty's alert resolved), back at 13:15: the new alert's summary said "since 12:00" only,
    # read as the old alert again, where the email, Slack and Teams say it re-opened and when.
    cfg = pd_settings()
    incident = open_incident(store, "WhatsApp", T0, posts=False, series=False)
    add_official(store, "WhatsApp", T0)
    with store.database.transaction() as conn:  # the longest title and symptoms a summary shows
        conn.execute("UPDATE official_incidents SET title = ?", ("Outage " + "y" * 2000,))
        conn.execute("UPDATE incidents SET symptoms = ?", (json.dumps({f"s{i}" + "z" * 60: 1 for i in range(9)}),))
    for at, change in ((0, None), (60, resolve), (75, reopen)):
        if change is not None:
            change(store, incident, T0 + timedelta(minutes=at))
        plan_notifications(store, cfg, T0 + timedelta(minutes=at))
        assert dispatch(store, cfg, T0 + timedelta(minutes=at), worker_id="w").sent == 1
    assert [e["event_action"] for e in pd.events] == ["trigger", "resolve", "trigger"]
    first, again = (e["payload"]["summary"] for e in pd.events if e["event_action"] == "trigger")
    assert "re-opened" not in first
    assert again.startswith("WhatsApp: outage reported by users since 2026-11-27 12:00 UTC (re-opened 2026-11-27 "
                            "13:15 UTC, 15 min after it resolved at 13:00 UTC): peak 30")
    assert len(again) <= 1024 and again.endswith("(investigating)")
    # Events API v2: payload.timestamp is "the time at which the emitting tool detected or generated the event", for
    # this trigger the re-opening: the first opening's time dated the new PagerDuty alert 75 minutes back, before
    # the resolve of the one it follows.
    assert [e["payload"]["timestamp"] for e in pd.events if e["event_action"] == "trigger"] == [
        T0.isoformat(), (T0 + timedelta(minutes=75)).isoformat()]


def test_a_new_store_does_not_reuse_the_dedup_keys_of_the_old_one(tmp_path: Path, pd: PagerDuty) -> None:
    # Incident ids start from 1 again in a new store (the old one deleted mid-outage, or a second deployment paging
    # the same service): under an old key still open on PagerDuty, a new outage was folded into that alert, paging
    # nobody if it was acknowledged, and either store's resolve closed it.
    cfg = pd_settings()
    keys = []
    for name in ("old.sqlite", "new.sqlite"):
        with closing(Store.open(tmp_path / name)) as store:
            assert open_incident(store, "WhatsApp", T0, posts=False, series=False) == 1
            plan_notifications(store, cfg, T0)
            assert dispatch(store, cfg, T0, worker_id="w").sent == 1
            keys.append(pd.events[-1]["dedup_key"])
    assert keys[0] != keys[1] and all(k.startswith("miner/") and k.endswith("/WhatsApp/1") for k in keys)
    with closing(Store.open(tmp_path / "old.sqlite")) as store, closing(Store.open(tmp_path / "old.sqlite")) as other:
        resolve(store, 1, T0 + timedelta(hours=1))
        plan_notifications(other, cfg, T0 + timedelta(hours=1))  # another process on the old store
        assert dispatch(other, cfg, T0 + timedelta(hours=1), worker_id="w2").sent == 1
    assert pd.events[-1]["event_action"] == "resolve" and pd.events[-1]["dedup_key"] == keys[0]


def test_the_endpoint_is_pagerdutys_unless_url_or_url_env_says_otherwise(pd: PagerDuty) -> None:
    hook = WebhookSettings(name="pd", format="pagerduty", routing_key_env="MINER_TEST_PD_KEY")
    assert webhook_url(hook, {}) == PAGERDUTY_URL == "https://events.pagerduty.com/v2/enqueue"
    eu = dataclasses.replace(hook, url="https://events.eu.pagerduty.com/v2/enqueue")
    assert webhook_url(eu, {}) == "https://events.eu.pagerduty.com/v2/enqueue"
    assert webhook_url(dataclasses.replace(hook, url_env="PROXY"), {"PROXY": pd.server.url + PATH}).endswith(PATH)


def test_a_service_taken_off_the_route_still_resolves_the_alert_it_paged(store: Store, pd: PagerDuty) -> None:
    # WhatsApp leaves feeds.toml, and so the route's services, while its incident is open: the detector resolves
    # it (detect_stage._resolve_unwatched), and the PagerDuty alert its opening triggered must not stay open for good.
    route = RouteSettings(name="pager", webhooks=("pd",), services=("WhatsApp", "Instagram"), group_interval=0.0)
    incident = open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, pd_settings(routes=(route,)), T0)
    assert dispatch(store, pd_settings(routes=(route,)), T0, worker_id="w").sent == 1
    # A route that never alerted on it hears of neither.
    other = RouteSettings(name="team", email=("team@example.org",), services=("Instagram",))
    later = pd_settings(routes=(dataclasses.replace(route, services=("Instagram",)), other))
    store.update_incident(incident, T0 + timedelta(hours=1), {"status": "resolved", "resolved_at": T0 + timedelta(
        hours=1)}, "resolve", {"reason": "unwatched"})
    plan_notifications(store, later, T0 + timedelta(hours=1))
    assert dispatch(store, later, T0 + timedelta(hours=1), worker_id="w").sent == 1
    assert [(e["event_action"], e["dedup_key"]) for e in pd.events] == [("trigger", pd.events[0]["dedup_key"]),
                                                                        ("resolve", pd.events[0]["dedup_key"])]
    assert [r["route"] for r in store.outbox_listing(["pending", "sent", "suppressed"])] == ["pager", "pager"]


@pytest.mark.parametrize("silenced", ["before the resolve", "after the resolve"])
def test_an_alert_a_silenced_reopening_left_open_is_resolved(store: Store, pd: PagerDuty, silenced: str) -> None:
    # Paged, resolved (the resolve retried through a 503), opened again (so the retried resolve has nothing to say,
    # and the re-opening's trigger waits out the outage too), silenced, resolved again: PagerDuty must not be left
    # with the first trigger's alert open, whichever of the silence and the last resolve comes first.
    cfg = pd_settings()
    incident = open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0, worker_id="w").sent == 1

    def silence(minutes: int) -> None:
        store.add_silence("WhatsApp", T0 + timedelta(minutes=minutes), T0 + timedelta(hours=5), "on it", T0)
        plan_notifications(store, cfg, T0 + timedelta(minutes=minutes))

    resolve(store, incident, T0 + timedelta(minutes=60))
    plan_notifications(store, cfg, T0 + timedelta(minutes=60))
    pd.script = [503, 503]
    assert dispatch(store, cfg, T0 + timedelta(minutes=60), worker_id="w").retried == 1
    reopen(store, incident, T0 + timedelta(minutes=65))
    plan_notifications(store, cfg, T0 + timedelta(minutes=65))
    assert dispatch(store, cfg, T0 + timedelta(minutes=66), worker_id="w").retried == 1  # the re-opening's trigger
    if silenced == "before the resolve":
        silence(70)
    resolve(store, incident, T0 + timedelta(minutes=130))
    plan_notifications(store, cfg, T0 + timedelta(minutes=130))
    if silenced == "after the resolve":
        silence(131)
    dispatch(store, cfg, T0 + timedelta(minutes=132), worker_id="w")
    assert [e["event_action"] for e in pd.events][-1] == "resolve"
    assert store.outbox_listing(["pending", "sending", "failed"]) == []
    # An incident never paged (its opening stale: alerts enabled on a store with past outages) gets no resolve.
    past = open_incident(store, "Signal", T0 - timedelta(hours=3), posts=False, series=False)
    resolve(store, past, T0 + timedelta(minutes=140))
    plan_notifications(store, cfg, T0 + timedelta(minutes=140))
    dispatch(store, cfg, T0 + timedelta(minutes=140), worker_id="w")
    assert not any("/Signal/" in e["dedup_key"] for e in pd.events)



def test_a_route_renamed_during_an_outage_resolves_the_pagerduty_alert_its_old_name_triggered(
        store: Store, pd: PagerDuty) -> None:
    cfg = pd_settings()
    incident = open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0, worker_id="w").sent == 1
    # The route is renamed while the outage goes on: the route of the new name is told of it (the same dedup_key,
    # which PagerDuty folds into the open alert), and its resolve closes the alert.
    renamed = pd_settings(routes=(RouteSettings(name="pager-eu", webhooks=("pd",), group_interval=0.0),))
    plan_notifications(store, renamed, T0 + timedelta(minutes=10))
    assert dispatch(store, renamed, T0 + timedelta(minutes=10), worker_id="w").sent == 1
    resolve(store, incident, T0 + timedelta(minutes=20))
    plan_notifications(store, renamed, T0 + timedelta(minutes=20))
    assert dispatch(store, renamed, T0 + timedelta(minutes=20), worker_id="w").sent == 1
    assert [e["event_action"] for e in pd.events] == ["trigger", "trigger", "resolve"]
    assert len({e["dedup_key"] for e in pd.events}) == 1


def test_a_stop_while_a_batch_of_events_goes_out_sends_no_further_event_and_the_rest_go_at_the_retry(
        store: Store, server: FakeServer, pd: PagerDuty) -> None:
    # The stop waited for every event of the batch (hundreds, for a provider's outage, each up to the timeout).
    cfg = one_message_of_incidents(store)
    stop = threading.Event()

    def asked_to_stop_meanwhile(request: Recorded) -> Reply:
        stop.set()
        return Reply(202, b'{"status": "success"}', content_type="application/json")

    server.serve(PATH, asked_to_stop_meanwhile)
    stats = dispatch(store, cfg, T0, worker_id="w", stop=stop, clock=lambda: T0)
    assert (stats.sent, stats.retried) == (0, 1) and len(pd.requests) == 1
    [row] = store.outbox_listing(["pending"])
    assert row["last_error"] == ("the service stopped with 2 of the message's 3 PagerDuty events unsent: they go at "
                                 "the retry; 1 other event accepted")
    # Cut by the stop, as an email is: due at once, with no backoff, and no attempt of the message's (they count
    # towards giving it up); it was retried with backoff and counted at every stop or reload of the service.
    assert (row["attempts"], parse_iso(str(row["next_attempt_at"]))) == (0, T0)
    [cut] = store.deliveries(row["id"])
    assert (cut["attempt"], cut["outcome"]) == (1, "retry")
    server.serve(PATH, lambda request: Reply(202, b'{"status": "success"}', content_type="application/json"))
    assert dispatch(store, cfg, T0, worker_id="w").sent == 1
    keys = [e["dedup_key"] for e in pd.events]
    assert len(keys) == 3 == len(set(keys))


def test_a_batch_of_events_outlasting_the_lease_is_not_taken_over_mid_way(
        store: Store, server: FakeServer, pd: PagerDuty) -> None:
    # Each event may take up to the webhook's timeout, and the lease outlasts one (slowest_send): a batch of one event
    # per incident outlasted it, another dispatcher took the row over mid-batch and sent the rest again, alongside.
    cfg = one_message_of_incidents(store)  # lease_seconds 60
    clock = [T0]
    taken: list[DispatchStats] = []

    def slow_answer(request: Recorded) -> Reply:
        clock[0] += timedelta(seconds=40)  # each event well within the lease, two of them past it
        if len(pd.requests) == 2 and not taken:  # another dispatcher starts now, on its own connection
            with closing(Store.open(store.path)) as other:
                taken.append(dispatch(other, cfg, clock[0], worker_id="other", clock=lambda: clock[0]))
        return Reply(202, b'{"status": "success"}', content_type="application/json")

    server.serve(PATH, slow_answer)
    stats = dispatch(store, cfg, T0, worker_id="w", clock=lambda: clock[0])
    assert (stats.sent, stats.lapsed) == (1, 0)
    assert [(t.reclaimed, t.claimed) for t in taken] == [(0, 0)]
    keys = [e["dedup_key"] for e in pd.events]
    assert len(keys) == 3 == len(set(keys))


def test_a_batch_taken_over_after_an_event_slower_than_the_lease_is_left_to_the_dispatcher_that_took_it(
        store: Store, server: FakeServer, pd: PagerDuty) -> None:
    # An event slower than the lease itself lets another dispatcher take the row over, and that one sends what is
    # left: the first dispatcher, carrying on, sent each of the other events a second time.
    cfg = one_message_of_incidents(store)  # lease_seconds 60
    clock = [T0]
    taken: list[DispatchStats] = []

    def first_answer_slower_than_the_lease(request: Recorded) -> Reply:
        clock[0] += timedelta(seconds=70 if len(pd.requests) == 1 else 1)
        if len(pd.requests) == 1:
            with closing(Store.open(store.path)) as other:
                taken.append(dispatch(other, cfg, clock[0], worker_id="other", clock=lambda: clock[0]))
        return Reply(202, b'{"status": "success"}', content_type="application/json")

    server.serve(PATH, first_answer_slower_than_the_lease)
    stats = dispatch(store, cfg, T0, worker_id="w", clock=lambda: clock[0])
    assert [(t.reclaimed, t.sent) for t in taken] == [(1, 1)]
    assert stats.lapsed == 1
    keys = [e["dedup_key"] for e in pd.events]
    assert len(keys) == 4 and len(set(keys)) == 3  # the one in flight twice (no way around it), the others once

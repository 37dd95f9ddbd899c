"""Planning rules with `now` passed in: idempotence, group_wait, repeats, silences, maintenance, inhibition, digests."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from test_alerts_support import T0, failing_source, open_incident, resolve, settings

from miner.alerts import enqueue_due_digests, plan_notifications
from miner.alerts.settings import AlertSettings, MaintenanceWindow, RouteSettings
from miner.config import parse_config
from miner.errors import ConfigError
from miner.store import Store
from miner.store.outbox import Finish
from miner.timeutil import iso

EMAIL_ONLY = RouteSettings(name="oncall", email=("oncall@example.org",), digest="0 * * * *")


def cfg(**overrides: object) -> AlertSettings:
    return settings(routes=(EMAIL_ONLY,), webhooks=(), **overrides)


def rows(store: Store, *statuses: str) -> list[dict[str, Any]]:
    return store.outbox_listing(list(statuses or ("pending", "sending", "sent", "failed", "suppressed")))


def plan_and_send(store: Store, settings_: AlertSettings, now: datetime) -> int:
    """Plan, then have everything due delivered (as the dispatcher records it): reminders count from delivery."""
    planned = plan_notifications(store, settings_, now)
    for row in store.due_notifications(now, 100):
        assert store.claim_due(int(row["id"]), "test", now, now) is not None
        assert store.finish_notification(int(row["id"]), "test", now, Finish("sent"))
    return planned


def test_planning_twice_or_from_two_stores_plans_once(tmp_path: Path) -> None:
    a, b = Store.open(tmp_path / "m.sqlite"), Store.open(tmp_path / "m.sqlite")
    open_incident(a, "WhatsApp", T0, posts=False, series=False)
    settings_ = settings()  # email + one webhook: two channels
    assert plan_notifications(a, settings_, T0) == 2
    assert plan_notifications(b, settings_, T0) == 0
    assert plan_notifications(a, settings_, T0 + timedelta(seconds=1)) == 0
    assert sorted(r["channel"] for r in rows(a)) == ["email", "webhook:hook"]
    a.close()
    b.close()


def test_group_wait_batches_openings_into_one_message(store: Store) -> None:
    c = cfg(group_wait=60.0, providers={"airtel": "ISPs", "mtn": "ISPs", "africell": "ISPs"})
    first = open_incident(store, "Airtel", T0, posts=False, series=False)
    plan_notifications(store, c, T0)
    second = open_incident(store, "MTN", T0 + timedelta(seconds=20), posts=False, series=False)
    plan_notifications(store, c, T0 + timedelta(seconds=20))
    [batch] = rows(store)
    assert batch["next_attempt_at"] == (T0 + timedelta(seconds=60)).isoformat()
    assert [i["incident_id"] for i in store.notification_items(batch["id"])] == [first, second]
    assert store.due_notifications(T0 + timedelta(seconds=59), 10) == []
    # Once the batch is due, a new opening starts a new message instead of joining one about to go out.
    open_incident(store, "Africell", T0 + timedelta(seconds=61), posts=False, series=False)
    plan_notifications(store, c, T0 + timedelta(seconds=61))
    assert len(rows(store)) == 2


def test_repeat_interval_renotifies_a_still_open_incident(store: Store) -> None:
    c = cfg(group_wait=0.0, repeat_interval=3600.0)
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_and_send(store, c, T0)
    assert plan_and_send(store, c, T0 + timedelta(minutes=59)) == 0
    assert plan_and_send(store, c, T0 + timedelta(minutes=60)) == 1
    assert plan_and_send(store, c, T0 + timedelta(minutes=90)) == 0
    assert plan_and_send(store, c, T0 + timedelta(minutes=120)) == 1
    kinds = [i["kind"] for r in rows(store) for i in store.notification_items(int(r["id"]))]
    assert sorted(kinds) == ["open", "repeat", "repeat"]


def test_a_route_made_digest_only_gets_no_more_reminders_but_still_the_resolve(store: Store) -> None:
    c = cfg(group_wait=0.0, repeat_interval=3600.0)
    iid = open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_and_send(store, c, T0)
    # The team switched the route to digests only: an incident it was alerted to before is not reminded of.
    quiet = settings(routes=(replace(EMAIL_ONLY, immediate=False),), webhooks=(), group_wait=0.0,
                     repeat_interval=3600.0)
    assert plan_and_send(store, quiet, T0 + timedelta(minutes=61)) == 0
    assert plan_and_send(store, quiet, T0 + timedelta(hours=5)) == 0
    # Its resolve notice still follows the alert the route sent (docs/alerts.md, immediate).
    resolve(store, iid, T0 + timedelta(hours=6))
    assert plan_and_send(store, quiet, T0 + timedelta(hours=6)) == 1
    assert sorted(i["kind"] for r in rows(store) for i in store.notification_items(int(r["id"]))) == [
        "open", "resolve"]


def test_a_route_added_during_an_outage_is_told_of_it_and_of_its_resolve(store: Store) -> None:
    c = cfg(group_wait=0.0)
    iid = open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_and_send(store, c, T0)
    # A pager route added (or a route renamed, given the service, made immediate) while the outage goes on: as
    # Alertmanager tells a new receiver what still fires. It heard nothing, not even the resolve.
    pager = RouteSettings(name="pager", email=("pager@example.org",))
    both = settings(routes=(EMAIL_ONLY, pager), webhooks=(), group_wait=0.0)
    assert plan_and_send(store, both, T0 + timedelta(minutes=10)) == 1
    assert plan_and_send(store, both, T0 + timedelta(minutes=11)) == 0
    resolve(store, iid, T0 + timedelta(minutes=20))
    assert plan_and_send(store, both, T0 + timedelta(minutes=20)) == 2
    assert sorted((r["route"], r["kind"], r["status"]) for r in rows(store)) == [
        ("oncall", "alert", "sent"), ("oncall", "resolved", "sent"),
        ("pager", "alert", "sent"), ("pager", "resolved", "sent")]


def test_a_route_added_during_a_silenced_outage_is_told_of_it_once_the_silence_ends(store: Store) -> None:
    iid = open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_and_send(store, cfg(group_wait=0.0), T0)
    silence = store.add_silence("WhatsApp", T0, T0 + timedelta(hours=2), "provider deploy", T0)
    pager = RouteSettings(name="pager", email=("pager@example.org",))
    both = settings(routes=(EMAIL_ONLY, pager), webhooks=(), group_wait=0.0, stale_after=660.0)
    assert plan_and_send(store, both, T0 + timedelta(minutes=10)) == 0
    store.end_silence(silence, T0 + timedelta(hours=1))
    assert plan_and_send(store, both, T0 + timedelta(hours=1)) == 1
    [pager_row] = [r for r in rows(store) if r["route"] == "pager"]
    [item] = store.notification_items(int(pager_row["id"]))
    # Not "seen late": miner saw it open in time, the route is what is new.
    assert item["kind"] == "open" and item["seen_late_at"] is None
    assert store.incident(iid)["status"] == "open"


def test_a_channel_whose_alert_is_still_retried_gets_no_reminder_on_top(store: Store) -> None:
    c = settings(group_wait=0.0, repeat_interval=3600.0)  # email and webhook
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, c, T0)
    [email] = [r for r in rows(store) if r["channel"] == "email"]
    assert store.claim_due(int(email["id"]), "test", T0, T0) is not None
    assert store.finish_notification(int(email["id"]), "test", T0, Finish("sent"))
    # The webhook's receiver is down and its alert is retried: only email is reminded, an hour after delivery.
    assert plan_notifications(store, c, T0 + timedelta(minutes=60)) == 1
    assert [(r["channel"], r["status"]) for r in rows(store)] == [
        ("email", "pending"), ("webhook:hook", "pending"), ("email", "sent")]


def test_silence_suppresses_and_records_and_inhibits_the_resolve(store: Store) -> None:
    c = cfg(group_wait=0.0)
    sid = store.add_silence("whatsapp", T0 - timedelta(minutes=5), T0 + timedelta(hours=2), "deploy", T0)
    iid = open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, c, T0)
    [row] = rows(store)
    assert row["status"] == "suppressed"
    assert f"silence #{sid}" in str(row["reason"]) and "deploy" in str(row["reason"])
    assert store.due_notifications(T0 + timedelta(days=1), 10) == []
    # The silence is over by the time it resolves, yet the notice is inhibited: no planning ran between the end of
    # the silence and the resolve, so nobody was told it opened.
    resolve(store, iid, T0 + timedelta(hours=3))
    plan_notifications(store, c, T0 + timedelta(hours=3))
    resolved = [r for r in rows(store) if r["kind"] == "resolved"]
    assert [r["status"] for r in resolved] == ["suppressed"] and "inhibited" in str(resolved[0]["reason"])
    # Silenced openings are not repeated either.
    assert plan_notifications(store, c, T0 + timedelta(hours=9)) == 0


@pytest.mark.parametrize("mute", ["silence", "maintenance"])
def test_an_incident_outlasting_its_silence_is_announced_when_the_silence_ends(store: Store, mute: str) -> None:
    window = MaintenanceWindow(service="WhatsApp", start="2026-11-27T11:55:00Z", end="2026-11-27T12:15:00Z")
    c = cfg(group_wait=0.0, repeat_interval=3600.0, maintenance=(window,) if mute == "maintenance" else ())
    if mute == "silence":
        store.add_silence("WhatsApp", T0 - timedelta(minutes=5), T0 + timedelta(minutes=15), "", T0)
    iid = open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_and_send(store, c, T0)
    assert [r["status"] for r in rows(store)] == ["suppressed"]
    assert plan_and_send(store, c, T0 + timedelta(minutes=14)) == 0  # still muted
    # The mute is over and the outage is not: the opening goes out now, as an opening, once.
    assert plan_and_send(store, c, T0 + timedelta(minutes=16)) == 1
    assert plan_and_send(store, c, T0 + timedelta(minutes=17)) == 0
    [late] = rows(store, "sent")
    assert late["kind"] == "alert" and [i["kind"] for i in store.notification_items(int(late["id"]))] == ["open"]
    assert store.open_message_id("oncall", iid) == late["message_id"]  # the resolve notice threads on it
    # Reminders count from the late opening, and the resolve is announced rather than inhibited.
    assert plan_and_send(store, c, T0 + timedelta(minutes=75)) == 0
    assert plan_and_send(store, c, T0 + timedelta(minutes=76)) == 1
    resolve(store, iid, T0 + timedelta(minutes=80))
    assert plan_and_send(store, c, T0 + timedelta(minutes=80)) == 1
    assert sorted((r["kind"], r["status"]) for r in rows(store)) == [
        ("alert", "sent"), ("alert", "sent"), ("alert", "suppressed"), ("resolved", "sent")]


def reopen(store: Store, incident_id: int, at: datetime) -> None:
    """What the pipeline stores when the detector opens again within the cool-down of a resolve."""
    store.update_incident(incident_id, at, {"status": "open", "resolved_at": None}, kind="update",
                          details={"reason": "reopened"})


def items_of(store: Store, *statuses: str) -> list[tuple[str, str, str]]:
    return [(str(r["kind"]), str(i["kind"]), str(r["status"])) for r in reversed(rows(store, *statuses))
            for i in store.notification_items(int(r["id"]))]


def test_an_incident_back_after_its_resolve_notice_is_announced_as_open_again(store: Store) -> None:
    c = cfg(group_wait=0.0, repeat_interval=5400.0)
    iid = open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_and_send(store, c, T0)
    resolve(store, iid, T0 + timedelta(hours=1))
    plan_and_send(store, c, T0 + timedelta(hours=1))
    # Back within the detector's cool-down: the same incident, open again. Whoever read "resolved" must hear it,
    # once: not also reminded of it because the first alert is more than repeat_interval old.
    reopen(store, iid, T0 + timedelta(hours=2))
    assert plan_and_send(store, c, T0 + timedelta(hours=2)) == 1
    assert items_of(store)[-1] == ("alert", "open", "sent")  # an opening, not a reminder
    # Reminders count from the re-opening.
    assert plan_and_send(store, c, T0 + timedelta(hours=3)) == 0
    assert plan_and_send(store, c, T0 + timedelta(hours=3, minutes=30)) == 1
    resolve(store, iid, T0 + timedelta(hours=4))
    assert plan_and_send(store, c, T0 + timedelta(hours=4)) == 1
    assert plan_and_send(store, c, T0 + timedelta(hours=8)) == 0
    assert [(kind, item) for kind, item, _ in items_of(store)] == [
        ("alert", "open"), ("resolved", "resolve"), ("alert", "open"), ("alert", "repeat"), ("resolved", "resolve")]
    # Its resolve notice threads under the alert that said it was back.
    assert store.open_message_id("oncall", iid) == rows(store)[2]["message_id"]


def test_a_reopening_muted_by_a_silence_is_announced_when_the_silence_ends(store: Store) -> None:
    c = cfg(group_wait=0.0, stale_after=600.0)
    iid = open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, c, T0)
    resolve(store, iid, T0 + timedelta(hours=1))
    plan_notifications(store, c, T0 + timedelta(hours=1))
    store.add_silence("WhatsApp", T0 + timedelta(hours=2), T0 + timedelta(hours=2, minutes=20), "", T0)
    reopen(store, iid, T0 + timedelta(hours=2))
    plan_notifications(store, c, T0 + timedelta(hours=2))
    assert items_of(store)[-1] == ("alert", "open", "suppressed")
    # Stale is judged from the re-opening (20 min ago), not from the first opening (hours ago).
    assert plan_notifications(store, c, T0 + timedelta(hours=2, minutes=21)) == 1
    assert items_of(store, "pending")[-1] == ("alert", "open", "pending")


def test_a_silence_mutes_alerts_already_queued_and_they_go_out_if_still_open_when_it_ends(store: Store) -> None:
    c = cfg(group_wait=60.0, group_by="route")  # one batch for the two
    wa = open_incident(store, "WhatsApp", T0, posts=False, series=False)
    tg = open_incident(store, "Telegram", T0, posts=False, series=False)
    plan_notifications(store, c, T0)
    [batch] = rows(store, "pending")
    # The on-call silences WhatsApp while the alert waits out its group wait (or is retried through an outage).
    sid = store.add_silence("WhatsApp", T0 + timedelta(seconds=10), T0 + timedelta(hours=1), "known", T0)
    plan_notifications(store, c, T0 + timedelta(seconds=10))
    assert [i["incident_id"] for i in store.notification_items(int(batch["id"]))] == [tg]  # Telegram still goes
    [muted] = rows(store, "suppressed")
    assert f"silence #{sid}" in str(muted["reason"]) and muted["message_id"] != batch["message_id"]
    assert [i["incident_id"] for i in store.notification_items(int(muted["id"]))] == [wa]
    # Not lost: still open when the silence ends, it is announced then.
    assert plan_notifications(store, c, T0 + timedelta(minutes=30)) == 0
    assert plan_notifications(store, c, T0 + timedelta(hours=1)) == 1
    [late] = [r for r in rows(store, "pending") if r["id"] != batch["id"]]
    assert [i["incident_id"] for i in store.notification_items(int(late["id"]))] == [wa]


def test_a_silence_mutes_a_queued_notification_whole_and_inhibits_a_resolve_nobody_was_told_of(
        store: Store) -> None:
    c = cfg(group_wait=60.0)
    iid = open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, c, T0)
    store.add_silence("WhatsApp", T0 + timedelta(seconds=10), T0 + timedelta(hours=1), "", T0)
    plan_notifications(store, c, T0 + timedelta(seconds=10))
    [row] = rows(store)
    assert row["status"] == "suppressed" and "silenced by silence" in str(row["reason"])
    resolve(store, iid, T0 + timedelta(minutes=30))
    plan_notifications(store, c, T0 + timedelta(minutes=30))
    [resolved] = rows(store, "suppressed")[:1]
    assert resolved["kind"] == "resolved" and "inhibited" in str(resolved["reason"])
    assert rows(store, "pending") == []


def test_a_silence_keeps_the_resolve_of_an_opening_another_channel_already_delivered(store: Store) -> None:
    c = settings(group_wait=0.0)  # email and webhook
    iid = open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, c, T0)
    [hook] = [r for r in rows(store) if r["channel"] == "webhook:hook"]
    assert store.claim_due(int(hook["id"]), "test", T0, T0) is not None
    assert store.finish_notification(int(hook["id"]), "test", T0, Finish("sent"))
    store.add_silence("WhatsApp", T0, T0 + timedelta(minutes=20), "", T0)
    plan_notifications(store, c, T0 + timedelta(minutes=1))  # the email, still retried, is muted
    assert [(r["channel"], r["status"]) for r in rows(store)] == [("webhook:hook", "sent"), ("email", "suppressed")]
    # The webhook told the receiver it opened, so it hears that it resolved; and no late opening repeats it.
    assert plan_notifications(store, c, T0 + timedelta(minutes=21)) == 0
    resolve(store, iid, T0 + timedelta(minutes=30))
    assert plan_notifications(store, c, T0 + timedelta(minutes=30)) == 2
    assert sorted(r["status"] for r in rows(store) if r["kind"] == "resolved") == ["pending", "pending"]


def test_an_opening_and_its_resolve_planned_together_are_one_message(store: Store) -> None:
    iid = open_incident(store, "WhatsApp", T0, posts=False, series=False)
    resolve(store, iid, T0 + timedelta(minutes=50))
    plan_notifications(store, cfg(), T0 + timedelta(minutes=55))  # the planner was behind, not stale yet
    assert sorted((r["kind"], r["status"]) for r in rows(store)) == [("alert", "pending"), ("resolved", "suppressed")]


def test_a_stale_opening_still_open_is_announced_once_its_silence_ends(store: Store) -> None:
    c = cfg(group_wait=0.0, stale_after=600.0)
    store.add_silence("WhatsApp", T0 - timedelta(minutes=30), T0 + timedelta(minutes=20), "", T0)
    open_incident(store, "WhatsApp", T0 - timedelta(minutes=30), posts=False, series=False)
    plan_notifications(store, c, T0)  # first planned 30 min late, and muted
    assert items_of(store) == [("alert", "open", "suppressed")]
    assert plan_notifications(store, c, T0 + timedelta(minutes=10)) == 0  # still muted
    assert plan_notifications(store, c, T0 + timedelta(minutes=21)) == 1  # the outage is still on
    assert items_of(store, "pending") == [("alert", "open", "pending")]


def test_ending_a_silence_keeps_it_for_the_notifications_that_cite_it(store: Store) -> None:
    sid = store.add_silence("WhatsApp", T0 - timedelta(hours=1), T0 + timedelta(hours=2), "deploy", T0)
    later = store.add_silence("WhatsApp", T0 + timedelta(hours=1), T0 + timedelta(hours=2), "", T0)
    outcome, row = store.end_silence(sid, T0)
    assert outcome == "ended" and row is not None and row["ends_at"] == "2026-11-27T12:00:00+00:00"
    assert store.end_silence(later, T0)[0] == "ended"  # not started yet: ends empty, never before its start
    assert [(r["id"], r["ends_at"] == r["starts_at"]) for r in store.silences()] == [(sid, False), (later, True)]
    assert store.silences(active_at=T0) == [] and store.silences(active_at=T0 + timedelta(hours=1)) == []
    assert store.end_silence(sid, T0 + timedelta(minutes=1))[0] == "already ended"
    assert store.end_silence(999, T0) == ("unknown", None)


def test_removed_or_expired_silence_lets_alerts_through(store: Store) -> None:
    c = cfg(group_wait=0.0)
    sid = store.add_silence("WhatsApp", T0 - timedelta(hours=2), T0 + timedelta(hours=2), "", T0)
    assert store.end_silence(sid, T0)[0] == "ended"
    store.add_silence("WhatsApp", T0 - timedelta(hours=2), T0 - timedelta(hours=1), "", T0)
    iid = open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_and_send(store, c, T0)
    resolve(store, iid, T0 + timedelta(hours=1))
    plan_and_send(store, c, T0 + timedelta(hours=1))
    assert sorted((r["kind"], r["status"]) for r in rows(store)) == [("alert", "sent"), ("resolved", "sent")]


@pytest.mark.parametrize(("window", "muted_at", "open_at"), [
    (MaintenanceWindow(service="WhatsApp", start="2026-11-27T11:00:00Z", end="2026-11-27T13:00:00Z",
                       comment="planned upgrade"), T0, T0 + timedelta(hours=2)),
    # Every Friday 13:00-15:00 in Kampala (UTC+3) = 10:00-12:00 UTC; 2026-11-27 is a Friday.
    (MaintenanceWindow(service="WhatsApp", cron="0 13 * * fri", duration_minutes=120, timezone="Africa/Kampala"),
     T0 - timedelta(minutes=1), T0),
    # A one-off window without an offset is in its timezone too: 14:00-15:00 in Kampala = 11:00-12:00 UTC (it was
    # read as 14:00-15:00 UTC, hours off the maintenance planned).
    (MaintenanceWindow(service="WhatsApp", start="2026-11-27T14:00", end="2026-11-27 15:00", timezone="Africa/Kampala"),
     T0 - timedelta(minutes=1), T0 + timedelta(hours=2)),
])
def test_maintenance_windows_suppress_only_inside_the_window(store: Store, window: MaintenanceWindow,
                                                             muted_at: object, open_at: object) -> None:
    c = cfg(group_wait=0.0, maintenance=(window,))
    first = open_incident(store, "WhatsApp", muted_at, posts=False, series=False)  # type: ignore[arg-type]
    plan_notifications(store, c, muted_at)  # type: ignore[arg-type]
    resolve(store, first, muted_at + timedelta(minutes=1))  # type: ignore[operator]  # over before the window
    [muted] = rows(store)
    assert muted["status"] == "suppressed" and "maintenance window" in str(muted["reason"])
    open_incident(store, "WhatsApp", open_at, posts=False, series=False)  # type: ignore[arg-type]
    plan_notifications(store, c, open_at)  # type: ignore[arg-type]
    assert len(rows(store, "pending")) == 1


def test_a_late_opening_of_an_outage_still_going_on_is_alerted_and_reminded(store: Store) -> None:
    # miner was down for two hours (or caught up a backlog): the outage it finds is still on, so it is news.
    c = cfg(group_wait=0.0, stale_after=600.0, repeat_interval=3600.0)
    iid = open_incident(store, "WhatsApp", T0, posts=False, series=False)
    assert plan_and_send(store, c, T0 + timedelta(hours=2)) == 1
    assert items_of(store) == [("alert", "open", "sent")]
    assert plan_and_send(store, c, T0 + timedelta(hours=3)) == 1  # reminders follow
    resolve(store, iid, T0 + timedelta(hours=3, minutes=30))
    assert plan_and_send(store, c, T0 + timedelta(hours=3, minutes=30)) == 1  # and the resolve notice
    assert [(kind, item) for kind, item, _ in items_of(store)] == [
        ("alert", "open"), ("alert", "repeat"), ("resolved", "resolve")]


def test_late_openings_of_outages_over_by_then_are_recorded_not_alerted(store: Store) -> None:
    # Alerts enabled on a store with past outages, or miner back after they ended: no page for any of them.
    c = cfg(group_wait=0.0, stale_after=600.0)
    iid = open_incident(store, "WhatsApp", T0, posts=False, series=False)
    resolve(store, iid, T0 + timedelta(minutes=30))
    flap = open_incident(store, "Telegram", T0, posts=False, series=False)
    resolve(store, flap, T0 + timedelta(minutes=20))
    reopen(store, flap, T0 + timedelta(minutes=40))  # on again: only this opening is news
    plan_notifications(store, c, T0 + timedelta(hours=2))
    stale = [r for r in rows(store, "suppressed") if r["kind"] == "alert"]
    assert len(stale) == 2 and all(str(r["reason"]).startswith("stale: ") for r in stale)
    assert {i["incident_id"] for r in stale for i in store.notification_items(int(r["id"]))} == {iid, flap}
    [alert] = rows(store, "pending")
    assert [(i["incident_id"], i["kind"]) for i in store.notification_items(int(alert["id"]))] == [(flap, "open")]
    assert plan_notifications(store, c, T0 + timedelta(hours=2, minutes=1)) == 0


def test_a_late_opening_waits_for_the_detector_to_say_it_is_still_on(store: Store) -> None:
    # The alerts job ran before the detector caught up after miner's own outage: the store's "open" is old news.
    c = cfg(group_wait=0.0, stale_after=600.0)
    store.save_detector_step("WhatsApp", T0, "{}", [], T0)
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, c, T0 + timedelta(hours=2))
    [row] = rows(store)
    assert row["status"] == "suppressed" and str(row["reason"]).startswith("stale")
    assert plan_notifications(store, c, T0 + timedelta(hours=2, minutes=1)) == 0
    store.save_detector_step("WhatsApp", T0 + timedelta(hours=2), "{}", [], T0 + timedelta(hours=2, minutes=1))
    assert plan_notifications(store, c, T0 + timedelta(hours=2, minutes=1)) == 1
    assert items_of(store, "pending") == [("alert", "open", "pending")]


def test_routes_only_get_their_services(store: Store) -> None:
    mtn = RouteSettings(name="mtn-team", email=("mtn@example.org",), services=("MTN",))
    open_incident(store, "Airtel", T0, posts=False, series=False)
    open_incident(store, "mtn", T0, posts=False, series=False)
    plan_notifications(store, settings(routes=(EMAIL_ONLY, mtn), webhooks=(), group_by="route"), T0)
    assert sorted(str(r["route"]) for r in rows(store)) == ["mtn-team", "oncall"]
    [mtn_row] = [r for r in rows(store) if r["route"] == "mtn-team"]
    assert len(store.notification_items(int(mtn_row["id"]))) == 1


def test_digests_follow_the_cron_and_coalesce_missed_runs(store: Store) -> None:
    c = cfg()
    assert enqueue_due_digests(store, c, T0 + timedelta(minutes=10)) == 0  # first sight anchors the schedule
    open_incident(store, "WhatsApp", T0 + timedelta(minutes=20), posts=False, series=False)
    assert enqueue_due_digests(store, c, T0 + timedelta(minutes=59)) == 0
    assert enqueue_due_digests(store, c, T0 + timedelta(minutes=60)) == 1
    assert enqueue_due_digests(store, c, T0 + timedelta(minutes=61)) == 0
    # Down for three hours: one digest on return, not three.
    assert enqueue_due_digests(store, c, T0 + timedelta(hours=4, minutes=5)) == 1
    digests = [r for r in rows(store) if r["kind"] == "digest"]
    assert len(digests) == 2 and all(r["channel"] == "email" for r in digests)


def test_quiet_digests_are_skipped_unless_asked_for(store: Store) -> None:
    quiet = cfg()
    enqueue_due_digests(store, quiet, T0)
    assert enqueue_due_digests(store, quiet, T0 + timedelta(hours=1)) == 0
    failing_source(store, T0 + timedelta(hours=1))  # a failing source is news...
    assert enqueue_due_digests(store, quiet, T0 + timedelta(hours=2), sources=["other"]) == 0  # ...if still configured
    assert enqueue_due_digests(store, quiet, T0 + timedelta(hours=3), sources=["reddit-ug"]) == 1
    always = RouteSettings(name="daily", email=("a@example.org",), digest="0 8 * * *", timezone="Europe/Berlin",
                           digest_when_quiet=True)
    c = settings(routes=(always,), webhooks=())
    enqueue_due_digests(store, c, T0)
    assert enqueue_due_digests(store, c, T0 + timedelta(hours=19)) == 1  # 08:00 Berlin = 07:00 UTC next day


def test_a_quiet_digest_does_not_count_news_from_after_its_fire_time(store: Store) -> None:
    import json

    from miner.alerts import render_digest

    c = cfg()  # hourly, digest_when_quiet = false
    enqueue_due_digests(store, c, T0)
    open_incident(store, "WhatsApp", T0 + timedelta(minutes=70), posts=False, series=False)
    # The 13:00 digest is rendered as of 13:00: an incident opened at 13:10 is not in it, so it is quiet, not sent.
    assert enqueue_due_digests(store, c, T0 + timedelta(minutes=80)) == 0
    assert enqueue_due_digests(store, c, T0 + timedelta(minutes=120)) == 1
    [row] = rows(store)
    payload = json.loads(row["payload"])
    assert payload == {"as_of": "2026-11-27T14:00:00+00:00", "since": "2026-11-27T13:00:00+00:00"}
    digest = render_digest(store, c, datetime.fromisoformat(payload["as_of"]), "oncall",
                           since=datetime.fromisoformat(payload["since"]))
    assert "1 open" in digest.subject and "all quiet" not in digest.subject


def test_alerts_table_in_feeds_toml(tmp_path: Path) -> None:
    text = """
[[services]]
name = "WhatsApp"

[alerts]
from_addr = "miner <miner@example.org>"
group_wait = 45

[alerts.smtp]
host = "smtp.example.org"
port = 465
security = "ssl"
username_env = "MINER_SMTP_USER"
password_env = "MINER_SMTP_PASSWORD"

[[alerts.webhooks]]
name = "slack"
url_env = "MINER_SLACK_URL"
format = "slack"

[[alerts.routes]]
name = "oncall"
email = ["oncall@example.org"]
webhooks = ["slack"]
digest = "0 8 * * mon-fri"
timezone = "Europe/Berlin"

[[alerts.maintenance]]
service = "WhatsApp"
cron = "0 2 * * sun"
duration_minutes = 90
"""
    config = parse_config(text, "feeds.toml")
    assert config.alerts.smtp.security == "ssl" and config.alerts.routes[0].webhooks == ("slack",)
    with pytest.raises(ConfigError, match=r"alerts.routes\[0\].services\[0\]: unknown service 'Telegram'"):
        parse_config(text.replace('webhooks = ["slack"]', 'webhooks = ["slack"]\nservices = ["Telegram"]'))
    with pytest.raises(ConfigError, match=r"digest: .*5 fields"):
        parse_config(text.replace("0 8 * * mon-fri", "0 8 * *"))
    with pytest.raises(ConfigError, match="url_env: must name an environment variable"):
        parse_config(text.replace('"MINER_SLACK_URL"', '"https://hooks.slack.com/services/T/B/x"'))


def test_cron_weekdays_follow_crontab_not_apscheduler_numbering() -> None:
    from miner.alerts.schedule import next_fire

    saturday = T0 + timedelta(days=1)  # 2026-11-28
    assert next_fire("0 8 * * 1", "UTC", saturday).strftime("%a %H:%M") == "Mon 08:00"  # type: ignore[union-attr]
    assert next_fire("0 8 * * 0", "UTC", saturday).strftime("%a") == "Sun"  # type: ignore[union-attr]
    assert next_fire("0 8 * * 7", "UTC", saturday).strftime("%a") == "Sun"  # type: ignore[union-attr]
    assert next_fire("0 8 * * mon-fri", "UTC", saturday).strftime("%a") == "Mon"  # type: ignore[union-attr]
    # 08:00 in Berlin on a winter Monday is 07:00 UTC.
    assert next_fire("0 8 * * 1", "Europe/Berlin", saturday).strftime("%a %H:%M") == "Mon 07:00"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="bad weekday"):
        next_fire("0 8 * * 8", "UTC", saturday)


def test_cron_day_of_month_and_weekday_both_restricted_means_either_as_in_crontab() -> None:
    from miner.alerts.schedule import next_fire

    def fires(expr: str, n: int = 4) -> list[str]:
        out: list[str] = []
        at = T0  # Friday 2026-11-27
        for _ in range(n):
            at = next_fire(expr, "UTC", at)  # type: ignore[assignment]
            out.append(at.strftime("%a %d %b"))
        return out

    # The 1st of the month OR a Monday, not only a Monday that is the 1st (the next of those is in February).
    assert fires("0 8 1 * 1") == ["Mon 30 Nov", "Tue 01 Dec", "Mon 07 Dec", "Mon 14 Dec"]
    assert fires("0 8 1,15 * sat", 3) == ["Sat 28 Nov", "Tue 01 Dec", "Sat 05 Dec"]
    # A day field starting with * leaves the other as a filter (both must match), as crontab does.
    assert fires("0 8 * * 1", 2) == ["Mon 30 Nov", "Mon 07 Dec"]
    assert fires("0 8 */2 * 1", 2) == ["Mon 07 Dec", "Mon 21 Dec"]


def test_a_daily_digest_runs_once_when_the_clocks_go_back_or_forward(store: Store) -> None:
    from miner.alerts.schedule import next_fire

    daily = RouteSettings(name="team", email=("a@example.org",), digest="30 2 * * *", timezone="Europe/Berlin",
                          digest_when_quiet=True)
    c = settings(routes=(daily,), webhooks=())
    start = datetime(2026, 10, 24, 12, tzinfo=UTC)  # the clocks go back at 03:00 CEST on 2026-10-25
    enqueue_due_digests(store, c, start)
    for step in range(1, 48):  # every half hour for a day, as the service polls
        enqueue_due_digests(store, c, start + timedelta(minutes=30 * step))
    # 02:30 happens twice that night (00:30 and 01:30 UTC); cron runs a fixed-time job at the first one only.
    assert [r["dedupe_key"] for r in rows(store)] == ["digest:team:2026-10-25T00:30:00+00:00"]

    def fires(expr: str, after: datetime, n: int) -> list[str]:
        out: list[str] = []
        for _ in range(n):
            after = next_fire(expr, "Europe/Berlin", after)  # type: ignore[assignment]
            out.append(after.strftime("%d %H:%M"))
        return out

    # An hourly job (wildcard hour) runs in both repeated hours: they are different real hours.
    assert fires("0 * * * *", datetime(2026, 10, 24, 23, 30, tzinfo=UTC), 3) == ["25 00:00", "25 01:00", "25 02:00"]
    # 02:30 does not exist on 2026-03-29 (02:00 CET -> 03:00 CEST): it runs once that day, at the jump, as cron runs
    # it (03:00 CEST; it ran at 03:30).
    assert fires("30 2 * * *", datetime(2026, 3, 28, 12, tzinfo=UTC), 2) == ["29 01:00", "30 00:30"]


def test_a_digest_shortly_after_midnight_is_not_skipped_around_the_clocks_going_forward(store: Store) -> None:
    from miner.alerts.schedule import next_fire

    def days(expr: str, zone: str, after: datetime, n: int) -> list[str]:
        out: list[str] = []
        for _ in range(n):
            after = next_fire(expr, zone, after)  # type: ignore[assignment]
            out.append(after.astimezone(ZoneInfo(zone)).strftime("%m-%d %H:%M"))
        return out

    # New York goes to EDT at 02:00 on 2026-03-08; a daily 00:15 used to skip the 9th.
    assert days("15 0 * * *", "America/New_York", datetime(2026, 3, 7, tzinfo=UTC), 3) == [
        "03-07 00:15", "03-08 00:15", "03-09 00:15"]
    assert days("*/30 0 * * *", "America/New_York", datetime(2026, 3, 8, 5, 30, tzinfo=UTC), 2) == [
        "03-09 00:00", "03-09 00:30"]  # a wildcard job too
    # Santiago goes forward at midnight on 2026-09-06 (00:00 -> 01:00): midnight runs once that day, an hour later.
    assert days("0 0 * * *", "America/Santiago", datetime(2026, 9, 5, tzinfo=UTC), 3) == [
        "09-05 00:00", "09-06 01:00", "09-07 00:00"]
    # Chatham skips 02:45-03:45: 03:00 and 03:30 run once, at the jump; the day is not left out.
    assert days("0,30 3 * * *", "Pacific/Chatham", datetime(2026, 9, 26, 12, tzinfo=UTC), 3) == [
        "09-27 03:45", "09-28 03:00", "09-28 03:30"]

    # A monthly digest at midnight on the 1st, in Berlin, left out April (the month the clocks go forward in).
    monthly = RouteSettings(name="team", email=("a@example.org",), digest="0 0 1 * *", timezone="Europe/Berlin",
                            digest_when_quiet=True)
    c = settings(routes=(monthly,), webhooks=())
    start = datetime(2026, 2, 20, tzinfo=UTC)
    enqueue_due_digests(store, c, start)
    for day in range(1, 80):
        enqueue_due_digests(store, c, start + timedelta(days=day))
    assert sorted(r["dedupe_key"] for r in rows(store)) == [
        "digest:team:2026-02-28T23:00:00+00:00", "digest:team:2026-03-31T22:00:00+00:00",
        "digest:team:2026-04-30T22:00:00+00:00"]


def test_the_retention_prune_bounds_the_alert_history_and_nothing_is_planned_again(store: Store) -> None:
    # Sent, failed and suppressed notifications, their deliveries and delivered:ID keys, and ended silences were
    # kept for good: the outbox grew with every digest and reminder for as long as the store lived.
    c = cfg(group_wait=0.0, repeat_interval=86400.0, group_interval=0.0)  # hourly digests, daily reminders

    def step(now: datetime) -> int:
        return enqueue_due_digests(store, c, now) + plan_and_send(store, c, now)

    muted = store.add_silence("MTN", T0 - timedelta(hours=2), T0 - timedelta(hours=1), "", T0 - timedelta(hours=2))
    gone = open_incident(store, "WhatsApp", T0, posts=False, series=False)
    step(T0)
    # In a run of its own: planned together, both openings would share one message, kept while MTN is open.
    still_open = open_incident(store, "MTN", T0 + timedelta(minutes=1), posts=False, series=False)
    step(T0 + timedelta(minutes=1))
    alerts = {i["incident_id"]: r for r in rows(store) for i in store.notification_items(int(r["id"]))}
    # The resolve notice of the first incident fails for good after reaching one of its recipients.
    resolve(store, gone, T0 + timedelta(hours=1))
    plan_notifications(store, c, T0 + timedelta(hours=1))
    [notice] = rows(store, "pending")
    assert store.claim_due(int(notice["id"]), "test", T0 + timedelta(hours=1), T0 + timedelta(hours=1))
    assert store.finish_notification(int(notice["id"]), "test", T0 + timedelta(hours=1), Finish("failed", "550"))
    store.set_alert_state(f"delivered:{notice['id']}", '["oncall@example.org"]')
    for day in range(1, 41):
        step(T0 + timedelta(days=day))
    recent = store.add_silence("MTN", T0 + timedelta(days=35), T0 + timedelta(days=36), "", T0 + timedelta(days=35))
    # A digest queued on day 1 and still retried: not finished, so kept whatever its age. (One queued after it
    # makes it not the newest row, which is kept anyway.)
    for key, day in (("stuck", 1), ("manual", 40)):
        assert store.enqueue_digest(f"digest:oncall:{key}", "oncall", f"<{key}@example.org>", {},
                                    T0 + timedelta(days=day), f"digest_anchor:{key}", iso(T0))
    before = {r["id"]: r for r in rows(store)}

    now = T0 + timedelta(days=40)
    notifications, silences = store.prune_alert_history(now - timedelta(days=10), batch=3)
    after = {r["id"]: r for r in rows(store)}
    went = [before[i] for i in sorted(set(before) - set(after))]
    assert notifications == len(went) > 30 and silences == 1
    # What went: the resolved incident's alert and failed notice, and digests sent before the horizon, with every
    # item, attempt and delivered:ID key of theirs.
    assert {(r["kind"], r["status"]) for r in went} == {("alert", "sent"), ("resolved", "failed"), ("digest", "sent")}
    assert [r["id"] for r in went if r["kind"] != "digest"] == [alerts[gone]["id"], notice["id"]]
    assert [r["sent_at"][:10] for r in went if r["kind"] == "digest"] == [
        f"{T0 + timedelta(days=day):%Y-%m-%d}" for day in range(1, 30)]
    assert store.alert_state(f"delivered:{notice['id']}") is None
    for table in ("deliveries", "outbox_items"):
        assert store.database.one(f"SELECT count(*) AS n FROM {table} WHERE outbox_id NOT IN "
                                  "(SELECT id FROM outbox)") == {"n": 0}
    # What stays: everything about the incident still open (its opening and a reminder a day from day 2, a minute
    # short of a day after it on day 1), the digest still queued, and the later digests.
    assert sorted(i["kind"] for r in after.values() for i in store.notification_items(int(r["id"]))) == [
        "open"] + ["repeat"] * 39
    assert any(r["dedupe_key"] == "digest:oncall:stuck" for r in after.values())
    assert [s["id"] for s in store.silences()] == [recent] and muted != recent
    # Planning again plans and queues nothing: no deleted dedupe key is planned a second time.
    assert store.database.one("SELECT count(*) AS n FROM outbox WHERE status = 'pending'") == {"n": 2}
    assert plan_and_send(store, c, now) == 0 and enqueue_due_digests(store, c, now) == 0
    assert plan_and_send(store, c, now + timedelta(minutes=30)) == 0
    # The open incident is reminded a day after its last reminder, and its resolve notice replies to its opening.
    assert plan_and_send(store, c, now + timedelta(hours=23)) == 0
    assert plan_and_send(store, c, now + timedelta(days=1)) == 1
    resolve(store, still_open, now + timedelta(days=1, hours=1))
    assert plan_and_send(store, c, now + timedelta(days=1, hours=1)) == 1
    assert store.open_message_id("oncall", still_open) == alerts[still_open]["message_id"]
    # Everything old goes but the newest row and silence, whose ids a new one would otherwise take.
    store.prune_alert_history(now + timedelta(days=100))
    assert [r["id"] for r in rows(store)] == [max(after) + 2]
    assert [s["id"] for s in store.silences()] == [recent]


def test_a_recurring_window_is_found_at_once_however_dense_its_cron_and_long_its_duration(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Its latest start was found by stepping through every start the duration spans: a window starting every
    # minute for a year took 10 s per check, in the alert job, for each incident of the service. Counted in
    # next_fire calls, not timed: a loaded machine slows both ways alike, but not the count (about 25 halvings of
    # a year in seconds, against the 527,040 starts the stepping took).
    from miner.alerts import schedule
    from miner.alerts.schedule import next_fire, previous_fire

    calls = 0

    def counted(expr: str, zone: str, after: datetime) -> datetime | None:
        nonlocal calls
        calls += 1
        return next_fire(expr, zone, after)

    window = MaintenanceWindow(service="WhatsApp", cron="* * * * *", duration_minutes=366 * 1440)
    with monkeypatch.context() as patch:
        patch.setattr(schedule, "next_fire", counted)
        assert window.active(T0)
    assert 0 < calls < 100, calls

    def stepped(expr: str, zone: str, at: datetime, lookback: timedelta) -> datetime | None:
        last, fire = None, next_fire(expr, zone, at - lookback)
        while fire is not None and fire <= at:
            last, fire = fire, next_fire(expr, zone, fire)
        return last

    berlin_back, berlin_forward = datetime(2026, 10, 25, 1, 45, tzinfo=UTC), datetime(2026, 3, 29, 1, 45, tzinfo=UTC)
    for expr, zone, at, lookback in [
        ("*/7 * * * *", "UTC", T0, timedelta(hours=5)),
        ("30 2 * * *", "Europe/Berlin", berlin_back, timedelta(days=3)),
        ("0 * * * *", "Europe/Berlin", berlin_back, timedelta(hours=3)),
        ("30 2 * * *", "Europe/Berlin", berlin_forward, timedelta(days=3)),
        ("0 8 1 * mon", "UTC", T0, timedelta(days=40)),
        ("* * 1 1 *", "UTC", datetime(2026, 12, 31, 23, 59, 30, tzinfo=UTC), timedelta(days=366)),
        ("0 3 * * *", "UTC", datetime(2026, 11, 27, 3, 0, tzinfo=UTC), timedelta(hours=1)),  # a start at `at`
        ("0 3 * * *", "UTC", datetime(2026, 11, 27, 2, 59, tzinfo=UTC), timedelta(hours=12)),  # none in the span
    ]:
        assert previous_fire(expr, zone, at, lookback=lookback) == stepped(expr, zone, at, lookback), (expr, at)

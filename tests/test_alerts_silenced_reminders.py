"""Reminders of an incident that a silence or maintenance window muted: recorded as suppressed once per
repeat_interval while it lasts, and, once it ends with the outage still going on, due again counted from the last
alert that went out (as Alertmanager's notification log counts), not from the reminder nobody received."""

from __future__ import annotations

from datetime import timedelta

from test_alerts_rules import cfg, plan_and_send, rows
from test_alerts_support import T0, open_incident, resolve

from miner.alerts import plan_notifications
from miner.alerts.settings import MaintenanceWindow
from miner.store import Store


def reminders(store: Store) -> list[tuple[str, str]]:
    """(status, planned at) of each reminder row, oldest first."""
    out = []
    for r in sorted(rows(store), key=lambda r: int(r["id"])):
        if [i["kind"] for i in store.notification_items(int(r["id"]))] == ["repeat"]:
            out.append((str(r["status"]), str(r["created_at"])))
    return out


def minutes(m: float) -> str:
    return (T0 + timedelta(minutes=m)).isoformat()


def test_a_reminder_muted_by_a_silence_is_sent_once_the_silence_ends_with_the_outage_still_on(store: Store) -> None:
    # Alerted at 12:00; the on-call silenced it from 12:10 to 14:30 ("on it"); the 13:00 and 14:00 reminders are
    # muted. At 14:30 the silence is over and the outage is not: the last alert that went out is 2.5 h old, past
    # repeat_interval, so the reminder goes now. It went at 15:00, counted from the 14:00 reminder nobody got.
    c = cfg(group_wait=0.0, repeat_interval=3600.0)
    iid = open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_and_send(store, c, T0)
    store.add_silence("WhatsApp", T0 + timedelta(minutes=10), T0 + timedelta(minutes=150), "on it",
                      T0 + timedelta(minutes=10))
    for m in range(10, 150, 5):
        plan_and_send(store, c, T0 + timedelta(minutes=m))
    # Once per repeat_interval while muted, not at every planning.
    assert reminders(store) == [("suppressed", minutes(60)), ("suppressed", minutes(120))]
    assert plan_and_send(store, c, T0 + timedelta(minutes=150)) == 1
    assert reminders(store)[-1] == ("sent", minutes(150))
    # And the next counts from that one.
    assert plan_and_send(store, c, T0 + timedelta(minutes=205)) == 0
    assert plan_and_send(store, c, T0 + timedelta(minutes=210)) == 1
    resolve(store, iid, T0 + timedelta(minutes=220))
    assert plan_and_send(store, c, T0 + timedelta(minutes=220)) == 1


def test_a_reminder_muted_by_a_maintenance_window_is_sent_when_the_window_closes(store: Store) -> None:
    window = MaintenanceWindow(service="WhatsApp", start="2026-11-27T12:30:00Z", end="2026-11-27T13:20:00Z")
    c = cfg(group_wait=0.0, repeat_interval=3600.0, maintenance=(window,))
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_and_send(store, c, T0)
    for m in range(5, 80, 5):
        plan_and_send(store, c, T0 + timedelta(minutes=m))
    assert reminders(store) == [("suppressed", minutes(60))]
    assert plan_and_send(store, c, T0 + timedelta(minutes=80)) == 1
    assert reminders(store)[-1] == ("sent", minutes(80))


def test_a_queued_reminder_muted_before_it_went_out_does_not_delay_the_next(store: Store) -> None:
    # The 13:00 reminder waits out its group wait; the on-call silences the service meanwhile, until 13:30.
    c = cfg(group_wait=30.0, repeat_interval=3600.0)
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_and_send(store, c, T0)
    plan_and_send(store, c, T0 + timedelta(seconds=30))
    plan_notifications(store, c, T0 + timedelta(minutes=60))
    store.add_silence("WhatsApp", T0 + timedelta(minutes=60, seconds=10), T0 + timedelta(minutes=90), "",
                      T0 + timedelta(minutes=60, seconds=10))
    for m in range(61, 90):
        plan_and_send(store, c, T0 + timedelta(minutes=m))
    assert [s for s, _ in reminders(store)] == ["suppressed"]
    plan_and_send(store, c, T0 + timedelta(minutes=90))
    plan_and_send(store, c, T0 + timedelta(minutes=90, seconds=30))
    assert [s for s, _ in reminders(store)] == ["suppressed", "sent"]

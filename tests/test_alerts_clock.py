"""Alerts after the system clock was ahead and has been set back: nothing waits for real time to catch up with
what that clock stamped, and nothing goes out twice. Real SQLite, real SMTP on 127.0.0.1, ``now`` passed in."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from smtp_server import SmtpServer, smtp_server  # noqa: F401  (fixture)
from test_alerts_support import T0, open_incident, settings

from miner.alerts import FileSenders, dispatch, plan_notifications, run_alerts
from miner.alerts.retry import GIVE_UP_ATTEMPTS
from miner.alerts.settings import AlertSettings, RouteSettings, SmtpSettings
from miner.records import Post
from miner.store import Store
from miner.timeutil import parse_iso

AHEAD = T0 + timedelta(hours=3)  # what the clock said while it was 3 h ahead
NOW = T0 + timedelta(minutes=5)  # the right time, once it is set back
ONCALL = RouteSettings(name="oncall", email=("oncall@example.org",))


def mail(server: SmtpServer, **overrides: object) -> AlertSettings:
    smtp = SmtpSettings(host="127.0.0.1", port=server.port, security="none", timeout=5)
    return settings(routes=(ONCALL,), webhooks=(), smtp=smtp, **overrides)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "clock was ahead" in r.getMessage()]


def test_a_notification_planned_by_a_clock_that_was_ahead_goes_out_once_it_is_set_back(
        store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    c = settings(routes=(ONCALL,), webhooks=(), group_wait=60.0)
    files = FileSenders(tmp_path / "sent")
    open_incident(store, "WhatsApp", AHEAD - timedelta(minutes=1), posts=False, series=False)
    assert run_alerts(store, c, AHEAD, worker_id="w", senders=files.senders()).sent == 0  # due at AHEAD + 60 s
    with caplog.at_level("WARNING"):
        assert run_alerts(store, c, NOW, worker_id="w", senders=files.senders()).sent == 1
        assert run_alerts(store, c, NOW + timedelta(seconds=30), worker_id="w", senders=files.senders()).sent == 0
    [warning] = warnings(caplog)  # once, not on every run
    assert "1 notification due now" in warning
    # Once real time reaches the times that clock planned, nothing goes out again.
    assert run_alerts(store, c, AHEAD + timedelta(minutes=2), worker_id="w", senders=files.senders()).sent == 0
    assert len(files.files()) == 1


def test_a_retry_planned_by_a_clock_that_was_ahead_is_due_once_it_is_set_back(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    cfg = mail(smtp_server, group_wait=0.0)
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    smtp_server.stop()
    run_alerts(store, cfg, T0, worker_id="w")  # planned with the right clock, then it went ahead ...
    assert run_alerts(store, cfg, AHEAD, worker_id="w").retried == 1  # ... and backed off from its time
    smtp_server.start()
    assert run_alerts(store, cfg, NOW, worker_id="w").sent == 1
    assert len(smtp_server.inbox.messages) == 1
    [row] = store.outbox_listing(["sent"])
    attempts = store.deliveries(row["id"])
    assert [d["outcome"] for d in attempts] == ["retry", "retry", "sent"]
    # The attempt stamped ahead is stamped now (and the real seconds the send took: a second on a loaded CI runner).
    assert NOW.isoformat() <= max(d["at"] for d in attempts) < (NOW + timedelta(minutes=1)).isoformat()


def test_a_claim_taken_by_a_clock_that_was_ahead_is_reclaimed_a_lease_after_it_is_set_back(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    cfg = mail(smtp_server, group_wait=0.0)  # lease_seconds = 60
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    [row] = store.outbox_listing(["pending"])
    assert store.claim_due(row["id"], "crashed", AHEAD, AHEAD) is not None  # a worker that died mid-send
    stats = run_alerts(store, cfg, NOW, worker_id="w")
    assert (stats.reclaimed, stats.sent) == (0, 0)  # it may still be sending: its lease counts from now
    stats = run_alerts(store, cfg, NOW + timedelta(seconds=61), worker_id="w")
    assert (stats.reclaimed, stats.sent) == (1, 1)
    assert len(smtp_server.inbox.messages) == 1


def test_reminders_of_an_incident_notified_by_a_clock_that_was_ahead_count_from_when_it_is_set_back(
        store: Store, tmp_path: Path) -> None:
    c = settings(routes=(ONCALL,), webhooks=(), group_wait=0.0, repeat_interval=3600.0)
    files = FileSenders(tmp_path / "sent")
    open_incident(store, "WhatsApp", AHEAD - timedelta(minutes=1), posts=False, series=False)
    assert run_alerts(store, c, AHEAD, worker_id="w", senders=files.senders()).sent == 1
    run_alerts(store, c, NOW, worker_id="w", senders=files.senders())
    assert run_alerts(store, c, NOW + timedelta(minutes=59), worker_id="w", senders=files.senders()).sent == 0
    # An hour after the alert went out, not an hour after the time the clock that was ahead said it did.
    assert run_alerts(store, c, NOW + timedelta(minutes=60), worker_id="w", senders=files.senders()).sent == 1
    assert run_alerts(store, c, NOW + timedelta(minutes=61), worker_id="w", senders=files.senders()).sent == 0
    sent = store.outbox_listing(["sent"])
    assert sorted(i["kind"] for r in sent for i in store.notification_items(r["id"])) == ["open", "repeat"]
    assert len(files.files()) == 2


def test_an_hourly_digest_sent_by_a_clock_that_was_ahead_keeps_its_schedule_once_it_is_set_back(
        store: Store, tmp_path: Path) -> None:
    import json

    from test_alerts_support import resolve

    from miner.alerts import enqueue_due_digests

    c = settings(routes=(RouteSettings(name="oncall", email=("oncall@example.org",), digest="0 * * * *"),),
                 webhooks=())
    enqueue_due_digests(store, c, T0 - timedelta(minutes=10))  # the schedule starts at 11:50
    resolve(store, open_incident(store, "WhatsApp", T0 - timedelta(minutes=5), posts=False, series=False), T0)
    assert enqueue_due_digests(store, c, AHEAD) == 1  # 3 h ahead: "the 15:00 digest", at noon
    run_alerts(store, c, NOW, worker_id="w", senders=FileSenders(tmp_path / "sent").senders())  # set right
    resolve(store, open_incident(store, "MTN", NOW + timedelta(minutes=5), posts=False, series=False),
            NOW + timedelta(minutes=30))
    # The 13:00 digest goes out, rather than nothing until 16:00.
    assert enqueue_due_digests(store, c, T0 + timedelta(hours=1)) == 1
    airtel = open_incident(store, "Airtel", T0 + timedelta(hours=1, minutes=30), posts=False, series=False)
    assert enqueue_due_digests(store, c, T0 + timedelta(hours=2)) == 1
    resolve(store, airtel, T0 + timedelta(hours=2, minutes=30))
    assert enqueue_due_digests(store, c, T0 + timedelta(hours=3)) == 0  # "the 15:00 digest" went out already
    # The 16:00 digest covers the time since the last one queued (14:00): Airtel resolved at 14:30 is in it.
    assert enqueue_due_digests(store, c, T0 + timedelta(hours=4)) == 1
    digests = [json.loads(d["payload"]) for d in store.database.rows(
        "SELECT payload FROM outbox WHERE kind = 'digest' ORDER BY id")]
    assert [(d["as_of"][11:16], d["since"][11:16]) for d in digests] == [
        ("15:00", "11:50"), ("13:00", "12:05"), ("14:00", "13:00"), ("16:00", "14:00")]


def test_a_silence_added_by_a_clock_that_was_ahead_mutes_from_when_it_is_set_back(
        store: Store, tmp_path: Path) -> None:
    c = settings(routes=(ONCALL,), webhooks=(), group_wait=0.0)
    files = FileSenders(tmp_path / "sent")
    sid = store.add_silence("WhatsApp", AHEAD, AHEAD + timedelta(hours=2), "deploy", AHEAD)  # `silence add --for 2h`
    open_incident(store, "WhatsApp", NOW + timedelta(minutes=1), posts=False, series=False)
    assert run_alerts(store, c, NOW + timedelta(minutes=1), worker_id="w", senders=files.senders()).sent == 0
    [row] = store.outbox_listing(["suppressed"])
    assert f"silence #{sid}" in row["reason"]
    [silence] = store.silences()
    assert (silence["starts_at"], silence["ends_at"]) == ((NOW + timedelta(minutes=1)).isoformat(),
                                                          (NOW + timedelta(hours=2, minutes=1)).isoformat())


def test_alert_state_is_not_taken_back_by_a_clock_behind_the_store(
        store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A right clock stored a post its source dated, sent an alert and added a silence for two hours; then the clock
    # is a day behind (a board without a real-time clock started before NTP set it). Taken for a clock that had
    # been ahead, the silence moved back a day (over before the clock was right again: the next alert went out) and
    # the alert's time, and its reminders', came back to the clock's.
    c = settings(routes=(ONCALL,), webhooks=(), group_wait=0.0, repeat_interval=3600.0)
    files = FileSenders(tmp_path / "sent")
    store.insert_posts([Post("mastodon:social", "p1", "WhatsApp is down", T0 - timedelta(minutes=1),
                             services=("WhatsApp",))], T0)
    open_incident(store, "MTN", T0, posts=False, series=False)
    assert run_alerts(store, c, T0, worker_id="w", senders=files.senders()).sent == 1
    store.add_silence("WhatsApp", T0, T0 + timedelta(hours=2), "deploy", T0)
    before = (store.silences(), store.database.rows("SELECT * FROM alert_incidents"),
              store.database.rows("SELECT * FROM outbox"))
    with caplog.at_level("WARNING"):
        run_alerts(store, c, T0 - timedelta(days=1), worker_id="w", senders=files.senders())
    assert (store.silences(), store.database.rows("SELECT * FROM alert_incidents"),
            store.database.rows("SELECT * FROM outbox")) == before
    assert warnings(caplog) == []
    # Set right: the silence still mutes WhatsApp's alert.
    open_incident(store, "WhatsApp", T0 + timedelta(minutes=30), posts=False, series=False)
    assert run_alerts(store, c, T0 + timedelta(minutes=30), worker_id="w", senders=files.senders()).sent == 0
    assert len(store.outbox_listing(["suppressed"])) == 1


def test_an_alert_held_behind_a_message_sent_by_a_clock_that_was_ahead_goes_out_once_it_is_set_back(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    cfg = mail(smtp_server, group_wait=30.0, group_interval=900.0, providers={"whatsapp": "Meta", "instagram": "Meta"})
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    smtp_server.stop()
    assert run_alerts(store, cfg, T0, worker_id="w").claimed == 0  # its group wait
    assert run_alerts(store, cfg, T0 + timedelta(seconds=30), worker_id="w").retried == 1  # an SMTP outage
    open_incident(store, "Instagram", T0 + timedelta(minutes=1), posts=False, series=False)
    run_alerts(store, cfg, T0 + timedelta(minutes=1), worker_id="w")  # Instagram waits out its group wait
    smtp_server.start()
    # The clock jumps 3 h ahead: WhatsApp's retry goes, stamped then, and Instagram's batch (never tried) is held
    # a group interval after it.
    assert run_alerts(store, cfg, AHEAD, worker_id="w").sent == 1
    assert store.outbox_listing(["pending"])[0]["next_attempt_at"] > AHEAD.isoformat()
    # Set right, Instagram's alert goes out a group interval after WhatsApp's (stamped now), not 3 h later (with
    # everything of its group planned meanwhile).
    assert run_alerts(store, cfg, NOW, worker_id="w").sent == 0
    assert store.outbox_listing(["pending"])[0]["next_attempt_at"] == (NOW + timedelta(minutes=15)).isoformat()
    assert run_alerts(store, cfg, NOW + timedelta(minutes=15), worker_id="w").sent == 1
    assert len(smtp_server.inbox.messages) == 2


def test_a_clock_stepped_ahead_past_give_up_after_does_not_give_up_a_message_at_its_next_failure(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # Age was the wall clock's word alone: the clock stepped 3 days ahead (a laptop resumed, NTP after a drift) made
    # the alert look older than give_up_after, and the mail server's first refusal after the jump, a passing one,
    # failed it for good. Nothing had been tried in those 3 days.
    c = mail(smtp_server, group_wait=0.0)
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, c, T0)
    smtp_server.stop()
    jumped = T0 + timedelta(seconds=c.give_up_after) + timedelta(hours=1)
    first = dispatch(store, c, jumped, worker_id="w", clock=lambda: jumped)
    assert (first.retried, first.failed) == (1, 0)
    [row] = store.outbox_listing(["pending"])
    smtp_server.start()
    later = parse_iso(row["next_attempt_at"])
    assert dispatch(store, c, later, worker_id="w", clock=lambda: later).sent == 1
    assert len(smtp_server.inbox.messages) == 1


def test_a_message_old_enough_is_given_up_only_once_it_has_failed_give_up_attempts_times(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    c = mail(smtp_server, group_wait=0.0)
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, c, T0)
    smtp_server.stop()
    now = T0 + timedelta(seconds=c.give_up_after)
    for attempt in range(1, GIVE_UP_ATTEMPTS + 1):
        stats = dispatch(store, c, now, worker_id="w", clock=lambda: now)  # noqa: B023  (called within the loop)
        assert (stats.retried, stats.failed) == ((0, 1) if attempt == GIVE_UP_ATTEMPTS else (1, 0))
        now += timedelta(seconds=c.retry_max)
    [row] = store.outbox_listing(["failed"])
    assert row["reason"].startswith(f"gave up after {GIVE_UP_ATTEMPTS} attempts")

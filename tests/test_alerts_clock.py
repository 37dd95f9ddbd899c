"""Alerts after the system clock was ahead and has been set back: nothing waits for real time to catch up with
what that clock stamped, and nothing goes out twice. Real SQLite, real SMTP on 127.0.0.1, ``now`` passed in."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from smtp_server import SmtpServer, smtp_server  # noqa: F401  (fixture)
from test_alerts_support import T0, open_incident, settings

from miner.alerts import FileSenders, plan_notifications, run_alerts
from miner.alerts.settings import AlertSettings, RouteSettings, SmtpSettings
from miner.store import Store

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
    assert "1 notification(s) due now" in warning
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
    [row] = store.outbox_rows(["sent"])
    attempts = store.deliveries(row["id"])
    assert [d["outcome"] for d in attempts] == ["retry", "retry", "sent"]
    assert max(d["at"] for d in attempts) == NOW.isoformat()  # the attempt stamped ahead is stamped now


def test_a_claim_taken_by_a_clock_that_was_ahead_is_reclaimed_a_lease_after_it_is_set_back(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    cfg = mail(smtp_server, group_wait=0.0)  # lease_seconds = 60
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    [row] = store.outbox_rows(["pending"])
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
    sent = store.outbox_rows(["sent"])
    assert sorted(i["kind"] for r in sent for i in store.notification_items(r["id"])) == ["open", "repeat"]
    assert len(files.files()) == 2

"""What the alerts say in numbers, read as the on-call reads them: the mail as it arrives at a real SMTP server."""

from __future__ import annotations

from datetime import timedelta

from smtp_server import SmtpServer, smtp_server  # noqa: F401  (fixture)
from test_alerts_support import BUCKET, T0, settings

from miner.alerts import dispatch, plan_notifications
from miner.alerts.settings import AlertSettings, RouteSettings, SmtpSettings
from miner.store import Store


def mail_settings(server: SmtpServer, **overrides: object) -> AlertSettings:
    route = RouteSettings(name="oncall", email=("oncall@example.org",))
    smtp = SmtpSettings(host="127.0.0.1", port=server.port, security="none", timeout=5)
    return settings(routes=(route,), webhooks=(), smtp=smtp, group_wait=0.0, **overrides)


def _parts(server: SmtpServer, i: int = -1) -> tuple[str, str, str]:
    msg = server.inbox.messages[i]
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    return str(msg["Subject"]), text, html


def test_the_peak_is_set_against_the_baseline_of_its_own_bucket_not_of_the_opening(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # Opened at night, when 0.5 complaints were expected; peaked at 60 in the evening, when 20 were.
    steps, t = [], T0 - timedelta(hours=3)
    while t < T0 + timedelta(hours=1):
        baseline = 0.5 if t < T0 else 20.0
        steps.append((t, 1.0, baseline, 3 * baseline))
        t += BUCKET
    store.save_detector_step("WhatsApp", t, "{}", steps, t)
    counts = {T0 - BUCKET: 6, T0: 25, T0 + BUCKET: 60, T0 + 2 * BUCKET: 40}
    with store.database.transaction() as conn:
        for b, n in counts.items():
            conn.execute("UPDATE buckets SET complaints = ? WHERE service = 'WhatsApp' AND bucket_start = ?",
                         (n, b.isoformat(timespec="seconds")))
    # As the detector stores it: the baseline of the opening bucket, the peak and z of the whole incident.
    store.open_incident("WhatsApp", T0, {"peak_complaints": 60, "peak_score": 9.0, "baseline": 0.5,
                                         "total_complaints": 131}, {"z": 6.0})
    cfg = mail_settings(smtp_server)
    now = T0 + 3 * BUCKET
    plan_notifications(store, cfg, now)
    assert dispatch(store, cfg, now, worker_id="w").sent == 1

    subject, text, html = _parts(smtp_server)
    # 60 against the 20 the chart draws at that bar: 3x normal, not "120.0x" against the night's 0.5.
    assert "(3.0x normal, z 9.0)" in subject
    assert "60 complaints per bucket vs baseline 20.0 (3.0x), z 9.0" in text
    assert ">20.0</div>" in html and ">3.0x</div>" in html and "120.0x" not in html
    assert store.incident(1)["baseline"] == 0.5  # the store keeps what it documents: the baseline at the opening

"""Alerts end to end over a real SMTP server: content, escaping, headers, outages, crashes, two dispatchers."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from smtp_server import SmtpServer, smtp_server  # noqa: F401  (fixture)
from test_alerts_support import T0, dispatch_in_two_threads, open_incident, resolve, settings

from miner.alerts import dispatch, plan_notifications
from miner.alerts.settings import AlertSettings, RouteSettings, SmtpSettings
from miner.cli import main
from miner.config import load_config, parse_config
from miner.pipeline import Pipeline
from miner.store import Store


def mail_settings(server: SmtpServer, **overrides: object) -> AlertSettings:
    route = RouteSettings(name="oncall", email=("oncall@example.org", "sre@example.org"))
    smtp = SmtpSettings(host="127.0.0.1", port=server.port, security="none", timeout=5)
    return settings(routes=(route,), webhooks=(), smtp=smtp, **overrides)


def test_open_alert_arrives_as_multipart_with_inline_chart_and_escaped_posts(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    cfg = mail_settings(smtp_server)
    open_incident(store, "WhatsApp", T0)
    assert plan_notifications(store, cfg, T0) == 1
    assert dispatch(store, cfg, T0 + timedelta(seconds=5), worker_id="w").claimed == 0  # group_wait holds it
    stats = dispatch(store, cfg, T0 + timedelta(seconds=31), worker_id="w")
    assert (stats.sent, stats.failed) == (1, 0)

    [msg] = smtp_server.inbox.messages
    assert smtp_server.inbox.envelopes[0] == ("miner@example.org", ["oncall@example.org", "sre@example.org"])
    row = store.outbox_listing(["sent"])[0]
    assert msg["Message-ID"] == row["message_id"]
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Date"] and "WhatsApp" in msg["Subject"] and "OPEN" in msg["Subject"]
    assert msg["List-Unsubscribe"] is None  # alerts are not a list; digests carry it when configured
    assert msg.get_content_type() == "multipart/alternative"
    text_part, related = msg.iter_parts()
    assert text_part.get_content_type() == "text/plain"
    assert related.get_content_type() == "multipart/related"
    html_part, image = related.iter_parts()
    assert html_part.get_content_type() == "text/html"
    assert image.get_content_type() == "image/png"
    assert image.get_content().startswith(b"\x89PNG\r\n\x1a\n")
    cid = str(image["Content-ID"]).strip("<>")
    html = html_part.get_content()
    text = text_part.get_content()
    assert f'src="cid:{cid}"' in html
    # The hostile post: escaped in HTML, present as inert text, stripped of control and bidi characters.
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # In a direction of its own: an Arabic or Hebrew post's neutral characters at its ends (a "!") stay on its side.
    assert '<span dir="auto">&lt;script&gt;alert(1)&lt;/script&gt; WhatsApp down' in html
    assert "<script>alert(1)</script> WhatsApp down" in text
    for part in (html, text):
        assert "\x1b" not in part and "\x07" not in part and "\u202e" not in part
    assert "z 8.4" in text and "Sample posts" in text and "messaging" in text


def test_resolve_notice_threads_on_the_open_alert(store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    cfg = mail_settings(smtp_server, group_wait=0.0)
    iid = open_incident(store, "WhatsApp", T0)
    plan_notifications(store, cfg, T0)
    dispatch(store, cfg, T0, worker_id="w")
    resolve(store, iid, T0 + timedelta(hours=1))
    plan_notifications(store, cfg, T0 + timedelta(hours=1))
    dispatch(store, cfg, T0 + timedelta(hours=1), worker_id="w")
    opened, resolved = smtp_server.inbox.messages
    assert "RESOLVED" in resolved["Subject"] and "1 h 00 min" in resolved["Subject"]
    assert resolved["In-Reply-To"] == opened["Message-ID"]


def test_a_resolve_notice_of_incidents_alerted_together_threads_on_their_alert(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    cfg = mail_settings(smtp_server, group_wait=0.0, group_by="route")
    first, second = open_incident(store, "WhatsApp", T0), open_incident(store, "Instagram", T0)
    plan_notifications(store, cfg, T0)
    dispatch(store, cfg, T0, worker_id="w")
    for iid in (first, second):
        resolve(store, iid, T0 + timedelta(hours=1))
    plan_notifications(store, cfg, T0 + timedelta(hours=1))
    dispatch(store, cfg, T0 + timedelta(hours=1), worker_id="w")
    opened, resolved = smtp_server.inbox.messages
    assert "WhatsApp" in opened["Subject"] and "Instagram" in opened["Subject"]
    assert all(word in resolved["Subject"] for word in ("RESOLVED", "WhatsApp", "Instagram"))
    # One outage announced in one alert: its resolve notice started a thread of its own.
    assert resolved["In-Reply-To"] == resolved["References"] == opened["Message-ID"]


def test_permanent_smtp_rejection_fails_with_the_reason(store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    cfg = mail_settings(smtp_server, group_wait=0.0)
    smtp_server.inbox.reject_rcpt = "550 5.1.1 mailbox unavailable"
    open_incident(store, "WhatsApp", T0)
    plan_notifications(store, cfg, T0)
    stats = dispatch(store, cfg, T0, worker_id="w")
    assert stats.failed == 1
    [row] = store.outbox_listing(["failed"])
    assert "550" in row["reason"] and "mailbox unavailable" in row["reason"]
    assert [d["outcome"] for d in store.deliveries(row["id"])] == ["failed"]
    assert store.retry_notification(row["id"], T0)  # after fixing the cause, `miner outbox retry` requeues it
    smtp_server.inbox.reject_rcpt = None
    assert dispatch(store, cfg, T0, worker_id="w").sent == 1


def test_recipient_refused_for_now_gets_the_alert_on_retry_and_the_others_only_once(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    cfg = mail_settings(smtp_server, group_wait=0.0)
    smtp_server.inbox.refuse = {"sre@example.org": ["450 4.2.1 mailbox busy"]}  # then accepted
    open_incident(store, "WhatsApp", T0)
    plan_notifications(store, cfg, T0)
    stats = dispatch(store, cfg, T0, worker_id="w")
    assert (stats.sent, stats.retried) == (0, 1)
    [row] = store.outbox_listing(["pending"])
    assert "refused sre@example.org: 450 4.2.1 mailbox busy" in row["last_error"]
    stats = dispatch(store, cfg, T0 + timedelta(seconds=cfg.retry_max), worker_id="w")
    assert stats.sent == 1
    assert [rcpts for _, rcpts in smtp_server.inbox.envelopes] == [["oncall@example.org"], ["sre@example.org"]]
    first, second = smtp_server.inbox.messages
    assert first["Message-ID"] == second["Message-ID"] == row["message_id"]
    assert [d["outcome"] for d in store.deliveries(row["id"])] == ["retry", "sent"]
    assert store.deliveries(row["id"])[-1]["detail"] == (  # it said "1 recipient(s)"
        f"sent to 1 recipient via 127.0.0.1:{smtp_server.port}; 1 had it from an earlier attempt")


def test_a_retry_refused_again_says_the_others_had_it_not_that_every_recipient_was_refused(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # Greylisted twice: the retry goes to sre alone, and its refusal read "all recipients refused: sre: 450", in
    # the log and `miner outbox`, as if oncall had not had the alert since the first attempt.
    cfg = mail_settings(smtp_server, group_wait=0.0)
    smtp_server.inbox.refuse = {"sre@example.org": ["450 4.2.1 mailbox busy", "450 4.2.1 mailbox busy"]}
    open_incident(store, "WhatsApp", T0)
    plan_notifications(store, cfg, T0)
    dispatch(store, cfg, T0, worker_id="w")
    stats = dispatch(store, cfg, T0 + timedelta(seconds=cfg.retry_max), worker_id="w")
    assert (stats.sent, stats.retried) == (0, 1)
    [row] = store.outbox_listing(["pending"])
    assert row["last_error"] == "refused sre@example.org: 450 4.2.1 mailbox busy; 1 had it from an earlier attempt"
    assert dispatch(store, cfg, T0 + 2 * timedelta(seconds=cfg.retry_max), worker_id="w").sent == 1
    assert [rcpts for _, rcpts in smtp_server.inbox.envelopes] == [["oncall@example.org"], ["sre@example.org"]]


def test_recipient_refused_for_good_fails_visibly_and_retry_sends_only_to_it(
        store: Store, tmp_path: Path, smtp_server: SmtpServer) -> None:  # noqa: F811
    cfg = mail_settings(smtp_server, group_wait=0.0)
    reply = "550 5.1.1 <sre@example.org>: Recipient address rejected: User unknown in virtual mailbox table"
    smtp_server.inbox.refuse = {"sre@example.org": [reply]}
    open_incident(store, "WhatsApp", T0)
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0, worker_id="w").failed == 1
    [row] = store.outbox_listing(["failed"])
    assert row["reason"].startswith(f"refused sre@example.org: {reply}")
    (tmp_path / "feeds.toml").write_text("")
    listing = CliRunner().invoke(main, ["--config", str(tmp_path / "feeds.toml"), "--db", str(store.path), "outbox"])
    assert listing.exit_code == 0 and "failed" in listing.output
    # The server's whole answer: cut at 60 characters, the listing showed "... <sre@example.org>: R…".
    assert f"refused sre@example.org: {reply}" in listing.output
    assert store.retry_notification(row["id"], T0)  # the address was fixed at the other end
    assert dispatch(store, cfg, T0, worker_id="w").sent == 1
    assert [rcpts for _, rcpts in smtp_server.inbox.envelopes] == [["oncall@example.org"], ["sre@example.org"]]


def test_an_internationalized_recipient_on_a_server_without_smtputf8_does_not_cost_the_others_the_alert(
        store: Store) -> None:
    server = SmtpServer(smtputf8=False)
    server.start()
    try:
        route = RouteSettings(name="oncall", email=("oncall@example.org", "jörg@example.org", "ops@bücher.example"))
        cfg = replace(mail_settings(server, group_wait=0.0), routes=(route,))
        open_incident(store, "WhatsApp", T0)
        plan_notifications(store, cfg, T0)
        assert dispatch(store, cfg, T0, worker_id="w").failed == 1
        # The domain in its ASCII form reaches its mailbox; only the address no such server can carry is refused.
        assert server.inbox.envelopes == [("miner@example.org", ["oncall@example.org", "ops@xn--bcher-kva.example"])]
        assert "ops@xn--bcher-kva.example" in [a.addr_spec for a in server.inbox.messages[0]["To"].addresses]
        [row] = store.outbox_listing(["failed"])
        assert row["reason"].startswith("refused jörg@example.org: 553 needs SMTPUTF8")
    finally:
        server.stop()


@pytest.mark.parametrize("smtputf8", [False, True])
def test_a_from_address_with_an_internationalized_domain_makes_ascii_message_ids(store: Store, smtputf8: bool) -> None:
    server = SmtpServer(smtputf8=smtputf8)
    server.start()
    try:
        cfg = mail_settings(server, group_wait=0.0, from_addr="miner <miner@bücher.example>")
        open_incident(store, "WhatsApp", T0)
        plan_notifications(store, cfg, T0)
        # A Message-ID in that domain could not be written without SMTPUTF8: every email of the store failed.
        assert dispatch(store, cfg, T0, worker_id="w").sent == 1
        [msg] = server.inbox.messages
        assert str(msg["Message-ID"]).isascii() and str(msg["Message-ID"]).endswith("@xn--bcher-kva.example>")
        assert [a.addr_spec for a in msg["From"].addresses] == ["miner@xn--bcher-kva.example"]
        assert msg["From"].addresses[0].display_name == "miner"
        [chart] = [p for p in msg.walk() if p.get_content_type() == "image/png"]
        assert f"cid:{str(chart['Content-ID']).strip('<>')}" in str(msg.get_body(("html",)).get_content())
    finally:
        server.stop()


@pytest.mark.parametrize("reply", ["554 5.0.0 odd", "421 4.3.2 shutting down"])
def test_an_odd_answer_to_quit_after_the_message_was_accepted_does_not_fail_or_resend_it(
        store: Store, smtp_server: SmtpServer, reply: str) -> None:  # noqa: F811
    cfg = mail_settings(smtp_server, group_wait=0.0)
    smtp_server.inbox.quit_reply = reply
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    stats = dispatch(store, cfg, T0, worker_id="w")
    assert (stats.sent, stats.retried, stats.failed) == (1, 0, 0)
    assert dispatch(store, cfg, T0 + timedelta(hours=1), worker_id="w").claimed == 0
    assert len(smtp_server.inbox.messages) == 1
    [row] = store.outbox_listing(["sent"])
    assert row["last_error"] is None


def test_a_refusal_is_reported_as_such_when_quit_is_answered_oddly_too(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    cfg = mail_settings(smtp_server, group_wait=0.0)
    smtp_server.inbox.reject_rcpt = "550 5.1.1 mailbox unavailable"
    smtp_server.inbox.quit_reply = "421 4.3.2 shutting down"
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0, worker_id="w").failed == 1
    [row] = store.outbox_listing(["failed"])
    assert "550 5.1.1 mailbox unavailable" in row["reason"]


def _incidents(store: Store, cfg: AlertSettings, n: int) -> None:
    """``n`` incidents, each planned in its own batch (no group wait), all due at T0."""
    for i in range(n):
        open_incident(store, f"svc{i}", T0, posts=False, series=False)
        plan_notifications(store, cfg, T0)


def test_smtp_outage_delays_but_delivers_each_message_exactly_once(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    cfg = mail_settings(smtp_server, group_wait=0.0)
    _incidents(store, cfg, 3)
    smtp_server.stop()
    now = T0
    for _ in range(3):  # refused connections: every attempt is a retry, none is lost
        stats = dispatch(store, cfg, now, worker_id="w")
        # One message finds the server down; the others are left for the next run, untried, and go first then.
        assert (stats.sent, stats.failed, stats.retried, stats.deferred) == (0, 0, 1, 2)
        now += timedelta(seconds=cfg.retry_max)
    rows = store.outbox_listing(["pending"])
    assert len(rows) == 3 and all(r["attempts"] == 1 and r["last_error"].startswith("SMTP connection refused by ")
                                  for r in rows)
    smtp_server.start()
    for _ in range(3):
        dispatch(store, cfg, now, worker_id="w")
        now += timedelta(seconds=cfg.retry_max)
    ids = smtp_server.inbox.message_ids()
    assert len(ids) == 3 and len(set(ids)) == 3
    assert len(store.outbox_listing(["sent"])) == 3


@pytest.mark.parametrize("stage", ["RCPT", "DATA"])
def test_a_421_from_the_server_defers_the_other_messages_as_an_outage_does(
        store: Store, smtp_server: SmtpServer, stage: str) -> None:  # noqa: F811
    # 421 is the server closing the channel for every message (RFC 5321 3.8), not a refusal of this one: each
    # message of the run used to open a session of its own into it, and none was left untried for the next run.
    cfg = mail_settings(smtp_server, group_wait=0.0)
    _incidents(store, cfg, 3)
    if stage == "RCPT":
        smtp_server.inbox.reject_rcpt = "421 4.3.2 service shutting down"
    else:
        smtp_server.inbox.data_reply = "421 4.3.2 service shutting down"
    stats = dispatch(store, cfg, T0, worker_id="w")
    assert (stats.sent, stats.failed, stats.retried, stats.deferred) == (0, 0, 1, 2)
    [tried] = [r for r in store.outbox_listing(["pending"]) if r["attempts"] == 1]
    assert "421 4.3.2 service shutting down" in tried["last_error"]
    smtp_server.inbox.reject_rcpt = smtp_server.inbox.data_reply = None
    assert dispatch(store, cfg, T0 + timedelta(seconds=cfg.retry_max), worker_id="w").sent == 3


def test_a_421_to_one_recipient_is_not_reported_as_every_recipient_refused(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # smtplib ends the session at a 421 to RCPT and names only that recipient: "all recipients refused: sre: 421"
    # read as if sre were the route's only address, where oncall was accepted and nothing was sent to either.
    cfg = mail_settings(smtp_server, group_wait=0.0)
    smtp_server.inbox.refuse = {"sre@example.org": ["421 4.3.2 service shutting down"]}
    open_incident(store, "WhatsApp", T0)
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0, worker_id="w").retried == 1
    [row] = store.outbox_listing(["pending"])
    assert "all recipients refused" not in row["last_error"]
    assert "sre@example.org: 421 4.3.2 service shutting down" in row["last_error"]
    assert "closed the session" in row["last_error"] and "not sent to any of the 2 recipients" in row["last_error"]
    assert dispatch(store, cfg, T0 + timedelta(seconds=cfg.retry_max), worker_id="w").sent == 1
    assert [rcpts for _, rcpts in smtp_server.inbox.envelopes] == [["oncall@example.org", "sre@example.org"]]


def test_giving_up_is_logged_as_an_error_naming_the_notification(
        store: Store, smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    cfg = mail_settings(smtp_server, group_wait=0.0, give_up_after=120.0)
    _incidents(store, cfg, 1)
    smtp_server.stop()
    now = T0
    with caplog.at_level(logging.WARNING, logger="miner.alerts"):
        while not dispatch(store, cfg, now, worker_id="w").failed:
            assert now < T0 + timedelta(hours=1)
            now += timedelta(seconds=cfg.retry_max)
    [row] = store.outbox_listing(["failed"])
    assert row["reason"].startswith("gave up after")
    [error] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert f"outbox {row['id']} (email): gave up after {row['attempts']} attempts" in error.getMessage()
    assert "connection refused by 127.0.0.1" in error.getMessage()


def test_the_service_counts_notifications_that_failed_for_good_in_its_metrics(
        tmp_path: Path, smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    from miner.service import JobSpec, Service, ServiceOptions

    smtp_server.inbox.reject_rcpt = "550 5.1.1 mailbox unavailable"
    config = parse_config(f'[[services]]\nname = "WhatsApp"\n\n[alerts]\ngroup_wait = 0\n\n'
                          f'[alerts.smtp]\nhost = "127.0.0.1"\nport = {smtp_server.port}\nsecurity = "none"\n\n'
                          f'[[alerts.routes]]\nname = "oncall"\nemail = ["oncall@example.org"]\n')
    db = tmp_path / "miner.sqlite"
    store = Store.open(db)
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    store.close()
    service = Service(config, db, ServiceOptions(jobs=(JobSpec("alerts", 3600.0),), http=False, clock=lambda: T0))
    try:
        with caplog.at_level(logging.INFO, logger="miner"):
            service.job_alerts(T0)
        assert "miner_notifications_failed_total 1" in service.metrics_text().splitlines()
    finally:
        service.stop()
    # In the singular for one: "planned 1 alert item(s) from 1 transition(s)", "1 notifications failed".
    logged = [r.getMessage() for r in caplog.records]
    assert "planned 1 alert item from 1 transition" in logged
    assert "alerts: 1 notification failed permanently (see `miner outbox`)" in logged


def test_crash_after_claim_is_sent_once_after_the_lease(store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    cfg = mail_settings(smtp_server, group_wait=0.0)
    _incidents(store, cfg, 1)
    [row] = store.due_notifications(T0, 10)
    assert store.claim_notification(row["id"], "crashed-worker", T0)  # ... and the worker dies here
    assert dispatch(store, cfg, T0 + timedelta(seconds=30), worker_id="w2").claimed == 0
    stats = dispatch(store, cfg, T0 + timedelta(seconds=cfg.lease_seconds + 1), worker_id="w2")
    assert (stats.reclaimed, stats.sent) == (1, 1)
    assert smtp_server.inbox.message_ids() == [row["message_id"]]  # the Message-ID fixed at planning
    # The crashed worker waking up cannot record anything over the new owner's result.
    assert store.notification(row["id"])["status"] == "sent"  # type: ignore[index]


def test_two_dispatchers_on_one_store_never_send_twice(tmp_path: Path, smtp_server: SmtpServer) -> None:  # noqa: F811
    path = tmp_path / "miner.sqlite"
    setup = Store.open(path)
    cfg = mail_settings(smtp_server, group_wait=0.0, group_interval=0.0)  # twelve messages to race for
    _incidents(setup, cfg, 12)
    setup.close()
    dispatch_in_two_threads(path, cfg, (T0,), 3)
    ids = smtp_server.inbox.message_ids()
    assert len(ids) == 12 and len(set(ids)) == 12
    check = Store.open(path)
    assert all(len(check.deliveries(r["id"])) == 1 for r in check.outbox_listing(["sent"]))
    check.close()


def test_smtp_login_reads_credentials_from_the_environment(
        store: Store, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    cfg = mail_settings(smtp_server, group_wait=0.0)
    cfg = replace(cfg, smtp=replace(cfg.smtp, username_env="MINER_T_USER", password_env="MINER_T_PASS"))
    monkeypatch.delenv("MINER_T_USER", raising=False)
    _incidents(store, cfg, 1)
    assert dispatch(store, cfg, T0, worker_id="w").failed == 1
    [row] = store.outbox_listing(["failed"])
    assert "MINER_T_USER is not set" in row["reason"]


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # implicit TLS: see smtp_server.py
@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_tls_and_login_from_environment(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        security: str) -> None:
    server = SmtpServer(tls=security, folder=tmp_path, login=("alerts", "s3cret"))
    server.start()
    try:
        monkeypatch.setenv("MINER_T_USER", "alerts")
        monkeypatch.setenv("MINER_T_PASS", "s3cret")
        smtp = SmtpSettings(host="127.0.0.1", port=server.port, security=security,  # type: ignore[arg-type]
                            username_env="MINER_T_USER", password_env="MINER_T_PASS", timeout=5,
                            ca_file=str(tmp_path / "cert.pem"))
        cfg = replace(mail_settings(server, group_wait=0.0, group_interval=0.0), smtp=smtp)
        _incidents(store, cfg, 1)
        assert dispatch(store, cfg, T0, worker_id="w").sent == 1
        assert server.logins == ["alerts"] and len(server.inbox.messages) == 1
        # Without our CA the server's certificate is not trusted: nothing is sent, and it stays queued.
        untrusted = replace(cfg, smtp=replace(smtp, ca_file=""))
        open_incident(store, "other", T0, posts=False, series=False)
        plan_notifications(store, untrusted, T0)
        stats = dispatch(store, untrusted, T0, worker_id="w")
        assert (stats.sent, stats.retried) == (0, 1)
        assert "TLS certificate of 127.0.0.1" in store.outbox_listing(["pending"])[0]["last_error"]
    finally:
        server.stop()


def test_reminder_for_a_still_open_incident(store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    cfg = mail_settings(smtp_server, group_wait=0.0, repeat_interval=3600.0)
    open_incident(store, "WhatsApp", T0)
    for minutes in (0, 30, 60, 61):
        now = T0 + timedelta(minutes=minutes)
        plan_notifications(store, cfg, now)
        dispatch(store, cfg, now, worker_id="w")
    first, reminder = smtp_server.inbox.messages
    assert str(first["Subject"]).startswith("[miner] OPEN: WhatsApp")
    assert str(reminder["Subject"]).startswith("[miner] STILL OPEN: WhatsApp")
    assert "(still open, reminder)" in reminder.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_an_alert_held_back_by_an_outage_is_not_followed_by_a_reminder_of_itself(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    cfg = mail_settings(smtp_server, group_wait=0.0, repeat_interval=3600.0)
    open_incident(store, "WhatsApp", T0)
    smtp_server.stop()
    subjects: dict[int, list[str]] = {}
    for minutes in range(0, 200, 10):  # the server is down for two repeat intervals, back at 120 min
        if minutes == 120:
            smtp_server.start()
        now = T0 + timedelta(minutes=minutes)
        plan_notifications(store, cfg, now)
        dispatch(store, cfg, now, worker_id="w")
        got = [str(m["Subject"]).split(":")[0] for m in smtp_server.inbox.messages]
        subjects[minutes] = got
    # The opening goes out once the server is back, alone; the reminder a repeat_interval after it arrived.
    assert subjects[120] == ["[miner] OPEN"]
    assert subjects[170] == ["[miner] OPEN"]
    assert subjects[190] == ["[miner] OPEN", "[miner] STILL OPEN"]


def test_a_silence_added_while_an_alert_is_retried_mutes_it_until_the_silence_ends(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    cfg = mail_settings(smtp_server, group_wait=0.0)
    open_incident(store, "WhatsApp", T0)
    smtp_server.stop()
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0, worker_id="w").retried == 1
    # The on-call, paged elsewhere, silences WhatsApp for 30 minutes; the mail server comes back meanwhile.
    store.add_silence("WhatsApp", T0 + timedelta(minutes=1), T0 + timedelta(minutes=30), "on it", T0)
    smtp_server.start()
    for minutes in (2, 10, 20):
        now = T0 + timedelta(minutes=minutes)
        plan_notifications(store, cfg, now)
        dispatch(store, cfg, now, worker_id="w")
    assert smtp_server.inbox.messages == []
    [row] = store.outbox_listing(["suppressed"])
    assert "on it" in str(row["reason"]) and row["attempts"] == 1
    # Still open when the silence ends: announced then, once.
    for minutes in (31, 40):
        now = T0 + timedelta(minutes=minutes)
        plan_notifications(store, cfg, now)
        dispatch(store, cfg, now, worker_id="w")
    [msg] = smtp_server.inbox.messages
    assert str(msg["Subject"]).startswith("[miner] OPEN: WhatsApp")


def test_an_incident_that_opens_and_resolves_during_an_smtp_outage_is_one_message(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    cfg = mail_settings(smtp_server, group_wait=0.0)
    iid = open_incident(store, "WhatsApp", T0)
    smtp_server.stop()
    for minutes in range(0, 120, 10):
        if minutes == 60:
            resolve(store, iid, T0 + timedelta(minutes=60))
        plan_notifications(store, cfg, T0 + timedelta(minutes=minutes))
        dispatch(store, cfg, T0 + timedelta(minutes=minutes), worker_id="w")
    smtp_server.start()
    plan_notifications(store, cfg, T0 + timedelta(minutes=120))
    dispatch(store, cfg, T0 + timedelta(minutes=120), worker_id="w")
    # The alert, sent late, says it resolved; no resolve notice besides, threaded under a message nobody has.
    [msg] = smtp_server.inbox.messages
    assert str(msg["Subject"]).startswith("[miner] RESOLVED SINCE: WhatsApp")
    # Its heading says so too, not "Outage reports" in red over an outage that had ended an hour before.
    text_part, related = msg.iter_parts()
    html = next(related.iter_parts()).get_content()
    assert "Outage reports" not in html and "Resolved since: WhatsApp" in html
    for part in (html, text_part.get_content()):
        assert "and were back to normal before this alert went out. Detected" in " ".join(part.split())
    [notice] = [r for r in store.outbox_listing(["suppressed"]) if r["kind"] == "resolved"]
    assert "not sent yet" in str(notice["reason"])


def _resolved_and_reopened_while_smtp_is_down(store: Store, cfg: AlertSettings, iid: int, server: SmtpServer,
                                              minutes: range, back_at: int | None = None) -> None:
    """With the mail server stopped, plan and dispatch at each of ``minutes`` after T0: the incident resolves at 60
    and opens again at 120; the server is started again at ``back_at``."""
    server.stop()
    for minute in minutes:
        now = T0 + timedelta(minutes=minute)
        if minute == 60:
            resolve(store, iid, now)
        if minute == 120:
            store.update_incident(iid, now, {"status": "open", "resolved_at": None}, kind="update",
                                  details={"reason": "reopened"})
        if minute == back_at:
            server.start()
        plan_notifications(store, cfg, now)
        dispatch(store, cfg, now, worker_id="w")


def test_a_resolve_notice_retried_past_a_reopening_does_not_say_resolved_after_it(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    cfg = mail_settings(smtp_server, group_wait=0.0, group_interval=0.0)
    iid = open_incident(store, "WhatsApp", T0)
    plan_notifications(store, cfg, T0)
    dispatch(store, cfg, T0, worker_id="w")
    _resolved_and_reopened_while_smtp_is_down(store, cfg, iid, smtp_server, range(10, 200, 10), back_at=150)
    # The re-opening's alert went out first: "RESOLVED" after it was the last word on an outage that was on again.
    assert [str(m["Subject"]).split(":")[0] for m in smtp_server.inbox.messages] == ["[miner] OPEN", "[miner] OPEN"]
    [notice] = [r for r in store.outbox_listing(["sent"]) if r["kind"] == "resolved"]
    assert "opened again" in store.deliveries(notice["id"])[-1]["detail"]


def test_an_incident_that_resolves_and_comes_back_during_an_smtp_outage_is_one_open_alert(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    cfg = mail_settings(smtp_server, group_wait=0.0)
    iid = open_incident(store, "WhatsApp", T0)
    _resolved_and_reopened_while_smtp_is_down(store, cfg, iid, smtp_server, range(0, 180, 10))
    smtp_server.start()
    plan_notifications(store, cfg, T0 + timedelta(minutes=180))
    dispatch(store, cfg, T0 + timedelta(minutes=180), worker_id="w")
    [msg] = smtp_server.inbox.messages
    assert str(msg["Subject"]).startswith("[miner] OPEN: WhatsApp")
    # Its resolve notice, when it resolves again, threads under the alert that went out.
    resolve(store, iid, T0 + timedelta(minutes=200))
    plan_notifications(store, cfg, T0 + timedelta(minutes=200))
    dispatch(store, cfg, T0 + timedelta(minutes=200), worker_id="w")
    opened, resolved = smtp_server.inbox.messages
    assert str(resolved["Subject"]).startswith("[miner] RESOLVED") and resolved["In-Reply-To"] == opened["Message-ID"]


def test_the_resolve_is_sent_to_recipients_that_had_the_alert_while_others_are_retried(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    cfg = mail_settings(smtp_server, group_wait=0.0)
    smtp_server.inbox.refuse = {"sre@example.org": ["450 4.2.1 mailbox busy"] * 20}
    iid = open_incident(store, "WhatsApp", T0)
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0, worker_id="w").retried == 1  # oncall@ has it, sre@ is retried
    resolve(store, iid, T0 + timedelta(minutes=1))
    plan_notifications(store, cfg, T0 + timedelta(minutes=1))
    dispatch(store, cfg, T0 + timedelta(minutes=1), worker_id="w")
    assert [str(m["Subject"]).split(":")[0] for m in smtp_server.inbox.messages] == ["[miner] OPEN", "[miner] RESOLVED"]


def test_deliveries_name_the_worker_as_the_schema_says(tmp_path: Path, smtp_server: SmtpServer) -> None:  # noqa: F811
    # docs/schema.md, deliveries.worker: `cli-HOST-PID` from `miner outbox send`, `HOST:PID` from the pipeline.
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(f'[[services]]\nname = "WhatsApp"\n\n[alerts]\n'
                   f'smtp = {{ host = "127.0.0.1", port = {smtp_server.port}, security = "none" }}\n\n'
                   f'[[alerts.routes]]\nname = "oncall"\nemail = ["oncall@example.org"]\n')
    base = ["--config", str(cfg), "--db", str(tmp_path / "m.sqlite")]
    Store.open(tmp_path / "m.sqlite").close()  # as the service leaves it: digest and outbox send create no store
    runner = CliRunner()
    for args in (["digest"], ["outbox", "send"]):
        result = runner.invoke(main, [*base, *args])
        assert result.exit_code == 0, result.output
    store = Store.open(tmp_path / "m.sqlite")
    try:
        assert [d["worker"] for d in store.deliveries(1)] == [f"cli-{socket.gethostname()}-{os.getpid()}"]
        assert Pipeline(load_config(cfg), store).worker_id == f"{socket.gethostname()}:{os.getpid()}"
    finally:
        store.close()


def test_a_server_trickling_its_greeting_cannot_hold_a_send_past_its_bound(store: Store) -> None:
    # smtp.timeout bounds each read, not a reply: a greeting a byte at a time held the send (and its claim, which
    # lapsed: another dispatcher sent it again) for as long as the server liked.
    trickler = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve() -> None:
        conn = trickler.accept()[0]
        with conn:
            while not done.wait(0.1):
                try:
                    conn.sendall(b"2")
                except OSError:
                    return

    threading.Thread(target=serve, daemon=True).start()
    route = RouteSettings(name="oncall", email=("oncall@example.org",))
    smtp = SmtpSettings(host="127.0.0.1", port=trickler.getsockname()[1], security="none", timeout=0.5)
    cfg = settings(routes=(route,), webhooks=(), smtp=smtp, group_wait=0.0)
    assert cfg.slowest_send == 5.0
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    stats: list[object] = []
    sender = threading.Thread(target=lambda: stats.append(dispatch(store, cfg, T0, worker_id="w")), daemon=True)
    began = time.monotonic()
    sender.start()
    sender.join(60)  # the server trickles until done is set: without the bound the send never ends before that
    done.set()
    trickler.close()
    assert not sender.is_alive(), "the send outlasted its bound"
    assert time.monotonic() - began < 30  # the 5 s bound, with room for a loaded CI runner
    [row] = store.outbox_listing(["pending"])
    assert row["attempts"] == 1 and "5s" in row["last_error"]


def test_stopping_the_service_does_not_wait_for_the_rest_of_a_batch_to_a_hanging_server(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each row to a server that never answers takes the timeout: a stop waited for all of them (at the defaults,
    # 100 rows x 30 s, far beyond systemd's TimeoutStopSec) before the service could exit. The rows are on five
    # channels, the email and four webhooks, all to one server that takes connections and never answers: a
    # channel found unreachable leaves its other rows untried, so rows of one channel would pass without the stop.
    # The stop is asked for while the first row waits on the server, which then lets it go: nothing hangs on a
    # timeout running out before the test acts (a 2 s one did, and a loaded CI runner could miss it).
    from miner.service import JobSpec, Service, ServiceOptions

    hung = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    first = threading.Event()

    def accept() -> None:  # takes connections and never answers
        while True:
            try:
                held.append(hung.accept()[0])
            except OSError:
                return
            first.set()

    threading.Thread(target=accept, daemon=True).start()
    hooks = ""
    for i in range(4):
        monkeypatch.setenv(f"MINER_TEST_HOOK{i}", f"http://127.0.0.1:{hung.getsockname()[1]}/hook{i}")
        hooks += f'[[alerts.webhooks]]\nname = "hook{i}"\nurl_env = "MINER_TEST_HOOK{i}"\ntimeout = 30\n\n'
    config = parse_config(f'[[services]]\nname = "svc0"\n\n[alerts]\ngroup_wait = 0\n\n'
                          f'[alerts.smtp]\nhost = "127.0.0.1"\nport = {hung.getsockname()[1]}\n'
                          f'security = "none"\ntimeout = 30\n\n{hooks}'
                          f'[[alerts.routes]]\nname = "oncall"\nemail = ["oncall@example.org"]\n'
                          f'webhooks = ["hook0", "hook1", "hook2", "hook3"]\n')
    db = tmp_path / "miner.sqlite"
    store = Store.open(db)
    open_incident(store, "svc0", T0, posts=False, series=False)
    assert plan_notifications(store, config.alerts, T0) == 5  # one per channel
    store.close()
    service = Service(config, db, ServiceOptions(jobs=(JobSpec("alerts", 3600.0),), http=False, clock=lambda: T0))
    try:
        service.start()
        assert first.wait(60), "the alerts job never connected"
        service.request_stop()  # as SIGTERM does, while the first row waits on the server
        for conn in list(held):  # the row in flight ends (its server gone) without waiting out its 30 s
            conn.close()
        started = time.monotonic()
    finally:
        service.stop()
        hung.close()
        for conn in held:
            conn.close()
    # Without the stop each of the other four waited out its 30 s: 2 minutes.
    assert time.monotonic() - started < 20
    assert len(held) == 1  # no other row was tried
    check = Store.open(db)
    try:
        attempts = sorted(r["attempts"] for r in check.outbox_listing(["pending"]))
    finally:
        check.close()
    assert attempts == [0, 0, 0, 0, 1]  # the others were not claimed: they go at the next start


def test_a_provider_outage_opening_many_services_at_once_is_one_small_email_with_group_wait_0(
        store: Store, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setattr("miner.alerts.render.MAX_HTML_BYTES", 10_000_000)  # the cap at MAX_INCIDENTS alone
    # group_wait = 0 made every opening a batch due at once, which nothing could join: a Cloudflare outage opening
    # 60 services in one detector run sent 60 emails (and as many webhook POSTs) instead of one.
    cfg = mail_settings(smtp_server, group_wait=0.0, providers={f"svc{i:02d}": "Cloudflare" for i in range(60)})
    ids = [open_incident(store, f"Svc{i:02d}", T0, posts=False, series=i < 12) for i in range(60)]
    store.create_group("Cloudflare", "CDN outage", [f"Svc{i:02d}" for i in range(30)], T0, ids[:30])
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0 + timedelta(seconds=1), worker_id="w").sent == 1
    [msg] = smtp_server.inbox.messages
    assert len(msg.as_bytes()) < 1_000_000  # 10 charts, not 60
    assert len(str(msg["Subject"])) < 80 and str(msg["Subject"]).endswith("+56")
    text = msg.get_body(("plain",)).get_content()
    assert "the 50 most important of 60 incidents" in text and "10 more are left out" in text


def test_the_alert_heading_names_four_services_and_counts_the_rest(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # The HTML heading (and <title>) listed every service shown: 50 names in a 19-px headline.
    cfg = mail_settings(smtp_server, group_wait=60.0, group_by="route")
    for i in range(60):
        open_incident(store, f"Svc{i:02d} <&>", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0 + timedelta(minutes=2), worker_id="w").sent == 1
    html = smtp_server.inbox.messages[0].get_body(("html",)).get_content()
    heading = "Outage reports: " + ", ".join(f"Svc{i:02d} &lt;&amp;&gt;" for i in range(4)) + " and 56 more"
    assert f"<title>{heading}</title>" in html and f'font-weight:bold;">{heading}</div>' in html
    assert "Svc04 &lt;&amp;&gt;," not in html

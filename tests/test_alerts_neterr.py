"""How a notification's network failure is told and retried (miner/net_errors.py), from real failures on
127.0.0.1: an SMTP server whose certificate is not trusted, one that offers no STARTTLS, implicit TLS to a plain
port, a refused port, a silent server, a reset, a name that does not resolve; webhooks likewise. A TLS failure lasts
until someone acts: it is logged as an error at its first attempt, not when give_up_after (72 h) ends the retries,
and `miner outbox send` exits 1; it is still retried, so the queue goes out by itself once it is fixed."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from netfaults import (
    closing_server,
    dns_failure,
    ok_server,
    refused_port,
    resetting_server,
    self_signed,
    silent_server,
    unresolvable,
)
from smtp_server import SmtpServer
from test_alerts_support import T0, open_incident, settings

from miner.alerts import dispatch, plan_notifications
from miner.alerts.settings import AlertSettings, RouteSettings, SmtpSettings, WebhookSettings
from miner.cli import main
from miner.config import load_config
from miner.store import Store
from miner.timeutil import utcnow

pytestmark = pytest.mark.usefixtures("no_proxy_nor_trust")


@pytest.fixture
def tls_smtp(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[SmtpServer]:
    server = SmtpServer(tls=request.param, folder=tmp_path)
    server.start()
    yield server
    server.stop()


def _mail(port: int, host: str = "127.0.0.1", **smtp: object) -> AlertSettings:
    route = RouteSettings(name="oncall", email=("oncall@example.org",))
    base: dict[str, object] = {"host": host, "port": port, "timeout": 5.0} | smtp
    return settings(routes=(route,), webhooks=(), smtp=SmtpSettings(**base),  # type: ignore[arg-type]
                    group_wait=0.0)


def _attempt(store: Store, cfg: AlertSettings) -> tuple[dict[str, object], int]:
    """Plan one opening and send it once: the row after the attempt, and how many failed needing action."""
    open_incident(store, "WhatsApp", T0)
    plan_notifications(store, cfg, T0)
    stats = dispatch(store, cfg, T0, worker_id="w")
    [row] = store.outbox_listing(["pending", "failed", "sent"])
    return row, stats.needs_action


@pytest.mark.parametrize("tls_smtp", ["starttls", "ssl"], indirect=True)
def test_an_smtp_certificate_not_trusted_is_an_error_at_once_and_sent_once_trusted(
        store: Store, tls_smtp: SmtpServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = _mail(tls_smtp.port, security=tls_smtp.tls)
    with caplog.at_level(logging.WARNING, logger="miner.alerts"):
        row, needs_action = _attempt(store, cfg)
    # Was "SMTP 127.0.0.1:PORT unreachable: SSLCertVerificationError: [SSL: CERTIFICATE_VERIFY_FAILED] ...", a
    # warning at each attempt, and an error only when give_up_after ended the retries, 72 h later.
    assert row["status"] == "pending" and needs_action == 1
    assert row["last_error"] == (f"SMTP TLS certificate of 127.0.0.1:{tls_smtp.port} not trusted (self-signed "
                                 "certificate): if it is the right server, set [alerts.smtp] ca_file to its CA's PEM "
                                 "file (else the system's CAs)")
    [error] = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("miner.")]
    assert f"outbox {row['id']} (email): attempt 1 failed, and will until someone acts" in error.getMessage()
    # Retried: once the CA is trusted, the queued alert goes out without an `outbox retry`.
    trusted = replace(cfg, smtp=replace(cfg.smtp, ca_file=str(tmp_path / "cert.pem")))
    later = T0.replace(hour=T0.hour + 1)
    assert dispatch(store, trusted, later, worker_id="w").sent == 1
    assert len(tls_smtp.inbox.messages) == 1


def test_an_smtp_certificate_a_ca_file_did_not_sign_names_the_file(store: Store, tmp_path: Path) -> None:
    server = SmtpServer(tls="starttls", folder=tmp_path / "server")
    (tmp_path / "server").mkdir()
    server.start()
    try:
        other_ca, _ = self_signed(tmp_path)  # a CA file, but not the one of the server's certificate
        other_ca.write_text((Path(__file__).parent / "fixtures" / "tls" / "wrong.pem").read_text())
        row, needs_action = _attempt(store, _mail(server.port, ca_file=str(other_ca)))
    finally:
        server.stop()
    assert row["last_error"] == (f"SMTP TLS certificate of 127.0.0.1:{server.port} not trusted (self-signed "
                                 f"certificate): the CAs of ca_file ({other_ca}) did not sign it")
    assert needs_action == 1


def test_a_server_offering_no_starttls_is_retried_and_nothing_goes_in_clear(store: Store,
                                                                            tmp_path: Path) -> None:
    server = SmtpServer()  # plain: its EHLO offers no STARTTLS
    server.start()
    try:
        row, needs_action = _attempt(store, _mail(server.port, security="starttls"))
    finally:
        server.stop()
    # Was failed for good ("SMTP server does not support it: ..."), each message needing an `outbox retry`.
    assert row["status"] == "pending" and needs_action == 1
    assert row["last_error"] == (f'SMTP 127.0.0.1:{server.port} does not offer STARTTLS (security = "starttls"): TLS '
                                 'is off on the server, or its port takes implicit TLS (465: security = "ssl")')
    assert server.inbox.messages == []


def test_implicit_tls_to_a_plain_smtp_port_says_the_port_may_take_starttls(store: Store,
                                                                           tmp_path: Path) -> None:
    server = SmtpServer()
    server.start()
    try:
        row, needs_action = _attempt(store, _mail(server.port, security="ssl"))
    finally:
        server.stop()
    assert row["last_error"] == (f"SMTP TLS handshake with 127.0.0.1:{server.port} failed: the server does not speak "
                                 "TLS there (wrong version number): its port may take STARTTLS (587, 25: security = "
                                 '"starttls")')
    assert needs_action == 1


def test_starttls_to_a_server_that_never_greets_hints_at_implicit_tls(store: Store) -> None:
    # Was "SMTP 127.0.0.1:PORT unreachable: SMTPServerDisconnected: Connection unexpectedly closed: timed out".
    with silent_server() as port:
        row, needs_action = _attempt(store, _mail(port, timeout=0.5))
    assert row["last_error"] == (f"SMTP timed out after 0.5 s waiting for 127.0.0.1:{port} to answer: it took the "
                                 "connection and sent nothing back: the server hangs or is overloaded; an implicit-TLS "
                                 'port (465) says nothing until TLS starts: security = "ssl" for it')
    assert needs_action == 0  # a server that hangs is an outage, retried as one


def test_plain_smtp_to_a_server_that_never_greets_hints_at_implicit_tls(store: Store) -> None:
    # security = "none" to 465 waits for the greeting as starttls does, and was told without the hint.
    with silent_server() as port:
        row, _ = _attempt(store, _mail(port, timeout=0.5, security="none"))
    assert str(row["last_error"]).endswith('; an implicit-TLS port (465) says nothing until TLS starts: security = '
                                           '"ssl" for it')


def test_smtp_outages_name_what_failed(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    with refused_port() as port, caplog.at_level(logging.WARNING, logger="miner.alerts"):
        row, needs_action = _attempt(store, _mail(port, security="none"))
    assert row["last_error"] == (f"SMTP connection refused by 127.0.0.1:{port}: nothing listens on that port: check "
                                 "that the server is up and the port is right")
    assert needs_action == 0
    # The channel named, as the lines of a message sent, given up or needing action name it: "outbox 3: attempt 1
    # failed" left the on-call to look up which channel was down.
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING and r.name.startswith("miner.")]
    assert warning.getMessage().startswith(f"outbox {row['id']} (email): attempt 1 failed, retrying in ")


def test_an_smtp_host_name_that_does_not_resolve_says_so(store: Store) -> None:
    with unresolvable():
        row, _ = _attempt(store, _mail(587, host="mail.nowhere.invalid"))
    assert str(row["last_error"]).startswith(f"SMTP {dns_failure('mail.nowhere.invalid')}: check ")


def test_an_smtp_server_resetting_the_connection_says_so(store: Store) -> None:
    # Was "... SMTPServerDisconnected: Connection unexpectedly closed: [Errno 104] Connection reset by peer".
    with resetting_server(read_first=False) as port:
        row, _ = _attempt(store, _mail(port, security="none"))
    assert str(row["last_error"]).startswith(f"SMTP connection to 127.0.0.1:{port} reset: ")


def test_an_smtp_server_hanging_up_before_its_greeting_says_so(store: Store) -> None:
    # Was "SMTP 127.0.0.1:PORT unreachable: SMTPServerDisconnected: Connection unexpectedly closed".
    with closing_server(read_first=False) as port:
        row, needs_action = _attempt(store, _mail(port, security="none"))
    assert row["last_error"] == (f"SMTP 127.0.0.1:{port} closed the connection before its greeting: a server turning "
                                 "clients away (too many connections, this address refused), or a port that is no "
                                 "SMTP server's")
    assert needs_action == 0 and row["status"] == "pending"


def _hook(url: str, monkeypatch: pytest.MonkeyPatch) -> AlertSettings:
    monkeypatch.setenv("MINER_TEST_HOOK", url)
    route = RouteSettings(name="oncall", webhooks=("hook",))
    return settings(routes=(route,), webhooks=(WebhookSettings(name="hook", url_env="MINER_TEST_HOOK", timeout=5),),
                    group_wait=0.0)


def test_a_webhook_certificate_not_trusted_says_so_without_the_secret_path(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with ok_server(tls=self_signed(tmp_path)) as port:
        row, needs_action = _attempt(store, _hook(f"https://127.0.0.1:{port}/hooks/T0SECRET/B0SECRET", monkeypatch))
    # Was "webhook hook: ConnectError".
    assert row["last_error"] == (f"webhook hook: TLS certificate of 127.0.0.1:{port} not trusted (self-signed "
                                 "certificate): if it is the right server, trust its CA: set SSL_CERT_FILE to a PEM "
                                 "bundle holding it (miner's HTTP uses certifi's CAs, not the system's store)")
    assert needs_action == 1 and row["status"] == "pending"


def test_a_webhook_closing_the_connection_unanswered_says_so(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    # Was "webhook hook: RemoteProtocolError".
    with closing_server() as port:
        row, _ = _attempt(store, _hook(f"http://127.0.0.1:{port}/x/SECRET", monkeypatch))
    assert row["last_error"] == (f"webhook hook: 127.0.0.1:{port} closed the connection without a valid answer (Server "
                                 "disconnected without sending a response.)")


@pytest.mark.parametrize("case", ["refused", "dns", "reset", "plain"])
def test_a_webhook_failure_says_what_it_was(store: Store, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    # Each was "webhook hook: ConnectError" (ReadError for the reset).
    if case == "dns":
        with unresolvable():
            row, _ = _attempt(store, _hook("https://hooks.nowhere.invalid/x/SECRET", monkeypatch))
        assert str(row["last_error"]).startswith(f"webhook hook: {dns_failure('hooks.nowhere.invalid')}: check ")
        return
    if case == "refused":
        with refused_port() as port:
            row, _ = _attempt(store, _hook(f"http://127.0.0.1:{port}/x/SECRET", monkeypatch))
        assert str(row["last_error"]).startswith(f"webhook hook: connection refused by 127.0.0.1:{port}: ")
        return
    server = resetting_server() if case == "reset" else ok_server()
    with server as port:
        scheme = "http" if case == "reset" else "https"
        row, needs_action = _attempt(store, _hook(f"{scheme}://127.0.0.1:{port}/x/SECRET", monkeypatch))
    if case == "reset":
        assert str(row["last_error"]).startswith(f"webhook hook: connection to 127.0.0.1:{port} reset: ")
    else:
        assert row["last_error"] == (f"webhook hook: TLS handshake with 127.0.0.1:{port} failed: the server does not "
                                     "speak TLS there (wrong version number): check the scheme and port of "
                                     "MINER_TEST_HOOK")
        assert needs_action == 1


CONFIG = """
[[services]]
name = "WhatsApp"

[alerts]
from_addr = "miner <miner@example.org>"
group_wait = 0

[alerts.smtp]
host = "127.0.0.1"
port = PORT
security = "starttls"
timeout = 5

[[alerts.routes]]
name = "oncall"
email = ["oncall@example.org"]
"""


@contextlib.contextmanager
def _untrusted_mail(tmp_path: Path, more_config: str = "") -> Iterator[tuple[SmtpServer, Store, list[str]]]:
    """A STARTTLS mail server whose certificate nothing here trusts, a config routing alerts to it (and
    ``more_config``), and a store with one incident open: the server, the store and the options that name the config
    and store."""
    server = SmtpServer(tls="starttls", folder=tmp_path)
    server.start()
    try:
        cfg, db = tmp_path / "feeds.toml", tmp_path / "miner.sqlite"
        cfg.write_text(CONFIG.replace("PORT", str(server.port)) + more_config)
        store = Store.open(db)
        open_incident(store, "WhatsApp", utcnow())
        yield server, store, ["--config", str(cfg), "--db", str(db)]
    finally:
        server.stop()


def test_outbox_send_exits_1_when_a_notification_needs_action(tmp_path: Path) -> None:
    with _untrusted_mail(tmp_path) as (_, store, base):
        store.close()
        res = CliRunner().invoke(main, [*base, "outbox", "send"])
    # Was exit 0, "sent 0, retrying 1, failed 0": nothing for cron to mail about, for 72 h.
    assert res.exit_code == 1, res.output
    assert "sent 0, retrying 1 (1 need action: see `miner outbox`), failed 0" in res.output


def test_status_shows_an_alert_channel_failing_until_a_message_gets_through(tmp_path: Path) -> None:
    with _untrusted_mail(tmp_path) as (server, store, base):
        run = CliRunner()
        assert run.invoke(main, [*base, "outbox", "send"]).exit_code == 1
        # Was nothing: `miner status` said all was well while the alert waited on a certificate for 72 h.
        shown = run.invoke(main, [*base, "status"])
        assert shown.exit_code == 0, shown.output
        [line] = [x for x in shown.output.splitlines() if x.startswith("alerts to ")]
        assert line.startswith("alerts to email failing (last attempt 20")
        assert line.endswith(f"UTC): SMTP TLS certificate of 127.0.0.1:{server.port} not trusted (self-signed "
                             "certificate): if it is the right server, set [alerts.smtp] ca_file to its CA's PEM "
                             "file (else the system's CAs)")
        [channel] = json.loads(run.invoke(main, [*base, "status", "--format", "json"]).output)["alert_channels"]
        assert channel["channel"] == "email" and channel["error"].startswith("SMTP TLS certificate of 127.0.0.1:")
        assert channel["last_failed_at"] is not None

        alerts = load_config(tmp_path / "feeds.toml").alerts
        trusted = replace(alerts, smtp=replace(alerts.smtp, ca_file=str(tmp_path / "cert.pem")))
        assert dispatch(store, trusted, utcnow() + timedelta(hours=1), worker_id="w").sent == 1
        store.close()
        assert json.loads(run.invoke(main, [*base, "status", "--format", "json"]).output)["alert_channels"] == []
        assert "alerts to " not in run.invoke(main, [*base, "status"]).output


def test_the_service_scrape_has_each_alert_channel_up_or_not(tmp_path: Path) -> None:
    from miner.service import Service, ServiceOptions

    chat = ('\n[[alerts.webhooks]]\nname = "chat"\nurl_env = "MINER_TEST_HOOK"\n\n[[alerts.routes]]\nname = "chat"\n'
            'webhooks = ["chat"]\n')
    with _untrusted_mail(tmp_path, chat) as (_, store, _base):
        config = load_config(tmp_path / "feeds.toml")
        plan_notifications(store, config.alerts, utcnow())
        stats = dispatch(store, replace(config.alerts, routes=config.alerts.routes[:1]), utcnow(), worker_id="w")
        assert stats.needs_action == 1
        store.close()
        service = Service(config, tmp_path / "miner.sqlite", ServiceOptions(jobs=(), http=False))
        service.start()
        try:
            text = service.metrics_text()
        finally:
            service.stop()
    # Was no series at all: nothing to alert on while a certificate held the queue for 72 h.
    assert 'miner_alert_channel_up{channel="email"} 0' in text.splitlines()
    assert 'miner_alert_channel_up{channel="webhook:chat"} 1' in text.splitlines()

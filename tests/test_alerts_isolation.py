"""One channel's outage does not hold back the others: an SMTP server or webhook endpoint that accepts the
connection and never answers, beside a real webhook receiver on 127.0.0.1, over a real store."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from smtp_server import SmtpServer, smtp_server  # noqa: F401  (fixture)
from test_alerts_support import T0, open_incident, settings

from miner.alerts import dispatch, plan_notifications
from miner.alerts.settings import AlertSettings, RouteSettings, SmtpSettings, WebhookSettings
from miner.store import Store

TIMEOUT = 1.0  # the dead server's timeout, SMTP or webhook
SERVICES = ("WhatsApp", "Telegram", "Signal")  # no provider: one group, so one message per channel, each


class Receiver:
    """A webhook receiver answering 202 at once, recording when each body came."""

    def __init__(self) -> None:
        self.got: list[tuple[float, dict[str, Any]]] = []
        self.on_post: Callable[[], None] = lambda: None  # run before each answer (another worker, say)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.got.append((time.monotonic(), body))
                receiver.on_post()
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/SECRET-TOKEN"


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    r = Receiver()
    monkeypatch.setenv("MINER_TEST_PAGER", r.url)
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A port whose connections the kernel completes but nobody ever reads or answers (a hung server, a firewall
    that lets the handshake through): each attempt waits out its timeout."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield sock.getsockname()[1]
    sock.close()


def config(route: RouteSettings, webhooks: tuple[WebhookSettings, ...], smtp_port: int) -> AlertSettings:
    smtp = SmtpSettings(host="127.0.0.1", port=smtp_port, security="none", timeout=TIMEOUT)
    return settings(routes=(route,), webhooks=webhooks, smtp=smtp, group_wait=0.0, group_by="service")


PAGER = WebhookSettings(name="pager", url_env="MINER_TEST_PAGER")


def test_an_smtp_server_that_never_answers_does_not_hold_back_the_webhooks(
        store: Store, receiver: Receiver, dead_port: int, smtp_server: SmtpServer) -> None:  # noqa: F811
    route = RouteSettings(name="oncall", email=("oncall@example.org",), webhooks=("pager",))
    cfg = config(route, (PAGER,), dead_port)
    for service in SERVICES:
        open_incident(store, service, T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)  # per incident: an email, then a webhook message
    stats = dispatch(store, cfg, T0, worker_id="w")
    # Every webhook message after one SMTP timeout, not one more after each email's: counted in emails tried, not
    # timed (every message within 2 s, against 3 s for the three timeouts, was a margin a loaded runner could eat).
    assert len(receiver.got) == 3
    assert (stats.sent, stats.retried, stats.deferred, stats.failed) == (3, 1, 2, 0)
    emails = sorted(store.outbox_listing(["pending"]), key=lambda r: int(r["id"]))
    assert [r["channel"] for r in emails] == ["email"] * 3
    # The two left for the next run were not tried: no attempt counted, still due, unclaimed.
    assert [r["attempts"] for r in emails] == [1, 0, 0]
    assert all(r["claimed_by"] is None and r["next_attempt_at"] <= T0.isoformat() for r in emails[1:])

    # The mail server is back: the two go at the next run, the one tried at its retry; each once.
    cfg = replace(cfg, smtp=replace(cfg.smtp, port=smtp_server.port))
    assert dispatch(store, cfg, T0 + timedelta(seconds=1), worker_id="w").sent == 2
    assert dispatch(store, cfg, T0 + timedelta(minutes=5), worker_id="w").sent == 1
    assert dispatch(store, cfg, T0 + timedelta(minutes=10), worker_id="w").claimed == 0
    ids = [str(m["Message-ID"]) for m in smtp_server.inbox.messages]
    assert len(ids) == 3 and sorted(ids) == sorted(str(r["message_id"]) for r in emails)
    assert len(receiver.got) == 3


def test_a_webhook_endpoint_that_never_answers_does_not_hold_back_another(
        store: Store, receiver: Receiver, dead_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINER_TEST_CHAT", f"http://127.0.0.1:{dead_port}/hooks/SECRET-TOKEN")
    chat = WebhookSettings(name="chat", url_env="MINER_TEST_CHAT", timeout=TIMEOUT)
    route = RouteSettings(name="oncall", webhooks=("chat", "pager"))
    cfg = config(route, (chat, PAGER), 25)
    for service in SERVICES:
        open_incident(store, service, T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    stats = dispatch(store, cfg, T0, worker_id="w")
    assert len(receiver.got) == 3  # after one timeout of the dead endpoint, not three: one message to it tried
    assert (stats.sent, stats.retried, stats.deferred) == (3, 1, 2)
    assert sorted(r["attempts"] for r in store.outbox_listing(["pending"])) == [0, 0, 1]


def _tries(dead: socket.socket) -> int:
    """Connections made to the listening ``dead`` since the last look (each an attempt to send to it)."""
    n = 0
    while True:
        try:
            dead.accept()[0].close()
        except BlockingIOError:
            return n
        n += 1


def test_a_page_planned_while_the_mail_server_is_down_goes_before_the_next_try_of_it(
        store: Store, receiver: Receiver, smtp_server: SmtpServer) -> None:  # noqa: F811
    dead = socket.create_server(("127.0.0.1", 0))  # accepted only by _tries: each attempt waits out its timeout
    dead.setblocking(False)
    route = RouteSettings(name="oncall", email=("oncall@example.org",), webhooks=("pager",))
    cfg = config(route, (PAGER,), dead.getsockname()[1])
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    dispatch(store, cfg, T0, worker_id="w")
    assert store.alert_state("unreachable:email")
    assert _tries(dead) == 1
    # A run later, a new outage: its page goes first, the email (still due: a new one) after it. Told by whether
    # the mail server was tried when the page came, not by the time it took (under 0.5 s was a loaded runner's).
    open_incident(store, "Telegram", T0 + timedelta(seconds=30), posts=False, series=False)
    plan_notifications(store, cfg, T0 + timedelta(seconds=30))
    before_page: list[int] = []
    receiver.on_post = lambda: before_page.append(_tries(dead))
    try:
        stats = dispatch(store, cfg, T0 + timedelta(seconds=30), worker_id="w")
        assert len(receiver.got) == 2 and before_page == [0]
        assert _tries(dead) == 1  # after the page
    finally:
        dead.close()
    assert (stats.sent, stats.retried) == (1, 1)
    # Back: the mark goes once the server answers, and every email goes once.
    cfg = replace(cfg, smtp=replace(cfg.smtp, port=smtp_server.port))
    dispatch(store, cfg, T0 + timedelta(minutes=5), worker_id="w")
    assert store.alert_state("unreachable:email") == ""
    assert len(smtp_server.inbox.messages) == 2 and store.outbox_listing(["pending", "sending", "failed"]) == []


def test_a_full_listing_of_a_dead_channel_does_not_keep_the_others_waiting(
        store: Store, receiver: Receiver, dead_port: int) -> None:
    # More emails due than one run lists, all before the page: the run lists past them once the server is found
    # down, or the page waited for as long as that many emails stayed due.
    email_only = RouteSettings(name="team", email=("team@example.org",), services=SERVICES)
    pager = RouteSettings(name="oncall", webhooks=("pager",), services=("Instagram",))
    cfg = replace(config(email_only, (PAGER,), dead_port), routes=(email_only, pager))
    for service in SERVICES:
        open_incident(store, service, T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    open_incident(store, "Instagram", T0 + timedelta(seconds=1), posts=False, series=False)
    plan_notifications(store, cfg, T0 + timedelta(seconds=1))
    stats = dispatch(store, cfg, T0 + timedelta(seconds=1), worker_id="w", limit=3)
    assert len(receiver.got) == 1 and (stats.sent, stats.retried, stats.deferred) == (1, 1, 2)


def test_a_row_another_worker_gave_back_does_not_cut_the_run_short(
        store: Store, receiver: Receiver, dead_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Another worker claims a page the run listed and its claim lapses, returned to pending while the run waits on a
    # dead mail server: listed again past it, due still, and left out after the query, it made a full listing look
    # short, so the run stopped after the next dead channel with pages due behind it.
    other = Store.open(tmp_path / "miner.sqlite")
    hanging = socket.socket()
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(4)

    def give_back() -> None:  # once the run is connected to the mail server, which answers nothing
        conn, _ = hanging.accept()
        other.reclaim_stale(T0 - timedelta(minutes=30))
        # Only now may the run go on (the server hangs up, unreachable as a timeout is): the row is pending again
        # before the run looks past the email, where a timeout of 1 s let a loaded runner get there first.
        conn.close()

    threading.Thread(target=give_back, daemon=True).start()
    monkeypatch.setenv("MINER_TEST_CHAT", f"http://127.0.0.1:{dead_port}/hooks/SECRET-TOKEN")
    chat = WebhookSettings(name="chat", url_env="MINER_TEST_CHAT", timeout=TIMEOUT)
    oncall = RouteSettings(name="oncall", webhooks=("pager",), services=("Signal", "Instagram", "Discord", "Skype"))
    team = RouteSettings(name="team", email=("team@example.org",), services=("WhatsApp",))
    chats = RouteSettings(name="chats", webhooks=("chat",), services=("Telegram",))
    cfg = replace(config(oncall, (PAGER, chat), hanging.getsockname()[1]), routes=(oncall, team, chats))
    cfg = replace(cfg, smtp=replace(cfg.smtp, timeout=60.0))
    # Due in this order: a page, the page the other worker takes, the email, the chat message, two more pages.
    for i, service in enumerate(("Signal", "Instagram", "WhatsApp", "Telegram", "Discord", "Skype")):
        open_incident(store, service, T0 + timedelta(seconds=i), posts=False, series=False)
        plan_notifications(store, cfg, T0 + timedelta(seconds=i))
    [taken] = [int(r["id"]) for r in store.outbox_listing(["pending"]) if r["group_key"] == "service:instagram"]
    receiver.on_post = lambda: other.claim_notification(taken, "other", T0 - timedelta(hours=1)) and None
    try:
        stats = dispatch(store, cfg, T0 + timedelta(seconds=5), worker_id="w", limit=3)
    finally:
        other.close()
        hanging.close()
    assert stats.lost_races == 1 and stats.retried == 2
    assert sorted(b["incidents"][0]["service"] for _, b in receiver.got) == ["Discord", "Signal", "Skype"]


def test_a_page_waiting_out_its_retry_through_a_mail_outage_goes_once_the_server_answers_again(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    port = smtp_server.port
    smtp_server.stop()  # refused at each try
    route = RouteSettings(name="oncall", email=("oncall@example.org",))
    cfg = replace(config(route, (), port), retry_base=30.0, retry_max=1800.0)  # the defaults
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    now = T0
    while True:  # the service's alerts job, every 30 s, until the page has failed 6 times (14-22 min, by the jitter)
        if dispatch(store, cfg, now, worker_id="w").retried and store.outbox_listing(["pending"])[0]["attempts"] >= 6:
            break
        now += timedelta(seconds=30)
        assert now < T0 + timedelta(hours=1)
    # Its 6th failure put the next try 8-16 min out: the server back now, the page is not due by its backoff.
    [page] = store.outbox_listing(["pending"])
    assert page["next_attempt_at"] > (now + timedelta(minutes=2)).isoformat()
    # The server back, the first message to reach it is one planned since, then the page that had probed the dead
    # server for a quarter of an hour: due at once, where it waited out that backoff after the new message.
    open_incident(store, "Telegram", now, posts=False, series=False)
    plan_notifications(store, cfg, now)
    smtp_server.start()
    assert dispatch(store, cfg, now, worker_id="w").sent == 1
    assert store.alert_state("unreachable:email") == ""
    assert dispatch(store, cfg, now + timedelta(seconds=30), worker_id="w").sent == 1
    assert store.outbox_listing(["pending", "sending", "failed"]) == []
    assert [m["Message-ID"] for m in smtp_server.inbox.messages][1] == page["message_id"]

"""A stop while a webhook POST hangs before its request has gone out whole: a connect the receiver never completes, or
a TLS handshake it never answers. A real service running the alerts job, a receiver on 127.0.0.1 that stalls so (the
plain socket server of test_alerts_stop_connect), then a real HTTP server on the same port for the next start, a real
store."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import ExitStack, suppress
from datetime import timedelta
from pathlib import Path

import pytest
from fakeserver import FakeServer, Reply
from ports import reserve
from test_alerts_stop import _sent_at_the_next_start, _stopped_in_a_thread
from test_alerts_stop_connect import Stalling
from test_alerts_support import open_incident
from test_service import wait_for

from miner.alerts.channel_settings import WebhookSettings
from miner.alerts.delivery import SendStopped
from miner.alerts.webhook_send import HttpWebhookSender
from miner.config import load_config
from miner.service import JobSpec, Service, ServiceOptions
from miner.store import Store
from miner.store.channel_health import unreachable_key
from miner.timeutil import parse_iso, utcnow

# The webhook's timeout, which bounds its whole request: without the stop's grace, a stop waited for it.
WEBHOOK_TIMEOUT = 300.0
URL_ENV = "MINER_TEST_STOP_WEBHOOK_URL"
PATH = "/hook"


def webhook_service(tmp_path: Path, form: str) -> tuple[Service, Store]:
    """A service running the alerts job alone, every second, sending an alert for one incident opened in its store
    to a webhook of ``form`` ("json" or "pagerduty") at $URL_ENV through WEBHOOK_TIMEOUT (not started); and that
    store, open."""
    key = 'routing_key_env = "MINER_TEST_STOP_PD_KEY"\n' if form == "pagerduty" else ""
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "miner.sqlite"}"\n[[services]]\nname = "Svc0"\n'
                   '[alerts]\ngroup_wait = 0\n'
                   f'[[alerts.webhooks]]\nname = "hook"\nurl_env = "{URL_ENV}"\nformat = "{form}"\n{key}'
                   f'timeout = {WEBHOOK_TIMEOUT}\n'
                   '[[alerts.routes]]\nname = "oncall"\nwebhooks = ["hook"]\n', encoding="utf-8")
    store = Store.open(tmp_path / "miner.sqlite")
    open_incident(store, "Svc0", utcnow() - timedelta(minutes=2), posts=False, series=False)
    return Service(load_config(cfg), tmp_path / "miner.sqlite", ServiceOptions(
        jobs=(JobSpec("alerts", 1.0),), http=False)), store


@pytest.fixture
def stalled_post(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
                 ) -> Iterator[tuple[Service, Store, FakeServer, Stalling]]:
    """A service whose first webhook message is being POSTed to a receiver stalling at ``request.param``'s step
    ("connect", or "ssl": an https URL whose handshake is never answered) in its format, and the HTTP server (not
    started) to start on its port once the stall is closed."""
    step, form = request.param
    monkeypatch.setenv("MINER_TEST_STOP_PD_KEY", "R0UT1NGKEYR0UT1NGKEYR0UT1NGKEY42")
    with ExitStack() as stack:
        port = stack.enter_context(reserve()).getsockname()[1]
        stall = Stalling(step, port)
        stack.callback(stall.close)
        receiver = FakeServer(port=port)
        receiver.serve(PATH, Reply(202, b'{"status": "success"}', content_type="application/json"))
        stack.callback(receiver.stop)
        scheme = "https" if step == "ssl" else "http"
        monkeypatch.setenv(URL_ENV, f"{scheme}://127.0.0.1:{port}{PATH}")
        service, store = webhook_service(tmp_path, form)
        stack.callback(store.close)
        service.start()
        stack.callback(service.stop)
        stack.callback(stall.close)  # first: a stop the test found waiting ends once the receiver lets go
        wait_for(lambda: bool(store.outbox_listing(["sending"])), timeout=120)
        if step != "connect":
            assert stall.stalled.wait(120), "the handshake was not begun"
        # The next start's receiver speaks plain HTTP: what is tested is the stall, not TLS.
        monkeypatch.setenv(URL_ENV, f"http://127.0.0.1:{port}{PATH}")
        yield service, store, receiver, stall


@pytest.mark.parametrize("stalled_post", [("connect", "json"), ("ssl", "json"), ("ssl", "pagerduty")],
                         indirect=True)
def test_a_stop_cuts_a_post_not_gone_out_whole_and_the_next_start_sends_it_once(
        stalled_post: tuple[Service, Store, FakeServer, Stalling]) -> None:
    # A webhook POST in flight held the stop for the webhook's whole timeout (a connect that hung, a TLS handshake
    # never answered), as an email's session did before smtp_session's cut: past systemd's TimeoutStopSec, whose
    # SIGKILL left the message claimed until its lease lapsed. Nothing of it had reached the receiver: cut safely.
    service, store, receiver, stall = stalled_post
    stopping = _stopped_in_a_thread(service)
    stopping.join(timeout=WEBHOOK_TIMEOUT / 3)
    assert not stopping.is_alive(), "the stop waited for the stalled receiver"
    # Released, due at once, and not counted as an attempt: the stop cut it, not a failure of the message's.
    [row] = store.outbox_listing(["pending"])
    assert row["claimed_by"] is None and row["attempts"] == 0 and parse_iso(row["next_attempt_at"]) <= utcnow()
    [attempt] = store.deliveries(row["id"])
    assert attempt["outcome"] == "retry" and "asked to stop" in attempt["detail"], attempt
    assert "sent again at the next start" in attempt["detail"], attempt
    assert not store.alert_state(unreachable_key("webhook:hook"))  # the stop cut it, not the receiver
    stall.close()
    receiver.start()
    _sent_at_the_next_start(service, store)
    [received] = receiver.requests_to(PATH)
    body = json.loads(received.body)
    if "dedup_key" in body:  # PagerDuty's event: its dedup_key names the message's incident, stable across retries
        assert body["event_action"] == "trigger"
    else:
        assert body["id"] == row["message_id"]  # what a receiver dedupes on
    assert store.outbox_listing(["sent"])[0]["id"] == row["id"]


def test_a_stop_cuts_a_post_whose_body_a_slow_receiver_has_not_read_whole() -> None:
    # The body's last bytes still waiting on a receiver that reads slowly (here: not at all, past its first bytes)
    # held the stop for the whole timeout. The receiver never gets the end of it, so it cannot have taken it.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    accepted: list[socket.socket] = []
    began = threading.Event()

    def receive() -> None:
        conn, _ = listener.accept()
        accepted.append(conn)
        conn.recv(1024)
        began.set()

    threading.Thread(target=receive, daemon=True).start()
    stop = threading.Event()
    threading.Thread(target=lambda: began.wait(120) and stop.set(), daemon=True).start()
    # More than loopback's socket buffers take (a few MB each way): the body cannot all be handed to the kernel.
    body = {"text": "x" * 40_000_000}
    sender = HttpWebhookSender({URL_ENV: f"http://127.0.0.1:{listener.getsockname()[1]}{PATH}"}, stop=stop)
    try:
        with pytest.raises(SendStopped, match=r"asked to stop.*sent again at the next start"):
            sender(WebhookSettings(name="hook", url_env=URL_ENV, timeout=WEBHOOK_TIMEOUT), body)
        [conn] = accepted
        got = 1024
        with suppress(ConnectionResetError):  # the cut may reset the connection rather than end it
            while chunk := conn.recv(1 << 20):  # what reached the receiver, to the cut connection's end
                got += len(chunk)
        assert got < len(json.dumps(body)), "the whole request had gone out"
    finally:
        for sock in [listener, *accepted]:
            sock.close()

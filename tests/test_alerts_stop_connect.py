"""A stop while an email's session hangs before its first SMTP reply: a connect the server never completes, or a TLS
handshake (implicit TLS, STARTTLS) it never answers. A real service running the alerts job, a server on 127.0.0.1
that stalls so (a plain socket server), then a real aiosmtpd server on the same port for the next start, a real
store."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import ExitStack, suppress
from pathlib import Path

import pytest
from ports import reserve
from smtp_server import TEST_CERT, SmtpServer
from test_alerts_stop import SMTP_TIMEOUT, _sent_at_the_next_start, _stopped_in_a_thread
from test_service import wait_for
from test_service_notify import alerting_service

from miner.config import load_config
from miner.service import Service, ServiceOptions
from miner.store import Store
from miner.store.channel_health import unreachable_key
from miner.timeutil import parse_iso, utcnow


class Stalling:
    """Listens on ``port`` (held by :func:`ports.reserve`) and stalls an SMTP client at ``step``: "connect" (a
    backlog of 0 filled by connections never accepted: the client's SYN goes unanswered), "ssl" (the client's TLS
    handshake is read and never answered) or "starttls" (greeted, STARTTLS offered and taken, then as "ssl"); or, as
    an HTTP proxy, "tunnel" (a CONNECT answered 200, then as "ssl").
    ``stalled`` is set once a client's handshake waits on it (not for "connect", which no server sees)."""

    def __init__(self, step: str, port: int) -> None:
        self.step = step
        self.stalled = threading.Event()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(0)
        self.held: list[socket.socket] = []
        if step == "connect":
            for _ in range(3):  # more than the queue takes (backlog + 1 on Linux): SYNs after them are dropped
                filler = socket.socket()
                filler.setblocking(False)
                with suppress(BlockingIOError):
                    filler.connect(("127.0.0.1", port))
                self.held.append(filler)
        else:
            threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with suppress(OSError):
            while True:
                conn, _ = self.listener.accept()
                self.held.append(conn)
                if self.step == "starttls":
                    lines = conn.makefile("rb")
                    conn.sendall(b"220 127.0.0.1 ESMTP\r\n")
                    lines.readline()  # EHLO
                    conn.sendall(b"250-127.0.0.1\r\n250 STARTTLS\r\n")
                    lines.readline()  # STARTTLS
                    conn.sendall(b"220 go ahead\r\n")
                if self.step == "tunnel":
                    head = b""
                    while b"\r\n\r\n" not in head and (chunk := conn.recv(4096)):
                        head += chunk
                    if not head.startswith(b"CONNECT "):
                        continue
                    conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                if conn.recv(1):  # the ClientHello: never answered
                    self.stalled.set()

    def close(self) -> None:
        for sock in [self.listener, *self.held]:
            # Shut first: closed alone, the listener stayed listening while _serve's accept held it, and the port
            # was taken still for the server started on it next.
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


@pytest.fixture
def stalled_session(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Service, Store, SmtpServer,
                                                                                       Stalling]]:
    """A service (smtp.timeout SMTP_TIMEOUT) whose first message is being sent to a server stalling at
    ``request.param``'s step, and the aiosmtpd server (not started) to start on its port once the stall is closed."""
    step = str(request.param)
    with ExitStack() as stack:
        port = stack.enter_context(reserve()).getsockname()[1]
        stall = Stalling(step, port)
        stack.callback(stall.close)
        smtp = SmtpServer(tls=None if step == "connect" else step, folder=tmp_path)
        smtp.port = port
        stack.callback(smtp.stop)
        plain, store = alerting_service(tmp_path, smtp, 1, smtp_timeout=SMTP_TIMEOUT)
        stack.callback(store.close)
        cfg = tmp_path / "feeds.toml"
        if step != "connect":
            (tmp_path / "cert.pem").write_text(TEST_CERT, encoding="utf-8")
            cfg.write_text(cfg.read_text(encoding="utf-8").replace(
                'security = "none"', f'security = "{step}"\nca_file = "{tmp_path / "cert.pem"}"'), encoding="utf-8")
        service = Service(load_config(cfg), plain.db_path, ServiceOptions(jobs=plain.options.jobs, http=False))
        service.start()
        stack.callback(service.stop)
        stack.callback(stall.close)  # first: a stop the test found waiting ends once the server lets go
        wait_for(lambda: bool(store.outbox_listing(["sending"])), timeout=120)
        if step != "connect":
            assert stall.stalled.wait(120), "the handshake was not begun"
        yield service, store, smtp, stall


@pytest.mark.parametrize("stalled_session", ["connect", "ssl", "starttls"], indirect=True)
def test_a_stop_cuts_a_session_stalled_before_its_first_reply_and_the_next_start_sends_it_once(
        stalled_session: tuple[Service, Store, SmtpServer, Stalling]) -> None:
    # The stop's cut shut the session's socket, which smtplib sets only once connected, and replaces with the TLS one
    # only once the handshake ends: a connect that hung, or a handshake that stalled (implicit TLS, or STARTTLS, the
    # default security), held the stop for the whole smtp.timeout, past systemd's TimeoutStopSec, whose SIGKILL left
    # the message claimed until its lease lapsed.
    service, store, smtp, stall = stalled_session
    stopping = _stopped_in_a_thread(service)
    stopping.join(timeout=SMTP_TIMEOUT / 3)
    assert not stopping.is_alive(), "the stop waited for the stalled server"
    # Released, due at once, and not counted as an attempt: the stop cut it, not a failure of the message's.
    [row] = store.outbox_listing(["pending"])
    assert row["claimed_by"] is None and row["attempts"] == 0 and parse_iso(row["next_attempt_at"]) <= utcnow()
    [attempt] = store.deliveries(row["id"])
    assert attempt["outcome"] == "retry" and "asked to stop: sent again at the next start" in attempt["detail"]
    assert not store.alert_state(unreachable_key("email"))
    stall.close()
    smtp.start()
    _sent_at_the_next_start(service, store)
    assert smtp.inbox.message_ids() == [row["message_id"]]
    assert store.outbox_listing(["sent"])[0]["id"] == row["id"]

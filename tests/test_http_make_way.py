"""At the connection cap, a newcomer takes the place of a connection still sending its request (miner.http_conns):
never of one whose answer is going out while the client takes it (test_http_slow_readers), nor with the report it
sent stored unanswered. Real loopback servers, the report through the real service into its SQLite store; each
handler is held at the instant a newcomer comes."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from test_http_api import _read_all, _wait_until, status_of
from test_report_counting import service  # noqa: F401  (fixture)

from miner import http_api, http_conns
from miner.http_api import Endpoints, HttpApi
from miner.service import Service

MAKE_WAY_AFTER = 0.2
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
REPORT = json.dumps({"service": "MTN", "symptom": "calls"}).encode()


class Hold:
    """Holds the first handler to call ``_Handler.NAME`` there (before it, or after it with ``after``), until a
    newcomer has come at the cap: the instant a reviewer asked about, made to last."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str, *, after: bool = False) -> None:
        self.reached, self.go = threading.Event(), threading.Event()
        self.idle: socket.socket | None = None
        original: Callable[..., Any] = getattr(http_api._Handler, name)

        def held(handler: http_api._Handler, *args: Any) -> Any:
            if not after:
                self._wait()
            result = original(handler, *args)
            if after:
                self._wait()
            return result

        monkeypatch.setattr(http_api._Handler, name, held)

    def _wait(self) -> None:
        if not self.reached.is_set():
            self.reached.set()
            self.go.wait(30)

    def newcomer(self, server: HttpApi) -> None:
        """With the held connection and a second one (``idle``, which sends nothing) at the cap (2) for
        MAKE_WAY_AFTER, a third one asks for /healthz, answered in the place of one of them; then the held handler
        goes on."""
        assert self.reached.wait(30), "the handler never got there"
        self.idle = socket.create_connection(server.address, timeout=30)
        _wait_until(lambda: server._server.connections._open == 2, "both connections are taken")
        time.sleep(MAKE_WAY_AFTER + 0.1)
        with socket.create_connection(server.address, timeout=30) as sock:
            sock.sendall(HEALTHZ)
            assert status_of(_read_all(sock)) == 200
        self.go.set()

    def close(self) -> None:
        self.go.set()
        if self.idle is not None:
            self.idle.close()


@pytest.fixture
def cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_api, "MAX_CONNECTIONS", 2)
    monkeypatch.setattr(http_api, "PROBE_CONNECTIONS", 0)  # the cap counts the probes too
    monkeypatch.setattr(http_conns, "MAKE_WAY_AFTER", MAKE_WAY_AFTER)


def _posts(svc: Service) -> int:
    return int(svc._store("test").database.rows("SELECT COUNT(*) AS n FROM posts")[0]["n"])


def test_a_report_shut_for_a_newcomer_once_its_body_is_read_is_not_stored(
        cap: None, monkeypatch: pytest.MonkeyPatch, service: tuple[Service, str, list[datetime]]) -> None:  # noqa: F811
    # Shut between its body being read and its connection marked received: stored, with its 202 lost, so the client
    # retried and the one report counted twice.
    svc, _, _ = service
    assert svc._http is not None
    server = svc._http
    hold = Hold(monkeypatch, "_read_body", after=True)
    head = f"POST /report HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(REPORT)}\r\n"
    with socket.create_connection(server.address, timeout=30) as sock:
        sock.sendall(head.encode() + b"\r\n" + REPORT)
        try:
            hold.newcomer(server)
            assert _read_all(sock) == b""  # closed unanswered, as the oldest of those sending their request
        finally:
            hold.close()
    _wait_until(lambda: server._server.connections._open == 0, "the connections are closed")
    assert _posts(svc) == 0
    with socket.create_connection(server.address, timeout=30) as sock:  # the client's retry: the one report stored
        sock.sendall(head.encode() + b"\r\n" + REPORT)
        assert status_of(_read_all(sock)) == 202
    assert _posts(svc) == 1


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"POST /report HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\r\n", 411),
    (b"POST /report HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n", 413),
    (b"POST /report HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n", 415),
    (b"POST /api/v1/services HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n", 405),
    (b"POST /elsewhere HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n", 404),
])
def test_a_post_refused_before_its_body_is_read_keeps_its_answer(
        cap: None, monkeypatch: pytest.MonkeyPatch, request_bytes: bytes, status: int) -> None:
    # Never marked received, a refused POST was still one "sending its request": shut for a newcomer while its
    # answer went out, the client got none, where the newcomer took the place of a connection that had sent nothing.
    monkeypatch.setattr(http_api, "READ_TIMEOUT", 30.0)
    monkeypatch.setattr(http_api._Handler, "timeout", 30.0)
    server = HttpApi("127.0.0.1", 0, Endpoints(lambda: (True, {"status": "ok"}), lambda: "m 1\n",
                                               lambda payload, client: {}, read=lambda path, query: None))
    server.start()
    hold = Hold(monkeypatch, "send_response")
    try:
        with socket.create_connection(server.address, timeout=30) as sock:
            sock.sendall(request_bytes)
            hold.newcomer(server)
            assert _read_all(sock).startswith(b"HTTP/1.0 %d " % status)  # not b"": shut, unanswered
        assert hold.idle is not None and _read_all(hold.idle) == b""  # the one that had sent nothing made way
    finally:
        hold.close()
        server.stop()

"""A graceful stop (SIGTERM, or a reload's SIGHUP: an in-process restart) while the HTTP endpoint is answering: a real
service on a real store, its endpoint on 127.0.0.1, a slow client and many requests at once in flight as it stops."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from test_service import write_config

from miner.service import JobSpec, Service, ServiceOptions
from miner.store import Store


def _http_service(tmp_path: Path) -> tuple[Service, tuple[str, int]]:
    from miner.config import load_config

    service = Service(load_config(write_config(tmp_path, "http://127.0.0.1:9/feed.rss")), tmp_path / "miner.sqlite",
                      ServiceOptions(jobs=(JobSpec("retention", 3600.0),), http=True, http_port=0))
    service.start()
    assert service._http is not None
    return service, service._http.address


def _reply(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _wait_for(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


def _handling(service: Service, n: int) -> Callable[[], bool]:
    """Whether the endpoint took ``n`` connections, each now on its handler thread: before that, a client's
    connection is still in the listen backlog, and a stop would close it unanswered."""
    assert service._http is not None
    connections = service._http._server.connections
    return lambda: connections._open == n


def _stored_reports(db: Path) -> int:
    store = Store.open(db)
    try:
        return int(store.database.rows("SELECT count(*) AS n FROM posts")[0]["n"])
    finally:
        store.close()


def test_a_stop_answers_a_report_still_being_sent_before_it_closes_the_store(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # The handler threads are daemons, which socketserver's server_close does not join: stop() closed the store
    # connections and released the store lock while a report was still arriving, and the handler then opened a
    # connection of its own that nobody closed and stored the report after the service had stopped (after a
    # reload's SIGHUP, beside the new service).
    from miner import http_api

    # The body's deadline (5 s) far off, so that however slow the machine the handler is still waiting for the
    # body when the test sends it, not answering 408.
    monkeypatch.setattr(http_api, "READ_TIMEOUT", 120.0)
    service, (host, port) = _http_service(tmp_path)
    http = service._http
    assert http is not None
    body = json.dumps({"service": "MTN", "text": "no signal since the morning"}).encode()
    slow = socket.create_connection((host, port), timeout=60)
    stopper = threading.Thread(target=service.stop)
    try:
        slow.sendall(b"POST /report HTTP/1.1\r\nHost: miner\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body[:10])
        _wait_for(_handling(service, 1), "the endpoint took the connection")  # its handler reads the body
        stopper.start()
        # The endpoint stopped accepting; a stop that did not wait for the request would return within moments.
        _wait_for(lambda: not http._thread.is_alive(), "the endpoint stopped accepting")
        stopper.join(timeout=1.0)
        waited = stopper.is_alive()
        slow.sendall(body[10:])
        reply = _reply(slow)
        stopper.join(timeout=60)
    finally:
        slow.close()
        if stopper.ident is not None:  # started
            stopper.join(timeout=60)
    assert waited, "stop() returned while a request was still being answered"
    assert not stopper.is_alive(), "stop() did not return once the request was answered"
    assert reply.startswith(b"HTTP/1.0 202 "), reply
    assert service._stores.open == {}  # every connection closed, none opened after
    assert _stored_reports(tmp_path / "miner.sqlite") == 1


def test_requests_in_flight_as_the_service_stops_are_answered_not_failed(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Requests answered while stop() closed the store connections under them: a 500, or an error on their thread.
    service, (host, port) = _http_service(tmp_path)
    base = f"http://{host}:{port}"
    paths = ["/api/v1/services", "/api/v1/incidents", "/api/v1/services/MTN/series", "/", "/services/MTN",
             "/metrics", "/report"]
    statuses: list[tuple[str, int]] = []
    errors: list[BaseException] = []
    go = threading.Event()

    def ask(path: str) -> None:
        with httpx.Client(timeout=30, headers={"Connection": "close"}) as client:
            go.wait()
            for _ in range(200):
                try:
                    if path == "/report":
                        reply = client.post(base + path, json={"service": "MTN", "text": "down"})
                    else:
                        reply = client.get(base + path)
                except httpx.TransportError:
                    return  # turned away once the endpoint stopped accepting: what a stopped service does
                statuses.append((path, reply.status_code))

    hook = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_value or RuntimeError("thread failed"))
    try:
        with caplog.at_level(logging.ERROR):
            askers = [threading.Thread(target=ask, args=(path,)) for path in paths * 3]
            for asker in askers:
                asker.start()
            go.set()
            # Stop once requests are being answered, however slow the machine: a fixed sleep left too few on a
            # loaded CI runner.
            deadline = time.monotonic() + 60
            while len(statuses) <= 20 and time.monotonic() < deadline:
                time.sleep(0.05)
            service.stop()
            for asker in askers:
                asker.join(timeout=60)
            # Every asker ended while its errors are still caught, and added all its statuses to those checked below.
            assert not [asker for asker in askers if asker.is_alive()], "a request outlasted the stop by a minute"
    finally:
        threading.excepthook = hook
    assert len(statuses) > 20
    failed = sorted({(path, status) for path, status in statuses if status >= 500 and status != 503})
    assert failed == [], failed
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert errors == []
    assert service._stores.open == {}


def test_a_stop_waits_for_a_stalled_client_only_so_long(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    from miner import http_api

    monkeypatch.setattr(http_api, "STOP_WAIT", 0.5)
    # The stalled body's own deadline (5 s) well past the bound below, which a stop waiting for the client until
    # then would exceed however fast the machine; a stop that gives up after STOP_WAIT is well within it, however
    # slow the machine.
    monkeypatch.setattr(http_api, "READ_TIMEOUT", 20.0)
    service, (host, port) = _http_service(tmp_path)
    stalled = socket.create_connection((host, port), timeout=60)
    try:
        stalled.sendall(b"POST /report HTTP/1.1\r\nHost: miner\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 100\r\n\r\n{")
        _wait_for(_handling(service, 1), "the endpoint took the connection")
        started = time.monotonic()
        with caplog.at_level(logging.WARNING):
            service.stop()
        assert time.monotonic() - started < 12.0
        assert "http: 1 request still being answered 0.5 s into the stop; stopping without them" in caplog.text
        assert _reply(stalled).startswith(b"HTTP/1.0 408 ")  # its own deadline ends it, with no store
    finally:
        stalled.close()

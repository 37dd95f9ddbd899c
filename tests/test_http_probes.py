"""The probes' own connections (http_conns.PROBE_CONNECTIONS): the real service on a loopback socket, its store a
real SQLite file, with every connection its board readers and reporters may hold taken, still answers /healthz,
/livez, /readyz and /metrics, and a probe's slow head cannot keep another probe out."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_http_api import _read_all, _wait_until, status_of
from test_http_hosts import serving

from miner import http_api, http_cache, http_conns, read_api, report_intake
from miner.service import Service

REPORT = json.dumps({"service": "MTN", "symptom": "calls"}).encode()
PROBES = ("/healthz", "/livez", "/readyz", "/metrics")


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    # The held requests wait on however slow the machine (they would give up after 5 s, or 30 s following a read).
    monkeypatch.setattr(read_api, "READ_WAIT", 120.0)
    monkeypatch.setattr(http_cache, "FOLLOW_WAIT", 120.0)
    monkeypatch.setattr(report_intake, "REPORT_WAIT", 120.0)
    monkeypatch.setattr(http_conns, "MAKE_WAY_AFTER", 0.2)
    with serving(tmp_path, []) as svc:
        yield svc


def _full(queue: threading.BoundedSemaphore) -> bool:
    if queue.acquire(blocking=False):
        queue.release()
        return False
    return True


def _ask(svc: Service, request: bytes) -> bytes:
    assert svc._http is not None
    with socket.create_connection(svc._http.address, timeout=30) as sock:
        sock.sendall(request)
        return _read_all(sock)


def test_probes_are_answered_while_board_readers_and_reporters_hold_every_other_connection(service: Service) -> None:
    # A slow read of the board's index (300 services) with 40 clients reloading it holds 24 connections (8 reading
    # or waiting their turn, 16 waiting for that read), and reports held up by a store another process locked hold 8
    # more: the cap's 32. Every probe was then answered 503 "too many connections", and an orchestrator restarted a
    # service that was well.
    svc = service
    assert svc._http is not None
    server = svc._http._server
    held: list[socket.socket] = []
    svc.read_api._lock.acquire()  # the read under way, which takes its time
    svc._reports.lock.acquire()  # the report being stored, its store locked by another writer
    try:
        for n in range(24):
            held.append(socket.create_connection(svc._http.address, timeout=60))
            held[-1].sendall(f"GET /?n={n} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        for _ in range(report_intake.REPORT_QUEUE):
            held.append(socket.create_connection(svc._http.address, timeout=60))
            held[-1].sendall(b"POST /report HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(REPORT), REPORT))
        _wait_until(lambda: server.answers._following == http_cache.MAX_FOLLOWING and _full(svc.read_api._queue)
                    and _full(svc._reports._queue), "every board reader and reporter is waiting")
        assert server.connections._open == http_api.MAX_CONNECTIONS
        for path in PROBES:
            assert status_of(_ask(svc, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())) == 200, path
        assert status_of(_ask(svc, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")) == 200
        # Another page is turned away as before, at once, to retry in a second: at accept if its request line is in
        # by then, else once it is read.
        late = socket.create_connection(svc._http.address, timeout=60)
        _wait_until(lambda: server.connections._open == http_api.MAX_CONNECTIONS + 1, "taken before it asks")
        late.sendall(b"GET /api/v1/services HTTP/1.1\r\nHost: x\r\n\r\n")
        for reply in (_read_all(late), _ask(svc, b"GET /api/v1/services HTTP/1.1\r\nHost: x\r\n\r\n")):
            assert status_of(reply) == 503 and b"\r\nRetry-After: 1\r\n" in reply
            assert json.loads(reply.split(b"\r\n\r\n", 1)[1]) == {"error": "too many connections; retry soon"}
        late.close()
        _wait_until(lambda: server.connections._open == http_api.MAX_CONNECTIONS, "the refused ones closed")
        # Connections that send nothing (a slowloris, or heads of probes that never end) take every connection left:
        # each makes way for a probe once it has been sending its request for MAKE_WAY_AFTER, as any connection does.
        idle = []
        for n in range(http_conns.PROBE_CONNECTIONS):
            idle.append(socket.create_connection(svc._http.address, timeout=60))
            _wait_until(lambda n=n: server.connections._open == http_api.MAX_CONNECTIONS + n + 1, "taken")
        time.sleep(http_conns.MAKE_WAY_AFTER + 0.1)
        for _ in range(http_conns.PROBE_CONNECTIONS):
            assert status_of(_ask(svc, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")) == 200
        held.extend(idle)
    finally:
        svc.read_api._lock.release()
        svc._reports.lock.release()
    statuses = [status_of(_read_all(sock)) for sock in held[:24 + report_intake.REPORT_QUEUE]]
    for sock in held:
        sock.close()
    assert statuses == [200] * 24 + [202] * report_intake.REPORT_QUEUE  # those held were answered all the same


@pytest.mark.parametrize(("sent", "path"), [
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", "/healthz"), (b"POST /report?x=1 HTTP/1.1\r\n", "/report"),
    (b"\r\nGET //metrics HTTP/1.0\r\n", "/metrics"), (b"GET / HTTP/1.1", "/"),
    (b"GET /heal", None), (b"", None), (b"GET http://x/healthz HTTP/1.1\r\n", None), (b"\x16\x03\x01", None),
])
@pytest.mark.parametrize("timeout", [None, 30.0])
def test_the_path_a_new_connection_has_sent_is_read_without_waiting_and_left_for_its_handler(
        sent: bytes, path: str | None, timeout: float | None) -> None:
    # Read from the accepting thread: it must not wait for a client that has sent nothing yet.
    with socket.create_server(("127.0.0.1", 0)) as listener, \
            socket.create_connection(listener.getsockname(), timeout=30) as client:
        client.sendall(sent)
        conn, _ = listener.accept()
        # Had it waited, a request comes after 10 s, and it would read its path.
        later = threading.Timer(10.0, client.sendall, [b"GET /late HTTP/1.1\r\n\r\n"])
        later.start()
        with conn:
            conn.settimeout(timeout)
            if sent:
                assert select.select([conn], [], [], 30)[0], "sent on loopback"
            assert http_conns.sent_path(conn) == path
            later.cancel()
            assert conn.gettimeout() == timeout
            assert not sent or conn.recv(1000) == sent  # left there for the handler

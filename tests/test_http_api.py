"""The service's HTTP endpoint on a real 127.0.0.1 socket, spoken to byte by byte: what it refuses before reading
a body, and how long a slow or lying client can hold it."""

from __future__ import annotations

import contextlib
import http.server
import json
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from miner import http_api, http_conns
from miner.http_api import Endpoints, HttpApi
from miner.http_conns import OpenConnections

TIMEOUT = 0.5  # the server's read timeout here, so a test of it takes half a second
# The read timeout in the tests that a reply must not wait for it: far past their bounds, however slow the machine.
LONG_TIMEOUT = 60.0
# Tests bound the time of an answer due at TIMEOUT by this much more: far above the answer's time on a loaded
# machine. A server without the deadline holds the connection until exchange() gives up, after 30 s.
SLACK = 10.0
release_metrics = threading.Event()  # /metrics waits for it, so a test can hang up before the reply
metrics_asked = threading.Event()  # set once a handler asked for the metrics


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[HttpApi, list[object]]]:
    monkeypatch.setattr(http_api, "READ_TIMEOUT", TIMEOUT)
    monkeypatch.setattr(http_api._Handler, "timeout", TIMEOUT)
    reports: list[object] = []
    release_metrics.set()

    def report(payload: object, client: str) -> dict[str, Any]:
        reports.append(payload)
        return {"accepted": True}

    def metrics() -> str:
        metrics_asked.set()
        release_metrics.wait(60)
        return "m 1\n" * 200_000  # more than the socket buffers hold, so writing it needs a live client

    server = HttpApi("127.0.0.1", 0, Endpoints(lambda: (True, {"status": "ok"}), metrics, report))
    server.start()
    yield server, reports
    server.stop()


def exchange(server: HttpApi, data: bytes, *, close_write: bool = False, wait: float = 30.0) -> bytes:
    """Send ``data`` (keeping the connection open unless ``close_write``) and return all the server sends
    before it closes; fails if that takes longer than ``wait``."""
    with socket.create_connection(server.address, timeout=wait) as sock:
        sock.sendall(data)
        if close_write:
            sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
        return reply


def long_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give the connections made from now on LONG_TIMEOUT to send their request line, headers and body."""
    monkeypatch.setattr(http_api, "READ_TIMEOUT", LONG_TIMEOUT)
    monkeypatch.setattr(http_api._Handler, "timeout", LONG_TIMEOUT)


def status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


def post(length: str | None, body: bytes = b"", ctype: str = "application/json") -> bytes:
    head = f"POST /report HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
    if length is not None:
        head += f"Content-Length: {length}\r\n"
    return head.encode() + b"\r\n" + body


def test_a_valid_report_is_read_to_its_content_length(api: tuple[HttpApi, list[object]]) -> None:
    server, reports = api
    body = json.dumps({"service": "MTN"}).encode()
    # Bytes past Content-Length are not part of the body.
    reply = exchange(server, post(str(len(body)), body + b"garbage"))
    assert status_of(reply) == 202
    assert reports == [{"service": "MTN"}]
    # Leading zeros are the same number, as many as the header's line takes (more digits than int() reads).
    assert status_of(exchange(server, post("0" * 5000 + str(len(body)), body))) == 202


@pytest.mark.parametrize(("length", "status"), [
    (None, 411), ("-1", 400), ("+5", 400), ("1_0", 400), ("٣", 400), ("abc", 400), ("", 400),
    (str(http_api.MAX_BODY + 1), 413), ("99999999999999999999", 413),
    ("9" * 5000, 413),  # more digits than int() takes: a 500
])
def test_a_bad_content_length_is_refused_before_the_body_is_read(api: tuple[HttpApi, list[object]],
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  length: str | None, status: int) -> None:
    server, reports = api
    long_timeouts(monkeypatch)
    started = time.monotonic()
    # The connection stays open and a body keeps coming: the reply must not wait for it.
    reply = exchange(server, post(length, b" " * 1000))
    assert status_of(reply) == status
    assert "error" in json.loads(reply.split(b"\r\n\r\n", 1)[1])
    assert time.monotonic() - started < SLACK
    assert reports == []


def test_two_different_content_lengths_and_chunked_bodies_are_refused(api: tuple[HttpApi, list[object]]) -> None:
    server, _ = api
    twice = (b"POST /report HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
             b"Content-Length: 4\r\n")
    assert status_of(exchange(server, twice + b"\r\n{}{}")) == 400
    chunked = b"POST /report HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
    assert status_of(exchange(server, chunked + b"\r\n2\r\n{}\r\n0\r\n\r\n")) == 411


def test_a_body_shorter_than_its_content_length_times_out(api: tuple[HttpApi, list[object]]) -> None:
    server, reports = api
    started = time.monotonic()
    reply = exchange(server, post("100", b'{"service": '))
    assert status_of(reply) == 408
    assert TIMEOUT <= time.monotonic() - started < TIMEOUT + SLACK
    # A client that trickles a byte at a time gets no longer: the deadline covers the whole body. (A deadline
    # for each read would let it trickle all of its 4000 bytes, for 400 s.)
    with socket.create_connection(server.address, timeout=30) as sock:
        sock.sendall(post("4000"))
        started = time.monotonic()
        while time.monotonic() - started < TIMEOUT + 3 * SLACK:
            try:
                sock.sendall(b" ")
            except OSError:  # reset: the server replied 408 and closed
                break
            time.sleep(TIMEOUT / 5)
        assert time.monotonic() - started < TIMEOUT + SLACK
    # Closed early: refused at once as incomplete.
    assert status_of(exchange(server, post("100", b"{}"), close_write=True)) == 400
    assert reports == []


def test_a_stalled_request_line_is_dropped(api: tuple[HttpApi, list[object]]) -> None:
    server, _ = api
    started = time.monotonic()
    assert exchange(server, b"GET /heal") == b""  # the stdlib handler closes it on the socket timeout
    assert TIMEOUT <= time.monotonic() - started < TIMEOUT + SLACK


def test_headers_trickled_a_line_at_a_time_are_dropped_at_the_deadline(api: tuple[HttpApi, list[object]]) -> None:
    # Each line comes well within the socket timeout, which bounds single reads only: the deadline is for all
    # of the request line and headers.
    server, _ = api
    started = time.monotonic()  # before the connection, which starts the server's deadline
    with socket.create_connection(server.address, timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        reply = b""
        while time.monotonic() - started < TIMEOUT + 3 * SLACK:
            try:
                sock.sendall(b"X-Slow: 1\r\n")
                sock.settimeout(TIMEOUT / 5)
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk  # kept: a late answer (the stdlib's 431 at its 100th header, say) fails below
            except TimeoutError:
                continue
            except OSError:  # reset: closed with our bytes unread
                break
        assert TIMEOUT <= time.monotonic() - started < TIMEOUT + SLACK
        assert reply == b""  # dropped like a stalled request, not answered late


def _wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


def test_connections_beyond_the_cap_are_turned_away_at_once_when_all_are_being_answered(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(http_api, "MAX_CONNECTIONS", 2)
    monkeypatch.setattr(http_api, "PROBE_CONNECTIONS", 0)  # the cap counts the probes too
    long_timeouts(monkeypatch)  # the held connections keep their threads however slow the test
    release, asked = threading.Event(), []

    def metrics() -> str:
        asked.append(1)
        release.wait(60)
        return "m 1\n"

    server = HttpApi("127.0.0.1", 0, Endpoints(lambda: (True, {"status": "ok"}), metrics, lambda *a: {}))
    server.start()
    held = [socket.create_connection(server.address, timeout=30) for _ in range(2)]  # each holds a thread
    try:
        for sock in held:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        _wait_until(lambda: len(asked) == 2, "both requests are being answered")
        assert server._server.connections._open == 2  # both taken: the next is the one too many
        started = time.monotonic()
        reply = exchange(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert time.monotonic() - started < SLACK  # not after a held connection's deadline (LONG_TIMEOUT)
        assert status_of(reply) == 503 and b"Retry-After: 1" in reply
        assert b"\r\nX-Content-Type-Options: nosniff\r\n" in reply
        assert b"\r\nCache-Control: no-store\r\n" in reply  # as every answer of the endpoint (docs/api.md)
        assert b"\r\nServer: miner\r\n" in reply
        assert json.loads(reply.split(b"\r\n\r\n", 1)[1]) == {"error": "too many connections; retry soon"}
        assert sum("turning new ones away" in r.getMessage() for r in caplog.records) == 1
        release.set()  # both answered, each freeing its thread
        for sock in held:
            assert status_of(_read_all(sock)) == 200
        _wait_until(lambda: server._server.connections._open == 0, "both connections are closed")
        assert status_of(exchange(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")) == 200
    finally:
        release.set()
        for sock in held:
            sock.close()
        server.stop()


def _read_all(sock: socket.socket) -> bytes:
    reply = b""
    while chunk := sock.recv(65536):
        reply += chunk
    return reply


@pytest.mark.parametrize("partial", [
    b"GET /heal",  # the request line
    b"GET /healthz HTTP/1.1\r\nX-Slow: ",  # the headers
    post("100", b'{"service": '),  # a report's body
])
def test_at_the_cap_the_connection_sending_its_request_the_longest_makes_way(
        monkeypatch: pytest.MonkeyPatch, partial: bytes) -> None:
    # Connections that had not sent their request held the cap until their deadline, and a client renewing them
    # kept every other one out (/healthz too) for as long as it liked: 32 idle sockets were enough.
    monkeypatch.setattr(http_api, "MAX_CONNECTIONS", 2)
    monkeypatch.setattr(http_api, "PROBE_CONNECTIONS", 0)  # the cap counts the probes too
    monkeypatch.setattr(http_conns, "MAKE_WAY_AFTER", 0.2)
    long_timeouts(monkeypatch)  # the idle connections would keep their threads however slow the test
    reports: list[object] = []
    server = HttpApi("127.0.0.1", 0, Endpoints(lambda: (True, {"status": "ok"}), lambda: "m 1\n",
                                               lambda payload, client: reports.append(payload) or {}))
    server.start()
    idle: list[socket.socket] = []
    try:
        for n in (1, 2):
            idle.append(socket.create_connection(server.address, timeout=30))
            idle[-1].sendall(partial)
            _wait_until(lambda n=n: server._server.connections._open == n, f"{n} connections are taken")
        time.sleep(0.3)  # both have been sending their request for MAKE_WAY_AFTER
        assert status_of(exchange(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")) == 200
        assert _read_all(idle[0]) == b""  # the oldest closed unanswered, what it sent left unread
        # The other one is still there: the rest of its request is answered.
        rest = {b"GET /heal": b"thz HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET /healthz HTTP/1.1\r\nX-Slow: ": b"1\r\nHost: x\r\n\r\n"}
        idle[1].sendall(rest.get(partial, b'"MTN"}' + b" " * 82))
        assert status_of(_read_all(idle[1])) == (200 if partial in rest else 202)
        assert reports == ([] if partial in rest else [{"service": "MTN"}])
    finally:
        for sock in idle:
            sock.close()
        server.stop()


def test_at_the_cap_a_connection_taken_a_moment_ago_does_not_make_way() -> None:
    # Taken, but not read by its thread yet: in a burst of clients at once, one whose whole request was there was
    # closed without a status line, where the newcomer's 503 tells it to retry.
    conns = OpenConnections()
    pairs = [socket.socketpair() for _ in range(3)]
    try:
        (a, a_client), (b, _), (c, _) = pairs
        a_client.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
        assert conns.take(2, a) and conns.take(2, b)
        assert not conns.take(2, c)  # turned away (503), as when every connection is being answered
        assert not conns.evicted(a) and a.recv(100).startswith(b"GET /healthz")  # a's request is still there
        time.sleep(http_conns.MAKE_WAY_AFTER + 0.1)  # sending its request that long, a may be a slowloris
        assert conns.take(2, c) and conns.evicted(a)
    finally:
        for pair in pairs:
            for sock in pair:
                sock.close()


def test_request_sockets_have_a_read_timeout_of_a_few_seconds() -> None:
    # The tests above shorten it; this is the one the service runs with.
    assert 1 <= http_api._Handler.timeout == http_api.READ_TIMEOUT <= 10


@pytest.mark.parametrize(("ctype", "status"), [
    ("application/json", 202), ("APPLICATION/JSON; charset=UTF-8", 202), ('application/json;charset="utf-8"', 202),
    ("text/notjson", 415), ("application/jsonp", 415), ("application/x-ndjson", 415), ("json", 415), ("", 415),
    ("application/json; charset=latin-1", 415),
])
def test_the_report_media_type_is_parsed(api: tuple[HttpApi, list[object]], ctype: str, status: int) -> None:
    server, _ = api
    assert status_of(exchange(server, post("2", b"{}", ctype=ctype))) == status


def test_a_report_body_after_a_utf8_bom_is_accepted_but_not_after_two(api: tuple[HttpApi, list[object]]) -> None:
    # Windows tools write one (PowerShell 5 with -Encoding UTF8): it was 400 "body is not valid JSON".
    server, reports = api
    body = '{"service": "Telefónica"}'.encode()
    assert status_of(exchange(server, post(str(len(body) + 3), b"\xef\xbb\xbf" + body))) == 202
    assert reports == [{"service": "Telefónica"}]
    reply = exchange(server, post(str(len(body) + 6), b"\xef\xbb\xbf" * 2 + body))
    assert status_of(reply) == 400 and b"not valid JSON" in reply and len(reports) == 1


@pytest.mark.parametrize("path", ["/healthz", "/metrics"])
def test_head_answers_like_get_without_a_body(api: tuple[HttpApi, list[object]], path: str) -> None:
    server, _ = api
    reply = exchange(server, f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head, body = reply.split(b"\r\n\r\n", 1)
    assert status_of(reply) == 200 and body == b""
    assert int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0]) > 0


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE", "PATCH"])
def test_report_answers_another_method_405_allowing_post(api: tuple[HttpApi, list[object]], method: str) -> None:
    # GET and HEAD said 404 "no such endpoint /report" and listed "POST /report" among the endpoints; the others
    # were the stdlib's 501, as if the server knew no such method. The read API answers its wrong methods 405.
    server, reports = api
    reply = exchange(server, f"{method} /report?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{{}}".encode())
    head, body = reply.split(b"\r\n\r\n", 1)
    assert status_of(reply) == 405 and b"\r\nAllow: POST\r\n" in head + b"\r\n", head
    if method == "HEAD":
        assert body == b""
    else:
        assert json.loads(body) == {"error": f"{method} is not allowed: /report takes reports by POST only"}
    assert reports == []
    # OPTIONS stays unanswered (501) there as everywhere: no CORS preflight succeeds (docs/operations.md).
    assert status_of(exchange(server, b"OPTIONS /report HTTP/1.1\r\nHost: x\r\n\r\n")) == 501


@pytest.mark.parametrize("request_bytes", [
    b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n",
    post("2", b"{}"),
    b"GET / HTTP/1.x\r\n\r\n",  # refused by the stdlib's parser
])
def test_the_server_header_is_the_product_name_alone(api: tuple[HttpApi, list[object]], request_bytes: bytes) -> None:
    server, _ = api
    head = exchange(server, request_bytes).split(b"\r\n\r\n", 1)[0]
    assert [line for line in head.split(b"\r\n") if line.lower().startswith(b"server:")] == [b"Server: miner"]


def _hang_up_mid_reply(server: HttpApi, caplog: pytest.LogCaptureFixture) -> None:
    """Ask for /metrics and reset the connection while the handler waits for them; return once it logged that."""
    release_metrics.clear()
    metrics_asked.clear()
    with socket.create_connection(server.address, timeout=30) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert metrics_asked.wait(30)  # the handler is now waiting for the metrics
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
    release_metrics.set()
    deadline = time.monotonic() + 30
    while not any("went away" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_client_hanging_up_mid_reply_is_logged_not_printed(api: tuple[HttpApi, list[object]],
                                                             caplog: pytest.LogCaptureFixture,
                                                             capfd: pytest.CaptureFixture[str]) -> None:
    server, _ = api
    caplog.set_level(logging.DEBUG, logger="miner.http_api")
    _hang_up_mid_reply(server, caplog)
    assert any("went away" in r.getMessage() and r.levelno == logging.DEBUG for r in caplog.records)
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"PUT /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 501),
    (b"DELETE /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", 501),
    (b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\n\r\n", 505),
    (b"GET / HTTP/1.x\r\n\r\n", 400),
    (b"\x00\x01\x02 </p><script>\r\n\r\n", 400),
    (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),
    (b"GET /healthz HTTP/1.1\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n", 431),
    (b"GET /healthz HTTP/1.1\r\n" + b"X-Many: 1\r\n" * 200 + b"\r\n", 431),
])
def test_requests_the_stdlib_refuses_get_a_status_line_and_a_json_error(api: tuple[HttpApi, list[object]],
                                                                        request_bytes: bytes, status: int) -> None:
    server, _ = api
    reply = exchange(server, request_bytes)
    head, body = reply.split(b"\r\n\r\n", 1)
    assert reply.startswith(b"HTTP/1.0 ") and status_of(reply) == status
    assert b"Content-Type: application/json; charset=utf-8" in head
    message = json.loads(body)["error"]
    assert isinstance(message, str) and 0 < len(message) <= 200


def test_control_characters_in_a_request_line_are_escaped_in_the_log(api: tuple[HttpApi, list[object]],
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    server, _ = api
    caplog.set_level(logging.DEBUG, logger="miner.http_api")
    reply = exchange(server, b"GET /\x1b[2J\x9b0m\x07 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(reply) == 404
    logged = [r.getMessage() for r in caplog.records if r.name == "miner.http_api"]
    assert any("\\x1b[2J\\x9b0m\\x07" in m for m in logged)
    assert not any(c in m for m in logged for c in "\x1b\x9b\x07")


def test_requests_are_answered_and_logged_escaped_without_the_stdlibs_private_table(
        api: tuple[HttpApi, list[object]], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # http.server's _control_char_table came in Python 3.11.1: on 3.11.0 (which pyproject allows) every reply raised
    # AttributeError in the request log, and the client got nothing at all.
    monkeypatch.delattr(http.server.BaseHTTPRequestHandler, "_control_char_table")
    server, _ = api
    caplog.set_level(logging.DEBUG, logger="miner.http_api")
    assert status_of(exchange(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")) == 200
    assert status_of(exchange(server, b"GET /\x1b[2J\\x07 HTTP/1.1\r\nHost: x\r\n\r\n")) == 404
    logged = [r.getMessage() for r in caplog.records if r.name == "miner.http_api"]
    assert any("GET /\\x1b[2J\\\\x07 HTTP/1.1" in m for m in logged), logged


def test_the_request_log_does_not_name_the_reporter(api: tuple[HttpApi, list[object]],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    server, _ = api
    caplog.set_level(logging.DEBUG, logger="miner.http_api")
    body = json.dumps({"service": "MTN"}).encode()
    assert status_of(exchange(server, post(str(len(body)), body))) == 202
    logged = [r.getMessage() for r in caplog.records if r.name == "miner.http_api"]
    assert any("POST /report" in m for m in logged)  # the request is logged, its client is not
    assert not any(server.address[0] in m for m in logged)


def test_a_reporter_that_stalls_or_hangs_up_is_not_named_in_the_log(api: tuple[HttpApi, list[object]],
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    # A reporter on a slow phone: its headers miss the deadline, or it hangs up before the reply. The address is
    # the reporter's, kept in memory only (docs/collectors.md); the debug log named it in both cases.
    server, _ = api
    caplog.set_level(logging.DEBUG, logger="miner.http_api")
    with socket.create_connection(server.address, timeout=30) as sock:
        sock.sendall(b"POST /report HTTP/1.1\r\n")
        started = time.monotonic()
        with contextlib.suppress(OSError):  # the server shuts the connection at the deadline, and so ends the loop
            while time.monotonic() - started < TIMEOUT + 3 * SLACK:
                sock.sendall(b"X-Slow: 1\r\n")  # each line well within the socket timeout
                time.sleep(TIMEOUT / 4)
    _hang_up_mid_reply(server, caplog)
    logged = [r.getMessage() for r in caplog.records if r.name == "miner.http_api"]
    assert any("not received within" in m for m in logged) and any("went away" in m for m in logged)
    assert not any(server.address[0] in m for m in logged)


def test_a_fault_of_ours_is_a_500_with_a_json_error_and_its_traceback_in_the_log(
        caplog: pytest.LogCaptureFixture) -> None:
    # An exception in an endpoint (a status page's link urlsplit could not parse, once) closed the connection without
    # a status line: curl said "empty reply", and a proxy in front answered 502 as if the service were down.
    def health() -> tuple[bool, dict[str, Any]]:
        raise RuntimeError("a bug")

    def report(payload: object, client: str) -> dict[str, Any]:
        raise KeyError("another bug")

    server = HttpApi("127.0.0.1", 0, Endpoints(health, lambda: "m 1\n", report))
    server.start()
    try:
        body = json.dumps({"service": "MTN"}).encode()
        for request in (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
                        post(str(len(body)), body)):
            reply = exchange(server, request)
            head, _, answer = reply.partition(b"\r\n\r\n")
            assert status_of(reply) == 500 and b"Content-Type: application/json; charset=utf-8" in head, reply
            assert answer == (b"" if request.startswith(b"HEAD") else
                              b'{"error": "internal error: the service\'s log has the details"}')
        assert status_of(exchange(server, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")) == 200  # the server goes on
    finally:
        server.stop()
    faults = [r for r in caplog.records if r.name == "miner.http_api" and r.exc_info]
    assert [r.getMessage() for r in faults] == [f"http: unexpected error answering {line}" for line in (
        "GET /healthz HTTP/1.1", "HEAD /healthz HTTP/1.1", "POST /report HTTP/1.1")]


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
def test_an_ipv6_host_is_listened_on() -> None:
    # server.host = "::1" passed the config check, and the endpoint could not listen ("cannot listen").
    server = HttpApi("::1", 0, Endpoints(lambda: (True, {"status": "ok"}), lambda: "", lambda p, c: {}))
    server.start()
    try:
        assert server.address[0] == "::1"
        with socket.create_connection(server.address, timeout=30) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert sock.recv(65536).split(b" ", 2)[1] == b"200"
    finally:
        server.stop()


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
def test_reports_to_an_ipv6_listener_are_rate_limited_by_the_client_address() -> None:
    # On "::" an IPv4 peer is ::ffff:127.0.0.1, which no IPv4 trusted proxy matched: every report a proxy forwarded
    # was limited as the proxy's. An IPv6 peer was limited address by address, not by its network as forwarded ones
    # are.
    clients: list[str] = []
    server = HttpApi("::", 0, Endpoints(lambda: (True, {}), lambda: "", lambda payload, client: (
        clients.append(client) or {"accepted": True})), ["127.0.0.0/8"])
    server.start()
    try:
        for host, forwarded in (("::1", None), ("127.0.0.1", "203.0.113.7")):
            try:
                sock = socket.create_connection((host, server.address[1]), timeout=30)
            except ConnectionRefusedError:  # net.ipv6.bindv6only: "::" takes no IPv4 here
                assert host == "127.0.0.1"
                clients.append("203.0.113.7")
                continue
            with sock:
                head = f"X-Forwarded-For: {forwarded}\r\n" if forwarded else ""
                sock.sendall(post("2", b"{}").replace(b"\r\n\r\n", f"\r\n{head}\r\n".encode()))
                assert sock.recv(65536).split(b" ", 2)[1] == b"202"
    finally:
        server.stop()
    assert clients == ["::/56", "203.0.113.7"]


def test_reports_through_a_trusted_proxy_are_rate_limited_by_the_address_it_forwarded(
        caplog: pytest.LogCaptureFixture) -> None:
    # Behind the reverse proxy the docs recommend, every report came from the proxy's address: all the public
    # shared one client's limit, report_rate_per_hour for everyone together.
    clients: list[str] = []

    def serve(trusted: list[str]) -> HttpApi:
        server = HttpApi("127.0.0.1", 0, Endpoints(lambda: (True, {}), lambda: "", lambda payload, client: (
            clients.append(client) or {"accepted": True})), trusted)
        server.start()
        return server

    def report(server: HttpApi, *forwarded: str) -> None:
        head = "".join(f"X-Forwarded-For: {value}\r\n" for value in forwarded)
        assert status_of(exchange(server, post("2", b"{}").replace(b"\r\n\r\n", f"\r\n{head}\r\n".encode()))) == 202

    proxied = serve(["127.0.0.0/8", "10.0.0.0/8"])
    try:
        report(proxied, "203.0.113.7")
        report(proxied, "198.51.100.1, 203.0.113.8")  # a client can put anything first; the proxy appends last
        report(proxied, "198.51.100.1", "203.0.113.9, 10.1.1.1")  # through two proxies, both trusted
        report(proxied, "2001:db8:1:2::1")
        report(proxied, "2001:db8:1:3:ffff::9")  # the same /56: one subscriber
        report(proxied, "::ffff:192.0.2.5")
        report(proxied, "203.0.113.10, not-an-address")  # not what a proxy appends: counted as the proxy
        report(proxied)
    finally:
        proxied.stop()
    assert clients == ["203.0.113.7", "203.0.113.8", "203.0.113.9", "2001:db8:1::/56", "2001:db8:1::/56",
                       "192.0.2.5", "127.0.0.1", "127.0.0.1"]

    clients.clear()
    direct = serve([])
    try:
        for _ in range(2):  # a client talking to the endpoint directly cannot choose its address
            report(direct, "203.0.113.7")
    finally:
        direct.stop()
    assert clients == ["127.0.0.1", "127.0.0.1"]
    assert sum("server.trusted_proxies does not list 127.0.0.1" in r.getMessage() for r in caplog.records) == 1


def test_forwarded_addresses_with_a_port_are_read_as_the_clients(caplog: pytest.LogCaptureFixture) -> None:
    # Some load balancers (Azure's Application Gateway) append the client's address with its port: 1.2.3.4:5678,
    # [2001:db8::1]:443. Read as no address, every report came out rate-limited as the proxy's, all clients sharing
    # its one limit.
    clients: list[str] = []
    server = HttpApi("127.0.0.1", 0, Endpoints(lambda: (True, {}), lambda: "", lambda payload, client: (
        clients.append(client) or {"accepted": True})), ["127.0.0.0/8", "10.0.0.0/8"])
    server.start()
    try:
        for forwarded in ("203.0.113.7:5678", "[2001:db8:1:2::1]:443", "[2001:db8:2:3::1]",
                          "198.51.100.1:1, 203.0.113.8:65535", "203.0.113.9:80, 10.1.1.1:443",  # a trusted hop too
                          "[::ffff:192.0.2.5]:8080",
                          # Not what a proxy appends: counted as the proxy.
                          "203.0.113.10:65536", "203.0.113.11:", "203.0.113.12:-1", "203.0.113.13:８０",
                          "[203.0.113.14]:80", "2001:db8::1:443x", "[2001:db8::1]:", "[2001:db8::1]x",
                          "203.0.113.15:80:80"):
            head = f"X-Forwarded-For: {forwarded}\r\n".encode()
            assert status_of(exchange(server, post("2", b"{}").replace(b"\r\n\r\n", b"\r\n" + head + b"\r\n"))) == 202
    finally:
        server.stop()
    assert clients == ["203.0.113.7", "2001:db8:1::/56", "2001:db8:2::/56", "203.0.113.8", "203.0.113.9",
                       "192.0.2.5", *["127.0.0.1"] * 9]
    assert "trusted_proxies does not list" not in caplog.text


@pytest.mark.parametrize(("prefix", "keys"), [
    (56, ["2001:db8:1::/56", "2001:db8:1::/56", "2001:db8:1:100::/56"]),
    (64, ["2001:db8:1:2::/64", "2001:db8:1:3::/64", "2001:db8:1:100::/64"]),
    (48, ["2001:db8:1::/48", "2001:db8:1::/48", "2001:db8:1::/48"]),
    (128, ["2001:db8:1:2::1/128", "2001:db8:1:3::1/128", "2001:db8:1:100::1/128"])])
def test_an_ipv6_client_is_keyed_by_the_configured_prefix(prefix: int, keys: list[str]) -> None:
    # server.report_ipv6_prefix: a household's /56 by default; an IPv4 client stays one address whatever it is.
    clients: list[str] = []
    server = HttpApi("127.0.0.1", 0, Endpoints(lambda: (True, {}), lambda: "", lambda payload, client: (
        clients.append(client) or {"accepted": True})), ["127.0.0.0/8"], prefix)
    server.start()
    try:
        for forwarded in ("2001:db8:1:2::1", "2001:db8:1:3::1", "2001:db8:1:100::1", "203.0.113.7"):
            head = f"X-Forwarded-For: {forwarded}\r\n".encode()
            assert status_of(exchange(server, post("2", b"{}").replace(b"\r\n\r\n", b"\r\n" + head + b"\r\n"))) == 202
    finally:
        server.stop()
    assert clients == [*keys, "203.0.113.7"]


@pytest.mark.parametrize("request_bytes", [
    b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /<script>alert(1)</script>?a=<b>&c HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /<img%20src=x> HTTP/1.1\r\nHost: x\r\n\r\n",
    b"OPTIONS /report HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\n\r\n",
    b"GET /<svg/onload=alert(1)> HTTP/9.9\r\n\r\n",
    post("40", b'{"service": "x", "<script>alert(1)</script>": 1}'),
])
def test_no_answer_can_be_sniffed_as_html(request_bytes: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    # The errors quote the client's path or field name (404 "no such endpoint /<script>..."): a browser that
    # sniffed a body (no X-Content-Type-Options: nosniff) could take it for a page of the endpoint's origin.
    from miner.collectors.reports import validate_report

    def report(payload: object, client: str) -> dict[str, Any]:
        validate_report(payload, [])
        return {}

    server = HttpApi("127.0.0.1", 0, Endpoints(lambda: (True, {"status": "ok"}), lambda: "m 1\n", report))
    server.start()
    try:
        reply = exchange(server, request_bytes)
    finally:
        server.stop()
    head, body = reply.split(b"\r\n\r\n", 1)
    assert b"\r\nX-Content-Type-Options: nosniff\r\n" in head + b"\r\n", head
    assert b"; charset=utf-8\r\n" in head
    assert b"<" not in body and b">" not in body
    if b"application/json" in head:
        assert isinstance(json.loads(body), dict)


def test_the_request_line_and_headers_are_capped_in_all(api: tuple[HttpApi, list[object]],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # The stdlib takes 100 header lines of 64 KB each: 32 clients sending 6.4 MB of headers apiece grew the
    # service's process (the collectors, detector and alerts share it) by a GB within the 5 s head deadline.
    server, _ = api
    long_timeouts(monkeypatch)
    pad = b"X-Pad: " + b"a" * 990 + b"\r\n"  # 999 bytes: each line well within the stdlib's limits
    big_cookie = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + pad * 20 + b"\r\n"
    assert status_of(exchange(server, big_cookie)) == 200
    cap = 32768  # http_api.MAX_HEAD
    for request in (b"GET /healthz HTTP/1.1\r\n" + pad * (cap // len(pad) + 1) + b"\r\n",
                    b"GET /" + b"a" * (cap - 100) + b" HTTP/1.1\r\n" + pad + b"\r\n"):  # the request line counts
        started = time.monotonic()
        reply = exchange(server, request)
        assert status_of(reply) == 431, reply[:200]
        assert json.loads(reply.split(b"\r\n\r\n", 1)[1]) == {
            "error": f"request line and headers larger than {cap} bytes"}
        assert time.monotonic() - started < SLACK
    assert cap == http_api.MAX_HEAD

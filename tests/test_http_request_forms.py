"""Request heads HTTP/1.1 has a server take that the stdlib does not: a target in absolute form (RFC 9112 3.2.2),
empty lines before the request line (RFC 9112 2.2), and Expect (RFC 9110 10.1.1). The real service on a loopback
socket, its reports stored in a real SQLite store, spoken to byte by byte."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_http_api import _read_all, status_of
from test_http_hosts import serving

from miner.service import Service

REPORT = json.dumps({"service": "MTN", "symptom": "calls"}).encode()
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    with serving(tmp_path, ["status.example.org"]) as svc:
        yield svc


def _connect(svc: Service) -> socket.socket:
    assert svc._http is not None
    return socket.create_connection(svc._http.address, timeout=30)


def _ask(svc: Service, data: bytes) -> bytes:
    with _connect(svc) as sock:
        sock.sendall(data)
        return _read_all(sock)


def _head_of(sock: socket.socket) -> bytes:
    """What the server sends up to the end of its first head (a 100 Continue, or the final answer's)."""
    got = b""
    while b"\r\n\r\n" not in got and (chunk := sock.recv(1)):
        got += chunk
    return got


def _posts(svc: Service) -> int:
    return int(svc._store("test").database.rows("SELECT COUNT(*) AS n FROM posts")[0]["n"])


def _post(target: str, host: str = "status.example.org", extra: str = "", version: str = "HTTP/1.1",
          length: int = len(REPORT)) -> bytes:
    return (f"POST {target} {version}\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n{extra}\r\n").encode()


@pytest.mark.parametrize("target", ["http://status.example.org/healthz", "HTTP://Status.Example.ORG:8787/healthz",
                                    "https://127.0.0.1:8787/healthz", "http://[::1]//healthz"])
def test_a_target_in_absolute_form_is_answered_as_its_path(service: Service, target: str) -> None:
    # Some proxies send the URL whole, and a server must accept it: it was looked up as a path, a 404.
    reply = _ask(service, f"GET {target} HTTP/1.1\r\nHost: status.example.org\r\n\r\n".encode())
    assert status_of(reply) == 200 and b'"status"' in reply, reply[:300]
    assert status_of(_ask(service, _post("http://status.example.org:8787/report") + REPORT)) == 202
    assert _posts(service) == 1


@pytest.mark.parametrize("target", ["http://127.0.0.1", "http://127.0.0.1?x=1"])
def test_an_absolute_target_without_a_path_is_the_root_and_its_query_is_kept_apart(
        service: Service, target: str) -> None:
    reply = _ask(service, f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    assert status_of(reply) == 200 and b"text/html" in reply  # the status board
    reply = _ask(service, b"GET http://127.0.0.1/nowhere?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["error"] == "no such endpoint /nowhere"
    series = _ask(service, b"GET http://127.0.0.1/api/v1/services/MTN/series?bucket=7 HTTP/1.1\r\n"
                           b"Host: 127.0.0.1\r\n\r\n")
    assert status_of(series) == 400 and b"bucket" in series, series  # the query, read as one


@pytest.mark.parametrize("authority", ["rebound.attacker.example", "rebound.attacker.example:8787",
                                       "status.example.org.x", "example.org"])
def test_an_absolute_target_naming_another_host_is_answered_421_whatever_its_host_header(
        service: Service, authority: str) -> None:
    # The URL's authority takes the place of Host: a listed Host beside it must not carry a request for another one.
    reply = _ask(service, f"GET http://{authority}/api/v1/services HTTP/1.1\r\nHost: status.example.org\r\n\r\n"
                 .encode())
    assert status_of(reply) == 421 and b'"services"' not in reply
    assert status_of(_ask(service, _post(f"http://{authority}/report") + REPORT)) == 421
    assert _posts(service) == 0


@pytest.mark.parametrize("target", ["http://status.example.org@rebound.attacker.example/healthz",
                                    "http://127.0.0.1@status.example.org/healthz", "http:///healthz",
                                    "http:/healthz", "ftp://status.example.org/healthz", "status.example.org:80/"])
def test_an_absolute_target_with_user_info_no_host_or_another_scheme_is_refused_400(
        service: Service, target: str) -> None:
    reply = _ask(service, f"GET {target} HTTP/1.1\r\nHost: status.example.org\r\n\r\n".encode())
    assert status_of(reply) == 400 and b"request target" in reply, reply[:300]
    assert status_of(_ask(service, _post(target.replace("/healthz", "/report")) + REPORT)) == 400
    assert _posts(service) == 0


@pytest.mark.parametrize("before", [b"\r\n", b"\r\n\r\n\n"])
def test_empty_lines_before_the_request_line_are_skipped(service: Service, before: bytes) -> None:
    # HTTP/1.1 has a server skip them (a client may end a body with an extra CRLF, which a server that keeps the
    # connection reads before the next request): read as an empty request line, the connection was closed unanswered.
    assert status_of(_ask(service, before + b"GET /healthz HTTP/1.1\r\nHost: status.example.org\r\n\r\n")) == 200
    assert status_of(_ask(service, before + _post("/report") + REPORT)) == 202
    assert _posts(service) == 1


def test_empty_lines_count_in_the_cap_on_the_request_head(service: Service) -> None:
    reply = _ask(service, b"\r\n" * 16385 + b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert status_of(reply) == 431
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1]) == {"error": "request line and headers larger than 32768 bytes"}
    assert status_of(_ask(service, b"\r\n" * 16000 + b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")) == 200


REFUSED = [
    (_post("/report", length=5000), 413),  # declared too large
    (_post("/report", extra="Transfer-Encoding: chunked\r\n"), 411),
    (_post("/elsewhere"), 404),
    (_post("/report").replace(b"application/json", b"text/plain"), 415),
    (_post("/api/v1/services"), 405),
    (_post("/report", host="rebound.attacker.example"), 421),
]


def test_a_report_expecting_100_continue_gets_it_before_its_body_is_read_and_a_refused_one_its_refusal(
        service: Service) -> None:
    # curl waits for it a second, then sends the body anyway; other clients wait longer, or for good.
    with _connect(service) as sock:
        sock.sendall(_post("/report", extra="Expect: 100-continue\r\n"))
        assert _head_of(sock) == CONTINUE
        sock.sendall(REPORT)
        assert status_of(_read_all(sock)) == 202
    with _connect(service) as sock:  # in absolute form, its Expect in any case
        sock.sendall(_post("http://127.0.0.1/report", extra="Expect: 100-Continue\r\n"))
        assert _head_of(sock) == CONTINUE
        sock.sendall(REPORT)
        assert status_of(_read_all(sock)) == 202
    # One that is refused anyway is answered at once, without the body it never sends.
    for head, status in REFUSED:
        with _connect(service) as sock:
            sock.sendall(head.replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n"))
            reply = _read_all(sock)
        assert status_of(reply) == status and CONTINUE not in reply, (head, reply[:300])
    # An HTTP/1.0 client, which cannot take a 100, gets none; nor does a report without a body to send.
    with _connect(service) as sock:
        sock.sendall(_post("/report", extra="Expect: 100-continue\r\n", version="HTTP/1.0") + REPORT)
        assert _read_all(sock).startswith(b"HTTP/1.0 202 ")
    assert status_of(_ask(service, _post("/report", extra="Expect: 100-continue\r\n", length=0))) == 400
    assert _posts(service) == 3


@pytest.mark.parametrize("expect", ["100-continue, x-other", "x-other", "100-continue;x=1"])
def test_an_expectation_other_than_100_continue_is_answered_417(service: Service, expect: str) -> None:
    reply = _ask(service, f"GET /healthz HTTP/1.1\r\nHost: status.example.org\r\nExpect: {expect}\r\n\r\n".encode())
    assert status_of(reply) == 417 and b"only 100-continue" in reply
    with _connect(service) as sock:
        sock.sendall(_post("/report", extra=f"Expect: {expect}\r\n"))
        reply = _read_all(sock)
    assert status_of(reply) == 417 and CONTINUE not in reply
    assert _posts(service) == 0

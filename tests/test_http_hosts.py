"""`server.allowed_hosts`: the real service on a loopback socket, its reports stored in a real SQLite store, answers
a request naming another host in its Host header (a page on a DNS name rebound to 127.0.0.1) with 421."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_http_api import _read_all, status_of

from miner.config import load_config
from miner.service import Service, ServiceOptions

REPORT = json.dumps({"service": "MTN", "symptom": "calls"}).encode()


@contextmanager
def serving(tmp_path: Path, allowed_hosts: list[str]) -> Iterator[Service]:
    """The service, its jobs off, with its HTTP endpoint on a free loopback port answering as ``allowed_hosts``."""
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "miner.sqlite"}"\n\n[server]\n'
                   f'allowed_hosts = {json.dumps(allowed_hosts)}\n\n[[services]]\nname = "MTN"\n')
    svc = Service(load_config(cfg), tmp_path / "miner.sqlite", ServiceOptions(jobs=(), http=True, http_port=0))
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    with serving(tmp_path, ["status.example.org", "Board.Example.NET."]) as svc:
        yield svc


def _ask(svc: Service, head: str, body: bytes = b"") -> bytes:
    assert svc._http is not None
    with socket.create_connection(svc._http.address, timeout=30) as sock:
        sock.sendall(head.encode() + b"\r\n" + body)
        return _read_all(sock)


def _posts(svc: Service) -> int:
    return int(svc._store("test").database.rows("SELECT COUNT(*) AS n FROM posts")[0]["n"])


@pytest.mark.parametrize("host", ["rebound.attacker.example", "rebound.attacker.example:8787", "status.example.org.x",
                                  "example.org", "status.example.org@evil.example"])
def test_a_request_naming_another_host_is_answered_421_and_its_report_not_stored(service: Service, host: str) -> None:
    # Without the check, a page on a name rebound to 127.0.0.1 read the API and posted reports from the browser of
    # anyone on the machine: its origin was the endpoint's.
    reply = _ask(service, f"GET /api/v1/services HTTP/1.1\r\nHost: {host}\r\n")
    assert status_of(reply) == 421
    assert b"server.allowed_hosts" in reply and b'"services"' not in reply
    post = (f"POST /report HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(REPORT)}\r\n")
    assert status_of(_ask(service, post, REPORT)) == 421
    assert _posts(service) == 0


@pytest.mark.parametrize("host", ["status.example.org", "Status.Example.ORG.:443", "board.example.net",
                                  "127.0.0.1:8787", "localhost:8787", "[::1]:8787", None, ""])
def test_a_listed_host_an_address_localhost_or_none_is_answered(service: Service, host: str | None) -> None:
    # No rebinding page's Host is an address or localhost, and every browser sends one, never empty (as HTTP/1.1 has
    # a client send for a target without a host: it was answered 421).
    head = "GET /healthz HTTP/1.0\r\n" + (f"Host: {host}\r\n" if host is not None else "")
    assert status_of(_ask(service, head)) == 200
    post = (f"POST /report HTTP/1.1\r\nHost: {host or 'status.example.org'}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(REPORT)}\r\n")
    assert status_of(_ask(service, post, REPORT)) == 202
    assert _posts(service) == 1


@pytest.mark.parametrize("hosts", [("status.example.org", "rebound.attacker.example"),
                                   ("rebound.attacker.example", "status.example.org"),
                                   ("status.example.org", "status.example.org")])
def test_a_request_with_two_host_headers_is_answered_400_and_its_report_not_stored(service: Service,
                                                                                   hosts: tuple[str, str]) -> None:
    # The first was taken: `Host: allowed` then `Host: other` passed server.allowed_hosts, where a proxy or cache in
    # front may go by the other. RFC 9112 3.2: a server MUST answer 400 to more than one Host.
    both = "".join(f"Host: {host}\r\n" for host in hosts)
    reply = _ask(service, f"GET /api/v1/services HTTP/1.1\r\n{both}")
    assert status_of(reply) == 400 and b'"services"' not in reply
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1]) == {"error": "a request must have one Host header, not several"}
    post = (f"POST /report HTTP/1.1\r\n{both}Content-Type: application/json\r\nContent-Length: {len(REPORT)}\r\n")
    assert status_of(_ask(service, post, REPORT)) == 400
    assert status_of(_ask(service, f"GET http://status.example.org/healthz HTTP/1.1\r\n{both}")) == 400
    assert _posts(service) == 0


@pytest.mark.parametrize("allowed", [[], ["status.example.org"]])
@pytest.mark.parametrize("target", ["/api/v1/services", "/healthz", "http://status.example.org/api/v1/services"])
def test_an_http_1_1_request_without_a_host_header_is_answered_400(tmp_path: Path, allowed: list[str],
                                                                    target: str) -> None:
    # RFC 9112 3.2: a server MUST answer 400 to an HTTP/1.1 request that lacks a Host header (every HTTP/1.1 client
    # sends one, empty for a target without a host); it was answered as any other, whatever server.allowed_hosts said.
    with serving(tmp_path, allowed) as svc:
        reply = _ask(svc, f"GET {target} HTTP/1.1\r\n")
        assert status_of(reply) == 400 and b'"services"' not in reply
        assert json.loads(reply.split(b"\r\n\r\n", 1)[1]) == {"error": "an HTTP/1.1 request must have a Host header"}
        post = f"POST /report HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {len(REPORT)}\r\n"
        assert status_of(_ask(svc, post, REPORT)) == 400
        assert _posts(svc) == 0
        # HTTP/1.0 has no Host to require, and an empty one is HTTP/1.1's for a target without a host.
        assert status_of(_ask(svc, f"GET {target} HTTP/1.0\r\n")) == 200
        assert status_of(_ask(svc, f"GET {target} HTTP/1.1\r\nHost:\r\n")) == 200

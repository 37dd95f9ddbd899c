"""Request heads HTTP/1.1 has a server take that the stdlib does not: empty lines before the request line (RFC 9112
2.2). The real service on a loopback socket, its reports stored in a real SQLite store, spoken to byte by byte."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_http_api import _read_all, status_of

from miner.config import load_config
from miner.service import Service, ServiceOptions

REPORT = json.dumps({"service": "MTN", "symptom": "calls"}).encode()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "miner.sqlite"}"\n\n[server]\n'
                   'allowed_hosts = ["status.example.org"]\n\n[[services]]\nname = "MTN"\n')
    svc = Service(load_config(cfg), tmp_path / "miner.sqlite", ServiceOptions(jobs=(), http=True, http_port=0))
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()


def _connect(svc: Service) -> socket.socket:
    assert svc._http is not None
    return socket.create_connection(svc._http.address, timeout=30)


def _ask(svc: Service, data: bytes) -> bytes:
    with _connect(svc) as sock:
        sock.sendall(data)
        return _read_all(sock)


def _posts(svc: Service) -> int:
    return int(svc._store("test").database.rows("SELECT COUNT(*) AS n FROM posts")[0]["n"])


def _post(target: str, host: str = "status.example.org", extra: str = "", version: str = "HTTP/1.1",
          length: int = len(REPORT)) -> bytes:
    return (f"POST {target} {version}\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n{extra}\r\n").encode()


@pytest.mark.parametrize("before", [b"\r\n", b"\r\n\r\n\n"])
def test_empty_lines_before_the_request_line_are_skipped(service: Service, before: bytes) -> None:
    # HTTP/1.1 has a server skip them (a client may end a body with an extra CRLF, which a server that keeps the
    # connection reads before the next request): read as an empty request line, the connection was closed unanswered.
    assert status_of(_ask(service, before + b"GET /healthz HTTP/1.1\r\nHost: status.example.org\r\n\r\n")) == 200
    assert status_of(_ask(service, before + _post("/report") + REPORT)) == 202
    assert _posts(service) == 1


def test_empty_lines_count_in_the_cap_on_the_request_head(service: Service) -> None:
    reply = _ask(service, b"\r\n" * 16385 + b"GET /healthz HTTP/1.1\r\n\r\n")
    assert status_of(reply) == 431
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1]) == {"error": "request line and headers larger than 32768 bytes"}
    assert status_of(_ask(service, b"\r\n" * 16000 + b"GET /healthz HTTP/1.1\r\n\r\n")) == 200

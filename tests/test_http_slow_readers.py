"""Clients that ask for a large answer and then take none of it, on the real service over loopback, its series read
from a real SQLite store: at the connection cap, one of them makes way for a newcomer, as a slowloris does."""

from __future__ import annotations

import socket
import sqlite3
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from test_http_api import _read_all, _wait_until, long_timeouts, status_of
from test_report_counting import T0, service  # noqa: F401  (service: a fixture)

from miner import http_api, http_conns
from miner.service import Service
from miner.timeutil import iso

MAKE_WAY_AFTER = 0.2
SERIES = b"GET /api/v1/services/MTN/series?hours=840 HTTP/1.1\r\nHost: x\r\n\r\n"  # 10,080 buckets: about 900 KB


def _slow_reader(address: tuple[str, int]) -> socket.socket:
    """A connection that asks for the series and reads none of it, with the small window and the segments of a
    client over the internet: on loopback's 64 KB segments the kernel would buffer the whole answer."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1400)
    sock.settimeout(30)
    sock.connect(address)
    sock.sendall(SERIES)
    return sock


def test_a_client_that_takes_none_of_its_answer_makes_way_for_a_newcomer_at_the_cap(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        service: tuple[Service, str, list[datetime]]) -> None:  # noqa: F811
    # Their answers being written, they were never shut for a newcomer: 32 such clients held every connection until
    # the write timed out (5 s) and asked again, and /healthz and reports were answered 503 all the while.
    svc, _, clock = service
    assert svc._http is not None
    server = svc._http
    monkeypatch.setattr(http_api, "MAX_CONNECTIONS", 2)
    monkeypatch.setattr(http_api, "PROBE_CONNECTIONS", 0)  # the cap counts the probes too
    monkeypatch.setattr(http_conns, "MAKE_WAY_AFTER", MAKE_WAY_AFTER)
    long_timeouts(monkeypatch)  # a stuck answer would otherwise be given up on by itself
    clock[0] = T0 + timedelta(days=40)
    with sqlite3.connect(tmp_path / "miner.sqlite") as db:
        db.executemany("INSERT INTO buckets (service, bucket_start, posts, complaints) VALUES ('MTN', ?, 12, 3)",
                       [(iso(clock[0] - timedelta(minutes=5 * i)),) for i in range(10_100)])
    db.close()
    readers = [_slow_reader(server.address) for _ in range(2)]
    try:
        _wait_until(lambda: server._server.connections._open == 2 and not server._server.connections._receiving,
                    "both requests are read")
        time.sleep(MAKE_WAY_AFTER + 0.5)  # their answers stuck, far larger than the client's window and the buffers
        with socket.create_connection(server.address, timeout=30) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status_of(_read_all(sock)) == 200
        sizes = sorted(len(_read_all(reader)) for reader in readers)
        assert sizes[0] < 500_000 < sizes[1]  # the one that made way got its answer cut short; the other, whole
    finally:
        for reader in readers:
            reader.close()

"""What the tests' port reservation (tests/ports.py) relies on, checked on real sockets: a test whose service could not
bind its reserved port would fail far from the cause."""

from __future__ import annotations

import errno
import socket

import pytest
from ports import endpoint_port, reserved_port


def test_a_reserved_port_refuses_connections_keeps_others_off_and_lets_a_server_bind_it() -> None:
    with reserved_port() as port:
        with socket.socket() as client, pytest.raises(ConnectionRefusedError):
            client.connect(("127.0.0.1", port))
        with socket.socket() as other, pytest.raises(OSError) as taken:
            other.bind(("127.0.0.1", port))  # without SO_REUSEADDR, as an outgoing connection's port is taken
        assert taken.value.errno == errno.EADDRINUSE
        with socket.socket() as server:  # as miner's endpoint, http.server and asyncio bind
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("127.0.0.1", port))
            server.listen()
            with socket.create_connection(("127.0.0.1", port), timeout=30):
                conn, _ = server.accept()
                conn.close()


def test_the_endpoint_port_is_read_from_the_last_line_naming_it() -> None:
    lines = ['{"msg": "http endpoint on http://127.0.0.1:41234 (answering 503 \\"starting\\" until ...)"}\n',
             "2026-01-01 00:00:00 INFO miner.service: http endpoint on http://[::1]:5001\n",
             '{"msg": "stopped"}\n']
    assert endpoint_port(lines[:1]) == 41234
    assert endpoint_port(lines) == 5001
    assert endpoint_port(lines[2:]) is None

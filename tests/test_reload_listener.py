"""A reload hands the HTTP endpoint's listening socket to the new service when it listens at the same host and port:
a client that connects while the reload is under way (the service before stopped, the new one not yet started) waits
in the backlog and is answered, where it was refused. Real services run by the reloader in a thread (Signals.handle
is what the signal handlers call), a real store, real sockets on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fakeserver import FakeServer
from test_reload import feeds, free_port, write_config  # noqa: F401 (feeds: the fixture)
from test_reload_handover import reloading, wait_for

if TYPE_CHECKING:
    from miner.config import Config
    from miner.service import Service


def ask(port: int) -> socket.socket | str:
    """A GET /healthz sent on a new connection, whose answer is read later; or how the connection failed."""
    sock = socket.socket()
    try:
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
    except OSError as exc:
        sock.close()
        return f"{type(exc).__name__}: {exc}"
    return sock


def answer(asked: socket.socket | str) -> str:
    """The status line ``asked`` was answered with, or how it failed."""
    if isinstance(asked, str):
        return asked
    with asked:
        asked.settimeout(120)  # not a measure: long enough for a loaded machine to start the new service
        data = b""
        try:
            while chunk := asked.recv(65536):
                data += chunk
        except OSError as exc:
            return f"{type(exc).__name__}: {exc}"
    return data.split(b"\r\n", 1)[0].decode("latin-1") or "closed unanswered"


def refused(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return True
    return False


def asking(db: Path, built: list[Service], asked: list[tuple[int, socket.socket | str]]) -> Callable[[Config], Service]:
    """A ``make`` that, from the second service on, first sends a request to the port of the service before: it has
    stopped by then (or failed to start), and the new one has not started."""
    from miner.service import JobSpec, Service, ServiceOptions

    def make(config: Config) -> Service:
        if built:
            port = built[-1].config.server.port
            asked.append((port, ask(port)))
        built.append(Service(config, db, ServiceOptions(jobs=(JobSpec("collect", 3600.0),))))
        return built[-1]

    return make


def started(built: list[Service], n: int) -> Callable[[], bool]:
    return lambda: len(built) == n and built[-1].health["collect"].runs == 1


def test_a_client_connecting_during_a_reload_is_answered_by_the_new_service(tmp_path: Path,
                                                                             feeds: FakeServer) -> None:  # noqa: F811
    cfg = tmp_path / "feeds.toml"
    port, other = free_port(), free_port()
    write_config(cfg, feeds.url, port)
    built: list[Service] = []
    asked: list[tuple[int, socket.socket | str]] = []
    with reloading(cfg, asking(tmp_path / "miner.sqlite", built, asked)) as hup:
        wait_for(started(built, 1))
        hup()
        wait_for(started(built, 2))
        assert answer(asked[0][1]) == "HTTP/1.0 200 OK"  # was ConnectionRefusedError
        assert answer(ask(port)) == "HTTP/1.0 200 OK"

        # Another port: the one before is closed, not left listening with nobody to accept, and the new one bound.
        write_config(cfg, feeds.url, other)
        hup()
        wait_for(started(built, 3))
        # It waited in the backlog of the socket closed for the new address: reset, as it was refused before.
        assert answer(asked[1][1]).startswith(("ConnectionResetError", "closed unanswered"))
        assert refused(port)
        assert answer(ask(other)) == "HTTP/1.0 200 OK"
    assert refused(other)  # closed at the stop


def test_a_reload_that_fails_to_start_leaves_the_listener_to_the_config_before(
        tmp_path: Path, feeds: FakeServer, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    cfg = tmp_path / "feeds.toml"
    port = free_port()
    write_config(cfg, feeds.url, port)
    built: list[Service] = []
    asked: list[tuple[int, socket.socket | str]] = []
    with reloading(cfg, asking(tmp_path / "miner.sqlite", built, asked)) as hup:
        wait_for(started(built, 1))
        # Accepted by config check, the same port, but no model in the folder: only the start finds out.
        (tmp_path / "no-model").mkdir()
        write_config(cfg, feeds.url, port, extra='\n[classifier]\nmodel_dir = "no-model"\n')
        hup()
        wait_for(started(built, 3))
        assert "config reload failed: the service did not start with the new config" in caplog.text
        # One sent before the new service was built, one after it failed: both answered by the config before.
        assert [answer(a) for _, a in asked] == ["HTTP/1.0 200 OK"] * 2
        assert answer(ask(port)) == "HTTP/1.0 200 OK"
    assert refused(port)

"""A reload hands the HTTP endpoint's listening socket to the new service when it listens at the same host and port:
a client that connects while the reload is under way (the service before stopped, the new one not yet started) waits
in the backlog and is answered, where it was refused. Real services run by the reloader in a thread (Signals.handle
is what the signal handlers call), a real store, real sockets on 127.0.0.1."""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fakeserver import FakeServer
from ports import bound_port, reserved_port
from test_reload import feeds, write_config  # noqa: F401 (feeds: the fixture)
from test_reload_handover import reloading, wait_for

from miner.service_lock import ServiceLock

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


def answer(asked: socket.socket | str, within: float = 120.0) -> str:
    """The status line ``asked`` was answered with, or how it failed (not answered ``within`` seconds: the default is
    not a measure, but long enough for a loaded machine to start the new service)."""
    if isinstance(asked, str):
        return asked
    with asked:
        asked.settimeout(within)
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


def asking(built: list[Service], asked: list[tuple[int, socket.socket | str]]) -> Callable[[Config], Service]:
    """A ``make`` whose services, given what the service before handed over, first send a request to the port the
    endpoint last listened on (the last service started's): that service has stopped by then (or the one after it
    failed to start), and the new one has not started. Each on its config's store."""
    from miner.service import JobSpec, Service, ServiceOptions
    from miner.service_handover import Handover

    class Asking(Service):
        bound: int | None = None  # the port its endpoint bound, once started

        def start(self) -> None:
            super().start()
            self.bound = bound_port(self)

        def take_over(self, handover: Handover) -> None:
            port = next(s.bound for s in reversed(built) if isinstance(s, Asking) and s.bound is not None)
            asked.append((port, ask(port)))
            super().take_over(handover)

    def make(config: Config) -> Service:
        built.append(Asking(config, config.store.path, ServiceOptions(jobs=(JobSpec("collect", 3600.0),))))
        return built[-1]

    return make


def started(built: list[Service], n: int) -> Callable[[], bool]:
    return lambda: len(built) == n and built[-1].health["collect"].runs == 1



@contextmanager
def reloading_asking(cfg: Path, feed_url: str
                     ) -> Iterator[tuple[Callable[[], None], list[Service], list[tuple[int, socket.socket | str]]]]:
    """``cfg`` written for port 0 (any free port: bound_port(built[0]) says which), and the reloader running
    `asking`'s services on it, the first started; yields what sends a SIGHUP, the services built and what each asked
    at its start."""
    write_config(cfg, feed_url, 0)
    built: list[Service] = []
    asked: list[tuple[int, socket.socket | str]] = []
    with reloading(cfg, asking(built, asked)) as hup:
        wait_for(started(built, 1))
        yield hup, built, asked


def test_a_client_connecting_during_a_reload_is_answered_by_the_new_service(tmp_path: Path,
                                                                             feeds: FakeServer) -> None:  # noqa: F811
    cfg = tmp_path / "feeds.toml"
    # Another port to reload to, known beforehand: held by the test throughout, as one picked and let go could be
    # taken first by anything else (the service binds it all the same: see ports.reserve).
    with reserved_port() as other:
        with reloading_asking(cfg, feeds.url) as (hup, built, asked):
            port = bound_port(built[0])
            hup()
            wait_for(started(built, 2))
            assert asked[0][0] == port and bound_port(built[1]) == port  # port 0 again: the same socket, handed over
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
    with reloading_asking(cfg, feeds.url) as (hup, built, asked):
        port = bound_port(built[0])
        # Accepted by config check, the same port (0), but a store that is no SQLite file: only the start finds out.
        (tmp_path / "other.sqlite").write_bytes(b"not a database " * 512)
        write_config(cfg, feeds.url, 0)
        cfg.write_text(cfg.read_text().replace("miner.sqlite", "other.sqlite"))
        hup()
        wait_for(started(built, 3))
        assert "config reload failed: the service did not start with the new config" in caplog.text
        # One sent before the new service was built, one after it failed: both answered by the config before.
        assert [answer(a) for _, a in asked] == ["HTTP/1.0 200 OK"] * 2
        assert answer(ask(port)) == "HTTP/1.0 200 OK"

        # On another port, bound while the service before ran (ServiceSwitch.claim): closed when the start fails,
        # not left listening with nobody to accept.
        with reserved_port() as other:
            write_config(cfg, feeds.url, other)
            cfg.write_text(cfg.read_text().replace("miner.sqlite", "other.sqlite"))
            hup()
            wait_for(started(built, 5))
            assert refused(other)
            port = bound_port(built[4])
            assert answer(ask(port)) == "HTTP/1.0 200 OK"
    assert refused(port)


def test_a_request_sent_while_the_new_model_loads_is_answered_and_a_stop_then_stops(
        tmp_path: Path, feeds: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    # The new service loaded its model after the service before had stopped: a request sent then waited in the
    # backlog for the whole load (0.3 s on 2 cores with the default model, the more with a larger one), and a health
    # check with a short timeout failed at each reload. The reload's load is held here until the request is
    # answered, so the request is answered by the service before, or not at all.
    import miner.classify
    from miner.config_files import load_checked
    from miner.service_reload import Reloader, Signals

    load = miner.classify.load_classifier
    loading, release = threading.Event(), threading.Event()
    loads: list[int] = []

    def held_load(*args: Any, **kwargs: Any) -> Any:
        loads.append(1)
        if len(loads) == 2:  # the reload's
            loading.set()
            release.wait(120)
        return load(*args, **kwargs)

    monkeypatch.setattr(miner.classify, "load_classifier", held_load)
    cfg = tmp_path / "feeds.toml"
    write_config(cfg, feeds.url, 0)
    built: list[Service] = []
    signals = Signals()
    thread = threading.Thread(target=Reloader(load_checked(cfg), lambda: load_checked(cfg),
                                              asking(built, []), signals).run, daemon=True)
    thread.start()
    try:
        wait_for(started(built, 1))
        port = bound_port(built[0])
        signals.handle(signal.SIGHUP)
        assert loading.wait(120)
        # Not a measure: the load goes on only once this is answered (or not, in 30 s).
        assert answer(ask(port), within=30) == "HTTP/1.0 200 OK"  # was TimeoutError
        # A stop while the new model loads stops: the service before, and the new one is never started.
        signals.handle(signal.SIGTERM)
    finally:
        release.set()
        signals.handle(signal.SIGTERM)
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert len(built) == 2 and built[1]._scheduler is None and built[1]._poller is None
    assert refused(port)
    rival = ServiceLock(tmp_path / "miner.sqlite", role="replay")
    rival.acquire()  # released
    rival.release()


def test_a_request_still_arriving_at_a_reload_is_answered_while_the_new_service_accepts(
        tmp_path: Path, feeds: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    # The service stopping waited for the requests it was answering before the new one started: a client still
    # sending its request head (5 s at most) kept the endpoint from accepting for as long, and every health check
    # then timed out. The head's deadline and the stop's wait are the test's here: this client sends the rest of its
    # head only once the new service answers.
    import miner.http_api

    monkeypatch.setattr(miner.http_api, "READ_TIMEOUT", 600.0)
    monkeypatch.setattr(miner.http_api._Handler, "timeout", 600.0)
    monkeypatch.setattr(miner.http_api, "STOP_WAIT", 600.0)
    cfg = tmp_path / "feeds.toml"
    with reloading_asking(cfg, feeds.url) as (hup, built, asked):
        port = bound_port(built[0])
        slow = socket.create_connection(("127.0.0.1", port))
        try:
            slow.sendall(b"GET /healthz HTTP/1.0\r\n")
            http = built[0]._http
            assert http is not None
            wait_for(lambda: http._server.connections._open == 1)  # taken by the service before, not in the backlog
            hup()
            wait_for(started(built, 2))  # was: timed out, the stop waiting for the slow client
            assert answer(asked[0][1]) == "HTTP/1.0 200 OK"  # sent after the stop, before the start
            assert answer(ask(port)) == "HTTP/1.0 200 OK"
            assert built[0]._stores.open  # not closed under the request still being answered
            slow.sendall(b"Host: 127.0.0.1\r\n\r\n")
            assert answer(slow) == "HTTP/1.0 200 OK"  # by the service before
        finally:
            slow.close()
        wait_for(lambda: not built[0]._stores.open)  # closed once it was answered

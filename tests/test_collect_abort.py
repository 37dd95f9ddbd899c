"""A poller's close aborts its polls in flight: a poll blocked on a server that hangs (it accepted the connection, or
sent its headers or a TLS handshake's first byte, and then nothing) ends at once, its thread and connection with it,
rather than at the source's timeout; at a stop and at each reload. The poll given up is stored nowhere and counted as
no failure. Real loopback servers, real stores, real services; every timeout under test is 60 s."""

from __future__ import annotations

import logging
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

import pytest
from smtp_server import tls_context
from test_reload_handover import reloading

from miner.collectors import Poller
from miner.config import Config, parse_config
from miner.store import Store
from miner.timeutil import utcnow

# Well under the sources' 60 s timeout: a thread still alive then was left to its timeout.
ENDS_WITHIN = 10.0


class HangingServer:
    """Accepts connections, reads the request, and answers nothing (``silent``), or a response's headers and its
    first bytes, then nothing (``headers``); over TLS with ``tls``. Every connection is kept open until the server
    is closed."""

    def __init__(self, mode: str, tls: ssl.SSLContext | None = None) -> None:
        self.mode = mode
        self._tls = tls
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._guard = threading.Lock()
        self.hanging = threading.Semaphore(0)  # released once per connection left hanging
        threading.Thread(target=self._accept, name="hanging-server", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:  # closed
                return
            if self._tls is not None:
                conn = self._tls.wrap_socket(conn, server_side=True)
            with self._guard:
                self._conns.append(conn)
            conn.recv(65536)  # the request (or TLS hello): the client has sent it, and waits for the answer
            if self.mode == "headers":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nContent-Length: 100000\r\n\r\n"
                             b"<rss>")
            self.hanging.release()

    def wait_hanging(self, count: int = 1) -> None:
        for _ in range(count):
            assert self.hanging.acquire(timeout=60), "no poll reached the server"

    def open_connections(self) -> int:
        """The connections whose client has not closed its end (what it sent is read and dropped, then no EOF)."""
        with self._guard:
            conns = list(self._conns)
        count = 0
        for conn in conns:
            try:
                # The socket's own recv, under TLS too: its records are dropped unread, the EOF is what counts.
                while socket.socket.recv(conn, 65536, socket.MSG_DONTWAIT):
                    pass
            except BlockingIOError:  # nothing to read, and no EOF: the client holds it open
                count += 1
            except OSError:  # reset by the client
                pass
        return count

    def __enter__(self) -> HangingServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._listener.close()
        with self._guard:
            for conn in self._conns:
                conn.close()


def hanging_config(server: HangingServer, scheme: str = "http", store: str = "") -> str:
    """One source polling ``server``, with 60 s to connect and to answer."""
    return (f'{store}[collect]\nconnect_timeout = 60\n[[services]]\nname = "MTN"\n[[sources]]\nname = "hung"\n'
            f'type = "rss"\nurl = "{scheme}://127.0.0.1:{server.port}/hung.rss"\ninterval = 60\ntimeout = 60\n')


def collect_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("miner-collect")}


def blocked_reading(threads: set[threading.Thread]) -> Callable[[], bool]:
    """A check: every one of ``threads`` waits in a read of its socket (its innermost Python frame is a read of
    httpcore's network stream or of the ssl module, at the same instruction as at the check before). One not there
    yet would find its socket closed by the client's close and fail at once, with or without the abort."""
    before: dict[threading.Thread, tuple[object, int]] = {}

    def check() -> bool:
        frames = sys._current_frames()
        now: dict[threading.Thread, tuple[object, int]] = {}
        for thread in threads:
            frame = frames.get(thread.ident or 0)
            if frame is None or not (frame.f_code.co_filename.endswith(("/httpcore/_backends/sync.py", "/ssl.py"))
                                     and frame.f_code.co_name in ("read", "recv", "recv_into", "do_handshake")):
                return False
            now[thread] = (frame.f_code, frame.f_lasti)
        settled = now == before
        before.clear()
        before.update(now)
        return settled

    return check


def ended(threads: set[threading.Thread]) -> bool:
    for thread in threads:
        thread.join(timeout=ENDS_WITHIN)
    return not any(t.is_alive() for t in threads)


def wait_for(check: Callable[[], bool], timeout: float = ENDS_WITHIN) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def quiet_warnings(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Fails the test if miner logs a warning or error: a poll given up is no failure of its source."""
    caplog.set_level(logging.DEBUG, logger="miner")
    yield caplog
    loud = [r.getMessage() for r in caplog.records if r.name.startswith("miner") and r.levelno >= logging.WARNING
            and "MINER_HASH_KEY" not in r.getMessage()]
    assert not loud


@pytest.mark.parametrize(("mode", "scheme", "tls"),
                         [("silent", "http", False), ("headers", "http", False), ("silent", "https", False),
                          ("headers", "https", True)],
                         ids=["no-answer", "headers-then-nothing", "tls-handshake-unanswered",
                              "tls-headers-then-nothing"])
def test_closing_the_poller_ends_a_poll_blocked_on_a_server_that_hangs(
        mode: str, scheme: str, tls: bool, quiet_warnings: pytest.LogCaptureFixture, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    context = None
    if tls:
        context = tls_context(tmp_path)
        # The server's certificate trusted: httpx reads SSL_CERT_FILE when the poller's client is made.
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "cert.pem"))
    with HangingServer(mode, context) as server:
        config = parse_config(hanging_config(server, scheme))
        before = collect_threads()
        poller = Poller(config.collect, config.services, hash_key=b"k")
        try:
            assert poller.pool.start([(config.sources[0], None)], utcnow(), time.monotonic()) == ["hung"]
            server.wait_hanging()
            workers = collect_threads() - before
            assert workers and wait_for(blocked_reading(workers))
        finally:
            poller.close()
        assert ended(workers)  # was: blocked until the source's 60 s timeout
        assert wait_for(lambda: server.open_connections() == 0)  # closed, not left open for those 60 s
        assert not list(poller.pool.landed(time.monotonic()))  # given up: nothing to store
    assert "poll given up" in quiet_warnings.text


def test_a_stop_ends_the_poll_of_a_server_that_hangs_and_leaves_its_source_due(
        tmp_path: Path, quiet_warnings: pytest.LogCaptureFixture) -> None:
    from miner.service import JobSpec, Service, ServiceOptions

    db = tmp_path / "miner.sqlite"
    with HangingServer("headers") as server:
        before = collect_threads()
        service = Service(parse_config(hanging_config(server, store=f'[store]\npath = "{db}"\n')), db,
                          ServiceOptions(jobs=(JobSpec("collect", 15.0),), http=False))
        service.start()
        try:
            server.wait_hanging()
            workers = collect_threads() - before
            assert workers and wait_for(blocked_reading(workers))
            service._poller.stop_grace = 0.5  # the default is 5 s: the test only needs it shorter than the hang
        finally:
            service.stop()
        assert ended(workers)
        assert wait_for(lambda: server.open_connections() == 0)
    store = Store.open(db)
    try:
        row = store.source_row("hung")
        assert row is not None
        assert (row["polls"], row["consecutive_failures"], row["last_error"]) == (0, 0, None)
        assert store.due_sources(["hung"], utcnow()) == ["hung"]
    finally:
        store.close()


def test_reloads_while_a_server_hangs_leave_no_threads_or_connections_behind(
        tmp_path: Path, quiet_warnings: pytest.LogCaptureFixture) -> None:
    from miner.service import JobSpec, Service, ServiceOptions

    cfg, db = tmp_path / "feeds.toml", tmp_path / "miner.sqlite"
    built: list[Service] = []

    def make(config: Config) -> Service:
        built.append(Service(config, db, ServiceOptions(jobs=(JobSpec("collect", 15.0),), http=False)))
        return built[-1]

    with HangingServer("silent") as server:
        cfg.write_text(hanging_config(server, store=f'[store]\npath = "{db}"\n'), encoding="utf-8")
        baseline = collect_threads()
        with reloading(cfg, make) as hup:
            server.wait_hanging()
            for n in range(1, 4):
                old = collect_threads() - baseline
                assert old and wait_for(blocked_reading(old & collect_threads()))
                built[-1]._poller.stop_grace = 0.5
                hup()
                server.wait_hanging()  # the new service polls the source again
                assert len(built) == n + 1
                assert ended(old)  # was: one more thread blocked per reload, each for the 60 s timeout
                assert wait_for(lambda: server.open_connections() == 1)  # the new service's poll's alone


def test_the_endpoint_answers_while_a_reload_waits_for_a_poll_in_flight(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    # The service stopped its endpoint first: connections to it (/healthz, reports, the board) were refused for the
    # whole of the stop's grace for the polls in flight, 5 s of every reload while a source hung.
    import httpx
    from ports import bound_port

    from miner.service import JobSpec, Service, ServiceOptions

    caplog.set_level(logging.INFO, logger="miner")
    cfg, db = tmp_path / "feeds.toml", tmp_path / "miner.sqlite"
    built: list[Service] = []

    def make(config: Config) -> Service:
        # Every 2 s: a run returns after 1 s, the poll carried over, and the stop then waits for it.
        built.append(Service(config, db, ServiceOptions(jobs=(JobSpec("collect", 2.0),))))
        return built[-1]

    def healthz() -> int:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30).status_code

    with HangingServer("silent") as server:
        # Port 0: any free port, kept across the reload (the same host and port: its socket is handed over).
        cfg.write_text(f'[store]\npath = "{db}"\n[server]\nenabled = true\nport = 0\n' + hanging_config(server),
                       encoding="utf-8")
        with reloading(cfg, make) as hup:
            server.wait_hanging()
            assert wait_for(lambda: built[0].http_address is not None)
            port = bound_port(built[0])
            built[0]._poller.stop_grace = 30.0  # a grace far longer than the test takes: it stops in it
            hup()
            assert wait_for(lambda: built[0]._scheduler is None)  # its jobs ended: the stop's grace for the poll
            time.sleep(0.5)
            # Still in the grace: the new service is built and its model loaded (a reload prepares it before the
            # stop), but it has not started.
            assert built[0]._poller is not None and len(built) == 2 and built[1]._http is None
            assert healthz() in (200, 503)  # was: httpx.ConnectError, the connection refused
            server.close()  # the poll ends: the reload goes on
            assert wait_for(lambda: len(built) == 2 and built[1]._http is not None, timeout=60)
            assert built[1].http_address == ("127.0.0.1", port)
            assert healthz() in (200, 503)
    # The poll that ended in the grace, stored, is in the log: it was in no line.
    assert any(r.getMessage().startswith("stopping: stored the 1 poll that ended in the grace: 0 new posts, 1 error "
                                         "(hung)") for r in caplog.records)

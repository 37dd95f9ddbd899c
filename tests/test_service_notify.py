"""`miner run` speaks systemd's service notification protocol: a real unix datagram socket bound here (abstract and
on a path) stands for systemd's, named by NOTIFY_SOCKET in the service's environment; the real `miner run` in a
subprocess on a 0.1.0 store, and a real service started in-process with real sources for its watchdog."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from fakeserver import FakeServer, Reply
from smtp_server import SmtpServer
from test_alerts_support import open_incident
from test_service import backlog_service, stop, wait_for, write_config
from test_store_upgrade import _release_0_1_0_store, write_lock_held

from miner.service import JobSpec, Service, ServiceOptions
from miner.service_notify import Notifier
from miner.store import Store
from miner.store.migrations import MIGRATIONS
from miner.timeutil import utcnow

ROOT = Path(__file__).resolve().parent.parent
WAITING = "STATUS=waiting for another process's upgrade of the store (it holds the write lock)"


class Systemd:
    """The notification socket's receiving end, read as systemd reads it, at once (its queue holds ten datagrams):
    each datagram one message, its lines its fields."""

    def __init__(self, sock: socket.socket, name: str) -> None:
        self.sock = sock
        self.name = name  # as NOTIFY_SOCKET names it
        self.messages: list[list[str]] = []
        self._read = 0  # messages[:_read] have been looked at by next() or drain()
        self._came = threading.Condition()
        self._reader = threading.Thread(target=self._receive, daemon=True)
        self._reader.start()

    def _receive(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:  # closed
                return
            with self._came:
                self.messages.append(data.decode().split("\n"))
                self._came.notify_all()

    def next(self, match: Callable[[list[str]], bool], timeout: float = 120.0) -> list[str]:
        """The next message ``match`` takes (those before it passed over)."""
        deadline = time.monotonic() + timeout
        with self._came:
            while True:
                while self._read < len(self.messages):
                    message = self.messages[self._read]
                    self._read += 1
                    if match(message):
                        return message
                if (left := deadline - time.monotonic()) <= 0:
                    raise AssertionError(f"no such message in {timeout:.0f} s; received: {self.messages}")
                self._came.wait(left)

    def seen(self) -> list[list[str]]:
        """The messages next() has looked at, up to the one it returned last: not those that came after it while the
        test went on (the watchdog's pings, every 0.2 s from READY on, on a loaded runner)."""
        with self._came:
            return self.messages[:self._read]

    def drain(self) -> list[list[str]]:
        """The messages received and not looked at yet."""
        with self._came:
            out, self._read = self.messages[self._read:], len(self.messages)
        return out

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._reader.join(timeout=5)


def has(field: str) -> Callable[[list[str]], bool]:
    return lambda message: field in message


@pytest.fixture(params=["abstract", "path"])
def systemd(request: pytest.FixtureRequest) -> Iterator[Systemd]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    folder = None
    if request.param == "abstract":
        name = f"@miner-test-{uuid.uuid4().hex}"
        sock.bind("\0" + name[1:])
    else:
        folder = tempfile.mkdtemp(prefix="sdn")  # a path under 108 bytes, which pytest's tmp_path may pass
        name = os.path.join(folder, "notify")
        sock.bind(name)
    systemd = Systemd(sock, name)
    try:
        yield systemd
    finally:
        systemd.close()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def _config(tmp_path: Path, store: Path) -> Path:
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(f'[store]\npath = "{store}"\n[[services]]\nname = "MTN"\n', encoding="utf-8")
    return cfg


def _run(cfg: Path, notify: str, **env: str) -> subprocess.Popen[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("MINER_CONFIG", "MINER_DB", "WATCHDOG_USEC",
                                                             "WATCHDOG_PID")}
    return subprocess.Popen([sys.executable, "-m", "miner", "--config", str(cfg), "run"], cwd=cfg.parent,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**base, "PYTHONPATH": str(ROOT), "NOTIFY_SOCKET": notify, **env})


def test_run_tells_systemd_each_phase_of_its_start_then_ready_reloading_and_stopping(tmp_path: Path,
                                                                                     systemd: Systemd) -> None:
    # Type=simple held the service started at its fork: `systemctl start` returned, and units after it started,
    # while the store was still upgraded; `systemctl reload` returned before the reload was done.
    store = tmp_path / "miner.sqlite"
    _release_0_1_0_store(store, buckets=10)
    cfg = _config(tmp_path, store)
    proc = _run(cfg, systemd.name)
    try:
        ready = systemd.next(has("READY=1"))
        assert f"MAINPID={proc.pid}" in ready
        assert any(f.startswith("STATUS=running: model ") and f.endswith(", 0 sources") for f in ready), ready
        statuses = [f for m in systemd.seen() for f in m if f.startswith("STATUS=")]
        assert statuses[:2] == ["STATUS=starting", "STATUS=checking the store"], statuses
        upgrades = [s for s in statuses if s.startswith("STATUS=upgrading the store: migration ")]
        total = len(MIGRATIONS) - 2
        assert upgrades[0] == f"STATUS=upgrading the store: migration {MIGRATIONS[2].id} (1 of {total})", upgrades
        assert upgrades[-1].endswith(f"({total} of {total})") and len(upgrades) == total
        assert statuses.index("STATUS=loading the model") < statuses.index(upgrades[0])
        for message in systemd.seen()[:-1]:  # each phase's status extends the start's timeout
            assert "READY=1" not in message and "WATCHDOG=1" not in message
            assert any(f.startswith("EXTEND_TIMEOUT_USEC=") for f in message), message

        before = time.monotonic_ns() // 1000  # CLOCK_MONOTONIC, the service's as well as this process's
        os.kill(proc.pid, signal.SIGHUP)
        reloading = systemd.next(has("RELOADING=1"))
        stamp = next(f for f in reloading if f.startswith("MONOTONIC_USEC="))
        assert int(stamp.split("=")[1]) >= before  # systemd takes it as this reload's only if dated after the signal
        reloaded = systemd.next(has("READY=1"))
        assert not any(f.startswith("MAINPID=") for f in reloaded)
        assert any(f.startswith("STATUS=running: model ") for f in reloaded), reloaded

        cfg.write_text(cfg.read_text(encoding="utf-8") + "[detector]\nno_such_key = 1\n", encoding="utf-8")
        os.kill(proc.pid, signal.SIGHUP)
        systemd.next(has("RELOADING=1"))
        refused = systemd.next(has("READY=1"))  # the reload is over: the service runs on with the config it had
        assert "STATUS=running with the config read before: the new one was refused (see the log)" in refused

        proc.send_signal(signal.SIGTERM)
        systemd.next(has("STOPPING=1"))
    finally:
        code, err = stop(proc)  # a SIGTERM, unless it has exited
    assert code == 0, err


def test_a_service_stopping_on_its_own_tells_systemd_before_it_exits(tmp_path: Path, systemd: Systemd) -> None:
    # The store file deleted under it: the service stops with an error, and systemd hears it is stopping first.
    store = tmp_path / "miner.sqlite"
    proc = _run(_config(tmp_path, store), systemd.name)
    try:
        systemd.next(has("READY=1"))
        store.unlink()
        stopping = systemd.next(has("STOPPING=1"))
        assert "STATUS=stopping: waiting for running jobs to finish their batch" in stopping
    finally:
        code, err = stop(proc)  # a SIGTERM, unless it has exited
    assert code == 1, err


def test_a_long_start_extends_its_timeout_and_the_watchdog_is_pinged_once_ready(tmp_path: Path,
                                                                              systemd: Systemd) -> None:
    # Waiting for another process's upgrade (up to 15 minutes) outlasted TimeoutStartSec: systemd killed the start.
    store = tmp_path / "miner.sqlite"
    _release_0_1_0_store(store, buckets=10)
    with write_lock_held(store, 300) as holder:
        proc = _run(_config(tmp_path, store), systemd.name, WATCHDOG_USEC="400000")
        try:
            waiting = systemd.next(has(WAITING))
            assert "EXTEND_TIMEOUT_USEC=30000000" in waiting
            # Then one every 10 s while the phase lasts, on its own.
            assert systemd.next(lambda m: m[0].startswith("EXTEND_TIMEOUT_USEC="), timeout=60) == [
                "EXTEND_TIMEOUT_USEC=30000000"]
        finally:
            holder.kill()
            holder.wait()
    try:
        systemd.next(has("READY=1"))
        assert not any("WATCHDOG=1" in m for m in systemd.seen())  # systemd's watchdog runs only from READY on
        for _ in range(3):
            systemd.next(has("WATCHDOG=1"), timeout=60)
    finally:
        code, err = stop(proc)
    assert code == 0, err


def _collecting(tmp_path: Path, url: str, every: float, notifier: Notifier, extra: str = "") -> Service:
    from miner.config import load_config

    return Service(load_config(write_config(tmp_path, url, extra)), tmp_path / "miner.sqlite",
                   ServiceOptions(jobs=(JobSpec("collect", every),), http=False, notify=notifier))


def _ticks_after(notifier: Notifier, count: int) -> None:
    seen = notifier.ticks
    wait_for(lambda: notifier.ticks >= seen + count, timeout=60)


@contextmanager
def _slow_source_service(tmp_path: Path, systemd: Systemd, every: float, timeout: int
                         ) -> Iterator[tuple[Service, FakeServer, Notifier]]:
    """A started service collecting, every ``every`` s, one source that answers in a minute (its poll's ``timeout``
    longer), watched by systemd's watchdog at 0.2 s; its stop gives the poll up after 0.5 s."""
    notifier = Notifier.from_env({"NOTIFY_SOCKET": systemd.name, "WATCHDOG_USEC": "200000"})
    with FakeServer() as server:
        server.serve("/slow.rss", Reply(200, b"<rss/>", content_type="application/rss+xml", delay=60.0))
        service = _collecting(tmp_path, f"{server.url}/slow.rss", every, notifier, f"timeout = {timeout}")
        service.start()
        try:
            assert service._poller is not None and service._started is not None
            service._poller.stop_grace = 0.5
            yield service, server, notifier
        finally:
            service.stop()
            notifier.close()


def test_the_watchdog_is_no_longer_pinged_while_a_job_is_stuck_past_its_limit(tmp_path: Path,
                                                                             systemd: Systemd) -> None:
    # A run that never ends (its poll waited on, as a lock never released would be) kept the pings going: systemd
    # never restarted a service whose jobs had stopped.
    # Hourly: the run waits for its poll (up to its interval less a second) the whole test long.
    with _slow_source_service(tmp_path, systemd, 3600.0, 120) as (service, server, notifier):
        assert service._started is not None
        systemd.next(has("READY=1"))
        systemd.next(has("WATCHDOG=1"), timeout=60)
        wait_for(lambda: len(server.requests_to("/slow.rss")) == 1, timeout=30)
        service._started -= 4 * 3600.0  # as if the run had hung four hours, past 3 intervals and a minute
        stopped = systemd.next(lambda m: m[0].startswith("STATUS=not pinging the watchdog"), timeout=60)
        assert "the collect job has not ended a run for" in stopped[0]
        systemd.drain()
        _ticks_after(notifier, 5)
        assert not any("WATCHDOG=1" in m for m in systemd.drain())


def test_the_watchdog_is_pinged_while_a_source_hangs(tmp_path: Path, systemd: Systemd) -> None:
    # A source that does not answer is no stuck job: its poll is carried over and the runs end; a restart would only
    # lose what the service holds.
    with _slow_source_service(tmp_path, systemd, 1.0, 90) as (service, server, notifier):
        assert service._started is not None
        wait_for(lambda: service.health["collect"].runs >= 3, timeout=30)
        assert len(server.requests_to("/slow.rss")) == 1  # still in flight
        service._started -= 120.0  # past the job's limit since its start: its runs ended since
        systemd.drain()
        _ticks_after(notifier, 5)
        assert any("WATCHDOG=1" in m for m in systemd.drain())
        assert service.stuck() is None


def test_a_notify_socket_gone_is_logged_once_and_the_service_runs_on(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    folder = Path(tempfile.mkdtemp(prefix="sdn"))
    try:
        notifier = Notifier.from_env({"NOTIFY_SOCKET": str(folder / "gone"), "WATCHDOG_USEC": "100000"})
        service = _collecting(tmp_path, "http://127.0.0.1:9/feed.rss", 3600.0, notifier)
        with caplog.at_level(logging.WARNING, logger="miner.service"):
            service.start()
            try:
                _ticks_after(notifier, 3)  # pings refused as well
            finally:
                service.stop()
                notifier.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    told = [r for r in caplog.records if "cannot tell systemd" in r.getMessage()]
    assert len(told) == 1 and "(NOTIFY_SOCKET)" in told[0].getMessage(), told


def test_a_long_classify_backlog_is_no_stuck_job_while_its_batches_go_through(tmp_path: Path) -> None:
    # A first start on a store filled by `miner ingest` classifies its backlog in one run, for longer than the process
    # job's limit: counted from the run's start alone, the watchdog would restart a service getting on with it.
    service, store = backlog_service(tmp_path)
    store.close()
    service.start()
    try:
        health = service.health["process"]
        wait_for(lambda: health.alive_monotonic is not None)  # a batch classified (or else the run ended)
        assert service._started is not None
        service._started -= 4 * 3600.0  # as if the run had gone on four hours, past 3 intervals and a minute
        stuck, runs = service.stuck(), health.runs
        assert runs == 0, "the backlog's run ended before the test looked"
        assert stuck is None
    finally:
        service.stop()


def alerting_service(tmp_path: Path, smtp: SmtpServer, n: int, notifier: Notifier | None = None, every: float = 1.0,
                     spare: int = 0, smtp_timeout: float = 30.0) -> tuple[Service, Store]:
    """A service running the alerts job alone, every ``every`` s, mailing ``smtp`` through ``smtp_timeout`` (the
    default smtp.timeout) an alert for each of ``n`` incidents opened in its store (not started; one per service
    Svc0..., ``spare`` services more without one), and that store, open."""
    from miner.config import load_config

    services = "".join(f'[[services]]\nname = "Svc{i}"\n' for i in range(n + spare))
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "miner.sqlite"}"\n{services}[alerts]\ngroup_wait = 0\n'
                   f'[alerts.smtp]\nhost = "127.0.0.1"\nport = {smtp.port}\nsecurity = "none"\n'
                   f'timeout = {smtp_timeout}\n'
                   '[[alerts.routes]]\nname = "oncall"\nemail = ["oncall@example.org"]\n', encoding="utf-8")
    store = Store.open(tmp_path / "miner.sqlite")
    for i in range(n):  # each its own group: a message each
        open_incident(store, f"Svc{i}", utcnow() - timedelta(minutes=2), posts=False, series=False)
    return Service(load_config(cfg), tmp_path / "miner.sqlite", ServiceOptions(
        jobs=(JobSpec("alerts", every),), http=False, **({"notify": notifier} if notifier else {}))), store


def test_a_long_alerts_backlog_to_a_slow_mail_server_is_no_stuck_job_while_its_messages_go_out(
        tmp_path: Path, systemd: Systemd) -> None:
    # An alerts run sent every due message before it ended: 100 queued through a mail outage, 5-20 s each to a slow
    # but working server, outlasted the job's limit, so the pings stopped and systemd restarted the service mid-send,
    # and /healthz said the job was stuck.
    n, smtp = 12, SmtpServer()
    smtp.inbox.delay = 0.5  # two messages at most in each second (the job's interval) of a run
    smtp.start()
    notifier = Notifier.from_env({"NOTIFY_SOCKET": systemd.name, "WATCHDOG_USEC": "200000"})
    service, store = alerting_service(tmp_path, smtp, n, notifier)
    service.start()
    try:
        systemd.next(has("READY=1"))
        wait_for(lambda: len(smtp.inbox.messages) >= 3, timeout=60)  # sent in the run's second second at least
        assert service._started is not None
        service._started -= 4 * 3600.0  # as if the run had gone on four hours, past 3 intervals and a minute
        stuck, (ok, health) = service.stuck(), service.healthz()
        assert store.outbox_listing(["pending"]), "the backlog went out before the test looked"
        assert stuck is None
        assert ok, health
        systemd.drain()
        _ticks_after(notifier, 5)
        assert any("WATCHDOG=1" in m for m in systemd.drain())
        wait_for(lambda: len(store.outbox_listing(["sent"])) == n, timeout=60)
    finally:
        service.stop()
        notifier.close()
        smtp.stop()
    # Each sent once, none left.
    ids = smtp.inbox.message_ids()
    assert len(ids) == len(set(ids)) == n
    listed = store.outbox_listing(["pending", "sending", "sent", "failed"])
    assert sorted(ids) == sorted(r["message_id"] for r in listed)
    store.close()


def test_one_send_to_a_slow_mail_server_within_its_timeouts_is_no_stuck_alerts_job(tmp_path: Path) -> None:
    # smtp.timeout bounds each SMTP command, a send 30 s x 10 at the defaults: a server slow at each step kept one
    # send going past the job's 150 s, and the watchdog restarted the service mid-send (it went again after its
    # lease). The job's limit is now what its run may take, and a run past it is still stuck.
    smtp = SmtpServer()
    smtp.inbox.delay = 20.0  # under smtp.timeout: the send is held, not cut, the whole test long
    smtp.start()
    service, store = alerting_service(tmp_path, smtp, 1)
    service.start()
    try:
        wait_for(lambda: bool(store.outbox_listing(["sending"])), timeout=60)
        assert service._started is not None
        service._started -= 120.0  # past 3 intervals and a minute (63 s), within 2 + 300 + 60 s
        stuck, (ok, health) = service.stuck(), service.healthz()
        service._started -= 300.0  # past them too
        hung = service.stuck()
        assert store.outbox_listing(["sending"]), "the send ended before the test looked"
    finally:
        smtp.stop()  # cuts the send short: retried later, no wait for the rest of its 20 s
        service.stop()
    assert stuck is None
    assert ok, health
    assert hung is not None and "past its limit of 362 s (two of its intervals, its slowest send" in hung, hung
    store.close()

"""SIGHUP reloads `miner run`'s config, on the real CLI in a subprocess: a config refused is logged with `config
check`'s message while the service runs on untouched; one accepted restarts the service in the same process with
it (new sources polled, the HTTP endpoint on its new port); one whose port is taken is refused as one config check
refuses is, the service running on untouched."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from click.testing import CliRunner
from fakeserver import FakeServer
from ports import endpoint_port, reserve

if TYPE_CHECKING:
    from miner.config import Config

ROOT = Path(__file__).resolve().parent.parent


def write_config(path: Path, feed: str, port: int = 0, sources: tuple[str, ...] = ("alpha",), extra: str = "") -> None:
    text = f"""
[store]
path = "{path.parent / 'miner.sqlite'}"
retention_days = 36500

[server]
enabled = true
port = {port}

[[services]]
name = "MTN"
aliases = ["mtnug"]
"""
    for name in sources:
        text += f'\n[[sources]]\nname = "{name}"\ntype = "rss"\nurl = "{feed}/{name}.rss"\ninterval = 3600\n'
    path.write_text(text + extra, encoding="utf-8")


class Running:
    """`miner run` in a subprocess, its JSON log read as it comes."""

    def __init__(self, cfg: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("MINER_CONFIG", "MINER_DB")}
        self.proc = subprocess.Popen([sys.executable, "-m", "miner", "--config", str(cfg), "run", "--log-format",
                                      "json"], cwd=cfg.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, env={**env, "PYTHONPATH": str(ROOT)})
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def messages(self) -> list[str]:
        out = []
        for line in list(self.lines):
            try:
                out.append(json.loads(line)["msg"])
            except ValueError:
                out.append(line.rstrip("\n"))
        return out

    def wait_for(self, check: Callable[[], bool], timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._reader.join(timeout=5)
                raise AssertionError(f"service exited ({self.proc.returncode}): {''.join(self.lines)}")
            if check():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting; the log: {''.join(self.lines)}")

    def port(self) -> int:
        """The port the HTTP endpoint listens on, as the log's last `http endpoint on` line names it (waited for):
        the one bound for port 0."""
        self.wait_for(lambda: endpoint_port(list(self.lines)) is not None)
        port = endpoint_port(list(self.lines))
        assert port is not None
        return port

    def logged(self, start: str) -> Callable[[], bool]:
        return lambda: any(m.startswith(start) for m in self.messages())

    def hup(self) -> None:
        os.kill(self.proc.pid, signal.SIGHUP)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._reader.join(timeout=5)
        return code


@pytest.fixture
def feeds() -> Iterator[FakeServer]:
    with FakeServer() as server:
        for name in ("alpha", "beta"):
            server.serve_fixture(f"/{name}.rss", "rss/forum_latest.rss")
        yield server


def healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30).status_code == 200
    except httpx.HTTPError:
        return False


def metric(port: int, series: str) -> str | None:
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text.splitlines():
        if line.startswith(series + " "):
            return line.split()[-1]
    return None


def stored_sources(db: Path) -> set[str]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sources")}


def test_sighup_logs_a_refused_config_and_runs_on_then_restarts_with_an_accepted_one(tmp_path: Path,
                                                                                       feeds: FakeServer) -> None:
    from miner.cli import main

    cfg, db = tmp_path / "feeds.toml", tmp_path / "miner.sqlite"
    write_config(cfg, feeds.url, 0)  # any free port, which the log names
    service = Running(cfg)
    # The new port, known before the service binds it: held by the test throughout, as one picked and let go could be
    # taken first by anything else (the service binds it all the same: see ports.reserve).
    second = reserve()
    second_port = second.getsockname()[1]
    try:
        first_port = service.port()
        service.wait_for(lambda: healthy(first_port) and len(feeds.requests_to("/alpha.rss")) == 1)

        # A typo: the service runs on as it was, and the log has config check's message, key and line included.
        write_config(cfg, feeds.url, second_port, ("alpha", "beta"), extra="\n[detector]\nthreshhold = 4\n")
        check = CliRunner().invoke(main, ["config", "check", str(cfg)])
        assert check.exit_code == 1
        message = check.output.strip().removeprefix("Error: ")
        line = cfg.read_text(encoding="utf-8").splitlines().index("threshhold = 4") + 1
        assert message.startswith(f"{cfg}:{line}: detector.threshhold"), message
        service.hup()
        service.wait_for(service.logged("config reload failed"))
        assert f"config reload failed, still running with the config read before: {message}" in service.messages()
        assert not any(m.startswith("stopping") for m in service.messages())
        assert healthy(first_port) and not healthy(second_port)
        assert metric(first_port, 'miner_config_reloads_total{result="failure"}') == "1"
        assert metric(first_port, "miner_config_last_reload_successful") == "0"
        assert feeds.requests_to("/beta.rss") == []
        assert service.proc.poll() is None

        # Fixed: a new source and a new port, taken up by a restart in the same process.
        write_config(cfg, feeds.url, second_port, ("alpha", "beta"))
        service.hup()
        # The log line last: the new service answers and polls before the reload is counted and logged.
        service.wait_for(lambda: healthy(second_port) and len(feeds.requests_to("/beta.rss")) == 1
                         and service.logged(f"config reloaded from {cfg}")())
        assert not healthy(first_port)
        assert "beta" in stored_sources(db)
        messages = service.messages()
        assert "SIGHUP: the config changed (sources, server): restarting the service with it" in messages
        assert f"config reloaded from {cfg}" in messages
        assert metric(second_port, 'miner_config_reloads_total{result="success"}') == "1"
        assert metric(second_port, 'miner_config_reloads_total{result="failure"}') == "1"
        assert metric(second_port, "miner_config_last_reload_successful") == "1"
        # The source the reload added has its failed polls at 0 from the new service's start, as alpha has: begun at
        # 1 with its first failure, the series showed no increase() for it.
        assert metric(second_port, 'miner_poll_errors_total{source="beta"}') == "0"
        assert metric(second_port, 'miner_poll_errors_total{source="alpha"}') == "0"

        # Unchanged: restarted all the same, and said so.
        service.hup()
        service.wait_for(lambda: service.messages().count(f"config reloaded from {cfg}") == 2)
        assert any(m.startswith("SIGHUP: the config is unchanged: restarting") for m in service.messages())
        service.wait_for(lambda: healthy(second_port))
        assert metric(second_port, 'miner_config_reloads_total{result="success"}') == "2"

        # A source removed: its series goes with it, as a new service has new metrics.
        write_config(cfg, feeds.url, second_port, ("beta",))
        service.hup()
        service.wait_for(lambda: service.messages().count(f"config reloaded from {cfg}") == 3)
        service.wait_for(lambda: healthy(second_port))
        assert metric(second_port, 'miner_poll_errors_total{source="beta"}') == "0"
        assert metric(second_port, 'miner_poll_errors_total{source="alpha"}') is None
    finally:
        code = service.stop()
        second.close()
    assert code == 0, "".join(service.lines)
    assert service.messages()[-1] == "stopped"
    assert not (tmp_path / "miner.sqlite.lock").read_text().strip()


def test_a_config_whose_port_is_taken_is_refused_and_the_service_before_runs_on_untouched(tmp_path: Path,
                                                                                         feeds: FakeServer) -> None:
    # Found at the new service's start, after the service before had stopped, which was then started again: its
    # endpoint refused connections meanwhile and came back on another port (port 0), its jobs ran again. Refused
    # before anything stops, as nginx and Prometheus refuse a config they cannot apply.
    cfg = tmp_path / "feeds.toml"
    write_config(cfg, feeds.url, 0)
    service = Running(cfg)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        taken_port = taken.getsockname()[1]
        try:
            port = service.port()
            service.wait_for(lambda: healthy(port) and len(feeds.requests_to("/alpha.rss")) == 1)
            # Valid for config check, but its port is someone else's.
            write_config(cfg, feeds.url, taken_port, ("alpha", "beta"))
            service.hup()
            service.wait_for(service.logged("config reload failed, still running with the config read before"))
            failed = [m for m in service.messages() if m.startswith("config reload failed")]
            assert failed == ["config reload failed, still running with the config read before: cannot listen on "
                              f"127.0.0.1:{taken_port} (Address already in use)"], failed
            # The same service on the same port: never stopped, nor started again.
            assert healthy(port) and endpoint_port(service.lines) == port
            started = [m for m in service.messages() if m.startswith(("miner service started", "stopping"))]
            assert len(started) == 1 and started[0].endswith(", 1 source"), started
            assert metric(port, 'miner_config_reloads_total{result="failure"}') == "1"
            assert metric(port, "miner_config_last_reload_successful") == "0"
            assert feeds.requests_to("/beta.rss") == []  # the new config never ran
            assert service.proc.poll() is None
        finally:
            code = service.stop()
    assert code == 0, "".join(service.lines)
    assert not (tmp_path / "miner.sqlite.lock").read_text().strip()


def test_a_model_refused_at_a_reload_leaves_the_service_before_running_in_a_thread(
        tmp_path: Path, feeds: FakeServer, caplog: pytest.LogCaptureFixture) -> None:
    # The reloads without a process: Signals.handle is what the signal handlers call. The new model is loaded while
    # the service before runs: refused, nothing stopped. It was loaded after that service had stopped, and a third
    # service started again with the config before, its endpoint waiting meanwhile.
    from miner.config_files import load_checked
    from miner.service import JobSpec, Service, ServiceOptions
    from miner.service_reload import Reloader, Signals

    cfg = tmp_path / "feeds.toml"
    write_config(cfg, feeds.url)
    built: list[Service] = []

    def make(config: Config) -> Service:
        built.append(Service(config, tmp_path / "miner.sqlite",
                             ServiceOptions(jobs=(JobSpec("collect", 3600.0),), http=False)))
        return built[-1]

    caplog.set_level("INFO", logger="miner.service_reload")
    caplog.set_level("INFO", logger="miner.service")
    signals = Signals()
    first = load_checked(cfg)
    reloader = Reloader(first, lambda: load_checked(cfg), make, signals)
    thread = threading.Thread(target=reloader.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while not (built and built[0].health["collect"].runs == 1) and time.monotonic() < deadline:
            time.sleep(0.05)
        # A folder config check accepts, but with no model in it: only the start finds out.
        (tmp_path / "no-model").mkdir()
        write_config(cfg, feeds.url, 0, ("alpha", "beta"), extra='\n[classifier]\nmodel_dir = "no-model"\n')
        signals.handle(signal.SIGHUP)
        failed = "config reload failed, still running with the config read before: "
        while failed not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        assert f"{failed}{tmp_path / 'no-model' / 'model.json'}: model metadata not found" in caplog.text
        assert len(built) == 2 and built[1].config.classifier.model_dir == "no-model"
        assert built[1]._scheduler is None and built[1]._poller is None  # never started
        assert built[0]._scheduler is not None and reloader.config is first  # never stopped
        assert not any(r.getMessage().startswith("stopping") for r in caplog.records)
        assert built[0].metrics.get("miner_config_reloads_total", result="failure") == 1
        assert feeds.requests_to("/beta.rss") == []
    finally:
        signals.handle(signal.SIGTERM)
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert built[0].lock._fd is None


def test_a_reload_frees_the_service_before_and_its_model(tmp_path: Path, feeds: FakeServer) -> None:
    # The stopped service's parts refer to one another, and only a full collection freed them: Python's collector
    # runs one seldom, so each reload kept the old service and its model (30 MB or more), 140 MB grew to 630 MB over
    # 40 reloads. Automatic collections are off here, so that none frees it by chance.
    import gc
    import weakref

    from miner.config_files import load_checked
    from miner.service import JobSpec, Service, ServiceOptions
    from miner.service_reload import Reloader, Signals

    cfg = tmp_path / "feeds.toml"
    write_config(cfg, feeds.url)
    built: list[weakref.ref[Service]] = []

    def make(config: Config) -> Service:
        service = Service(config, tmp_path / "miner.sqlite",
                          ServiceOptions(jobs=(JobSpec("collect", 3600.0),), http=False))
        built.append(weakref.ref(service))
        return service

    def started(n: int) -> bool:
        service = built[n]() if len(built) > n else None
        return service is not None and service.health["collect"].runs == 1

    signals = Signals()
    reloader = Reloader(load_checked(cfg), lambda: load_checked(cfg), make, signals)
    thread = threading.Thread(target=reloader.run, daemon=True)
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        thread.start()
        deadline = time.monotonic() + 120
        while not started(0) and time.monotonic() < deadline:
            time.sleep(0.05)
        first = built[0]()
        assert first is not None and first._classifier is not None
        model = weakref.ref(first._classifier)
        del first
        signals.handle(signal.SIGHUP)
        # Collected once the new service has started (it loaded its model before the stop): waited for.
        while not (started(1) and built[0]() is None) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started(1)
        assert built[0]() is None and model() is None
    finally:
        signals.handle(signal.SIGTERM)
        thread.join(timeout=60)
        if was_enabled:
            gc.enable()
    assert not thread.is_alive()


def test_a_reload_that_fails_to_start_frees_the_service_it_built(tmp_path: Path, feeds: FakeServer) -> None:
    # The new service, its model loaded before its store was found unreadable, was kept as the one before was.
    import gc
    import weakref

    from miner.config_files import load_checked
    from miner.service import JobSpec, Service, ServiceOptions
    from miner.service_reload import Reloader, Signals

    cfg = tmp_path / "feeds.toml"
    write_config(cfg, feeds.url)
    built: list[weakref.ref[Service]] = []

    def make(config: Config) -> Service:
        service = Service(config, config.store.path, ServiceOptions(jobs=(JobSpec("collect", 3600.0),)))
        built.append(weakref.ref(service))
        return service

    def started(n: int) -> bool:
        service = built[n]() if len(built) > n else None
        return service is not None and service.health["collect"].runs == 1

    signals = Signals()
    reloader = Reloader(load_checked(cfg), lambda: load_checked(cfg), make, signals)
    thread = threading.Thread(target=reloader.run, daemon=True)
    was_enabled = gc.isenabled()
    gc.disable()
    (tmp_path / "other.sqlite").write_bytes(b"not a database " * 512)  # found only by the new service's start
    try:
        thread.start()
        deadline = time.monotonic() + 120
        while not started(0) and time.monotonic() < deadline:
            time.sleep(0.05)
        write_config(cfg, feeds.url)
        cfg.write_text(cfg.read_text().replace("miner.sqlite", "other.sqlite"))
        signals.handle(signal.SIGHUP)
        while not (started(2) and built[0]() is None) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started(2)
        assert built[0]() is None and built[1]() is None
    finally:
        signals.handle(signal.SIGTERM)
        thread.join(timeout=60)
        if was_enabled:
            gc.enable()
    assert not thread.is_alive()


def _caught(pid: int) -> int:
    """The mask of the signals process ``pid`` has a handler for (bit n - 1 for signal n)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return int(line.split()[1], 16)
    return 0


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads a process's signal handlers in /proc")
@pytest.mark.parametrize("started_with", [signal.SIG_DFL, signal.SIG_IGN], ids=["service-manager", "nohup"])
def test_a_sighup_while_the_command_line_loads_is_a_reload_not_the_end(
    tmp_path: Path, feeds: FakeServer, started_with: signal.Handlers
) -> None:
    # Loading the command line takes most of a second. Started as a service manager starts it (SIGHUP's default
    # action), a SIGHUP then killed `miner run`: a `systemctl reload` right after a start ended the service, for its
    # supervisor to start again. Started with SIGHUP ignored (`nohup miner run &`), nothing held it: it was dropped,
    # though the service once started reloads at one (operations.md).
    cfg = tmp_path / "feeds.toml"
    write_config(cfg, feeds.url)
    before = signal.signal(signal.SIGHUP, started_with)
    try:
        service = Running(cfg)
    finally:
        signal.signal(signal.SIGHUP, before)
    try:
        deadline = time.monotonic() + 30
        while not _caught(service.proc.pid) & 1 << (signal.SIGHUP - 1) and time.monotonic() < deadline:
            time.sleep(0.002)
        # Held from the start of the entry point, before SIGTERM's handler (the command's) is in place.
        assert not _caught(service.proc.pid) & 1 << (signal.SIGTERM - 1)
        service.hup()
        service.wait_for(service.logged("config reloaded from"))
        assert service.messages().count("SIGHUP: reading the config again from " + str(cfg)) == 1
    finally:
        code = service.stop()
    assert code == 0, "".join(service.lines)


def test_after_the_service_a_sighup_does_what_it_did_before_the_entry_point_held_it() -> None:
    # The entry point holds SIGHUP while the command line loads; the service's handlers, taken off as `miner run`
    # ends, put that hold back, and a SIGHUP while the process went on exiting was swallowed.
    from miner.entry import hold_hup, take_held_hup
    from miner.service_reload import Signals

    before = signal.signal(signal.SIGHUP, hold_hup)
    try:
        with Signals().installed():
            assert signal.getsignal(signal.SIGHUP) != hold_hup
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGHUP, before)
        take_held_hup()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads a process's ignored signals in /proc")
@pytest.mark.parametrize("started_with", [signal.SIG_DFL, signal.SIG_IGN], ids=["terminal", "script-background-job"])
def test_sigint_ignored_at_the_start_stays_ignored(tmp_path: Path, feeds: FakeServer,
                                                   started_with: signal.Handlers) -> None:
    # A non-interactive shell starts `miner run &` with SIGINT ignored, so that a Ctrl-C at the script's terminal
    # leaves it running. The service took SIGINT all the same once started (and stopped), while one sent as the
    # command line loaded was dropped. Started from a terminal, SIGINT stops it as SIGTERM does.
    cfg = tmp_path / "feeds.toml"
    write_config(cfg, feeds.url)
    before = signal.signal(signal.SIGINT, started_with)
    try:
        service = Running(cfg)
    finally:
        signal.signal(signal.SIGINT, before)
    try:
        service.wait_for(service.logged("miner service started"))
        bit = 1 << (signal.SIGINT - 1)
        ignored = [line for line in Path(f"/proc/{service.proc.pid}/status").read_text().splitlines()
                   if line.startswith("SigIgn:")]
        assert bool(int(ignored[0].split()[1], 16) & bit) == (started_with == signal.SIG_IGN)
        os.kill(service.proc.pid, signal.SIGINT)
        if started_with == signal.SIG_DFL:
            assert service.proc.wait(timeout=60) == 0
            service._reader.join(timeout=5)
            assert "stopped" in service.messages()
            return
        # Ignored, it is discarded as it is sent: a reload asked for after it finds the service running (taken, it
        # stopped the service, and the wait below fails on its exit).
        service.hup()
        service.wait_for(service.logged("config reloaded from"))
        assert service.proc.poll() is None
    finally:
        code = service.stop()
    assert code == 0, "".join(service.lines)

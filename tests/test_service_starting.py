"""The HTTP endpoint answers while the service starts: a real store of 0.1.0 whose write lock another process holds
(as while it upgrades the store), a real service started in a thread, real requests on 127.0.0.1."""

from __future__ import annotations

import socket
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ports import bound_port
from test_reload_listener import refused
from test_service import wait_for
from test_store_upgrade import _release_0_1_0_store, write_lock_held

from miner.errors import MinerError, StoreError
from miner.service import JobSpec, Service, ServiceOptions
from miner.store.migrations import MIGRATIONS

WAITING = "waiting for another process's upgrade of the store (it holds the write lock)"


def _service(tmp_path: Path, store: Path, port: int = 0) -> Service:
    """The service on ``store``, its endpoint on ``port`` (0: any free port, which :func:`_base` reads)."""
    from miner.config import load_config

    cfg = tmp_path / "feeds.toml"
    cfg.write_text(f'[store]\npath = "{store}"\n[server]\nenabled = true\nport = {port}\n[[services]]\nname = "MTN"\n',
                   encoding="utf-8")
    return Service(load_config(cfg), store, ServiceOptions(jobs=(JobSpec("retention", 3600.0),)))


def _base(service: Service) -> str:
    """The base URL of the service's endpoint, once it listens (early in the start)."""
    wait_for(lambda: service.http_address is not None)
    return f"http://127.0.0.1:{bound_port(service)}"


class Starting:
    """``service.start()`` in a thread; what it raised, if it did."""

    def __init__(self, service: Service) -> None:
        self.failed: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, args=(service,), daemon=True)
        self.thread.start()

    def _run(self, service: Service) -> None:
        try:
            service.start()
        except BaseException as exc:
            self.failed.append(exc)

    def ended(self, within: float) -> bool:
        self.thread.join(timeout=within)
        return not self.thread.is_alive()


@pytest.fixture
def old_store(tmp_path: Path) -> Path:
    path = tmp_path / "miner.sqlite"
    _release_0_1_0_store(path, buckets=10)
    return path


def _get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=30)
    except httpx.TransportError:
        return None


def _phase(base: str) -> str | None:
    reply = _get(f"{base}/healthz")
    return reply.json().get("phase") if reply is not None and reply.status_code == 503 else None


@pytest.fixture
def locked(old_store: Path) -> Iterator[Path]:
    with write_lock_held(old_store, 300) as holder:
        yield old_store
        holder.kill()


def test_the_endpoint_answers_starting_while_the_service_waits_for_the_store_and_as_before_once_started(
        tmp_path: Path, old_store: Path) -> None:
    # The endpoint listened only once the store was upgraded and the model loaded: a liveness probe found the port
    # refused all that time (minutes, waiting for another process's upgrade) and had the service killed mid-upgrade.
    service = _service(tmp_path, old_store)
    with write_lock_held(old_store, 300) as holder:
        start = Starting(service)
        try:
            base = _base(service)
            wait_for(lambda: _phase(base) == WAITING)
            health = httpx.get(f"{base}/healthz", timeout=30)
            assert health.status_code == 503
            body = health.json()
            assert body["status"] == "starting" and body["phase"] == WAITING and body["model"] is None
            assert body["stages"]["retention"]["runs"] == 0 and body["seconds"] >= 0 and "since" in body
            ready = httpx.get(f"{base}/readyz", timeout=30)
            assert ready.status_code == 503 and ready.json()["status"] == "starting"
            live = httpx.get(f"{base}/livez", timeout=30)
            assert live.status_code == 200 and live.json()["phase"] == WAITING
            metrics = httpx.get(f"{base}/metrics", timeout=30)
            assert metrics.status_code == 200
            assert "\nminer_starting 1\n" in metrics.text
            assert '\nminer_start_phase{phase="store_wait"} 1\n' in metrics.text
            for reply in (httpx.get(f"{base}/api/v1/services", timeout=30), httpx.get(f"{base}/", timeout=30),
                          httpx.post(f"{base}/report", json={"service": "MTN"}, timeout=30)):
                assert reply.status_code == 503 and reply.headers["Retry-After"] == "5", reply.request.url
            assert "The service is starting (waiting for another process" in httpx.get(f"{base}/", timeout=30).text
            assert "reports are taken once it has started" in httpx.post(
                f"{base}/report", json={"service": "MTN"}, timeout=30).json()["error"]
            assert start.thread.is_alive()
        finally:
            holder.kill()
            holder.wait()
    try:
        assert start.ended(within=120), "not started 120 s after the lock was released"
        assert start.failed == []
        health = httpx.get(f"{base}/healthz", timeout=30)
        assert health.status_code == 200 and health.json()["status"] == "ok" and "phase" not in health.json()
        assert httpx.get(f"{base}/readyz", timeout=30).json()["status"] == "ready"
        assert httpx.get(f"{base}/livez", timeout=30).json()["status"] == "ok"
        assert "\nminer_starting 0\n" in httpx.get(f"{base}/metrics", timeout=30).text
        assert httpx.get(f"{base}/api/v1/services", timeout=30).status_code == 200
        assert httpx.post(f"{base}/report", json={"service": "MTN"}, timeout=30).status_code == 202
    finally:
        service.stop()
    with sqlite3.connect(old_store) as conn:
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(MIGRATIONS)


def test_a_stop_asked_for_while_the_start_waits_ends_it_and_closes_the_endpoint(tmp_path: Path, locked: Path) -> None:
    # A SIGTERM (systemd's stop, an orchestrator's) during the wait: the start ends at once, nothing left listening.
    service = _service(tmp_path, locked)
    start = Starting(service)
    base = _base(service)
    wait_for(lambda: _phase(base) == WAITING)
    service.request_stop()
    assert start.ended(within=10), "still starting 10 s after the stop was asked for"
    assert isinstance(start.failed[0], StoreError)
    assert refused(int(base.rsplit(":", 1)[1]))


def test_a_start_on_a_port_taken_fails_with_its_error_before_it_upgrades_the_store(tmp_path: Path,
                                                                                   old_store: Path) -> None:
    # Found only after the upgrade: the store was upgraded by a service that never ran, past the version that did.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MinerError, match=rf"cannot listen on 127\.0\.0\.1:{port} \("):
            _service(tmp_path, old_store, port).start()
    with sqlite3.connect(old_store) as conn:
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == 2

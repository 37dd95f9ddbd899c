"""server.cache_seconds: the status board's pages and the read API's answers kept for a few seconds and shared, on a
real 127.0.0.1 server reading a real SQLite store, as in an outage's crowd; /healthz, /metrics, reports and errors
never kept."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from ports import bound_port
from test_read_api import NOW, fill, write_config

from miner.config import load_config, parse_config
from miner.errors import ConfigError, StoreError
from miner.http_api import Endpoints, HttpApi
from miner.read_api import READ_QUEUE, ReadApi
from miner.status_board import StatusBoard
from miner.store import Store

SECONDS = 1


@dataclass
class Served:
    base: str
    store: Store
    reads: list[float] = field(default_factory=list)  # one per read of the store, its time.monotonic()
    health_checks: list[bool] = field(default_factory=list)
    failing: bool = False  # each read fails, as on a disk I/O error


@contextmanager
def cached(tmp_path: Path, seconds: int = SECONDS, read_takes: float = 0.0,
           clock: Callable[[], float] | None = None) -> Iterator[Served]:
    """The API and the board over a filled store, served with answers kept ``seconds`` (by ``clock``, by default
    time.monotonic); each read of the store (taking ``read_takes`` more, as a large store's would) is counted."""
    config = load_config(write_config(tmp_path))
    with ExitStack() as stack:
        store = Store.open(tmp_path / "miner.sqlite")
        stack.callback(store.close)
        fill(store)
        reader = Store.open(tmp_path / "miner.sqlite")
        stack.callback(reader.close)
        served = Served("", store)

        def reading() -> Store:
            served.reads.append(time.monotonic())
            if served.failing:
                raise StoreError("store x: disk I/O error", cause="disk_full")
            time.sleep(read_takes)
            return reader

        def health() -> tuple[bool, dict[str, object]]:
            served.health_checks.append(True)
            return True, {"checks": len(served.health_checks)}

        read = ReadApi(config, reading, lambda: None, lambda: NOW)
        server = HttpApi("127.0.0.1", 0, Endpoints(health, lambda: f"checks {len(served.health_checks)}\n",
                                                   lambda p, c: {"accepted": True}, read.answer,
                                                   StatusBoard(read).page), cache_seconds=seconds)
        if clock is not None:
            server._server.answers._clock = clock
        server.start()
        stack.callback(server.stop)
        host, port = server.address
        served.base = f"http://{host}:{port}"
        yield served


@pytest.mark.parametrize(("path", "other"), [
    ("/", "/status"), ("/services/WhatsApp?hours=6", "/services/WhatsApp"),
    ("/api/v1/incidents?status=all", "/api/v1/incidents"),
    ("/api/v1/services/WhatsApp/series", "/api/v1/services/Instagram/series")])
def test_a_page_asked_for_again_within_the_cache_time_costs_no_second_read(tmp_path: Path, path: str, other: str
                                                                           ) -> None:
    with cached(tmp_path, seconds=30) as served:
        first = httpx.get(served.base + path, timeout=10)
        again = httpx.get(served.base + path, timeout=10)
        head = httpx.head(served.base + path, timeout=10)
        assert len(served.reads) == 1
        assert first.status_code == again.status_code == head.status_code == 200
        assert again.content == first.content and head.content == b""
        for reply in (first, again, head):
            assert reply.headers["Cache-Control"] == "max-age=30"
            assert 0 <= int(reply.headers["Age"]) <= 1
            assert reply.headers["X-Content-Type-Options"] == "nosniff"
        if not path.startswith("/api/"):
            assert again.headers["Content-Security-Policy"].startswith("default-src 'none'")
        # Another path or query is another answer.
        assert httpx.get(served.base + other, timeout=10).status_code == 200
        assert len(served.reads) == 2


def test_a_page_is_kept_for_the_parameters_it_reads_whatever_others_a_link_carries(tmp_path: Path) -> None:
    # Facebook adds an fbclid of its own to each visitor's link: keyed by the whole query string, the crowd that opens
    # the board from a post was a read of the store apiece, and so was a request with a made-up ?x=.
    with cached(tmp_path, seconds=30) as served:
        index = [httpx.get(served.base + path, timeout=10) for path in
                 ("/?fbclid=IwAR0a", "/?fbclid=IwAR1b&utm_source=x", "/", "/?hours=6", "/?x=%ff")]
        assert [r.status_code for r in index] == [200] * 5 and len({r.text for r in index}) == 1
        assert len(served.reads) == 1
        page = [httpx.get(served.base + path, timeout=10) for path in
                ("/services/WhatsApp?hours=6&fbclid=IwAR0a", "/services/WhatsApp?fbclid=IwAR1b&hours=6",
                 "/services/WhatsApp?%68ours=6", "/services/WhatsApp?hours=6")]
        assert [r.status_code for r in page] == [200] * 4 and len({r.text for r in page}) == 1
        assert len(served.reads) == 2
        # What it reads is another answer, and one it refuses is refused, not given the kept page.
        assert httpx.get(served.base + "/services/WhatsApp?hours=24&fbclid=x", timeout=10).status_code == 200
        assert len(served.reads) == 3
        assert httpx.get(served.base + "/services/WhatsApp?hours=6&hours=6", timeout=10).status_code == 400
        assert httpx.get(served.base + "/services/WhatsApp?hours=0", timeout=10).status_code == 400
        # The API takes no parameter it does not know: each is still refused.
        assert httpx.get(served.base + "/api/v1/services?fbclid=x", timeout=10).status_code == 400


def test_a_new_incident_shows_once_the_cache_time_is_over(tmp_path: Path) -> None:
    # The cache's clock is the real one moved on by the test past the cache time: kept 1 s of real time, the answers
    # read below expired before they were asked for again when a loaded runner took that long over the reads.
    ahead = [0.0]
    with cached(tmp_path, seconds=30, clock=lambda: time.monotonic() + ahead[0]) as served:
        def open_ids() -> list[int]:
            return [i["id"] for i in httpx.get(served.base + "/api/v1/incidents?status=open", timeout=10
                                               ).json()["incidents"]]

        def board() -> str:
            return httpx.get(served.base + "/services/Instagram", timeout=10).text

        before, page = open_ids(), board()
        assert "Incident</span> since" not in page
        new = served.store.open_incident("Instagram", NOW, {"peak_complaints": 9, "baseline": 1.0, "peak_score": 7.0,
                                                            "total_complaints": 9, "symptoms": {}}, {})
        assert open_ids() == before and board() == page  # kept: read before the incident
        ahead[0] += 30
        assert open_ids() == [new, *before]
        assert "Incident</span> since" in board()


def test_healthz_metrics_reports_and_refusals_are_never_kept(tmp_path: Path) -> None:
    with cached(tmp_path, seconds=30) as served:
        for n in (1, 2):
            health = httpx.get(served.base + "/healthz", timeout=10)
            assert health.json() == {"checks": n} and health.headers["Cache-Control"] == "no-store"
            metrics = httpx.get(served.base + "/metrics", timeout=10)
            assert metrics.text == f"checks {n}\n" and metrics.headers["Cache-Control"] == "no-store"
            report = httpx.post(served.base + "/report", json={"service": "WhatsApp"}, timeout=10)
            assert report.status_code == 202 and report.headers["Cache-Control"] == "no-store"
        for path, status in (("/api/v1/incidents?status=opened", 400), ("/api/v1/nope", 404),
                             ("/services/Nope", 404), ("/services/WhatsApp?hours=0", 400), ("/nope", 404)):
            reply = httpx.get(served.base + path, timeout=10)
            assert reply.status_code == status and reply.headers["Cache-Control"] == "no-store", path
            assert "Age" not in reply.headers


def test_a_503_is_not_kept(tmp_path: Path) -> None:
    with cached(tmp_path, seconds=30) as served:
        served.failing = True
        failed = httpx.get(served.base + "/", timeout=10)
        assert failed.status_code == 503 and failed.headers["Cache-Control"] == "no-store"
        served.failing = False
        assert httpx.get(served.base + "/", timeout=10).status_code == 200
        assert len(served.reads) == 2


def test_a_crowd_asking_for_the_board_at_once_shares_one_read_and_none_is_turned_away(tmp_path: Path) -> None:
    # Twice as many as may wait their turn (READ_QUEUE): without the cache, those beyond it were answered 503.
    with cached(tmp_path, seconds=30, read_takes=0.5) as served:
        statuses: list[int] = []
        go = threading.Barrier(2 * READ_QUEUE)

        def client() -> None:
            go.wait()
            statuses.append(httpx.get(served.base + "/", timeout=10).status_code)

        crowd = [threading.Thread(target=client) for _ in range(2 * READ_QUEUE)]
        for thread in crowd:
            thread.start()
        for thread in crowd:
            thread.join()
        assert statuses == [200] * 2 * READ_QUEUE
        assert len(served.reads) == 1


def test_no_cache_reads_every_time_and_says_no_store(tmp_path: Path) -> None:
    with cached(tmp_path, seconds=0) as served:
        for _ in range(2):
            reply = httpx.get(served.base + "/", timeout=10)
            assert reply.headers["Cache-Control"] == "no-store" and "Age" not in reply.headers
        assert len(served.reads) == 2


@pytest.mark.parametrize("seconds", [-1, 61])
def test_cache_seconds_is_checked(seconds: int) -> None:
    with pytest.raises(ConfigError, match=r"server\.cache_seconds: must be 0\.\.60"):
        parse_config(f"[server]\ncache_seconds = {seconds}\n")
    assert parse_config("").server.cache_seconds == 5


def test_the_service_keeps_answers_for_its_configured_seconds(tmp_path: Path) -> None:
    from miner.service import JobSpec, Service, ServiceOptions

    cfg = write_config(tmp_path)
    cfg.write_text(cfg.read_text() + "\n[server]\ncache_seconds = 7\n")
    store = Store.open(tmp_path / "miner.sqlite")
    fill(store)
    service = Service(load_config(cfg), tmp_path / "miner.sqlite",
                      ServiceOptions(jobs=(JobSpec("retention", 3600.0),), http=True, http_port=0,
                                     clock=lambda: NOW))
    service.start()
    try:
        port = bound_port(service)
        for path in ("/", "/api/v1/services"):
            assert httpx.get(f"http://127.0.0.1:{port}{path}", timeout=10).headers["Cache-Control"] == "max-age=7"
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).headers["Cache-Control"] == "no-store"
    finally:
        service.stop()
        store.close()


def test_a_crowd_waiting_for_one_read_leaves_connections_for_healthz_and_reports(tmp_path: Path) -> None:
    # The connection cap (32) counts requests waiting for another's read: a crowd of them held every connection
    # for as long as the read took, and /healthz and reports were answered 503, where at most READ_QUEUE API
    # requests were to read or wait at once (docs/api.md).
    from miner.http_api import MAX_CONNECTIONS

    with cached(tmp_path, seconds=30, read_takes=2.0) as served:
        statuses: list[int] = []

        def client() -> None:
            statuses.append(httpx.get(served.base + "/", timeout=20).status_code)

        crowd = [threading.Thread(target=client) for _ in range(MAX_CONNECTIONS + 8)]
        for thread in crowd:
            thread.start()
        time.sleep(1.0)  # the crowd is in, its one read under way
        health = httpx.get(served.base + "/healthz", timeout=10)
        report = httpx.post(served.base + "/report", json={"service": "WhatsApp"}, timeout=10)
        for thread in crowd:
            thread.join()
        assert health.status_code == 200
        assert report.status_code == 202
        assert statuses.count(200) >= 2 * READ_QUEUE  # those turned away answered 503, to retry in a second


def test_age_counts_from_the_read_not_from_the_wait_for_its_turn(tmp_path: Path) -> None:
    # A page whose read waited its turn behind another's was dated from the request: under an outage's load, when
    # reads queue, an answer that waited the cache time was dropped as soon as read (kept by nobody, read again by
    # the next request), and sent with an Age as old as its max-age, which a proxy took as stale.
    with cached(tmp_path, seconds=2, read_takes=1.5) as served:
        first = threading.Thread(target=lambda: httpx.get(served.base + "/api/v1/services", timeout=10))
        first.start()
        time.sleep(0.2)  # the other read under way: this one waits 1.3 s for its turn, then reads for 1.5 s
        board = httpx.get(served.base + "/", timeout=10)
        first.join()
        assert board.status_code == 200 and int(board.headers["Age"]) <= 1, board.headers
        again = httpx.get(served.base + "/", timeout=10)
        assert again.content == board.content and len(served.reads) == 2

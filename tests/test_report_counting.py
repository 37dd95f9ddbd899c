"""User reports through the real service: posted over loopback HTTP, stored, classified and scored, with the
service's clock simulated. One client alone must not open an incident; many clients still do."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from miner.config import load_config
from miner.service import Service, ServiceOptions
from miner.store import Store

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
# A quiet service with the detector's defaults (5-minute buckets, 5 complaints, 2 of 4 buckets) but for its warm-up,
# and the default rate limit (10 reports an hour, all of them at once); reports come through a trusted proxy, so
# that loopback can stand for many clients.
CONFIG = """
[store]
path = "{db}"

[server]
trusted_proxies = ["127.0.0.1"]

[[services]]
name = "MTN"

[detector]
warmup_hours = 1
"""


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[Service, str, list[datetime]]]:
    """A started service with the HTTP endpoint on a free port and no jobs of its own: the test runs them, at the
    times it sets on the service's clock (the list's one item)."""
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG.format(db=tmp_path / "miner.sqlite"))
    clock = [T0]
    svc = Service(load_config(cfg), tmp_path / "miner.sqlite",
                  ServiceOptions(jobs=(), http=True, http_port=0, clock=lambda: clock[0]))
    svc.start()
    assert svc._http is not None
    try:
        yield svc, f"http://127.0.0.1:{svc._http.address[1]}", clock
    finally:
        svc.stop()


def _quiet_hours(service: Service, clock: list[datetime], hours: int) -> None:
    for hour in range(hours + 1):
        clock[0] = T0 + timedelta(hours=hour)
        service.job_process(clock[0])


def _report(base: str, client: str) -> int:
    return httpx.post(f"{base}/report", json={"service": "MTN", "symptom": "calls"},
                      headers={"X-Forwarded-For": client}).status_code


def _opened(service: Service, clock: list[datetime], start: datetime) -> list[str]:
    for minutes in range(5, 35, 5):
        clock[0] = start + timedelta(minutes=minutes)
        service.job_process(clock[0])
    return [i["service"] for i in service._store("test").incidents()]


def test_one_client_cannot_open_an_incident_with_its_reports(
        service: tuple[Service, str, list[datetime]]) -> None:
    # Ten reports in ten minutes, the rate limit's whole burst, from one address: each counted as a complainer of
    # its own, they made 5 complaints in each of two buckets, and on-call was paged for a quiet service.
    svc, base, clock = service
    _quiet_hours(svc, clock, 3)
    start = T0 + timedelta(hours=3, minutes=5)
    for bucket in range(2):
        clock[0] = start + timedelta(minutes=5 * bucket, seconds=30)
        assert [_report(base, "203.0.113.7") for _ in range(5)] == [202] * 5
    assert _opened(svc, clock, start) == []
    counted = svc._store("test").database.rows("SELECT complaints FROM buckets WHERE complaints > 0")
    assert [r["complaints"] for r in counted] == [1, 1]


def test_one_households_ipv6_network_is_one_client(service: tuple[Service, str, list[datetime]]) -> None:
    # An ISP delegates a /56 to a household (RIPE-690), and its router a /64 of it to each LAN: keyed by /64, one
    # household was 256 clients, each with the rate limit's whole hour and counted as a complainer of its own.
    svc, base, clock = service
    _quiet_hours(svc, clock, 3)
    start = T0 + timedelta(hours=3, minutes=5)
    for bucket in range(2):
        clock[0] = start + timedelta(minutes=5 * bucket, seconds=30)
        assert [_report(base, f"2001:db8:1:{5 * bucket + n:x}::1") for n in range(5)] == [202] * 5
    assert _report(base, "2001:db8:1:ff::1") == 429  # the limit's 10 an hour, for the household's every /64
    assert _report(base, "2001:db8:1:100::1") == 202  # the next /56: another household
    assert _opened(svc, clock, start) == []
    counted = svc._store("test").database.rows("SELECT complaints FROM buckets WHERE complaints > 0")
    assert [r["complaints"] for r in counted] == [1, 2]


def test_reports_of_many_clients_still_open_an_incident(tmp_path: Path,
                                                      service: tuple[Service, str, list[datetime]]) -> None:
    from miner.records import Post

    svc, base, clock = service
    _quiet_hours(svc, clock, 3)
    start = T0 + timedelta(hours=3, minutes=5)
    # Reports stored before this version have no author: each still counts on its own, beside the new ones.
    store = Store.open(tmp_path / "miner.sqlite")
    try:
        store.insert_posts([Post("reports", f"report:old{b}{n}", "User report: problem with MTN",
                                 start + timedelta(minutes=5 * b, seconds=n), services=("MTN",))
                            for b in range(2) for n in range(2)], start)
    finally:
        store.close()
    for bucket in range(2):
        clock[0] = start + timedelta(minutes=5 * bucket, seconds=30)
        # Three people, each reporting twice (a second tap), and the two old reports: five complaints a bucket.
        assert [_report(base, f"198.51.100.{n}") for n in range(3) for _ in range(2)] == [202] * 6
    assert _opened(svc, clock, start) == ["MTN"]
    counted = svc._store("test").database.rows("SELECT complaints FROM buckets WHERE complaints > 0")
    assert [r["complaints"] for r in counted] == [5, 5]


def test_a_reporter_is_one_pseudonym_a_day_and_its_address_is_stored_nowhere(
        tmp_path: Path, service: tuple[Service, str, list[datetime]]) -> None:
    svc, base, clock = service
    for day in range(2):
        for minutes in (0, 1, 2):
            clock[0] = T0 + timedelta(days=day, hours=9, minutes=minutes)
            assert _report(base, "203.0.113.7") == 202
        clock[0] = T0 + timedelta(days=day, hours=9, minutes=3)
        assert _report(base, "2001:db8:1:2::1") == 202
        assert _report(base, "2001:db8:1:2:ffff::9") == 202  # the same /64: the client the rate limit knows
    rows = svc._store("test").database.rows("SELECT author_hash, created_at FROM posts ORDER BY id")
    hashes = [r["author_hash"] for r in rows]
    assert all(h and len(h) == 16 for h in hashes)
    day1, day2 = hashes[:5], hashes[5:]
    assert len(set(day1[:3])) == 1 and len(set(day1[3:])) == 1 and day1[0] != day1[3]
    assert len(set(day2[:3])) == 1 and len(set(day2[3:])) == 1
    assert not set(day1) & set(day2)  # not linkable from one day to the next
    svc.stop()
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("miner.sqlite*"))
    for address in (b"203.0.113.7", b"2001:db8:1:2"):
        assert address not in stored



def test_symptoms_count_complainers_as_the_complaints_do(service: tuple[Service, str, list[datetime]]) -> None:
    # Five people each reporting twice (a second tap) in each of two buckets: five complaints a bucket, which the
    # symptom breakdown counted as ten posts, "calls 20" beside "Complaints: 10" in the alert.
    from miner.alerts.render import render_alert
    from miner.alerts.settings import AlertSettings, RouteSettings

    svc, base, clock = service
    _quiet_hours(svc, clock, 3)
    start = T0 + timedelta(hours=3, minutes=5)
    for bucket in range(2):
        clock[0] = start + timedelta(minutes=5 * bucket, seconds=30)
        assert [_report(base, f"198.51.100.{n}") for n in range(5) for _ in range(2)] == [202] * 10
    assert _opened(svc, clock, start) == ["MTN"]
    store = svc._store("test")
    [incident] = store.incidents()
    assert json.loads(incident["symptoms"]) == {"calls": incident["total_complaints"]}
    route = RouteSettings(name="oncall", email=("oncall@example.org",))
    alert = render_alert(store, AlertSettings(routes=(route,)), route, "alert",
                         [{"incident_id": incident["id"], "kind": "open"}], message_id="<m@example.org>", now=clock[0])
    total = incident["total_complaints"]
    assert f"Complaints: {total}\n" in alert.text and f"Symptoms:   calls {total} (100%)" in alert.text


def test_a_reports_text_keeps_no_credential_of_a_link_in_it(service: tuple[Service, str, list[datetime]]) -> None:
    # A report's text is the reporter's, stored and shown as a post's: a link pasted into the form keeps its host.
    svc, base, clock = service
    clock[0] = T0 + timedelta(hours=9)
    text = "app shows a blank page at https://me:pw@app.example.com/home?session=5e55i0n-abc123def (since 9:00)"
    assert httpx.post(f"{base}/report", json={"service": "MTN", "text": text}).status_code == 202
    [row] = svc._store("test").database.rows("SELECT text FROM posts")
    assert row["text"] == ("User report: problem with MTN. app shows a blank page at "
                           "https://app.example.com/home?session=[redacted] (since 9:00)")

"""A message the store fails while it is prepared, as the service shows it: a real service running the alerts job, its
/healthz and /metrics read over HTTP, a real aiosmtpd server on 127.0.0.1, and a real store whose chart data (the
buckets table) has a damaged page, which every alert's preparation reads and nothing else of the alerts job does.

The attempt was retried, never given up, and the run went on as a success: /healthz said ok and /metrics had no
miner_store_error for as long as every alert waited, with only the log to say why."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner
from smtp_server import SmtpServer
from test_alerts_support import open_incident

from miner.cli import main
from miner.config import load_config
from miner.service import JobSpec, Service, ServiceOptions
from miner.store import Store
from miner.timeutil import parse_iso, utcnow

HOUR = 3600.0


@dataclass
class Damaged:
    """The store's buckets table with its root page overwritten: ``mend`` writes the page back as it was."""

    path: Path
    offset: int
    good: bytes

    def mend(self) -> None:
        with open(self.path, "r+b") as f:
            f.seek(self.offset)
            f.write(self.good)


def damage_chart_data(db: Path) -> Damaged:
    """Overwrite the root page of the buckets table, which an alert's chart is drawn from, as a failing disk might."""
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every page in the file itself
        [(root,)] = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'buckets'").fetchall()
        [(size,)] = conn.execute("PRAGMA page_size").fetchall()
    finally:
        conn.close()
    offset = (root - 1) * size
    with open(db, "r+b") as f:
        f.seek(offset)
        good = f.read(size)
        f.seek(offset)
        f.write(b"\xff" * size)
    return Damaged(db, offset, good)


@contextmanager
def alerting_on_a_damaged_store(tmp_path: Path, alerts: str = "") -> Iterator[tuple[Service, SmtpServer, Damaged,
                                                                                       list[float], str, Path]]:
    """A started service running the alerts job alone (hourly: the test runs it by hand after its first run), its
    endpoint on 127.0.0.1, on a clock ``offset[0]`` s ahead, mailing a real SMTP server an alert of one incident whose
    chart data is damaged; the service, the server, the damage, the offset, the endpoint's base URL, the config."""
    smtp = SmtpServer()
    smtp.start()
    db, cfg = tmp_path / "miner.sqlite", tmp_path / "feeds.toml"
    cfg.write_text(f'[store]\npath = "{db}"\n[[services]]\nname = "WhatsApp"\n[alerts]\ngroup_wait = 0\n{alerts}'
                   f'[alerts.smtp]\nhost = "127.0.0.1"\nport = {smtp.port}\nsecurity = "none"\n'
                   '[[alerts.routes]]\nname = "oncall"\nemail = ["oncall@example.org"]\n', encoding="utf-8")
    store = Store.open(db)
    open_incident(store, "WhatsApp", utcnow() - timedelta(minutes=2))
    store.close()
    damaged = damage_chart_data(db)
    offset = [0.0]
    service = Service(load_config(cfg), db, ServiceOptions(
        jobs=(JobSpec("alerts", HOUR),), http=True, http_port=0,
        clock=lambda: utcnow() + timedelta(seconds=offset[0])))
    service.start()
    try:
        assert service._http is not None
        yield service, smtp, damaged, offset, f"http://127.0.0.1:{service._http.address[1]}", cfg
    finally:
        service.stop()
        smtp.stop()


def health(base: str) -> tuple[int, dict[str, Any]]:
    answer = httpx.get(f"{base}/healthz", timeout=30)
    return answer.status_code, answer.json()


def store_errors(base: str) -> list[str]:
    return [line for line in httpx.get(f"{base}/metrics", timeout=30).text.splitlines()
            if line.startswith("miner_store_error{")]


def outbox(db: Path) -> list[dict[str, Any]]:
    store = Store.open(db, upgrade=False)
    try:
        return store.outbox_listing(["pending", "sending", "sent", "failed", "suppressed"])
    finally:
        store.close()


def wait_for_runs(service: Service, n: int) -> None:
    from test_service import wait_for

    wait_for(lambda: service.health["alerts"].runs >= n, timeout=60)


def test_an_alert_the_store_fails_to_prepare_turns_healthz_and_metrics_until_it_is_prepared_and_sent_once(
        tmp_path: Path) -> None:
    db = tmp_path / "miner.sqlite"
    # Its retries 30-60 min after a failure, on the real clock: the run below that finds it not due yet comes as late
    # as a loaded runner makes it (by retry_base's default, 15-30 s on, a slow enough runner found it due).
    with alerting_on_a_damaged_store(tmp_path, "retry_base = 3600\nretry_max = 3600\n") as (
            service, smtp, damaged, offset, base, _cfg):
        wait_for_runs(service, 1)  # the run at the start: planned, claimed, and its preparation failed
        status, body = health(base)
        assert status == 503 and body["status"] == "degraded", body
        alerts = body["stages"]["alerts"]
        assert not alerts["ok"] and alerts["last_ok"] is None, alerts
        assert alerts["last_error"].startswith("StoreError: the store failed (corrupt) while 1 alert message was "
                                               "prepared: nothing of it went out, and it waits in the outbox"), alerts
        assert str(db) in alerts["last_error"] and "malformed" in alerts["last_error"], alerts
        assert store_errors(base) == ['miner_store_error{cause="corrupt",stage="alerts"} 1']
        [row] = outbox(db)
        assert (row["status"], row["attempts"]) == ("pending", 1), row
        assert row["last_error"].startswith("nothing sent: the store failed (corrupt) while the message was prepared")

        # A run with nothing due (the message waits out its backoff) proves nothing mended: it still waits.
        service._run_job("alerts")
        assert outbox(db)[0]["attempts"] == 1
        assert health(base)[0] == 503
        assert store_errors(base) == ['miner_store_error{cause="corrupt",stage="alerts"} 1']
        assert smtp.inbox.messages == []

        damaged.mend()
        offset[0] = HOUR  # its retry is due (an hour on at most)
        service._run_job("alerts")
        status, body = health(base)
        assert status == 200 and body["status"] == "ok", body
        assert body["stages"]["alerts"]["last_ok"] is not None
        assert store_errors(base) == []
        [row] = outbox(db)
        assert row["status"] == "sent", row
        service._run_job("alerts")  # nothing left to send again
        assert smtp.inbox.message_ids() == [row["message_id"]]


def test_a_message_the_store_failed_to_prepare_that_another_worker_sent_since_no_longer_holds_healthz(
        tmp_path: Path) -> None:
    # Sent by `miner outbox send` once the store was mended (its retries a second apart here): the service's next run
    # finds it gone from the queue, and does not send it again.
    db = tmp_path / "miner.sqlite"
    with alerting_on_a_damaged_store(tmp_path, "retry_base = 0.5\nretry_max = 1\n") as (
            service, smtp, damaged, _offset, base, cfg):
        wait_for_runs(service, 1)
        assert health(base)[0] == 503
        damaged.mend()
        from test_service import wait_for

        wait_for(lambda: parse_iso(outbox(db)[0]["next_attempt_at"]) <= utcnow(), timeout=30)
        sent = CliRunner().invoke(main, ["--config", str(cfg), "--db", str(db), "outbox", "send"])
        assert sent.exit_code == 0 and sent.stdout.startswith("sent 1,"), sent.output
        service._run_job("alerts")
        status, body = health(base)
        assert status == 200, body
        assert store_errors(base) == []
        [row] = outbox(db)
        assert row["status"] == "sent" and row["attempts"] == 2, row
        assert smtp.inbox.message_ids() == [row["message_id"]]

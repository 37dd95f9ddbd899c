"""One service's detector failing never stops the others."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta

import pytest
from streams import T0

from miner.config import parse_config
from miner.errors import MinerError
from miner.pipeline import Pipeline
from miner.records import Post
from miner.store import Store

ACME = """
[[services]]
name = "Barmail"
provider = "Acme"
[[services]]
name = "Bazdrive"
provider = "Acme"
[[services]]
name = "Quxpay"

[detector]
bucket_minutes = 15
warmup_hours = 1
"""


class _ReportsOnly:
    """User reports are complaints without the model."""

    version = "unused"

    def predict(self, texts: list[str]) -> list[object]:
        raise AssertionError("reports must not be sent to the model")


def _outage_reports(service: str, start: datetime, end: datetime) -> list[Post]:
    """A user report every 30 seconds: 30 complaints per 15-minute bucket."""
    count = int((end - start) / timedelta(seconds=30))
    return [Post("reports", f"{service}-{start.timestamp()}-{i}", f"{service} is down",
                 start + timedelta(seconds=30 * i), services=(service,)) for i in range(count)]


def _warm(store: Store) -> Pipeline:
    """The detectors, warmed on quiet hours up to T0 + 3 h."""
    pipe = Pipeline(parse_config(ACME), store, _ReportsOnly())  # type: ignore[arg-type]
    for hours in range(4):
        pipe.detect(T0 + timedelta(hours=hours))
    return pipe


def _outage(pipe: Pipeline, services: list[str]) -> tuple[datetime, datetime]:
    """An hour of reports about ``services`` from T0 + 3 h 15, classified at T0 + 4 h 30; returns (start, now)."""
    start, now = T0 + timedelta(hours=3, minutes=15), T0 + timedelta(hours=4, minutes=30)
    pipe.ingest([p for s in services for p in _outage_reports(s, start, start + timedelta(hours=1))], now)
    pipe.classify_pending(now)
    return start, now


def test_a_service_the_store_refuses_fails_the_run_after_the_others_are_scored(store: Store) -> None:
    # A trigger refuses Barmail's step (as a lock past the busy timeout or a full disk refuses a write).
    pipe = _warm(store)
    store.database.conn.execute(
        "CREATE TRIGGER refuse AFTER UPDATE ON detector_state WHEN NEW.service = 'Barmail' "
        "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END")
    _, now = _outage(pipe, ["Bazdrive", "Quxpay"])
    with pytest.raises((MinerError, sqlite3.Error)) as failed:
        pipe.detect(now)
    assert "Barmail" in str(failed.value)
    assert sorted(i["service"] for i in store.incidents(status="open")) == ["Bazdrive", "Quxpay"]
    saved = store.detector_state("Bazdrive")
    assert saved is not None and saved.last_bucket == now - timedelta(minutes=15)

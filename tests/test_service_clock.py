"""A clock behind the store, as the service and `miner status` show it: the detector steps no bucket and
notifications wait until the clock is set right, and the log said so once while /healthz stayed ok, /metrics had
nothing and `miner status` said nothing, for as long as it lasted (an hour, a day)."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from test_service import wait_for, write_config

from miner.cli import main
from miner.config import load_config
from miner.records import Post
from miner.service import JobSpec, Service, ServiceOptions
from miner.store import Store
from miner.timeutil import iso, utcnow

HOUR = 3600.0


def _status(cfg: Path, db: Path, *args: str) -> str:
    shown = CliRunner().invoke(main, ["--config", str(cfg), "--db", str(db), "status", *args])
    assert shown.exit_code == 0, shown.output  # a state to alert on, not a failure of the command
    return shown.stdout


def _gauge(base: str) -> float:
    [line] = [ln for ln in httpx.get(f"{base}/metrics").text.splitlines()
              if ln.startswith("miner_clock_behind_seconds ")]
    return float(line.split()[1])


def test_a_clock_behind_the_store_shows_on_healthz_metrics_and_status(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    cfg, db = write_config(tmp_path, "http://127.0.0.1:9/feed.rss"), tmp_path / "miner.sqlite"
    offset = [HOUR]  # the right time, an hour after this machine's clock
    service = Service(load_config(cfg), db, ServiceOptions(jobs=(JobSpec("process", 3600.0),), http=True,
                                                           http_port=0,
                                                           clock=lambda: utcnow() + timedelta(seconds=offset[0])))
    right = service.options.clock().replace(microsecond=0)
    store = Store.open(db)
    # Posts the feed dated, stored by the right clock: this machine's clock is an hour behind them.
    newest = right - timedelta(minutes=1)
    store.insert_posts([Post("telecom-feed", str(i), "MTN is down", newest - timedelta(minutes=i), services=("MTN",))
                        for i in range(5)], right)
    service.start()
    try:
        assert service._http is not None
        base = f"http://127.0.0.1:{service._http.address[1]}"
        wait_for(lambda: service.health["process"].runs == 1, timeout=60)
        health = httpx.get(f"{base}/healthz")
        assert health.status_code == 200 and health.json().get("clock_behind") is None, health.text
        before = httpx.get(f"{base}/metrics").text

        offset[0] = 0.0  # the clock set back an hour (by hand, a board without a real-time clock at boot)
        with caplog.at_level("WARNING", logger="miner.pipeline"):
            service._run_job("process")
        assert "the clock is behind the store" in caplog.text  # the detector stepped no bucket: all it said before
        health = httpx.get(f"{base}/healthz")
        body = health.json()
        assert health.status_code == 503 and body["status"] == "degraded", health.text
        assert all(stage["ok"] for stage in body["stages"].values()), body  # every job succeeds all the same
        behind = body["clock_behind"]
        assert behind["newest_post"] == iso(newest) and HOUR - 5 * 60 < behind["seconds"] <= HOUR - 60, body
        assert re.match(r"the clock is behind the store by 5[5-9] min: ", body["reason"]), body
        assert f"dated {newest.strftime('%Y-%m-%d %H:%M:%S')} UTC" in body["reason"], body
        assert HOUR - 5 * 60 < _gauge(base) <= HOUR - 60
        assert "miner_clock_behind_seconds 0\n" in before

        # `miner status` runs on this machine's clock, behind the store too.
        shown = json.loads(_status(cfg, db, "--format", "json"))["clock_behind"]
        assert shown["newest_post"] == iso(newest) and HOUR - 5 * 60 < shown["seconds"] <= HOUR - 60, shown
        text = _status(cfg, db)
        assert re.match(r"the clock is behind the store by 5[5-9] min: ", text), text
        assert f"dated {newest.strftime('%Y-%m-%d %H:%M:%S')} UTC" in text.splitlines()[0], text

        offset[0] = HOUR + 60.0  # set right (NTP): ok at once, before the process job's next run
        health = httpx.get(f"{base}/healthz")
        assert health.status_code == 200 and health.json()["clock_behind"] is None, health.text
        assert "reason" not in health.json()
        assert _gauge(base) == 0
    finally:
        service.stop()
        store.close()


def test_a_source_dating_its_posts_minutes_ahead_is_no_clock_behind_the_store(tmp_path: Path) -> None:
    # A source may date a post up to 10 minutes after the clock polling it (make_post): no sign of a wrong clock.
    cfg, db = write_config(tmp_path, "http://127.0.0.1:9/feed.rss"), tmp_path / "miner.sqlite"
    now = utcnow().replace(microsecond=0)
    store = Store.open(db)
    try:
        store.insert_posts([Post("telecom-feed", "ahead", "MTN is down", now + timedelta(minutes=8),
                                 services=("MTN",))], now + timedelta(minutes=9))
        assert store.clock_behind(utcnow()) is None
    finally:
        store.close()
    assert json.loads(_status(cfg, db, "--format", "json"))["clock_behind"] is None
    assert "behind the store" not in _status(cfg, db)

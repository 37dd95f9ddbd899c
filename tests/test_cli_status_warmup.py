"""`miner status` says when a service's detector is warming up: a newcomer's first hour showed 35 complaints, z 4.2
and no incident, and nothing said that no incident opens before detector.warmup_hours of history."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner

from miner.cli import main
from miner.config import parse_config
from miner.detect import DetectorState, step
from miner.store import Store

CONFIG = '[detector]\nbucket_minutes = 5\n\n[[services]]\nname = "FibreNet"\n\n[[services]]\nname = "WhatsApp"\n'
START = datetime(2026, 12, 7, 23, 45, tzinfo=UTC)
BUCKET = timedelta(minutes=5)


def _scored(store: Store, service: str, counts: list[float]) -> None:
    """Step the real detector over ``counts`` (one per bucket from START) and save its state as the service does."""
    params = parse_config(CONFIG).detector
    state: DetectorState | None = None
    for i, count in enumerate(counts):
        state, _ = step(params, state, START + i * BUCKET, count)
    assert state is not None
    last = START + (len(counts) - 1) * BUCKET
    store.save_detector_step(service, last, state.to_json(), [], last + BUCKET)


def test_status_names_the_end_of_the_warm_up(tmp_path: Path) -> None:
    cfg, db = tmp_path / "feeds.toml", tmp_path / "miner.sqlite"
    cfg.write_text(CONFIG)
    store = Store.open(db)
    _scored(store, "FibreNet", [0, 9])  # two buckets of a new store: 23:45 and 23:50
    _scored(store, "WhatsApp", [0] * 150)  # 12 h 30 min of history: warm
    store.close()
    base = ["--config", str(cfg), "--db", str(db), "status"]
    text = CliRunner().invoke(main, base)
    data = CliRunner().invoke(main, [*base, "--format", "json"])
    assert text.exit_code == 0 and data.exit_code == 0, text.output + data.output
    # 144 buckets of 5 min learned before the first warm one: the 23:45 bucket's + 12 h.
    assert ("FibreNet is warming up: no incident opens from a bucket before 2026-12-08 11:45:00 UTC "
            "(detector.warmup_hours: 12 h of history first)") in text.output.splitlines()
    assert "WhatsApp is warming up" not in text.output and "are warming up" not in text.output
    warm = {s["service"]: s["warm_from"] for s in json.loads(data.output)["services"]}
    assert warm == {"FibreNet": "2026-12-08T11:45:00+00:00", "WhatsApp": None}


def test_the_warm_up_end_is_the_first_bucket_the_detector_can_open_at() -> None:
    """The time status gives is the detector's own: a spike begun four buckets before it is anomalous from its
    bucket on, not before."""
    from miner.warmup import warm_from

    params = parse_config(CONFIG).detector
    state, _ = step(params, None, START, 0)
    at = warm_from(params, START, state)
    assert at is not None
    scores = []
    for i in range(1, 150):
        state, score = step(params, state, START + i * BUCKET, 0 if i < 140 else 40)
        scores.append(score)
    first = next(s.bucket_start for s in scores if s.anomalous)
    assert first == at
    assert warm_from(params, START + 149 * BUCKET, state) is None

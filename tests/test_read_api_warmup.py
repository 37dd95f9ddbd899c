"""A service whose detector is warming up in the read API's /api/v1/services (``warm_from``) and as a note on the
status board's index and service page, on a real 127.0.0.1 server reading a real SQLite store on a fixed clock, as
`miner status` says it. Only status said so: a newcomer saw 35 complaints at z 4.2 in a new service's first hour, no
incident, and the board's "OK"."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from test_read_api import serving

from miner.config import load_config
from miner.detect import DetectorState, step
from miner.read_api import ReadApi
from miner.store import Store

START = datetime(2026, 12, 7, 23, 45, tzinfo=UTC)
BUCKET = timedelta(minutes=5)


def write_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(f"""
[store]
path = "{tmp_path / 'miner.sqlite'}"

[detector]
bucket_minutes = 5

[[services]]
name = "FibreNet"

[[services]]
name = "WhatsApp"
provider = "Meta"
""", encoding="utf-8")
    return cfg


def scored(store: Store, config_file: Path, service: str, counts: list[float]) -> None:
    """Step the real detector over ``counts`` (one per bucket from START) and save its state as the service does."""
    params = load_config(config_file).detector
    state: DetectorState | None = None
    for i, count in enumerate(counts):
        state, _ = step(params, state, START + i * BUCKET, count)
    assert state is not None
    last = START + (len(counts) - 1) * BUCKET
    store.save_detector_step(service, last, state.to_json(), [], last + BUCKET)


@contextmanager
def board(tmp_path: Path, fibrenet: int, now: datetime) -> Iterator[str]:
    """The read API and the board over a store where FibreNet's detector scored ``fibrenet`` buckets from START and
    WhatsApp's 150 (12 h 30 min: warm), read through a connection of its own on the clock ``now``: its base URL."""
    cfg = write_config(tmp_path)
    with closing(Store.open(tmp_path / "miner.sqlite")) as store:
        scored(store, cfg, "FibreNet", [0.0] * (fibrenet - 1) + [35.0])
        scored(store, cfg, "WhatsApp", [0.0] * 150)
    with closing(Store.open(tmp_path / "miner.sqlite")) as reader, \
            serving(ReadApi(load_config(cfg), lambda: reader, lambda: None, lambda: now), board=True) as base:
        yield base


def text(html: str) -> str:
    """What a reader sees of ``html``: its tags out, its spaces as one."""
    return " ".join(re.sub(r"<[^>]+>", "", html).split())


def pages(base: str) -> tuple[dict[str, Any], str, str, str]:
    """/api/v1/services, the board's index, and FibreNet's and WhatsApp's pages."""
    api = httpx.get(base + "/api/v1/services", timeout=10)
    assert api.status_code == 200
    html = [httpx.get(base + path, timeout=10) for path in ("/", "/services/FibreNet", "/services/WhatsApp")]
    assert [r.status_code for r in html] == [200, 200, 200]
    return api.json(), html[0].text, html[1].text, html[2].text


NOTE = "Warming up: no incident opens before"


def test_a_service_warming_up_says_so_in_the_api_and_on_the_board(tmp_path: Path) -> None:
    # FibreNet's first bucket is 23:45; 144 buckets of 5 min learned before the first warm one: 11:45 next day.
    body, index, fibrenet, whatsapp = _read(tmp_path, 1, START + timedelta(minutes=7))
    warm = {s["service"]: s["warm_from"] for s in body["services"]}
    assert warm == {"FibreNet": "2026-12-08T11:45:00+00:00", "WhatsApp": None}
    note = f'{NOTE} <time datetime="2026-12-08T11:45:00+00:00">2026-12-08 11:45 UTC</time>, however many complain'
    # On FibreNet's card only, and on its page.
    cards = index.split('<li class="card')[1:]
    assert len(cards) == 2 and note in cards[0] and NOTE not in cards[1]
    assert note in fibrenet and NOTE not in whatsapp
    assert "Warming up: no incident opens before 2026-12-08 11:45 UTC, however many complain" in text(fibrenet)


def test_no_warm_up_note_once_the_detector_is_warm(tmp_path: Path) -> None:
    # 12 h 30 min of history scored: warm. The field is there, null; the board says nothing of a warm-up.
    body, index, fibrenet, whatsapp = _read(tmp_path, 150, START + 150 * BUCKET + timedelta(minutes=2))
    assert [(s["service"], s["warm_from"]) for s in body["services"]] == [("FibreNet", None), ("WhatsApp", None)]
    assert all(NOTE not in page and "warmup" not in page for page in (index, fibrenet, whatsapp))


def _read(tmp_path: Path, fibrenet: int, now: datetime) -> tuple[dict[str, Any], str, str, str]:
    with board(tmp_path, fibrenet, now) as base:
        return pages(base)

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
from urllib.parse import quote

import httpx
from test_read_api import serving

from miner.config import load_config
from miner.detect import DetectorState, step
from miner.read_api import ReadApi
from miner.store import Store

START = datetime(2026, 12, 7, 23, 45, tzinfo=UTC)
BUCKET = timedelta(minutes=5)


def write_config(tmp_path: Path, more: str = "") -> Path:
    """FibreNet and WhatsApp, and the ``[[services]]`` in ``more`` after them."""
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
{more}""", encoding="utf-8")
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
def board(tmp_path: Path, fibrenet: int, now: datetime, more: str = "", open_for: tuple[str, ...] = (),
          whatsapp: int = 150) -> Iterator[str]:
    """The read API and the board over a store where FibreNet's detector scored ``fibrenet`` buckets from START and
    WhatsApp's ``whatsapp`` (150: 12 h 30 min, warm), read through a connection of its own on the clock ``now``: its
    base URL.
    ``more``: services besides (write_config), each scored as FibreNet; ``open_for``: services with an incident open
    since START."""
    cfg = write_config(tmp_path, more)
    with closing(Store.open(tmp_path / "miner.sqlite")) as store:
        for name in [s.name for s in load_config(cfg).services if s.name != "WhatsApp"]:
            scored(store, cfg, name, [0.0] * (fibrenet - 1) + [35.0])
        scored(store, cfg, "WhatsApp", [0.0] * whatsapp)
        for name in open_for:
            store.open_incident(name, START, {"peak_complaints": 35, "baseline": 0.0, "peak_score": 4.2,
                                              "total_complaints": 35, "symptoms": {}}, {})
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


BADGE = ('<span class="badge warming">Warming up</span> until <time datetime="2026-12-08T11:45:00+00:00">'
         '2026-12-08 11:45 UTC</time>: cannot tell an outage yet')
OK = '<span class="badge">OK</span>'


def test_the_badge_and_health_say_warming_up_not_ok_while_no_outage_can_be_told(tmp_path: Path) -> None:
    # The badge said OK over "Warming up: no incident opens before ...": an on-call glancing at the badges (or a
    # widget reading the state) took "cannot tell yet" for "no outage".
    body, index, fibrenet, whatsapp = _read(tmp_path, 1, START + timedelta(minutes=7))
    assert [(s["service"], s["state"], s["health"]) for s in body["services"]] == [
        ("FibreNet", "ok", "warming_up"), ("WhatsApp", "ok", "ok")]  # state keeps its two values (v1)
    cards = index.split('<li class="card')[1:]
    assert cards[0].startswith(' warming_up">') and BADGE in cards[0] and OK not in cards[0]
    assert cards[1].startswith(' ok">') and OK in cards[1] and "badge warming" not in cards[1]
    assert ("No incident open: 1 of 2 services OK, 1 warming up (no incident can open there yet: an outage cannot "
            "be told), as of 2026-12-07 23:52 UTC.") in text(index)
    assert BADGE in fibrenet and OK not in fibrenet
    assert "<title>FibreNet: warming up – Service status</title>" in fibrenet
    assert OK in whatsapp and "<title>WhatsApp: OK – Service status</title>" in whatsapp


def test_an_open_incident_shows_over_the_warm_up(tmp_path: Path) -> None:
    # A warm-up started again (a gap, a level far below the first) with an incident still open: the incident is
    # what the badge says, the warm-up the note under it; a hostile name stays text.
    hostile = '<script>alert("x")</script>&'
    more = f'\n[[services]]\nname = {hostile!r}\n'
    with board(tmp_path, 1, START + timedelta(minutes=7), more, open_for=("FibreNet",)) as base:
        body, index, fibrenet, _ = pages(base)
        other = httpx.get(base + "/services/" + quote(hostile, safe=""), timeout=10)
    assert [(s["state"], s["health"], s["warm_from"] is not None) for s in body["services"]] == [
        ("incident", "incident", True), ("ok", "ok", False), ("ok", "warming_up", True)]
    cards = index.split('<li class="card')[1:]
    assert cards[0].startswith(' incident">') and '<span class="badge incident">Incident</span>' in cards[0]
    assert NOTE in cards[0] and "badge warming" not in cards[0]
    assert ("1 of 3 services with an incident open, 1 warming up (no incident can open there yet: an outage cannot "
            "be told), as of") in text(index)
    assert "<title>1 incident – Service status</title>" in index
    assert '<span class="badge incident">Incident</span>' in fibrenet and "badge warming" not in fibrenet
    assert cards[2].startswith(' warming_up">') and BADGE in cards[2]
    assert hostile not in index and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&amp;" in index
    assert other.status_code == 200 and BADGE in other.text and hostile not in other.text


def test_all_warming_up_is_not_all_ok(tmp_path: Path) -> None:
    with board(tmp_path, 1, START + timedelta(minutes=7), whatsapp=1) as base:
        body, index, _, whatsapp = pages(base)
    assert [s["health"] for s in body["services"]] == ["warming_up", "warming_up"]
    assert ("No incident open: all 2 services warming up (no incident can open there yet: an outage cannot be "
            "told), as of") in text(index)
    assert OK not in index and index.count("badge warming") == 2 and BADGE in whatsapp

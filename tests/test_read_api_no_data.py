"""A service whose detector has scored no bucket yet (a new store, a service just added to feeds.toml) in the read
API's ``health``, on the status board and in `miner status`: "no data", not "ok". It has no ``warm_from`` (its warm-up
starts with a first bucket not scored yet), and it showed ``health: ok`` and an OK badge beside "no baseline yet",
telling an on-call "no outage" where the truth is "cannot tell". On a real 127.0.0.1 server reading a real SQLite
store on a fixed clock."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from click.testing import CliRunner
from test_read_api import serving
from test_read_api_warmup import START, scored, text, write_config

from miner.cli import main
from miner.config import load_config
from miner.read_api import ReadApi
from miner.store import Store

NOW = START + timedelta(minutes=7)
HOSTILE = '<script>alert("x")</script>&'
BADGE = '<span class="badge nodata">No data</span> no bucket scored yet: cannot tell an outage'
OK = '<span class="badge">OK</span>'
WHY = "(no incident can open there yet: an outage cannot be told)"


@contextmanager
def board(tmp_path: Path, scores: dict[str, int], more: str = "", open_for: tuple[str, ...] = ()) -> Iterator[str]:
    """The read API and the board (base URL) over a store where each service of ``scores`` had that many buckets
    scored from START (the last with 35 complaints); the others (FibreNet, WhatsApp, ``more``'s) none. ``open_for``:
    services with an incident open since START."""
    cfg = write_config(tmp_path, more)
    with closing(Store.open(tmp_path / "miner.sqlite")) as store:
        for name, n in scores.items():
            scored(store, cfg, name, [0.0] * (n - 1) + [35.0])
        for name in open_for:
            store.open_incident(name, START, {"peak_complaints": 35, "baseline": 0.0, "peak_score": 4.2,
                                              "total_complaints": 35, "symptoms": {}}, {})
    with closing(Store.open(tmp_path / "miner.sqlite")) as reader, \
            serving(ReadApi(load_config(cfg), lambda: reader, lambda: None, lambda: NOW), board=True) as base:
        yield base


def get(base: str, path: str) -> httpx.Response:
    answer = httpx.get(base + path, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer


def cards(index: str) -> list[str]:
    return index.split('<li class="card')[1:]


def test_a_service_never_scored_is_no_data_not_ok(tmp_path: Path) -> None:
    # FibreNet warm (150 buckets), WhatsApp warming up (1), the hostile-named one just added: nothing scored.
    more = f'\n[[services]]\nname = {HOSTILE!r}\n'
    with board(tmp_path, {"FibreNet": 150, "WhatsApp": 1}, more) as base:
        body = get(base, "/api/v1/services").json()
        index = get(base, "/").text
        page = get(base, "/services/" + quote(HOSTILE, safe="")).text
    assert [(s["state"], s["health"], s["warm_from"] is None) for s in body["services"]] == [
        ("ok", "ok", True), ("ok", "warming_up", False), ("ok", "no_data", True)]  # state keeps its two values (v1)
    first, warming, new = cards(index)
    assert first.startswith(' ok">') and OK in first and "nodata" not in first
    assert warming.startswith(' warming_up">') and "nodata" not in warming
    assert new.startswith(' no_data">') and BADGE in new and OK not in new
    assert "No data: the detector has scored no bucket of it yet" in new and "no baseline yet" in new
    assert (f"No incident open: 1 of 3 services OK, 1 warming up, 1 with no data yet {WHY}, as of "
            "2026-12-07 23:52 UTC.") in text(index)
    # Its own page: badge, note and title say the same; the name stays text.
    assert BADGE in page and OK not in page and "No data: the detector has scored no bucket" in page
    assert "<title>&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&amp;: no data – Service status</title>" in page
    assert HOSTILE not in index and HOSTILE not in page


def test_a_new_store_is_all_no_data(tmp_path: Path) -> None:
    with board(tmp_path, {}) as base:
        body = get(base, "/api/v1/services").json()
        index = get(base, "/").text
        page = get(base, "/services/FibreNet").text
    assert [s["health"] for s in body["services"]] == ["no_data", "no_data"]
    assert f"No incident open: all 2 services with no data yet {WHY}, as of" in text(index)
    assert "all 2 services OK" not in text(index) and OK not in index and index.count(BADGE) == 2
    assert "<title>FibreNet: no data – Service status</title>" in page


def test_no_data_beside_warming_up_and_an_incident(tmp_path: Path) -> None:
    with board(tmp_path, {"FibreNet": 1}) as base:
        mixed = text(get(base, "/").text)
    assert f"No incident open: 1 of 2 services warming up, 1 with no data yet {WHY}, as of" in mixed
    (tmp_path / "incident").mkdir()
    with board(tmp_path / "incident", {"FibreNet": 150}, open_for=("FibreNet",)) as base:
        body = get(base, "/api/v1/services").json()
        index = get(base, "/").text
    assert [s["health"] for s in body["services"]] == ["incident", "no_data"]
    assert f"1 of 2 services with an incident open, 1 with no data yet {WHY}, as of" in text(index)
    assert BADGE in cards(index)[1]


def status(tmp_path: Path, *args: str) -> Any:
    result = CliRunner().invoke(main, ["--config", str(tmp_path / "feeds.toml"), "--db",
                                       str(tmp_path / "miner.sqlite"), "status", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_miner_status_says_no_data_as_the_api_does(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, '\n[[services]]\nname = "NewNet"\n')
    with closing(Store.open(tmp_path / "miner.sqlite")) as store:
        scored(store, cfg, "FibreNet", [0.0] * 150)
    shown = json.loads(status(tmp_path, "--format", "json"))["services"]
    assert [(s["service"], s["health"], s["warm_from"]) for s in shown] == [
        ("FibreNet", "ok", None), ("WhatsApp", "no_data", None), ("NewNet", "no_data", None)]
    assert ("WhatsApp, NewNet have no bucket scored yet: no data, an outage cannot be told (no incident opens before "
            "detector.warmup_hours, 12 h, of history from the first bucket scored)") in status(tmp_path).splitlines()
    assert "FibreNet has no bucket" not in status(tmp_path)

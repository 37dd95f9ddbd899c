"""A service's muted alerts (`miner silence add` silences, alerts.maintenance windows) in the read API's
/api/v1/services (``muted_until``, ``muted``) and as a note on the status board's index and service page, on a real
127.0.0.1 server reading a real SQLite store on a fixed clock, as `miner status` says them. Only status said so: the
on-call looking at the board in an outage saw an open incident and no alert, with nothing saying alerts were muted."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from test_read_api import serving

from miner.config import load_config
from miner.read_api import ReadApi
from miner.service import Service, ServiceOptions
from miner.store import Store

NOW = datetime(2026, 11, 27, 12, 7, 30, tzinfo=UTC)
# Anyone's text: markup, a bidi override that reversed the words after it, and a line break.
HOSTILE = '<script>alert("x")</script> \u202eevil\u202c & "quoted"\nnext'


def at(hour: int, minute: int = 0) -> datetime:
    return NOW.replace(hour=hour, minute=minute, second=0)


def t(hour: int, minute: int = 0) -> str:
    return at(hour, minute).isoformat()


def window(service: str, start: str = "", end: str = "", comment: str = "", cron: str = "") -> str:
    span = f'cron = "{cron}"\nduration_minutes = 60\n' if cron else f'start = "{start}"\nend = "{end}"\n'
    return f'\n[[alerts.maintenance]]\nservice = "{service}"\n{span}comment = {json.dumps(comment)}\n'


def write_config(tmp_path: Path, services: list[tuple[str, str | None]], windows: str) -> Path:
    listed = "".join(f'\n[[services]]\nname = "{name}"\n' + (f'provider = "{p}"\n' if p else "")
                     for name, p in services)
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(f"""
[store]
path = "{tmp_path / 'miner.sqlite'}"

[detector]
bucket_minutes = 15
{listed}
[[sources]]
name = "feed"
type = "rss"
url = "http://127.0.0.1:9/feed.rss"

[alerts]
from_addr = "miner <miner@example.org>"

[[alerts.routes]]
name = "oncall"
email = ["oncall@example.org"]
""" + windows)
    return cfg


SERVICES = [("Telegram", None), ("Zoom", None), ("WhatsApp", "Meta"), ("Instagram", "Meta"), ("Gmail", "Google"),
            ("Signal", None), ("Slack", None)]
WINDOWS = (window("Zoom", t(11), t(13), "planned upgrade")  # 0: a window alone
           + window("whatsapp", t(12, 30), t(15), "Meta's migration")  # 1: starts as silence 2 ends, any case
           + window("Gmail", t(11), t(13))  # 2: under silence 5, which outlasts it
           + window("Signal", t(20), t(21), "later")  # 3: not in effect: mutes nothing now
           + window("Slack", comment="every half hour", cron="*/30 * * * *"))  # 4: each overlaps the next, for good


def add_silences(store: Store) -> None:
    store.add_silence("Telegram", NOW - timedelta(hours=1), at(14), "db migration", NOW - timedelta(hours=1))  # 1
    store.add_silence(None, at(11), at(12, 30), "Meta-wide outage", at(11), provider="meta")  # 2
    store.add_silence("Signal", at(9), at(10), "over", at(9))  # 3: ended
    store.add_silence("Signal", at(20), at(21), "not yet", at(9))  # 4: not started
    store.add_silence("gmail", at(12), at(13, 30), "", at(12))  # 5: no comment


@contextmanager
def board(tmp_path: Path, services: list[tuple[str, str | None]], windows: str, fill: Any) -> Iterator[str]:
    """The read API and the board over a store ``fill`` wrote, read through a connection of its own: its base URL."""
    config = load_config(write_config(tmp_path, services, windows))
    with closing(Store.open(tmp_path / "miner.sqlite")) as store:
        fill(store)
        store.open_incident("Telegram", at(12), {"peak_complaints": 9, "baseline": 1.0, "peak_score": 7.0,
                                                 "total_complaints": 9, "symptoms": {}}, {})
    with closing(Store.open(tmp_path / "miner.sqlite")) as reader, \
            serving(ReadApi(config, lambda: reader, lambda: None, lambda: NOW), board=True) as base:
        yield base


def text(html: str) -> str:
    """What a reader sees of ``html``: its tags out, its spaces as one."""
    return " ".join(re.sub(r"<[^>]+>", "", html).split())


def cards(html: str) -> dict[str, str]:
    """Each service's card on the index, by its name, as text."""
    found = {}
    for card in html.split('<li class="card')[1:]:
        name = re.search(r'<a href="services/[^"]*">([^<]*)</a>', card)
        assert name is not None
        found[name.group(1)] = text(card.split("</li>")[0])
    return found


def note(html: str) -> str | None:
    """The muted note of a page or card, as text; None for none."""
    found = re.search(r'<p class="mute">(.*?)</p>', html, re.S)
    return text(found.group(1)) if found else None


SHOWN = {
    "Telegram": "Alerts muted until 2026-11-27 14:00 UTC (silence 1: db migration)",
    "Zoom": "Alerts muted until 2026-11-27 13:00 UTC (maintenance window alerts.maintenance[0]: planned upgrade)",
    "WhatsApp": "Alerts muted until 2026-11-27 15:00 UTC (silence 2 of provider meta until 2026-11-27 12:30 UTC: "
                "Meta-wide outage; then windows or silences following on)",
    "Instagram": "Alerts muted until 2026-11-27 12:30 UTC (silence 2 of provider meta: Meta-wide outage)",
    "Gmail": "Alerts muted until 2026-11-27 13:30 UTC (silence 5; maintenance window alerts.maintenance[2] until "
             "2026-11-27 13:00 UTC)",
    "Signal": None,
    "Slack": "Alerts muted with no end in the next 7 days (maintenance window alerts.maintenance[4] until "
             "2026-11-27 13:00 UTC: every half hour; then windows or silences following on)",
}


def test_the_api_says_until_when_and_by_what_each_services_alerts_are_muted(tmp_path: Path) -> None:
    with board(tmp_path, SERVICES, WINDOWS, add_silences) as base:
        body = httpx.get(base + "/api/v1/services", timeout=10).json()
    got = {s["service"]: (s["muted_until"], s["muted"]) for s in body["services"]}

    def silence(sid: int, until: str, comment: str, service: str | None = None, provider: str | None = None
                ) -> dict[str, Any]:
        return {"id": sid, "service": service, "provider": provider, "until": until, "comment": comment}

    def muted(silences: list[dict[str, Any]], maintenance: list[dict[str, Any]]) -> dict[str, Any]:
        return {"silences": silences, "maintenance": maintenance}

    assert got == {
        "Telegram": (t(14), muted([silence(1, t(14), "db migration", "Telegram")], [])),
        "Zoom": (t(13), muted([], [{"window": 0, "start": t(11), "end": t(13), "comment": "planned upgrade"}])),
        # The window following on is not muting yet: muted_until says it, as status does.
        "WhatsApp": (t(15), muted([silence(2, t(12, 30), "Meta-wide outage", provider="meta")], [])),
        "Instagram": (t(12, 30), muted([silence(2, t(12, 30), "Meta-wide outage", provider="meta")], [])),
        "Gmail": (t(13, 30), muted([silence(5, t(13, 30), "", "gmail")],
                                   [{"window": 2, "start": t(11), "end": t(13), "comment": ""}])),
        "Signal": (None, None),  # a silence over, one not started, a window later on
        # Muted, with no end within 7 days: muted_until null, muted not.
        "Slack": (None, muted([], [{"window": 4, "start": t(12), "end": t(13), "comment": "every half hour"}])),
    }


def test_the_board_notes_each_muted_service_on_the_index_and_its_page(tmp_path: Path) -> None:
    with board(tmp_path, SERVICES, WINDOWS, add_silences) as base:
        index = httpx.get(base + "/", timeout=10).text
        pages = {name: httpx.get(f"{base}/services/{quote(name)}", timeout=10).text for name, _ in SERVICES}
    shown = cards(index)
    assert list(shown) == [name for name, _ in SERVICES]
    for name, card in shown.items():
        expected = SHOWN[name]
        assert (expected in card) if expected else "muted" not in card, (name, card)
    # The incident open beside its note: why no alert of it came.
    assert "Incident since 2026-11-27 12:00 UTC" in shown["Telegram"]
    assert {name: note(page) for name, page in pages.items()} == SHOWN


def test_a_hostile_comment_is_shown_as_text_on_the_board_and_whole_in_the_api(tmp_path: Path) -> None:
    # A silence's comment is anyone's text who may run `miner silence add`, a window's anyone's who edits feeds.toml.
    def fill(store: Store) -> None:
        store.add_silence("Telegram", at(12), at(14), HOSTILE, at(12))

    with board(tmp_path, [("Telegram", None)], window("Telegram", t(11), t(13), HOSTILE), fill) as base:
        api = httpx.get(base + "/api/v1/services", timeout=10)
        pages = [httpx.get(base + path, timeout=10).text for path in ("/", "/services/Telegram")]
    assert "<script" not in api.text and "\u202e" not in api.text and "\n" not in api.text
    [telegram] = api.json()["services"]
    assert telegram["muted"]["silences"][0]["comment"] == telegram["muted"]["maintenance"][0]["comment"] == HOSTILE
    for html in pages:
        muted = re.search(r'<p class="mute">(.*?)</p>', html, re.S)
        assert muted is not None
        assert "<script" not in html and "\u202e" not in html and "\u202c" not in muted.group(1)
        escaped = ("&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; \\u202eevil\\u202c &amp; &#34;quoted&#34;"
                   "\\x0anext")
        assert muted.group(1).count(escaped) == 2, muted.group(1)  # the silence's and the window's


def test_the_service_serves_the_silences_it_reads_and_the_windows_of_its_own_config(tmp_path: Path) -> None:
    # The service's own wiring: its API connection, its config's windows, its kept answers (server.cache_seconds).
    cfg = write_config(tmp_path, [("Telegram", None), ("Zoom", None), ("Signal", None)],
                       window("Zoom", t(11), t(13), "planned upgrade"))
    with closing(Store.open(tmp_path / "miner.sqlite")) as store:
        store.add_silence("Telegram", at(12), at(14), "db migration", at(12))
    svc = Service(load_config(cfg), tmp_path / "miner.sqlite",
                  ServiceOptions(jobs=(), http=True, http_port=0, clock=lambda: NOW))
    svc.start()
    try:
        assert svc.http_address is not None
        base = "http://{}:{}".format(*svc.http_address)
        deadline = time.monotonic() + 60
        while (reply := httpx.get(base + "/api/v1/services", timeout=10)).status_code == 503:  # starting
            assert time.monotonic() < deadline, reply.text
            time.sleep(0.05)
        index = httpx.get(base + "/", timeout=10).text
    finally:
        svc.stop()
    assert [(s["service"], s["muted_until"]) for s in reply.json()["services"]] == [
        ("Telegram", t(14)), ("Zoom", t(13)), ("Signal", None)]
    shown = cards(index)
    assert SHOWN["Telegram"] in shown["Telegram"] and SHOWN["Zoom"] in shown["Zoom"]
    assert "muted" not in shown["Signal"]

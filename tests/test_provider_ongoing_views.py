"""The provider's incident going on, as the three places that show it take it, on one real store and config: an
alert's provider note, a digest's providers' section, and the read API's provider state (and the status board's, on
a real 127.0.0.1 server) say the same of each stored incident at the same moment. Each place wrote the rule itself,
and the alert called going on two that the digest and the API left out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from test_read_api import serving

from miner.alerts.render import render_alert, render_digest
from miner.config import Config, load_config
from miner.read_api import ReadApi
from miner.records import FetchResult, OfficialIncident
from miner.store import Store

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
TITLE = "Degraded performance for Actions"


def _config(tmp_path: Path) -> Config:
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(f"""
[store]
path = "{tmp_path / 'miner.sqlite'}"

[detector]
bucket_minutes = 15

[[services]]
name = "GitHub"
status_page = "http://127.0.0.1:9/"

[[sources]]
name = "feed"
type = "rss"
url = "http://127.0.0.1:9/feed.rss"

[alerts]
from_addr = "miner <miner@example.org>"

[[alerts.routes]]
name = "oncall"
email = ["oncall@example.org"]
""")
    return load_config(cfg)


def _views(tmp_path: Path, incident: OfficialIncident) -> dict[str, bool]:
    """Whether each place shows ``incident`` (the only one stored, its source's poll just now) as going on at NOW,
    where miner's own incident of GitHub opens, more than two hours after it began (none near ours: only one
    still going on is the alert's provider incident)."""
    config = _config(tmp_path)
    assert "status:github" in config.polled_sources and incident.started_at < NOW - timedelta(hours=2)
    store = Store.open(tmp_path / "miner.sqlite")
    try:
        store.save_fetch(incident.source, FetchResult(incidents=[incident]), NOW, NOW)
        iid = store.open_incident("GitHub", NOW, {"peak_complaints": 30, "peak_score": 8.4, "baseline": 2.0,
                                                  "total_complaints": 95, "symptoms": {"login": 30}}, {"z": 8.4})
        route = config.alerts.routes[0]
        alert = render_alert(store, config.alerts, route, "alert", [{"incident_id": iid, "kind": "open"}],
                             message_id="<m@example.org>", now=NOW).text
        digest = render_digest(store, config.alerts, NOW, route, sources=config.polled_sources).text
        reader = Store.open(tmp_path / "miner.sqlite")
        try:
            with serving(ReadApi(config, lambda: reader, lambda: None, lambda: NOW), board=True) as base:
                [github] = httpx.get(base + "/api/v1/services", timeout=10).json()["services"]
                board = httpx.get(base + "/", timeout=10).text
        finally:
            reader.close()
    finally:
        store.close()
    flat = " ".join(alert.split())
    # The alert says the one or the other; the digest's card of the same incident says what the alert says.
    assert (f"Provider: {TITLE}" in flat) != ("nothing on the status page yet" in flat)
    assert (f"Provider: {TITLE}" in " ".join(digest.split())) == (f"Provider: {TITLE}" in flat)
    return {"alert": f"Provider: {TITLE}" in flat,
            "digest": "Providers' status pages (1 open" in digest,
            "api": github["official"] is not None and github["official"]["title"] == TITLE,
            "board": TITLE in board}


def _incident(status: str = "investigating", *, source: str = "status:github", started: timedelta = timedelta(hours=5),
              updated: timedelta = timedelta(hours=1)) -> OfficialIncident:
    return OfficialIncident(source, "inc-1", "GitHub", TITLE, status, NOW - started, NOW - updated, impact="major",
                            url="https://www.githubstatus.com/incidents/inc1")


def test_an_open_incident_the_provider_updated_an_hour_ago_is_going_on_in_all_three(tmp_path: Path) -> None:
    assert _views(tmp_path, _incident()) == dict.fromkeys(("alert", "digest", "api", "board"), True)


@pytest.mark.parametrize("status", ["resolved", "postmortem"])
def test_one_whose_status_says_it_is_over_without_a_resolve_time_is_over_in_all_three(
        tmp_path: Path, status: str) -> None:
    # Statuspage's incidents.json with "resolved_at": null beside a status that says it is over, polled three hours
    # ago: the digest and the API took it as over at its last update, the alert as going on (updated within the day).
    views = _views(tmp_path, _incident(status, updated=timedelta(hours=3)))
    assert views == dict.fromkeys(("alert", "digest", "api", "board"), False)


def test_one_open_but_not_updated_for_longer_than_a_day_is_over_in_all_three(tmp_path: Path) -> None:
    # A feed entry that names no status stays open in the store for good: 25 hours without an update is no outage
    # the provider is working on.
    views = _views(tmp_path, _incident("unknown", started=timedelta(days=3), updated=timedelta(hours=25)))
    assert views == dict.fromkeys(("alert", "digest", "api", "board"), False)


def test_one_of_a_status_source_removed_from_feeds_toml_is_over_in_all_three(tmp_path: Path) -> None:
    # Its source (an earlier status page of the service) is polled no more, so its resolve is never read: the digest
    # and the API left it out, the alert called it the provider's incident going on.
    views = _views(tmp_path, _incident(source="status:old-page"))
    assert views == dict.fromkeys(("alert", "digest", "api", "board"), False)

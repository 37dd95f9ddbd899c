"""The provider's incident that /api/v1/services and the status board give as its state now, on a real 127.0.0.1
server over a real store: one its status page has not updated for a day is no longer taken for it, as the alerts and
the digest do not (its resolve was never read: a status feed entry that says no state stays open in the store)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
from test_read_api import NOW, get, served, write_config

from miner.records import FetchResult, OfficialIncident
from miner.store import Store


def _only(*incidents: OfficialIncident) -> object:
    """The configured status source's poll at NOW: "abc" (open in the fill) resolved, and ``incidents``."""
    def add(store: Store) -> None:
        store.save_fetch("status:whatsapp", FetchResult(incidents=[
            OfficialIncident("status:whatsapp", "abc", "WhatsApp", "Messages delayed", "resolved",
                             NOW - timedelta(minutes=30), NOW - timedelta(minutes=5), resolved_at=NOW - timedelta(
                                 minutes=5)), *incidents]), NOW, NOW)
    return add


def test_a_provider_incident_quiet_for_a_day_is_not_the_providers_state_now(tmp_path: Path) -> None:
    # A feed entry three days old whose status no label gave (unknown): never resolved in the store.
    stale = OfficialIncident("status:whatsapp", "entry-1", "WhatsApp", "Elevated error rates", "unknown",
                             NOW - timedelta(days=3), NOW - timedelta(days=3))
    with served(tmp_path, write_config(tmp_path), _only(stale), board=True) as api:
        whatsapp = get(api, "/api/v1/services")[1]["services"][0]
        assert whatsapp["service"] == "WhatsApp" and whatsapp["official"] is None
        index = httpx.get(api.base + "/", timeout=10).text
        assert "Elevated error rates" not in index


def test_one_updated_within_the_day_still_is(tmp_path: Path) -> None:
    # Begun three days ago, updated 23 hours ago: the provider is still at work on it.
    going_on = OfficialIncident("status:whatsapp", "long", "WhatsApp", "Degraded media uploads", "monitoring",
                                NOW - timedelta(days=3), NOW - timedelta(hours=23), impact="minor")
    with served(tmp_path, write_config(tmp_path), _only(going_on), board=True) as api:
        whatsapp = get(api, "/api/v1/services")[1]["services"][0]
        assert (whatsapp["official"]["title"], whatsapp["official"]["status"]) == ("Degraded media uploads",
                                                                                  "monitoring")
        assert "Degraded media uploads" in httpx.get(api.base + "/", timeout=10).text

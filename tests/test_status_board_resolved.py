"""A recently resolved incident on the status board and in /api/v1/services: a real 127.0.0.1 server reading a real
SQLite store on a fixed clock. Right after a resolve the card said only "OK, no incident open", while /incidents and
the digest still told the outage."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
from test_read_api import NOW, served, write_config
from test_status_board import Board, fill_endings, page

from miner.store import Store

RESOLVED = [0]  # the id of the one resolved today, as fill_resolved made it


def fill_resolved(store: Store) -> None:
    """Instagram: one incident resolved 30 h ago (too old to show) and one open 09:30-10:45 today, resolved."""
    old = store.open_incident("Instagram", NOW - timedelta(hours=31), {"peak_complaints": 9}, {})
    gone = NOW - timedelta(hours=30)
    store.update_incident(old, gone, {"status": "resolved", "resolved_at": gone}, "resolve", {})
    opened = NOW.replace(hour=9, minute=30, second=0)
    iid = RESOLVED[0] = store.open_incident("Instagram", opened, {"peak_complaints": 7, "total_complaints": 20}, {})
    store.update_incident(iid, opened + timedelta(minutes=75), {"status": "resolved",
                                                                "resolved_at": opened + timedelta(minutes=75)},
                          "resolve", {})


def test_a_service_shows_its_incident_resolved_in_the_last_day(tmp_path: Path) -> None:
    with served(tmp_path, write_config(tmp_path), fill_resolved, board=True) as api:
        board = Board(api.base, api.store)
        services = httpx.get(api.base + "/api/v1/services").json()["services"]
        _, _, index = page(board, "/")
        html, _, service = page(board, "/services/Instagram")
        _, _, mtn = page(board, "/services/MTN%20Uganda")
    instagram, mtn_api = (next(s for s in services if s["service"] == name) for name in ("Instagram", "MTN Uganda"))
    assert instagram["incident"] is None  # health stays as it was: none is open
    assert instagram["recently_resolved"] == {"id": RESOLVED[0], "opened_at": "2026-11-27T09:30:00+00:00",
                                              "resolved_at": "2026-11-27T10:45:00+00:00", "peak_complaints": 7,
                                              "closed_untracked": None, "resolved_after_gap": None}
    note = "Resolved 2026-11-27 10:45 UTC (open 1 h 15 min, peak 7 complaints per bucket)"
    assert note in index.words(" ")
    assert note in service.words(" ")
    assert '<p class="resolved">Resolved <time datetime="2026-11-27T10:45:00+00:00">' in html
    assert ("Resolved" in mtn.words(" ")) == (mtn_api["recently_resolved"] is not None)


def test_a_recent_end_miner_did_not_see_is_told_as_the_incident_list_tells_it(tmp_path: Path) -> None:
    # fill_endings: resolved at 22:45 yesterday after miner was not scoring from 04:00 to 22:30, 19 h 15 min after
    # its opening at 03:30, which is no duration of the outage.
    with served(tmp_path, write_config(tmp_path), fill_endings, board=True) as api:
        board = Board(api.base, api.store)
        services = httpx.get(api.base + "/api/v1/services").json()["services"]
        index = page(board, "/")[2].words()
    (instagram,) = (s for s in services if s["service"] == "Instagram")
    assert instagram["recently_resolved"]["resolved_after_gap"] == {
        "from": "2026-11-26T04:00:00+00:00", "to": "2026-11-26T22:30:00+00:00",
        "ended_from": "2026-11-26T04:00:00+00:00"}
    assert instagram["recently_resolved"]["closed_untracked"] is None
    assert ("Resolved, end not seen: some time from 2026-11-26 04:00 UTC to 2026-11-26 22:30 UTC, when miner was not "
            "scoring (open 30 min to 19 h 00 min, peak 3 complaints per bucket)") in index
    assert "19 h 15 min" not in index


def fill_closed(store: Store) -> None:
    """Instagram: an incident miner closed itself two hours ago, its service gone from feeds.toml."""
    iid = store.open_incident("Instagram", NOW - timedelta(hours=3), {"peak_complaints": 4}, {})
    at = NOW - timedelta(hours=2)
    store.update_incident(iid, at, {"status": "resolved", "resolved_at": at}, "resolve", {"reason": "unwatched"})


def test_a_recent_incident_miner_closed_itself_is_not_said_to_have_resolved(tmp_path: Path) -> None:
    with served(tmp_path, write_config(tmp_path), fill_closed, board=True) as api:
        board = Board(api.base, api.store)
        services = httpx.get(api.base + "/api/v1/services").json()["services"]
        parsed = page(board, "/services/Instagram")[2]
    (instagram,) = (s for s in services if s["service"] == "Instagram")
    assert instagram["recently_resolved"]["closed_untracked"]
    text = parsed.words()
    assert (f"Closed, not seen to end, 2026-11-27 10:07 UTC: {instagram['recently_resolved']['closed_untracked']} "
            "(peak 4 complaints per bucket)") in text
    assert "Resolved 2026-11-27 10:07" not in text

"""A status feed entry without a date, read from the real Parse history feed with one item's pubDate left out."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fakeserver import FakeServer, Reply

from miner.collectors import CollectSettings, Poller
from miner.config import SourceConfig
from miner.records import FetchResult, OfficialIncident
from miner.store import Store

FEED = Path(__file__).parent / "fixtures" / "collectors" / "status" / "parse_status_history.rss"
NOW = datetime(2026, 11, 27, 16, 0, tzinfo=UTC)
SINCE = datetime(2013, 1, 1, tzinfo=UTC)
FIRST = "http://status.parse.com/incidents/lzf7mjchpy20"  # the feed's first item: "Elevated error rates", Jan 1 2014


@pytest.fixture
def poller() -> Iterator[Poller]:
    with Poller(CollectSettings(), hash_key=b"k") as p:
        yield p


def _feed(open_: bool) -> bytes:
    """The real feed, its first item without its pubDate; ``open_``: as it read before the item's "Identified" and
    "Resolved" updates, its one update "Investigating"."""
    real = FEED.read_bytes()
    head, sep, rest = real.partition(b"<item>")
    item, end, tail = rest.partition(b"</item>")
    item = re.sub(rb"\s*<pubDate>[^<]*</pubDate>", b"", item, count=1)
    if open_:
        item = re.sub(rb"&lt;p&gt;&lt;small&gt;Jan  1, 09:09 PST.*?(?=&lt;p&gt;&lt;small&gt;Jan  1, 08:17 PST)", b"",
                      item, count=1, flags=re.S)
    assert b"pubDate" not in item and (b"Resolved" not in item) == open_
    return head + sep + item + end + tail


def _poll(server: FakeServer, poller: Poller, store: Store, source: SourceConfig, body: bytes,
          at: datetime) -> int:
    server.serve("/history.rss", Reply(200, body, content_type="application/rss+xml"))
    poller.ctx.now = lambda: at
    return store.save_fetch(source.name, poller.poll(source, store.source_state(source.name)), at, at).incidents_updated


def test_an_undated_entry_that_says_nothing_new_is_not_updated_at_each_poll(server: FakeServer, poller: Poller,
                                                                            store: Store) -> None:
    # Its update time was each poll's: every poll counted it updated, and one left open (never read resolved) was
    # "updated" within the day at every poll, so alerts and digests took it for the provider's ongoing incident for
    # good.
    source = SourceConfig("parse", "status_feed", url=f"{server.url}/history.rss", services=("Parse",))
    store.sync_sources([source])
    assert _poll(server, poller, store, source, _feed(open_=True), NOW) == 0
    for hours in (1, 30):
        assert _poll(server, poller, store, source, _feed(open_=True), NOW + timedelta(hours=hours)) == 0
    [row] = [r for r in store.official_incidents("Parse", SINCE) if r["external_id"] == FIRST]
    assert (row["status"], row["updated_at"], row["resolved_at"]) == ("investigating", NOW.isoformat(), None)
    # What it says changes (resolved): that poll updates it, dated by that poll, and the next, the same, does not.
    later = NOW + timedelta(hours=31)
    assert _poll(server, poller, store, source, _feed(open_=False), later) == 1
    assert _poll(server, poller, store, source, _feed(open_=False), later + timedelta(hours=1)) == 0
    [row] = [r for r in store.official_incidents("Parse", SINCE) if r["external_id"] == FIRST]
    assert (row["status"], row["started_at"], row["updated_at"], row["resolved_at"]) == (
        "resolved", NOW.isoformat(), later.isoformat(), later.isoformat())
    assert len(store.official_incidents("Parse", SINCE)) == 17


def test_a_page_read_two_ways_keeps_its_start_when_the_provider_dates_it_after_miner_saw_it(store: Store) -> None:
    # The feed's entry names no date (stored at first sight, 10:00); the page's JSON dates the same incident 10:05
    # (planned work, or the provider's clock ahead). The JSON's later start was taken, the feed's own update put it back
    # to its first sight, and each poll of either moved it again: the row "updated" at every poll never went quiet.
    feed = SourceConfig("page-feed", "status_feed", url="https://status.example.com/history.rss",
                        services=("Sync",))
    page = SourceConfig("page-json", "statuspage", url="https://status.example.com", services=("Sync",))
    store.sync_sources([feed, page])
    url = "https://status.example.com/incidents/abc123"
    seen = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)

    def poll(source: SourceConfig, at: datetime) -> None:
        undated = source is feed
        incident = OfficialIncident(
            source=source.name, external_id=url if undated else "abc123", service="Sync", title="Sync delayed",
            status="investigating", started_at=at if undated else seen + timedelta(minutes=5),
            updated_at=at if undated else seen + timedelta(minutes=5), url=url, undated=undated,
            update_undated=undated, posted_at=None if undated else seen + timedelta(minutes=5))
        store.save_fetch(source.name, FetchResult(posts=[], state=store.source_state(source.name),
                                                  incidents=[incident]), at, at)

    poll(feed, seen)
    rows = []
    for minutes in range(10, 70, 10):
        poll(page if minutes % 20 else feed, seen + timedelta(minutes=minutes))
        [row] = store.official_incidents("Sync", seen - timedelta(days=1))
        rows.append((row["started_at"], row["posted_at"], row["updated_at"]))
    assert set(rows) == {("2026-11-27T10:00:00+00:00", "2026-11-27T10:00:00+00:00", "2026-11-27T10:05:00+00:00")}


def test_a_page_read_first_by_its_json_is_not_updated_at_each_poll_of_an_undated_feed(store: Store) -> None:
    # The JSON's row, then the feed's entry of the same incident, undated, saying what the row says: each feed poll
    # moved the row's updated_at to its own time and counted it updated (the feed's own row was spared that), so an
    # incident never read resolved stayed "updated" within the day for good, going on in every alert and digest.
    feed = SourceConfig("page-feed", "status_feed", url="https://status.example.com/history.rss",
                        services=("Sync",))
    page = SourceConfig("page-json", "statuspage", url="https://status.example.com", services=("Sync",))
    store.sync_sources([feed, page])
    url = "https://status.example.com/incidents/abc123"
    posted = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    json_incident = OfficialIncident(source=page.name, external_id="abc123", service="Sync", title="Sync delayed",
                                     status="investigating", started_at=posted, updated_at=posted, url=url,
                                     posted_at=posted)
    assert store.save_fetch(page.name, FetchResult(incidents=[json_incident]), posted, posted).incidents_new == 1
    counted = []
    for hours in (1, 2, 30):
        at = posted + timedelta(hours=hours)
        entry = OfficialIncident(source=feed.name, external_id=url, service="Sync", title="Sync delayed",
                                 status="investigating", started_at=at, updated_at=at, url=url, undated=True,
                                 update_undated=True)
        counted.append(store.save_fetch(feed.name, FetchResult(incidents=[entry]), at, at).incidents_updated)
    [row] = store.official_incidents("Sync", posted - timedelta(days=1))
    assert (counted, row["updated_at"]) == ([0, 0, 0], posted.isoformat())

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

"""A compressed body whose data ended whole but whose trailer (gzip's CRC-32 and size, zlib's Adler-32) did not come,
told from one cut short inside its data: real feeds served by a real server on 127.0.0.1."""

from __future__ import annotations

import gzip
import logging
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fakeserver import FakeServer, Recorded, Reply

from miner.collectors import CollectSettings, Poller
from miner.collectors.http import fetch, make_client
from miner.config import SourceConfig
from miner.errors import SourceError
from miner.records import SourceState
from miner.store import Store

NOW = datetime(2026, 11, 27, 16, 0, tzinfo=UTC)
EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
ETAG, LAST_MODIFIED = '"v1"', "Fri, 27 Nov 2026 15:00:00 GMT"
ATOM = "status/saucelabs_us-west-1_history.atom"  # a real Statuspage history feed, 25 incidents
RSS = "rss/forum_latest.rss"

# What servers send: the whole gzip stream less its 8-byte trailer, or part of it; a zlib ("deflate") one less its
# 4-byte Adler-32.
SHORT: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "gzip-no-trailer": ("gzip", lambda b: gzip.compress(b)[:-8]),
    "gzip-3-trailer-bytes": ("gzip", lambda b: gzip.compress(b)[:-5]),
    "gzip-crc-only": ("gzip", lambda b: gzip.compress(b)[:-4]),
    "deflate-no-adler32": ("deflate", lambda b: zlib.compress(b)[:-4]),
}


@pytest.fixture
def poller() -> Iterator[Poller]:
    with Poller(CollectSettings(), hash_key=b"k") as p:
        yield p


def _serve(server: FakeServer, coding: str, body: bytes, ctype: str) -> None:
    """``body``, compressed with ``coding``, served at /feed as a real server serves a feed: with validators, and a
    304 to a request that sends them back."""

    def reply(request: Recorded) -> Reply:
        headers = {"ETag": ETAG, "Last-Modified": LAST_MODIFIED}
        if request.headers.get("if-none-match") == ETAG or request.headers.get("if-modified-since") == LAST_MODIFIED:
            return Reply(304, b"", headers=headers)
        return Reply(200, body, headers={**headers, "Content-Encoding": coding}, content_type=ctype)

    server.serve("/feed", reply)


@pytest.mark.parametrize("short", SHORT, ids=list(SHORT))
def test_a_feed_without_its_compressed_trailer_is_read_its_validators_not_kept_with_a_warning(
        server: FakeServer, poller: Poller, store: Store, caplog: pytest.LogCaptureFixture, short: str) -> None:
    # Made a "cut short" error, as a body cut inside its data is, such a server's feed failed every poll: never read.
    coding, make = SHORT[short]
    body = make(server.fixture_bytes(ATOM))
    assert zlib.decompressobj(zlib.MAX_WBITS | 32).decompress(body) == server.fixture_bytes(ATOM)
    _serve(server, coding, body, "application/atom+xml")
    source = SourceConfig("saucelabs", "status_feed", url=f"{server.url}/feed", services=("Sauce Labs",))
    store.sync_sources([source])
    with caplog.at_level(logging.WARNING, logger="miner.collectors"):
        result = poller.poll(source)
    said = (f"{coding} body from {server.url}/feed came without its trailer (the checksum that ends it; its compressed "
            "data ended whole): read, but its ETag and Last-Modified not kept, so that the next poll fetches it whole")
    assert result.warnings == [said]
    assert [r.getMessage() for r in caplog.records] == [f"source saucelabs: {said}"]
    assert len(result.incidents) == 25
    store.save_fetch(source.name, result, NOW, NOW)
    assert store.source_state(source.name) == SourceState()  # no ETag, no Last-Modified
    [row] = store.database.rows("SELECT last_warning FROM sources WHERE name = ?", (source.name,))
    assert row["last_warning"] == said
    rows = store.official_incidents("Sauce Labs", EPOCH)
    assert len(rows) == 25
    [row] = [r for r in rows if r["external_id"].endswith("Incident/4789058")]
    assert (row["title"], row["status"]) == ("2020-August-05 Service Incident", "resolved")


def test_a_feed_cut_inside_its_compressed_data_still_fails_its_poll_and_one_byte_more_is_read(
        server: FakeServer, poller: Poller, store: Store) -> None:
    # The line between the two: a body short of even one byte of its deflate data (here its last, which holds only
    # the end-of-block code: all the feed's text inflates from what came) is cut short, a temporary error that
    # stores nothing; the same body with that byte, only the trailer missing, is whole.
    real = server.fixture_bytes(ATOM)
    packed = gzip.compress(real)
    source = SourceConfig("saucelabs", "status_feed", url=f"{server.url}/feed", services=("Sauce Labs",))
    store.sync_sources([source])
    assert zlib.decompressobj(31).decompress(packed[:-9]) == real  # the cut is in the data's last bits alone
    for cut in (packed[:len(packed) // 2], packed[:-9]):
        _serve(server, "gzip", cut, "application/atom+xml")
        with pytest.raises(SourceError, match=r"^cannot decode response from 127\.0\.0\.1: gzip body cut short: it "
                                              r"ends before the end of its compressed stream") as caught:
            poller.poll(source)
        assert not caught.value.permanent
        store.record_poll_failure(source.name, str(caught.value), NOW, NOW)
        assert store.source_state(source.name) == SourceState()
        assert store.official_incidents("Sauce Labs", EPOCH) == []
    # A trailer that came and does not match is a damaged body, as before; so is one that came in part, wrong.
    for damaged, why in ((packed[:-8] + bytes(8), "incorrect data check"), (packed[:-8] + b"\xff\xff", "cut short")):
        _serve(server, "gzip", damaged, "application/atom+xml")
        with pytest.raises(SourceError, match=why):
            poller.poll(source)
    _serve(server, "gzip", packed[:-8], "application/atom+xml")
    result = poller.poll(source)
    assert len(result.incidents) == 25 and "came without its trailer" in result.warnings[0]


def test_a_server_that_never_sends_the_trailer_is_read_whole_at_every_poll_storing_nothing_twice(
        server: FakeServer, poller: Poller, store: Store) -> None:
    _serve(server, "gzip", gzip.compress(server.fixture_bytes(RSS))[:-8], "application/rss+xml")
    source = SourceConfig("forum", "rss", url=f"{server.url}/feed")
    store.sync_sources([source])
    stats = []
    for n in range(2):
        when = NOW + timedelta(minutes=5 * n)
        result = poller.poll(source, store.source_state(source.name))
        assert not result.not_modified and len(result.posts) == 3
        stats.append(store.save_fetch(source.name, result, when, when))
        assert (store.source_state(source.name).etag, store.source_state(source.name).last_modified) == (None, None)
    assert [(s.posts_new, s.posts_seen) for s in stats] == [(3, 0), (0, 3)]
    assert store.database.rows("SELECT count(*) AS n FROM posts")[0]["n"] == 3
    # Asked whole each time: kept, the validators would have had a cache answer the cut copy with a 304 forever.
    asked = [r.headers for r in server.requests if r.path == "/feed"]
    assert len(asked) == 2 and not any("if-none-match" in h or "if-modified-since" in h for h in asked)


def test_a_body_without_its_trailer_read_outside_a_poll_is_logged(
        server: FakeServer, caplog: pytest.LogCaptureFixture) -> None:
    server.serve("/api", Reply(200, gzip.compress(b'{"ok": 1}')[:-8], headers={"Content-Encoding": "gzip"},
                               content_type="application/json"))
    settings = CollectSettings()
    with make_client(settings) as client, caplog.at_level(logging.WARNING, logger="miner.collectors"):
        resp = fetch(client, settings, f"{server.url}/api", timeout=5, now=lambda: NOW)
    assert (resp.body, resp.unchecked) == (b'{"ok": 1}', True)
    assert [r.getMessage() for r in caplog.records] == [
        f"gzip body from {server.url}/api came without its trailer (the checksum that ends it; its compressed data "
        "ended whole): read, but its ETag and Last-Modified not kept, so that the next poll fetches it whole"]

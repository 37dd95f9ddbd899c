"""Entries of two sites' feeds that share a guid naming no site (`topic-4821`, as older Discourse's `latest.rss` gives)
are two posts, whatever their second and authors, and those of two feeds of one site one post: `miner collect --once`
against real local servers (one per site: a site is a host and port), then the store's own count of a bucket's
complainers (as tests/test_collect_cross_source.py)."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fakeserver import FakeServer, Reply
from test_collect_cross_source import _collect, _complaints, _config, _posts

FEEDS = """
[[sources]]
name = "forum-a"
type = "rss"
url = "{url}/a/latest.rss"
services = ["Sync"]

[[sources]]
name = "forum-b"
type = "rss"
url = "{other}/b/latest.rss"
services = ["Sync"]
"""


def _feeds(server: FakeServer, other: FakeServer, b_named: bool) -> None:
    """`discourse/latest.rss` (guids `topic-4821` and `topic-4819`, isPermaLink false) without its `<author>`s, a
    feed naming no author, as forum A's; forum B's the same shape from another forum (community.example.org, other
    words under the same titles), its entries of the same guids and seconds, naming their authors where
    ``b_named``."""
    feed = server.fixture_bytes("discourse/latest.rss").decode()
    a = re.sub(r"\s*<author>[^<]*</author>", "", feed)
    b = (feed if b_named else a).replace("community.example.com", "community.example.org").replace(
        "Since the 13:30 update every sync fails", "Since 13:30 every upload hangs at 99% and then fails").replace(
        "dark mode", "an offline mode").replace("Would love a dark theme", "Would love to read offline")
    server.serve("/a/latest.rss", Reply(200, a.encode(), content_type="application/rss+xml"))
    other.serve("/b/latest.rss", Reply(200, b.encode(), content_type="application/rss+xml"))


@pytest.mark.parametrize("b_named", [False, True])
def test_two_feeds_entries_of_one_bare_guid_and_second_are_two_posts(tmp_path: Path, server: FakeServer,
                                                                     b_named: bool) -> None:
    # By the bare guid, each pair was one post (one id at one second): one complainer where neither named an author,
    # and A's given B's author where B named one. Each forum's "Sync stopped working" topic is its poster's.
    with FakeServer() as other:
        _feeds(server, other, b_named)
        cfg = _config(tmp_path, ["Sync"], FEEDS.format(url=server.url, other=other.url))
        _collect(cfg)
        found = _posts(tmp_path / "m.sqlite")
        address = server.url.partition("://")[2]
        assert {ident for ident, _author in found["forum-a"]} == {f"{address}#topic-4821", f"{address}#topic-4819"}
        assert all(author is None for _ident, author in found["forum-a"])
        assert _complaints(tmp_path / "m.sqlite") == 2
        # Stored by the release before under the bare guids: the entries still in the feeds are those posts.
        path = tmp_path / "m.sqlite"
        with sqlite3.connect(path, isolation_level=None) as conn:
            stored = conn.execute("SELECT count(*) FROM posts").fetchone()[0]
            conn.execute("UPDATE posts SET external_id = substr(external_id, instr(external_id, '#') + 1)")
            conn.execute("UPDATE sources SET etag = NULL, last_modified = NULL, next_poll_at = ?",
                         (datetime.now(UTC).isoformat(),))
        _collect(cfg)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM posts").fetchone()[0] == stored


def test_a_sites_two_feeds_entries_of_one_bare_guid_are_one_post(tmp_path: Path, server: FakeServer) -> None:
    # A forum's latest feed and a category's list one topic under one guid: scoped by the feed's address, each topic
    # was a post of each feed, two complainers.
    feed = re.sub(r"\s*<author>[^<]*</author>", "", server.fixture_bytes("discourse/latest.rss").decode()).encode()
    server.serve("/a/latest.rss", Reply(200, feed, content_type="application/rss+xml"))
    server.serve("/b/latest.rss", Reply(200, feed, content_type="application/rss+xml"))
    cfg = _config(tmp_path, ["Sync"], FEEDS.format(url=server.url, other=server.url))
    _collect(cfg)
    assert _complaints(tmp_path / "m.sqlite") == 1


def test_a_feed_at_the_sites_root_with_a_query_is_scoped_by_its_host_alone(tmp_path: Path, server: FakeServer) -> None:
    # `https://forum.example.net/?format=rss` is `https://forum.example.net?format=rss` as same_url writes it: cut at
    # its first "/", the query was taken for part of the host, and the root feed's topics were not the category
    # feed's.
    feed = re.sub(r"\s*<author>[^<]*</author>", "", server.fixture_bytes("discourse/latest.rss").decode()).encode()
    server.serve("/", Reply(200, feed, content_type="application/rss+xml"))
    server.serve("/b/latest.rss", Reply(200, feed, content_type="application/rss+xml"))
    cfg = _config(tmp_path, ["Sync"], FEEDS.replace("{url}/a/latest.rss", "{url}/?format=rss").format(
        url=server.url, other=server.url))
    _collect(cfg)
    address = server.url.partition("://")[2]
    assert {ident for ident, _author in _posts(tmp_path / "m.sqlite")["forum-a"]} == {
        f"{address}#topic-4821", f"{address}#topic-4819"}
    assert _complaints(tmp_path / "m.sqlite") == 1

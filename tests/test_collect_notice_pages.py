"""A Pleroma or Akkoma status read by a `mastodon` source (stored by its ActivityPub id, its page as its url) and by
a feed linking its page, https://host/notice/<id>: one complainer. `miner collect --once` against a real local
server, then the store's own count of a bucket's complainers (as tests/test_collect_cross_source.py)."""

from __future__ import annotations

import json
from email.utils import format_datetime
from pathlib import Path

import pytest
from fakeserver import FakeServer, Reply
from test_collect_cross_source import MASTODON, _collect, _complaints, _config, _posts

from miner.timeutil import parse_iso


def _notice_feed(server: FakeServer, handles: bool = False) -> bytes:
    """An RSS feed of the statuses of `mastodon/pleroma_tag_timeline.json` linked by their pages: each item's link and
    guid the status's `url` (/notice/<id>, as Pleroma's Mastodon API gives a status of its own server), its date the
    status's, and no author, as Pleroma's own feeds name none in an item. Pleroma's and Akkoma's own feeds link the
    object id instead; this is the shape of a feed made of that API's statuses. ``handles``: each item names its
    author by the account's `acct` (`<dc:creator>quill</dc:creator>`), as such a feed may."""
    items = "".join(
        f"<item><title>{s['pleroma']['content']['text/plain']}</title><link>{s['url']}</link>"
        f"<guid isPermaLink=\"true\">{s['url']}</guid>"
        + (f"<dc:creator>{s['account']['acct']}</dc:creator>" if handles else "") +
        f"<pubDate>{format_datetime(parse_iso(s['created_at']), usegmt=True)}</pubDate>"
        f"<description>{s['pleroma']['content']['text/plain']}</description></item>"
        for s in json.loads(server.fixture_bytes("mastodon/pleroma_tag_timeline.json")))
    return ('<?xml version="1.0" encoding="UTF-8"?>'
            '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">'
            f"<channel><title>#outage</title><link>https://bridge.example.org/outage</link>{items}</channel></rss>"
            ).encode()


@pytest.mark.parametrize("feed_first", [False, True])
def test_a_pleroma_status_read_by_its_timeline_and_a_feed_linking_its_page_is_one_complainer(
        tmp_path: Path, server: FakeServer, feed_first: bool) -> None:
    # The timeline stores each status by its object id; the feed's entry, by its page and with no author, was a second
    # post and a complainer of its own (its row id). The other status of that second, by someone else and with
    # like words, stays apart, and so does a Lemmy link post of that second sharing the first one's page: its row has
    # that page as its url, and is its poster's post.
    server.serve_fixture("/api/v1/timelines/tag/outage", "mastodon/pleroma_tag_timeline.json", "application/json")
    server.serve("/notices.rss", Reply(200, _notice_feed(server), content_type="application/rss+xml"))
    lemmy = server.fixture_bytes("lemmy/community_link_to_pleroma.xml").replace(
        b"https://pleroma.example.net/objects/5f7c1a2e-8d3b-4e6f-9a0c-1b2d3e4f5a6b",
        b"https://pleroma.example.net/notice/AoTq1XbQ7ZPl3B0YkK")
    server.serve("/feeds/c/technology.xml", Reply(200, lemmy, content_type="application/rss+xml"))
    api = MASTODON.split("[[sources]]")[1]
    feeds = ('[[sources]]\nname = "notice-feed"\ntype = "rss"\nurl = "{url}/notices.rss"\nservices = ["Signal"]\n\n'
             '[[sources]]\nname = "lemmy-feed"\ntype = "rss"\nurl = "{url}/feeds/c/technology.xml"\n'
             'services = ["Signal"]\n')
    if feed_first:
        _collect(_config(tmp_path, ["Signal", "Vodafone"], feeds.format(url=server.url)))
    _collect(_config(tmp_path, ["Signal", "Vodafone"], ("[[sources]]" + api + feeds).format(url=server.url)))
    found = _posts(tmp_path / "m.sqlite")
    timeline = dict(found["masto"])
    by_page = dict(found["notice-feed"])
    assert set(by_page) == {"pleroma.example.net/notice/AoTq1XbQ7ZPl3B0YkK",
                            "pleroma.example.net/notice/AoTq1XbQ7ZPl3B0YkJ"}
    assert by_page["pleroma.example.net/notice/AoTq1XbQ7ZPl3B0YkK"] == \
        timeline["pleroma.example.net/5f7c1a2e-8d3b-4e6f-9a0c-1b2d3e4f5a6b"]
    assert by_page["pleroma.example.net/notice/AoTq1XbQ7ZPl3B0YkJ"] == \
        timeline["pleroma.example.net/0b9e2d41-7c3a-4f58-b6e2-8a1d9c3f7e20"]
    assert len(set(timeline.values())) == 2 and None not in timeline.values()
    [(_link_post, poster)] = found["lemmy-feed"]
    assert poster not in timeline.values()
    # quill's status, marten's, and the Lemmy poster's link post.
    assert _complaints(tmp_path / "m.sqlite") == 3


@pytest.mark.parametrize("feed_first", [False, True])
def test_a_status_whose_page_a_feed_links_naming_its_author_by_handle_is_the_timelines_author(
        tmp_path: Path, server: FakeServer, feed_first: bool) -> None:
    # The entry names quill by his acct, a user of the feed's host, hashed apart from the profile URL the timeline
    # names him by: kept under the feed's own id with that author, each status read by both was two complainers.
    server.serve_fixture("/api/v1/timelines/tag/outage", "mastodon/pleroma_tag_timeline.json", "application/json")
    server.serve("/notices.rss", Reply(200, _notice_feed(server, handles=True), content_type="application/rss+xml"))
    api = MASTODON.split("[[sources]]")[1]
    feed = '[[sources]]\nname = "notice-feed"\ntype = "rss"\nurl = "{url}/notices.rss"\nservices = ["Signal"]\n'
    if feed_first:
        _collect(_config(tmp_path, ["Signal", "Vodafone"], feed.format(url=server.url)))
        # Alone, the feed's handles tell its two people apart: two complainers, one each.
        assert _complaints(tmp_path / "m.sqlite") == 2
    _collect(_config(tmp_path, ["Signal", "Vodafone"], ("[[sources]]" + api + feed).format(url=server.url)))
    found = _posts(tmp_path / "m.sqlite")
    timeline = dict(found["masto"])
    host = "pleroma.example.net"
    assert dict(found["notice-feed"]) == {
        f"{host}/notice/AoTq1XbQ7ZPl3B0YkK": timeline[f"{host}/5f7c1a2e-8d3b-4e6f-9a0c-1b2d3e4f5a6b"],
        f"{host}/notice/AoTq1XbQ7ZPl3B0YkJ": timeline[f"{host}/0b9e2d41-7c3a-4f58-b6e2-8a1d9c3f7e20"],
    }
    assert len(set(timeline.values())) == 2
    # quill's status and marten's, each read twice.
    assert _complaints(tmp_path / "m.sqlite") == 2


def test_a_feed_naming_authors_by_handle_keeps_them_where_no_timeline_has_the_page(
        tmp_path: Path, server: FakeServer) -> None:
    # Two entries of one person by handle and no `mastodon` source: one complainer, not one per entry (their ids are
    # the pages, whose rows no other source has).
    feed = _notice_feed(server, handles=True).replace(b"<dc:creator>marten</dc:creator>",
                                                      b"<dc:creator>quill</dc:creator>")
    server.serve("/notices.rss", Reply(200, feed, content_type="application/rss+xml"))
    _collect(_config(tmp_path, ["Signal"], '[[sources]]\nname = "notice-feed"\ntype = "rss"\n'
                     f'url = "{server.url}/notices.rss"\nservices = ["Signal"]\n'))
    rows = dict(_posts(tmp_path / "m.sqlite")["notice-feed"])
    assert set(rows) == {f"pleroma.example.net/notice/{n}" for n in ("AoTq1XbQ7ZPl3B0YkK", "AoTq1XbQ7ZPl3B0YkJ")}
    assert len(set(rows.values())) == 1 and None not in rows.values()
    assert _complaints(tmp_path / "m.sqlite") == 1


def test_the_timelines_row_of_a_page_is_looked_up_by_source_and_url_not_by_every_post_of_its_second(
        tmp_path: Path) -> None:
    # As store.posts._SAME_POST: through posts_created_at, each post stored would read every post of its second.
    from miner.store import Store
    from miner.store.notice_pages import _BY_PAGE

    store = Store.open(tmp_path / "m.sqlite")
    try:
        sql = f"SELECT author_hash FROM posts WHERE {_BY_PAGE} AND author_hash IS NOT NULL ORDER BY id LIMIT 1"
        plan = [r[3].replace("SEARCH TABLE ", "SEARCH ") for r in store.database.conn.execute(
            f"EXPLAIN QUERY PLAN {sql}",
            ("a", "https://h/notice/1", "http://h/notice/1", "2026-11-27T14:02:13+00:00", "h/", "h/"))]
        assert any(p.startswith("SEARCH posts USING INDEX posts_source_url (source=? AND url=?)") for p in plan), plan
    finally:
        store.close()


def _spoofing_timeline(server: FakeServer, spoof_first: bool) -> bytes:
    """The tag timeline with a third status, of another server's user (mallory@evil.example), whose `url` claims
    quill's page and whose time is quill's status's second: a remote server sets its statuses' url and created_at."""
    statuses = json.loads(server.fixture_bytes("mastodon/pleroma_tag_timeline.json"))
    spoof = json.loads(json.dumps(statuses[0]))
    spoof.update(id="AoTq1XbQ7ZPl3B0YkZ", uri="https://evil.example/objects/9d3e", url=statuses[0]["url"])
    spoof["account"].update(id="mallory", acct="mallory@evil.example", username="mallory",
                            url="https://evil.example/users/mallory")
    return json.dumps([spoof, *statuses] if spoof_first else [*statuses, spoof]).encode()


@pytest.mark.parametrize("spoof_first", [False, True])
@pytest.mark.parametrize("feed_first", [False, True])
def test_a_status_of_another_server_claiming_a_page_does_not_take_over_its_author(
        tmp_path: Path, server: FakeServer, feed_first: bool, spoof_first: bool) -> None:
    # The page ties a feed's entry to the timeline's row only where the row is a status of the page's server: one of
    # evil.example whose url names quill's page (at his status's second) made the feed's entry of quill's status
    # mallory's, and mallory, posting so at each second a status of someone else's was read, took over their
    # complaints: many people, one complainer.
    server.serve("/api/v1/timelines/tag/outage", Reply(200, _spoofing_timeline(server, spoof_first),
                                                       content_type="application/json"))
    server.serve("/notices.rss", Reply(200, _notice_feed(server, handles=True), content_type="application/rss+xml"))
    api = MASTODON.split("[[sources]]")[1]
    feed = '[[sources]]\nname = "notice-feed"\ntype = "rss"\nurl = "{url}/notices.rss"\nservices = ["Signal"]\n'
    if feed_first:
        _collect(_config(tmp_path, ["Signal", "Vodafone"], feed.format(url=server.url)))
    _collect(_config(tmp_path, ["Signal", "Vodafone"], ("[[sources]]" + api + feed).format(url=server.url)))
    found = _posts(tmp_path / "m.sqlite")
    timeline = dict(found["masto"])
    host = "pleroma.example.net"
    quill = timeline[f"{host}/5f7c1a2e-8d3b-4e6f-9a0c-1b2d3e4f5a6b"]
    assert dict(found["notice-feed"])[f"{host}/notice/AoTq1XbQ7ZPl3B0YkK"] == quill
    assert timeline["evil.example/9d3e"] != quill
    # quill, marten and mallory.
    assert _complaints(tmp_path / "m.sqlite") == 3


def test_a_feeds_entry_claiming_a_page_does_not_give_its_author_to_another_feeds_entry_of_it(
        tmp_path: Path, server: FakeServer) -> None:
    # Only the `mastodon` source's author of the page's own server replaces the handle a feed named: an entry of
    # another feed (a Mastodon-made tag feed links a remote status by the url its server claims) whose link is quill's
    # page, at his status's second, named mallory, and the entry of quill's own feed then took mallory for its author.
    statuses = json.loads(server.fixture_bytes("mastodon/pleroma_tag_timeline.json"))
    quill = statuses[0]
    date = format_datetime(parse_iso(quill["created_at"]), usegmt=True)
    spoof = ('<?xml version="1.0" encoding="UTF-8"?><rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">'
             "<channel><title>#outage</title><link>https://bridge.example.org/outage</link>"
             f"<item><title>Signal works fine here</title><link>{quill['url']}</link>"
             '<guid isPermaLink="false">https://evil.example/objects/9d3e</guid>'
             f"<dc:creator>mallory</dc:creator><pubDate>{date}</pubDate></item></channel></rss>").encode()
    server.serve("/spoof.rss", Reply(200, spoof, content_type="application/rss+xml"))
    server.serve("/notices.rss", Reply(200, _notice_feed(server, handles=True), content_type="application/rss+xml"))
    spoofing = '[[sources]]\nname = "spoof-feed"\ntype = "rss"\nurl = "{url}/spoof.rss"\nservices = ["Signal"]\n'
    feed = '[[sources]]\nname = "notice-feed"\ntype = "rss"\nurl = "{url}/notices.rss"\nservices = ["Signal"]\n'
    (tmp_path / "alone").mkdir()
    _collect(_config(tmp_path / "alone", ["Signal"], feed.format(url=server.url)))
    alone = dict(_posts(tmp_path / "alone" / "m.sqlite")["notice-feed"])
    _collect(_config(tmp_path, ["Signal"], spoofing.format(url=server.url)))
    _collect(_config(tmp_path, ["Signal"], (spoofing + feed).format(url=server.url)))
    found = _posts(tmp_path / "m.sqlite")
    assert dict(found["notice-feed"]) == alone
    assert set(alone.values()).isdisjoint(dict(found["spoof-feed"]).values())
    # quill, marten and mallory.
    assert _complaints(tmp_path / "m.sqlite") == 3

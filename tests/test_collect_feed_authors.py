"""An author a feed names by a DID or by a profile URL of another host (its <author>, dc:creator, Atom <author>) is
the feed's user, not the person named so everywhere, unless the host the feed is read from vouches for it (its own
users, a Lemmy instance's creators of its own posts): `miner collect --once` against a real local server, then the
store's count of complainers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakeserver import FakeServer, Reply
from test_collect_claimed_status_urls import (
    SOURCES,
    VICTIM,
    VICTIM_DID,
    _authors,
    _collect,
    _status,
    serve_victims_bluesky_post,
)
from test_collect_cross_source import _complaints, read_as

VICTIM_PROFILE = f"{VICTIM}/@victim"
FEED_ONLY = SOURCES.split("[[sources]]")[2].join(["[[sources]]", ""])


def _rss(items: str) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8"?><rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">'
            f"<channel><title>Outage notes</title><link>https://blog.example/</link>{items}</channel></rss>").encode()


def _item(guid: str, when: str, text: str, author: str) -> str:
    return (f"<item><guid>{guid}</guid><link>{guid}</link><pubDate>{when}</pubDate>"
            f"<description>&lt;p&gt;{text}&lt;/p&gt;</description>{author}</item>")


def _feed_authors(authors: dict[tuple[str, str], str | None]) -> dict[str, str | None]:
    """The feed's rows' authors by their guid's last part."""
    return {ident.rpartition("/")[2]: author for (source, ident), author in authors.items() if source == "feed"}


def test_a_feed_naming_another_hosts_profile_or_a_did_as_author_names_its_own_user(
        tmp_path: Path, server: FakeServer) -> None:
    # A blog read from the test server's host writes victim's Mastodon profile (of b.example) and a DID as its
    # entries' authors: each was counted as that person's complaint, victim's entries one complainer with victim's real
    # status of the bucket. They are the blog's users: one per name, apart from victim. A profile of the blog's own
    # host is its own user's, whom the timeline read there: one complainer.
    statuses = [_status(VICTIM, "victim", "111", "2026-11-27T14:09:12.000Z", "Signal is down #outage"),
                _status(server.url, "quill", "333", "2026-11-27T14:08:00.000Z", "Signal is down for me #outage")]
    server.serve("/api/v1/timelines/tag/outage", Reply(200, json.dumps(statuses).encode(),
                                                       content_type="application/json"))
    blog = f"{server.url}/blog"
    items = (_item(f"{blog}/1", "Fri, 27 Nov 2026 14:09:20 +0000", "Signal is down",
                   f"<author>{VICTIM_PROFILE}</author>")
             + _item(f"{blog}/2", "Fri, 27 Nov 2026 14:09:30 +0000", "Signal still down",
                     f"<dc:creator>{VICTIM_PROFILE}</dc:creator>")
             + _item(f"{blog}/3", "Fri, 27 Nov 2026 14:09:40 +0000", "Signal not sending",
                     f"<dc:creator>{VICTIM_DID}</dc:creator>")
             + _item(f"{blog}/4", "Fri, 27 Nov 2026 14:09:45 +0000", "Signal broken here",
                     f"<dc:creator>{VICTIM_DID}</dc:creator>")
             # A page numbered as a Lemmy post's, but no Lemmy instance's entry: its writer is the blog's user too.
             + _item(f"{server.url}/post/7", "Fri, 27 Nov 2026 14:09:50 +0000", "Signal down",
                     "<dc:creator>https://lemmy.ml/u/victim</dc:creator>")
             + _item(f"{blog}/5", "Fri, 27 Nov 2026 14:09:55 +0000", "Signal is down for me too",
                     f"<dc:creator>{server.url}/@quill</dc:creator>"))
    server.serve("/blog.rss", Reply(200, _rss(items), content_type="application/rss+xml"))
    db = _collect(tmp_path, SOURCES.format(url=server.url, feed="blog.rss"))
    authors = _authors(db)
    victim, quill = authors[("masto", "b.example/111")], authors[("masto", "127.0.0.1/333")]
    feed = _feed_authors(authors)
    assert None not in feed.values() and victim not in feed.values(), authors
    # One name's entries are one of the blog's users; two names two.
    assert feed["1"] == feed["2"] and feed["3"] == feed["4"] and len({feed["1"], feed["3"], feed["7"]}) == 3, feed
    assert feed["5"] == quill, authors
    # victim, quill, and the blog's three names: five complainers, not victim's once for three of them.
    assert _complaints(db) == 5


def test_an_atom_feed_naming_a_did_as_author_is_not_that_bluesky_account(
        tmp_path: Path, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # An Atom feed's <author><name> holding victim's DID, beside victim's real post the search read: counted as
    # victim's, it was one complainer with them. No feed's host vouches for a DID (bsky.app's names its posts' author
    # by their at:// guids only).
    real = serve_victims_bluesky_post(server, monkeypatch)
    entries = "".join(
        f'<entry><id>tag:blog.example,2026:{n}</id><link rel="alternate" href="{server.url}/{n}"/><title>{text}</title>'
        f"<author><name>{VICTIM_DID}</name><uri>https://bsky.app/profile/{VICTIM_DID}</uri></author>"
        f'<published>{when}</published><updated>{when}</updated><content type="html">{text}</content></entry>'
        for n, when, text in ((1, "2026-11-27T14:12:10Z", "Signal down here too"),
                              (2, "2026-11-27T14:12:40Z", "Signal still down")))
    atom = ('<?xml version="1.0" encoding="UTF-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
            f"<id>{server.url}/notes.atom</id><title>notes</title><updated>2026-11-27T14:12:40Z</updated>"
            f"{entries}</feed>").encode()
    server.serve("/notes.atom", Reply(200, atom, content_type="application/atom+xml"))
    db = _collect(tmp_path, f'[[sources]]\nname = "bsky"\ntype = "bluesky"\nurl = "{server.url}"\nquery = "signal"\n'
                            'env = { identifier = "XS_BSKY_ID", password = "XS_BSKY_PW" }\n'
                            + FEED_ONLY.format(url=server.url, feed="notes.atom"))
    authors = _authors(db)
    feed = {ident: author for (source, ident), author in authors.items() if source == "feed"}
    assert len(feed) == 2 and len(set(feed.values())) == 1, authors
    assert None not in feed.values() and authors[("bsky", real)] not in feed.values(), authors
    assert _complaints(db) == 2  # victim, and whoever the feed's name is


LEMMY_ITEM = (
    '<item><title>Signal down?</title><link>{guid}</link><description><![CDATA[submitted by <a href="{actor}">'
    'victim</a> to <a href="{base}/c/technology">technology</a><br>3 points | <a href="{guid}">0 comments</a>'
    "<p>Signal is down for me too</p>]]></description><comments>{guid}</comments><guid>{guid}</guid>"
    "<pubDate>Fri, 27 Nov 2026 14:09:30 +0000</pubDate><dc:creator>{actor}</dc:creator></item>")


@pytest.mark.parametrize("own", [True, False])
def test_a_lemmy_feed_names_its_own_posts_creators_of_any_instance_but_no_one_elses(
        tmp_path: Path, server: FakeServer, monkeypatch: pytest.MonkeyPatch, own: bool) -> None:
    # Lemmy federates: lemmy.world's community feed lists a post of its own (its /post/<n>) by a user of b.example,
    # named by their actor id, as lemmy.world's API does; Lemmy takes it only signed by that actor. Read from
    # lemmy.world, it is that person, one complainer with their status the timeline read. The same entry read from
    # another host (a copy of the feed, or any feed written in Lemmy's shape) claims lemmy.world's post and its
    # creator: that feed's user, apart from victim.
    statuses = [_status(VICTIM, "victim", "111", "2026-11-27T14:09:12.000Z", "Signal is down #outage")]
    server.serve("/api/v1/timelines/tag/outage", Reply(200, json.dumps(statuses).encode(),
                                                       content_type="application/json"))
    item = LEMMY_ITEM.format(guid="https://lemmy.world/post/2291001", actor=VICTIM_PROFILE, base="https://lemmy.world")
    server.serve("/feeds/c/technology.xml", Reply(200, _rss(item), content_type="application/rss+xml"))
    if own:
        base = read_as(server, monkeypatch, "lemmy.world")
        sources = SOURCES.replace("{url}/{feed}", "{feed}").format(url=server.url,
                                                                   feed=f"{base}/feeds/c/technology.xml")
    else:
        sources = SOURCES.format(url=server.url, feed="feeds/c/technology.xml")
    db = _collect(tmp_path, sources)
    authors = _authors(db)
    victim, feed = authors[("masto", "b.example/111")], authors[("feed", "https://lemmy.world/post/2291001")]
    assert victim is not None and feed is not None, authors
    assert (feed == victim) is own, authors
    assert _complaints(db) == (1 if own else 2)

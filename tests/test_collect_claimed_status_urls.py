"""A status URL of another host in a feed (a Mastodon server's tag feed lists a remote status by the url its server
claimed; a link blog links someone's status) is taken for neither that status's author nor, outside a Mastodon-made
feed, that status; nor a Pleroma status and its actor in a feed of another host: `miner collect --once` against a
real local server, then the store's count of complainers."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakeserver import FakeServer, Reply
from test_collect_cross_source import _complaints

from miner.cli import main


def _collect(tmp_path: Path, sources: str) -> Path:
    cfg = tmp_path / "feeds.toml"
    db = tmp_path / "m.sqlite"
    cfg.write_text(f'[store]\npath = "{db}"\nretention_days = 3650\n[[services]]\nname = "Signal"\n{sources}',
                   encoding="utf-8")
    result = CliRunner().invoke(main, ["--config", str(cfg), "collect", "--once", "--all"])
    assert result.exit_code == 0, result.output
    return db


def _authors(db: Path) -> dict[tuple[str, str], str | None]:
    with sqlite3.connect(db) as conn:
        return {(s, i): a for s, i, a in conn.execute("SELECT source, external_id, author_hash FROM posts")}


def _status(base: str, name: str, ident: str, when: str, text: str) -> dict[str, object]:
    return {"id": ident, "created_at": when, "visibility": "public", "language": "en", "sensitive": False,
            "spoiler_text": "", "uri": f"{base}/users/{name}/statuses/{ident}", "url": f"{base}/@{name}/{ident}",
            "content": f"<p>{text}</p>", "reblog": None, "media_attachments": [], "mentions": [], "tags": [],
            "emojis": [], "account": {"id": "1", "username": name, "acct": name, "url": f"{base}/@{name}"}}


def _item(link: str, when: str, text: str, extra: str = "") -> str:
    return (f"<item><guid isPermaLink=\"true\">{link}</guid><link>{link}</link><pubDate>{when}</pubDate>"
            f"<description>&lt;p&gt;{text}&lt;/p&gt;</description>{extra}</item>")


def _rss(items: str, generator: str = "") -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>#outage</title>'
            f"<link>https://feed.example/</link>{generator}{items}</channel></rss>").encode()


VICTIM = "https://b.example"
SOURCES = """
[[sources]]
name = "masto"
type = "mastodon"
url = "{url}"
query = "#outage"

[[sources]]
name = "feed"
type = "rss"
url = "{url}/{feed}"
"""


@pytest.fixture
def timeline(server: FakeServer) -> FakeServer:
    # The tag timeline: victim's status on b.example, and quill's of the server the feed is read from.
    statuses = [_status(VICTIM, "victim", "111", "2026-11-27T14:09:12.000Z", "Signal is down #outage"),
                _status(server.url, "quill", "333", "2026-11-27T14:08:00.000Z", "Signal is down for me #outage")]
    server.serve("/api/v1/timelines/tag/outage", Reply(200, json.dumps(statuses).encode(),
                                                       content_type="application/json"))
    return server


def test_a_mastodon_feeds_status_of_another_host_gives_its_id_but_not_the_author_its_url_claims(
        tmp_path: Path, timeline: FakeServer) -> None:
    # A Mastodon server lists a remote status by the url its server claimed: c.example's status could claim to be
    # victim's /@victim/222 of b.example, or /p/victim/444 of a Pixelfed server. Named by the author its url names, it
    # was counted as victim's complaint: merged with victim's real one of that bucket (a real complainer of c.example
    # lost), and its author given to the other rows of that id. A status of the feed's own host, in its tag feed, is
    # no surer (see the test below): it takes the author the timeline read.
    server = timeline
    items = (_item(f"{VICTIM}/@victim/111", "Fri, 27 Nov 2026 14:09:12 +0000", "Signal is down #outage")
             + _item(f"{VICTIM}/@victim/222", "Fri, 27 Nov 2026 14:09:40 +0000", "Signal down here too #outage")
             + _item("https://px.example/p/victim/444", "Fri, 27 Nov 2026 14:09:50 +0000", "Signal not working")
             + _item(f"{server.url}/@quill/333", "Fri, 27 Nov 2026 14:08:00 +0000", "Signal is down for me #outage"))
    server.serve("/tags/outage.rss", Reply(200, _rss(items, "<generator>Mastodon v4.3.2</generator>"),
                                           content_type="application/rss+xml"))
    db = _collect(tmp_path, SOURCES.format(url=server.url, feed="tags/outage.rss"))
    authors = _authors(db)
    victim, quill = authors[("masto", "b.example/111")], authors[("masto", "127.0.0.1/333")]
    assert victim is not None and quill is not None and victim != quill, authors
    # The true claim is the post the timeline read, with its author; so is a status of the feed's own server.
    assert authors[("feed", "b.example/111")] == victim and authors[("feed", "127.0.0.1/333")] == quill, authors
    # The claims nothing vouches for: their ids, no one's author.
    assert authors[("feed", "b.example/222")] is None and authors[("feed", "px.example/444")] is None, authors
    # quill, victim, and the two statuses of whoever wrote them: four complainers, not victim's once for three.
    assert _complaints(db) == 4


def test_a_feed_of_no_mastodon_server_linking_a_status_of_another_host_is_its_own_post(
        tmp_path: Path, timeline: FakeServer) -> None:
    # A link blog's entry by Pat links victim's status: named as that status and its author, Pat's complaint was
    # victim's, one complainer of the two.
    server = timeline
    items = _item(f"{VICTIM}/@victim/111", "Fri, 27 Nov 2026 14:09:30 +0000", "Signal is down here too, see this",
                  "<author>pat@blog.example (Pat)</author>")
    server.serve("/blog.rss", Reply(200, _rss(items), content_type="application/rss+xml"))
    db = _collect(tmp_path, SOURCES.format(url=server.url, feed="blog.rss"))
    authors = _authors(db)
    feed = {ident: author for (source, ident), author in authors.items() if source == "feed"}
    assert "b.example/111" not in feed and len(feed) == 1, authors
    assert None not in feed.values() and authors[("masto", "b.example/111")] not in feed.values(), authors
    assert _complaints(db) == 3  # quill, victim and Pat


def _lemmy_post(ident: int, ap_id: str, actor_id: str, when: str) -> dict[str, object]:
    name = actor_id.rstrip("/").rpartition("/")[2]
    return {"post": {"id": ident, "name": "Signal is down", "url": None, "body": "Signal is down for me #outage",
                     "creator_id": ident, "community_id": 42, "removed": False, "deleted": False, "published": when,
                     "ap_id": ap_id, "local": False},
            "creator": {"id": ident, "name": name, "actor_id": actor_id, "local": False, "bot_account": False},
            "community": {"id": 42, "name": "technology", "actor_id": "https://lemmy.example/c/technology"},
            "counts": {"post_id": ident, "comments": 0, "score": 1, "published": when}}


def test_a_lemmy_post_claiming_another_actors_status_uri_is_not_that_status(tmp_path: Path, server: FakeServer
                                                                            ) -> None:
    # A Lemmy server lists a Mastodon user's status by its ActivityPub id, https://host/users/<name>/statuses/<id>,
    # named as a `mastodon` source names it with the author its path names. A post of another actor with that id
    # (c.example's mallory claiming victim's status) was victim's status and victim's complaint: only the URI's own
    # actor makes it so.
    posts = [_lemmy_post(1, f"{VICTIM}/users/victim/statuses/111", "https://c.example/users/mallory",
                         "2026-11-27T14:09:12.000000Z"),
             _lemmy_post(2, f"{VICTIM}/users/quill/statuses/112", f"{VICTIM}/users/quill",
                         "2026-11-27T14:09:20.000000Z")]
    body = {"type_": "Posts", "comments": [], "posts": posts, "communities": [], "users": []}
    server.serve("/api/v3/search", Reply(200, json.dumps(body).encode(), content_type="application/json"))
    db = _collect(tmp_path, f'[[sources]]\nname = "lemmy"\ntype = "lemmy"\nurl = "{server.url}"\nquery = "signal"\n')
    assert set(_authors(db)) == {("lemmy", f"{VICTIM}/users/victim/statuses/111"), ("lemmy", "b.example/112")}


def test_a_mastodon_tag_feeds_statuses_of_its_own_host_keep_their_authors(tmp_path: Path, server: FakeServer) -> None:
    # A Mastodon server's tag feed names no author; a status of its own host is named by its url's. A remote status
    # claiming a url of that host cannot be told from a local one there: taking no author from any of them instead
    # made each of one person's statuses of a bucket a complainer of its own, in the commonest Mastodon source.
    tag = (_item(f"{server.url}/@victim/111", "Fri, 27 Nov 2026 14:09:12 +0000", "Signal is down #outage")
           + _item(f"{server.url}/@victim/222", "Fri, 27 Nov 2026 14:09:40 +0000", "Signal still down #outage")
           + _item(f"{server.url}/@quill/333", "Fri, 27 Nov 2026 14:09:50 +0000", "No Signal here either #outage"))
    server.serve("/tags/outage.rss", Reply(200, _rss(tag, "<generator>Mastodon v4.3.2</generator>").replace(
        b"https://feed.example/", f"{server.url}/tags/outage".encode()), content_type="application/rss+xml"))
    db = _collect(tmp_path, SOURCES.split("[[sources]]")[2].join(["[[sources]]", ""]).format(
        url=server.url, feed="tags/outage.rss"))
    authors = _authors(db)
    assert authors[("feed", "127.0.0.1/111")] == authors[("feed", "127.0.0.1/222")] is not None, authors
    assert authors[("feed", "127.0.0.1/333")] not in (None, authors[("feed", "127.0.0.1/111")]), authors
    assert _complaints(db) == 2  # victim and quill


def test_a_feed_of_another_host_naming_a_pleroma_status_and_its_actor_does_not_make_it_theirs(
        tmp_path: Path, server: FakeServer) -> None:
    # A feed read from anywhere could give an entry a Pleroma status's object id (or its /notice/ page) and its
    # server's actor as the author: the entry was counted as that actor's complaint, one complainer with their real
    # one of the bucket. Only the status's own server, the one the feed is read from, names its author so.
    server.serve_fixture("/api/v1/timelines/tag/outage", "mastodon/pleroma_tag_timeline.json", "application/json")
    quill = "https://pleroma.example.net/users/quill"
    entries = "".join(
        f"<entry><id>{ident}</id><link rel=\"alternate\" href=\"{ident}\"/><title>{text}</title>"
        f"<author>{author}</author><published>{when}</published><updated>{when}</updated>"
        f"<content type=\"html\">{text}</content></entry>"
        for ident, author, when, text in (
            ("https://pleroma.example.net/objects/3c1d2e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
             f"<name>quill</name><uri>{quill}</uri>", "2026-11-27T14:03:00Z", "Signal is down for me too #outage"),
            ("https://pleroma.example.net/notice/AoTq1XbQ7ZPl3B0Zzz", f"<name>{quill}</name>",
             "2026-11-27T14:03:20Z", "Still cannot send on Signal #outage")))
    atom = ('<?xml version="1.0" encoding="UTF-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
            f"<id>{server.url}/outage.atom</id><title>outage</title><updated>2026-11-27T14:03:20Z</updated>"
            f"{entries}</feed>").encode()
    server.serve("/outage.atom", Reply(200, atom, content_type="application/atom+xml"))
    db = _collect(tmp_path, SOURCES.format(url=server.url, feed="outage.atom"))
    authors = _authors(db)
    assert authors[("feed", "pleroma.example.net/3c1d2e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f")] is None, authors
    assert authors[("feed", "pleroma.example.net/notice/AoTq1XbQ7ZPl3B0Zzz")] is None, authors
    # quill and marten, whom the timeline read, and the two entries of whoever wrote them.
    assert _complaints(db) == 4


VICTIM_DID = "did:plc:z72i7hdynmk6r22z27h6tvur"


def serve_victims_bluesky_post(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """Serve a Bluesky search (the `bluesky` source's) that reads victim's real post, 2026-11-27T14:12:03Z; its URI."""
    monkeypatch.setenv("XS_BSKY_ID", "me.bsky.social")
    monkeypatch.setenv("XS_BSKY_PW", "app-password")
    real = f"at://{VICTIM_DID}/app.bsky.feed.post/3lbx7kq2abc2x"
    search = {"hitsTotal": 1, "posts": [
        {"uri": real, "cid": "bafy", "author": {"did": VICTIM_DID, "handle": "victim.bsky.social"},
         "record": {"text": "Signal is down for me", "createdAt": "2026-11-27T14:12:03.512Z", "langs": ["en"]},
         "indexedAt": "2026-11-27T14:12:04.120Z"}]}
    server.serve_fixture("/xrpc/com.atproto.server.createSession", "bluesky/create_session.json", "application/json")
    server.serve("/xrpc/app.bsky.feed.searchPosts", Reply(200, json.dumps(search).encode(),
                                                          content_type="application/json"))
    return real


def test_a_feed_of_another_host_giving_a_bluesky_posts_uri_does_not_make_it_its_authors(
        tmp_path: Path, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # Only bsky.app's profile feed lists an account's own posts by their at:// URIs. A feed of any other host could
    # give victim's URI as a guid (that of a post they wrote, or one they never did, dated beside their real one): its
    # entries were counted as victim's complaints, one complainer with victim's real post. The entry keeps the post's
    # id, one post with the search's row of it, and takes the author the search read for it.
    real = serve_victims_bluesky_post(server, monkeypatch)
    claimed = f"at://{VICTIM_DID}/app.bsky.feed.post/3lbx7kq2zzzzz"
    items = "".join(
        f"<item><title>@victim.bsky.social post</title><link>https://bsky.app/profile/victim.bsky.social/post/"
        f"{uri.rpartition('/')[2]}</link><description>{text}</description><pubDate>{when}</pubDate>"
        f"<guid>{uri}</guid></item>"
        for uri, when, text in ((real, "2026-11-27T14:12:03.512Z", "Signal is down for me"),
                                (claimed, "2026-11-27T14:12:30.000Z", "Signal down here too")))
    server.serve("/profile/victim.bsky.social/rss", Reply(200, _rss(items), content_type="application/rss+xml"))
    db = _collect(tmp_path, f'[[sources]]\nname = "bsky"\ntype = "bluesky"\nurl = "{server.url}"\nquery = "signal"\n'
                            'env = { identifier = "XS_BSKY_ID", password = "XS_BSKY_PW" }\n'
                            + SOURCES.split("[[sources]]")[2].join(["[[sources]]", ""]).format(
                                url=server.url, feed="profile/victim.bsky.social/rss"))
    authors = _authors(db)
    assert authors[("bsky", real)] is not None and authors[("feed", real)] == authors[("bsky", real)], authors
    assert authors[("feed", claimed)] is None, authors
    # victim, and whoever wrote the entry claiming their post.
    assert _complaints(db) == 2

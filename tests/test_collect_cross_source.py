"""One post read by two source types (a site's API and its feed) is one post and one complainer: `miner collect --once`
against a real local server, then the store's own count of a bucket's complainers."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakeserver import FakeServer, Reply

from miner.cli import main
from miner.records import Prediction
from miner.store import Store
from miner.store.migrations import MIGRATIONS, apply_migrations

BUCKET = timedelta(minutes=5)


def _config(tmp_path: Path, services: list[str], sources: str) -> Path:
    # The fixtures' posts are dated November 2026, and `miner collect` leaves out those older than retention_days by
    # the real clock: at the default 30 days, they were all dropped from late December 2026 on.
    cfg = tmp_path / "feeds.toml"
    listed = "".join(f'\n[[services]]\nname = "{name}"\n' for name in services)
    cfg.write_text(f'[store]\npath = "{tmp_path / "m.sqlite"}"\nretention_days = 3650\n{listed}{sources}',
                   encoding="utf-8")
    return cfg


def _collect(cfg: Path) -> None:
    result = CliRunner().invoke(main, ["--config", str(cfg), "collect", "--once", "--all"])
    assert result.exit_code == 0, result.output


def _posts(path: Path) -> dict[str, set[tuple[str, str | None]]]:
    """Each source's posts, as (external_id, author_hash)."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT source, external_id, author_hash FROM posts").fetchall()
    found: dict[str, set[tuple[str, str | None]]] = {}
    for source, ident, author in rows:
        found.setdefault(source, set()).add((ident, author))
    return found


def _complaints(path: Path) -> int:
    """Every stored post classified an outage, then the complainers the buckets count, all buckets together."""
    store = Store.open(path)
    try:
        posts = store.posts_to_classify(100)
        times = store.save_classifications([(p.id, Prediction(0.9, True, None)) for p in posts], "test", None)
        store.refresh_buckets_at([datetime.fromisoformat(t) for t in times], BUCKET)
        row = store.database.one("SELECT coalesce(sum(complaints), 0) AS n FROM buckets")
        return int(row["n"]) if row else 0
    finally:
        store.close()


def serve_as_pleroma(server: FakeServer, path: str, fixture: str, kind: str) -> None:
    """A fixture of pleroma.example.net's statuses as that server serves it: its URLs of the test server's host, the
    host a feed's statuses and actors must be of for the feed to name their authors (a feed of any other host may
    name anyone's status)."""
    body = server.fixture_bytes(fixture).replace(b"https://pleroma.example.net", server.url.encode())
    server.serve(path, Reply(200, body, content_type=kind))


def read_as(server: FakeServer, monkeypatch: pytest.MonkeyPatch, host: str) -> str:
    """The base URL of ``host``'s feeds as this test reads them from ``server``: plain http, ``server`` the proxy for
    it, so that a source of http://<host>/... is read from that host as miner sees it (the host whose own posts and
    users a feed may name), and from the test server's routes. 127.0.0.1 (the API sources') is reached directly."""
    for name in ("HTTPS_PROXY", "ALL_PROXY", "https_proxy", "all_proxy", "http_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", server.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    return f"http://{host}"


def read_as_bsky_app(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """bsky.app's base URL as `read_as` reads it: the only host whose profile feed names its posts' author."""
    return read_as(server, monkeypatch, "bsky.app")


MASTODON = """
[[sources]]
name = "masto"
type = "mastodon"
url = "{url}"
query = "#outage"
services = ["Signal", "Vodafone"]

[[sources]]
name = "masto-feed"
type = "rss"
url = "{url}/tags/outage.rss"
services = ["Signal", "Vodafone"]
"""


def test_a_status_read_by_a_tag_timeline_and_its_tag_feed_is_one_post_of_one_author(tmp_path: Path,
                                                                                   server: FakeServer) -> None:
    # Mastodon's tag feed names a status by its web link and names no author: it was a second id and a complainer
    # of its own (the post's row id) beside the author the timeline read.
    server.serve_fixture("/api/v1/timelines/tag/outage", "mastodon/tag_timeline.json", "application/json")
    server.serve_fixture("/tags/outage.rss", "mastodon/tag_outage.rss", "application/rss+xml")
    _collect(_config(tmp_path, ["Signal", "Vodafone"], MASTODON.format(url=server.url)))
    found = _posts(tmp_path / "m.sqlite")
    assert len(found["masto"]) == 3
    assert found["masto-feed"] == found["masto"]
    assert all(author is not None for _ident, author in found["masto"])
    # The Signal status and the Vodafone one: one complainer each, as read by one source.
    assert _complaints(tmp_path / "m.sqlite") == 2


def test_remote_statuses_of_other_server_software_read_both_ways_are_one_post_of_one_author(
        tmp_path: Path, server: FakeServer) -> None:
    # A tag timeline holds statuses from GoToSocial, Pixelfed, Misskey, Pleroma, Friendica and Lemmy: the tag feed
    # links each by the url its server gave it, which the feed's entry got no site identity from, so each was a second
    # post and a second complainer (its row id) beside the author the timeline read.
    server.serve_fixture("/api/v1/timelines/tag/outage", "mastodon/tag_timeline_remote.json", "application/json")
    server.serve_fixture("/tags/outage.rss", "mastodon/tag_remote.rss", "application/rss+xml")
    _collect(_config(tmp_path, ["Signal", "Vodafone"], MASTODON.format(url=server.url)))
    found = _posts(tmp_path / "m.sqlite")
    assert len(found["masto"]) == 6
    assert found["masto-feed"] == found["masto"]
    assert all(author is not None for _ident, author in found["masto"])
    # Six people about Signal in one bucket: six complainers, not twelve.
    assert _complaints(tmp_path / "m.sqlite") == 6


def test_a_remote_status_feed_read_before_its_timeline_takes_the_authors_the_timeline_reads(
        tmp_path: Path, server: FakeServer) -> None:
    # The feed stored first: its rows without an author (Misskey's, Pleroma's, Friendica's, Lemmy's links name none)
    # are given the one the timeline stores the same status with.
    server.serve_fixture("/api/v1/timelines/tag/outage", "mastodon/tag_timeline_remote.json", "application/json")
    server.serve_fixture("/tags/outage.rss", "mastodon/tag_remote.rss", "application/rss+xml")
    feed_only = MASTODON.split("[[sources]]")[2]
    _collect(_config(tmp_path, ["Signal", "Vodafone"], "[[sources]]" + feed_only.format(url=server.url)))
    _collect(_config(tmp_path, ["Signal", "Vodafone"], MASTODON.format(url=server.url)))
    found = _posts(tmp_path / "m.sqlite")
    assert found["masto-feed"] == found["masto"]
    assert _complaints(tmp_path / "m.sqlite") == 6


def test_a_lemmy_comment_read_by_a_tag_timeline_and_its_tag_feed_is_one_post_but_never_the_post_of_its_number(
        tmp_path: Path, server: FakeServer) -> None:
    # A Lemmy comment's Note has no url: the tag feed links it by its URI, https://host/comment/<n>, which got no site
    # identity, so it was a second post and a second complainer (its row id) beside the author the timeline read.
    # Post <n> of the same server, at the same second, is another post by another person: it stays apart.
    server.serve_fixture("/api/v1/timelines/tag/outage", "mastodon/tag_timeline_lemmy.json", "application/json")
    server.serve_fixture("/tags/outage.rss", "mastodon/tag_lemmy.rss", "application/rss+xml")
    _collect(_config(tmp_path, ["Signal", "Vodafone"], MASTODON.format(url=server.url)))
    found = _posts(tmp_path / "m.sqlite")
    assert {ident for ident, _author in found["masto"]} == {"lemmy.world/comment/9100001", "lemmy.world/9100001"}
    assert found["masto-feed"] == found["masto"]
    assert len({author for _ident, author in found["masto"]}) == 2
    assert _complaints(tmp_path / "m.sqlite") == 2


@pytest.mark.parametrize("feed_first", [False, True])
def test_a_pleroma_status_read_by_its_servers_tag_timeline_and_tag_feed_is_one_post_of_one_author(
        tmp_path: Path, server: FakeServer, feed_first: bool) -> None:
    # Pleroma's own tag feed names a local status by its object id, https://host/objects/<uuid>, and no author; its
    # Mastodon API gives that id as the uri (the url is /notice/<flake id>, a database id of the activity): the feed's
    # row was a second post and a complainer of its own. Two statuses of one second on one server stay two, and so
    # does a Lemmy link post of that second linking one of them: its guid names it, another post by someone else.
    server.serve_fixture("/api/v1/timelines/tag/outage", "mastodon/pleroma_tag_timeline.json", "application/json")
    server.serve_fixture("/tags/outage.rss", "mastodon/pleroma_tag_outage.rss", "application/rss+xml")
    server.serve_fixture("/feeds/c/technology.xml", "lemmy/community_link_to_pleroma.xml", "application/rss+xml")
    lemmy_feed = ('\n[[sources]]\nname = "lemmy-feed"\ntype = "rss"\nurl = "{url}/feeds/c/technology.xml"\n'
                  'services = ["Signal"]\n')
    if feed_first:
        feed_only = MASTODON.split("[[sources]]")[2]
        _collect(_config(tmp_path, ["Signal", "Vodafone"], "[[sources]]" + feed_only.format(url=server.url)))
    _collect(_config(tmp_path, ["Signal", "Vodafone"], (MASTODON + lemmy_feed).format(url=server.url)))
    found = _posts(tmp_path / "m.sqlite")
    assert {ident for ident, _author in found["masto"]} == {"pleroma.example.net/5f7c1a2e-8d3b-4e6f-9a0c-1b2d3e4f5a6b",
                                                           "pleroma.example.net/0b9e2d41-7c3a-4f58-b6e2-8a1d9c3f7e20"}
    assert found["masto-feed"] == found["masto"]
    assert len({author for _ident, author in found["masto"]}) == 2
    [(link_post, poster)] = found["lemmy-feed"]
    assert link_post == "https://lemmy.world/post/2291102" and poster not in {a for _i, a in found["masto"]}
    assert _complaints(tmp_path / "m.sqlite") == 3


def test_a_pleroma_atom_feed_read_first_names_each_status_by_its_actor_as_the_timeline_does(
        tmp_path: Path, server: FakeServer) -> None:
    # Pleroma's Atom gives each entry's actor id as its author's <uri>: the profile URL a `mastodon` source names the
    # author by. Read before the timeline, with no author, each status was a complainer of its own until then, and
    # the feed alone counted one person's two statuses of a bucket twice. Read from the statuses' own server.
    serve_as_pleroma(server, "/api/v1/timelines/tag/outage", "mastodon/pleroma_tag_timeline.json", "application/json")
    serve_as_pleroma(server, "/tags/outage.atom", "mastodon/pleroma_tag_outage.atom", "application/atom+xml")
    feed = MASTODON.split("[[sources]]")[2].replace("outage.rss", "outage.atom")
    _collect(_config(tmp_path, ["Signal", "Vodafone"], "[[sources]]" + feed.format(url=server.url)))
    feed_only = _posts(tmp_path / "m.sqlite")["masto-feed"]
    assert len({author for _ident, author in feed_only}) == 2 and None not in {a for _i, a in feed_only}
    _collect(_config(tmp_path, ["Signal", "Vodafone"], MASTODON.replace("outage.rss", "outage.atom").format(
        url=server.url)))
    found = _posts(tmp_path / "m.sqlite")
    assert found["masto-feed"] == found["masto"] == feed_only
    assert _complaints(tmp_path / "m.sqlite") == 2


def test_a_pleroma_status_listed_by_two_feeds_naming_no_author_is_one_complainer(tmp_path: Path,
                                                                                 server: FakeServer) -> None:
    # Pleroma's tag feed and a Mastodon server's, which lists the status as a remote one by its object id: neither
    # names an author, and no API source read it to share one. Each row counted as a complainer of its own (its row
    # id): the status of one person counted twice. The other Pleroma status of that second, by someone else and with
    # like words, stays a complainer of its own, as do the feed's statuses of other servers.
    server.serve_fixture("/tags/outage.rss", "mastodon/pleroma_tag_outage.rss", "application/rss+xml")
    server.serve_fixture("/social/tags/outage.rss", "mastodon/tag_remote.rss", "application/rss+xml")
    feeds = ('[[sources]]\nname = "pleroma-feed"\ntype = "rss"\nurl = "{url}/tags/outage.rss"\nservices = ["Signal"]\n'
             '[[sources]]\nname = "masto-feed"\ntype = "rss"\nurl = "{url}/social/tags/outage.rss"\n'
             'services = ["Signal"]\n')
    _collect(_config(tmp_path, ["Signal"], feeds.format(url=server.url)))
    found = _posts(tmp_path / "m.sqlite")
    shared = "pleroma.example.net/5f7c1a2e-8d3b-4e6f-9a0c-1b2d3e4f5a6b"
    assert (shared, None) in found["pleroma-feed"] and (shared, None) in found["masto-feed"]
    assert len(found["pleroma-feed"]) == 2 and len(found["masto-feed"]) == 6
    # The two Pleroma statuses and the Mastodon feed's five others: seven people, not eight.
    assert _complaints(tmp_path / "m.sqlite") == 7


def test_a_lemmy_link_post_sharing_a_status_is_its_posters_post_not_the_status(tmp_path: Path,
                                                                               server: FakeServer) -> None:
    # Lemmy's feed gives a link post's link as the entry's link, its own page as guid and comments. Linking a Mastodon
    # status, the entry was named as that status and its author: both link posts below counted as that status's
    # author, beside the timeline's row, and were one complainer instead of three.
    server.serve_fixture("/api/v1/timelines/tag/outage", "mastodon/tag_timeline.json", "application/json")
    server.serve_fixture("/feeds/c/technology.xml", "lemmy/community_links_to_status.xml", "application/rss+xml")
    sources = MASTODON.split("[[sources]]")[1] + ('[[sources]]\nname = "lemmy-feed"\ntype = "rss"\n'
                                                  'url = "{url}/feeds/c/technology.xml"\nservices = ["Signal"]\n')
    _collect(_config(tmp_path, ["Signal", "Vodafone"], ("[[sources]]" + sources).format(url=server.url)))
    found = _posts(tmp_path / "m.sqlite")
    assert {ident for ident, _author in found["lemmy-feed"]} == {"https://lemmy.world/post/2291120",
                                                                "https://lemmy.world/post/2291118"}
    assert not {author for _ident, author in found["lemmy-feed"]} & {author for _ident, author in found["masto"]}
    # ferriswheel's Signal status and kaffeetasse's Vodafone one, and the two Lemmy posters.
    assert _complaints(tmp_path / "m.sqlite") == 4


HACKER_NEWS = """
[[sources]]
name = "hn"
type = "hackernews"
url = "{url}"
query = "outage"
services = ["Cloudflare"]

[[sources]]
name = "hn-feed"
type = "rss"
url = "{url}/newest.rss"
services = ["Cloudflare"]
"""


def test_a_story_read_by_the_hacker_news_search_and_an_hnrss_feed_is_one_post_of_one_author(
        tmp_path: Path, server: FakeServer) -> None:
    # hnrss.org names a story by its item URL and its author as Hacker News does, read as a user of the feed's host.
    server.serve_fixture("/api/v1/search_by_date", "hackernews/search_by_date.json", "application/json")
    server.serve_fixture("/newest.rss", "hackernews/hnrss_newest.rss", "application/rss+xml")
    _collect(_config(tmp_path, ["Cloudflare"], HACKER_NEWS.format(url=server.url)))
    found = _posts(tmp_path / "m.sqlite")
    assert len(found["hn-feed"]) == 2
    assert found["hn-feed"] <= found["hn"]
    assert _complaints(tmp_path / "m.sqlite") == 2  # the story and the comment under it, by two people


def test_a_story_both_sources_stored_is_one_post_of_its_bucket(tmp_path: Path, server: FakeServer) -> None:
    # The buckets counted rows: the story and comment the feed shares with the search were two posts each (one
    # complaint), and `miner status`, the API and the board said so, where SQL over the posts found one.
    server.serve_fixture("/api/v1/search_by_date", "hackernews/search_by_date.json", "application/json")
    server.serve_fixture("/newest.rss", "hackernews/hnrss_newest.rss", "application/rss+xml")
    _collect(_config(tmp_path, ["Cloudflare"], HACKER_NEWS.format(url=server.url)))
    _complaints(tmp_path / "m.sqlite")
    with sqlite3.connect(tmp_path / "m.sqlite") as conn:
        stored = conn.execute("SELECT count(*), count(DISTINCT external_id || created_at) FROM posts p "
                              "JOIN post_services ps ON ps.post_id = p.id").fetchone()
        counted = conn.execute("SELECT sum(posts) FROM buckets").fetchone()[0]
    assert stored[0] > stored[1] and counted == stored[1]


def test_a_subreddit_feed_read_as_plain_rss_names_posts_as_the_reddit_api_does(tmp_path: Path,
                                                                               server: FakeServer) -> None:
    server.serve_fixture("/search.rss", "reddit/search.rss", "application/atom+xml")
    _collect(_config(tmp_path, ["WhatsApp"], f'[[sources]]\nname = "r-feed"\ntype = "rss"\n'
                                              f'url = "{server.url}/search.rss"\n'))
    found = _posts(tmp_path / "m.sqlite")
    assert {ident for ident, _author in found["r-feed"]} == {"t3_1h10k2q", "t3_1h10d7x", "t3_1h0yyb3"}


@pytest.mark.parametrize("fixture", ["mastodon/tag_outage.rss", "hackernews/hnrss_newest.rss"])
def test_entries_stored_under_the_feeds_own_ids_are_not_stored_again(tmp_path: Path, server: FakeServer,
                                                                      fixture: str) -> None:
    # Stored by the release before, under the feed's ids and without an author (Mastodon) or with one hashed as a
    # user of the feed's host (hnrss): the entries still in the feed are the same posts, not new ones.
    server.serve_fixture("/feed.rss", fixture, "application/rss+xml")
    cfg = _config(tmp_path, ["Signal", "Cloudflare"], f'[[sources]]\nname = "feed"\ntype = "rss"\n'
                                                      f'url = "{server.url}/feed.rss"\n')
    path = tmp_path / "m.sqlite"
    with sqlite3.connect(path, isolation_level=None) as conn:
        apply_migrations(conn, MIGRATIONS)
    _collect(cfg)
    with sqlite3.connect(path, isolation_level=None) as conn:
        rows = conn.execute("SELECT external_id, url FROM posts").fetchall()
        assert rows and all(ident != url for ident, url in rows)
        # As the release before stored them: the guid as the id, the author its own or none.
        conn.execute("UPDATE posts SET external_id = CASE WHEN url LIKE '%/@%' THEN url "
                     "ELSE 'https://news.ycombinator.com/item?id=' || external_id END, "
                     "author_hash = CASE WHEN url LIKE '%/@%' THEN NULL ELSE 'feedhost' || id END")
        conn.execute("UPDATE sources SET etag = NULL, last_modified = NULL, next_poll_at = ?",
                     (datetime.now(UTC).isoformat(),))
    _collect(cfg)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM posts").fetchone()[0] == len(rows)


LEMMY = """
[[sources]]
name = "lemmy"
type = "lemmy"
url = "{url}"
query = "discord"
services = ["Discord"]

[[sources]]
name = "lemmy-feed"
type = "rss"
url = "{feeds}/feeds/c/technology.xml"
services = ["Discord"]
"""


@pytest.mark.parametrize("actor", ["https://lemmy.world/u/nightowl", "https://lemmy.ml/u/nightowl"])
def test_a_lemmy_post_read_by_its_search_and_its_community_feed_is_one_post_of_one_author(
        tmp_path: Path, server: FakeServer, monkeypatch: pytest.MonkeyPatch, actor: str) -> None:
    # Lemmy's feed names the author by their actor id, as its API does: hashed as a user of the feed's host, they
    # were a second complainer. Its instance's feed (read from lemmy.world) vouches for the creator of a post of its
    # own, of that instance or another (Lemmy federates: a user of lemmy.ml posts to lemmy.world's community).
    for path, fixture, kind in (("/api/v3/search", "lemmy/search.json", "application/json"),
                                ("/feeds/c/technology.xml", "lemmy/community_technology.xml", "application/rss+xml")):
        body = server.fixture_bytes(fixture).replace(b"https://lemmy.world/u/nightowl", actor.encode())
        server.serve(path, Reply(200, body, content_type=kind))
    feeds = read_as(server, monkeypatch, "lemmy.world")
    _collect(_config(tmp_path, ["Discord"], LEMMY.format(url=server.url, feeds=feeds)))
    found = _posts(tmp_path / "m.sqlite")
    [feed] = found["lemmy-feed"]
    assert feed[0] == "https://lemmy.world/post/2291001" and feed[1] is not None
    assert feed in found["lemmy"]


BLUESKY = """
[[sources]]
name = "bsky"
type = "bluesky"
url = "{url}"
query = "instagram"
env = {{ identifier = "XS_BSKY_ID", password = "XS_BSKY_PW" }}
services = ["Instagram"]

[[sources]]
name = "bsky-feed"
type = "rss"
url = "{feeds}/profile/netwatcher.bsky.social/rss"
services = ["Instagram"]
"""


def test_a_bluesky_post_read_by_the_search_and_its_authors_profile_feed_is_one_post_of_one_author(
        tmp_path: Path, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # bsky.app's profile feed gives the post's at:// URI as the API does, and no author: the feed's row was a
    # complainer of its own. Its author is the DID in the URI, bsky.app's feed listing that account's posts only:
    # the one the search did not read (the search's page held no other) is theirs too.
    monkeypatch.setenv("XS_BSKY_ID", "me.bsky.social")
    monkeypatch.setenv("XS_BSKY_PW", "app-password")
    server.serve_fixture("/xrpc/com.atproto.server.createSession", "bluesky/create_session.json", "application/json")
    server.serve_fixture("/xrpc/app.bsky.feed.searchPosts", "bluesky/search_posts.json", "application/json")
    other = (b"<item><title>@netwatcher.bsky.social post</title>"
             b"<link>https://bsky.app/profile/netwatcher.bsky.social/post/3lbx7kz9pqr2y</link>"
             b"<description>Instagram still not loading here</description><pubDate>2026-11-27T14:13:40.000Z</pubDate>"
             b"<guid>at://did:plc:z72i7hdynmk6r22z27h6tvur/app.bsky.feed.post/3lbx7kz9pqr2y</guid></item>")
    feed_body = server.fixture_bytes("bluesky/profile.rss").replace(b"</channel>", other + b"</channel>")
    server.serve("/profile/netwatcher.bsky.social/rss", Reply(200, feed_body, content_type="application/rss+xml"))
    feeds = read_as_bsky_app(server, monkeypatch)
    _collect(_config(tmp_path, ["Instagram"], BLUESKY.format(url=server.url, feeds=feeds)))
    found = _posts(tmp_path / "m.sqlite")
    assert len(found["bsky-feed"]) == 2 and len({author for _ident, author in found["bsky-feed"]}) == 1
    [feed] = found["bsky-feed"] & found["bsky"]
    assert feed[0].startswith("at://did:plc:z72i7hdynmk6r22z27h6tvur/") and feed[1] is not None
    assert _complaints(tmp_path / "m.sqlite") == 1


@pytest.mark.parametrize("feed_first", [True, False])
def test_a_story_of_a_feed_naming_no_author_is_the_author_the_hacker_news_search_read(
        tmp_path: Path, server: FakeServer, feed_first: bool) -> None:
    # Hacker News' own feed names no author: its story was a complainer of its own (its row id) beside the author the
    # search read, whichever source stored it first.
    server.serve_fixture("/api/v1/search_by_date", "hackernews/search_by_date.json", "application/json")
    server.serve_fixture("/rss", "hackernews/front_page.rss", "application/rss+xml")
    api, feed = HACKER_NEWS.format(url=server.url).replace("/newest.rss", "/rss").split("\n\n[[sources]]")
    feed = f"[[sources]]{feed}"
    _collect(_config(tmp_path, ["Cloudflare"], feed if feed_first else api))
    _collect(_config(tmp_path, ["Cloudflare"], f"{api}\n\n{feed}"))
    found = _posts(tmp_path / "m.sqlite")
    [story] = found["hn-feed"]
    assert story[0] == "42210001" and story in found["hn"]
    assert _complaints(tmp_path / "m.sqlite") == 2  # the story and the comment under it, by two people


def test_the_same_post_of_another_source_is_looked_up_by_its_id_not_by_every_post_of_its_second(tmp_path: Path) -> None:
    # Through posts_created_at, each post stored read every post of its second: 15,000 posts of one second took 131 s.
    from miner.store.posts import _SAME_POST

    store = Store.open(tmp_path / "m.sqlite")
    try:
        for sql, args in ((f"SELECT author_hash FROM posts WHERE {_SAME_POST}", ("a", "1", "2026-11-27T12:00:00Z")),
                          (f"UPDATE posts SET author_hash = ? WHERE {_SAME_POST}",
                           ("h", "a", "1", "2026-11-27T12:00:00Z"))):
            plan = [r[3].replace("SEARCH TABLE ", "SEARCH ")  # SQLite before 3.36 says "SEARCH TABLE posts"
                    for r in store.database.conn.execute(f"EXPLAIN QUERY PLAN {sql}", args)]
            assert any(p.startswith("SEARCH posts USING INDEX sqlite_autoindex_posts_1 (source=? AND external_id=?)")
                       for p in plan), plan
    finally:
        store.close()

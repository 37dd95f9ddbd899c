"""A Reddit crosspost read from Reddit's feed, which does not mark it: the post it shares again where the store has
that post, as the API reads a crosspost (collectors/reddit.py). `miner collect --once` against a real local server,
then the store's own count of a bucket's complainers (as tests/test_collect_cross_source.py)."""

from __future__ import annotations

import copy
import json
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fakeserver import FakeServer, Recorded, Reply
from test_collect_cross_source import _collect, _complaints, _config, _posts

from miner.collectors import Poller
from miner.config import parse_config
from miner.pipeline import Pipeline
from miner.store import Store
from miner.timeutil import iso

ORIGINAL = "https://www.reddit.com/r/whatsapp/comments/1h10k2q/is_whatsapp_down_right_now/"


def _shared(ident: str, name: str, title: str, published: str) -> str:
    """An entry of r/techsupport's feed in `reddit/search.rss`'s shape, by ``name``, whose "[link]" is ORIGINAL."""
    own = f"https://www.reddit.com/r/techsupport/comments/{ident}/is_whatsapp_down_right_now/"
    trailer = (f"&amp;#32; submitted by &amp;#32; &lt;a href=&quot;https://www.reddit.com/user/{name}&quot;&gt; "
               f"/u/{name} &lt;/a&gt; &lt;br/&gt; &lt;span&gt;&lt;a href=&quot;{ORIGINAL}&quot;&gt;[link]&lt;/a&gt;"
               f"&lt;/span&gt; &amp;#32; &lt;span&gt;&lt;a href=&quot;{own}&quot;&gt;[comments]&lt;/a&gt;"
               "&lt;/span&gt;")
    return (f'<entry><author><name>/u/{name}</name><uri>https://www.reddit.com/user/{name}</uri></author>'
            f'<category term="techsupport" label="r/techsupport"/><content type="html">{trailer}</content>'
            f'<id>t3_{ident}</id><link href="{own}" /><updated>{published}</updated>'
            f"<published>{published}</published><title>{title}</title></entry>")


def _entries(server: FakeServer) -> tuple[str, str, str, str]:
    """The head of `reddit/search.rss` and three entries in its shape: its first, tomasz_pl's self post in r/whatsapp
    (t3_1h10k2q, 13:12:40); mira_k's crosspost of it to r/techsupport 20 minutes later (t3_1h11m3c, its title, no
    body of its own, its "[link]" the permalink of the post it shares, as the API's url of a crosspost is); and
    piotr_w's link post in r/techsupport to the same thread under words of his own (t3_1h11m7d). Ids, names, times and
    the two new entries' words are written for this test."""
    feed = server.fixture_bytes("reddit/search.rss").decode()
    head, rest = feed.split("<entry>", 1)
    original = "<entry>" + rest.split("</entry>", 1)[0] + "</entry>"
    crosspost = _shared("1h11m3c", "mira_k", "Is WhatsApp down right now?", "2026-11-27T13:32:40+00:00")
    link_post = _shared("1h11m7d", "piotr_w", "Same in Warsaw, WhatsApp web won&#39;t load",
                        "2026-11-27T13:33:10+00:00")
    return head, original, crosspost, link_post


def _feed(head: str, *entries: str) -> Reply:
    return Reply(200, (head + "".join(entries) + "</feed>").encode(), content_type="application/atom+xml")


def _reddit(name: str, url: str, query: str) -> str:
    return (f'[[sources]]\nname = "{name}"\ntype = "reddit"\nurl = "{url}"\nquery = "{query}"\n'
            'services = ["WhatsApp"]\n\n')


@pytest.mark.parametrize("one_feed", [False, True])
def test_a_crosspost_in_reddits_feed_is_the_post_it_shares(tmp_path: Path, server: FakeServer,
                                                          one_feed: bool) -> None:
    # Read as itself, mira_k's crosspost was one more complainer 20 minutes after tomasz_pl's post: read by the
    # feeds of both subreddits (the subreddit's first), or by one feed (a search) listing both, newest first.
    # piotr_w's link post to the thread, under his own words, is his post.
    head, original, crosspost, link_post = _entries(server)
    if one_feed:
        server.serve("/search.rss", _feed(head, link_post, crosspost, original))
        _collect(_config(tmp_path, ["WhatsApp"], _reddit("search", server.url, "whatsapp down")))
    else:
        server.serve("/r/whatsapp/new/.rss", _feed(head, original))
        server.serve("/r/techsupport/new/.rss", _feed(head, link_post, crosspost))
        _collect(_config(tmp_path, ["WhatsApp"], _reddit("whatsapp", server.url, "r/whatsapp")))
        _collect(_config(tmp_path, ["WhatsApp"], _reddit("whatsapp", server.url, "r/whatsapp")
                         + _reddit("techsupport", server.url, "r/techsupport")))
    stored = {ident for rows in _posts(tmp_path / "m.sqlite").values() for ident, _author in rows}
    assert stored == {"t3_1h10k2q", "t3_1h11m7d"}
    # tomasz_pl's post and piotr_w's.
    assert _complaints(tmp_path / "m.sqlite") == 2


def test_a_crosspost_the_api_read_as_the_post_it_shares_is_that_post_in_the_subreddits_feed(
        tmp_path: Path, server: FakeServer) -> None:
    # The API reads mira_k's crosspost as tomasz_pl's post (its crosspost_parent_list), dated when he wrote it; the
    # subreddit's feed lists it as mira_k's, a minute ago: one more complainer in another bucket.
    now = datetime.now(UTC).replace(microsecond=0)
    written, crossposted = now - timedelta(minutes=20), now - timedelta(minutes=1)
    listing = json.loads(server.fixture_bytes("reddit/search.json"))
    parent = copy.deepcopy(listing["data"]["children"][0]["data"])
    body = "Messages stuck on one tick since about 14:00 CET, web.whatsapp.com won't load either. Is it just me?"
    parent.update(name="t3_1h10k2q", id="1h10k2q", author="tomasz_pl", subreddit="whatsapp",
                  title="Is WhatsApp down right now?", selftext=body,
                  selftext_html=f'&lt;!-- SC_OFF --&gt;&lt;div class="md"&gt;&lt;p&gt;{body}&lt;/p&gt;\n&lt;/div&gt;'
                                "&lt;!-- SC_ON --&gt;",
                  created_utc=float(written.timestamp()), permalink=ORIGINAL.removeprefix("https://www.reddit.com"),
                  url=ORIGINAL)
    crosspost = copy.deepcopy(parent)
    crosspost.update(name="t3_1h11m3c", id="1h11m3c", author="mira_k", subreddit="techsupport", selftext="",
                     selftext_html=None, is_self=False, created_utc=float(crossposted.timestamp()),
                     permalink="/r/techsupport/comments/1h11m3c/is_whatsapp_down_right_now/",
                     crosspost_parent="t3_1h10k2q", crosspost_parent_list=[parent])
    listing["data"]["children"] = [{"kind": "t3", "data": crosspost}]
    server.serve_fixture("/api/v1/access_token", "reddit/token.json")
    server.serve("/r/techsupport/new.json", Reply(200, json.dumps(listing).encode(), content_type="application/json"))
    head = server.fixture_bytes("reddit/search.rss").decode().split("<entry>", 1)[0]
    server.serve("/r/techsupport/new/.rss", _feed(head, _shared("1h11m3c", "mira_k", "Is WhatsApp down right now?",
                                                                iso(crossposted))))
    api = (f'[[services]]\nname = "WhatsApp"\n\n[[sources]]\nname = "api"\ntype = "reddit"\nurl = "{server.url}"\n'
           'query = "r/techsupport"\nservices = ["WhatsApp"]\nenv = { client_id = "RID", client_secret = "RSECRET" }\n')
    feed = (f'\n[[sources]]\nname = "feed"\ntype = "rss"\nurl = "{server.url}/r/techsupport/new/.rss"\n'
            'services = ["WhatsApp"]\n')
    store = Store.open(tmp_path / "m.sqlite")
    try:
        for config in (parse_config(api), parse_config(api + feed)):
            with Poller(config.collect, config.services, hash_key=b"k",
                        environ={"RID": "id", "RSECRET": "secret"}) as poller:
                Pipeline(config, store).collect(now, poller, due_only=False)
    finally:
        store.close()
    assert {source: {ident for ident, _author in rows} for source, rows in _posts(tmp_path / "m.sqlite").items()} \
        == {"api": {"t3_1h10k2q"}}
    assert _complaints(tmp_path / "m.sqlite") == 1


def test_the_shared_post_is_looked_up_by_source_and_id_not_by_every_post(tmp_path: Path) -> None:
    # By its id alone, no index leads to it: each crosspost stored read every post of the store.
    from miner.store import Store
    from miner.store.shares import _SHARED

    store = Store.open(tmp_path / "m.sqlite")
    try:
        plan = [r[3].replace("SEARCH TABLE ", "SEARCH ") for r in store.database.conn.execute(
            f"EXPLAIN QUERY PLAN SELECT 1 FROM posts WHERE {_SHARED} LIMIT 1", {"shares": "t3_1h10k2q", "text": "x"})]
        assert any(p.startswith("SEARCH posts USING INDEX sqlite_autoindex_posts_1 (source=? AND external_id=?)")
                   for p in plan), plan
    finally:
        store.close()


def _after(path: Path, ident: str, reply: Reply) -> Callable[[Recorded], Reply]:
    """``reply``, once the store at ``path`` has the post ``ident``: the feed answers after the other feed of its round
    was stored, so the polls of one round are stored in the order the test names."""
    def answer(_request: Recorded) -> Reply:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with closing(sqlite3.connect(path, timeout=10)) as conn:
                    if conn.execute("SELECT 1 FROM posts WHERE external_id = ?", (ident,)).fetchone():
                        break
            except sqlite3.OperationalError:  # no store, or no posts table, yet
                pass
            time.sleep(0.05)
        return reply
    return answer


def test_a_crosspost_stored_before_the_post_it_shares_in_one_round_goes_when_that_post_is_stored(
        tmp_path: Path, server: FakeServer) -> None:
    # The two subreddits' feeds of one round are stored in the order their polls end: r/techsupport's first, mira_k's
    # crosspost was stored as hers, the store not having tomasz_pl's post yet, and both counted as complainers.
    head, original, crosspost, link_post = _entries(server)
    server.serve("/r/techsupport/new/.rss", _feed(head, link_post, crosspost))
    server.serve("/r/whatsapp/new/.rss", _after(tmp_path / "m.sqlite", "t3_1h11m3c", _feed(head, original)))
    _collect(_config(tmp_path, ["WhatsApp"], _reddit("whatsapp", server.url, "r/whatsapp")
                     + _reddit("techsupport", server.url, "r/techsupport")))
    assert _complaints(tmp_path / "m.sqlite") == 2
    stored = {ident for rows in _posts(tmp_path / "m.sqlite").values() for ident, _author in rows}
    # piotr_w's link post, under words of his own, stays his.
    assert stored == {"t3_1h10k2q", "t3_1h11m7d"}


def test_a_crosspost_counted_before_the_post_it_shares_came_is_recounted_when_it_comes(
        tmp_path: Path, server: FakeServer) -> None:
    # r/whatsapp watched from the second poll on: mira_k's crosspost was stored, classified and counted in its bucket
    # by then. Its bucket is recounted when tomasz_pl's post is stored, with no post of its own classified anew.
    head, original, crosspost, link_post = _entries(server)
    server.serve("/r/whatsapp/new/.rss", _feed(head, original))
    server.serve("/r/techsupport/new/.rss", _feed(head, link_post, crosspost))
    techsupport = _reddit("techsupport", server.url, "r/techsupport")
    _collect(_config(tmp_path, ["WhatsApp"], techsupport))
    assert _complaints(tmp_path / "m.sqlite") == 2  # mira_k and piotr_w, in one bucket
    _collect(_config(tmp_path, ["WhatsApp"], techsupport + _reddit("whatsapp", server.url, "r/whatsapp")))
    # tomasz_pl's post and piotr_w's: mira_k's bucket counts piotr_w alone now.
    assert _complaints(tmp_path / "m.sqlite") == 2
    stored = {ident for rows in _posts(tmp_path / "m.sqlite").values() for ident, _author in rows}
    assert stored == {"t3_1h10k2q", "t3_1h11m7d"}

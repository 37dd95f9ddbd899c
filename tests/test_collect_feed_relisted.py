"""A feed that lists the same posts under new ids (a CMS that puts a timestamp or session in the guid, a switch from
RSS to Atom with another id scheme): against a 127.0.0.1 server and a real store, each post is stored and counted
once, a thread whose replies all link to it keeps every reply, and the operator is told the ids churn."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from itertools import count

import pytest
from fakeserver import FakeServer, Recorded, Reply

from miner.collectors import CollectSettings, Poller
from miner.config import SourceConfig
from miner.store import Store

NOW = datetime.now(UTC).replace(microsecond=0)
ITEMS = [("https://forum.example.net/t/1", "MTN down in Accra", NOW - timedelta(minutes=30)),
         ("https://forum.example.net/t/2", "MTN calls fail", NOW - timedelta(minutes=20)),
         ("https://forum.example.net/t/3", "MTN data slow", NOW - timedelta(minutes=10))]


def rss(items: list[tuple[str, str, datetime]], fetch: int) -> bytes:
    body = "".join(f"<item><title>{title}</title><link>{link}</link><guid>{link}?n={i}&amp;sid={fetch}</guid>"
                   f"<pubDate>{format_datetime(when)}</pubDate><description>{title}</description></item>"
                   for i, (link, title, when) in enumerate(items))
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{body}</channel></rss>'.encode()


def atom(items: list[tuple[str, str, datetime]]) -> bytes:
    body = "".join(f'<entry><title>{title}</title><link href="{link}"/><id>tag:forum.example.net,{i}</id>'
                   f"<published>{when.isoformat()}</published><updated>{when.isoformat()}</updated>"
                   f"<summary>{title}</summary></entry>" for i, (link, title, when) in enumerate(items))
    return (f'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><id>f</id>'
            f"<updated>{NOW.isoformat()}</updated>{body}</feed>").encode()


def new_posts(store: Store, poller: Poller, source: SourceConfig) -> int:
    store.sync_sources([source])
    result = poller.poll(source, store.source_state(source.name))
    return store.save_fetch(source.name, result, NOW, NOW).posts_new


def test_a_feed_whose_ids_change_at_every_fetch_stores_each_post_once(server: FakeServer, store: Store,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    fetches = count(1)
    server.serve("/feed", lambda _r: Reply(200, rss(ITEMS, next(fetches)), content_type="application/rss+xml"))
    source = SourceConfig("forum", "rss", url=f"{server.url}/feed")
    with Poller(CollectSettings(connect_timeout=2.0), hash_key=b"k") as poller, caplog.at_level(logging.WARNING):
        assert new_posts(store, poller, source) == 3
        assert new_posts(store, poller, source) == 0  # read again as new complaints: a false outage signal
        assert new_posts(store, poller, source) == 0
        server.serve("/feed", Reply(200, atom(ITEMS), content_type="application/atom+xml"))  # another id scheme
        assert new_posts(store, poller, source) == 0
    assert store.database.one("SELECT count(*) AS n FROM posts")["n"] == 3
    churn = [r for r in caplog.records if "ids" in r.getMessage() and "forum" in r.getMessage()]
    assert len(churn) == 1  # once per source, not at every poll


def test_replies_that_all_link_to_their_thread_are_each_stored(server: FakeServer, store: Store) -> None:
    # A thread's feed (and AWS's, whose every item links to the status page): one link, distinct posts.
    thread = "https://forum.example.net/t/1"
    replies = [(thread, f"reply {i}: MTN is down here too", NOW - timedelta(minutes=10 * i)) for i in range(1, 4)]
    fetches = count(1)

    def reply(_request: Recorded) -> Reply:
        return Reply(200, rss(replies, next(fetches)), content_type="application/rss+xml")

    server.serve("/thread", reply)
    source = SourceConfig("thread", "rss", url=f"{server.url}/thread")
    with Poller(CollectSettings(connect_timeout=2.0), hash_key=b"k") as poller:
        assert new_posts(store, poller, source) == 3
        replies.append((thread, "reply 0: MTN is down here too", NOW - timedelta(minutes=1)))
        assert new_posts(store, poller, source) == 1


def item(title: str, guid: str, when: datetime, link: str | None = None, author: str | None = None) -> str:
    return (f"<item><title>{title}</title>" + (f"<link>{link}</link>" if link else "")
            + (f"<author>{author}</author>" if author else "")
            + f'<guid isPermaLink="false">{guid}</guid><pubDate>{format_datetime(when)}</pubDate></item>')


def items_feed(*items: str) -> bytes:
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{"".join(items)}</channel></rss>'.encode()


def polls(server: FakeServer, store: Store, name: str, *feeds: bytes) -> list[int]:
    source = SourceConfig(name, "rss", url=f"{server.url}/{name}")
    counts = []
    with Poller(CollectSettings(connect_timeout=2.0), hash_key=b"k") as poller:
        for body in feeds:
            server.serve(f"/{name}", Reply(200, body, content_type="application/rss+xml"))
            counts.append(new_posts(store, poller, source))
    return counts


def test_two_replies_with_one_text_at_two_times_are_two_posts(server: FakeServer, store: Store,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    thread = "https://forum.example.net/t/1"
    first = item("Re: MTN down", "r1", NOW - timedelta(minutes=30), thread)
    second = item("Re: MTN down", "r2", NOW - timedelta(minutes=5), thread)
    with caplog.at_level(logging.WARNING):
        assert polls(server, store, "thread", items_feed(first), items_feed(second, first)) == [1, 1]
    assert not [r for r in caplog.records if "new ids" in r.getMessage()]


def test_two_entries_of_one_poll_with_one_link_and_date_are_two_posts(server: FakeServer, store: Store,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    # A comments feed linking every item to its thread, at one minute; its ids do not change.
    thread, when = "https://forum.example.net/t/1", NOW - timedelta(minutes=3)
    body = items_feed(item("WhatsApp down for me", "c1", when, thread),
                      item("WhatsApp outage Lagos", "c2", when, thread))
    with caplog.at_level(logging.WARNING):
        assert polls(server, store, "comments", body, body) == [2, 0]
    assert not [r for r in caplog.records if "new ids" in r.getMessage()]


def test_an_entry_newly_listed_behind_re_listed_ones_counts_as_late(server: FakeServer, store: Store) -> None:
    source = SourceConfig("forum", "rss", url=f"{server.url}/feed")
    late = (ITEMS[2][0] + "/late", "MTN down again", NOW - timedelta(minutes=15))
    with Poller(CollectSettings(connect_timeout=2.0), hash_key=b"k") as poller:
        server.serve("/feed", Reply(200, rss(ITEMS, 1), content_type="application/rss+xml"))
        assert new_posts(store, poller, source) == 3
        server.serve("/feed", Reply(200, atom([*ITEMS, late]), content_type="application/atom+xml"))  # new ids
        store.sync_sources([source])
        stats = store.save_fetch(source.name, poller.poll(source, store.source_state(source.name)), NOW, NOW)
    assert (stats.posts_new, stats.posts_seen, stats.posts_late, stats.late_by_s) == (1, 3, 1, 300.0)


def test_one_short_text_by_two_authors_at_one_minute_is_two_posts(server: FakeServer, store: Store,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    when = NOW - timedelta(minutes=2)
    with caplog.at_level(logging.WARNING):
        body = items_feed(item("down?", "p1", when, author="alice@example.com (alice)"),
                          item("down?", "p2", when, author="bob@example.com (bob)"))
        assert polls(server, store, "short", body) == [2]
    assert not [r for r in caplog.records if "new ids" in r.getMessage()]


def test_a_new_entry_sharing_a_link_and_day_with_one_gone_from_the_feed_is_stored(server: FakeServer,
                                                                                   store: Store) -> None:
    # A small feed dated by the day whose entries all link to its home page: the entry new at the second poll had
    # the link and date of the one that had left the feed, was taken for it listed again, and was never stored.
    day = NOW.replace(hour=0, minute=0, second=0)
    home = "https://isp.example.com/"
    first = [(home, "MTN down in Accra", day), (home, "MTN calls failing", day)]
    server.serve("/feed", Reply(200, rss(first, 1), content_type="application/rss+xml"))
    source = SourceConfig("news", "rss", url=f"{server.url}/feed")
    with Poller(CollectSettings(connect_timeout=2.0), hash_key=b"k") as poller:
        assert new_posts(store, poller, source) == 2
        then = [(home, "Vodafone outage in Kumasi", day), (home, "MTN calls failing", day)]
        server.serve("/feed", Reply(200, rss(then, 1).replace(b"?n=0", b"?n=9"), content_type="application/rss+xml"))
        assert new_posts(store, poller, source) == 1
    texts = {r["text"] for r in store.database.rows("SELECT text FROM posts")}
    assert any("Vodafone" in t for t in texts)


def linked(title: str, when: datetime, link: str, guid: str | None = None) -> str:
    return (f"<item><title>{title}</title><link>{link}</link>"
            + (f'<guid isPermaLink="false">{guid}</guid>' if guid else "")
            + f"<pubDate>{format_datetime(when)}</pubDate></item>")


@pytest.mark.parametrize("guid", [None, "https://forum.example.net/"], ids=["no guid, one link", "one guid"])
def test_entries_of_a_feed_that_share_one_id_are_each_stored_once(server: FakeServer, store: Store,
                                                                   guid: str | None) -> None:
    # A thread's feed without guids, each reply linking to the thread (so its id is that link), or a feed giving every
    # entry its home page as guid: by that one id the store kept the first entry and dropped the rest, silently.
    thread = "https://forum.example.net/t/1"
    first = linked("Re: MTN down", NOW - timedelta(minutes=30), f"{thread}?r=1" if guid else thread, guid)
    second = linked("Re: MTN down here too", NOW - timedelta(minutes=20), f"{thread}?r=2" if guid else thread, guid)
    third = linked("Re: MTN back?", NOW - timedelta(minutes=10), f"{thread}?r=3" if guid else thread, guid)
    # The first alone (stored under the bare id), then shared: it is not stored again under its new id.
    assert polls(server, store, "thread", items_feed(first), items_feed(second, first),
                 items_feed(third, second, first), items_feed(third, second, first, first), items_feed(third)) \
        == [1, 1, 1, 0, 0]
    assert store.database.one("SELECT count(*) AS n FROM posts")["n"] == 3


def reply(title: str, when: datetime, link: str, *, guid: str | None = None, author: str | None = None,
          body: str = "") -> str:
    return (f"<item><title>{title}</title><link>{link}</link><description>{body}</description>"
            + (f'<guid isPermaLink="false">{guid}</guid>' if guid else "")
            + (f"<author>{author}</author>" if author else "")
            + f"<pubDate>{format_datetime(when)}</pubDate></item>")


@pytest.mark.parametrize("guid", [None, "https://forum.example.net/"], ids=["no guid, one link", "one guid"])
def test_an_edited_entry_of_a_feed_whose_entries_share_an_id_is_not_stored_again(server: FakeServer, store: Store,
                                                                                 guid: str | None) -> None:
    # Each entry's suffix was a hash of its text, date and author: a reply edited (its text) got a new id, and,
    # its text no longer the stored one's, it was not known by its link either, and was stored and counted again.
    thread = "https://forum.example.net/t/1"
    when = [NOW - timedelta(minutes=m) for m in (30, 20)]
    links = [f"{thread}?r={i}" if guid else thread for i in (1, 2)]
    first = reply("Re: MTN down", when[0], links[0], guid=guid, author="a@example.com (alice)", body="no signal")
    edited = reply("Re: MTN down", when[0], links[0], guid=guid, author="a@example.com (alice)",
                   body="no signal (edit: back now)")
    second = reply("Re: MTN down", when[1], links[1], guid=guid, author="b@example.com (bob)", body="same in Tema")
    assert polls(server, store, "thread", items_feed(second, first), items_feed(second, edited),
                 items_feed(second, edited)) == [2, 0, 0]
    assert store.database.one("SELECT count(*) AS n FROM posts")["n"] == 2


def test_an_atom_entry_dated_by_its_update_only_that_shares_an_id_is_not_stored_again(server: FakeServer,
                                                                                      store: Store) -> None:
    # Replies of a thread's Atom feed, one id and one link for all, dated only by <updated>: an update of an entry
    # gave it a new date, so a new id, and by its date it was not the one stored either.
    def feed(*entries: tuple[str, str, datetime]) -> bytes:
        body = "".join(f'<entry><title>{title}</title><link href="https://forum.example.net/t/1"/>'
                       f"<id>tag:forum.example.net,t1</id><author><name>{who}</name></author>"
                       f"<updated>{when.isoformat()}</updated><summary>{title}</summary></entry>"
                       for title, who, when in entries)
        return (f'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><id>f</id>'
                f"<updated>{NOW.isoformat()}</updated>{body}</feed>").encode()

    source = SourceConfig("atom", "rss", url=f"{server.url}/atom")
    alice, bob = ("Vodafone down in Kumasi", "alice", NOW - timedelta(minutes=30)), \
        ("Vodafone calls fail", "bob", NOW - timedelta(minutes=20))
    with Poller(CollectSettings(connect_timeout=2.0), hash_key=b"k") as poller:
        server.serve("/atom", Reply(200, feed(bob, alice), content_type="application/atom+xml"))
        assert new_posts(store, poller, source) == 2
        server.serve("/atom", Reply(200, feed(bob, (*alice[:2], NOW - timedelta(minutes=5))),
                                    content_type="application/atom+xml"))
        assert new_posts(store, poller, source) == 0
    assert store.database.one("SELECT count(*) AS n FROM posts")["n"] == 2

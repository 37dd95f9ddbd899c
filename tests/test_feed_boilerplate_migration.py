"""Migration 0033_feed_boilerplate: the posts an `rss` source stored with its site's boilerplate in their text (the
author's name among it) and with a link naming their author get the text and link a poll stores now. Each store is
a real SQLite file made at the schema before 0033 with the posts of the recorded feeds as a poll stored them before,
then opened (upgraded) as `miner run` opens it."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import feedparser
from test_collect_feed_boilerplate import FIXTURES, HN_COMMENT, LEMMY_OWN_WORDS, REDDIT_OWN_WORDS

from miner.collectors.canonical import site_identity
from miner.collectors.feed_boilerplate import feed_entry_text
from miner.collectors.feeds import entry_body
from miner.collectors.matching import ServiceMatcher
from miner.collectors.normalise import post_text
from miner.config import ServiceConfig
from miner.store import Store
from miner.store.feed_boilerplate_scrub import scrub_feed_boilerplate
from miner.store.link_scrub import SCRUB_BATCH
from miner.store.migrations import MIGRATIONS, apply_migrations
from miner.timeutil import iso

MIGRATION = "0033_feed_boilerplate"
AT = iso(datetime(2026, 11, 27, 14, 0, tzinfo=UTC))
MATCHER = ServiceMatcher([ServiceConfig("WhatsApp"), ServiceConfig("Discord")])
Row = tuple[str, str, str, str | None]  # source, external_id, text, url


def _feed(name: str, extra: str = "", end: str = "</channel>") -> bytes:
    return (FIXTURES / name).read_text(encoding="utf-8").replace(end, extra + end).encode("utf-8")


def _first_item(name: str) -> bytes:
    text = (FIXTURES / name).read_text(encoding="utf-8")
    return (text[:text.index("</item>") + len("</item>")] + "</channel></rss>").encode("utf-8")


FEEDS = [_feed("lemmy/community_technology.xml", LEMMY_OWN_WORDS), _feed("hackernews/hnrss_newest.rss", HN_COMMENT),
         _feed("hackernews/front_page.rss"), _feed("reddit/search.rss", REDDIT_OWN_WORDS, "</feed>"),
         _feed("bluesky/profile.rss"), _first_item("rss/forum_latest.rss"), _feed("discourse/latest.rss"),
         _feed("discourse/topic.rss"), _feed("reddit/comments.rss", end="</feed>")]


def _rows(before: bool) -> list[Row]:
    """The posts of FEEDS as an `rss` source stored them before its site's boilerplate was taken out (the entry's
    title, body and link as they came), or as it stores them now."""
    rows = []
    for n, feed in enumerate(FEEDS):  # a source each: two give one Hacker News story
        for entry in feedparser.parse(feed).entries:
            site = site_identity(entry, False)
            title, body, url = str(entry.get("title") or ""), entry_body(entry), str(entry.get("link") or "")
            if not before:
                title, body, url = feed_entry_text(entry, site, title, body, url)  # type: ignore[assignment]
            text = MATCHER.redact_people(post_text(title, body, 4000))
            rows.append((f"feed{n}", site.external_id if site else str(entry.get("id")), text, url))
    return rows


def _store(path: Path, rows: list[Row]) -> list[Row]:
    """The rows of a store made at the schema before the migration with ``rows``, its sources of type rss but those
    named "api..." (reddit), once upgraded."""
    with sqlite3.connect(path, isolation_level=None) as conn:
        apply_migrations(conn, [m for m in MIGRATIONS if m.id < MIGRATION])
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO sources (name, type) VALUES (?, ?)",
                         [(name, "reddit" if name.startswith("api") else "rss") for name in {row[0] for row in rows}])
        conn.executemany("INSERT INTO posts (source, external_id, text, url, created_at, fetched_at) "
                         "VALUES (?, ?, ?, ?, ?, ?)", [(*row, AT, AT) for row in rows])
        conn.execute("COMMIT")
    conn.close()
    store = Store.open(path)
    try:
        return [(r["source"], r["external_id"], r["text"], r["url"]) for r in
                store.database.rows("SELECT source, external_id, text, url FROM posts ORDER BY id")]
    finally:
        store.close()


def test_posts_a_feed_stored_before_are_as_a_poll_stores_them_now(tmp_path: Path) -> None:
    before, now = _rows(before=True), _rows(before=False)
    total = len(before)
    assert total == 18 and all(old != new for old, new in zip(before, now, strict=True))
    # Over two batches and one more row, each post of each feed again and again (from sources of their own).
    count = 2 * SCRUB_BATCH + 1

    def again(rows: list[Row]) -> list[Row]:
        return [(f"{rows[n % total][0]}-{n // total}", *rows[n % total][1:])  # type: ignore[misc]
                for n in range(count)]

    # The same texts from a source of another type, and texts of an rss source that only look like the boilerplate
    # (not at its place, of no such site's id, a title ending in "Comments" alone): kept to the character.
    kept: list[Row] = [(f"api{source}", ident, text, url) for source, ident, text, url in _rows(before=True)] + [
        ("feed9", "https://forum.example.net/t/form/1", "Form fixed. submitted by ann to help 3 points | 4 comments",
         "https://forum.example.net/t/form/1"),
        ("feed9", "42210099", "Code Comments", "https://example.com/a"),
        ("feed9", "t3_1h10yyy", "Moved. submitted by u/[user] [link] [comments] and more words", None),
        ("feed9", "at://did:plc:abc/app.bsky.feed.post/3l1", "@[user] post. down again",
         "https://bsky.app/profile/did:plc:abc/post/3l1"),
        # A Discourse post's own "I wrote:" before the newer counts, a "Read full topic" not at the end, a reply
        # whose title is its own; a comment's words alone.
        ("feed9", "forum.example.net-topic-7", "Down. I wrote: ticket 3 posts - 2 participants", None),
        ("feed9", "topic-8", "Down. Read full topic here", None),
        ("feed9", "forum.example.net-post-9-2", "Down. Jan wrote: same here", None),
        ("feed9", "t1_m3x0000", "u/[user] on it. me too", None),
    ]
    upgraded = _store(tmp_path / "old.sqlite", again(before) + kept)
    assert upgraded == again(now) + kept
    feeds = " ".join(f"{text} {url}" for source, _ident, text, url in upgraded if source.startswith("feed"))
    for name in ("nightowl", "daybird", "quietfox", "u_quietgarden", "netwatcher", "Points:", "14 comments",
                 "Kowalski", "Lopes", "wrote: Same", "participants Read", "/u/[user] on Is"):
        assert name not in feeds


def test_the_rewrite_is_the_same_again(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    now = _rows(before=False)
    assert _store(path, _rows(before=True)) == now
    with sqlite3.connect(path, isolation_level=None) as conn:
        before = conn.total_changes
        conn.execute("BEGIN")
        scrub_feed_boilerplate(conn)
        conn.execute("COMMIT")
        assert conn.total_changes == before
    conn.close()

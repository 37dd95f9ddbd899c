"""Links a feed's items carry, and the ids made of them, as the store keeps them: without a credential, each item
still under an id of its own, and a store from before upgraded into the same forms, so nothing is stored twice."""

from __future__ import annotations

import sqlite3
import tracemalloc
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from fakeserver import FakeServer, Reply

from miner.collectors import CollectSettings, Poller
from miner.config import SourceConfig
from miner.store import Store
from miner.store.link_scrub import SCRUB_BATCH
from miner.store.migrations import MIGRATIONS, apply_migrations
from miner.timeutil import iso
from miner.urls import public_url

NOW = datetime.now(UTC).replace(microsecond=0)


def rss(items: list[tuple[str, str, datetime]]) -> bytes:
    body = "".join(f"<item><title>{title}</title><link>{link.replace('&', '&amp;')}</link>"
                   f"<pubDate>{format_datetime(when)}</pubDate><description>{title}</description></item>"
                   for link, title, when in items)
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{body}</channel></rss>'.encode()


def poll(server: FakeServer, store: Store, source: SourceConfig, body: bytes) -> int:
    server.serve("/feed.rss", Reply(200, body, content_type="application/rss+xml", headers={"ETag": '"v2"'}))
    with Poller(CollectSettings(connect_timeout=2.0), hash_key=b"k") as poller:
        result = poller.poll(source, store.source_state(source.name))
    return store.save_fetch(source.name, result, NOW, NOW).posts_new


def test_only_credential_names_are_redacted() -> None:
    # Any last word ending in key or token was taken for a credential: ?monkey=, ?sortkey=, ?issuekey= were stored
    # as [redacted], and links that differ only there made one id.
    kept = ["https://www.youtube.com/watch?v=abc", "https://x.example/?id=5", "https://x.example/?monkey=1",
            "https://x.example/?sortkey=date", "https://x.example/?hotkey=a", "https://x.example/?issuekey=ABC-1",
            "https://x.example/?primarykey=3", "https://x.example/?turkey=1&id=2", "https://x.example/?keyword=down",
            "https://x.example/?bypass=1", "https://x.example/?compass=n"]
    assert [public_url(u) for u in kept] == kept
    assert public_url("https://x.example/dl?id=1&passkey=PK&rsskey=R&apitoken=A&authToken=T&client_secret=C") == (
        "https://x.example/dl?id=1&passkey=[redacted]&rsskey=[redacted]&apitoken=[redacted]&authToken=[redacted]"
        "&client_secret=[redacted]")


def test_items_whose_links_differ_in_a_redacted_value_keep_ids_of_their_own(server: FakeServer, store: Store) -> None:
    # An item without a guid is stored under its link as the store keeps it: two whose links differed only in a value
    # it leaves out (?storykey= under the old rule, ?passkey= now) had one id, and the second was dropped.
    source = SourceConfig("news", "rss", url=f"{server.url}/feed.rss")
    store.sync_sources([source])
    items = [("https://news.example.com/story.aspx?storykey=101", "MTN outage one", NOW - timedelta(minutes=20)),
             ("https://news.example.com/story.aspx?storykey=202", "MTN outage two", NOW - timedelta(minutes=15)),
             ("https://t.example/dl?id=1&passkey=PK-S3CR3T-A", "MTN down in Accra", NOW - timedelta(minutes=10)),
             ("https://t.example/dl?id=1&passkey=PK-S3CR3T-B", "MTN calls fail", NOW - timedelta(minutes=5))]
    assert poll(server, store, source, rss(items)) == 4
    rows = store.database.rows("SELECT external_id, url FROM posts ORDER BY created_at")
    assert [r["url"] for r in rows] == [items[0][0], items[1][0], *["https://t.example/dl?id=1&passkey=[redacted]"] * 2]
    assert [r["external_id"] for r in rows[:2]] == [items[0][0], items[1][0]]
    assert len({r["external_id"] for r in rows}) == 4
    assert not any("S3CR3T" in r["external_id"] for r in rows)


def test_a_store_from_before_is_upgraded_into_the_forms_stored_now(tmp_path: Path, server: FakeServer) -> None:
    # A store written before kept a feed item's link, an id made of it and a status page's link as written, and a
    # source's url with ?passkey= (no key word then): the first poll after the upgrade stored every entry again (a new
    # complaint each), reset the source's poll state (its stored url changed), and the keys stayed in the store.
    path = tmp_path / "old.sqlite"
    link = "https://tracker.example.org/details?id=7&passkey=PK-S3CR3T"
    feed_url = f"{server.url}/feed.rss?q=down&passkey=PK-S3CR3T"
    then, cursor = NOW - timedelta(minutes=20), iso(NOW - timedelta(minutes=20))
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        apply_migrations(conn, MIGRATIONS[:16])  # the schema before 0017_stored_links
        conn.execute("INSERT INTO sources (name, type, url, etag, cursor, last_ok_at, polls) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)", ("tracker", "rss", feed_url, '"v1"', cursor, cursor, 3))
        conn.executemany("INSERT INTO posts (source, external_id, text, url, created_at, fetched_at) "
                         "VALUES ('tracker', ?, ?, ?, ?, ?)",
                         [(link, "Outage\n\nOutage", link, cursor, cursor),
                          ("guid-1", "Other", "https://x.example/?sortkey=date", cursor, cursor)])
        conn.execute("INSERT INTO official_incidents (source, external_id, service, title, status, started_at, "
                     "updated_at, url, first_seen_at) "
                     "VALUES ('status:X', 'i1', 'X', 'Down', 'investigating', ?, ?, ?, ?)",
                     (cursor, cursor, "https://status.example.com/i/1?token=T0K3N-S3CR3T", cursor))
    conn.close()
    store = Store.open(path)
    source = SourceConfig("tracker", "rss", url=feed_url)
    assert store.sync_sources([source]) == []  # the poll state is kept
    row = store.source_row("tracker")
    assert row is not None and (row["etag"], row["cursor"], row["last_ok_at"], row["polls"]) == (
        '"v1"', cursor, cursor, 3)
    assert poll(server, store, source, rss([(link, "Outage", then)])) == 0
    posts = store.database.rows("SELECT external_id, url FROM posts ORDER BY id")
    assert [r["url"] for r in posts] == [public_url(link), "https://x.example/?sortkey=date"]
    assert posts[0]["external_id"].startswith(public_url(link) + "#") and posts[1]["external_id"] == "guid-1"
    [incident] = store.database.rows("SELECT url FROM official_incidents")
    assert incident["url"] == "https://status.example.com/i/1?token=[redacted]"
    store.close()
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    assert b"S3CR3T" not in path.read_bytes()


def test_a_large_store_is_upgraded_a_batch_at_a_time_and_all_or_nothing(tmp_path: Path) -> None:
    # The upgrade kept every changed link of a column in memory for one UPDATE, about 230 bytes a post: 66 MB for
    # 300,000 posts whose links carry a ?passkey=, 550 MB at 2.5 M. It goes a batch at a time now, in the one
    # transaction the migration runner commits with its record, so a write failing at the last post (a full disk,
    # a kill) still leaves no post changed and the migration to do again.
    path = tmp_path / "old.sqlite"
    count = 10 * SCRUB_BATCH + 1
    at = iso(NOW)
    links = [f"https://tracker.example.org/details.php?id={n}&passkey=PK-S3CR3T-{n:08d}" for n in range(count)]
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        apply_migrations(conn, MIGRATIONS[:16])  # the schema before 0017_stored_links
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO posts (source, external_id, text, url, created_at, fetched_at) "
                         "VALUES ('tracker', ?1, 'down', ?1, ?2, ?2)", [(link, at) for link in links])
        conn.execute("COMMIT")
        conn.execute("CREATE TRIGGER refuse_last BEFORE UPDATE OF external_id ON posts "
                     f"WHEN old.id = {count} BEGIN SELECT RAISE(ABORT, 'refused'); END")
    conn.close()
    with pytest.raises(sqlite3.IntegrityError, match="refused"):
        Store.open(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM posts WHERE url LIKE '%S3CR3T%' AND external_id LIKE '%S3CR3T%'"
                            ).fetchone() == (count,)
        assert conn.execute("SELECT 1 FROM schema_migrations WHERE id = '0017_stored_links'").fetchone() is None
        conn.execute("DROP TRIGGER refuse_last")
    conn.close()
    tracemalloc.start()
    try:
        store = Store.open(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    rows = store.database.rows("SELECT url, external_id FROM posts ORDER BY id")
    store.close()
    assert [r["url"] for r in rows] == [public_url(link) for link in links]
    assert not any("S3CR3T" in r["external_id"] for r in rows)
    assert peak < 1_000_000, peak  # all at once: 2.3 MB

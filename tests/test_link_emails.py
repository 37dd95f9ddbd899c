"""A poster's e-mail address in a feed item's link or id (a mailing-list archive's ?from=, a Message-ID guid as git
send-email writes one, a mailto: guid, an Atom tag: id) is stored as "[email]", as in post text; and migration
0036_link_emails rewrites the links and ids stored before so, each to what a poll now gives, so that nothing is
stored twice. Real SQLite files and a real feed on 127.0.0.1."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fakeserver import FakeServer, Reply
from test_text_links import store_bytes

from miner.collectors import CollectSettings, Poller
from miner.config import ServiceConfig, SourceConfig
from miner.records import SourceState
from miner.store import Store
from miner.store.migrations import MIGRATIONS, apply_migrations
from miner.timeutil import iso
from miner.urls import link_id, stored_link

NOW = datetime.now(UTC).replace(microsecond=0)
MIGRATION = "0036_link_emails"
ADDRESSES = (b"jane.roe", b"john.q", b"jack.doe", b"jill%40", b"ann.lee")
# (guid or Atom id, link) of each entry, as the feeds below give them.
ENTRIES = [
    ("&lt;20261207.1234-1-ann.lee@example.com&gt;", "https://lists.example.org/msg?from=jane.roe@example.com&amp;n=1"),
    ("mailto:john.q@example.net?subject=MTN", "https://lists.example.org/u/jill%40example.org/2"),
    ("https://lists.example.org/msg?from=jane.roe@example.com&amp;n=3&amp;passkey=abc123def456", None),
    # Mastodon's link to a remote status names the account as "@name@host": a handle, kept (docs/schema.md).
    ("https://mastodon.example/@kim@other.example/4", "https://mastodon.example/@kim@other.example/4"),
]


def _feeds() -> tuple[bytes, bytes]:
    """The list archive's RSS feed and an Atom feed of one entry."""
    items = "".join(
        f"<item><title>MTN down {n}</title><author>jane.roe@example.com (Jane Roe)</author><description>no network"
        f"</description>{f'<link>{link}</link>' if link else ''}<guid isPermaLink=\"false\">{guid}</guid>"
        f"<pubDate>{(NOW - timedelta(minutes=n)).strftime('%a, %d %b %Y %H:%M:%S +0000')}</pubDate></item>"
        for n, (guid, link) in enumerate(ENTRIES))
    atom = (f"<entry><title>MTN down for me</title><id>tag:lists.example.org,2026:msg-jack.doe@example.org</id>"
            f"<updated>{iso(NOW)}</updated><author><name>Jack</name><email>jack.doe@example.org</email></author>"
            "<content>MTN no data</content></entry>")
    return (f'<?xml version="1.0"?><rss version="2.0"><channel><title>list</title>{items}</channel></rss>'.encode(),
            f'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>a</title><id>urn:a</id>'
            f"<updated>{iso(NOW)}</updated>{atom}</feed>".encode())


SOURCES = ("list", "atom")


def _poll(server: FakeServer, store: Store) -> int:
    """Poll both feeds into ``store``; the posts stored new."""
    rss, atom = _feeds()
    server.serve("/list.rss", Reply(200, rss, content_type="application/rss+xml"))
    server.serve("/list.atom", Reply(200, atom, content_type="application/atom+xml"))
    new = 0
    with Poller(CollectSettings(), [ServiceConfig("MTN")], hash_key=b"k") as poller:
        for name, path in zip(SOURCES, ("/list.rss", "/list.atom"), strict=True):
            result = poller.poll(SourceConfig(name, "rss", url=server.url + path), SourceState())
            new += store.save_fetch(name, result, NOW, NOW).posts_new
    return new


def test_a_posters_address_in_a_link_or_id_is_not_stored(tmp_path: Path, server: FakeServer) -> None:
    path = tmp_path / "miner.sqlite"
    store = Store.open(path)
    assert _poll(server, store) == 5
    rows = store.database.rows("SELECT external_id, url FROM posts ORDER BY source DESC, created_at DESC")
    assert [r["url"] for r in rows] == [
        "https://lists.example.org/msg?from=[email]&n=1", "https://lists.example.org/u/[email]/2",
        None, "https://mastodon.example/@kim@other.example/4", "tag:lists.example.org,2026:[email]"]
    assert rows[0]["external_id"].startswith("<[email]>#")
    assert rows[1]["external_id"].startswith("mailto:[email]?subject=MTN#")
    assert _poll(server, store) == 0  # the same ids again: nothing stored twice
    stored = store_bytes(store, path)
    for address in ADDRESSES:
        assert address not in stored, address
    assert b"@kim@other.example" in stored


def test_links_and_ids_stored_before_are_rewritten_as_a_poll_gives_them(tmp_path: Path, server: FakeServer) -> None:
    # A store at the schema before 0036, its posts as a poll stored them then: links with an address as written, an
    # id made of a link with a key as link_id made it (the key out, a hash after "#"), any other id as written.
    path = tmp_path / "old.sqlite"
    keyed = "https://lists.example.org/msg?from=jane.roe@example.com&n=3&passkey="
    tag = "tag:lists.example.org,2026:msg-jack.doe@example.org"
    rows = [("list", "<20261207.1234-1-ann.lee@example.com>", "https://lists.example.org/msg?from=jane.roe@example.com&n=1"),
            ("list", "mailto:john.q@example.net?subject=MTN", "https://lists.example.org/u/jill%40example.org/2"),
            ("list", f"{keyed}[redacted]#{link_id(keyed + 'abc123def456').rpartition('#')[2]}", None),
            ("list", ENTRIES[3][0], ENTRIES[3][0]), ("atom", tag, tag)]
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        apply_migrations(conn, [m for m in MIGRATIONS if m.id < MIGRATION])
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO posts (source, external_id, text, url, created_at, fetched_at) "
                         "VALUES (?, ?, 'MTN down', ?, ?, ?)",
                         [(*row, iso(NOW - timedelta(minutes=n)), iso(NOW)) for n, row in enumerate(rows)])
        conn.execute("COMMIT")
    conn.close()
    store = Store.open(path)
    after = store.database.rows("SELECT external_id, url FROM posts ORDER BY id")
    assert [r["external_id"] for r in after] == [link_id(rows[0][1]), link_id(rows[1][1]),
                                                 link_id(keyed + "abc123def456"), ENTRIES[3][0], link_id(tag)]
    assert [r["url"] for r in after] == [stored_link(url) for _, _, url in rows]
    assert _poll(server, store) == 0  # every entry found under the id it was upgraded to
    stored = store_bytes(store, path)
    for address in ADDRESSES:
        assert address not in stored, address

"""A private feed's key where `secret_parts` did not look: as a label of its URL's host, and percent-encoded in its
items' links otherwise than the URL writes it. Each test looks for the key in the store file's bytes.

The feed's server stands behind a proxy (the loopback one), so that a host holding a key needs no DNS.
"""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from fakeserver import FakeServer, Reply
from test_text_links import store_bytes

from miner.collectors import CollectSettings, Poller
from miner.config import SourceConfig
from miner.replay import Keeping, read_posts
from miner.store import Store
from miner.store.migrations import MIGRATIONS, apply_migrations
from miner.timeutil import iso
from miner.urls import link_id, secret_parts, stored_link

NOW = datetime.now(UTC).replace(microsecond=0)
HOST_KEY = "0123abcd4567ef89"
FEED_KEY = "Ab/Cd+Ef=Gh42xyzQ"  # a ?key= holding characters a link percent-encodes ("%2f", "%2b", "%3d")
FEED_URL = f"http://feed-{HOST_KEY}.invalid/private/rss"
# A CDN's host reads as a key too: a source whose URL is in feeds.toml keeps it.
PUBLIC_LINK = "https://d1a2b3c4d5e6f7.cloudfront.net/status/1"


def _leaks(data: bytes) -> list[str]:
    words = (HOST_KEY, HOST_KEY.upper(), "Gh42xyzQ", "Ab%2f", "Ab%2F", "Ab/Cd")
    return [word for word in words if word.encode() in data]


def _rss(links: list[str]) -> bytes:
    items = "".join(f"<item><title>WhatsApp down {n}</title><link>{link.replace('&', '&amp;')}</link>"
                    f"<pubDate>{format_datetime(NOW - timedelta(minutes=n))}</pubDate></item>"
                    for n, link in enumerate(links))
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>p</title>{items}</channel></rss>'.encode()


LINKS = ["/items/1", f"http://feed-{HOST_KEY}.invalid/items/2?ref={HOST_KEY}",
         f"http://FEED-{HOST_KEY.upper()}.invalid/items/3", "https://mirror.example/dl?id=4&k=Ab%2fCd%2bEf%3dGh42xyzQ",
         f"http://feed-{HOST_KEY}.invalid/dl?id=5&passkey=PK-5"]


def _poll(server: FakeServer, store: Store, monkeypatch: pytest.MonkeyPatch, links: list[str],
          url: str = f"{FEED_URL}?key={FEED_KEY}") -> int:
    server.serve("/private/rss", Reply(200, _rss(links), content_type="application/rss+xml"))
    monkeypatch.setenv("HTTP_PROXY", server.url)
    source = SourceConfig("private", "rss", url_env="FEED_URL")
    store.sync_sources([source])
    env = {"FEED_URL": url}
    with Poller(CollectSettings(connect_timeout=2.0), hash_key=b"k", environ=env) as poller:
        result = poller.poll(source, store.source_state(source.name))
    return store.save_fetch(source.name, result, NOW, NOW).posts_new


def _stored(store: Store) -> list[tuple[str, str]]:
    return [(r["external_id"], r["url"]) for r in store.database.rows("SELECT external_id, url FROM posts ORDER BY id")]


def test_links_and_ids_lose_a_key_in_the_host_and_keep_a_host() -> None:
    secrets = secret_parts(f"{FEED_URL}?key={FEED_KEY}")
    assert stored_link(f"http://feed-{HOST_KEY}.invalid/items/1?ref={HOST_KEY}", secrets) == (
        "http://_redacted.invalid/items/1?ref=[redacted]")
    assert stored_link(LINKS[3], secrets) == "https://mirror.example/dl?id=4&k=[redacted]"
    ids = [link_id(f"http://feed-{HOST_KEY}.invalid/items/{n}", secrets) for n in (1, 2)]
    assert ids[0].startswith("http://_redacted.invalid/items/1#") and ids[0] != ids[1]
    assert ids[0] == link_id(f"http://feed-{HOST_KEY}.invalid/items/1", secrets)  # the same at each poll
    assert stored_link(PUBLIC_LINK) == PUBLIC_LINK and link_id(PUBLIC_LINK) == PUBLIC_LINK


def test_a_feed_on_a_host_holding_its_key_stores_none_of_it_and_each_item_once(
        tmp_path: Path, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "miner.sqlite"
    store = Store.open(path)
    assert _poll(server, store, monkeypatch, LINKS) == len(LINKS)
    assert _poll(server, store, monkeypatch, LINKS) == 0
    stored = _stored(store)
    assert len({ident for ident, _ in stored}) == len(LINKS)
    assert [url for _, url in stored] == [
        "http://_redacted.invalid/items/1", "http://_redacted.invalid/items/2?ref=[redacted]",
        "http://_redacted.invalid/items/3", "https://mirror.example/dl?id=4&k=[redacted]",
        "http://_redacted.invalid/dl?id=5&passkey=[redacted]"]
    assert _leaks(store_bytes(store, path)) == []


def test_a_key_a_link_held_percent_encoded_is_taken_out_of_what_was_stored_before_at_the_next_poll(
        tmp_path: Path, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # The store had the link as the feed gave it ("%2f" where the URL has "/"): the scrub of the source's rows
    # looked for the key as written only, so its first poll stored the item a second time, the key left in the first.
    path = tmp_path / "miner.sqlite"
    store = Store.open(path)
    store.sync_sources([SourceConfig("private", "rss", url_env="FEED_URL")])
    with store.database.transaction() as conn:
        conn.execute("INSERT INTO posts (source, external_id, text, url, created_at, fetched_at) "
                     "VALUES ('private', ?, 'WhatsApp down 3', ?, ?, ?)", (LINKS[3], LINKS[3], iso(NOW), iso(NOW)))
    assert _poll(server, store, monkeypatch, [LINKS[3]]) == 0
    assert _stored(store) == [(f"{stored_link(LINKS[3], secret_parts(f'{FEED_URL}?key={FEED_KEY}'))}#"
                               f"{hashlib.sha256(LINKS[3].encode()).hexdigest()[:16]}",
                               "https://mirror.example/dl?id=4&k=[redacted]")]
    assert _leaks(store_bytes(store, path)) == []


def _sha(link: str) -> str:
    return hashlib.sha256(link.encode()).hexdigest()[:16]


def _old_store(path: Path, old: list[tuple[str, str]]) -> None:
    """A store at the schema before 0030 with a source "private" whose url is in the environment, holding posts of
    ``old``'s ids and links, and a source "public" holding one whose host reads as a key."""
    at = iso(NOW)
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        apply_migrations(conn, [m for m in MIGRATIONS if m.id < "0030"])
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO sources (name, type, url) VALUES (?, 'rss', ?)",
                         [("private", "$FEED_URL"), ("public", "https://news.example/rss")])
        conn.executemany("INSERT INTO posts (source, external_id, text, url, created_at, fetched_at) "
                         "VALUES (?, ?, 'WhatsApp down', ?, ?, ?)",
                         [*(("private", ident, url, at, at) for ident, url in old),
                          ("public", PUBLIC_LINK, PUBLIC_LINK, at, at)])
        conn.execute("COMMIT")
    conn.close()


def test_a_store_from_before_is_upgraded_without_host_keys_and_polled_without_duplicates(
        tmp_path: Path, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # The links and ids stored of the feed before: its host's label as written, and the key percent-encoded
    # otherwise than its URL writes it, the rest as now.
    host = f"http://feed-{HOST_KEY}.invalid"
    old = [(f"{host}/items/1", f"{host}/items/1"), (LINKS[2], LINKS[2]), (LINKS[3], LINKS[3]),
           (f"{host}/dl?id=5&passkey=[redacted]#{_sha(LINKS[4])}", f"{host}/dl?id=5&passkey=[redacted]")]
    path = tmp_path / "old.sqlite"
    _old_store(path, old)
    # The upgrade takes a label that reads as a key out of what a source whose url is in the environment stored.
    store = Store.open(path)
    assert [w for w in _leaks(store_bytes(store, path)) if w.lower() == HOST_KEY] == []
    store = Store.open(path)
    assert _stored(store)[-1] == (PUBLIC_LINK, PUBLIC_LINK)
    # The feed's first poll (its key in the environment, never in the store) takes the rest out, the encoded key,
    # and finds each item stored under the id it gives it.
    assert _poll(server, store, monkeypatch, [LINKS[0], *LINKS[2:]]) == 0
    assert _poll(server, store, monkeypatch, LINKS) == 1
    assert _leaks(store_bytes(store, path)) == []


def test_a_feed_whose_url_holds_no_key_it_reads_finds_what_the_upgrade_rewrote(
        tmp_path: Path, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # The URL's key is too short to be read as one, so its poll had no secrets, and kept a host label that reads as
    # a key, which the upgrade (no URL at hand) took out: the item was stored again under its old id.
    path = tmp_path / "old.sqlite"
    _old_store(path, [(PUBLIC_LINK, PUBLIC_LINK)])
    store = Store.open(path)
    assert _poll(server, store, monkeypatch, [PUBLIC_LINK], url="http://feeds.invalid/private/rss?key=s3cr3t") == 0
    assert [url for _, url in _stored(store)] == ["https://_redacted.cloudfront.net/status/1", PUBLIC_LINK]


def test_status_feed_incidents_and_replayed_posts_of_such_a_source_lose_the_label_as_a_poll_does(
        tmp_path: Path, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    atom = ('<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>s</title><id>s</id>'
            f"<updated>2026-11-27T10:00:00Z</updated><entry><title>Degraded API</title><id>{PUBLIC_LINK}</id>"
            f'<link href="{PUBLIC_LINK}"/><updated>2026-11-27T10:00:00Z</updated>'
            "<content>Resolved - fixed</content></entry></feed>").encode()
    server.serve("/history.atom", Reply(200, atom, content_type="application/atom+xml"))
    monkeypatch.setenv("HTTP_PROXY", server.url)
    source = SourceConfig("status", "status_feed", url_env="FEED_URL", services=("GitHub",))
    with Poller(CollectSettings(), hash_key=b"k", environ={"FEED_URL": "http://status.invalid/history.atom"}) as poller:
        [incident] = poller.poll(source).incidents
    assert incident.url == "https://_redacted.cloudfront.net/status/1"
    assert incident.external_id == f"{incident.url}#{hashlib.sha256(PUBLIC_LINK.encode()).hexdigest()[:16]}"
    capture = tmp_path / "posts.jsonl"
    capture.write_text(f'{{"id": "{PUBLIC_LINK}", "source": "private", "text": "WhatsApp down", '
                       f'"created_at": "2026-11-27T10:00:00Z", "url": "{PUBLIC_LINK}"}}\n', encoding="utf-8")
    [post] = read_posts(capture, Keeping(from_env=frozenset({"private"})))
    assert (post.external_id, post.url) == (incident.external_id, incident.url)

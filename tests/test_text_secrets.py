"""The text of a `url_env` source's items (an RSS description, a status page's entry) quoting the source's key: a
link to its host holding the key as a label in another case, the feed's own URL with its ``?key=``, the key alone,
as written or percent-encoded. The store keeps the text without it, as it keeps the items' links and ids. Each test
polls a real recorded feed, the key written into an entry, from a server on 127.0.0.1 behind the loopback proxy (so
that a host holding a key needs no DNS), and looks for the key in the store file's bytes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fakeserver import FakeServer, Reply
from test_text_links import store_bytes

from miner.collectors import CollectSettings, Poller
from miner.config import SourceConfig
from miner.records import FetchResult
from miner.replay import Keeping, read_posts
from miner.store import Store
from miner.timeutil import iso
from miner.urls import secret_parts

NOW = datetime.now(UTC).replace(microsecond=0)

HOST_KEY = "0123abcd4567ef89"
FEED_KEY = "Ab/Cd+Ef=Gh42xyzQ"  # a ?key= holding characters a link percent-encodes
ENCODED_KEY = "Ab%2FCd%2BEf%3DGh42xyzQ"
FEED_URL = f"http://feed-{HOST_KEY}.invalid/history.rss?key={ENCODED_KEY}"
# What an entry of the feed says of it: its host in another case, its own URL, the key alone as written and encoded.
QUOTED = (f"Hook moved to https://FEED-{HOST_KEY.upper()}.invalid/hooks/1 (was {FEED_URL}); "
          f"old key {FEED_KEY}, escaped {ENCODED_KEY.replace('%2F', '%2f')}")


def _leaks(data: bytes) -> list[str]:
    # Every form of either key holds one of these: the host's in any case, the query's end as written.
    return [word for word, found in ((HOST_KEY, HOST_KEY.encode() in data.lower()), ("Gh42xyzQ", b"Gh42xyzQ" in data))
            if found]


REDACTED_QUOTE = ("Hook moved to https://[redacted].invalid/hooks/1 (was http://[redacted].invalid/history.rss?"
                  "key=[redacted]); old key [redacted], escaped [redacted]")


def _feed(server: FakeServer, *, title: str = "Elevated error rates") -> bytes:
    """Parse's recorded history feed, its first entry's text (and title) quoting the key."""
    real = server.fixture_bytes("status/parse_status_history.rss").decode("utf-8")
    body = QUOTED.replace("&", "&amp;amp;")  # the description is HTML, escaped once in the XML
    first = "Resolved&lt;/strong&gt; - We have restored"
    assert real.count(first) == 1 and real.index("<title>Elevated error rates</title>") < real.index(first)
    real = real.replace(first, f"Resolved&lt;/strong&gt; - {body}. We have restored")
    return real.replace("<title>Elevated error rates</title>", f"<title>{title}</title>", 1).encode("utf-8")


def _poll(server: FakeServer, store: Store, monkeypatch: pytest.MonkeyPatch, source: SourceConfig,
          feed: bytes) -> FetchResult:
    server.serve("/history.rss", Reply(200, feed, content_type="application/rss+xml"))
    monkeypatch.setenv("HTTP_PROXY", server.url)
    store.sync_sources([source])
    with Poller(CollectSettings(connect_timeout=2.0), hash_key=b"k", environ={"FEED_URL": FEED_URL}) as poller:
        result = poller.poll(source, store.source_state(source.name))
    store.save_fetch(source.name, result, NOW, NOW)
    return result


def test_a_url_env_feeds_post_text_is_stored_without_its_key(
        tmp_path: Path, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "miner.sqlite"
    store = Store.open(path)
    result = _poll(server, store, monkeypatch, SourceConfig("parse", "rss", url_env="FEED_URL"), _feed(server))
    [quoting] = [post.text for post in result.posts if "Hook moved" in post.text]
    assert f"{REDACTED_QUOTE}. We have restored" in quoting
    assert _leaks(store_bytes(store, path)) == []


def test_a_url_env_status_feeds_incident_title_is_stored_without_its_key(
        tmp_path: Path, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "miner.sqlite"
    store = Store.open(path)
    source = SourceConfig("parse", "status_feed", url_env="FEED_URL", services=("Parse",))
    result = _poll(server, store, monkeypatch, source, _feed(server, title=f"Webhooks to {HOST_KEY.upper()} failing"))
    assert result.incidents[0].title == "Webhooks to [redacted] failing"
    assert _leaks(store_bytes(store, path)) == []


def test_a_key_in_texts_and_titles_stored_before_goes_at_the_next_poll(
        tmp_path: Path, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # Stored by a poll before the text was kept without the key: the first poll of the source (its key in the
    # environment, never in the store) takes it out of every text and title the source stored, not of another's.
    path = tmp_path / "miner.sqlite"
    store = Store.open(path)
    store.sync_sources([SourceConfig("parse", "rss", url_env="FEED_URL"),
                        SourceConfig("other", "rss", url="http://other.invalid/rss")])
    with store.database.transaction() as conn:
        conn.executemany("INSERT INTO posts (source, external_id, text, created_at, fetched_at) VALUES (?, ?, ?, ?, ?)",
                         [("parse", "old-1", f"API down. {QUOTED}", iso(NOW), iso(NOW)),
                          ("other", "old-2", f"API down. key {HOST_KEY}", iso(NOW), iso(NOW))])
        conn.execute("INSERT INTO official_incidents (source, external_id, title, status, started_at, updated_at, "
                     "first_seen_at) VALUES ('parse', 'old-3', ?, 'resolved', ?, ?, ?)",
                     (f"Hook {HOST_KEY.upper()} down", iso(NOW), iso(NOW), iso(NOW)))
    _poll(server, store, monkeypatch, SourceConfig("parse", "rss", url_env="FEED_URL"), _feed(server))
    texts = {r["external_id"]: r["text"] for r in store.database.rows("SELECT external_id, text FROM posts")}
    assert texts["old-1"] == f"API down. {REDACTED_QUOTE}"
    assert texts["old-2"] == f"API down. key {HOST_KEY}"  # another source's text: not this key's to take
    assert store.database.one("SELECT title FROM official_incidents")["title"] == "Hook [redacted] down"
    with store.database.transaction() as conn:
        conn.execute("DELETE FROM posts WHERE source = 'other'")
    assert _leaks(store_bytes(store, path)) == []


def test_a_replayed_post_of_such_a_source_is_kept_without_its_key_as_a_polled_one(tmp_path: Path) -> None:
    capture = tmp_path / "posts.jsonl"
    capture.write_text(json.dumps({"id": "1", "source": "parse", "text": f"API down. {QUOTED}",
                                   "created_at": "2026-11-27T10:00:00Z"}) + "\n", encoding="utf-8")
    [post] = read_posts(capture, Keeping(secrets={"parse": secret_parts(FEED_URL)}, from_env=frozenset({"parse"})))
    assert post.text == f"API down. {REDACTED_QUOTE}"

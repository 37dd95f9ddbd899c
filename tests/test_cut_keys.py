"""A `url_env` source's post text cut short inside the source's key: what is left of the key at the text's end goes
too, as ``[redacted]``, in a text the source sent cut (a summary, an excerpt) and in one the store cut at
max_text_chars before it took the key out of texts, which the source's first poll after the upgrade cleans. Only at
the end, and only from 4 characters of the key's token on (`miner.cut_keys`).
"""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fakeserver import FakeServer
from test_text_links import store_bytes
from test_text_secrets import ENCODED_KEY, FEED_URL, HOST_KEY, _poll

from miner.collectors.normalise import post_text
from miner.config import SourceConfig
from miner.store import Store
from miner.store.migrations import MIGRATIONS, apply_migrations
from miner.timeutil import iso
from miner.urls import secret_parts

NOW = datetime.now(UTC).replace(microsecond=0)
R = "[redacted]"
SOURCE = SourceConfig("parse", "rss", url_env="FEED_URL")

# An entry's text as its source sent it, cut inside the key (the feed's host's label in another case, the ?key=
# percent-encoded, a cut escape), and as the store keeps it.
CUT = [
    ("Hook moved to https://FEED-0123ABCD45…", f"Hook moved to https://{R}…"),
    (f"was {FEED_URL[:-9]}...", f"was http://{R}.invalid/history.rss?key={R}..."),
    ("old key Ab%2FCd%2 [&#8230;]", f"old key {R} […]"),
    (f"key {HOST_KEY[:4]}", f"key {R}"),
]
# Kept: a start too short to tell (3 characters), the words before a key's token ("feed-"), one not at the end.
KEPT = ["key 012…", "see our feed…", "moved from feed-…", f"key {HOST_KEY[:8]} rotated, see the hook…"]


def _entries(server: FakeServer, bodies: list[str]) -> bytes:
    """Parse's recorded history feed, its first items' descriptions replaced with ``bodies`` (plain text)."""
    feed = server.fixture_bytes("status/parse_status_history.rss").decode("utf-8")
    found = iter(["Parse Status - Incident History", *bodies])  # the channel's own description first

    def description(match: re.Match[str]) -> str:
        body = next(found, None)
        return match.group() if body is None else body.replace("&", "&amp;").replace("<", "&lt;")

    replaced = re.sub(r"(?s)(?<=<description>).*?(?=</description>)", description, feed)
    assert next(found, None) is None
    return replaced.encode("utf-8")


def test_a_text_its_source_cut_inside_the_key_is_stored_without_the_keys_start(
        tmp_path: Path, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "miner.sqlite"
    store = Store.open(path)
    bodies = [written for written, _ in CUT] + KEPT
    result = _poll(server, store, monkeypatch, SOURCE, _entries(server, bodies))
    texts = [post.text for post in result.posts]
    for written, stored in CUT:
        assert [text for text in texts if text.endswith(stored)], (written, texts)
    for kept in KEPT:
        assert [text for text in texts if text.endswith(f". {kept}")], (kept, texts)
    data = store_bytes(store, path).lower()
    assert HOST_KEY[:10].encode() not in data and b"ab%2fcd%2" not in data and b"?key=ab" not in data


def test_a_text_cut_by_the_store_never_held_the_keys_start() -> None:
    # The store's own cut comes after the key is taken out: at each length it leaves a "[redacted]" or a piece of
    # that, never of the key; a start the source left at the end goes whatever the length.
    secrets = secret_parts(FEED_URL)
    text = f"Webhooks failing, moved to https://feed-{HOST_KEY}.invalid/x"
    for limit in range(200, 200 + len(text) + 2):
        stored = post_text("x" * 190, text, limit, plain=True, secrets=secrets)
        assert HOST_KEY[:4] not in stored.lower()
    assert post_text("Hook", f"moved to https://feed-{HOST_KEY[:6]}…", 200, plain=True, secrets=secrets) == (
        f"Hook. moved to https://{R}…")


def _old_store(path: Path, texts: list[tuple[str, str]]) -> None:
    """A store at the schema before 0031 (the release before the fix), holding posts of ``texts`` (source, text)."""
    at = iso(NOW)
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        apply_migrations(conn, [m for m in MIGRATIONS if m.id < "0031"])
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO sources (name, type, url) VALUES (?, 'rss', ?)",
                         [("parse", "$FEED_URL"), ("other", "https://other.example/rss")])
        conn.executemany("INSERT INTO posts (source, external_id, text, created_at, fetched_at) "
                         "VALUES (?, ?, ?, ?, ?)",
                         [(source, f"old-{n}", text, at, at) for n, (source, text) in enumerate(texts)])
        conn.execute("COMMIT")
    conn.close()


def test_texts_the_store_cut_inside_the_key_before_lose_its_start_at_the_first_poll(
        tmp_path: Path, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # Stored before the texts were kept without the key, cut at max_text_chars inside it ("…" after it), more than a
    # batch of the clean-up's: the upgrade cannot tell (the key is in the environment only), the source's first poll
    # takes out what is left of the key at each text's end, and nothing of another source's or elsewhere.
    filler = "Webhooks failing since 09:00 " * 130
    cut = [(f"{filler}moved to https://feed-{HOST_KEY[:11]}…", f"{filler}moved to https://{R}…"),
           (f"{filler}see ?key={ENCODED_KEY[:7]}…", f"{filler}see ?key={R}…"),
           (f"{filler}old key {HOST_KEY[:4].upper()}…", f"{filler}old key {R}…")]
    kept = [f"{filler}key {HOST_KEY[:3]}…", f"{filler}see our feed…", f"key {HOST_KEY[:6]} then more words"]
    texts = [("parse", (cut + [(k, k) for k in kept])[n % 6][0]) for n in range(2 * 1000 + 6)]
    texts.append(("other", cut[0][0]))  # another source's text: not this key's to take
    path = tmp_path / "old.sqlite"
    _old_store(path, texts)
    store = Store.open(path)
    _poll(server, store, monkeypatch, SOURCE, _entries(server, ["Investigating"]))
    stored = {r["external_id"]: r["text"] for r in store.database.rows("SELECT external_id, text FROM posts")}
    wanted = dict(cut) | {k: k for k in kept}
    for n, (source, text) in enumerate(texts):
        assert stored[f"old-{n}"] == (wanted[text] if source == "parse" else text)

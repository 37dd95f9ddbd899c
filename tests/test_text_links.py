"""Links written inside a post's text, as the store keeps them: without the poster's credentials (a ?token=, a
password-reset or magic-login link, a user:password@), with their host and path and the rest of the text as written,
for every collector and the replay, and in the texts a store from before holds."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fakeserver import FakeServer, Reply

from miner.classify.tokenize import clean
from miner.cli import main
from miner.collectors import CollectSettings, Poller
from miner.config import ServiceConfig, SourceConfig
from miner.store import Store
from miner.store.link_scrub import SCRUB_BATCH
from miner.store.migrations import MIGRATIONS, apply_migrations
from miner.text_links import public_text_links
from miner.timeutil import iso

NOW = datetime.now(UTC).replace(microsecond=0)
TOKEN = "f3a9c2e1d4b5a6c7e8f9"  # a password-reset token, as a site mails one
R = "[redacted]"

# What a poster writes, and what the store keeps of it.
LINKS = [
    ("status page is down https://example.com/dash?token=abc123def456&x=1",
     f"status page is down https://example.com/dash?token={R}&x=1"),
    ("logged in as https://ops:hunter2@grafana.example.com/d/api?orgId=1 and nothing loads",
     "logged in as https://grafana.example.com/d/api?orgId=1 and nothing loads"),
    (f"reset link never works: https://example.com/accounts/reset/MTIz/c4w8ah-{TOKEN}/, help",
     f"reset link never works: https://example.com/accounts/reset/MTIz/{R}/, help"),
    ("magic link https://app.example.com/login/magic/9b2e7c1d-4a5f-4c3b-8d9e-0123456789ab expired",
     f"magic link https://app.example.com/login/magic/{R} expired"),
    ("OAuth back to https://app.example/cb#access_token=ya29.a0AfH6SMB&token_type=Bearer fails",
     f"OAuth back to https://app.example/cb#access_token={R}&token_type=Bearer fails"),
    ("reset at https://app.example/#/reset?token=abc123&mail=1 fails",
     f"reset at https://app.example/#/reset?token={R}&mail=1 fails"),
    ("db down? postgres://admin:S3cr3t@db.internal:5432/prod refuses",
     "db down? postgres://db.internal:5432/prod refuses"),
    ("www.example.com/reset?Token=abc12345.", f"www.example.com/reset?Token={R}."),
    ("login loops https://sso.example/?next=https://u:p4ss@app.example/home&x=1",
     "login loops https://sso.example/?next=https://app.example/home&x=1"),
    ("www.sso.example/?next=https://u:p4ss@app.example/&sid=1d2", f"www.sso.example/?next=https://app.example/&sid={R}"),
    # A link percent-encoded in a value (a redirect's parameter), its login and keys read decoded; encoded twice (a
    # redirect's redirect), the escapes of escapes read as a token's when stored again: redacted whole.
    ("login loops https://sso.example/?u=https%3A%2F%2Fops%3Ahunter2%40grafana.example%2F fails",
     "login loops https://sso.example/?u=https%3A%2F%2Fgrafana.example%2F fails"),
    ("https://sso.example/cb?next=https%3A//u%3Ap4ss%40app.example/home%3Ftoken%3Dabc123%26x%3D1&x=1",
     f"https://sso.example/cb?next=https%3A%2F%2Fapp.example%2Fhome%3Ftoken%3D{R}%26x%3D1&x=1"),
    ("https://sso.example/?next=https%253A%252F%252Fops%253Ap4ss%2540grafana.example.com%252F&x=1",
     f"https://sso.example/?next={R}&x=1"),
    # So is one percent-encoded in a path segment, as a redirect's path carries one (one without a credential kept).
    ("login loops https://l.example/redirect/https%3A%2F%2Fops%3Ahunter2%40grafana.example%2Fd%3Ftoken%3Dabc123/x, "
     "https://web.archive.org/web/2020/https%3A%2F%2Fnews.example%2Fa%20b/report%20(2).pdf",
     f"login loops https://l.example/redirect/https%3A%2F%2Fgrafana.example%2Fd%3Ftoken%3D{R}/x, "
     "https://web.archive.org/web/2020/https%3A%2F%2Fnews.example%2Fa%20b/report%20(2).pdf"),
    ("https://x.example/r/https%253A%252F%252Fops%253Ap4ss%2540grafana.example.com%252F/x", f"https://x.example/r/{R}/x"),
    # Pairs separated by ";" (HTML 4's other separator): read one by one, as those separated by "&" are.
    ("https://x.example/a?x=1;password=hunter2;lang=en", f"https://x.example/a?x=1;password={R};lang=en"),
    ("https://x.example/dl?token=abc123def456;lang=en&y=2;sig=ab;cd", f"https://x.example/dl?token={R};lang=en&y=2;sig={R}"),
    # Trailing punctuation and brackets: the sentence's, kept where it was.
    ("(see https://en.wikipedia.org/wiki/Foo_(bar)?api_key=K3Y)!", f"(see https://en.wikipedia.org/wiki/Foo_(bar)?api_key={R})!"),
    ("[docs](https://x.example/?sig=abc), 'https://x.example/?auth=abc'; \"https://x.example/?pwd=a\"",
     f"[docs](https://x.example/?sig={R}), 'https://x.example/?auth={R}'; \"https://x.example/?pwd={R}\""),
    ("<https://x.example/?session=s1>…", f"<https://x.example/?session={R}>…"),
    # Other scripts' sentence punctuation and closing quotes after a link: the sentence's, as a Latin full stop is.
    ("انظر https://x.example/?token=abc123، شكرا", f"انظر https://x.example/?token={R}، شكرا"),
    ("هل يعمل https://x.example/login?sig=abc؟", f"هل يعمل https://x.example/login?sig={R}؟"),
    ("लॉगिन नहीं https://x.example/reset?token=abc123। कृपया", f"लॉगिन नहीं https://x.example/reset?token={R}। कृपया"),
    ("ጠፍቷል https://x.example/?token=abc።", f"ጠፍቷል https://x.example/?token={R}።"),
    ("«https://x.example/?auth=abc», “https://x.example/?pwd=abc”", f"«https://x.example/?auth={R}», "
     f"“https://x.example/?pwd={R}”"),
    # A curly closing quote glued to the next word ends the link: the word is not read as part of a token.
    ("“Putin mulls 4th term https://pic.twitter.com/0DVs6mGDGd”Putin plans https://x.example/?token=abc”Putin",
     f"“Putin mulls 4th term https://pic.twitter.com/0DVs6mGDGd”Putin plans https://x.example/?token={R}”Putin"),
    # Unicode: an IDN host and path, a CJK text that writes no space around a link, a full-width stop after it.
    ("见https://例え.jp/パス?token=秘密。谢谢", f"见https://例え.jp/パス?token={R}。谢谢"),
    ("Störung: https://bücher.example/ß?passwort=1&passkey=Ö", f"Störung: https://bücher.example/ß?passwort=1&passkey={R}"),
    # IPv6 hosts, one a URL parser refuses (its bracket unclosed): split as written all the same.
    ("http://[2001:db8::1]:8080/x?token=abc, http://[::1/x?token=a", f"http://[2001:db8::1]:8080/x?token={R}, "
     f"http://[::1/x?token={R}"),
    # A cut text's end, after the redacted value's start.
    ("down https://x.example/dl?id=1&passkey=PK-S3CR…", f"down https://x.example/dl?id=1&passkey={R}…"),
    # A tracking id that reads as a token; an already stored text stays as it is.
    ("pic https://www.instagram.com/p/BrnxounnYuL/?igshid=g75nhausw6s9 …",
     f"pic https://www.instagram.com/p/BrnxounnYuL/?igshid={R} …"),
    (f"https://x.example/?token={R}&id=[1]", f"https://x.example/?token={R}&id=[1]"),
]

# Links and text that hold nothing that may be a credential: kept to the character.
KEPT = [
    "Cloudflare 502 since 13:55 UTC, https://www.cloudflarestatus.com/incidents/x1y2z3 says nothing.",
    "https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=42s and https://x.example/?sortkey=date&monkey=1",
    "https://support.microsoft.com/windows-11-23h2-update-kb5031455 broke it",  # a slug, not a token
    "see https://news.example/a?u=http%3A%2F%2Fcommunitypress.example.com%2Farticle%2F20120824%2FNEWS01",
    "mail jane@example.org, call 0722 123 456, @bob says u/ann too; a?token=b, abc.www.x?token=1",
    "no links at all: 10:30 UTC, error 503 (gateway), v2.3.1, see status.example.com",
    "https://", "www.", "https://?token=", "postgres://db.internal:5432/prod",
]


@pytest.mark.parametrize(("written", "stored"), LINKS)
def test_a_link_in_a_post_keeps_no_credential_and_the_rest_of_the_text(written: str, stored: str) -> None:
    assert public_text_links(written) == stored
    assert public_text_links(stored) == stored  # a stored text is stored again as it is (a migrated one, a replay)
    if "postgres://" not in written:  # the classifier reads only http(s) and "www." links as "http host"
        assert clean(stored) == clean(written)  # as it reads them before they are stored: without their login


@pytest.mark.parametrize("text", KEPT)
def test_text_without_a_credential_in_a_link_is_kept_as_written(text: str) -> None:
    assert public_text_links(text) == text


def test_long_texts_and_many_links_are_read_whole() -> None:
    long_link = "https://x.example/" + "a/" * 4980 + f"?token={TOKEN}."
    assert public_text_links(long_link) == long_link.replace(TOKEN, R)
    many = " ".join(f"({n}) https://h{n}.example/p?token={TOKEN}{n}, see" for n in range(300))
    assert public_text_links(many) == " ".join(f"({n}) https://h{n}.example/p?token={R}, see" for n in range(300))
    # Texts made to be slow to read (read in a few milliseconds each: see the report of this change).
    for hostile in ("https://x.example/a" + ")" * 9980, "https://x.example/" + "(" * 9982, "https://" * 1250,
                    "https://a.example/?next=" * 416, "https://x.example/" + "%" * 9982, "www." * 2500,
                    "a" * 10_000 + "://"):
        assert len(public_text_links(hostile)) >= len(hostile) - 9982


def _stored_texts(store: Store) -> list[str]:
    return [r["text"] for r in store.database.rows("SELECT text FROM posts ORDER BY created_at, id")]


def _save(store: Store, source: SourceConfig, env: dict[str, str] | None = None) -> None:
    store.sync_sources([source])
    with Poller(CollectSettings(), [ServiceConfig("Signal"), ServiceConfig("Cloudflare")], hash_key=b"k",
                environ=env or {}) as poller:
        result = poller.poll(source, store.source_state(source.name))
    assert store.save_fetch(source.name, result, NOW, NOW).posts_new >= 1


def store_bytes(store: Store, path: Path) -> bytes:
    """The bytes of the store at ``path`` (its WAL too), ``store`` closed, its free pages vacuumed away."""
    store.close()
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def test_links_in_polled_posts_are_stored_without_credentials(tmp_path: Path, server: FakeServer) -> None:
    store = Store.open(tmp_path / "miner.sqlite")
    # Mastodon writes a link as its text in three spans, the invisible ones holding the scheme and the query.
    timeline: list[dict[str, Any]] = json.loads(server.fixture_bytes("mastodon/tag_timeline.json"))[:1]
    timeline[0]["content"] = (
        '<p>Signal web login link dead: <a href="https://signal.example/login?token=abc123def456&amp;x=1" '
        'rel="nofollow noopener" target="_blank"><span class="invisible">https://</span><span class="ellipsis">'
        'signal.example/login</span><span class="invisible">?token=abc123def456&amp;x=1</span></a> (again).</p>')
    server.serve("/api/v1/timelines/tag/outage", Reply(200, json.dumps(timeline).encode(),
                                                       content_type="application/json"))
    _save(store, SourceConfig("masto", "mastodon", url=server.url, query="#outage"))
    # Hacker News escapes a comment's HTML: "&#x2F;" and "&amp;" in a link written as text.
    hits = json.loads(server.fixture_bytes("hackernews/search_by_date.json"))
    comment = next(hit for hit in hits["hits"] if hit.get("comment_text"))
    comment["comment_text"] = (f"Cloudflare 502 here too.<p>Our reset mail: https:&#x2F;&#x2F;ops:pw@auth.example.com"
                               f"&#x2F;reset&#x2F;MTIz&#x2F;c4w8ah-{TOKEN}&#x2F;?next=&#x2F;&amp;sid=5e55&#x2F;")
    hits["hits"] = [comment]
    server.serve("/api/v1/search_by_date", Reply(200, json.dumps(hits).encode(), content_type="application/json"))
    _save(store, SourceConfig("hn", "hackernews", url=server.url, query="outage"))
    # A feed's item: its link a <a>'s text in the description.
    server.serve("/feed.rss", Reply(200, (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item><title>Signal down?</title>'
        "<description>&lt;p&gt;Shared my screen: &lt;a href='x'&gt;https://docs.example.com/d/"
        "1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdEf/edit?usp=sharing&amp;amp;api_key=K3Y&lt;/a&gt;.&lt;/p&gt;"
        f"</description><guid>g1</guid><pubDate>{NOW.strftime('%a, %d %b %Y %H:%M:%S GMT')}</pubDate></item>"
        "</channel></rss>").encode(), content_type="application/rss+xml"))
    _save(store, SourceConfig("feed", "rss", url=f"{server.url}/feed.rss"))
    texts = _stored_texts(store)
    assert f"Signal web login link dead: https://signal.example/login?token={R}&x=1 (again)." in texts
    assert f"Cloudflare 502 here too. Our reset mail: https://auth.example.com/reset/MTIz/{R}/?next=/&sid=" \
           f"{R}" in texts
    assert f"Signal down? Shared my screen: https://docs.example.com/d/{R}/edit?usp=sharing&api_key={R}." in texts
    stored = store_bytes(store, tmp_path / "miner.sqlite")
    for secret in (b"abc123def456", TOKEN.encode(), b"ops:pw", b"5e55", b"1AbCdEfGh", b"K3Y"):
        assert secret not in stored


def test_a_replayed_post_keeps_no_credential_in_its_links(tmp_path: Path, runner: CliRunner) -> None:
    capture = tmp_path / "posts.jsonl"
    capture.write_text("".join(json.dumps({"id": str(n), "text": written, "created_at": f"2026-12-01T10:{n:02d}:00Z",
                                           "source": "feed"}) + "\n" for n, (written, _) in enumerate(LINKS)),
                       encoding="utf-8")
    result = runner.invoke(main, ["--db", str(tmp_path / "r.sqlite"), "replay", str(capture), "--out",
                                  str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(tmp_path / "r.sqlite") as conn:
        texts = [row[0] for row in conn.execute("SELECT text FROM posts ORDER BY created_at")]
    conn.close()
    # As a collector stores them: the link's user name read as no e-mail address, the rest kept.
    assert texts == [stored for _, stored in LINKS]


def upgraded_with_texts(path: Path, migration: str, texts: list[str], at: str) -> Store:
    """The store at ``path``, made at the schema before ``migration`` with a post of each of ``texts`` (created and
    fetched ``at``), then opened: upgraded."""
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        apply_migrations(conn, [m for m in MIGRATIONS if m.id < migration])
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO posts (source, external_id, text, created_at, fetched_at) "
                         "VALUES ('feed', ?, ?, ?, ?)", [(str(n), text, at, at) for n, text in enumerate(texts)])
        conn.execute("COMMIT")
    conn.close()
    return Store.open(path)


def rewritten_by(path: Path, migration: str, changed: dict[str, str], kept: list[str]) -> bytes:
    """The bytes of a store at ``path`` upgraded by ``migration`` (`store_bytes`), made before it with the texts
    ``changed`` rewrites and ``kept``, each again and again over two batches and one more post: each text is checked
    to be rewritten as ``changed`` says, or left as it was."""
    written = [*changed, *kept]
    texts = [written[n % len(written)] for n in range(2 * SCRUB_BATCH + 1)]
    store = upgraded_with_texts(path, migration, texts, iso(NOW))
    assert [r["text"] for r in store.database.rows("SELECT text FROM posts ORDER BY id")] == [
        changed.get(text, text) for text in texts]
    return store_bytes(store, path)


def test_a_store_from_before_keeps_no_credential_in_its_texts(tmp_path: Path) -> None:
    # Texts stored before kept the links written in them as written: the upgrade rewrites them, a batch at a time,
    # and leaves every other text (and every text of no link, never read) as it was.
    path = tmp_path / "old.sqlite"
    at = iso(NOW - timedelta(hours=1))
    texts = [LINKS[n % len(LINKS)][0] if n % 3 else KEPT[n % len(KEPT)] for n in range(2 * SCRUB_BATCH + 1)]
    store = upgraded_with_texts(path, "0022_text_links", texts, at)
    expected = {written: stored for written, stored in LINKS}
    assert _stored_texts(store) == [expected.get(text, text) for text in texts]
    stored = store_bytes(store, path)
    for secret in (b"abc123def456", TOKEN.encode(), b"hunter2", b"S3cr3t", b"ya29", b"p4ss"):
        assert secret not in stored

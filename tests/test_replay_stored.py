"""A replayed post is stored as a collector stores the same item: text folded and cut, contacts and people's handles
replaced, its link without credentials, its author hashed. A capture of real posts is what a poll would have read."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from click.testing import CliRunner
from fakeserver import FakeServer, Reply

from miner.cli import main

TEXTS = {
    "crlf": "MTN down again\r\nno data\r\n\r\nsince noon\x07 \u202eevil\u202c\u200b",
    "contacts": "MTN is out, mail me at jane.doe@example.org or call +256 772 123 456",
    "handles": "@somebody @other_person MTN is down, @WhatsAppSupport help, ask u/jane_doe",
    "long": "MTN down " + "x" * 20_000,
    "plain": "MTN <b>not a tag</b> & no entity &amp; here",
}
LINK = "https://forum.example.com/t/1?sid=SESSIONsecret99999&x=1"
ROWS = "SELECT text, url, author_hash FROM posts ORDER BY created_at"


def _rss(link: str) -> bytes:
    items = "".join(
        f"<item><description>{escape(escape(text))}</description><guid isPermaLink='false'>{name}</guid>"
        f"<author>jane@example.org (Jane_Doe)</author><link>{escape(link)}</link>"
        f"<pubDate>Tue, 01 Dec 2026 10:0{n}:00 GMT</pubDate></item>" for n, (name, text) in enumerate(TEXTS.items()))
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{items}</channel></rss>'.encode()


def _capture(path: Path, link: str) -> None:
    path.write_text("".join(json.dumps({
        "id": name, "text": text, "created_at": f"2026-12-01T10:0{n}:00Z", "source": "feed", "author": "@Jane_Doe",
        "url": link, "lang": "EN-gb"}) + "\n" for n, (name, text) in enumerate(TEXTS.items())), encoding="utf-8")


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as s:
        yield s


def _collect_and_replay(tmp_path: Path, runner: CliRunner, server: FakeServer, source: str, path: str,
                        link: str = LINK) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """The rows stored of the same posts, polled from a feed at ``path`` and replayed from a capture of them, for a
    config whose [[sources]] entry is ``source`` (holding "{url}", the server's); each post links to ``link``."""
    cfg = tmp_path / "miner.toml"
    server.serve(path, Reply(200, _rss(link), content_type="application/rss+xml"))
    cfg.write_text('[[services]]\nname = "MTN"\n\n[[services]]\nname = "WhatsApp"\n\n'
                   + source.replace("{url}", server.url), encoding="utf-8")
    collected = runner.invoke(main, ["--config", str(cfg), "--db", str(tmp_path / "c.sqlite"), "collect", "--once"])
    assert collected.exit_code == 0, collected.output
    _capture(tmp_path / "posts.jsonl", link)
    replayed = runner.invoke(main, ["--config", str(cfg), "--db", str(tmp_path / "r.sqlite"), "replay",
                                    str(tmp_path / "posts.jsonl"), "--out", str(tmp_path / "out")])
    assert replayed.exit_code == 0, replayed.output
    return (sqlite3.connect(tmp_path / "c.sqlite").execute(ROWS).fetchall(),
            sqlite3.connect(tmp_path / "r.sqlite").execute(ROWS).fetchall())


def test_replay_stores_what_a_collector_stores_of_the_same_posts(tmp_path: Path, runner: CliRunner,
                                                                  server: FakeServer) -> None:
    polled, rows = _collect_and_replay(tmp_path, runner, server, '[[sources]]\nname = "feed"\ntype = "rss"\n'
                                       'url = "{url}/feed.rss"\n', "/feed.rss")
    # All but the last: a feed's description is HTML, where a double-escaped tag is one; a capture's text is plain.
    assert len(rows) == len(TEXTS) and rows[:4] == polled[:4]
    texts = [text for text, *_ in rows]
    assert texts[0] == "MTN down again no data since noon evil"
    assert texts[1] == "MTN is out, mail me at [email] or call [number]"
    assert texts[2] == "@[user] @[user] MTN is down, @WhatsAppSupport help, ask u/[user]"
    assert len(texts[3]) == 4000 and texts[3].endswith("x…")
    assert texts[4] == TEXTS["plain"]  # plain text, as captured: no markup to strip
    assert {url for _, url, _ in rows} == {"https://forum.example.com/t/1?sid=[redacted]&x=1"}
    stored = sqlite3.connect(tmp_path / "r.sqlite").execute("SELECT DISTINCT lang FROM posts").fetchall()
    assert stored == [("en",)]  # "EN-gb", as a collector stores a language tag
    data = b"".join(p.read_bytes() for p in tmp_path.glob("r.sqlite*"))
    assert b"SESSIONsecret" not in data and b"Jane_Doe" not in data and b"jane.doe" not in data


def test_replay_refuses_a_post_whose_text_is_only_whitespace(tmp_path: Path, runner: CliRunner) -> None:
    stream = tmp_path / "s.jsonl"
    stream.write_text('{"id": "1", "text": "\\r\\n \\u200b", "created_at": "2026-01-01T00:00:00Z", "source": "s"}\n')
    result = runner.invoke(main, ["--db", str(tmp_path / "m.sqlite"), "replay", str(stream)])
    assert result.exit_code == 1
    assert f"{stream}:1: field 'text' holds only whitespace or invisible characters (nothing was stored)" \
        in result.output


def test_replay_reads_a_source_url_from_the_environment_as_a_poll_does(tmp_path: Path, runner: CliRunner,
                                                                       server: FakeServer,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # A private feed's URL holds its key, and its items link to pages under it; its author names are its host's.
    key = "9f8e7d6c5b4a39281706f5e4d3c2b1a0"
    monkeypatch.setenv("FEED_URL", f"{server.url}/feeds/{key}/rss")
    polled, rows = _collect_and_replay(tmp_path, runner, server, '[[sources]]\nname = "feed"\ntype = "rss"\n'
                                       'url_env = "FEED_URL"\n', f"/feeds/{key}/rss",
                                       f"https://forum.example.com/feeds/{key}/items/1")
    assert len(rows) == len(TEXTS) and rows[:4] == polled[:4]
    assert {url for _, url, _ in rows} == {"https://forum.example.com/feeds/[redacted]/items/1"}
    assert key.encode() not in b"".join(p.read_bytes() for p in tmp_path.glob("r.sqlite*"))


def test_replay_of_a_source_url_from_the_environment_writes_a_host_label_that_reads_as_a_key_as_a_poll_does(
        tmp_path: Path, runner: CliRunner, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # Its URL holds no key that secret_parts reads, but its links' host label that reads as one goes all the same, as
    # migration 0030 (which has no URL) wrote what a poll stored before.
    monkeypatch.setenv("FEED_URL", f"{server.url}/private/rss?key=s3cr3t")
    polled, rows = _collect_and_replay(tmp_path, runner, server, '[[sources]]\nname = "feed"\ntype = "rss"\n'
                                       'url_env = "FEED_URL"\n', "/private/rss",
                                       "https://d1a2b3c4d5e6f7.cloudfront.net/status/1")
    assert rows[:4] == polled[:4] and {url for _, url, _ in rows} == {"https://_redacted.cloudfront.net/status/1"}


def test_replay_warns_when_a_source_url_is_not_in_the_environment(tmp_path: Path, runner: CliRunner,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEED_URL", raising=False)
    cfg = tmp_path / "miner.toml"
    cfg.write_text('[[services]]\nname = "MTN"\n\n[[sources]]\nname = "feed"\ntype = "rss"\nurl_env = "FEED_URL"\n',
                   encoding="utf-8")
    _capture(tmp_path / "posts.jsonl", LINK)
    result = runner.invoke(main, ["--config", str(cfg), "--db", str(tmp_path / "m.sqlite"), "replay",
                                  str(tmp_path / "posts.jsonl")])
    assert result.exit_code == 0, result.output
    assert ("warning: source feed: environment variable FEED_URL (url_env) is not set: its replayed posts' authors are "
            "hashed apart from its polled ones, and their links may hold its key") in result.output


def test_replay_summary_counts_complaints_by_author_as_the_buckets_do(tmp_path: Path, runner: CliRunner) -> None:
    # The summary's complaints summed the outage verdicts: one account posting six times in an hour was six
    # complaints in the table, where the buckets (and `miner replay --help`: "complaints count authors") say one.
    cfg = tmp_path / "miner.toml"
    cfg.write_text('[[services]]\nname = "MTN"\n\n[detector]\nbucket_minutes = 60\n', encoding="utf-8")
    stream = tmp_path / "posts.jsonl"
    stream.write_text("".join(json.dumps({
        "id": n, "text": f"MTN network is down again, no data and no calls since morning ({n})",
        "created_at": f"2026-12-01T10:{n:02d}:00Z", "source": "feed", "author": f"@person{n % 2}"}) + "\n"
        for n in range(6)), encoding="utf-8")
    db = tmp_path / "m.sqlite"
    result = runner.invoke(main, ["--config", str(cfg), "--db", str(db), "replay", str(stream)])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(db) as conn:
        [(outage_posts,)] = conn.execute("SELECT count(*) FROM classifications WHERE outage = 1").fetchall()
        [(complaints,)] = conn.execute("SELECT sum(complaints) FROM buckets WHERE service = 'MTN'").fetchall()
    conn.close()
    assert (outage_posts, complaints) == (6, 2)
    [row] = [line.split() for line in result.output.splitlines() if line.startswith("MTN ")]
    assert row == ["MTN", "6", "2"]

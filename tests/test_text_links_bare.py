"""Links pasted into a post's text without a scheme ("reset link app.example.com/reset?token=..."): stored without the
poster's credentials as links with a scheme are, written as they were (no scheme added), and the words that only look
like a host ("file.txt", "node.js/", "e.g.", "v2.3", "down.Now?") left as written."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fakeserver import FakeServer, Reply
from test_text_links import rewritten_by, store_bytes, upgraded_with_texts

from miner.collectors import CollectSettings, Poller
from miner.collectors.matching import ServiceMatcher
from miner.collectors.normalise import redact_contacts
from miner.config import ServiceConfig, SourceConfig
from miner.store import Store
from miner.store.link_scrub import SCRUB_BATCH
from miner.text_links import public_text_links
from miner.timeutil import iso

NOW = datetime.now(UTC).replace(microsecond=0)
R = "[redacted]"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV"
DOC = "1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdEf"

# What a poster writes, and what the store keeps of it.
BARE = [
    ("reset link app.example.com/reset?token=abc123 doesn't work",
     f"reset link app.example.com/reset?token={R} doesn't work"),
    ("login page loops, status.example.io/dash#access_token=ya29.a0AfH6SMB&token_type=Bearer",
     f"login page loops, status.example.io/dash#access_token={R}&token_type=Bearer"),
    (f"our runbook docs.google.com/document/d/{DOC}/edit won't open either",
     f"our runbook docs.google.com/document/d/{R}/edit won't open either"),
    (f"magic link example.com/magic-login/{JWT} says expired.",
     f"magic link example.com/magic-login/{R} says expired."),
    ("Slack sign-in (slack.com/signin?redir=%2Fssb&sid=7c1d0e5f9a2b) fails!",
     f"Slack sign-in (slack.com/signin?redir=%2Fssb&sid={R}) fails!"),
    ("grafana.example.co.uk:8443/d/api?orgId=1&auth_token=s3cr3tv4lu3 is blank",
     f"grafana.example.co.uk:8443/d/api?orgId=1&auth_token={R} is blank"),
    ("router 192.168.1.1/login?password=admin, dev localhost:3000/reset?token=abc123",
     f"router 192.168.1.1/login?password={R}, dev localhost:3000/reset?token={R}"),
    ("sso.example.com/login?next=app.example.com/reset?token=abc123&lang=en loops",
     f"sso.example.com/login?next=app.example.com/reset?token={R}&lang=en loops"),
    ("l.example.com/r/https%3A%2F%2Fops%3Ahunter2%40grafana.example%2F/x?y=1 loops",
     "l.example.com/r/https%3A%2F%2Fgrafana.example%2F/x?y=1 loops"),
    # Percent-encoded in a value or a segment, without a scheme either (and a value that decodes to no link kept).
    ("https://sso.example/cb?next=app.example.com%2Freset%3Ftoken%3Dabc123&q=file.txt%20or%20news.example.com%2Fa",
     f"https://sso.example/cb?next=app.example.com%2Freset%3Ftoken%3D{R}&q=file.txt%20or%20news.example.com%2Fa"),
    ("l.example.com/r/app.example.com%2Freset%3Ftoken%3Dabc123/x",
     f"l.example.com/r/app.example.com%2Freset%3Ftoken%3D{R}/x"),
    # Glued to a CJK sentence or after a tweet's "...", as links with a scheme are.
    ("登录不了app.example.com/reset?token=abc123。谢谢", f"登录不了app.example.com/reset?token={R}。谢谢"),
    ("can't even...pic.twitter.com/AbCd1234EfGh5678", f"can't even...pic.twitter.com/{R}"),
    ("Verified: App.Example.COM/Reset?TOKEN=abc123", f"Verified: App.Example.COM/Reset?TOKEN={R}"),
    # A login before the host: the host alone was read (after an "@"), and the user name and password stayed.
    ("router admin:hunter2@192.168.1.1/setup won't load", "router 192.168.1.1/setup won't load"),
    ("db postgres:pa$$w0rd!@db.example.com:5432/prod refuses, (user:p@ss@localhost:8080/admin) too",
     "db db.example.com:5432/prod refuses, (localhost:8080/admin) too"),
    ("@alice: same, x-access-token:ghp_16C7e42F292c6912E7710c838347Ae178B4a@github.com/org/repo.git, :s3cr3tv4lu3"
     "@10.0.0.1/login?token=abc123",
     f"@alice: same, github.com/org/repo.git, 10.0.0.1/login?token={R}"),
    # And before a host with nothing after it: the login went only before a path.
    ("login with user:pa$$!@db.example.com now, psql postgres:s3cret@localhost",
     "login with db.example.com now, psql localhost"),
    ("ftp root:toor@10.0.0.1 fails (dev user:p@ss@localhost:8080), admin:hunter2@mail.example.co.uk.",
     "ftp 10.0.0.1 fails (dev localhost:8080), mail.example.co.uk."),
]

# Kept to the character: no credential in the link, or no link at all.
KEPT = [
    "is instagram.com down? status.example.com says nothing, nor does www.example.com.",
    "pic.twitter.com/0DVs6mGDGd and twitter.com/jonmachota/status/999369430525186048 and bit.ly/PkoBNH",
    "help.aol.com/contact/ I'm going to switch, see support.example.com/kb/windows-11-23h2-update-kb5031455",
    "file.txt?token=1 node.js/abc?token=1 e.g./x?token=1 v2.3/x?token=1 U.S./x?token=1 a.m./x?token=1",
    "it's down.Now?token=1 main.py#L10?token=x README.md#token=x ASP.NET/C# 10.30/11?token=1",
    "mail jane@example.com/?token=x, 3.5/5 stars, 24/7 support?! #outage #down",
    # An e-mail address (the contacts'), a handle, a time or an address's scheme before an "@" is no login.
    "@alice:matrix.org, bob@example.com/x, 10:30@home, 10:30@example.com/x, mailto:jane@example.com?subject=down",
]



def test_a_login_before_a_host_with_nothing_after_it_goes_and_an_e_mail_address_stays_the_contacts() -> None:
    # As the collectors store a text (normalise): links first, then contacts. The contact rule, taking the password
    # and host for an e-mail address, left the user name ("root:[email]"), and all of a login it took none in.
    def stored(text: str) -> str:
        return redact_contacts(public_text_links(text))

    assert stored("ftp root:toor@10.0.0.1 fails, login with user:pa$$!@db.example.com now") == (
        "ftp 10.0.0.1 fails, login with db.example.com now")
    assert stored("psql postgres:s3cret@localhost:5432; admin:hunter2@example.com") == (
        "psql localhost:5432; example.com")
    # Not a login: an e-mail address (one a label is glued to too), a handle, a Matrix id, a time, a ratio, a word
    # that is no host ("file.txt", "node.js") after the "@".
    assert stored("mail bob@example.com, Re: bob@example.com, email:bob@example.com, E-mail:ops@10.0.0.1, "
                  "cc:jane@example.com") == "mail [email], Re: [email], email:[email], E-mail:[email], cc:[email]"
    kept = "@alice @alice:matrix.org 10:30@home 3:1@home x:y@localhostx"
    assert stored(kept) == kept
    # The contacts' then, but the name before the address goes with it (test_email_logins): "x:" may be a login's.
    assert stored("10:30@example.com 3:1@example.com x:y@file.txt x:y@node.js") == (
        "10:[email] 3:[email] [email] [email]")


# Service matching reads a link as a site, not a mention: the same services before and after.
MATCHER = ServiceMatcher([ServiceConfig("Slack"), ServiceConfig("Google Docs", ("docs.google.com",)),
                          ServiceConfig("Grafana")])


@pytest.mark.parametrize(("written", "stored"), BARE)
def test_a_link_without_a_scheme_keeps_no_credential(written: str, stored: str) -> None:
    assert public_text_links(written) == stored
    assert public_text_links(stored) == stored  # stored again as it is (a migrated text, a replay)
    assert MATCHER.match(stored) == MATCHER.match(written)


@pytest.mark.parametrize("text", KEPT)
def test_words_that_look_like_a_host_and_links_without_a_credential_are_kept(text: str) -> None:
    # Beside a link that holds one: only that link's token goes.
    written, stored = BARE[0]
    assert public_text_links(f"{text} {written}") == f"{text} {stored}"
    assert public_text_links(f"{written} {text}") == f"{stored} {text}"


def test_hostile_texts_without_a_scheme_are_read_whole() -> None:
    many = " ".join(f"h{n}.example.com/p?token=abc123def{n}," for n in range(300))
    assert public_text_links(many) == " ".join(f"h{n}.example.com/p?token={R}," for n in range(300))
    # Made to be slow: each reads in a few milliseconds (see the report of this change).
    for hostile in ("a." * 5000, "a.bc/" * 2000, "ab.cd" * 2000, "a-" * 4995 + ".com/", "1." * 4998 + "/",
                    "x.com/?next=" * 833, "x.com/" + "%" * 9994, "a.b." * 2499 + "com/", ".com/" * 2000,
                    "a.com/#?x=" * 1000):
        assert len(public_text_links(hostile)) >= len(hostile) - 9994


def test_a_polled_post_with_a_bare_reset_link_is_stored_without_its_token(tmp_path: Path, server: FakeServer) -> None:
    server.serve("/feed.rss", Reply(200, (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item><title>Slack login broken</title>'
        "<description>&lt;p&gt;The reset link app.example.com/reset?token=f3a9c2e1d4b5 doesn't work, nor "
        f"example.com/magic-login/{JWT}, nor the router's admin:pa$$w0rd!@192.168.1.1/setup.&lt;/p&gt;</description>"
        "<guid>g1</guid>"
        f"<pubDate>{NOW.strftime('%a, %d %b %Y %H:%M:%S GMT')}</pubDate></item></channel></rss>").encode(),
        content_type="application/rss+xml"))
    path = tmp_path / "miner.sqlite"
    store = Store.open(path)
    source = SourceConfig("feed", "rss", url=f"{server.url}/feed.rss")
    store.sync_sources([source])
    with Poller(CollectSettings(), [ServiceConfig("Slack")], hash_key=b"k", environ={}) as poller:
        result = poller.poll(source, store.source_state(source.name))
    assert store.save_fetch(source.name, result, NOW, NOW).posts_new == 1
    texts = [r["text"] for r in store.database.rows("SELECT text FROM posts")]
    assert texts == [f"Slack login broken. The reset link app.example.com/reset?token={R} doesn't work, nor "
                     f"example.com/magic-login/{R}, nor the router's 192.168.1.1/setup."]
    store.close()
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("miner.sqlite*"))
    for secret in (b"f3a9c2e1d4b5", JWT.encode(), JWT[:20].encode(), b"pa$$", b"admin"):
        assert secret not in stored


def test_a_store_from_before_keeps_no_credential_in_its_bare_links(tmp_path: Path) -> None:
    # Texts stored before (0022_text_links read only the links with a scheme or "www."): the upgrade rewrites those
    # with a bare link's credential, a batch at a time, and leaves every other text as it was.
    path = tmp_path / "old.sqlite"
    at = iso(NOW)
    texts = [BARE[n % len(BARE)][0] if n % 3 else KEPT[n % len(KEPT)] for n in range(2 * SCRUB_BATCH + 1)]
    store = upgraded_with_texts(path, "0025_bare_text_links", texts, at)
    expected = dict(BARE)
    assert [r["text"] for r in store.database.rows("SELECT text FROM posts ORDER BY id")] == [
        expected.get(text, text) for text in texts]
    stored = store_bytes(store, path)
    for secret in (b"abc123", b"ya29", DOC.encode(), JWT[:20].encode(), b"7c1d0e5f9a2b", b"s3cr3tv4lu3", b"hunter2"):
        assert secret not in stored


def test_a_store_from_before_keeps_no_login_before_a_bare_host(tmp_path: Path) -> None:
    # Texts stored before 0026 as the collectors kept them then: a login before a host without a scheme stayed where
    # the contact rule took no e-mail address in it (a password ending in "!", a host without a dot). One whose host
    # it did take ("admin:[email]/setup") holds no link to read any more: 0027 takes its user name (test_email_logins).
    path = tmp_path / "old.sqlite"
    logins = {"db postgres:pa$$w0rd!@db.example.com:5432/prod refuses": "db db.example.com:5432/prod refuses",
              "dev (user:s3cr3tv4lu3@localhost:8080/admin) loops": "dev (localhost:8080/admin) loops",
              # Nothing after the host: no "/", "?" or "#" in the text at all.
              "psql pgadmin:s3cret@localhost fails": "psql localhost fails",
              "login with dbuser:pa$$!@db.example.com now, RT @[user]: same":
                  "login with db.example.com now, RT @[user]: same",
              "router admin:[email]/setup won't load": "router [email]/setup won't load",
              "ftp root:[email] fails": "ftp [email] fails"}
    kept = ["RT @[user]: down again https://t.co/AbCd1234", "email:[email], @[user]: 10:30@home", *KEPT]
    stored = rewritten_by(path, "0026_bare_text_logins", logins, kept)
    for secret in (b"pa$$w0rd", b"postgres", b"s3cr3tv4lu3", b"pgadmin", b"s3cret", b"dbuser", b"pa$$!"):
        assert secret not in stored

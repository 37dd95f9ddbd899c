"""`miner collect --once` against a real local server: a table per source, errors isolated, re-polls dedupe."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakeserver import FakeServer, Reply

from miner.cli import main
from miner.store import Store
from miner.timeutil import parse_iso

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as s:
        s.serve_fixture("/forum.rss", "rss/forum_latest.rss")
        s.serve_fixture("/api/v2/incidents.json", "statuspage/incidents.json")
        s.fault("/broken.rss", "500")
        s.fault("/limited.rss", "429", retry_after="120")
        yield s


# The fixtures' posts are dated November 2026, and `miner collect` leaves out those older than retention_days by the
# real clock: at the default 30 days, the feed's posts were all dropped from late December 2026 on.
KEEP_FIXTURES = "retention_days = 3650"


def config(tmp_path: Path, url: str) -> Path:
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(f"""
[store]
path = "{tmp_path / 'm.sqlite'}"
{KEEP_FIXTURES}

[[services]]
name = "GitHub"
aliases = ["githubstatus"]

[[services]]
name = "Discourse"

[[sources]]
name = "forum"
type = "rss"
url = "{url}/forum.rss"

[[sources]]
name = "broken"
type = "rss"
url = "{url}/broken.rss"

[[sources]]
name = "limited"
type = "rss"
url = "{url}/limited.rss"

[[sources]]
name = "status:github"
type = "statuspage"
url = "{url}"
services = ["GitHub"]
""")
    return cfg


def test_collect_once_reports_each_source_and_isolates_failures(tmp_path: Path, server: FakeServer) -> None:
    cfg = config(tmp_path, server.url)
    runner = CliRunner()
    first = runner.invoke(main, ["--config", str(cfg), "collect", "--once"])
    assert first.exit_code == 1  # some source failed: scripts and cron see it
    lines = {ln.split()[0]: ln for ln in first.output.splitlines() if ln and not ln.startswith(("source", "-"))}
    assert set(lines) == {"forum", "broken", "limited", "status:github"}
    assert "HTTP 500" in lines["broken"]
    assert "429" in lines["limited"] and "120" in lines["limited"]
    assert "ok" in lines["forum"] and "ok" in lines["status:github"]

    store = Store.open(tmp_path / "m.sqlite")
    posts = store.database.one("SELECT count(*) AS n FROM posts")["n"]  # type: ignore[index]
    official = store.database.one("SELECT count(*) AS n FROM official_incidents")["n"]  # type: ignore[index]
    assert posts > 0 and official > 0
    limited = store.source_row("limited")
    assert limited is not None and limited["consecutive_failures"] == 1 and "429" in limited["last_error"]
    # Retry-After is honoured: the next poll is at least two minutes away.
    wait = parse_iso(limited["next_poll_at"]) - parse_iso(limited["last_poll_at"])
    assert wait >= timedelta(seconds=120)

    # Nothing is due right away; --all polls again: conditional GET answers 304 and nothing is stored twice.
    again = runner.invoke(main, ["--config", str(cfg), "collect", "--once"])
    assert "no source is due" in again.output
    forced = runner.invoke(main, ["--config", str(cfg), "collect", "--once", "--all"])
    forum_line = next(ln for ln in forced.output.splitlines() if ln.startswith("forum"))
    # The stored column counts posts: a 304 stored none, and the result says why ("304" there read as 304 posts).
    assert forum_line.split()[2] == "0" and forum_line.endswith("ok, not modified (HTTP 304)"), forum_line
    assert store.database.one("SELECT count(*) AS n FROM posts")["n"] == posts  # type: ignore[index]
    store.close()


def test_collect_once_with_no_source_enabled_says_so(tmp_path: Path) -> None:
    # It said "no source is due (use --all to poll every source now)", to --all too.
    cfg = tmp_path / "feeds.toml"
    cfg.write_text('[[services]]\nname = "MTN"\n\n[[sources]]\nname = "off"\ntype = "rss"\n'
                   'url = "http://127.0.0.1:9/feed"\nenabled = false\n')
    for extra in ([], ["--all"]):
        result = CliRunner().invoke(main, ["--config", str(cfg), "--db", str(tmp_path / "m.sqlite"), "collect",
                                           "--once", *extra])
        assert result.exit_code == 0, result.output
        assert f"no source to poll: {cfg} enables no [[sources]]" in result.output, result.output
        assert "--all" not in result.output


def test_a_feed_gone_for_good_says_what_to_do_and_is_polled_at_backoff_max(tmp_path: Path, server: FakeServer) -> None:
    # A 410 read "no such resource", as a 404 (a URL mistyped, a server misconfigured) does: the operator was not
    # told that the site removed the feed on purpose and the source is to be removed or pointed elsewhere.
    server.serve("/gone.rss", Reply(410, b"<html>Gone</html>", content_type="text/html"))
    cfg = config(tmp_path, server.url)
    cfg.write_text(cfg.read_text(encoding="utf-8") + f'[[sources]]\nname = "gone"\ntype = "rss"\n'
                                                      f'url = "{server.url}/gone.rss"\n', encoding="utf-8")
    runner = CliRunner()
    collected = runner.invoke(main, ["--config", str(cfg), "collect", "--once"])
    lines = {ln.split()[0]: ln for ln in collected.output.splitlines() if ln and not ln.startswith(("source", "-"))}
    assert "ok" in lines["forum"] and "ok" in lines["status:github"]  # the others are polled and stored as ever
    store = Store.open(tmp_path / "m.sqlite")
    row = store.source_row("gone")
    store.close()
    assert row is not None and row["last_error"] == (
        f"HTTP 410 from 127.0.0.1 (gone for good: remove the source from feeds.toml, or give it the feed's new url; "
        f"{server.url}/gone.rss)")
    # A permanent error: the next try is backoff_max (3600 s) away, not backoff_base's minute.
    assert parse_iso(row["next_poll_at"]) - parse_iso(row["last_poll_at"]) == timedelta(seconds=3600)
    status = runner.invoke(main, ["--config", str(cfg), "status"])
    gone = next(ln for ln in status.output.splitlines() if ln.startswith("gone "))
    assert "HTTP 410 from 127.0.0.1 (gone for good: remove the source" in gone


def test_a_user_agent_that_cannot_be_sent_is_a_config_error(tmp_path: Path, server: FakeServer) -> None:
    # Non-ASCII stopped collect (and miner run) with an internal UnicodeEncodeError; a line break failed every poll.
    cfg = config(tmp_path, server.url)
    text = cfg.read_text(encoding="utf-8")
    for agent, found in (("mïner/1.0", "U+00EF"), ("miner/1.0\\nX-Forged: 1", "U+000A")):
        cfg.write_text(f'[collect]\nuser_agent = "{agent}"\n' + text, encoding="utf-8")
        result = CliRunner().invoke(main, ["--config", str(cfg), "collect", "--once"])
        assert result.exit_code == 1
        assert result.output.strip() == (f"Error: {cfg}:2: collect.user_agent: must be printable ASCII, without line "
                                         f"breaks (found {found})")
    # A space at either end failed every poll ("Illegal header value"); an empty one was sent as it is.
    for agent, error in (("miner/1.0 ", "must not start or end with a space (got 'miner/1.0 ')"),
                         ("", "must not be blank (APIs such as Reddit's refuse requests without one)"),
                         ("  ", "must not be blank (APIs such as Reddit's refuse requests without one)")):
        cfg.write_text(f'[collect]\nuser_agent = "{agent}"\n' + text, encoding="utf-8")
        result = CliRunner().invoke(main, ["--config", str(cfg), "collect", "--once"])
        assert result.exit_code == 1
        assert result.output.strip() == f"Error: {cfg}:2: collect.user_agent: {error}"
    assert server.requests == []


def test_a_key_in_a_source_url_is_not_in_its_error(tmp_path: Path, server: FakeServer,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    # A redirect to a scheme we do not fetch was reported as "bad URL '<the whole URL>'": a key in its query (or a
    # user name used as a token) went to the collect table, the log, sources.last_error and the digests.
    server.serve("/private.rss", Reply(302, headers={"Location": "ftp://files.example.org/feed.rss"}))
    host = server.url.removeprefix("http://")
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "m.sqlite"}"\n[[services]]\nname = "GitHub"\n'
                   f'[[sources]]\nname = "private"\ntype = "rss"\nurl = "http://{host}/private.rss?api_key=K3Y-S3CR3T"\n'
                   f'[[sources]]\nname = "token-user"\ntype = "rss"\nurl = "http://T0K3N-US3R@{host}/private.rss"\n')
    result = CliRunner().invoke(main, ["--config", str(cfg), "collect", "--once"])
    assert result.exit_code == 1
    store = Store.open(tmp_path / "m.sqlite")
    errors = [store.source_row(name)["last_error"] for name in ("private", "token-user")]  # type: ignore[index]
    store.close()
    for error in errors:
        assert error.startswith(f"http://{host}/private.rss redirects to ftp://files.example.org/feed.rss, which is "
                                "not an http(s) URL: ")
    shown = "\n".join([result.output, caplog.text, *errors])
    assert "K3Y-S3CR3T" not in shown and "T0K3N-US3R" not in shown


def test_a_key_in_the_path_of_a_url_from_the_environment_is_not_in_its_error(
        tmp_path: Path, server: FakeServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # A private feed's key is often a path segment (https://host/feeds/<token>/rss); messages cut only the query.
    server.serve("/feeds/T0K3N-P4TH/rss", Reply(302, headers={"Location": "ftp://files.example.org/T0K3N-P4TH"}))
    monkeypatch.setenv("MINER_TEST_FEED_URL", f"{server.url}/feeds/T0K3N-P4TH/rss")
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "m.sqlite"}"\n[[services]]\nname = "GitHub"\n'
                   '[[sources]]\nname = "private"\ntype = "rss"\nurl_env = "MINER_TEST_FEED_URL"\n')
    result = CliRunner().invoke(main, ["--config", str(cfg), "collect", "--once"])
    assert result.exit_code == 1
    store = Store.open(tmp_path / "m.sqlite")
    row = store.source_row("private")
    store.close()
    assert row is not None and row["url"] == "$MINER_TEST_FEED_URL"
    assert row["last_error"].startswith(f"{server.url}/[redacted] redirects to ftp://files.example.org/[redacted], "
                                        "which is not an http(s) URL: ")
    assert "T0K3N-P4TH" not in "\n".join([result.output, caplog.text, row["last_error"]])


def test_a_key_in_a_feed_url_is_not_copied_into_its_posts(tmp_path: Path, server: FakeServer) -> None:
    # Relative entry links and guids were resolved against the URL as written: every post's url and id (shown in
    # digests and webhook payloads) carried the feed's user:password, and a "#..." link its query too.
    rss = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><link>/</link>'
           b"<item><title>GitHub down</title><link>/item/1</link><guid>one</guid></item>"
           b"<item><title>GitHub down again</title><link>#c2</link><guid>two</guid></item></channel></rss>")
    server.serve("/private.rss", Reply(200, rss, content_type="application/rss+xml"))
    host = server.url.removeprefix("http://")
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "m.sqlite"}"\n[[services]]\nname = "GitHub"\n[[sources]]\n'
                   f'name = "private"\ntype = "rss"\nurl = "http://T0K3N-US3R@{host}/private.rss?api_key=K3Y-S3CR3T"\n')
    assert CliRunner().invoke(main, ["--config", str(cfg), "collect", "--once"]).exit_code == 0
    store = Store.open(tmp_path / "m.sqlite")
    posts = store.database.rows("SELECT external_id, url FROM posts ORDER BY external_id")
    store.close()
    assert posts == [{"external_id": f"http://{host}/one", "url": f"http://{host}/item/1"},
                     {"external_id": f"http://{host}/two", "url": f"http://{host}/private.rss#c2"}]


def test_a_key_in_a_source_url_is_not_stored(tmp_path: Path, server: FakeServer) -> None:
    # sources.url kept the url as written in feeds.toml: a key in its query or a token as user name went into the
    # store (its backups, `miner ui`, `miner query`). A row written so before is rewritten at the next collect.
    host = server.url.removeprefix("http://")
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "m.sqlite"}"\n[[services]]\nname = "GitHub"\n[[sources]]\n'
                   f'name = "forum"\ntype = "rss"\nurl = "http://T0K3N-US3R@{host}/forum.rss?q=down&api_key=K3Y"\n')
    store = Store.open(tmp_path / "m.sqlite")
    with store.database.transaction() as conn:
        conn.execute("INSERT INTO sources (name, type, url) VALUES ('forum', 'rss', ?)",
                     (f"http://T0K3N-US3R@{host}/forum.rss?q=down&api_key=K3Y",))
    result = CliRunner().invoke(main, ["--config", str(cfg), "collect", "--once"])
    assert result.exit_code == 0, result.output
    assert store.source_row("forum")["url"] == f"http://{host}/forum.rss?q=down&api_key=[redacted]"  # type: ignore[index]
    store.close()
    # The key was still sent: only what is kept is without it.
    [request] = server.requests_to("/forum.rss")
    assert request.param("api_key") == "K3Y" and request.headers["authorization"].startswith("Basic ")


def test_a_key_named_as_one_word_in_a_source_url_is_not_stored(tmp_path: Path, server: FakeServer) -> None:
    # Only a parameter whose last word was a key word was taken for a credential: a private tracker's ?passkey=, an
    # ?apitoken= or ?authtoken= (one word each) went into sources.url (backups, `miner ui`, `miner query`) and `miner
    # status`, without the warning that it belongs in url_env.
    server.serve("/feed.rss", Reply(200, b"<rss version='2.0'><channel><title>t</title></channel></rss>",
                                    content_type="application/rss+xml"))
    host = server.url.removeprefix("http://")
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "m.sqlite"}"\n[[services]]\nname = "GitHub"\n[[sources]]\n'
                   f'name = "tracker"\ntype = "rss"\n'
                   f'url = "http://{host}/feed.rss?q=down&passkey=PK-S3CR3T&apitoken=AT-S3CR3T&authToken=AU-S3CR3T"\n')
    checked = CliRunner().invoke(main, ["config", "check", str(cfg)])
    assert "query parameter passkey" in checked.output and "query parameter apitoken" in checked.output
    result = CliRunner().invoke(main, ["--config", str(cfg), "collect", "--once"])
    assert result.exit_code == 0, result.output
    status = CliRunner().invoke(main, ["--config", str(cfg), "status", "--format", "json"])
    store = Store.open(tmp_path / "m.sqlite")
    assert store.source_row("tracker")["url"] == (  # type: ignore[index]
        f"http://{host}/feed.rss?q=down&passkey=[redacted]&apitoken=[redacted]&authToken=[redacted]")
    store.close()
    assert "S3CR3T" not in checked.output + result.output + status.output
    [request] = server.requests_to("/feed.rss")
    assert request.param("passkey") == "PK-S3CR3T"


def test_a_key_in_a_feed_items_link_is_not_stored(tmp_path: Path, server: FakeServer) -> None:
    # A private feed's items link to pages that carry the feed's key again (a tracker's download.php?id=1&passkey=...,
    # a forum's ?token=): posts.url and, for an item without a guid, posts.external_id kept it as written, and alerts
    # showed it to everyone their samples reached.
    rss = (b"<rss version='2.0'><channel><title>t</title>"
           b"<item><title>GitHub down</title><link>http://forum.example/dl?id=1&amp;passkey=PK-S3CR3T</link></item>"
           b"<item><title>GitHub down again</title><link>http://T0K3N-US3R@forum.example/t/2?api_key=K3Y-S3CR3T</link>"
           b"<guid>two</guid></item></channel></rss>")
    server.serve("/feed.rss", Reply(200, rss, content_type="application/rss+xml"))
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "m.sqlite"}"\n[[services]]\nname = "GitHub"\n[[sources]]\n'
                   f'name = "forum"\ntype = "rss"\nurl = "{server.url}/feed.rss"\n')
    assert CliRunner().invoke(main, ["--config", str(cfg), "collect", "--once"]).exit_code == 0
    store = Store.open(tmp_path / "m.sqlite")
    posts = store.database.rows("SELECT external_id, url FROM posts ORDER BY external_id")
    store.close()
    # The id made of the link has a hash of the whole link after "#": links differing only in the key are two items.
    link_hash = hashlib.sha256(b"http://forum.example/dl?id=1&passkey=PK-S3CR3T").hexdigest()[:16]
    assert sorted(posts, key=lambda p: p["url"]) == [
        {"external_id": f"http://forum.example/dl?id=1&passkey=[redacted]#{link_hash}",
         "url": "http://forum.example/dl?id=1&passkey=[redacted]"},
        {"external_id": f"{server.url}/two", "url": "http://forum.example/t/2?api_key=[redacted]"}]


def test_a_feed_url_with_a_key_comes_from_the_environment(tmp_path: Path, server: FakeServer,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    # A feed whose URL carries its key could only be given in feeds.toml; url_env names a variable holding it.
    host = server.url.removeprefix("http://")
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "m.sqlite"}"\n{KEEP_FIXTURES}\n[[services]]\nname = "Discourse"\n'
                   '[[sources]]\nname = "forum"\ntype = "rss"\nurl_env = "MINER_TEST_FEED_URL"\n')
    monkeypatch.delenv("MINER_TEST_FEED_URL", raising=False)
    checked = CliRunner().invoke(main, ["config", "check", str(cfg)])
    assert checked.exit_code == 0 and "env not set: MINER_TEST_FEED_URL" in checked.output
    unset = CliRunner().invoke(main, ["--config", str(cfg), "collect", "--once"])
    assert unset.exit_code == 1 and "environment variable MINER_TEST_FEED_URL (url_env) is not set" in unset.output
    monkeypatch.setenv("MINER_TEST_FEED_URL", f"http://T0K3N-US3R@{host}/forum.rss?api_key=K3Y\n")
    broken = CliRunner().invoke(main, ["--config", str(cfg), "collect", "--once", "--all"])
    assert "environment variable MINER_TEST_FEED_URL (url_env) must not contain control characters" in broken.output
    assert server.requests == []

    monkeypatch.setenv("MINER_TEST_FEED_URL", f"http://T0K3N-US3R@{host}/forum.rss?api_key=K3Y")
    result = CliRunner().invoke(main, ["--config", str(cfg), "collect", "--once", "--all"])
    assert result.exit_code == 0, result.output
    [request] = server.requests_to("/forum.rss")
    assert request.param("api_key") == "K3Y"
    store = Store.open(tmp_path / "m.sqlite")
    assert store.source_row("forum")["url"] == "$MINER_TEST_FEED_URL"  # type: ignore[index]
    assert store.database.one("SELECT count(*) AS n FROM posts")["n"] > 0  # type: ignore[index]
    kept = [str(v) for row in store.database.rows("SELECT * FROM posts") for v in row.values()]
    store.close()
    shown = "\n".join([checked.output, unset.output, broken.output, result.output, caplog.text, *kept])
    assert "K3Y" not in shown and "T0K3N-US3R" not in shown


def test_a_credential_in_a_source_url_in_the_config_is_warned_about(tmp_path: Path, server: FakeServer,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "m.sqlite"}"\n[[services]]\nname = "Discourse"\n[[sources]]\n'
                   f'name = "forum"\ntype = "rss"\nurl = "{server.url}/forum.rss?q=x&api_key=K3Y"\n')
    warning = ("source forum: its url holds what looks like a credential (query parameter api_key); secrets belong in "
               "the environment: put the URL in an environment variable and name it in url_env")
    checked = CliRunner().invoke(main, ["config", "check", str(cfg)])
    assert checked.exit_code == 0 and f"warning: {warning}" in checked.output
    with caplog.at_level("WARNING"):
        assert CliRunner().invoke(main, ["--config", str(cfg), "collect", "--once"]).exit_code == 0
    assert ("source forum: its url in the config holds what looks like a credential (query parameter api_key)"
            in caplog.text)


def test_a_source_failure_quoting_escape_sequences_is_printed_escaped(tmp_path: Path) -> None:
    # A status page's Content-Type is its server's text: `miner collect` printed the warning through Python's
    # last-resort handler as it came, and the ESC sequence in it reached the terminal (here: hide what follows).
    cfg = tmp_path / "feeds.toml"
    with FakeServer() as fake:
        fake.serve("/api/v2/incidents.json", Reply(200, b'{"incidents": []}', content_type="text/x\x1b[8m\x1b[?25l"))
        cfg.write_text(f'[store]\npath = "{tmp_path / "m.sqlite"}"\n\n[[services]]\nname = "GitHub"\n\n'
                       f'[[sources]]\nname = "status"\ntype = "statuspage"\nurl = "{fake.url}"\n'
                       'services = ["GitHub"]\n', encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if k not in ("MINER_CONFIG", "MINER_DB")}
        done = subprocess.run([sys.executable, "-m", "miner", "--config", str(cfg), "collect", "--once"],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path,
                              env=env | {"PYTHONPATH": str(ROOT)})
    assert "source status failed: expected JSON from" in done.stderr
    assert "\x1b" not in done.stderr + done.stdout
    assert "got text/x\\x1b[8m\\x1b[?25l" in done.stderr


def test_a_host_that_is_not_a_valid_international_name_fails_its_source_for_good_naming_it(
        tmp_path: Path, server: FakeServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # httpx raised idna's IDNAError, no httpx error: "internal error in the rss collector: IDNAError: Invalid
    # A-label", a traceback logged at every poll, the source never taken to need someone to act.
    server.serve("/moved.rss", Reply(302, headers={"Location": "http://xn--zz.example/feed"}))
    monkeypatch.setenv("MINER_TEST_FEED_URL", "http://xn--zz.example/feed")
    # Its xn-- label is valid, its other one no IDNA label: DNS may know it, config check lets it pass; httpx does not.
    monkeypatch.setenv("MINER_TEST_MIXED_URL", "http://xn--bcher-kva.my_host.example/feed")
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "m.sqlite"}"\n[[services]]\nname = "GitHub"\n'
                   f'[[sources]]\nname = "forum"\ntype = "rss"\nurl = "{server.url}/forum.rss"\n'
                   f'[[sources]]\nname = "moved"\ntype = "rss"\nurl = "{server.url}/moved.rss"\n'
                   '[[sources]]\nname = "private"\ntype = "rss"\nurl_env = "MINER_TEST_FEED_URL"\n'
                   '[[sources]]\nname = "mixed"\ntype = "rss"\nurl_env = "MINER_TEST_MIXED_URL"\n')
    result = CliRunner().invoke(main, ["--config", str(cfg), "collect", "--once"])
    assert result.exit_code == 1
    store = Store.open(tmp_path / "m.sqlite")
    rows = {name: store.source_row(name) for name in ("forum", "moved", "private", "mixed")}
    store.close()
    errors = {name: row["last_error"] for name, row in rows.items() if row is not None}
    assert errors == {
        "forum": None,
        "moved": f"{server.url}/moved.rss redirects to a host that is not a valid internationalised domain name "
                 "(IDNA: Invalid A-label)",
        "private": "environment variable MINER_TEST_FEED_URL (url_env) has host xn--zz.example, which is not a valid "
                   "internationalised domain name (IDNA: Invalid A-label)",
        "mixed": "host xn--bcher-kva.my_host.example is not a valid internationalised domain name (IDNA: Codepoint "
                 "U+005F at position 3 of 'my_host' not allowed): check the source's url (http://xn--bcher-kva.my_"
                 "host.example/[redacted])",
    }
    assert all(rows[name]["needs_action_since"] for name in ("moved", "private", "mixed"))  # type: ignore[index]
    assert "internal error" not in result.output and not any(r.exc_info for r in caplog.records)


def test_collect_once_counts_posts_older_than_the_store_keeps_apart_from_duplicates(tmp_path: Path) -> None:
    # Counted as duplicates, a feed's first poll read "stored 2, dupes 3": as if dedupe were broken, where the three
    # are older than [store].retention_days (30) and left out.
    from email.utils import format_datetime

    from miner.timeutil import utcnow

    now = utcnow()
    items = [(f"new{n}", now - timedelta(hours=n + 1)) for n in range(2)]
    items += [(f"old{n}", now - timedelta(days=40 + n)) for n in range(3)]
    body = "".join(f"<item><guid>{guid}</guid><title>GitHub is down {guid}</title><pubDate>{format_datetime(at)}"
                   "</pubDate></item>" for guid, at in items)
    with FakeServer() as server:
        server.serve("/feed.rss", Reply(200, f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
                                             f'{body}</channel></rss>'.encode(), content_type="application/rss+xml"))
        cfg = tmp_path / "feeds.toml"
        cfg.write_text(f'[store]\npath = "{tmp_path / "m.sqlite"}"\n[[services]]\nname = "GitHub"\n'
                       f'[[sources]]\nname = "feed"\ntype = "rss"\nurl = "{server.url}/feed.rss"\n')
        runs = [CliRunner().invoke(main, ["--config", str(cfg), "collect", "--once", "--all"]) for _ in range(2)]
    for run in runs:
        assert run.exit_code == 0, run.output
    header = runs[0].output.splitlines()[0].split()
    assert header == ["source", "type", "stored", "dupes", "old", "official", "secs", "result"]
    rows = [dict(zip(header, run.output.splitlines()[2].split(), strict=False)) for run in runs]
    assert [(r["stored"], r["dupes"], r["old"]) for r in rows] == [("2", "0", "3"), ("0", "2", "3")]

"""Secrets from the environment never show: not in messages, logs, the store, post links or ids.

Each test gives a secret a value found nowhere else and looks for it in everything a person or a log could see.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fakeserver import FakeServer, Reply

from miner.collectors import CollectSettings, Poller
from miner.collectors.poller import PollOutcome
from miner.config import ServiceConfig, SourceConfig
from miner.records import FetchResult
from miner.urls import shown_url

TOKEN = "S3CR3T-T0K3N-7f3a"  # a private feed's key, as a path segment of its URL


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        yield fake


def _poll(server: FakeServer, source: SourceConfig, path: str,
          caplog: pytest.LogCaptureFixture) -> tuple[PollOutcome, str]:
    """Poll ``source``, its url_env naming ``server.url + path``; the outcome and every log line it caused."""
    env = {"FEED_URL": server.url + path, "BID": "me.example", "BPW": "app-password"}
    with caplog.at_level("DEBUG", logger="miner"), Poller(
            CollectSettings(max_redirects=3), [ServiceConfig("GitHub")], hash_key=b"k", environ=env) as poller:
        outcome = poller.poll_isolated(source)
    return outcome, caplog.text


def _kept(result: FetchResult | None) -> str:
    """Everything a poll's result would put in the store."""
    if result is None:
        return ""
    return json.dumps([[p.external_id, p.url, p.text] for p in result.posts]
                      + [[i.external_id, i.url, i.title] for i in result.incidents] + [result.warnings])


def test_shown_url_drops_query_and_credentials_and_a_secret_urls_path() -> None:
    # A redirect may hand us a URL with user:password in it; errors land in the log and in sources.last_error.
    assert shown_url("https://me:hunter2@example.org:8443/feed.rss?token=x") == "https://example.org:8443/feed.rss"
    assert shown_url("http://example.org/a?b=c") == "http://example.org/a"
    assert shown_url("http://[::1/feed") == "(an unreadable URL)"
    # A url from the environment may carry its key in its path: only the scheme and host show.
    assert (shown_url(f"https://me@example.org:8443/feeds/{TOKEN}/rss?x=1", secret=True)
            == "https://example.org:8443/[redacted]")
    assert shown_url(f"https://example.org/?key={TOKEN}", secret=True) == "https://example.org/[redacted]"
    assert shown_url("https://me:pw@forum.example.org/", secret=True) == "https://forum.example.org/"
    assert shown_url(f"/feeds/{TOKEN}/rss", secret=True) == "[redacted]"  # a relative Location header


@pytest.mark.parametrize(("kind", "message"), [
    ("not_found", "HTTP 404 from 127.0.0.1 (no such resource: {base}/[redacted])"),
    ("malformed_xml", "malformed feed from {base}/[redacted]: "),
    ("wrong_type", "expected a feed from {base}/[redacted], got an HTML page"),
    ("redirect_loop", "too many redirects (more than 3) from {base}/[redacted]"),
    ("huge_declared", "body larger than 5000000 bytes from {base}/[redacted]"),
    ("slow", "timed out after 0.3 s reading {base}/[redacted]"),
])
def test_a_key_in_the_path_of_a_feed_url_from_the_environment_is_in_no_error(
        server: FakeServer, caplog: pytest.LogCaptureFixture, kind: str, message: str) -> None:
    path = f"/feeds/{TOKEN}/rss"
    server.fault(path, kind, delay=1.0)
    outcome, logged = _poll(server, SourceConfig("private", "rss", url_env="FEED_URL", timeout=0.3), path, caplog)
    assert outcome.error is not None and str(outcome.error).startswith(message.format(base=server.url))
    assert TOKEN not in str(outcome.error) and TOKEN not in logged
    assert str(outcome.error) in logged  # it was logged, without the key


def test_a_key_in_the_path_of_a_json_api_url_from_the_environment_is_in_no_error(
        server: FakeServer, caplog: pytest.LogCaptureFixture) -> None:
    server.fault(f"/{TOKEN}/api/v2/incidents.json", "malformed_json")
    source = SourceConfig("status", "statuspage", url_env="FEED_URL")
    outcome, logged = _poll(server, source, f"/{TOKEN}", caplog)
    assert str(outcome.error).startswith(f"invalid JSON from {server.url}/[redacted]: ")
    assert TOKEN not in logged
    # A login redirected elsewhere says where to, without the key in the path it points to.
    server.serve("/xrpc/com.atproto.server.createSession",
                 Reply(307, headers={"Location": f"/{TOKEN}/xrpc/com.atproto.server.createSession"}))
    source = SourceConfig("b", "bluesky", url_env="FEED_URL", query="down",
                          env={"identifier": "BID", "password": "BPW"})
    outcome, logged = _poll(server, source, "", caplog)
    assert str(outcome.error) == ("HTTP 307 from 127.0.0.1 (a login is not sent on to a redirect; it points to "
                                  "[redacted])")
    assert TOKEN not in logged


def test_post_links_and_ids_of_a_feed_url_from_the_environment_hold_no_key(
        server: FakeServer, caplog: pytest.LogCaptureFixture) -> None:
    # Relative links and guids are resolved against the feed's URL (or the Content-Location its server sends,
    # which names it too): the key was copied into every such post's url and id.
    path = f"/feeds/{TOKEN}/rss"
    rss = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
           b"<item><title>GitHub is down</title><link>item/5</link><guid isPermaLink='false'>a1</guid></item>"
           b"<item><title>GitHub login fails</title><link>#c2</link></item></channel></rss>")
    for headers in ({}, {"Content-Location": server.url + path}):
        server.serve(path, Reply(200, rss, headers=headers, content_type="application/rss+xml"))
        outcome, logged = _poll(server, SourceConfig("private", "rss", url_env="FEED_URL"), path, caplog)
        assert outcome.result is not None and len(outcome.result.posts) == 2
        assert TOKEN not in _kept(outcome.result) and TOKEN not in logged
        assert {p.url for p in outcome.result.posts} == {f"{server.url}/item/5", f"{server.url}/[redacted]#c2"}
    # A forum behind a path holding its key: the post links are built on the forum's URL as messages show it.
    server.serve_fixture(f"/{TOKEN}/latest.json", "discourse/latest.json")
    outcome, logged = _poll(server, SourceConfig("forum", "discourse", url_env="FEED_URL"), f"/{TOKEN}", caplog)
    assert outcome.result is not None and outcome.result.posts
    assert TOKEN not in _kept(outcome.result) and TOKEN not in logged
    assert all(str(p.url).startswith(f"{server.url}/[redacted]/t/") for p in outcome.result.posts)


def test_a_user_name_token_in_a_forum_url_is_not_copied_into_post_links(server: FakeServer,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    server.serve_fixture("/latest.json", "discourse/latest.json")
    host = server.url.removeprefix("http://")
    outcome, _ = _poll(server, SourceConfig("forum", "discourse", url=f"http://{TOKEN}@{host}"), "", caplog)
    assert outcome.result is not None and outcome.result.posts
    assert TOKEN not in _kept(outcome.result)
    assert all(str(p.url).startswith(f"{server.url}/t/") for p in outcome.result.posts)


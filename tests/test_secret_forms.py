"""Secrets in the forms they travel in: percent-encoded by a client or a server quoting them, cut short with the
error answer that quotes them, and as a label of a URL's host.

Each test gives a secret a value found nowhere else and looks for any readable part of it in what a person or a log
could see (the store, the service's log, a source's error).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from urllib.parse import quote, quote_plus

import pytest
from fakeserver import FakeServer, Recorded, Reply
from test_alerts_support import store_text
from test_secrets import _hook_alert, _poll, _refused_page, service_log  # noqa: F401  (service_log: a fixture)

from miner.alerts.webhooks import BODY_LIMIT
from miner.collectors import CollectSettings, Poller
from miner.config import ServiceConfig, SourceConfig
from miner.redaction import REDACTED, cut_text, redact, without_cut_secret
from miner.store import Store
from miner.urls import shown_url, without_url


def _lower_hex(encoded: str) -> str:
    """``encoded`` with its percent escapes in lower-case hex, as some servers and clients write them."""
    first, *escaped = encoded.split("%")
    return first + "".join(f"%{part[:2].lower()}{part[2:]}" for part in escaped)


@pytest.mark.parametrize("case", [str, _lower_hex])
def test_redact_takes_out_a_secret_percent_encoded_in_either_case_of_hex(case: Callable[[str], str]) -> None:
    secret = "Ab/Cd+Ef=Gh t\u00f6k\u20acn"
    for encoded in (quote(secret, safe=""), quote_plus(secret, safe=""), quote(secret, safe="/+=")):
        text = f"refused {case(encoded)}; try again"
        assert redact(text, [secret]) == f"refused {REDACTED}; try again"
    assert redact("Ab%2fCd%2BEf=Gh t%C3%b6k%E2%82%ACn", [secret]) == REDACTED  # escapes of mixed case
    assert redact("Ab/Cd+Ef", [secret]) == "Ab/Cd+Ef"  # a part of it is left to without_cut_secret


def test_a_text_cut_inside_a_secret_loses_the_start_of_it() -> None:
    secret = "Ab/Cd+Ef=Gh42"
    for tail in ("Ab/Cd+E", "Ab%2FCd%2", "Ab%2fCd%", "A"):
        assert without_cut_secret(f"error: {tail}", [secret]) == "error: "
    assert without_cut_secret("error: Ab/Cd+Ef=Gh42 and more", [secret]) == "error: Ab/Cd+Ef=Gh42 and more"
    assert without_cut_secret("error: Xy", [secret]) == "error: Xy"
    # A character cut mid-way is no U+FFFD that would stand between the start of a secret and the cut.
    assert cut_text("x t\u00f6".encode()[:-1], cut=True) == "x t"
    assert without_cut_secret(cut_text("x t\u00f6".encode()[:-1], cut=True), ["t\u00f6ken-123"]) == "x "


def test_a_webhook_url_quoted_across_the_cut_of_its_error_answer_is_not_stored_in_part(
        server: FakeServer, store: Store, service_log: io.StringIO,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Only the first BODY_LIMIT bytes of an error answer are read, and the URL was taken out of them after that cut:
    # a URL quoted across it was left as its start, and the "[redacted]" of each whole one before it (shorter than
    # the URL) brought that start into the 200 characters stored with the attempt.
    base = f"{server.url}/services/"
    token = ("S3CR3T-" + "x9Yq" * 300)[:1000 - len(base)]
    url = base + token
    quoted = f"{url} " * 4
    body = (quoted + "-" * (BODY_LIMIT - 60 - len(quoted)) + url + " and more").encode()
    server.serve(f"/services/{token}", lambda _request: Reply(400, body, content_type="text/plain"))
    assert _hook_alert(store, monkeypatch, url).failed == 1
    [row] = store.outbox_listing(["failed"])
    error = str(row["last_error"])
    assert error.startswith(f"webhook hook: HTTP 400 {REDACTED} {REDACTED}") and error.endswith("-")
    shown = store_text(store) + service_log.getvalue()
    assert "S3CR3T" not in shown and "/services/" not in shown and server.url not in shown


def _echoing_encoded(request: Recorded) -> Reply:
    """A server quoting the request line with its query as it decoded it, encoded again in lower-case hex."""
    query = "&".join(f"{name}={_lower_hex(quote_plus(value, safe=''))}"
                     for name, values in request.query.items() for value in values)
    return Reply(raw=[f"HTTX/9 {request.method} {request.path}?{query} HTTP/1.1\r\n\r\n".encode()])


def test_a_feed_key_a_server_quotes_percent_encoded_is_in_no_error(
        server: FakeServer, caplog: pytest.LogCaptureFixture) -> None:
    # The key was taken out as written and decoded; the server's own encoding of it ("%2f" for "/", "%3d" for "=")
    # was stored as the source's error and logged.
    server.serve("/private.rss", _echoing_encoded)
    outcome, logged = _poll(server, SourceConfig("private", "rss", url_env="FEED_URL"),
                            "/private.rss?key=Ab/Cd+Ef=Gh42xyzQ", caplog)
    said = str(outcome.error)
    assert said.startswith("truncated or broken response from 127.0.0.1: illegal ") and REDACTED in said
    assert "Gh42xyzQ" not in said + logged and "Ab%2" not in said + logged


@pytest.mark.parametrize("case", [str, _lower_hex])
def test_a_pagerduty_routing_key_an_answer_quotes_percent_encoded_is_not_stored(
        server: FakeServer, store: Store, service_log: io.StringIO,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch, case: Callable[[str], str]) -> None:
    # A proxy or gateway refusing the event may quote it as a form would carry it.
    key = "pd/R0ut+1ng=K3y"

    def refuse(request: Recorded) -> Reply:
        sent = json.loads(request.body)["routing_key"]
        return Reply(400, f"invalid: routing_key={case(quote_plus(sent, safe=''))}".encode())

    _refused_page(server, store, monkeypatch, key, refuse)
    shown = store_text(store) + service_log.getvalue()
    assert f"routing_key={REDACTED}" in shown
    assert "R0ut" not in shown and "K3y" not in shown


def test_a_login_refusal_quoting_the_password_percent_encoded_shows_none_of_it(
        server: FakeServer, caplog: pytest.LogCaptureFixture) -> None:
    password = "app/pa55+w0rd=Q9"

    def bluesky(request: Recorded) -> Reply:
        sent = json.loads(request.body)
        return Reply(401, json.dumps({"error": f"AuthFailed password={quote(sent['password'], safe='')}"}).encode(),
                     content_type="application/json")

    server.serve("/xrpc/com.atproto.server.createSession", bluesky)
    source = SourceConfig("b", "bluesky", url=server.url, query="down", env={"identifier": "BID", "password": "BPW"})
    env = {"BID": "me.example", "BPW": password}
    with caplog.at_level("DEBUG", logger="miner"), Poller(CollectSettings(), hash_key=b"k", environ=env) as poller:
        error = str(poller.poll_isolated(source).error)
    assert error.startswith(f"bluesky login refused (AuthFailed password={REDACTED})")
    assert "pa55" not in error + caplog.text


HOST_KEY = "0123abcd4567ef89"  # a key as a label of a URL's host, lower-case as DNS and its errors write it


def test_a_url_from_the_environment_is_shown_without_a_host_label_that_reads_as_a_key() -> None:
    assert (shown_url(f"https://{HOST_KEY}.hooks.example:8443/services/x", secret=True)
            == f"https://{REDACTED}.hooks.example:8443/{REDACTED}")
    assert shown_url(f"https://feed-{HOST_KEY}.example/", secret=True) == f"https://{REDACTED}.example/"
    # A host's name, an IP address (even one of hex groups) and a URL in a config file keep their host.
    assert shown_url("https://hooks.slack.com/services/x", secret=True) == f"https://hooks.slack.com/{REDACTED}"
    assert shown_url("http://[2001:db8:1a2b:3c4d::1]/", secret=True) == "http://[2001:db8:1a2b:3c4d::1]/"
    assert shown_url(f"https://{HOST_KEY}.hooks.example/feed") == f"https://{HOST_KEY}.hooks.example/feed"
    assert (without_url(f"no route to {HOST_KEY.upper()}.hooks.example", f"https://{HOST_KEY}.hooks.example/x")
            == f"no route to {REDACTED}.hooks.example")


@pytest.mark.parametrize("host", [f"{HOST_KEY}.invalid", f"x\u2603{HOST_KEY}.invalid"])
def test_a_webhook_host_that_holds_a_key_is_named_without_it(
        store: Store, service_log: io.StringIO, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        no_proxy_nor_trust: None, host: str) -> None:
    # The webhook's URL is the secret, but the messages of a failed POST named its host as written: a name not found
    # ("host name <key>.invalid not found") and one IDNA refuses (whose words quote its label too).
    _hook_alert(store, monkeypatch, f"http://{host}/services/x")
    [row] = store.outbox_listing(["pending", "failed"])
    error = str(row["last_error"])
    assert error.startswith((f"webhook hook: host name {REDACTED}.invalid not found",
                             f"webhook hook: HOOK_URL: host {REDACTED}.invalid is not a valid internationalised"))
    assert HOST_KEY not in store_text(store) + service_log.getvalue()


@pytest.mark.parametrize("host", [f"feed-{HOST_KEY}.invalid", f"x\u2603{HOST_KEY}.invalid"])
def test_a_feed_host_that_holds_a_key_is_named_without_it(caplog: pytest.LogCaptureFixture, no_proxy_nor_trust: None,
                                                          host: str) -> None:
    env = {"FEED_URL": f"http://{host}/rss"}
    with caplog.at_level("DEBUG", logger="miner"), Poller(
            CollectSettings(), [ServiceConfig("GitHub")], hash_key=b"k", environ=env) as poller:
        error = str(poller.poll_isolated(SourceConfig("private", "rss", url_env="FEED_URL")).error)
    assert error.startswith((f"host name {REDACTED}.invalid not found",
                             f"environment variable FEED_URL (url_env) has host {REDACTED}.invalid, which is not"))
    assert HOST_KEY not in error + caplog.text


RSS = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>private</title><link>/</link>
<item><title>WhatsApp down for everyone</title><link>/items/1</link><pubDate>Mon, 07 Dec 2026 04:00:00 GMT</pubDate>
</item></channel></rss>"""


def test_a_feed_on_a_host_that_holds_a_key_is_read_as_before_and_its_errors_name_no_key(
        server: FakeServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
        no_proxy_nor_trust: None) -> None:
    # The server stands behind a proxy (the loopback one), so the feed's host need not resolve. An error named the
    # host as written; and the links of its items, resolved against the feed's URL, must stay links: a "[redacted]"
    # label reads as a broken IPv6 bracket, which lost each item's link and changed its id. Its key is "_redacted".
    server.serve("/private/rss", Reply(200, RSS, content_type="application/rss+xml"))
    server.serve("/revoked/rss", Reply(403, b"forbidden", content_type="text/plain"))
    monkeypatch.setenv("HTTP_PROXY", server.url)
    source = SourceConfig("private", "rss", url_env="FEED_URL")
    outcomes = []
    with caplog.at_level("DEBUG", logger="miner"):
        for path in ("/private/rss", "/revoked/rss"):
            env = {"FEED_URL": f"http://feed-{HOST_KEY}.invalid{path}"}
            with Poller(CollectSettings(), [ServiceConfig("WhatsApp")], hash_key=b"k", environ=env) as poller:
                outcomes.append(poller.poll_isolated(source))
    assert outcomes[0].result is not None
    [post] = outcomes[0].result.posts
    assert post.url == "http://_redacted.invalid/items/1" and post.external_id.startswith(f"{post.url}#")
    assert str(outcomes[1].error) == f"HTTP 403 from {REDACTED}.invalid (check the source's credentials and URL)"
    assert HOST_KEY not in str(outcomes[1].error) + caplog.text

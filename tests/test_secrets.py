"""Secrets from the environment never show: not in messages, logs, the store, post links or ids, nor in a repr.

Each test gives a secret a value found nowhere else and looks for it in everything a person or a log could see.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from fakeserver import FakeServer, Recorded, Reply
from smtp_server import SmtpServer
from test_alerts_support import T0, open_incident, settings, store_text

from miner.alerts import dispatch, plan_notifications
from miner.alerts.delivery import Senders, SmtpSender
from miner.alerts.dispatcher import DispatchStats
from miner.alerts.settings import RouteSettings, SmtpSettings, WebhookSettings
from miner.alerts.webhook_send import HttpWebhookSender
from miner.alerts.webhooks import Reply as WebhookReply
from miner.collectors import CollectSettings, Poller
from miner.collectors.http import Response
from miner.collectors.poller import PollOutcome
from miner.collectors.tokens import Token
from miner.config import ServiceConfig, SourceConfig, parse_config
from miner.errors import SourceError
from miner.logsetup import setup_logging
from miner.records import FetchResult
from miner.store import Store
from miner.urls import shown_url

TOKEN = "S3CR3T-T0K3N-7f3a"  # a private feed's key, as a path segment of its URL


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


def test_a_relative_location_is_shown_without_its_query_or_login(server: FakeServer,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    # A URL without a scheme (a relative Location header, or one of "//host") was shown as it came, with its query
    # and user:password, in the poll's error, the log and sources.last_error.
    assert shown_url(f"/session?token={TOKEN}#x") == "/session"
    assert shown_url(f"//me:{TOKEN}@example.org/feed?key={TOKEN}") == "//example.org/feed"
    server.serve("/xrpc/com.atproto.server.createSession",
                 Reply(307, headers={"Location": f"/xrpc/com.atproto.server.createSession?session={TOKEN}"}))
    source = SourceConfig("b", "bluesky", url=server.url, query="down", env={"identifier": "BID", "password": "BPW"})
    outcome, logged = _poll(server, source, "", caplog)
    assert str(outcome.error) == ("HTTP 307 from 127.0.0.1 (a login is not sent on to a redirect; it points to "
                                  "/xrpc/com.atproto.server.createSession)")
    assert TOKEN not in logged


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
    server.fault(path, kind, delay=10.0)  # "slow": far past its 0.3 s, however late that fires on a loaded runner
    # Only "slow" is to time out: the others (four requests of a redirect loop, 5 MB of a huge body) could take
    # more than 0.3 s on a loaded CI runner.
    timeout = 0.3 if kind == "slow" else 30.0
    outcome, logged = _poll(server, SourceConfig("private", "rss", url_env="FEED_URL", timeout=timeout), path,
                            caplog)
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


def test_absolute_links_under_the_key_of_a_feed_url_from_the_environment_are_kept_without_it(
        server: FakeServer, store: Store, caplog: pytest.LogCaptureFixture) -> None:
    # A private feed's items link to pages under its key (a tracker's /download/<id>/<passkey>), written out whole:
    # the key went into the store with every post's url and id, and into each status incident's.
    path = f"/feeds/{TOKEN}/rss"
    base = f"{server.url}/feeds/{TOKEN}"
    rss = (f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
           f"<item><title>GitHub is down</title><link>{base}/items/5</link></item>"
           f"<item><title>GitHub login fails</title><guid>{base}/items/6</guid></item>"
           f"<item><title>GitHub API errors</title><guid isPermaLink='false'>tag:{TOKEN}:7</guid></item>"
           "</channel></rss>").encode()
    server.serve(path, Reply(200, rss, content_type="application/rss+xml"))
    source = SourceConfig("private", "rss", url_env="FEED_URL")
    # What an earlier miner stored of the first item: its link, key and all, as its url and id.
    store.sync_sources([source])
    store.database.execute("INSERT INTO posts (source, external_id, text, url, created_at, fetched_at) VALUES "
                           "(?, ?, 'GitHub is down', ?, ?, ?)", ("private", f"{base}/items/5", f"{base}/items/5",
                                                                 T0.isoformat(), T0.isoformat()))
    outcome, logged = _poll(server, source, path, caplog)
    assert outcome.result is not None and len(outcome.result.posts) == 3
    assert TOKEN not in _kept(outcome.result) and TOKEN not in logged
    assert {p.url for p in outcome.result.posts} == {f"{server.url}/feeds/[redacted]/items/5",
                                                    f"{server.url}/feeds/[redacted]/items/6", None}
    now = datetime.now(UTC)
    assert store.save_fetch(source.name, outcome.result, now, now).posts_new == 2  # the first one the store had
    assert TOKEN not in json.dumps([list(r) for r in store.database.rows("SELECT * FROM posts")])
    # A status feed's incidents likewise.
    atom = (f'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>s</title><id>s</id>'
            f"<updated>2026-11-27T10:00:00Z</updated><entry><title>Degraded API</title><id>{base}/incidents/1</id>"
            f'<link href="{base}/incidents/1"/><updated>2026-11-27T10:00:00Z</updated>'
            "<content>Resolved - fixed</content></entry></feed>").encode()
    server.serve(path, Reply(200, atom, content_type="application/atom+xml"))
    outcome, logged = _poll(server, SourceConfig("status", "status_feed", url_env="FEED_URL",
                                                 services=("GitHub",)), path, caplog)
    assert outcome.result is not None and len(outcome.result.incidents) == 1
    assert TOKEN not in _kept(outcome.result) and TOKEN not in logged


def test_a_link_made_id_an_earlier_miner_kept_without_a_passkey_is_given_the_id_a_poll_gives_it(
        server: FakeServer, store: Store, caplog: pytest.LogCaptureFixture) -> None:
    # An item's link under the feed's key with a ?passkey= too: the release before kept its id without the passkey,
    # with a hash of the whole link after "#" (link_id, migration 0017). Rewritten at the first poll as any other
    # id, it took a second hash, of that id: no poll gives it, and the entry was found again by its link and text
    # only, the source told at each start of miner that its feed listed a stored post under a new id.
    from miner.urls import link_id, stored_link

    path = f"/feeds/{TOKEN}/rss"
    link = f"{server.url}/feeds/{TOKEN}/items/5?passkey=0123456789abcdef"
    rss = (f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
           f"<item><title>GitHub is down</title><link>{link.replace('&', '&amp;')}</link></item>"
           "</channel></rss>").encode()
    server.serve(path, Reply(200, rss, content_type="application/rss+xml"))
    source = SourceConfig("private", "rss", url_env="FEED_URL")
    store.sync_sources([source])
    store.database.execute("INSERT INTO posts (source, external_id, text, url, created_at, fetched_at) VALUES "
                           "(?, ?, 'GitHub is down', ?, ?, ?)", ("private", link_id(link), stored_link(link),
                                                                 T0.isoformat(), T0.isoformat()))
    outcome, _logged = _poll(server, source, path, caplog)
    assert outcome.result is not None
    [post] = outcome.result.posts
    now = datetime.now(UTC)
    caplog.clear()
    assert store.save_fetch(source.name, outcome.result, now, now).posts_new == 0
    assert [r["external_id"] for r in store.database.rows("SELECT external_id FROM posts")] == [post.external_id]
    assert "under a new id" not in caplog.text and "told by their link" not in caplog.text, caplog.text


def test_a_user_name_token_in_a_forum_url_is_not_copied_into_post_links(server: FakeServer,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    server.serve_fixture("/latest.json", "discourse/latest.json")
    host = server.url.removeprefix("http://")
    outcome, _ = _poll(server, SourceConfig("forum", "discourse", url=f"http://{TOKEN}@{host}"), "", caplog)
    assert outcome.result is not None and outcome.result.posts
    assert TOKEN not in _kept(outcome.result)
    assert all(str(p.url).startswith(f"{server.url}/t/") for p in outcome.result.posts)



# Objects holding secrets --------------------------------------------------------------------------------------

SECRETS = {"FEED_URL": f"https://feeds.example.org/feeds/{TOKEN}/rss", "BPW": "app-pa55word-Q9",
           "SMTP_PW": "smtp-pa55-Z7", "HOOK_URL": "https://hooks.example.org/services/HOOK-S3CR3T-88",
           "MINER_HASH_KEY": "hash-k3y-W4", "PD_KEY": "pd-r0ut1ng-k3y-K5"}


def _shown(*objects: object) -> str:
    return "\n".join(f"{obj!r}\n{obj!s}" for obj in objects)


def _leaked(text: str) -> list[str]:
    pieces = [TOKEN, "HOOK-S3CR3T", *(v for k, v in SECRETS.items() if k not in ("FEED_URL", "HOOK_URL"))]
    return [p for p in pieces if p in text]


def test_no_repr_or_str_shows_a_secret() -> None:
    config = parse_config(
        '[[services]]\nname = "GitHub"\n'
        '[[sources]]\nname = "private"\ntype = "rss"\nurl_env = "FEED_URL"\n'
        f'[[sources]]\nname = "keyed"\ntype = "rss"\nurl = "https://{TOKEN}@example.org/f.rss?api_key={TOKEN}"\n'
        '[[sources]]\nname = "b"\ntype = "bluesky"\nquery = "down"\nenv = { identifier = "BID", password = "BPW" }\n'
        '[alerts.smtp]\nusername_env = "SMTP_USER"\npassword_env = "SMTP_PW"\n'
        '[[alerts.webhooks]]\nname = "ops"\nurl_env = "HOOK_URL"\n'
        '[[alerts.webhooks]]\nname = "pd"\nformat = "pagerduty"\nrouting_key_env = "PD_KEY"\n')
    env = {**SECRETS, "BID": "me.example", "SMTP_USER": "alerts"}
    access, refresh = f"access-{TOKEN}", f"refresh-{TOKEN}"
    with Poller.from_config(config, environ=env) as poller:
        resolved = poller.resolve(config.sources[0])
        assert resolved.url == SECRETS["FEED_URL"]  # the request still gets the real URL
        token = Token(access=access, expires_at=datetime.now(UTC), refresh=refresh)
        response = Response(SECRETS["FEED_URL"], 200, {"content-type": "text/xml"}, b"<rss/>", secret_url=True)
        reply = WebhookReply(500, httpx.Headers(), f"cannot POST {SECRETS['HOOK_URL']}".encode())
        senders = Senders(email=SmtpSender(config.alerts.smtp, env), webhook=HttpWebhookSender(env))
        shown = _shown(config, resolved, poller.ctx, poller, token, response, reply, senders)
    assert access not in shown and refresh not in shown
    assert _leaked(shown) == []
    assert "https://feeds.example.org/[redacted]" in shown and "url_env='FEED_URL'" in shown  # still says what it is


def test_a_failing_login_logged_with_its_traceback_shows_no_password(
        server: FakeServer, caplog: pytest.LogCaptureFixture) -> None:
    env = {"BID": "me.example", "BPW": SECRETS["BPW"]}
    source = SourceConfig("b", "bluesky", url=server.url, query="down", env={"identifier": "BID", "password": "BPW"})
    login = "/xrpc/com.atproto.server.createSession"
    replies = [Reply(500, b"<html>Internal Server Error</html>", content_type="text/html"),
               Reply(401, b'{"error": "AuthenticationRequired"}', content_type="application/json"),
               Reply(200, b'{"accessJwt": ""}', content_type="application/json"),
               Reply(200, b"x" * 100, content_type="application/json", content_length=1000)]
    log = logging.getLogger("miner.test")
    with caplog.at_level("DEBUG"), Poller(CollectSettings(), hash_key=b"k", environ=env) as poller:
        for reply in replies:
            server.serve(login, reply)
            try:
                poller.poll(source)
            except SourceError:
                log.exception("bluesky login failed for %r with %r", source, poller.ctx)
            outcome = poller.poll_isolated(source)
            log.error("outcome %r", outcome)
    assert len(server.requests_to(login)) == 2 * len(replies)
    assert caplog.text.count("Traceback") == len(replies) and _leaked(caplog.text) == []


def test_a_failing_smtp_login_shows_no_password(store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    smtp = SmtpServer(tls="starttls", folder=tmp_path, login=("alerts", "the-right-one"))
    stats = _alert_logging_in(store, smtp, ("alerts", SECRETS["SMTP_PW"]), tmp_path, caplog, monkeypatch)
    assert stats.sent == 0 and not smtp.inbox.messages
    errors = [str(row["last_error"]) for row in store.outbox_listing(["pending", "failed"])]
    assert errors and all(e.startswith("SMTP 535") for e in errors)
    assert _leaked("\n".join([caplog.text, *errors])) == []


def _alert_logging_in(store: Store, smtp: SmtpServer, login: tuple[str, str], tmp_path: Path,
                      caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> DispatchStats:
    """Send an incident's alert through ``smtp`` (started here, and stopped), logging in as ``login`` (user,
    password, from SMTP_USER and SMTP_PW), with the log captured from DEBUG up."""
    smtp.start()
    try:
        monkeypatch.setenv("SMTP_USER", login[0])
        monkeypatch.setenv("SMTP_PW", login[1])
        cfg = settings(routes=(RouteSettings(name="oncall", email=("oncall@example.org",)),), webhooks=(),
                       smtp=SmtpSettings(host="127.0.0.1", port=smtp.port, timeout=5, username_env="SMTP_USER",
                                         password_env="SMTP_PW", ca_file=str(tmp_path / "cert.pem")))
        open_incident(store, "WhatsApp", T0)
        plan_notifications(store, cfg, T0)
        with caplog.at_level("DEBUG"):
            return dispatch(store, cfg, T0 + timedelta(minutes=5), worker_id="w")
    finally:
        smtp.stop()


class _EchoingLogin(SmtpServer):
    """Refuses every login with a reply that quotes what it got, as servers quoting a command they refuse do."""

    def _authenticate(self, server: object, session: object, envelope: object, mechanism: str,
                      data: object) -> AuthResult:
        assert isinstance(data, LoginPassword)
        user, password = data.login.decode(), data.password.decode()
        blob = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        return AuthResult(success=False, handled=False,
                          message=f"535 5.7.8 AUTH PLAIN {blob} refused: {user} / {password} unknown")


def test_an_smtp_reply_quoting_the_login_shows_neither_the_user_nor_the_password(
        store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    # The reply is quoted in the outbox's last_error, `miner outbox`, the log and the digest's failing channels, as
    # a webhook's error answer is: one that quoted the credentials (as such, or base64 as AUTH sent them) put them
    # there, where the routing key a PagerDuty answer quotes was taken out.
    smtp = _EchoingLogin(tls="starttls", folder=tmp_path, login=("alerts", "unused"))
    user, password = "alerts-9d1c@example.org", SECRETS["SMTP_PW"]
    stats = _alert_logging_in(store, smtp, (user, password), tmp_path, caplog, monkeypatch)
    assert stats.sent == 0 and not smtp.inbox.messages
    errors = [str(row["last_error"]) for row in store.outbox_listing(["pending", "failed"])]
    assert errors == ["SMTP 535 5.7.8 AUTH PLAIN [redacted] refused: [redacted] / [redacted] unknown"]
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("miner")]  # not the server's own log
    shown = "\n".join([*logged, store_text(store)])
    assert logged and _leaked(shown) == [] and user not in shown
    assert base64.b64encode(password.encode()).decode() not in shown


@pytest.fixture
def service_log(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """What `miner serve --log-level debug` would write to stderr; the logging setup is put back after."""
    root = logging.getLogger()
    loggers = {name: logging.getLogger(name) for name in ("apscheduler", "httpx", "httpcore")}
    saved = root.handlers[:], root.level, {name: logger.level for name, logger in loggers.items()}
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    setup_logging("debug")
    yield stream
    root.handlers[:], root.level = saved[0], saved[1]
    for name, logger in loggers.items():
        logger.setLevel(saved[2][name])


@pytest.mark.parametrize("bad", ["\n", "\r\nX-Injected: 1", "\x00", "\u00e9"], ids=["lf", "crlf", "nul", "non-ascii"])
def test_a_token_the_server_sent_that_cannot_be_sent_back_is_not_quoted(
        server: FakeServer, service_log: io.StringIO, bad: str) -> None:
    # httpx refuses such a header value with a message quoting it whole: "Illegal header value b'Bearer <token>'",
    # and httpcore's debug log quotes that exception.
    access = f"eyJ.{TOKEN}{bad}x"
    server.serve("/xrpc/com.atproto.server.createSession",
                 Reply(200, json.dumps({"accessJwt": access}).encode(), content_type="application/json"))
    server.serve("/api/v1/access_token",
                 Reply(200, json.dumps({"access_token": access}).encode(), content_type="application/json"))
    env = {"BID": "me.example", "BPW": "pw", "RID": "id", "RSECRET": "secret"}
    sources = [SourceConfig("b", "bluesky", url=server.url, query="down", env={"identifier": "BID", "password": "BPW"}),
               SourceConfig("r", "reddit", url=server.url, query="down",
                            env={"client_id": "RID", "client_secret": "RSECRET"})]
    with Poller(CollectSettings(), hash_key=b"k", environ=env) as poller:
        errors = [str(poller.poll_isolated(source).error) for source in sources]
    unsendable = "could not be sent: a header holds a character HTTP does not allow (in a token the server sent?)"
    assert errors == [f"request to {server.url}/xrpc/app.bsky.feed.searchPosts {unsendable}",
                      f"request to {server.url}/search.json {unsendable}"]
    logged = service_log.getvalue()
    assert f"source r failed: request to {server.url}/search.json {unsendable}" in logged
    assert TOKEN not in logged and "internal error" not in logged


def test_an_unset_variable_whose_name_reads_as_the_secret_is_not_named(
        server: FakeServer, store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # The secret written where its variable's name belongs, and not set: the error about it is stored (a source's
    # last error, an outbox row's) and logged, so it must not quote that "name".
    pasted = "hunter2-pasted-here"
    source = SourceConfig("b", "bluesky", url=server.url, query="down", env={"identifier": "BID", "password": pasted})
    with Poller(CollectSettings(), hash_key=b"k", environ={"BID": "me.example"}) as poller:
        outcome = poller.poll_isolated(source)
    monkeypatch.delenv(pasted, raising=False)
    cfg = settings(routes=(RouteSettings(name="oncall", email=("oncall@example.org",)),), webhooks=(),
                   smtp=SmtpSettings(host="127.0.0.1", port=1, timeout=5, username_env="SMTP_USER",
                                     password_env=pasted))
    monkeypatch.setenv("SMTP_USER", "alerts")
    open_incident(store, "WhatsApp", T0)
    plan_notifications(store, cfg, T0)
    with caplog.at_level("DEBUG"):
        dispatch(store, cfg, T0 + timedelta(minutes=5), worker_id="w")
    errors = [str(row["last_error"]) for row in store.outbox_listing(["pending", "failed"])]
    polled = str(outcome.error)
    assert "is not set" in polled and errors and all("is not set" in e for e in errors)
    assert pasted not in "\n".join([polled, caplog.text, *errors])


def test_collectors_do_not_name_an_unset_variable_that_reads_as_the_secret(
        server: FakeServer, caplog: pytest.LogCaptureFixture) -> None:
    # The same rule as for env.* and the alerts' variables: the author-hash key's variable (warned of at every
    # start), a reddit client_id (its fallback note is logged and stored as the source's warning) and a url_env
    # (its error is the source's last error) each with the secret pasted in place of a name, and none set.
    server.serve_fixture("/search.rss", "reddit/search.rss")
    pasted = "hunter2_pasted_here"  # a legal variable name, which lower case gives away as a secret
    config = parse_config(f'[store]\nhash_key_env = "{pasted}"\n')
    reddit = SourceConfig("r", "reddit", url=server.url, query="down",
                          env={"client_id": pasted, "client_secret": "REDDIT_SECRET"})
    feed = SourceConfig("f", "rss", url_env=pasted)
    with caplog.at_level("DEBUG", logger="miner"), Poller.from_config(config, environ={}) as poller:
        outcomes = [poller.poll_isolated(reddit), poller.poll_isolated(feed)]
    assert outcomes[0].result is not None and "is not set" in outcomes[0].result.warnings[0]
    assert "is not set" in str(outcomes[1].error) and "is not set" in caplog.text
    assert pasted not in "\n".join([caplog.text, _kept(outcomes[0].result), str(outcomes[1].error)])


def _hook_alert(store: Store, monkeypatch: pytest.MonkeyPatch, url: str) -> DispatchStats:
    """The run that sends a new WhatsApp incident's alert to webhook "hook", its URL ``url`` (from HOOK_URL)."""
    monkeypatch.setenv("HOOK_URL", url)
    cfg = settings(routes=(RouteSettings(name="ops", webhooks=("hook",)),), group_wait=0.0,
                   webhooks=(WebhookSettings(name="hook", url_env="HOOK_URL"),))
    open_incident(store, "WhatsApp", T0)
    plan_notifications(store, cfg, T0)
    return dispatch(store, cfg, T0, worker_id="w")


def _refused_page(server: FakeServer, store: Store, monkeypatch: pytest.MonkeyPatch, key: str,
                  refuse: Callable[[Recorded], Reply]) -> None:
    """The PagerDuty event of a new WhatsApp incident, sent with routing key ``key`` (from PD_KEY) and answered by
    ``refuse``: failed for good."""
    server.serve("/v2/enqueue", refuse)
    monkeypatch.setenv("PD_KEY", key)
    cfg = settings(routes=(RouteSettings(name="pager", webhooks=("pd",)),), group_wait=0.0,
                   webhooks=(WebhookSettings(name="pd", format="pagerduty", url=server.url + "/v2/enqueue",
                                             routing_key_env="PD_KEY"),))
    open_incident(store, "WhatsApp", T0)
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0, worker_id="w").failed == 1


def test_a_pagerduty_routing_key_is_in_no_log_store_row_or_error(
        server: FakeServer, store: Store, service_log: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    # The key travels in each event's body; PagerDuty (or a proxy) answering a 400 may quote the event.
    key = SECRETS["PD_KEY"]
    _refused_page(server, store, monkeypatch, key,
                  lambda request: Reply(400, b'{"errors": ["invalid: ' + request.body + b'"]}'))
    [request] = server.requests_to("/v2/enqueue")
    assert json.loads(request.body)["routing_key"] == key  # it was sent
    kept = store_text(store)
    assert "HTTP 400" in kept and "[redacted]" in kept
    assert _leaked(kept + service_log.getvalue()) == []


def _echoing(template: bytes) -> Callable[[Recorded], Reply]:
    """A reply, below HTTP, quoting the request line where httpx finds it malformed: a server that echoes what it got
    (or what listens on a wrong port), as a status line, a header line or a chunk's size line."""
    def reply(request: Recorded) -> Reply:
        query = f"?{urlencode(request.query, doseq=True)}" if request.query else ""
        return Reply(raw=[template.replace(b"{}", f"{request.method} {request.path}{query} HTTP/1.1".encode())])
    return reply


ECHOES = [b"HTTX/9 {}\r\n\r\n", b"HTTP/1.1 200 OK\r\nbad header {}\r\n\r\n",
          b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{}\r\n"]


@pytest.mark.parametrize("template", ECHOES)
def test_a_malformed_answer_quoting_the_request_line_shows_no_key_of_a_source(
        server: FakeServer, caplog: pytest.LogCaptureFixture, template: bytes) -> None:
    # httpx's words for an answer it cannot read quote the line it found malformed, and the source's error (stored,
    # logged, in `miner status` and the digest) quoted them: the path and query that shown_url leaves out were in it.
    path = f"/feeds/{TOKEN}/rss"
    server.serve(path, _echoing(template))
    outcome, logged = _poll(server, SourceConfig("private", "rss", url_env="FEED_URL"), f"{path}?key={TOKEN}",
                            caplog)
    said = str(outcome.error)
    assert said.startswith("truncated or broken response from 127.0.0.1: illegal ") and "[redacted]" in said
    assert TOKEN not in said and TOKEN not in logged
    # A url in feeds.toml keeps its path in messages, as shown_url shows it, and loses its query.
    server.serve("/public.rss", _echoing(template))
    outcome, logged = _poll(server, SourceConfig("public", "rss", url=f"{server.url}/public.rss?api_key={TOKEN}"),
                            "", caplog)
    assert "/public.rss" in str(outcome.error) and TOKEN not in str(outcome.error) and TOKEN not in logged


@pytest.mark.parametrize("template", ECHOES[:2])
def test_a_malformed_answer_quoting_the_request_line_shows_no_webhook_url(
        server: FakeServer, store: Store, service_log: io.StringIO, monkeypatch: pytest.MonkeyPatch,
        template: bytes) -> None:
    secret = "HOOK-S3CR3T-88"
    server.serve(f"/services/{secret}", _echoing(template))
    assert _hook_alert(store, monkeypatch, f"{server.url}/services/{secret}").retried == 1
    [row] = store.outbox_listing(["pending"])
    assert str(row["last_error"]).startswith("webhook hook: 127.0.0.1:")
    assert "without a valid answer (illegal " in str(row["last_error"])
    assert secret not in store_text(store) + service_log.getvalue()


def test_an_smtp_password_that_is_not_ascii_fails_for_good_without_a_character_of_it(
        store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    # smtplib sends AUTH as ASCII only: its UnicodeEncodeError ("can't encode character '\xe4' in position 8") was an
    # unexpected error, its traceback logged and its message stored at every retry, for days: one character of the
    # password, and where it stands.
    smtp = SmtpServer(tls="starttls", folder=tmp_path, login=("alerts", "p\u00e4ssw\u00f6rd-9Z"))
    smtp.start()
    try:
        monkeypatch.setenv("SMTP_USER", "alerts")
        monkeypatch.setenv("SMTP_PW", "p\u00e4ssw\u00f6rd-9Z")
        cfg = settings(routes=(RouteSettings(name="oncall", email=("oncall@example.org",)),), webhooks=(),
                       smtp=SmtpSettings(host="127.0.0.1", port=smtp.port, timeout=5, username_env="SMTP_USER",
                                         password_env="SMTP_PW", ca_file=str(tmp_path / "cert.pem")))
        open_incident(store, "WhatsApp", T0)
        plan_notifications(store, cfg, T0)
        with caplog.at_level("DEBUG", logger="miner"):
            stats = dispatch(store, cfg, T0 + timedelta(minutes=5), worker_id="w")
    finally:
        smtp.stop()
    assert stats.failed == 1 and not smtp.inbox.messages
    [row] = store.outbox_listing(["failed"])
    assert row["last_error"] == ("SMTP login: SMTP_PW holds a character other than ASCII, which smtplib cannot send "
                                 "in AUTH")
    shown = caplog.text + store_text(store)
    assert "Traceback" not in shown and "\\xe4" not in shown and "\u00e4" not in shown


def test_a_login_refusal_quoting_the_credentials_shows_none_of_them(server: FakeServer,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    # The error names Reddit's token endpoint and Bluesky's createSession answer with are quoted in the source's
    # error; one (a mirror, a proxy in front) quoting what it was sent put the client secret or password there.
    def reddit(request: Recorded) -> Reply:
        client = base64.b64decode(request.headers["authorization"].split()[1]).decode()
        return Reply(200, json.dumps({"error": f"invalid_client {client}"}).encode(), content_type="application/json")

    def bluesky(request: Recorded) -> Reply:
        sent = json.loads(request.body)
        return Reply(401, json.dumps({"error": f"AuthFailed {sent['identifier']}/{sent['password']}"}).encode(),
                     content_type="application/json")

    server.serve("/api/v1/access_token", reddit)
    server.serve("/xrpc/com.atproto.server.createSession", bluesky)
    env = {"RID": "reddit-client-4711", "RSECRET": "reddit-s3cr3t-Q8", "BID": "me.example", "BPW": SECRETS["BPW"]}
    sources = [SourceConfig("r", "reddit", url=server.url, query="down",
                            env={"client_id": "RID", "client_secret": "RSECRET"}),
               SourceConfig("b", "bluesky", url=server.url, query="down",
                            env={"identifier": "BID", "password": "BPW"})]
    with caplog.at_level("DEBUG", logger="miner"), Poller(CollectSettings(), hash_key=b"k", environ=env) as poller:
        errors = [str(poller.poll_isolated(source).error) for source in sources]
    assert errors == ["reddit token request refused (invalid_client [redacted]:[redacted]): check "
                      "client_id/client_secret",
                      "bluesky login refused (AuthFailed [redacted]/[redacted]): check env.identifier and "
                      "env.password"]
    shown = "\n".join([*errors, caplog.text])
    assert _leaked(shown) == [] and "reddit-s3cr3t-Q8" not in shown and "reddit-client-4711" not in shown

"""Webhooks against a real HTTP server on 127.0.0.1: payloads, 500s and timeouts retried, a 400 failed."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import pytest
from click.testing import CliRunner
from test_alerts_support import BUCKET, T0, add_official, open_incident, seed_posts, settings

from miner.alerts import DispatchStats, dispatch, plan_notifications
from miner.alerts.settings import AlertSettings, RouteSettings, WebhookSettings
from miner.cli import main
from miner.logsetup import JsonFormatter, TextFormatter
from miner.store import Store
from miner.timeutil import parse_iso, utcnow


class Hook:
    """Answers each POST with the next scripted reply: an HTTP status, ("sleep", seconds) before a 200, or
    ("echo", status, words...): that status with the request path (and the words) in the body, or
    ("trickle", status, size, pause[, headers_too]): see ``_trickle``, ("big", status, size): see ``_big``, or
    ("retry-after", status, value): that status with a Retry-After header, or ("redirect", status, location)."""

    def __init__(self) -> None:
        self.script: list[Any] = []
        self.bodies: list[dict[str, Any]] = []
        self.big_sent = 0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                reply = hook.script.pop(0) if hook.script else 200
                if isinstance(reply, tuple) and reply[0] == "trickle":
                    self._trickle(*reply[1:])
                    return
                if isinstance(reply, tuple) and reply[0] == "big":
                    self._big(*reply[1:])
                    return
                if isinstance(reply, tuple) and reply[0] == "redirect":
                    self._reply(reply[1], b"Moved", {"Location": reply[2]})
                    return
                if isinstance(reply, tuple) and reply[0] == "retry-after":
                    self._reply(reply[1], b"slow down", {"Retry-After": reply[2]})
                    return
                if isinstance(reply, tuple) and reply[0] == "echo":
                    # A receiver (Express and many others) quoting the request line in its error body.
                    self._reply(reply[1], f"bad request to {self.path} ({' '.join(reply[2:])})".encode())
                    return
                if isinstance(reply, tuple):
                    time.sleep(reply[1])
                    reply = 200
                if reply == 200:
                    hook.bodies.append(json.loads(body))
                self.send_response(reply)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if reply == 200 else b"invalid_payload")

            def _reply(self, status: int, body: bytes, headers: dict[str, str | list[str]] | None = None) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    for one in [value] if isinstance(value, str) else value:  # a list: the header once per value
                        self.send_header(name, one)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _trickle(self, status: int, size: int, pause: float, headers_too: bool = False) -> None:
                """``status`` with a ``size``-byte body sent one byte per ``pause`` seconds (the status line and
                headers too with ``headers_too``): every read is quick, the whole answer slow."""
                head = f"HTTP/1.1 {status} Slow\r\nContent-Length: {size}\r\n\r\n".encode()
                try:
                    if headers_too:
                        for i in range(len(head)):
                            self.wfile.write(head[i:i + 1])
                            self.wfile.flush()
                            time.sleep(pause)
                    else:
                        self.wfile.write(head)
                    for _ in range(size):
                        self.wfile.write(b"x")
                        self.wfile.flush()
                        time.sleep(pause)
                except OSError:  # the client gave up, as it should
                    pass

            def _big(self, status: int, size: int) -> None:
                """``status`` with a ``size``-byte body; counts in ``hook.big_sent`` what the client let through."""
                self.send_response(status)
                self.send_header("Content-Length", str(size))
                self.end_headers()
                block = b"y" * 65536
                try:
                    while hook.big_sent < size:
                        self.wfile.write(block)
                        hook.big_sent += len(block)
                except OSError:  # the client stopped reading and closed
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/SECRET-TOKEN"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hook]:
    h = Hook()
    monkeypatch.setenv("MINER_TEST_HOOK", h.url)
    yield h
    h.close()


def hook_settings(fmt: Literal["json", "slack"] = "json", timeout: float = 10.0) -> AlertSettings:
    """``timeout``: generous for a POST that is to be answered (0.5 s timed out on a loaded CI runner); short only
    where the test waits for it to run out."""
    route = RouteSettings(name="chat", webhooks=("hook",))
    return settings(routes=(route,), webhooks=(WebhookSettings(name="hook", url_env="MINER_TEST_HOOK", format=fmt,
                                                               timeout=timeout),), group_wait=0.0)


def test_json_payload_is_versioned_and_retried_through_a_500(store: Store, hook: Hook) -> None:
    cfg = hook_settings()
    open_incident(store, "WhatsApp", T0)
    add_official(store, "WhatsApp", T0 + timedelta(minutes=23))
    plan_notifications(store, cfg, T0)
    hook.script = [500]
    first = dispatch(store, cfg, T0, worker_id="w")
    assert (first.sent, first.retried) == (0, 1)
    [row] = store.outbox_listing(["pending"])
    assert "HTTP 500" in row["last_error"] and "SECRET" not in row["last_error"]
    # Sent after the provider posted: the payload carries its status and our lead over it.
    assert dispatch(store, cfg, T0 + timedelta(minutes=30), worker_id="w").sent == 1
    [sent] = store.outbox_listing(["sent"])
    assert sent["last_error"] is None  # the 500 stays in deliveries, not as the row's current error
    assert [d["outcome"] for d in store.deliveries(sent["id"])] == ["retry", "sent"]
    assert "HTTP 500" in store.deliveries(sent["id"])[0]["detail"]
    [body] = hook.bodies
    assert body["version"] == 1 and body["kind"] == "alert" and body["route"] == "chat"
    assert body["id"] == row["message_id"]
    [inc] = body["incidents"]
    assert inc["service"] == "WhatsApp" and inc["status"] == "open" and inc["z_score"] == 8.4
    assert inc["official"]["status"] == "investigating" and inc["lead_time_minutes"] == 23.0
    assert any("&lt;script&gt;" not in s["text"] and "<script>" in s["text"] for s in inc["samples"])
    assert all("\x1b" not in s["text"] for s in inc["samples"])


def test_timeout_is_retried(store: Store, hook: Hook) -> None:
    cfg = hook_settings()
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    hook.script = [("sleep", 10.0)]  # far past the 0.5 s, however late the timeout fires on a loaded machine
    assert dispatch(store, hook_settings(timeout=0.5), T0, worker_id="w").retried == 1
    [row] = store.outbox_listing(["pending"])
    assert "timed out" in row["last_error"]
    assert dispatch(store, cfg, T0 + timedelta(seconds=cfg.retry_max), worker_id="w").sent == 1


def test_400_fails_permanently_with_the_reason(store: Store, hook: Hook) -> None:
    cfg = hook_settings()
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    hook.script = [400]
    assert dispatch(store, cfg, T0, worker_id="w").failed == 1
    [row] = store.outbox_listing(["failed"])
    assert row["reason"].startswith("webhook hook: HTTP 400 invalid_payload")
    assert dispatch(store, cfg, T0 + timedelta(hours=1), worker_id="w").claimed == 0


def test_a_redirect_fails_permanently_saying_it_was_not_followed(store: Store, hook: Hook) -> None:
    cfg = hook_settings()
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    # An http:// URL of a receiver that moved to https://: the reason said "HTTP 301 Moved" and no more.
    hook.script = [("redirect", 301, hook.url.replace("http://", "https://"))]
    assert dispatch(store, cfg, T0, worker_id="w").failed == 1
    [row] = store.outbox_listing(["failed"])
    assert row["reason"] == ("webhook hook: HTTP 301 Moved (a redirect, which is not followed, since the URL holds "
                             "the secret: set MINER_TEST_HOOK to the URL it redirects to)")
    assert hook.bodies == []


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hooks/SECRET\n", "http://[::1/hooks/SECRET",
                                 "http://host:8100:90/hooks/SECRET", "https:///hooks/SECRET"])
def test_invalid_url_in_the_environment_fails_at_once_in_one_line_without_the_url(
        store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, url: str) -> None:
    # It was an unexpected error: a traceback per attempt, retried for give_up_after (72 h).
    monkeypatch.setenv("MINER_TEST_HOOK", url)
    cfg = hook_settings()
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0, worker_id="w").failed == 1
    reason = store.outbox_listing(["failed"])[0]["reason"]
    assert reason.startswith("webhook hook: MINER_TEST_HOOK ") and "\n" not in reason
    assert "SECRET" not in reason and "SECRET" not in caplog.text
    assert not any(r.exc_info for r in caplog.records)


@pytest.mark.parametrize(("host", "reason"), [
    ("xn--zz.example", "IDNA: Invalid A-label"),
    ("\u2603.example", "IDNA: Codepoint U+2603 at position 1 of '\u2603' not allowed"),
    # Its xn-- label is valid and its other is no IDNA label (DNS may know it): httpx reads it as IDNA all the same.
    ("xn--bcher-kva.my_host.example", "IDNA: Codepoint U+005F at position 3 of 'my_host' not allowed"),
])
def test_a_host_that_is_not_a_valid_international_name_fails_at_once_naming_it(
        store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, host: str,
        reason: str) -> None:
    # httpx raised idna's IDNAError, no httpx error: retried as a passing failure until give_up_after (72 h).
    monkeypatch.setenv("MINER_TEST_HOOK", f"http://{host}/hooks/SECRET")
    cfg = hook_settings()
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0, worker_id="w").failed == 1
    assert store.outbox_listing(["failed"])[0]["reason"] == (
        f"webhook hook: MINER_TEST_HOOK: host {host} is not a valid internationalised domain name ({reason})")
    assert "SECRET" not in caplog.text and not any(r.exc_info for r in caplog.records)


def test_slack_message_escapes_mrkdwn(store: Store, hook: Hook) -> None:
    cfg = hook_settings("slack")
    open_incident(store, "WhatsApp", T0)
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0, worker_id="w").sent == 1
    [body] = hook.bodies
    assert "WhatsApp" in body["text"] and body["blocks"][0]["type"] == "header"
    dumped = json.dumps(body["blocks"])
    assert "<script>" not in dumped and "&lt;script&gt;" in dumped


def test_slack_message_pings_nobody_and_forges_no_link(store: Store, hook: Hook) -> None:
    # Slack escaping stopped <!channel>, but apps that take Slack's format (Mattermost, Rocket.Chat, Discord's
    # Slack endpoint) notify everyone for a bare @channel, @all, @here or @everyone, and render Markdown links.
    cfg = hook_settings("slack")
    open_incident(store, "WhatsApp", T0, posts=False)
    seed_posts(store, "WhatsApp", T0 - BUCKET, ["@everyone WhatsApp down, @here too",
                                                "WhatsApp down: [restore your account](https://phish.example/x)",
                                                "WhatsApp down @channel @all ![x](https://track.example/p.png)"])
    add_official(store, "WhatsApp", T0)
    with store.database.transaction() as conn:  # a provider's URL with a | in it would end Slack's <url|text> there
        conn.execute("UPDATE official_incidents SET url = 'https://status.example.com/i|Click_here'")
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0, worker_id="w").sent == 1
    [body] = hook.bodies
    text = json.dumps(body, ensure_ascii=False)
    for mention in ("@everyone", "@here", "@channel", "@all", "](https://"):
        assert mention not in text
    assert "@\u200beveryone" in text and "account]\u200b(https://phish.example/x)" in text  # it still reads the same
    assert "<https://status.example.com/i%7CClick_here|Some users are unable to send messages>" in text


def test_slack_text_cut_to_its_limit_never_ends_in_half_an_escape(store: Store, hook: Hook) -> None:
    # The quotes were cut at 2,900 characters after escaping: posts full of < and & (a code paste, an angry
    # "<<<<") ended the block in "&l", shown as such, or would leave half a <url|text> link.
    cfg = hook_settings("slack")
    open_incident(store, "WhatsApp", T0, posts=False)
    seed_posts(store, "WhatsApp", T0 - BUCKET, ["<" * 279 + str(i) for i in range(3)])
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0, worker_id="w").sent == 1
    [body] = hook.bodies
    [quotes] = [b["elements"][0]["text"] for b in body["blocks"] if b["type"] == "context"]
    assert len(quotes) <= 3000 and quotes.endswith("&lt;\u2026")
    assert quotes.count("&") == quotes.count("&lt;")  # every escape whole


def test_missing_url_env_var_fails_clearly(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MINER_TEST_HOOK", raising=False)
    cfg = hook_settings()
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0, worker_id="w").failed == 1
    assert "MINER_TEST_HOOK is not set" in store.outbox_listing(["failed"])[0]["reason"]


def test_slow_run_claims_each_row_when_it_sends_it(tmp_path: Path, hook: Hook) -> None:
    # Each POST takes 0.5 s, well within the 5-s lease; a second dispatcher starting 6.5 s into the first one's run
    # (of 9 s) must not find the row being sent looking stale (it did when every claim carried the run's start
    # time). Stamps are whole seconds: the 1.5 s between the run's start and the second one's cutoff always crosses
    # one. The lease leaves a claim 4 s (a whole second lost to the stamps) to look fresh: a POST of 0.5 s took
    # more than the 1 s a lease of 2 s left on a loaded CI runner.
    cfg = dataclasses.replace(hook_settings(), lease_seconds=5.0, group_interval=0.0)
    path = tmp_path / "miner.sqlite"
    setup = Store.open(path)
    start = utcnow()
    services = [f"Svc{i:02d}" for i in range(18)]
    for service in services:  # each planned on its own, so each is a row of its own (group_wait, group_interval 0)
        open_incident(setup, service, start, posts=False, series=False)
        plan_notifications(setup, cfg, start)
    setup.close()
    hook.script = [("sleep", 0.5)] * len(services)
    stats: list[DispatchStats] = []

    def worker(name: str, delay: float) -> None:
        time.sleep(delay)
        store = Store.open(path)
        try:
            stats.append(dispatch(store, cfg, utcnow(), worker_id=name))
        finally:
            store.close()

    threads = [threading.Thread(target=worker, args=("first", 0.0)),
               threading.Thread(target=worker, args=("second", 6.5))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    # Both runs ended and returned: the reclaimed and lapsed counts below are those of both, the second's above all.
    assert not any(t.is_alive() for t in threads) and len(stats) == 2, stats
    ids = [b["id"] for b in hook.bodies]
    assert len(ids) == len(services) and len(set(ids)) == len(services)
    assert sum(s.reclaimed for s in stats) == 0 and sum(s.lapsed for s in stats) == 0
    check = Store.open(path)
    try:
        rows = check.outbox_listing(["sent"])
        assert len(rows) == len(services)
        attempts = [d for r in rows for d in check.deliveries(r["id"])]
        assert len(attempts) == len(services)
        # Each attempt is recorded at its own time, not the run's start.
        assert parse_iso(max(d["at"] for d in attempts)) - parse_iso(min(d["at"] for d in attempts)) >= \
            timedelta(seconds=2)
    finally:
        check.close()


def test_error_body_echoing_the_url_is_stored_and_logged_without_its_secret(
        store: Store, hook: Hook, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{hook.server.server_address[1]}/hook/PATHSECRET9?token=SECRETTOKEN1&v=1"
    monkeypatch.setenv("MINER_TEST_HOOK", url)
    cfg = hook_settings()
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    # The body also quotes the secrets alone and percent-decoded, padded so that a cut at 200 characters
    # would fall inside the URL if the snippet were cut before it is redacted.
    hook.script = [("echo", 500, "x" * 170, "token", "SECRETTOKEN1", "PATH%53ECRET9")]
    caplog.set_level(logging.INFO, logger="miner")
    assert dispatch(store, cfg, T0, worker_id="w").retried == 1
    [row] = store.outbox_listing(["pending"])
    [attempt] = store.deliveries(row["id"])
    hook.script = [("echo", 404)]
    assert dispatch(store, cfg, T0 + timedelta(seconds=cfg.retry_max), worker_id="w").failed == 1
    [failed] = store.outbox_listing(["failed"])
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("miner"))
    assert "[redacted]" in logged  # httpx's own request log is silenced by miner.logsetup
    texts = [row["last_error"], attempt["detail"], failed["reason"], logged]
    assert "HTTP 500 bad request to [redacted]" in row["last_error"]
    assert "HTTP 404 bad request to [redacted]" in failed["reason"]
    for text in texts:
        assert "SECRET" not in text and "TOKEN" not in text and "ECRET" not in text


@pytest.mark.parametrize("headers_too", [False, True])
def test_timeout_bounds_the_whole_post_not_each_read(store: Store, hook: Hook, headers_too: bool) -> None:
    cfg = hook_settings(timeout=0.5)
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    hook.script = [("trickle", 500, 300, 0.1, headers_too)]  # each read 0.1 s, the whole answer 30 s or more
    began = time.monotonic()
    assert dispatch(store, cfg, T0, worker_id="w").retried == 1
    assert time.monotonic() - began < 10.0  # the 0.5 s (and a loaded runner's delays), not the 30 s answer
    [row] = store.outbox_listing(["pending"])
    # It names the host and port (never the URL's path, the secret): "timed out after 0.5s" named no server.
    port = hook.server.server_address[1]
    assert row["last_error"] == f"webhook hook: timed out after 0.5s (127.0.0.1:{port} did not answer in time)"


def test_only_the_start_of_a_huge_error_body_is_read(store: Store, hook: Hook) -> None:
    cfg = dataclasses.replace(hook_settings(), webhooks=(WebhookSettings(name="hook", url_env="MINER_TEST_HOOK",
                                                                          timeout=10.0),))
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    size = 128 * 2**20
    hook.script = [("big", 500, size)]
    assert dispatch(store, cfg, T0, worker_id="w").retried == 1
    [row] = store.outbox_listing(["pending"])
    assert row["last_error"] == "webhook hook: HTTP 500 " + "y" * 200
    # What the server got out before we hung up is a few KB plus what the sockets buffer, never the body.
    assert hook.big_sent < 32 * 2**20


def test_outbox_send_exits_1_when_a_notification_failed_in_that_run(tmp_path: Path, hook: Hook) -> None:
    cfg = tmp_path / "feeds.toml"
    cfg.write_text('[[services]]\nname = "WhatsApp"\n\n[[services]]\nname = "Telegram"\n\n'
                   '[alerts]\ngroup_wait = 0\n\n[[alerts.webhooks]]\nname = "hook"\nurl_env = "MINER_TEST_HOOK"\n\n'
                   '[[alerts.routes]]\nname = "chat"\nwebhooks = ["hook"]\n')
    db = tmp_path / "m.sqlite"
    base = ["--config", str(cfg), "--db", str(db)]
    store = Store.open(db)
    open_incident(store, "WhatsApp", utcnow(), posts=False, series=False)
    store.close()
    hook.script = [400]
    runner = CliRunner()
    failed = runner.invoke(main, [*base, "outbox", "send"])
    assert failed.exit_code == 1, failed.output
    assert "sent 0, retrying 0, failed 1" in failed.output
    # The next run fails nothing new: the earlier failure stays in `miner outbox`, not in this exit status.
    store = Store.open(db)
    open_incident(store, "Telegram", utcnow(), posts=False, series=False)
    store.close()
    ok = runner.invoke(main, [*base, "outbox", "send"])
    assert ok.exit_code == 0, ok.output
    assert "sent 1, retrying 0, failed 0" in ok.output


@pytest.mark.parametrize(("status", "form"), [(503, "date"), (429, "seconds"), (429, "twice"), (503, "dates")])
def test_retry_after_is_honoured_as_an_http_date_or_seconds(store: Store, hook: Hook, status: int, form: str) -> None:
    cfg = hook_settings()  # retry_max 60 s: a wait of ten minutes can only come from the header
    now = utcnow().replace(microsecond=0)
    open_incident(store, "WhatsApp", now, posts=False, series=False)
    plan_notifications(store, cfg, now)
    date = format_datetime(now + timedelta(minutes=10), usegmt=True)
    # Twice (a proxy's and the receiver's): httpx joins the two with ", ", which read as no Retry-After.
    values: dict[str, str | list[str]] = {"date": date, "seconds": "600", "twice": ["600", "600"],
                                          "dates": [date, date]}
    value = values[form]
    hook.script = [("retry-after", status, value)]
    assert dispatch(store, cfg, now, worker_id="w").retried == 1
    [row] = store.outbox_listing(["pending"])
    wait = (parse_iso(row["next_attempt_at"]) - now).total_seconds()
    assert 590 <= wait <= 640, (value, row["next_attempt_at"])  # up to 5 % jitter on top


@pytest.mark.parametrize("fmt", ["json", "slack"])
def test_a_storm_sends_the_most_important_incidents_and_counts_the_rest(store: Store, hook: Hook,
                                                                        fmt: Literal["json", "slack"]) -> None:
    # Every incident of a batch went into the body: 3,000 of them made a POST of megabytes, and Slack's 50-block
    # cap cut the message short without a word.
    from miner.alerts.content import MAX_INCIDENTS

    n = MAX_INCIDENTS + 7
    for i in range(n):  # Svc000 has the highest z, the last the lowest
        store.open_incident(f"Svc{i:03d}", T0, {"peak_complaints": 30, "peak_score": 100.0 - i, "baseline": 2.0,
                                                "total_complaints": 95}, {})
    cfg = dataclasses.replace(hook_settings(fmt), group_wait=60.0, group_by="route")  # so they make one batch
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0 + timedelta(minutes=2), worker_id="w").sent == 1
    [body] = hook.bodies
    if fmt == "json":
        assert [inc["service"] for inc in body["incidents"]] == [f"Svc{i:03d}" for i in range(MAX_INCIDENTS)]
        assert body["truncated_incidents"] == 7
    else:
        text = json.dumps(body["blocks"])
        assert len(body["blocks"]) <= 50 and "Svc000" in text
        shown = sum(f"*Svc{i:03d}*" in text for i in range(n))
        assert body["blocks"][-1]["elements"][0]["text"] == f"{n - shown} more incidents not shown"
        assert f"*Svc{shown - 1:03d}*" in text and f"*Svc{shown:03d}*" not in text  # the lowest z left out


def test_a_storm_with_sample_posts_stays_within_slacks_limit_on_a_whole_message(store: Store, hook: Hook) -> None:
    # Slack refuses a message whose blocks hold more than about 12,000 characters in all (msg_blocks_too_long,
    # slackapi/bolt-js#2509 and #2867), however far each stays under its 3,000. 30 incidents with three long
    # sample posts each came to 24,579 characters in 49 blocks: the alert of a provider's outage refused for good.
    n = 30
    for i in range(n):  # Svc000 has the highest z, the last the lowest
        store.open_incident(f"Svc{i:03d}", T0, {"peak_complaints": 30, "peak_score": 100.0 - i, "baseline": 2.0,
                                                "total_complaints": 95}, {})
        seed_posts(store, f"Svc{i:03d}", T0 - BUCKET,
                   [f"Svc{i:03d} down again {j}: " + "nothing loads, not the app nor the site " * 7 for j in range(3)])
    cfg = dataclasses.replace(hook_settings("slack"), group_wait=60.0, group_by="route")  # so they make one batch
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0 + timedelta(minutes=2), worker_id="w").sent == 1
    [body] = hook.bodies
    texts = [b["text"]["text"] if "text" in b else b["elements"][0]["text"] for b in body["blocks"]]
    assert sum(len(t) for t in texts) <= 12_000
    assert len(json.dumps(body["blocks"], ensure_ascii=False).encode()) <= 12_000  # however Slack counts
    # Every incident is listed, the most important first; their users' words only while they fit.
    sections = [b["text"]["text"] for b in body["blocks"] if b["type"] == "section"]
    assert [s.split("*")[1] for s in sections] == [f"Svc{i:03d}" for i in range(n)]
    quoted = [t for t in texts if t.startswith("> ")]
    assert 0 < len(quoted) < n and [q.split()[1] for q in quoted] == [f"Svc{i:03d}" for i in range(len(quoted))]
    assert "more incidents not shown" not in texts[-1]


def test_a_notification_for_a_channel_its_route_no_longer_has_fails_with_the_reason(store: Store, hook: Hook) -> None:
    # Planned for an email and a webhook; then feeds.toml moves the route to another webhook (the first stays
    # defined, for another route). The email was "sent" to nobody, and the old webhook still got the alert.
    route = RouteSettings(name="chat", email=("oncall@example.org",), webhooks=("hook",))
    webhooks = tuple(WebhookSettings(name=name, url_env="MINER_TEST_HOOK", timeout=0.5) for name in ("hook", "new"))
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    assert plan_notifications(store, settings(routes=(route,), webhooks=webhooks, group_wait=60.0), T0) == 2
    changed = settings(routes=(dataclasses.replace(route, email=(), webhooks=("new",)),
                               RouteSettings(name="other", webhooks=("hook",))), webhooks=webhooks)
    assert dispatch(store, changed, T0 + timedelta(minutes=1), worker_id="w").failed == 2
    assert sorted(r["reason"] for r in store.outbox_listing(["failed"])) == [
        "route 'chat' no longer sends email", "route 'chat' no longer sends to webhook 'hook'"]
    assert hook.bodies == []


def _retried_and_logged(store: Store, hook: Hook, monkeypatch: pytest.MonkeyPatch, formatter: logging.Formatter,
                        *answer: str) -> str:
    """What the `miner` logger writes, through ``formatter``, when the receiver answers an alert 500 ``answer``."""
    monkeypatch.setenv("MINER_TEST_HOOK", f"http://127.0.0.1:{hook.server.server_address[1]}/hook")
    cfg = hook_settings()
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    hook.script = [("echo", 500, *answer)]
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    logger = logging.getLogger("miner")
    logger.addHandler(handler)
    try:
        assert dispatch(store, cfg, T0, worker_id="w").retried == 1
    finally:
        logger.removeHandler(handler)
    return out.getvalue()


def test_a_receivers_escape_sequences_reach_the_text_log_escaped(store: Store, hook: Hook,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # The error a receiver answers is logged with the retry: its ESC sequences (a cleared screen, an OSC 52
    # clipboard write), CR/LF (a forged log line) and bidi overrides reached the terminal tailing the log raw.
    logged = _retried_and_logged(store, hook, monkeypatch, TextFormatter(),
                                 "\x1b[2J\x1b]52;c;ZXZpbA==\x07\r2026-11-27T12:00:00Z INFO miner: forged", "\u202egnp")
    assert "retrying" in logged and "\\x1b[2J\\x1b]52;c;ZXZpbA==\\x07\\x0d2026" in logged and "\\u202egnp" in logged
    assert not any(ch in logged for ch in "\x1b\x07\r\u202e")
    assert len(logged.splitlines()) == sum("retrying" in line for line in logged.splitlines())


def test_the_json_log_escapes_c1_controls_and_bidi_overrides_and_keeps_the_message(
        store: Store, hook: Hook, monkeypatch: pytest.MonkeyPatch) -> None:
    # json.dumps(ensure_ascii=False) escapes ESC but writes U+009B (CSI to xterm) and U+202E as they are.
    hostile = "\x9b2J \x1b[31m \u202egnp\u2028x \x7f ok"
    logged = _retried_and_logged(store, hook, monkeypatch, JsonFormatter(), hostile)
    assert not any(ch in logged for ch in "\x9b\x1b\u202e\u2028\x7f")
    assert any(hostile in json.loads(line)["msg"] for line in logged.splitlines())  # the same message, escaped

"""A proxy in the environment that miner's HTTP (httpx) cannot use: a SOCKS proxy without the socksio package, a
scheme httpx knows not, a port that is none. It fails what it would carry (sources, webhook POSTs) for good, naming
its variable and what to do, rather than miner collect with a traceback; the rest goes on. And a SOCKS proxy, with
socksio (miner depends on httpx[socks]), works. Real servers on 127.0.0.1 (a SOCKS5 one too), a real store; no request
leaves the machine."""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakeserver import FakeServer
from netfaults import serving
from test_alerts_support import T0, open_incident
from test_alerts_webhooks import Hook, hook_settings

from miner.alerts import dispatch, plan_notifications
from miner.cli import main
from miner.collectors.poller import Poller
from miner.collectors.settings import CollectSettings
from miner.config import SourceConfig, parse_config
from miner.config_files import warn_unusable_proxies
from miner.store import Store

pytestmark = pytest.mark.usefixtures("no_proxy_nor_trust")

SOCKS = ("ALL_PROXY (socks5://127.0.0.1:1080) is a SOCKS proxy, which needs the socksio package, not installed: "
         "pip install 'httpx[socks]' in miner's environment (or unset ALL_PROXY), and restart miner")


@pytest.fixture
def no_socksio(monkeypatch: pytest.MonkeyPatch) -> None:
    """socksio not installed (whether or not this Python has it): its import fails, as httpx's does."""
    monkeypatch.setitem(sys.modules, "socksio", None)


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as s:
        s.serve_fixture("/forum.rss", "rss/forum_latest.rss")
        yield s


def _config(tmp_path: Path, server: FakeServer) -> Path:
    # The fixture's posts are dated November 2026, and `miner collect` leaves out those older than retention_days by
    # the real clock: at the default 30 days, they were all dropped from late December 2026 on.
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "m.sqlite"}"\nretention_days = 3650\n[[services]]\nname = "GitHub"\n'
                   f'[[sources]]\nname = "forum"\ntype = "rss"\nurl = "{server.url}/forum.rss"\n'
                   '[[sources]]\nname = "secure"\ntype = "rss"\nurl = "https://127.0.0.1:9/feed.rss"\n')
    return cfg


@pytest.mark.usefixtures("no_socksio")
def test_a_socks_proxy_without_socksio_fails_each_source_for_good_saying_what_to_do(
        tmp_path: Path, server: FakeServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # Was "Error: internal error: ImportError: Using SOCKS proxy, but the 'socksio' package is not installed...": the
    # shared client could not be made, so no source was polled and nothing said which variable to look at.
    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:1080")
    cfg = _config(tmp_path, server)
    checked = CliRunner().invoke(main, ["config", "check", str(cfg)])
    assert checked.exit_code == 0
    assert f"warning: {SOCKS}; until then the sources and webhooks it would carry fail" in checked.output
    result = CliRunner().invoke(main, ["--config", str(cfg), "collect", "--once"])
    assert result.exit_code == 1 and "internal error" not in result.output
    store = Store.open(tmp_path / "m.sqlite")
    rows = [store.source_row(name) for name in ("forum", "secure")]
    store.close()
    for row in rows:
        assert row is not None and row["last_error"] == SOCKS and row["needs_action_since"]
    assert server.requests == [] and not any(r.exc_info for r in caplog.records)


@pytest.mark.usefixtures("no_socksio")
def test_a_proxy_that_cannot_be_used_fails_only_the_sources_it_would_carry(
        tmp_path: Path, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # HTTPS_PROXY carries https:// URLs only: the http:// source's posts are stored.
    monkeypatch.setenv("HTTPS_PROXY", "socks5h://user:pw@127.0.0.1:1080")
    result = CliRunner().invoke(main, ["--config", str(_config(tmp_path, server)), "collect", "--once"])
    assert result.exit_code == 1
    store = Store.open(tmp_path / "m.sqlite")
    forum, secure = store.source_row("forum"), store.source_row("secure")
    store.close()
    assert forum is not None and forum["last_error"] is None and forum["posts_stored"] > 0
    # The proxy's login is not shown.
    assert secure is not None and secure["last_error"] == (
        "HTTPS_PROXY (socks5h://127.0.0.1:1080) is a SOCKS proxy, which needs the socksio package, not installed: "
        "pip install 'httpx[socks]' in miner's environment (or unset HTTPS_PROXY), and restart miner")
    assert "pw@" not in result.output


@pytest.mark.parametrize(("value", "message"), [
    # httpx raised ValueError ("Unknown scheme for proxy URL") or InvalidURL as the client was made.
    ("ftp://proxy", "ALL_PROXY (ftp://proxy) names a proxy of scheme 'ftp', which miner's HTTP (httpx) cannot use: "
                    "give an http://, https:// or socks5:// proxy URL, or unset it, and restart miner"),
    ("socks4://127.0.0.1:1080", "ALL_PROXY (socks4://127.0.0.1:1080) names a proxy of scheme 'socks4', which "
                                "miner's HTTP (httpx) cannot use: give an http://, https:// or socks5:// proxy URL, "
                                "or unset it, and restart miner"),
    ("http://127.0.0.1:abc", "ALL_PROXY is not a proxy URL miner's HTTP can read (Invalid port: 'abc'); fix it or "
                             "unset it and restart miner"),
    (" http://127.0.0.1:3128", "ALL_PROXY starts or ends with a space or holds a control character (a stray line "
                               "break?): miner's HTTP cannot use that proxy; fix it or unset it and restart miner"),
    # Passed as the client was made, and was a refused connection at each request (an OverflowError for a webhook).
    ("http://127.0.0.1:99999", "ALL_PROXY: proxy port 99999 is out of range (1 to 65535); fix it and restart miner"),
])
def test_a_proxy_url_httpx_cannot_use_is_a_clear_permanent_error(
        server: FakeServer, monkeypatch: pytest.MonkeyPatch, value: str, message: str) -> None:
    monkeypatch.setenv("ALL_PROXY", value)
    with Poller(CollectSettings(), hash_key=b"k", environ={}) as poller:
        outcome = poller.poll_isolated(SourceConfig("forum", "rss", url=f"{server.url}/forum.rss"))
    assert outcome.error is not None and str(outcome.error) == message and outcome.error.permanent
    assert server.requests == []
    monkeypatch.setenv("NO_PROXY", "*")  # httpx reads no proxy at all then: nothing fails
    with Poller(CollectSettings(), hash_key=b"k", environ={}) as poller:
        assert poller.poll_isolated(SourceConfig("forum", "rss", url=f"{server.url}/forum.rss")).ok


@pytest.mark.usefixtures("no_socksio")
def test_a_webhook_through_a_socks_proxy_without_socksio_fails_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # Its ImportError was retried as a passing failure until give_up_after (72 h).
    hook = Hook()
    try:
        monkeypatch.setenv("MINER_TEST_HOOK", hook.url)
        monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:1080")
        store = Store.open(tmp_path / "m.sqlite")
        cfg = hook_settings()
        open_incident(store, "WhatsApp", T0, posts=False, series=False)
        plan_notifications(store, cfg, T0)
        assert dispatch(store, cfg, T0, worker_id="w").failed == 1
        assert store.outbox_listing(["failed"])[0]["reason"] == f"webhook hook: {SOCKS}"
        assert hook.bodies == [] and not any(r.exc_info for r in caplog.records)
        # One that would not go through it is sent: HTTPS_PROXY carries no http:// URL.
        monkeypatch.delenv("ALL_PROXY")
        monkeypatch.setenv("HTTPS_PROXY", "socks5://127.0.0.1:1080")
        assert store.retry_notification(store.outbox_listing(["failed"])[0]["id"], T0)
        assert dispatch(store, cfg, T0, worker_id="w").sent == 1
        assert len(hook.bodies) == 1
        store.close()
    finally:
        hook.close()


@pytest.mark.usefixtures("no_socksio")
def test_miner_run_says_so_at_its_start(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:1080")
    config = parse_config('[[sources]]\nname = "s"\ntype = "rss"\nurl = "https://example.org/feed"\n', "x.toml")
    warn_unusable_proxies(config, logging.getLogger("miner.test"))
    assert [r.getMessage() for r in caplog.records] == [
        f"{SOCKS}; until then the sources and webhooks it would carry fail"]


def _socks5(seen: list[tuple[str, int]]) -> Callable[[socket.socket], None]:
    """A SOCKS5 proxy's side of one connection (no login, CONNECT only, to this machine only), relayed both ways
    until either end closes; ``seen`` gets each (host, port) asked for."""

    def relay(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for end in (src, dst):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def handle(conn: socket.socket) -> None:
        conn.recv(257)  # version, methods: "no authentication" is taken
        conn.sendall(b"\x05\x00")
        request = conn.recv(262)
        if request[3] == 1:
            host, rest = socket.inet_ntoa(request[4:8]), request[8:]
        else:  # a name
            host, rest = request[5:5 + request[4]].decode(), request[5 + request[4]:]
        port = struct.unpack("!H", rest[:2])[0]
        seen.append((host, port))
        assert host in ("127.0.0.1", "localhost")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as upstream:
            conn.sendall(b"\x05\x00\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack("!H", port))
            back = threading.Thread(target=relay, args=(conn, upstream), daemon=True)
            back.start()
            relay(upstream, conn)
            back.join(10)

    return handle


def test_a_socks_proxy_carries_the_sources_and_the_webhooks(
        tmp_path: Path, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # miner depends on httpx[socks] (socksio): a SOCKS proxy in the environment works as an http one does. (The feed's
    # posts, of November 2026, kept by retention_days as _config's are.)
    seen: list[tuple[str, int]] = []
    port = int(server.url.rsplit(":", 1)[1])
    hook = Hook()
    try:
        with serving(_socks5(seen)) as proxy:
            monkeypatch.setenv("ALL_PROXY", f"socks5://127.0.0.1:{proxy}")
            cfg = tmp_path / "feeds.toml"
            cfg.write_text(f'[store]\npath = "{tmp_path / "m.sqlite"}"\nretention_days = 3650\n[[services]]\n'
                           f'name = "GitHub"\n[[sources]]\nname = "forum"\ntype = "rss"\n'
                           f'url = "{server.url}/forum.rss"\n')
            checked = CliRunner().invoke(main, ["config", "check", str(cfg)])
            # The one warning: the file has no alert route.
            assert [ln for ln in checked.output.splitlines() if "warning" in ln] == [
                ln for ln in checked.output.splitlines() if ln.startswith("warning: no [[alerts.routes]]")]
            result = CliRunner().invoke(main, ["--config", str(cfg), "collect", "--once"])
            assert result.exit_code == 0, result.output
            monkeypatch.setenv("MINER_TEST_HOOK", hook.url)
            store = Store.open(tmp_path / "m.sqlite")
            forum = store.source_row("forum")
            alerts = hook_settings()
            open_incident(store, "WhatsApp", T0, posts=False, series=False)
            plan_notifications(store, alerts, T0)
            assert dispatch(store, alerts, T0, worker_id="w").sent == 1
            store.close()
        assert forum is not None and forum["posts_stored"] > 0
        assert len(hook.bodies) == 1
        assert seen == [("127.0.0.1", port), ("127.0.0.1", int(hook.url.split(":")[2].split("/")[0]))]
    finally:
        hook.close()

"""A key written as a label of a `url_env` URL's host is the same key in any letter case (DNS reads the host so):
where a link, a stored row or a server's answer holds it again in another case, it goes as it does in its own. A key
in the URL's path or query is matched in its own case only, as a server reads it."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest
from fakeserver import FakeServer
from test_alerts_support import T0, open_incident
from test_alerts_webhooks import Hook, hook_settings
from test_text_links import store_bytes
from test_token_hosts import _poll, _stored

from miner.alerts import dispatch, plan_notifications
from miner.config import SourceConfig
from miner.redaction import without_cut_secret
from miner.store import Store
from miner.timeutil import iso
from miner.urls import link_id, secret_parts, stored_link, url_pieces, without_url

HOST_KEY = "0123abcd4567ef89"
MIXED = "0123AbCd4567eF89"
PATH_KEY = "9f8e7d6c5b4a3210abcd"
FEED_URL = f"http://feed-{HOST_KEY}.invalid/private/rss"

# Another host's links naming the feed's host, or its key alone, in a case of their own: upper-cased, mixed.
LINKS = [f"https://mirror.example/go?to=http://FEED-{HOST_KEY.upper()}.invalid/items/1",
         f"https://mirror.example/go?to=http%3A%2F%2Ffeed-{MIXED}.invalid%2Fitems%2F2",
         f"https://mirror.example/r/{MIXED}/3"]


def _leaks(data: bytes) -> bool:
    return HOST_KEY.encode() in data.lower()


def test_a_host_key_in_another_case_in_another_hosts_link_goes() -> None:
    secrets = secret_parts(f"http://feed-{HOST_KEY.upper()}.invalid/rss/{PATH_KEY}")
    assert [stored_link(link, secrets) for link in LINKS] == [
        "https://mirror.example/go?to=http://[redacted].invalid/items/1",
        "https://mirror.example/go?to=http%3A%2F%2F[redacted].invalid%2Fitems%2F2",
        "https://mirror.example/r/[redacted]/3"]
    assert all(HOST_KEY not in link_id(link, secrets).lower().partition("#")[0] for link in LINKS)
    # A path's key is another key in another case: matched as written.
    assert stored_link(f"https://mirror.example/r/{PATH_KEY}/4", secrets) == "https://mirror.example/r/[redacted]/4"
    upper = f"https://mirror.example/r/{PATH_KEY.upper()}/4"
    assert stored_link(upper, secrets) == upper


def test_a_feed_whose_items_link_to_its_host_in_another_case_stores_none_of_its_key(
        tmp_path: Path, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "miner.sqlite"
    store = Store.open(path)
    assert _poll(server, store, monkeypatch, LINKS, url=FEED_URL) == len(LINKS)
    assert _poll(server, store, monkeypatch, LINKS, url=FEED_URL) == 0
    assert not _leaks(store_bytes(store, path))


def test_a_host_key_in_another_case_is_taken_out_of_what_was_stored_before_at_the_next_poll(
        tmp_path: Path, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # The scrub of the source's rows looked for the key as written and lower-cased: this row was passed by, and
    # the item stored a second time under the id computed now.
    path = tmp_path / "miner.sqlite"
    store = Store.open(path)
    store.sync_sources([SourceConfig("private", "rss", url_env="FEED_URL")])
    with store.database.transaction() as conn:
        conn.execute("INSERT INTO posts (source, external_id, text, url, created_at, fetched_at) "
                     "VALUES ('private', ?, 'WhatsApp down 0', ?, ?, ?)", (LINKS[2], LINKS[2], iso(T0), iso(T0)))
    assert _poll(server, store, monkeypatch, [LINKS[2]], url=FEED_URL) == 0
    assert [url for _, url in _stored(store)] == ["https://mirror.example/r/[redacted]/3"]
    assert not _leaks(store_bytes(store, path))


def test_a_message_quoting_the_host_in_another_case_shows_none_of_its_key() -> None:
    url = f"https://hook-{MIXED}.hooks.invalid/services/x"
    said = f"cannot connect to HOOK-{HOST_KEY.upper()}.hooks.invalid (hook-{MIXED.swapcase()})"
    assert without_url(said, url) == "cannot connect to [redacted].hooks.invalid ([redacted])"
    # An answer cut inside the label, in a case of its own.
    assert without_cut_secret(f"error at HOOK-{MIXED.swapcase()[:9]}", url_pieces(url)) == "error at "


def test_a_webhook_answer_naming_its_host_in_another_case_is_stored_without_its_key(
        store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    hook = Hook()
    try:
        # The hook's server behind the loopback proxy, so that a host holding a key needs no DNS.
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{hook.server.server_address[1]}")
        monkeypatch.setenv("MINER_TEST_HOOK", f"http://{MIXED}.hooks.invalid/services/x")
        cfg = hook_settings()
        open_incident(store, "WhatsApp", T0, posts=False, series=False)
        plan_notifications(store, cfg, T0)
        hook.script = [("echo", 500, f"no route for {HOST_KEY.upper()}.HOOKS.INVALID"),
                       ("echo", 404, f"unknown host {MIXED.swapcase()}.hooks.invalid")]
        caplog.set_level(logging.INFO, logger="miner")
        assert dispatch(store, cfg, T0, worker_id="w").retried == 1
        [row] = store.outbox_listing(["pending"])
        assert dispatch(store, cfg, T0 + timedelta(seconds=cfg.retry_max), worker_id="w").failed == 1
        [failed] = store.outbox_listing(["failed"])
    finally:
        hook.close()
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("miner"))
    assert "HTTP 500" in row["last_error"] and "HTTP 404" in failed["reason"]
    for text in (row["last_error"], failed["reason"], logged):
        assert HOST_KEY not in text.lower()

"""A stop while a webhook POST to an https URL goes through an HTTP proxy whose tunnel is open and whose far end never
answers the TLS handshake: the proxy's CONNECT has gone out whole, the POST has not, so the stop cuts it. A real
proxy on 127.0.0.1 (Stalling's "tunnel": it answers CONNECT, then reads the ClientHello and stalls), the real
post_json."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from ports import reserved_port
from test_alerts_stop_connect import Stalling

from miner.alerts.webhooks import PostStopped, post_json


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stalling]:
    with reserved_port() as port:
        stall = Stalling("tunnel", port)
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    yield stall
    stall.close()


def test_a_stop_cuts_a_post_whose_tunnel_is_open_but_whose_request_is_not_sent(proxy: Stalling) -> None:
    stop = threading.Event()
    stop.set()
    outcome: list[BaseException | object] = []

    def post() -> None:
        try:
            outcome.append(post_json("https://hooks.invalid/hook", {"a": 1}, timeout=300.0, user_agent="t",
                                     stop=stop))
        except BaseException as exc:  # handed to the test's thread
            outcome.append(exc)

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    assert proxy.stalled.wait(60), "the TLS handshake through the tunnel was not begun"
    # STOP_GRACE (5 s) after the stop, not the 300 s timeout; generous for a loaded runner.
    thread.join(60)
    assert outcome, "the POST was not cut at the stop: the CONNECT's body was taken for the POST's"
    assert isinstance(outcome[0], PostStopped), outcome[0]

"""A stop while a webhook POST to an https URL goes through an HTTP proxy whose tunnel is open and whose far end never
answers the TLS handshake: the proxy's CONNECT has gone out whole, the POST has not, so the stop cuts it. A real
proxy on 127.0.0.1 (it answers CONNECT, then reads the ClientHello and stalls), the real post_json."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import suppress

import pytest

from miner.alerts.webhooks import PostStopped, post_json


class TunnelThenStall:
    """An HTTP proxy on 127.0.0.1 that answers any CONNECT with 200, then reads the client's first TLS bytes and
    never answers them. ``stalled`` is set once a client's handshake waits on it."""

    def __init__(self) -> None:
        self.stalled = threading.Event()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.port = self.listener.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with suppress(OSError):
            while True:
                conn, _ = self.listener.accept()
                self.held.append(conn)
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    head += chunk
                if head.startswith(b"CONNECT "):
                    conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    if conn.recv(1):  # the ClientHello: never answered
                        self.stalled.set()

    def close(self) -> None:
        for sock in [self.listener, *self.held]:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[TunnelThenStall]:
    stall = TunnelThenStall()
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{stall.port}")
    yield stall
    stall.close()


def test_a_stop_cuts_a_post_whose_tunnel_is_open_but_whose_request_is_not_sent(proxy: TunnelThenStall) -> None:
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

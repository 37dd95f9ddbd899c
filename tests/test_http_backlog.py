"""A burst of clients reaches the endpoint while its accepting thread is busy (a soak's 12 pages at once, with the
classifier holding both cores): the kernel must queue them for it, or their connections wait for the SYN's
retransmission, a second later, well under the connection cap. Real loopback sockets."""

from __future__ import annotations

import contextlib
import socket

from test_http_api import _read_all, status_of

from miner.http_api import Endpoints, HttpApi

BURST = 30  # under the cap of 32: every one of them is answered 200


def test_a_burst_of_clients_is_queued_for_the_accepting_thread_not_dropped() -> None:
    server = HttpApi("127.0.0.1", 0, Endpoints(lambda: (True, {"status": "ok"}), lambda: "", lambda *a: {}))
    socks: list[socket.socket] = []
    started = False
    try:
        # Not started yet: nothing accepts, as when the accepting thread waits for the GIL. A connection the kernel
        # did not queue gets no SYN-ACK, and its connect times out here (with socketserver's backlog of 5: the 7th).
        for n in range(BURST):
            try:
                socks.append(socket.create_connection(server.address, timeout=0.5))
            except TimeoutError:
                raise AssertionError(f"connection {n + 1} of {BURST} was not queued") from None
            socks[-1].sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        server.start()
        started = True
        for sock in socks:
            sock.settimeout(10)
            assert status_of(_read_all(sock)) == 200
    finally:
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.close()
        if not started:
            server.start()  # stop() waits for the accepting loop to end: it must have begun
        server.stop()

"""The connections the HTTP endpoint is answering, each on a thread of its own: capped, and waited for at a stop.

At the cap, a new connection takes the place of the one that has been sending its request the longest, if for
MAKE_WAY_AFTER at least: 32 idle connections from one client (a slowloris, renewed every few seconds) otherwise kept
every other client out, /healthz included, for as long as it liked."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

# Seconds a connection has been sending its request before a newcomer at the cap may take its place. "Sending" is
# until its thread has read the request, and one taken a moment before has most likely sent it whole: in a burst of
# clients at once (60 GET /healthz), some whose request was all there were closed unanswered, with no status line,
# where the newcomer's 503 says to retry in a second. A slowloris holds each connection for seconds.
MAKE_WAY_AFTER = 1.0
# Connections the kernel queues for the accepting thread (listen's backlog). socketserver's 5 dropped the rest of a
# burst unseen: of 30 clients at once, 21 connected only at their SYN's retransmission 1 s later (a /healthz probe
# with a 1 s timeout failed), far below the cap, whose 503 says to retry. Twice the cap's 32: a burst reaches it.
LISTEN_BACKLOG = 64


class OpenConnections:
    """A count of the connections being handled. The stdlib's ThreadingMixIn joins its handler threads at
    server_close only when they are not daemons, and the endpoint's are (a client must not keep the process from
    exiting): without a count of its own, a stop closed the store under the requests still being answered."""

    def __init__(self) -> None:
        self._open = 0
        # Those still sending their request (line, headers, a report's body), oldest first, with when each was taken
        # (time.monotonic()).
        self._receiving: dict[socket.socket, float] = {}
        self._evicted: set[socket.socket] = set()
        self._changed = threading.Condition()

    def take(self, limit: int, conn: socket.socket | None = None) -> bool:
        """Count one more connection (``conn``, sending its request until ``received``). With ``limit`` open
        already, the one sending its request the longest is shut for it, if for MAKE_WAY_AFTER at least; False
        (turn it away) when none has been sending that long (each is being answered, or was taken a moment ago), or
        twice ``limit`` are open with those shut still ending."""
        now = time.monotonic()
        with self._changed:
            if self._open >= limit:
                oldest = next(iter(self._receiving), None)
                if oldest is None or now - self._receiving[oldest] < MAKE_WAY_AFTER or self._open >= 2 * limit:
                    return False
                del self._receiving[oldest]
                self._evicted.add(oldest)
                # Both ways: its handler's read ends as if the client had closed, and no reply can block on it.
                with contextlib.suppress(OSError):
                    oldest.shutdown(socket.SHUT_RDWR)
            self._open += 1
            if conn is not None:
                self._receiving[conn] = now
            return True

    def received(self, conn: socket.socket) -> bool:
        """``conn`` has sent its whole request, or is refused without the rest: it is answered, and no longer shut
        for a newcomer. False if it was shut for one already: its answer cannot reach the client, so what it sent
        must not be acted on (a report stored unanswered is retried, and counted twice)."""
        with self._changed:
            self._receiving.pop(conn, None)
            return conn not in self._evicted

    def evicted(self, conn: socket.socket) -> bool:
        """Whether ``conn`` was shut for a newcomer: what it sent is cut short, and is not answered."""
        with self._changed:
            return conn in self._evicted

    def release(self, conn: socket.socket | None = None) -> None:
        with self._changed:
            self._open -= 1
            if conn is not None:
                self._receiving.pop(conn, None)
                self._evicted.discard(conn)
            self._changed.notify_all()

    def wait_closed(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for every connection to end; returns how many are still open."""
        with self._changed:
            self._changed.wait_for(lambda: self._open == 0, timeout)
            return self._open

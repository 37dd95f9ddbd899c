"""The connections the HTTP endpoint is answering, each on a thread of its own: capped (those beyond turned away with
503), and waited for at a stop.

At the cap, a new connection takes the place of the one that has been sending its request the longest, if for
MAKE_WAY_AFTER at least: 32 idle connections from one client (a slowloris, renewed every few seconds) otherwise kept
every other client out, /healthz included, for as long as it liked. Failing one, it takes the place of the one whose
answer has been stuck the longest, if for MAKE_WAY_AFTER at least: the client takes none of it (reads nothing, or
less than WRITE_CHUNK a second).

Beyond the cap of requests other than the probes' (/healthz, /livez, /readyz, /metrics), PROBE_CONNECTIONS more
are the probes': such a request, once its head is read, is answered 503 at once if the cap's worth of them are
being answered already (``claim``). The path is known for sure only then, so the connections taken before are
counted together; those beyond the cap are only ever held by a request being refused, a probe, or a head not read
yet, which makes way for a newcomer as above. At a cap, a new connection whose request line is in already
(``sent_path``) is told apart at accept: another request, while the cap's worth are being answered, is answered 503
there, without a thread, and a probe may take PROBE_CONNECTIONS more. Refused only once read, a crowd reloading a
page held the probes' connections in turn: /healthz was answered 70 % of the time in bench/probe_flood.py
(cache_seconds = 1), where it is now answered every time."""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import threading
import time

from miner.log_throttle import LogThrottle
from miner.timeutil import counted

log = logging.getLogger("miner.http_api")  # the endpoint's logger, where its warnings have always been

# Seconds a connection has been sending its request before a newcomer at the cap may take its place. "Sending" is
# until its thread has read the request, and one taken a moment before has most likely sent it whole: in a burst of
# clients at once (60 GET /healthz), some whose request was all there were closed unanswered, with no status line,
# where the newcomer's 503 says to retry in a second. A slowloris holds each connection for seconds.
MAKE_WAY_AFTER = 1.0
# Connections the kernel queues for the accepting thread (listen's backlog). socketserver's 5 dropped the rest of a
# burst unseen: of 30 clients at once, 21 connected only at their SYN's retransmission 1 s later (a /healthz probe
# with a 1 s timeout failed), far below the cap, whose 503 says to retry. Twice the cap's 32: a burst reaches it.
LISTEN_BACKLOG = 64
# Bytes of an answer written at a time: each one the client takes is progress, which keeps its connection from being
# shut for a newcomer. 32 clients that asked for a 300 KB series and read none of it (a receive window of 2 KB, a
# 1400-byte MSS as over the internet) held every connection until the write timed out, 5 s, and asked again: /healthz
# and reports were answered 503 for 3.5 s of every 5.
WRITE_CHUNK = 16384
BUSY_BODY = '{"error": "too many connections; retry soon"}'
BUSY_REPLY = (b"HTTP/1.0 503 Service Unavailable\r\nServer: miner\r\nContent-Type: application/json; charset=utf-8\r\n"
              b"Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
              b"Retry-After: 1\r\nContent-Length: %d\r\n\r\n%s" % (len(BUSY_BODY), BUSY_BODY.encode()))
# Connections beyond the endpoint's cap that only the probes may use (and as many more for a probe told apart at
# accept). The board's readers and those following their read (24), and the reports being stored or waiting (8),
# could hold all 32 at once: a slow index read of 300 services with 40 clients reloading it, and reports held up by
# a store locked by another process. Each probe then was answered 503 "too many connections", and an orchestrator
# restarted a service that was well.
PROBE_CONNECTIONS = 4
# Bytes of a new connection's request looked at (left there for its thread to read) for the path it asks for.
PEEK = 256
_REQUEST_LINE = re.compile(rb"(?:\r?\n)*[A-Z]+ (/[^ ?#]*)[ ?#]")


def sent_path(conn: socket.socket) -> str | None:
    """The path ``conn``'s request line asks for, if the client has sent as much already (not waited for: from the
    accepting thread), as the handler reads it (a target in absolute form, or not all there, is None)."""
    was = conn.gettimeout()
    try:
        conn.setblocking(False)  # with a timeout, Python's recv would wait for the client first
        data = conn.recv(PEEK, socket.MSG_PEEK)
    except OSError:  # nothing sent yet (BlockingIOError), or reset: the handler finds out
        return None
    finally:
        with contextlib.suppress(OSError):
            conn.settimeout(was)
    if (line := _REQUEST_LINE.match(data)) is None:
        return None
    return "/" + line.group(1).decode("latin-1").lstrip("/")  # as the stdlib's "//x" is "/x"


def turn_away(conn: socket.socket) -> None:
    """Answer ``conn``, one beyond the cap, 503. From the accepting thread, so it must not block: a fresh socket's
    send buffer takes the short reply whole, and a client that cannot take it is simply closed."""
    with contextlib.suppress(OSError):
        conn.setblocking(False)
        conn.send(BUSY_REPLY)


class OpenConnections:
    """A count of the connections being handled. The stdlib's ThreadingMixIn joins its handler threads at
    server_close only when they are not daemons, and the endpoint's are (a client must not keep the process from
    exiting): without a count of its own, a stop closed the store under the requests still being answered."""

    def __init__(self) -> None:
        self._open = 0
        # Those still sending their request (line, headers, a report's body), oldest first, with when each was taken
        # (time.monotonic()).
        self._receiving: dict[socket.socket, float] = {}
        # Those whose answer is going out, least recently progressed first, with when it last did.
        self._sending: dict[socket.socket, float] = {}
        self._evicted: set[socket.socket] = set()
        self._claimed: set[socket.socket] = set()  # those answering a request other than a probe
        self._changed = threading.Condition()
        self._busy_log = LogThrottle()

    def take(self, limit: int, conn: socket.socket | None = None) -> bool:
        """Count one more connection (``conn``, sending its request until ``received``). With ``limit`` open
        already, one is shut for it (``_stalled``); False (turn it away) when none has been stalled that long (each
        is being answered, or was taken a moment ago), or twice ``limit`` are open with those shut still ending."""
        now = time.monotonic()
        with self._changed:
            if self._open >= limit:
                oldest = None if self._open >= 2 * limit else self._stalled(now)
                if oldest is None:
                    return False
                self._evicted.add(oldest)
                # Both ways: its handler's read ends as if the client had closed, and no reply can block on it.
                with contextlib.suppress(OSError):
                    oldest.shutdown(socket.SHUT_RDWR)
            self._open += 1
            if conn is not None:
                self._receiving[conn] = now
            return True

    def _stalled(self, now: float) -> socket.socket | None:
        """The one sending its request the longest, else the one whose answer has been stuck the longest, if for
        MAKE_WAY_AFTER at least: taken off its list."""
        for waiting in (self._receiving, self._sending):
            first = next(iter(waiting), None)
            if first is not None and now - waiting[first] >= MAKE_WAY_AFTER:
                del waiting[first]
                return first
        return None

    def claimed(self, limit: int) -> bool:
        """Whether ``limit`` connections are answering requests other than probes."""
        with self._changed:
            return len(self._claimed) >= limit

    def crowded(self, others: int, limit: int) -> bool:
        """Whether ``others`` connections are answering requests other than probes, or ``limit`` are open."""
        with self._changed:
            return len(self._claimed) >= others or self._open >= limit

    def claim(self, conn: socket.socket, limit: int) -> bool:
        """Count ``conn`` among those answering a request other than a probe; False (answer it 503) with ``limit``
        of them counted already."""
        with self._changed:
            if conn not in self._claimed and len(self._claimed) >= limit:
                return False
            self._claimed.add(conn)
            return True

    def turned_away(self, open_: int, others: bool = False) -> None:
        """Warn, once a minute at most, that a connection is turned away, ``open_`` being open (with ``others``:
        answering requests other than probes)."""
        turned = self._busy_log.due()
        if turned is not None:
            log.warning("http: %d connections %s, turning new ones away with 503 (%slogged once a minute at most)",
                        open_, "answering requests other than probes" if others else "open",
                        f"{counted(turned, 'connection')} turned away since the last such line; " if turned else "")

    def sending(self, conn: socket.socket, going: bool = True) -> None:
        """``conn``'s answer is going out, and has just made progress (a chunk written); with not ``going``, it is
        all written."""
        with self._changed:
            self._sending.pop(conn, None)
            if going:
                self._sending[conn] = time.monotonic()

    def write(self, conn: socket.socket, data: bytes, timeout: float) -> None:
        """Send ``data`` on ``conn`` within ``timeout`` in all, WRITE_CHUNK at a time, each one progress."""
        deadline = time.monotonic() + timeout
        view = memoryview(data)
        for at in range(0, len(view), WRITE_CHUNK):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"answer not taken within {timeout:g} s")
            conn.settimeout(left)
            conn.sendall(view[at:at + WRITE_CHUNK])
            self.sending(conn)

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
                self._sending.pop(conn, None)
                self._evicted.discard(conn)
                self._claimed.discard(conn)
            self._changed.notify_all()

    def wait_closed(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for every connection to end; returns how many are still open."""
        with self._changed:
            self._changed.wait_for(lambda: self._open == 0, timeout)
            return self._open

"""The SMTP client's session: smtplib with each reply bounded in size, cut at a deadline or the service's stop at
whatever step it is (connecting and TLS handshakes too), and ended whatever the server answers to QUIT."""

from __future__ import annotations

import contextlib
import smtplib
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

# Seconds a send in flight when the service is asked to stop is given to end. A stalled server otherwise held the stop
# for smtp.timeout at each SMTP command (30 s x (9 + recipients) at the defaults), past systemd's TimeoutStopSec,
# whose SIGKILL left the message claimed until its lease lapsed. As long as the collect job gives the polls in flight.
STOP_GRACE = 5.0
# The most bytes one reply may take. A real one is a few hundred (EHLO's list of extensions); smtplib bounds each line
# (8192 bytes) but not how many continuation lines ("250-...") a reply has: a server sending them without end had
# them all kept, 4.5 GB in 10 s on loopback, until the session's deadline cut it.
REPLY_LIMIT = 64 * 1024


class ReplyTooLong(Exception):
    """The server's reply outgrew what an SMTP server sends: it is broken, or no SMTP server. Not an OSError (as
    smtplib's errors are): getreply would take it for a dropped connection."""


class _Reader:
    """The session's socket file, counting the bytes of the reply being read."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.count = 0

    def readline(self, size: int = -1) -> bytes:
        line: bytes = self.raw.readline(size)
        self.count += len(line)
        if len(line) > smtplib._MAXLINE:  # type: ignore[attr-defined]
            # smtplib's own check said "SMTP 500 Line too long.": a reply code the server never sent, and read as a
            # permanent refusal of the message.
            raise ReplyTooLong(f"sent a reply line of more than {smtplib._MAXLINE} bytes")  # type: ignore[attr-defined]
        if self.count > REPLY_LIMIT:
            raise ReplyTooLong(f"sent a reply of more than {REPLY_LIMIT} bytes (continuation lines without end)")
        return line

    def close(self) -> None:
        self.raw.close()


class BoundedSMTP(smtplib.SMTP):
    """smtplib.SMTP whose replies may take REPLY_LIMIT bytes at most, and whose connection :meth:`cut` shuts at any
    step. ``unconfirmed``: the whole message has gone out (after DATA) and the server's reply to it has not come yet."""

    unconfirmed = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # A second handle on the session's socket, taken before it connects: shut through it, the connection ends
        # whatever the session holds then. Through ``sock``, a cut missed a connect that hung (unset until it is
        # made), implicit TLS's handshake (unset until it ends) and STARTTLS's (the plain socket, whose descriptor
        # the TLS one has taken): the stop waited smtp.timeout for a server that stalled there.
        self._line: socket.socket | None = None
        self._was_cut = False
        self._line_lock = threading.Lock()  # the watchdog's cut against the session's end, which closes the handle
        super().__init__(*args, **kwargs)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return self._connected(host, port, timeout)

    def _connected(self, host: str, port: int, timeout: float) -> socket.socket:
        """socket.create_connection's work, each socket's handle kept before it connects."""
        error: OSError = OSError(f"getaddrinfo returns no address for {host}")
        for family, kind, proto, _, address in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
            with self._line_lock:
                if self._was_cut:  # while the name was resolved, or the connect to an address before
                    raise OSError("the session was cut")
                sock = socket.socket(family, kind, proto)
                self._hold(sock.dup())
            try:
                sock.settimeout(timeout)
                if self.source_address:
                    sock.bind(self.source_address)
                sock.connect(address)
                return sock
            except OSError as exc:
                error = exc
                sock.close()
        raise error

    def _hold(self, line: socket.socket | None) -> None:
        if self._line is not None:
            self._line.close()
        self._line = line

    def cut(self) -> None:
        """End the session's connection now, at whatever step it is; called from another thread (Watchdog)."""
        with self._line_lock:
            self._was_cut = True
            if self._line is not None:
                with contextlib.suppress(OSError):
                    self._line.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        try:
            super().close()
        finally:
            with self._line_lock:
                self._hold(None)

    def send(self, s: ReadableBuffer | str) -> None:
        super().send(s)
        # A command never ends so; the message always does (smtplib.SMTP.data).
        self.unconfirmed = isinstance(s, bytes) and s.endswith(b"\r\n.\r\n")

    def getreply(self) -> tuple[int, bytes]:
        if self.file is None and self.sock is not None:
            self.file = self.sock.makefile("rb")
        if isinstance(self.file, _Reader):
            self.file.count = 0
        elif self.file is not None:
            self.file = _Reader(self.file)
        try:
            reply = super().getreply()
            self.unconfirmed = False
            return reply
        except ReplyTooLong:
            self.close()  # the rest of it is never read: QUIT's reply would be more of it
            raise


class BoundedSMTP_SSL(BoundedSMTP, smtplib.SMTP_SSL):  # as smtplib names it
    """smtplib.SMTP_SSL whose replies may take REPLY_LIMIT bytes at most, and whose connection :meth:`cut` shuts at
    any step, its handshake too."""

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        # SMTP_SSL's own, on BoundedSMTP's socket: the handshake, in wrap_socket, ends before ``sock`` is set.
        host_name = self._host  # type: ignore[attr-defined]  # smtplib sets it; typeshed does not name it
        return self.context.wrap_socket(self._connected(host, port, timeout), server_hostname=host_name)


class Cut(Exception):
    """The session outlasted its bound and was cut."""


class StopCut(Cut):
    """The session was cut STOP_GRACE s after the service was asked to stop."""


class Watchdog(threading.Thread):
    """Cuts ``client``'s session ``limit`` s after it starts, or STOP_GRACE s after ``stop`` is set, whichever comes
    first; at the stop's, not while the whole message has gone out and its reply is awaited (one smtp.timeout at
    most, the socket's): cut then, the server may deliver it all the same, and it would be sent again at the next
    start. :meth:`end` ends it with the session."""

    def __init__(self, client: BoundedSMTP, limit: float, stop: threading.Event | None) -> None:
        super().__init__(name="miner-smtp-watchdog", daemon=True)
        self.client = client
        self.limit = limit
        self.stop = stop
        self.cut: type[Cut] | None = None  # which cut ended the session, if one did
        self._ended = threading.Event()

    def run(self) -> None:
        deadline, stop_at = time.monotonic() + self.limit, None
        # Polled: the stop is the service's event, which no callback follows. The cut is made again at each turn:
        # one made between a socket's creation and its connect does not stop the connect.
        while not self._ended.wait(0.1):
            now = time.monotonic()
            if self.cut is None and now >= deadline:
                self.cut = Cut
            elif self.cut is None and self.stop is not None and self.stop.is_set():
                stop_at = now + STOP_GRACE if stop_at is None else stop_at
                if now >= stop_at and not self.client.unconfirmed:
                    self.cut = StopCut
            if self.cut is not None:
                self.client.cut()

    def end(self) -> None:
        self._ended.set()


def quit_session(client: smtplib.SMTP) -> None:
    """End the session whatever the server answers to QUIT.

    ``with client:`` raised on a QUIT reply other than 221, after the server had accepted the message: a 5xx
    marked it failed, a 4xx sent it again at every retry. The reply to DATA decides; and an error before it must
    not be replaced by QUIT's.
    """
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()

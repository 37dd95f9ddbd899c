"""The SMTP client's session: smtplib with each reply bounded in size, cut at a deadline, and ended whatever the
server answers to QUIT."""

from __future__ import annotations

import contextlib
import smtplib
import socket
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

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
    """smtplib.SMTP whose replies may take REPLY_LIMIT bytes at most. ``unconfirmed``: the whole message has gone
    out (after DATA) and the server's reply to it has not come yet."""

    unconfirmed = False

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
    """smtplib.SMTP_SSL whose replies may take REPLY_LIMIT bytes at most."""


class Cut(Exception):
    """The session outlasted its bound and was cut."""


def cut(client: smtplib.SMTP, event: threading.Event) -> None:
    """End a session that outlasted its bound: the sending thread's read or write fails at once."""
    event.set()
    if (sock := client.sock) is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


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

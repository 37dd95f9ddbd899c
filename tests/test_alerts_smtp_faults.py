"""Email against SMTP servers that misbehave in ways aiosmtpd cannot: scripted servers on 127.0.0.1 (netfaults.serving)
answering each command as the test says."""

from __future__ import annotations

import socket
from collections.abc import Callable

from netfaults import serving
from test_alerts_support import T0, open_incident, settings

from miner.alerts import dispatch, plan_notifications
from miner.alerts.settings import AlertSettings, RouteSettings, SmtpSettings
from miner.store import Store
from miner.timeutil import parse_iso

# The command line (b"EHLO ...") -> what the server sends back; None: it hangs up instead.
Replies = Callable[[bytes], bytes | None]


def _server(replies: Replies, messages: list[bytes]) -> Callable[[socket.socket], None]:
    """An SMTP server that greets, answers each command with ``replies`` (its default for those it leaves empty, a
    hang-up for None), and keeps each message it reads after DATA in ``messages``."""
    def handle(conn: socket.socket) -> None:
        file = conn.makefile("rb")
        conn.sendall(b"220 test ESMTP\r\n")
        while line := file.readline():
            verb = line[:4].upper()
            if verb == b"DATA":
                conn.sendall(b"354 go on\r\n")
                body = b"".join(iter(lambda: file.readline(), b".\r\n"))
                messages.append(body)
            if (answer := replies(line)) is None:
                return
            conn.sendall(answer or {b"EHLO": b"250 test\r\n", b"QUIT": b"221 bye\r\n"}.get(verb, b"250 ok\r\n"))
            if verb == b"QUIT":
                return
    return handle


def _mail(port: int) -> AlertSettings:
    route = RouteSettings(name="oncall", email=("oncall@example.org",))
    return settings(routes=(route,), webhooks=(), group_wait=0.0,
                    smtp=SmtpSettings(host="127.0.0.1", port=port, security="none", timeout=5.0))


def _send_once(store: Store, replies: Replies, messages: list[bytes]) -> tuple[dict[str, object], int, int]:
    """Plan one opening and send it once to a server answering with ``replies``: the row after the attempt, how many
    attempts failed needing action, and the server's port."""
    with serving(_server(replies, messages)) as port:
        cfg = _mail(port)
        open_incident(store, "WhatsApp", T0, posts=False, series=False)
        plan_notifications(store, cfg, T0)
        stats = dispatch(store, cfg, T0, worker_id="w")
    [row] = store.outbox_listing(["pending", "failed", "sent"])
    return row, stats.needs_action, port


def test_an_ehlo_reply_of_continuation_lines_without_end_is_refused_as_a_broken_server(store: Store) -> None:
    # Each continuation line was kept until the session's deadline: 4.5 GB in 10 s from a loopback server. This one
    # ends its reply after 100 KB, which miner took as EHLO's, and sent the message.
    messages: list[bytes] = []
    endless = b"250-" + b"x" * 1000 + b"\r\n"
    row, needs_action, port = _send_once(store, lambda line: endless * 100 + b"250 end\r\n"
                                         if line.upper().startswith(b"EHLO") else b"", messages)
    assert row["status"] == "pending" and messages == [] and needs_action == 1
    assert row["last_error"] == (f"SMTP 127.0.0.1:{port} sent a reply of more than 65536 bytes (continuation lines "
                                 "without end): a broken SMTP server, or none (check host and port)")


def test_a_reply_line_too_long_is_not_taken_for_a_refusal_of_the_message(store: Store) -> None:
    # Was "SMTP 500 Line too long." (smtplib's words, a code the server never sent), and the message failed for good.
    row, needs_action, port = _send_once(store, lambda line: b"250 " + b"x" * 100_000 + b"\r\n"
                                         if line.upper().startswith(b"MAIL") else b"", [])
    assert row["status"] == "pending" and needs_action == 1
    assert row["last_error"] == (f"SMTP 127.0.0.1:{port} sent a reply line of more than 8192 bytes: a broken SMTP "
                                 "server, or none (check host and port)")


def test_a_server_hanging_up_before_confirming_the_message_says_it_may_have_it_and_it_is_sent_again(
        store: Store) -> None:
    # Was "closed the connection mid-session: a server turning clients away ...", as if nothing had been sent.
    messages: list[bytes] = []
    row, _, port = _send_once(store, lambda line: None if line.upper().startswith(b"DATA") else b"", messages)
    assert row["status"] == "pending" and len(messages) == 1
    assert row["last_error"] == (f"SMTP 127.0.0.1:{port}: the connection closed; after the whole message had gone "
                                 "out, before the server confirmed it: it may have been delivered, and is sent again "
                                 "(same Message-ID)")
    # At least once: the copy the server may have kept is a duplicate with the same Message-ID, never a lost alert.
    with serving(_server(lambda line: b"", messages)) as port:
        stats = dispatch(store, _mail(port), parse_iso(str(row["next_attempt_at"])), worker_id="w")
    assert stats.sent == 1 and len(messages) == 2
    assert len({line for m in messages for line in m.splitlines() if line.startswith(b"Message-ID:")}) == 1

"""Senders: SMTP (STARTTLS, SSL or plain, login from env vars) here, and webhook POSTs (generic JSON, Slack, Teams,
PagerDuty) in webhook_send.py, with what they have in common.

A sender either returns (delivered) or raises :class:`DeliveryError`, whose ``permanent`` flag tells the
dispatcher to stop (a 5xx SMTP reply, a 4xx webhook answer, a missing secret) or to retry later (refused
connection, timeout, 4xx SMTP reply, 5xx or 429 webhook answer). An email some recipients took and others
refused is a :class:`PartialDelivery`: :func:`send_email` remembers who has it, so a retry goes to the rest only;
:func:`send_events` likewise remembers which of a message's PagerDuty events (one per incident) were accepted.
"""

from __future__ import annotations

import json
import os
import smtplib
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import parseaddr
from typing import TYPE_CHECKING, Any, Protocol

from miner.alerts.channel_settings import SmtpSettings, WebhookSettings
from miner.alerts.send_failures import UNCONFIRMED, smtp_failure, without_login
from miner.alerts.smtp_session import (
    STOP_GRACE,
    BoundedSMTP,
    BoundedSMTP_SSL,
    Cut,
    ReplyTooLong,
    StopCut,
    Watchdog,
    quit_session,
)
from miner.alerts.text import idna_address
from miner.env_names import shown_name
from miner.timeutil import counted

if TYPE_CHECKING:
    from miner.alerts.claim import Claim
    from miner.store import Store

# "Service not available, closing transmission channel" (RFC 5321 3.8): the server turns away every message, not
# only the one it answered.
CLOSING = 421

class DeliveryError(Exception):
    """One attempt failed; ``permanent`` when retrying cannot help. ``retry_after`` in seconds when asked.

    ``unreachable``: the server itself failed (refused or timed out connecting, never answered, hung up, a session
    cut), not this message: the channel's other messages would wait out the same timeout, one after another.
    ``throttled``: the server asked to be left alone for a while (a 429, or a Retry-After): its other messages wait.
    ``needs_action``: a TLS failure (a certificate not trusted, expired or for another name; no STARTTLS; no TLS in
    common): retried, so the queue goes out once it is fixed, but it lasts until someone acts, so the dispatcher
    logs it as an error at its first attempt (net_errors.py).
    """

    def __init__(self, message: str, *, permanent: bool = False, retry_after: float | None = None,
                 unreachable: bool = False, throttled: bool = False, needs_action: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after
        self.unreachable = unreachable
        self.throttled = throttled
        self.needs_action = needs_action


class SendStopped(DeliveryError):
    """The send was cut at the service's stop (an email or a webhook POST STOP_GRACE s on, smtp_session, webhooks;
    a PagerDuty batch after the event in flight, pagerduty_send): no fault of the message's or its server's, and no
    attempt of its own. The message is due again at once, so the next start sends it. ``reached``: as the
    dispatcher's attempt tells it, True where the server answered before the cut (PagerDuty accepted the batch's
    first events), None where unknown."""

    def __init__(self, message: str, *, reached: bool | None = None) -> None:
        super().__init__(message)
        self.reached = reached


class NothingSent(Exception):
    """Nothing was left to send: the notification is done without anything going out (a resolve notice whose
    incidents opened again, PagerDuty events of incidents resolved on a route without notify_resolved). Recorded as
    sent without a ``sent_at``: it holds back no later message of its group (group_interval)."""


class PartialDelivery(DeliveryError):
    """The server accepted the message for ``delivered`` and refused the other recipients (permanent if all 5xx)."""

    def __init__(self, message: str, *, delivered: list[str], permanent: bool) -> None:
        super().__init__(message, permanent=permanent)
        self.delivered = delivered


class EmailSender(Protocol):
    def __call__(self, message: EmailMessage, recipients: list[str]) -> str: ...


class WebhookSender(Protocol):
    def __call__(self, webhook: WebhookSettings, body: dict[str, Any]) -> str: ...


@dataclass(frozen=True)
class Senders:
    """What the dispatcher sends through; the demo injects senders that write files instead."""

    email: EmailSender
    webhook: WebhookSender


def required_env(name: str, what: str, environ: Mapping[str, str]) -> str:
    value = environ.get(name, "")
    if not value:
        raise DeliveryError(f"{what}: environment variable {shown_name(name)} is not set", permanent=True)
    return value


class SmtpSender:
    """``stop``: set when the service is asked to stop; a session still going STOP_GRACE s after is cut."""

    def __init__(self, settings: SmtpSettings, environ: Mapping[str, str] | None = None,
                 stop: threading.Event | None = None) -> None:
        self.settings = settings
        self.environ = os.environ if environ is None else environ
        self.stop = stop

    def __call__(self, message: EmailMessage, recipients: list[str]) -> str:
        s = self.settings
        user = required_env(s.username_env, "SMTP login", self.environ) if s.username_env else ""
        password = required_env(s.password_env, "SMTP password", self.environ) if s.password_env else ""
        for var, value in ((s.username_env, user), (s.password_env, password)):
            if not value.isascii():
                # smtplib's UnicodeEncodeError was an unexpected error, retried for days, and quoted the character
                # and where it stood in the login.
                raise DeliveryError(f"SMTP login: {shown_name(var)} holds a character other than ASCII, which "
                                    "smtplib cannot send in AUTH", permanent=True)
        try:
            return self._send(message, recipients, user, password)
        except DeliveryError as exc:
            # Its message quotes the server's replies, stored and logged: a server quoting the AUTH command it
            # refused, or the login, gave them the credentials, as a PagerDuty answer quoting the event its key.
            exc.args = (without_login(str(exc), user, password),)
            raise

    def _send(self, message: EmailMessage, recipients: list[str], user: str, password: str) -> str:
        s = self.settings
        sender = parseaddr(str(message["From"]))[1]
        try:
            tls = ssl.create_default_context(cafile=s.ca_file or None) if s.security != "none" else None
        except (OSError, ssl.SSLError) as exc:
            raise DeliveryError(f"SMTP ca_file {s.ca_file}: {exc}", permanent=True) from None
        sendable: dict[str, str] = {}  # the address as sent -> as configured
        refused: dict[str, tuple[int, bytes | str]] = {}
        # smtp.timeout bounds each read, not a reply: a server sending its replies a byte at a time held the send,
        # and the outbox claim lapsed meanwhile (another dispatcher sent it again). The session is cut at the bound
        # AlertSettings.slowest_send assumes: one timeout per command.
        limit = s.timeout * (9 + len(recipients))
        client: BoundedSMTP = (BoundedSMTP_SSL(timeout=s.timeout, context=tls) if s.security == "ssl"
                               else BoundedSMTP(timeout=s.timeout))
        client._host = s.host  # type: ignore[attr-defined]  # what connect() leaves unset: STARTTLS's and SSL's SNI
        watchdog = Watchdog(client, limit, self.stop)
        watchdog.start()
        greeted = False
        try:
            try:
                code, greeting = client.connect(s.host, s.port)
                greeted = True
                if code != 220:
                    raise smtplib.SMTPConnectError(code, greeting)
                if s.security == "starttls":
                    client.starttls(context=tls)
                if user:
                    client.login(user, password)
                # Without SMTPUTF8, smtplib refused the whole message for one internationalized address: every
                # recipient of the route lost it. A domain goes in its ASCII (IDNA) form; a non-ASCII local part,
                # which only SMTPUTF8 carries, is refused alone, as a server refuses one recipient.
                client.ehlo_or_helo_if_needed()
                utf8 = client.has_extn("smtputf8")
                as_sent = {r: r if utf8 else _ascii_address(r) for r in recipients}
                sendable = {a: r for r, a in as_sent.items() if a is not None}
                refused = {r: (553, f"needs SMTPUTF8, which {s.host}:{s.port} does not offer")
                           for r, a in as_sent.items() if a is None}
                if sendable:
                    envelope_from = sender if utf8 else _ascii_address(sender) or sender
                    answer = client.send_message(message, from_addr=envelope_from, to_addrs=list(sendable))
                    refused |= {sendable.get(a, a): reply for a, reply in answer.items()}
            except (smtplib.SMTPException, OSError):
                if watchdog.cut is not None:  # whatever the cut left: a broken pipe, a reply read in part ("SMTP 22")
                    raise watchdog.cut from None
                raise
            finally:
                quit_session(client)
                watchdog.end()
        except StopCut:
            unsure = UNCONFIRMED if _unconfirmed(client) else ": sent again at the next start"
            raise SendStopped(f"SMTP {s.host}:{s.port}: send cut {STOP_GRACE:g} s after the service was asked to stop"
                              f"{unsure}") from None
        except Cut:
            unsure = UNCONFIRMED if _unconfirmed(client) else ""
            raise DeliveryError(f"SMTP {s.host}:{s.port}: session cut after {limit:g}s (smtp.timeout {s.timeout:g}s "
                                f"for each of {9 + len(recipients)} commands){unsure}", unreachable=True) from None
        except smtplib.SMTPRecipientsRefused as exc:
            replies = {sendable.get(a, a): reply for a, reply in exc.recipients.items()} | refused
            codes = [code for code, _ in replies.values()]
            detail = "; ".join(f"{rcpt}: {code} {_decode(msg)}" for rcpt, (code, msg) in replies.items())
            if CLOSING in codes:
                # smtplib ends the session at a 421 to RCPT and names the recipients refused so far only: "all
                # recipients refused" read as if they were the route's only addresses, where the others were
                # accepted or never asked.
                whom = f"any of the {len(recipients)} recipients" if len(recipients) > 1 else "its recipient"
                raise DeliveryError(f"refused {detail}: the server closed the session, so the message was not sent "
                                    f"to {whom}", unreachable=True) from None
            raise DeliveryError(f"all recipients refused: {detail}", permanent=all(c >= 500 for c in codes)) from None
        except smtplib.SMTPResponseException as exc:
            # A greeting other than 220 (a 421 "too busy") turns every message away alike, as a 421 at any later
            # step does.
            raise DeliveryError(f"SMTP {exc.smtp_code} {_decode(exc.smtp_error)}", permanent=exc.smtp_code >= 500,
                                unreachable=isinstance(exc, smtplib.SMTPConnectError) or exc.smtp_code == CLOSING
                                ) from None
        except ReplyTooLong as exc:
            # No retry mends a server that babbles; but the messages are not at fault, so they wait for it, and
            # the failure is said at once, as a TLS failure is.
            raise DeliveryError(f"SMTP {s.host}:{s.port} {exc}: a broken SMTP server, or none (check host and port)",
                                unreachable=True, needs_action=True) from None
        except smtplib.SMTPNotSupportedError as exc:
            if "STARTTLS" in str(exc):
                # Failed for good, each message needed an `outbox retry` once the server was fixed; retried, the
                # queue goes out by itself then. Never sent in clear instead: STARTTLS may have been stripped.
                raise DeliveryError(f'SMTP {s.host}:{s.port} does not offer STARTTLS (security = "starttls"): TLS is '
                                    'off on the server, or its port takes implicit TLS (465: security = "ssl")',
                                    unreachable=True, needs_action=True) from None
            raise DeliveryError(f"SMTP server does not support it: {exc}", permanent=True) from None
        except (smtplib.SMTPException, OSError) as exc:
            said, needs_action = smtp_failure(s, exc, greeted, _unconfirmed(client))
            raise DeliveryError(said, unreachable=True, needs_action=needs_action) from None
        if refused and len(refused) == len(recipients):
            detail = "; ".join(f"{rcpt}: {code} {_decode(msg)}" for rcpt, (code, msg) in refused.items())
            raise DeliveryError(f"all recipients refused: {detail}", permanent=True)
        if refused:
            delivered = [r for r in recipients if r not in refused]
            detail = "; ".join(f"{rcpt}: {code} {_decode(msg)}" for rcpt, (code, msg) in refused.items())
            raise PartialDelivery(f"refused {detail} (sent to the other {len(delivered)} via {s.host}:{s.port})",
                                  delivered=delivered, permanent=all(c >= 500 for c, _ in refused.values()))
        return f"sent to {counted(len(recipients), 'recipient')} via {s.host}:{s.port}"


def _unconfirmed(client: smtplib.SMTP) -> bool:
    return isinstance(client, BoundedSMTP) and client.unconfirmed


def _ascii_address(address: str) -> str | None:
    """``address`` as a server without SMTPUTF8 takes it (an internationalized domain in IDNA form), or None when
    its local part is not ASCII."""
    ascii_form = idna_address(address)
    return ascii_form if ascii_form.isascii() else None


def delivered_key(outbox_id: int) -> str:
    return f"delivered:{outbox_id}"


def send_email(store: Store, claim: Claim, sender: EmailSender, message: EmailMessage, recipients: list[str]) -> str:
    """Send the claimed outbox row to those of ``recipients`` that do not have it yet.

    When the server refuses some recipients, the ones it accepted are recorded (alert_state
    ``delivered:<id>``, by the claim: again while another writer holds the store) before the error goes up: a retry
    after a 4xx, or `miner outbox retry` after a 5xx, then reaches the refused recipients without sending the others
    a second copy.
    """
    key = delivered_key(claim.id)
    done: list[str] = json.loads(store.alert_state(key) or "[]")
    todo = [r for r in recipients if r not in done]
    if not todo:
        return f"every recipient ({len(done)}) already had it"
    try:
        detail = sender(message, todo)
    except PartialDelivery as exc:
        claim.remember(key, json.dumps([*done, *exc.delivered]), "the recipients it reached",
                       f"sent to {counted(len(exc.delivered), 'recipient')}, but not recorded: they get it again once "
                       "its claim lapses (lease_seconds)")
        raise
    except DeliveryError as exc:
        if not done or type(exc) is not DeliveryError:
            raise
        # Sent to those left only: "all recipients refused" read (log, `miner outbox`) as if no one had the message.
        text = str(exc).removeprefix("all recipients refused: ")
        text = f"refused {text}" if text != str(exc) else text
        raise DeliveryError(f"{text}; {len(done)} had it from an earlier attempt", permanent=exc.permanent,
                            retry_after=exc.retry_after, unreachable=exc.unreachable, throttled=exc.throttled,
                            needs_action=exc.needs_action) from exc
    return f"{detail}; {len(done)} had it from an earlier attempt" if done else detail


def _decode(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)

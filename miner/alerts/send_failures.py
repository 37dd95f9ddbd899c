"""How a send that failed before the server answered is told: what the failure was (miner.net_errors), with what to
check. "SMTP host:port unreachable: SSLCertVerificationError: ..." called a certificate that is not trusted an
outage, "Connection unexpectedly closed: timed out" a server that hung up, and a webhook's "ConnectError" said
nothing of a certificate, a name not found or a port refused. And what a failure's message must not quote of the
server's reply: the SMTP login."""

from __future__ import annotations

import base64
import smtplib

import httpx

from miner.alerts.channel_settings import SmtpSettings, WebhookSettings
from miner.env_names import shown_name
from miner.net_errors import HTTPX_TRUST, describe, env_proxy, url_host
from miner.redaction import redact
from miner.urls import without_url

# A failure after the whole message went out, before the server's reply to it: whether it arrived is unknown. Said as
# "closed the connection mid-session: a server turning clients away", it read as if nothing had been sent. Sent again
# all the same (at least once, as Alertmanager and healthchecks do, and as RFC 5321 6.1 has an MTA do): a lost alert
# costs more than a duplicate, which carries the same Message-ID.
UNCONFIRMED = ("; after the whole message had gone out, before the server confirmed it: it may have been delivered, "
               "and is sent again (same Message-ID)")


def smtp_failure(s: SmtpSettings, exc: BaseException, greeted: bool, unconfirmed: bool = False) -> tuple[str, bool]:
    """The message for ``exc``, and whether it needs someone to act (a TLS failure: NetFailure.needs_action).
    ``greeted``: the server had sent its greeting; ``unconfirmed``: the message had gone out, unanswered."""
    if unconfirmed:
        # Not describe()'s "took the connection and sent nothing back", nor "a server turning clients away".
        cause = exc.__context__
        what = (f"no answer within smtp.timeout ({s.timeout:g} s)" if isinstance(cause, TimeoutError)
                else "the connection closed" if cause is None else f"the connection failed ({type(cause).__name__})")
        return f"SMTP {s.host}:{s.port}: {what}{UNCONFIRMED}", False
    trust = (f"the CAs of ca_file ({s.ca_file}) did not sign it" if s.ca_file else
             "if it is the right server, set [alerts.smtp] ca_file to its CA's PEM file (else the system's CAs)")
    not_tls = ('its port may take STARTTLS (587, 25: security = "starttls")' if s.security == "ssl"
               else "its STARTTLS is broken")
    # A bare TimeoutError is the connect's (or implicit TLS's handshake); smtplib raises one while reading a reply
    # inside an SMTPServerDisconnected.
    failure = describe(exc, f"{s.host}:{s.port}", trust=trust, not_tls=not_tls, timeout=s.timeout,
                       connecting=isinstance(exc, TimeoutError))
    if failure is None and isinstance(exc, smtplib.SMTPServerDisconnected) and exc.__context__ is None:
        # A clean close, no socket error under it: "unreachable: SMTPServerDisconnected: Connection unexpectedly
        # closed" read as a network fault.
        when = "mid-session" if greeted else "before its greeting"
        return (f"SMTP {s.host}:{s.port} closed the connection {when}: a server turning clients away (too many "
                "connections, this address refused), or a port that is no SMTP server's"), False
    if failure is None:
        return f"SMTP {s.host}:{s.port} unreachable: {type(exc).__name__}: {exc}", False
    text = f"SMTP {failure.text()}"
    if failure.kind == "read_timeout" and not greeted and s.security != "ssl":
        # A server on an implicit-TLS port waits for the TLS handshake, and says nothing until then.
        text += '; an implicit-TLS port (465) says nothing until TLS starts: security = "ssl" for it'
    return text, failure.needs_action


def webhook_failure(webhook: WebhookSettings, url: str, exc: BaseException) -> tuple[str, bool]:
    """The message for a POST to ``url`` that failed with ``exc`` (an httpx.HTTPError, or TimeoutError at the
    request's deadline), naming its host and port only (the URL is the secret: its host without the labels that read
    as a key), and whether it needs someone to act."""
    host = url_host(url, secret=True)
    timed_out = isinstance(exc, TimeoutError | httpx.TimeoutException)
    if not timed_out or isinstance(exc, httpx.ConnectTimeout):
        failure = describe(exc, host, trust=HTTPX_TRUST, timeout=webhook.timeout, proxy=env_proxy(url),
                           not_tls=f"check the scheme and port of {shown_name(webhook.url_env) or 'its url'}")
        if failure is not None:
            return f"webhook {webhook.name}: {failure.text()}", failure.needs_action
    if isinstance(exc, httpx.RemoteProtocolError):  # "RemoteProtocolError" alone said neither where nor what
        # httpx's words quote the line it found malformed: one echoing the request line held the URL's secret.
        said = without_url(str(exc), url)
        return f"webhook {webhook.name}: {host} closed the connection without a valid answer ({said})", False
    if timed_out:  # the whole request's deadline (webhooks.post_json): a trickled answer too
        return f"webhook {webhook.name}: timed out after {webhook.timeout:g}s ({host} did not answer in time)", False
    return f"webhook {webhook.name}: {type(exc).__name__}", False


def without_login(text: str, user: str, password: str) -> str:
    """``text`` without the SMTP login: the user and password as such and as AUTH sends them, base64 (PLAIN's
    ``\\0user\\0password``, LOGIN's each alone), percent-encoded too (`miner.redaction.redact`). One of fewer than 4
    characters stays: taking it out would garble the text, and it guards little."""
    pieces = {piece for piece in (user, password) if len(piece) >= 4}
    pieces |= {base64.b64encode(piece.encode()).decode() for piece in pieces}
    if pieces:
        pieces.add(base64.b64encode(f"\0{user}\0{password}".encode()).decode())
    return redact(text, pieces)

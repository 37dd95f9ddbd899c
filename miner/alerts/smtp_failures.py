"""How an SMTP session that failed before the server answered is told: what the failure was (miner.net_errors), with
what to check in ``[alerts.smtp]``. "SMTP host:port unreachable: SSLCertVerificationError: ..." called a certificate
that is not trusted an outage, and "Connection unexpectedly closed: timed out" a server that hung up."""

from __future__ import annotations

from miner.alerts.channel_settings import SmtpSettings
from miner.net_errors import describe


def smtp_failure(s: SmtpSettings, exc: BaseException, greeted: bool) -> tuple[str, bool]:
    """The message for ``exc``, and whether it needs someone to act (a TLS failure: NetFailure.needs_action).
    ``greeted``: the server had sent its greeting."""
    trust = (f"the CAs of ca_file ({s.ca_file}) did not sign it" if s.ca_file else
             "if it is the right server, set [alerts.smtp] ca_file to its CA's PEM file (else the system's CAs)")
    not_tls = ('its port may take STARTTLS (587, 25: security = "starttls")' if s.security == "ssl"
               else "its STARTTLS is broken")
    # A bare TimeoutError is the connect's (or implicit TLS's handshake); smtplib raises one while reading a reply
    # inside an SMTPServerDisconnected.
    failure = describe(exc, f"{s.host}:{s.port}", trust=trust, not_tls=not_tls, timeout=s.timeout,
                       connecting=isinstance(exc, TimeoutError))
    if failure is None:
        return f"SMTP {s.host}:{s.port} unreachable: {type(exc).__name__}: {exc}", False
    text = f"SMTP {failure.text()}"
    if failure.kind == "read_timeout" and not greeted and s.security == "starttls":
        # A server on an implicit-TLS port waits for the TLS handshake, and says nothing until then.
        text += '; an implicit-TLS port (465) says nothing until TLS starts: security = "ssl" for it'
    return text, failure.needs_action

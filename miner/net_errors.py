"""What a network failure was, said in one line that names the host and what to check: for the collectors' HTTP,
the SMTP sender and the webhooks alike.

The clients' own messages hid the cause: httpx's ConnectError said "ConnectError" for a certificate that is not
trusted, a name that does not resolve and a refused port alike, and smtplib's "Connection unexpectedly closed: timed
out" read as a server that hung up. The cause is in the exception's chain (httpx and httpcore raise theirs ``from``
the socket's or ssl's error; smtplib raises inside the ``except``), so the chain is read, not the message.

A TLS failure (``needs_action``) is no outage: it lasts until someone fixes a certificate, a trust store or a setting,
so the callers report it at once and at the level of an error, and name it as what it is in the first words
(`miner status` cuts an error at 70 characters).
"""

from __future__ import annotations

import socket
import ssl
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from miner.urls import REDACTED, shown_host

Kind = Literal["dns", "refused", "connect_timeout", "read_timeout", "tls_cert", "tls", "reset", "proxy"]

# Where the collectors and webhooks (httpx) find their CAs: certifi's bundle, not the system's store, unless
# SSL_CERT_FILE or SSL_CERT_DIR names others. A CA added to the system's store (a company proxy's) is not read.
HTTPX_TRUST = ("if it is the right server, trust its CA: set SSL_CERT_FILE to a PEM bundle holding it (miner's "
               "HTTP uses certifi's CAs, not the system's store)")

# getaddrinfo's answers for a name that does not exist, as against a resolver that did not answer.
_NO_SUCH_NAME = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}
# OpenSSL's reasons for bytes that are no TLS record: a plain-text server (HTTP, SMTP) on the port.
_NOT_TLS = ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "PACKET_LENGTH_TOO_LONG", "RECORD_LAYER_FAILURE",
            "UNKNOWN_PROTOCOL")
_NO_COMMON = ("PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL", "HANDSHAKE_FAILURE", "NO_PROTOCOLS_AVAILABLE",
              "NO_SHARED_CIPHER", "NO_CIPHERS_AVAILABLE", "INSUFFICIENT_SECURITY")


@dataclass(frozen=True)
class NetFailure:
    """``what`` happened, at which host (the first words), and what to ``check``."""

    kind: Kind
    what: str
    check: str

    @property
    def needs_action(self) -> bool:
        """A TLS failure: retrying alone will not end it, someone must fix a certificate, trust store or setting."""
        return self.kind in ("tls_cert", "tls")

    def text(self, via: str = "") -> str:
        """The line to show; ``via`` (" (redirected from ...)") goes after the host."""
        return f"{self.what}{via}: {self.check}"


def url_host(url: str, *, secret: bool = False) -> str:
    """``url``'s host, with its port when the URL names one: the server a message names. ``secret`` (a URL from the
    environment): as `miner.urls.shown_host` shows it, without the labels that read as a key."""
    parts = urlsplit(url)
    host = parts.hostname or (REDACTED if secret else url)
    if secret:
        host = shown_host(host)
    try:
        port = parts.port
    except ValueError:
        port = None
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port}" if port else host


def env_proxy(url: str) -> str:
    """The proxy (``host:port``) the environment sends ``url`` through, as httpx reads it (HTTP_PROXY, HTTPS_PROXY,
    ALL_PROXY, NO_PROXY), or "" for none: a refused connection is then the proxy's, not the source's."""
    proxies = urllib.request.getproxies_environment()
    parts = urlsplit(url)
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]  # not in typeshed
    if not proxy or bypass(parts.hostname or "", proxies):
        return ""
    return url_host(proxy)


def chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it was raised from or during, those of an ExceptionGroup too (anyio's
    "All connection attempts failed" holds the error of each address it tried)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)


def _ssl_reason(exc: ssl.SSLError) -> str:
    reason = exc.reason or ""
    return reason.lower().replace("_", " ") if reason else (exc.strerror or str(exc))


def describe(exc: BaseException, host: str, *, trust: str, not_tls: str, timeout: float, proxy: str = "",
             connecting: bool = False) -> NetFailure | None:
    """The failure ``exc`` was, at ``host`` (``name:port``, as the message shows it), or None when its chain holds
    no network cause this knows.

    ``trust``: how to trust a server's CA with this client; ``not_tls``: what to check when the server does not speak
    TLS on the port; ``timeout``: the seconds a timeout waited. ``proxy``: the proxy the request went through, which
    a refused or timed-out connection or an unknown name is then about. ``connecting``: a timeout is the connect's
    (an exception raised before any answer was read).
    """
    causes = list(chain(exc))

    def first(kind: type[BaseException] | tuple[type[BaseException], ...]) -> BaseException | None:
        return next((e for e in causes if isinstance(e, kind)), None)

    if isinstance(cert := first(ssl.SSLCertVerificationError), ssl.SSLCertVerificationError):
        return _cert_failure(cert, host, trust)
    if isinstance(tls := first(ssl.SSLError), ssl.SSLError):
        return _tls_failure(tls, host, not_tls)
    target = f"proxy {proxy} (for {host})" if proxy else host
    proxy_check = "check the proxy settings (HTTPS_PROXY, HTTP_PROXY, NO_PROXY)"
    if isinstance(dns := first(socket.gaierror), socket.gaierror):
        name = target if proxy else host.rsplit(":", 1)[0]
        if dns.errno in _NO_SUCH_NAME:
            return NetFailure("dns", f"host name {name} not found (DNS: {dns.strerror})",
                              proxy_check if proxy else "check the name for a typo")
        return NetFailure("dns", f"DNS lookup of {name} failed ({dns.strerror})",
                          "check this machine's DNS resolver and network")
    if first(ConnectionRefusedError) is not None:
        return NetFailure("refused", f"connection refused by {target}",
                          f"nothing listens on that port: {proxy_check}" if proxy
                          else "nothing listens on that port: check that the server is up and the port is right")
    if first((ConnectionResetError, ConnectionAbortedError, BrokenPipeError)) is not None:
        return NetFailure("reset", f"connection to {host} reset",
                          "the server or something between (a firewall, a proxy) dropped it")
    names = {type(e).__name__ for e in causes}
    if "ProxyError" in names:  # httpx's: the proxy answered the CONNECT with an error
        return NetFailure("proxy", f"proxy {proxy or ''} refused the tunnel to {host} ({exc})".replace("  ", " "),
                          "check the proxy settings (HTTPS_PROXY, HTTP_PROXY, NO_PROXY) and what the proxy allows")
    if "ConnectTimeout" in names or (connecting and first(TimeoutError) is not None):
        if any("handshake operation timed out" in str(e) for e in causes):  # ssl's words: the TCP connect was taken
            return NetFailure("connect_timeout", f"timed out after {timeout:g} s in the TLS handshake with {host}",
                              "it took the connection and never finished the handshake: is that port's service one "
                              "that speaks TLS, or is the server overloaded?")
        return NetFailure("connect_timeout", f"timed out after {timeout:g} s connecting to {target}",
                          f"no answer: {proxy_check}" if proxy
                          else "no answer: the server is down, or a firewall drops the connection")
    if first(TimeoutError) is not None or names & {"ReadTimeout", "WriteTimeout"}:
        return NetFailure("read_timeout", f"timed out after {timeout:g} s waiting for {host} to answer",
                          "it took the connection and sent nothing back: the server hangs or is overloaded")
    return None


def _cert_failure(exc: ssl.SSLCertVerificationError, host: str, trust: str) -> NetFailure:
    reason = exc.verify_message or _ssl_reason(exc)
    lower = reason.lower()
    if "expired" in lower:
        return NetFailure("tls_cert", f"TLS certificate of {host} has expired ({reason})",
                          "the server must renew it (or this machine's clock is wrong)")
    if "not yet valid" in lower:
        return NetFailure("tls_cert", f"TLS certificate of {host} is not valid yet ({reason})",
                          "check this machine's clock")
    if "mismatch" in lower:
        return NetFailure("tls_cert", f"TLS certificate of {host} is for another name ({reason.rstrip('.')})",
                          "use the host name the certificate names, or have the server's certificate cover this one")
    if "self-signed" in lower or "issuer" in lower or "untrusted" in lower:
        return NetFailure("tls_cert", f"TLS certificate of {host} not trusted ({reason})", trust)
    return NetFailure("tls_cert", f"TLS certificate of {host} refused ({reason})",
                      f"fix the server's certificate; {trust}")


def _tls_failure(exc: ssl.SSLError, host: str, not_tls: str) -> NetFailure:
    reason = (exc.reason or "").upper()
    said = _ssl_reason(exc)
    if any(r in reason for r in _NOT_TLS):
        return NetFailure("tls", f"TLS handshake with {host} failed: the server does not speak TLS there ({said})",
                          not_tls)
    if any(r in reason for r in _NO_COMMON):
        return NetFailure("tls", f"TLS handshake with {host} failed: no TLS version or cipher in common ({said})",
                          "the server may offer only TLS 1.0/1.1 or old ciphers, which this machine's OpenSSL "
                          "refuses: its TLS setup must be updated")
    if isinstance(exc, ssl.SSLEOFError) or "EOF" in reason:
        return NetFailure("tls", f"TLS handshake with {host} failed: the server closed the connection ({said})",
                          f"it may refuse this client's TLS; {not_tls}")
    return NetFailure("tls", f"TLS handshake with {host} failed ({said})", not_tls)

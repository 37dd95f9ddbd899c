"""A real SMTP server on 127.0.0.1 (aiosmtpd) for tests: collects what arrives; can be stopped and restarted."""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
import threading
import weakref
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from ports import reserve

# A self-signed certificate for 127.0.0.1 (valid until 2125), for TLS tests only. The private key is public on
# purpose: it protects nothing but a loopback test server.
TEST_CERT = """-----BEGIN CERTIFICATE-----
MIIDJzCCAg+gAwIBAgIUDl+IWE8QvIKrs0EHB71SLGQaoRMwDQYJKoZIhvcNAQEL
BQAwFDESMBAGA1UEAwwJMTI3LjAuMC4xMCAXDTI2MTEyODA1MTg0M1oYDzIxMjYx
MTA0MDUxODQzWjAUMRIwEAYDVQQDDAkxMjcuMC4wLjEwggEiMA0GCSqGSIb3DQEB
AQUAA4IBDwAwggEKAoIBAQC2/j6C+peyaFvhk3caF1C4FsdGlR4HZK+Fo44MA3fH
GW9aa9hyqfQcQMCmDmiB6gDtNLj+nVAzKhJipIbZln+j/t3h6pAQsXINB8MtzBXh
6zvndEOkVghHZuGrj2Bmew/tEPrwetpggRbM2OaO/lSNsJxvFbOu3tOhIVtp3jzn
TQyegCKiq9VDrrF1NVf105yK2l4Nyo0t+xM65Y9u9sagsHEJuw7y4xeF2HxdTgyT
7nhWi2/L8PHlUS/KB0fSkcztZky4A/8o0cfzHGp/K+cvdY2T4Y6i04uMkuWFV56E
wVjuQtp2VNxUoR300vaxpZuQroF6pPal8pn7b5wr2+jnAgMBAAGjbzBtMB0GA1Ud
DgQWBBQEJ4wM3LcuQWKW3Iy+c5CeCmXRTzAfBgNVHSMEGDAWgBQEJ4wM3LcuQWKW
3Iy+c5CeCmXRTzAPBgNVHRMBAf8EBTADAQH/MBoGA1UdEQQTMBGHBH8AAAGCCWxv
Y2FsaG9zdDANBgkqhkiG9w0BAQsFAAOCAQEAFSTOWU4C1q4tkZ8ulcmzdXwmmZdA
8xyg4X/P/hgZvKnqHmnl7UevFIe7tXOg75HqEiPBe7mBQZUt0my437of8oS+T19h
lC0ztTnqldcSdhgTM98aPcMhNAmc2eI7C4MNgY8G3yBgDRQRgvo8JeNoV3OgZwn6
k7AQgxZHK7b/e+o3i3FTC/aESG+ZUO9TqqQoGxMSoiTRtbV6lCpOPCm5QnLNu+co
5wRc4EcmzFu2Wn5H+QvifWi7mprH1YqUzH6L9IK2mF1xTUlyS65TACflnY61tzxR
L7++lmNIlV9J/zI4ssMf/FeVav9SoGOX55bMYe64MXiZkn8SSuZwMDOWuA==
-----END CERTIFICATE-----
"""
TEST_KEY = """-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQC2/j6C+peyaFvh
k3caF1C4FsdGlR4HZK+Fo44MA3fHGW9aa9hyqfQcQMCmDmiB6gDtNLj+nVAzKhJi
pIbZln+j/t3h6pAQsXINB8MtzBXh6zvndEOkVghHZuGrj2Bmew/tEPrwetpggRbM
2OaO/lSNsJxvFbOu3tOhIVtp3jznTQyegCKiq9VDrrF1NVf105yK2l4Nyo0t+xM6
5Y9u9sagsHEJuw7y4xeF2HxdTgyT7nhWi2/L8PHlUS/KB0fSkcztZky4A/8o0cfz
HGp/K+cvdY2T4Y6i04uMkuWFV56EwVjuQtp2VNxUoR300vaxpZuQroF6pPal8pn7
b5wr2+jnAgMBAAECggEAVQTFpVPpA9YxjhnV1ZTsh0Lp/dSNGZFBbT0CY3l+/k1G
a4O8kfV9OV0qRFxgWK+QE6URqBYNq1/KH/NhxZkDH33rt6kjmuXeX8hx+YaeyhJh
CBV/0cu41/eoNG2OM77MNO/VLsJdUEXZgn3pjJkETro1y/SQwVe8ilm1n3fF4w4j
hPWbFLXoFK7UQsx0oqazyXaW/k10bQz6pp1js61hP7+fz0moKwcrMzBT3y9Sihb+
wRkYh8x2PXAcJ8kKUMEQ8FziBCAr1Y7QO7P05kyT9je2F+VDt88LhnOJRHUVs1Ba
ko84uyJJymXg6HE7dssIf3M7gxr548EKyod7Ipm8iQKBgQDaRKoK/btL3Rm3riPm
GUKpejzdn/bszXTGtOm1z7DbHYN6HMUOxBQfpsmc8R3jnP0ES3JZh60jb2KgBNH1
g8Eih/g0lPD1cgZuIRiMDq2Nx79U8ycMniTLmroUeAX4ihtbNE4u6qco4L0W6MWX
ARirZBkj8gvp1uAPUuaLZNg2+QKBgQDWoIBfN0MVrV3Z+pWJqae1n+uXmfNM4oub
TVqSdIPwhbQFKiolMAD0NgONJTWOS1JrfwcqPn0nmFh53owZoSbwYLcBoB+yK/l9
Uk0trviNVRmcB8yKk591Ks3RTNPI4Dfxycwmt//NXiBKeUDxXUkXHUEgFnSyCKtm
idyvwKe23wKBgQDV0nJqdgqn1R++iz/ryE8/y9oYmv7BGL0PdGeHjsEIxq7oT4rU
Xk4Ae9oCf0rykfZj4K1S+9EnZ5TMgixVQg9QDreee1JagKu/83girLZksIvFYrac
a8hMFXW5W6Mtyc3m2STGXWYIa7GR4dK/jXlnXZYrWpFFMRUqreHgKJiPsQKBgH4y
u6jA7rIlUUTlgd4DIri5wqZOgG/Z2WrEzhfFaPsZMuPCiit5kWYHCImKsnXrthe9
BnKBccfBXWyzPb+oMSQwSgsrotd54eYdaYIOGtnHixpiv5NP//e95m1F9lVr+Zkz
JdYyZLfVu7jumRAS4PI1YmDCs3Ungdj2AQxahIMTAoGBAMtsNv2so9VyUSL5FFGd
2dkNWljOMBSF8DV5pd9/hRLlbf16sj0C/ptXmmpTCPn3ESebVGEtD3ZtIG9Rjgi2
3mzytFRBhP0bE4OGw+EZ9RXcAwCYq7r9DymQwHax4+nbfOII77slqUTnwUPXiI/d
Q8NT0hpju8Yb8hE0/yb02lJt
-----END PRIVATE KEY-----
"""


class Inbox:
    """The aiosmtpd handler: keeps every accepted message; ``reject_rcpt`` makes RCPT fail with that reply;
    ``refuse[address]`` lists replies that RCPT TO of that address gets, one per attempt, before it is accepted;
    ``data_reply`` replaces DATA's acceptance (the message is then not kept); ``quit_reply`` is the answer to QUIT;
    ``delay``: seconds each message's DATA waits before it is answered (a slow but working server)."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.raw: list[bytes] = []  # each kept message as it came, for what parsing hides (how a header folds)
        self.envelopes: list[tuple[str, list[str]]] = []
        self.reject_rcpt: str | None = None
        self.refuse: dict[str, list[str]] = {}
        self.data_reply: str | None = None
        self.quit_reply = "221 Bye"
        self.delay = 0.0
        self._lock = threading.Lock()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: Any) -> str:
        if self.reject_rcpt:
            return self.reject_rcpt
        with self._lock:
            replies = self.refuse.get(address)
            if replies:
                return replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.delay)
        if self.data_reply:
            return self.data_reply
        msg = email.message_from_bytes(envelope.content, _class=EmailMessage, policy=email.policy.default)
        with self._lock:
            self.messages.append(msg)
            self.raw.append(envelope.content)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        return self.quit_reply

    def message_ids(self) -> list[str]:
        with self._lock:
            return [str(m["Message-ID"]) for m in self.messages]


def tls_context(folder: Path) -> ssl.SSLContext:
    (folder / "cert.pem").write_text(TEST_CERT)
    (folder / "key.pem").write_text(TEST_KEY)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return ctx


class SmtpServer:
    """``tls``: None (plain), "starttls" (STARTTLS required) or "ssl" (implicit TLS). ``login``: (user, password)
    makes AUTH mandatory (over TLS only when TLS is on). ``smtputf8``: whether EHLO offers SMTPUTF8."""

    def __init__(self, tls: str | None = None, folder: Path | None = None,
                 login: tuple[str, str] | None = None, smtputf8: bool = True) -> None:
        self.inbox = Inbox()
        self.port = 0
        self.tls = tls
        self.folder = folder
        self.login = login
        self.smtputf8 = smtputf8
        self.logins: list[str] = []
        self._controller: Controller | None = None

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = (isinstance(data, LoginPassword) and self.login is not None
              and (data.login.decode(), data.password.decode()) == self.login)
        if ok:
            self.logins.append(data.login.decode())
        return AuthResult(success=ok, handled=False)

    def start(self) -> None:
        kwargs: dict[str, Any] = {}
        if self.tls:
            assert self.folder is not None, "TLS needs a folder for the certificate files"
            ctx = tls_context(self.folder)
            kwargs = {"ssl_context": ctx} if self.tls == "ssl" else {"tls_context": ctx, "require_starttls": True}
        if self.login:
            # aiosmtpd only counts STARTTLS as TLS for AUTH; with implicit TLS the whole session is encrypted anyway.
            kwargs |= {"authenticator": self._authenticate, "auth_required": True,
                       "auth_require_tls": self.tls == "starttls"}
        if not self.port:
            # Held for the server's life (see ports.reserve): started again after a stop, as a real server coming
            # back would be, it binds the same port, which nothing else can have taken meanwhile, where a port let go
            # at the stop could be.
            reserved = reserve()
            weakref.finalize(self, reserved.close)
            self.port = reserved.getsockname()[1]
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port,
                                       enable_SMTPUTF8=self.smtputf8, **kwargs)
        self._controller.start()
        self.port = self._controller.port

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()

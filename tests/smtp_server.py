"""A real SMTP server on 127.0.0.1 (aiosmtpd) for tests: collects what arrives; can be stopped and restarted."""

from __future__ import annotations

import email
import email.policy
import threading
from collections.abc import Awaitable, Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller


class _Controller(Controller):  # type: ignore[misc]
    """Binds port 0 and learns the real port before aiosmtpd's readiness probe connects to it."""

    def _create_server(self) -> Awaitable[Any]:
        coro = super()._create_server()

        async def bind() -> Any:
            server = await coro
            self.port = server.sockets[0].getsockname()[1]
            return server

        return bind()


class Inbox:
    """The aiosmtpd handler: keeps every accepted message; ``reject_rcpt`` makes RCPT fail with that reply."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.reject_rcpt: str | None = None
        self._lock = threading.Lock()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: Any) -> str:
        if self.reject_rcpt:
            return self.reject_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self.messages.append(msg)  # type: ignore[arg-type]
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"

    def message_ids(self) -> list[str]:
        with self._lock:
            return [str(m["Message-ID"]) for m in self.messages]


class SmtpServer:
    def __init__(self) -> None:
        self.inbox = Inbox()
        self.port = 0
        self._controller: _Controller | None = None

    def start(self) -> None:
        # Restarting reuses the first port, as a real server coming back would.
        self._controller = _Controller(self.inbox, hostname="127.0.0.1", port=self.port)
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

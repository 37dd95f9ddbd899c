"""The HTTP endpoint's listening socket, which a reload (:mod:`miner.service_handover`) hands from the service it
stops to the one it starts when the new config listens on the same `[server]` host and port.

Closed at the stop and bound again by the new service, the port had nobody listening while the new service started:
connections were refused, a load balancer's or Kubernetes' health check failed, and the user reports posted then
were lost. Kept open, as nginx and HAProxy keep theirs across a reload, the connections made meanwhile wait in its
listen backlog until the new service accepts them: milliseconds, as its model was loaded before the stop
(:mod:`miner.service_switch`).

A new config on another host or port (or with the endpoint off) closes it as soon as the new service is given it,
before that binds its own: a wildcard address cannot be bound while a specific one on its port listens, and a client
of the old address is better refused at once than kept waiting to be reset. The connections still in its backlog
then are reset, as they were when the old service closed it.
"""

from __future__ import annotations

from dataclasses import dataclass
from socket import socket as Socket
from typing import Any


@dataclass(eq=False)
class Listener:
    """A socket listening where ``host`` and ``port`` (as configured: 0, any port) said."""

    host: str
    port: int
    sock: Socket

    def serves(self, host: str, port: int) -> bool:
        """Whether it listens where ``host`` and ``port`` ask (the same words: another name for the same address is
        bound anew)."""
        return (self.host, self.port) == (host, port) and self.sock.fileno() != -1

    def close(self) -> None:
        self.sock.close()


class HandedListener:
    """For a socketserver.TCPServer subclass, listed before it: serves on ``listening``, a socket listening at its
    address already, if given, instead of binding one of its own; and keeps it open at ``server_close`` when
    ``keep`` is set, for the next server."""

    keep = False
    socket: Socket
    server_address: Any

    def __init__(self, *args: Any, listening: Socket | None = None, **kwargs: Any) -> None:
        self.listening = listening
        super().__init__(*args, **kwargs)

    def server_bind(self) -> None:
        if self.listening is None:
            super().server_bind()  # type: ignore[misc]
            return
        self.socket.close()  # the one TCPServer made for binding, left unused
        self.socket = self.listening
        self.server_address = self.socket.getsockname()
        # What HTTPServer.server_bind sets, but the host's name, whose look-up can take seconds and nothing here reads.
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def server_activate(self) -> None:
        if self.listening is None:
            super().server_activate()  # type: ignore[misc]

    def server_close(self) -> None:
        if not self.keep:
            super().server_close()  # type: ignore[misc]

    def close_keeping(self, keep: bool) -> Socket | None:
        """``server_close``, but for the listening socket with ``keep``: returned open."""
        self.keep = keep
        self.server_close()
        return self.socket if keep else None

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

`miner run` binds its first service's socket itself (:func:`bind_early`), as soon as it has read its config, before
it imports the service; that service's endpoint serves on it from the start's first step.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from socket import socket as Socket
from typing import TYPE_CHECKING, Any

from miner.http_conns import LISTEN_BACKLOG

if TYPE_CHECKING:
    from miner.server_settings import ServerSettings


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


def listen_at(server: ServerSettings, http: bool | None, port: int | None) -> tuple[str, int] | None:
    """Where the HTTP endpoint listens (host, port: as configured, 0 for any), None if it does not: ``server`` is
    the config's [server], ``http`` and ``port`` what `miner run`'s --http/--no-http and --port said (None: not
    given)."""
    if not (server.enabled if http is None else http):
        return None
    return server.host, server.port if port is None else port


def bind_early(at: tuple[str, int] | None) -> Listener | None:
    """A socket listening at ``at`` as the endpoint's server binds one, for `miner run` to bind before it imports
    the service (0.3-0.6 s on 2 cores, plus Python's start), whose endpoint then serves on it; None where it does not
    listen, or where binding failed: the service's own attempt then fails with its error after the checks before it
    (a second service on the same store is told of the store's lock first, as before).

    Bound only after those imports, the port refused connections for the first second of each start: a probe (a
    Docker healthcheck, Kubernetes', a load balancer's) read the service as dead rather than starting. Bound here, a
    connection made meanwhile waits in the backlog, and is answered as soon as the endpoint is (503 "starting")."""
    if at is None:
        return None
    try:
        return bind(*at)
    except OSError:
        return None


def bind(host: str, port: int) -> Listener:
    """A socket listening at ``host`` and ``port`` as the endpoint's server binds one; raises OSError."""
    sock = Socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as http.server's HTTPServer sets it
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError:
        sock.close()
        raise
    return Listener(host, port, sock)


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

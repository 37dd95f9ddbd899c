"""The connections of the shared httpx client, which :meth:`OpenConnections.abort` shuts down at once.

A poll blocked reading from a server that hangs (it accepted the connection, or sent its headers, and then nothing)
stayed blocked after its poller closed, until the source's read timeout (up to 600 s): closing a socket from
another thread does not wake a recv blocked on it on Linux, and the client's close only closes its sockets. Each
poller closed at a reload left its polls' threads and connections behind for that long, and repeated reloads while
a server hung piled them up. A shutdown(2) of the socket does wake the recv (and a TLS handshake, and a send), so
every connection the client opens is kept here, with a handle of its own on its socket, until it is closed.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import httpcore
import httpx

from miner.proxy_env import RefusedProxy


def wrap_network_backends(client: httpx.Client,
                          wrap: Callable[[httpcore.NetworkBackend], httpcore.NetworkBackend]) -> None:
    """Have every connection ``client`` makes made through ``wrap(its network backend)``."""
    # httpx has no public hook for its network streams (httpcore's NetworkBackend is public, but httpx's transports
    # do not take one): its transports' httpcore pools (the direct one and any proxy's from the environment) create
    # every connection through their network backend, so that is wrapped.
    for transport in (client._transport, *client._mounts.values()):
        if transport is None or isinstance(transport, RefusedProxy):  # a NO_PROXY host; a proxy that opens nothing
            continue
        pool = getattr(transport, "_pool", None)
        if pool is None or (backend := getattr(pool, "_network_backend", None)) is None:
            raise RuntimeError(f"cannot wrap the connections of {type(transport).__name__} (httpx/httpcore changed?)")
        pool._network_backend = wrap(backend)


class OpenConnections:
    """The connections ``client`` has open. :meth:`abort` shuts every one down, and no other is opened after it."""

    def __init__(self, client: httpx.Client) -> None:
        self._lock = threading.Lock()
        # Weak: a connection httpcore drops without closing it (a failed TLS handshake) is not kept for ever.
        self._open: weakref.WeakSet[_Tracked] = weakref.WeakSet()
        self._aborted = False
        wrap_network_backends(client, lambda backend: _TrackingBackend(backend, self))

    def abort(self) -> None:
        """Shut down every open connection: a read, write or TLS handshake blocked on one fails at once. A
        connection being opened meanwhile is closed as soon as its connect ends (within ``connect_timeout``)."""
        with self._lock:
            self._aborted = True
            for tracked in list(self._open):
                tracked.shut_down()

    def _refuse_if_aborted(self) -> None:
        if self._aborted:
            raise httpcore.ConnectError("the poller was closed: no new connection is opened")

    def _add(self, stream: httpcore.NetworkStream) -> _Tracked:
        sock = stream.get_extra_info("socket")
        handle: socket.socket | None = None
        if isinstance(sock, socket.socket):
            # A handle of our own on the socket: httpcore's socket object gives its descriptor to the SSLSocket that
            # wraps it at the TLS handshake, and one closed by httpcore could be reused by another connection's.
            with contextlib.suppress(OSError):  # out of descriptors: the connection works, it is not abortable
                handle = sock.dup()
        tracked = _Tracked(stream, handle, self)
        with self._lock:
            aborted = self._aborted
            if not aborted:
                self._open.add(tracked)
        if aborted:  # while it connected: a poll given up goes no further than its connect
            tracked.close()
            self._refuse_if_aborted()
        return tracked

    def _forget(self, tracked: _Tracked) -> None:
        # Under the lock, before the handle is closed: abort never shuts down a descriptor closed and reused since.
        with self._lock:
            self._open.discard(tracked)


class _Tracked(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream, handle: socket.socket | None, owner: OpenConnections) -> None:
        self._stream = stream
        self._handle = handle
        self._owner = owner

    def shut_down(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):  # not connected any more
                self._handle.shutdown(socket.SHUT_RDWR)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, timeout)

    def close(self) -> None:
        self._owner._forget(self)
        try:
            self._stream.close()
        finally:
            if self._handle is not None:
                self._handle.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        # In place: the TLS stream runs on the same socket, which the handle shuts down the same way.
        try:
            self._stream = self._stream.start_tls(ssl_context, server_hostname, timeout)
        except BaseException:
            self.close()  # httpcore closes no stream whose handshake failed
            raise
        return self

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _TrackingBackend(httpcore.NetworkBackend):
    def __init__(self, backend: httpcore.NetworkBackend, owner: OpenConnections) -> None:
        self._backend = backend
        self._owner = owner

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None) -> httpcore.NetworkStream:
        self._owner._refuse_if_aborted()
        return self._owner._add(self._backend.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None) -> httpcore.NetworkStream:
        self._owner._refuse_if_aborted()
        return self._owner._add(self._backend.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)

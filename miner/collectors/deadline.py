"""A whole-request deadline for the shared httpx client: every socket read and write of a fetch ends by it.

httpx's read timeout is per socket read: a server that sends its headers, or a gzip header's endless file name, a
byte a second never trips it, and the body loop in `fetch`, which checks the deadline, is never reached or never
gets a decoded byte. That poll, and the collect round waiting for it, hung for good.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore
import httpx

from miner.collectors.connections import wrap_network_backends


def hold_to_deadlines(client: httpx.Client) -> None:
    """Hold every connection ``client`` makes to the deadline of the `deadline_at` block using it."""
    wrap_network_backends(client, _DeadlineBackend)


# The monotonic time by which the `fetch` running on this thread must be done (None outside one). A thread-local,
# as the client is shared: a pooled connection serves whichever thread's request is on it.
_deadline = threading.local()


@contextlib.contextmanager
def deadline_at(when: float) -> Iterator[None]:
    before = getattr(_deadline, "at", None)
    _deadline.at = when
    try:
        yield
    finally:
        _deadline.at = before


def _within_deadline(timeout: float | None, expired: type[Exception]) -> float | None:
    """``timeout`` (httpx's per-operation one), shortened to what is left of this thread's fetch deadline."""
    at: float | None = getattr(_deadline, "at", None)
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise expired("the request's deadline has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write ends by the deadline of the fetch using it."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _within_deadline(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _within_deadline(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        tls = self._stream.start_tls(ssl_context, server_hostname, _within_deadline(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(tls)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None) -> httpcore.NetworkStream:
        timeout = _within_deadline(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._backend.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None) -> httpcore.NetworkStream:
        timeout = _within_deadline(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._backend.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)

"""The connections the HTTP endpoint is answering, each on a thread of its own: capped, and waited for at a stop."""

from __future__ import annotations

import threading


class OpenConnections:
    """A count of the connections being handled. The stdlib's ThreadingMixIn joins its handler threads at
    server_close only when they are not daemons, and the endpoint's are (a client must not keep the process from
    exiting): without a count of its own, a stop closed the store under the requests still being answered."""

    def __init__(self) -> None:
        self._open = 0
        self._changed = threading.Condition()

    def take(self, limit: int) -> bool:
        """Count one more connection, unless ``limit`` are open already (False: turn it away)."""
        with self._changed:
            if self._open >= limit:
                return False
            self._open += 1
            return True

    def release(self) -> None:
        with self._changed:
            self._open -= 1
            self._changed.notify_all()

    def wait_closed(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for every connection to end; returns how many are still open."""
        with self._changed:
            self._changed.wait_for(lambda: self._open == 0, timeout)
            return self._open

"""One line of the log a minute at most for a condition that can recur thousands of times a second (connections or
reports turned away), saying how many times it recurred in between."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

EVERY = 60.0  # seconds between two lines about one condition


class LogThrottle:
    """``due`` counts one occurrence and says whether to log it now."""

    def __init__(self, every: float = EVERY, clock: Callable[[], float] = time.monotonic) -> None:
        self._every = every
        self._clock = clock
        self._guard = threading.Lock()
        self._logged: float | None = None  # clock() of the last line
        self._since = 0  # occurrences since that line, this one included

    def due(self) -> int | None:
        """None to stay quiet; else the occurrences since the last line, this one included (0 for the first line
        ever, which has no "since")."""
        with self._guard:
            self._since += 1
            now = self._clock()
            if self._logged is not None and now - self._logged < self._every:
                return None
            since = 0 if self._logged is None else self._since
            self._since, self._logged = 0, now
            return since

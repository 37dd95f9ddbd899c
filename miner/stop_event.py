"""An event that a signal's handler may set: the stop of a command or of the service, set by SIGINT and SIGTERM.

Python runs a handler in the main thread between any two of its bytecodes, those of ``Event.wait`` and ``Event.set``
too, where the event's lock is held; ``threading.Event``'s lock is not reentrant, so a handler that set the event
there waited for ever to take it again (as did every later signal's: only SIGKILL ended the process).
"""

from __future__ import annotations

import threading


class StopEvent(threading.Event):
    """A ``threading.Event`` whose lock the thread holding it can take again (an RLock for its condition)."""

    def __init__(self) -> None:
        super().__init__()
        self._cond = threading.Condition(threading.RLock())

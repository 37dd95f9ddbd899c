"""SIGINT and SIGTERM for the commands: the work in progress cleans up, then one line and exit 128 + the signal.

While a command runs, a handler for both raises :class:`Interrupted` in the main thread, so ``finally`` blocks and
context managers run as for any error: a store transaction in progress is rolled back, the service lock released,
a model build's staging folder removed. (SIGTERM's default action killed the process on the spot, skipping all
that; SIGINT's KeyboardInterrupt ended in click's "Aborted!" and exit 1, which scripts could not tell from a failure.)
Commands that should rather finish the step in progress first, as the service does, use :func:`stop_on_signal`.
A signal ignored when such a command started (SIGINT in a background job of a script, `miner ... &`) stays ignored.
SIGHUP (the terminal closed, the login session ended) still kills a command outright, but for one that writes a file
or folder to rename into place (`miner classify -o`, `miner detect -o`, `miner backup`'s temporary copy, `miner
train`'s staging folder), which takes it as it takes SIGTERM (:func:`raise_on_hangup`): killed, it left that file or
folder behind. A command that renames nothing into place has nothing such to clean up, and is killed as before.

`miner run` sets handlers of its own (:mod:`miner.service_reload`: SIGHUP reloads its config, and is taken even when
ignored) and exits 0 once stopped, as a supervised service does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from types import CodeType, FrameType

from miner.stop_event import StopEvent

SIGNALS = (signal.SIGINT, signal.SIGTERM)
# What stop_on_signal takes: SIGHUP too, where the command took it (raise_on_hangup).
_STOPPING = (*SIGNALS, signal.SIGHUP)

# The signals received while the handlers below were installed, most recent last. A handler's exception raised
# inside a callback that SQLite calls (the progress handler that lets a long query be interrupted) is swallowed
# there and the statement fails as "interrupted": this says what interrupted it.
received: list[int] = []


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM (or SIGHUP, where raise_on_hangup took it) arrived while a command ran."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # as a shell reports a command killed by the signal: 130, 143 (129)

    def message(self) -> str:
        return f"Interrupted by {signal.Signals(self.signum).name}"


def _raise(signum: int, frame: FrameType | None) -> None:
    received.append(signum)
    raise Interrupted(signum)


def _ours_to_set(sig: signal.Signals) -> bool:
    """Whether ``sig`` still has the handler Python starts with, rather than one ignoring it (or a caller's)."""
    current = signal.getsignal(sig)
    if sig == signal.SIGHUP:  # only where the command took it: its default kills a command outright
        return current is _raise
    return current is (signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL) or current is _raise


@contextlib.contextmanager
def raise_on_signals() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`Interrupted`; the handlers before it are put back after."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS if _ours_to_set(sig)}
    received.clear()
    for sig in previous:
        signal.signal(sig, _raise)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def raise_on_hangup() -> Iterator[None]:
    """Within the block, SIGHUP raises :class:`Interrupted` as SIGTERM does (exit status 129), where it still has
    its default action, which killed the process on the spot: `miner classify -o` left its temporary file beside the
    -o one, `miner backup` its temporary copy beside TARGET, `miner train` its staging folder in --out. One ignored
    (`nohup`) stays ignored."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGHUP) is not (
        signal.SIG_DFL
    ):
        yield
        return
    signal.signal(signal.SIGHUP, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)


def interrupted_by() -> Interrupted | None:
    """The interruption a signal received during the command caused, if one came."""
    return Interrupted(received[-1]) if received else None


def _within(frame: FrameType | None, code: CodeType) -> bool:
    """Whether ``frame``, or one it was called from, runs ``code``."""
    while frame is not None:
        if frame.f_code is code:
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def stop_on_signal(stopping: str) -> Iterator[threading.Event]:
    """Within the block, the first SIGINT or SIGTERM (or SIGHUP, under raise_on_hangup) sets the event yielded, for
    the command to stop at the end of its current step, and says so on stderr: ``Stopping: {stopping} (a second
    signal stops at once)``; a second one raises :class:`Interrupted` at once. When the block ends after a signal, it
    raises :class:`Interrupted` for the first one, so the command exits as interrupted."""
    # Said at once: the step may take seconds (a poll's grace), in which a Ctrl-C seemed not taken, and whoever
    # sends a second signal to stop at once must know the first was taken (or the two may be taken the other way
    # round: the kernel may hand the first to another thread, whose handler flags it after the main thread has run
    # the second's).
    notice = f"Stopping: {stopping} (a second signal stops at once)\n".encode()
    stop = StopEvent()  # set by the handler, maybe within the main thread's own wait on it
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    first: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Python runs a handler between any two bytecodes of the main thread, another signal's handler's too: a
        # second signal landing before the first's handler had set ``stop`` was taken for a first (a SIGINT then
        # a SIGTERM exited 130, after the grace), or, landing in ``stop.set()``, waited on its lock for ever.
        if stop.is_set() or _within(frame, on_signal.__code__):
            _raise(signum, frame)
        first.append(signum)  # not in `received`: an error the command meets while it stops is its own
        stop.set()
        # Not sys.stderr: the main thread may be in its write, and a handler's write then fails as reentrant.
        with contextlib.suppress(OSError):  # stderr closed: the stop goes on without a word
            os.write(2, notice)

    previous = {sig: signal.getsignal(sig) for sig in _STOPPING if _ours_to_set(sig)}
    for sig in previous:
        signal.signal(sig, on_signal)
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if first:
        raise Interrupted(first[0])

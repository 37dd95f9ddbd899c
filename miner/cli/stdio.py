"""Standard input as a command's input file ('-', for classify and detect), and standard output checked before a
command whose output is the point of it runs (``prints``), or one that changes something and reports it (``acts``)."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

# The exit status of a command whose standard output's reader stopped early (`| head`): what a shell reports for a
# command SIGPIPE ended (cat, grep, git), which Python's, ignoring SIGPIPE, never is. It was 0, so a script (`set -o
# pipefail`) took an output cut short for a whole one.
READER_STOPPED = 128 + signal.SIGPIPE


def quiet_stdout() -> None:
    """Standard output to /dev/null, once its reader has stopped: what is left in its buffer, and anything written
    after, goes nowhere, rather than failing again (at exit, "Exception ignored ... BrokenPipeError" on stderr)."""
    with contextlib.suppress(OSError, ValueError):  # no descriptor behind it (a test runner's): nothing to quiet
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)


def stdin_unreadable() -> str | None:
    """Why standard input cannot be read (closed, opened for writing only), or None. Reads nothing: a pipe's
    first line may be a long time coming."""
    return _unusable(sys.stdin, os.O_WRONLY, "not open for reading")


def stdout_unwritable() -> str | None:
    """Why standard output cannot be written (closed, opened for reading only), or None. Writes nothing."""
    return _unusable(sys.stdout, os.O_RDONLY, "not open for writing")


def _unusable(stream: Any, wrong_mode: int, why: str) -> str | None:
    if stream is None or stream.closed:  # Python's stream for a descriptor closed at the start (`>&-`) is None
        return "closed"
    try:
        fd = stream.fileno()
    except (OSError, ValueError):  # a stream with no file behind it (a test runner's)
        return None
    try:
        wrong = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == wrong_mode
    except OSError:
        return "closed"
    return why if wrong else None


def require_stdout() -> None:
    """Refuse to go on where standard output cannot be written: click.echo writes nothing to a closed one, and
    `miner status >&-` printed nothing and exited 0, as if it had shown the status; one open for reading only was an
    "internal error: OSError: [Errno 9] Bad file descriptor"."""
    if why := stdout_unwritable():
        raise click.ClickException(f"standard output is {why}: there is nowhere to write what this command "
                                   "prints; redirect it to a file (> FILE) or a pipe")


def prints(func: F) -> F:
    """For a command whose output is what it is run for (status, query, the lists): require_stdout() before it
    reads or does anything."""

    @functools.wraps(func)
    def checked(*args: Any, **kwargs: Any) -> Any:
        require_stdout()
        return func(*args, **kwargs)

    return checked  # type: ignore[return-value]


def acts(func: F) -> F:
    """For a command that changes something and then reports it on standard output (backup, prune, collect, silence
    add...): it runs ``acting()``."""

    @functools.wraps(func)
    def checked(*args: Any, **kwargs: Any) -> Any:
        with acting():
            return func(*args, **kwargs)

    return checked  # type: ignore[return-value]


@contextlib.contextmanager
def acting() -> Iterator[None]:
    """Refuse a standard output that cannot be written before anything is done, and make a report that fails to be
    written afterwards (a full disk) an error that says the change stands.

    Under a closed standard output (`miner backup x.db >&-`, a cron job's or a unit's that closed it) such a command
    did its work and exited 0 having told no one (click.echo writes nothing there), or, open for reading only, did
    it and then failed as if it had not.

    A reader that stops early (`| head`) does not stop the work: it was cut at the report's next line (the routes of
    a `miner digest` after the first left unqueued, a demo's digest unwritten) and exited 0 as if all was done. The
    rest of the report goes nowhere, and the command exits READER_STOPPED once done (a failure still exits 1, saying
    why on stderr); `collect` without --once stops as at a signal (see ``reader_stopped``)."""
    if why := stdout_unwritable():
        raise click.ClickException(f"standard output is {why}: nothing done, as this command reports there what it "
                                   "does; redirect it to a file (> FILE) or a pipe, or to /dev/null to do without "
                                   "the report")
    reporting = _Report(sys.stdout)
    sys.stdout = reporting  # duck-typed: click.echo writes, flushes, asks isatty
    try:
        yield
    except ReportNotWritten as exc:
        raise click.ClickException(f"cannot write the output: {exc}; what the command did stands, "
                                   "only its report is missing") from exc
    finally:
        if sys.stdout is reporting:
            sys.stdout = reporting.stream
    if reporting.reader_stopped:
        raise click.exceptions.Exit(READER_STOPPED)


def reader_stopped() -> bool:
    """Whether the reader of the report of the command that acts, now running, has stopped (``acting``)."""
    return isinstance(sys.stdout, _Report) and sys.stdout.reader_stopped


class ReportNotWritten(Exception):
    """A write to standard output that failed while a command that acts ran (``acting``): told apart from the same
    OSError of the work itself (a full disk under a backup's target, or a notification file's), and no OSError, so
    that no handler of the work's own takes it for one."""

    def __init__(self, exc: OSError) -> None:
        super().__init__(exc.strerror or str(exc))


class _Report:
    """Standard output while a command that acts runs: its write and flush errors as ReportNotWritten, but for a
    broken pipe (a reader that stopped early), after which the report goes nowhere (``acting``)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.reader_stopped = False

    def write(self, text: str) -> int:
        try:
            return int(self.stream.write(text))
        except BrokenPipeError:
            self._stopped()
            return len(text)
        except OSError as exc:
            raise ReportNotWritten(exc) from exc

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            self._stopped()
        except OSError as exc:
            raise ReportNotWritten(exc) from exc

    def _stopped(self) -> None:
        self.reader_stopped = True
        quiet_stdout()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def read_stdin() -> bytes:
    """All of standard input, as bytes: decoded by the caller, as it decodes a file (a byte-order mark, its errors)."""
    stream = getattr(sys.stdin, "buffer", None)
    return stream.read() if stream is not None else sys.stdin.read().encode("utf-8", "surrogateescape")

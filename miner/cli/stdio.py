"""Standard input as a command's input file ('-', for classify and detect), and standard output checked before a
command whose output is the point of it runs."""

from __future__ import annotations

import fcntl
import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


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


def read_stdin() -> bytes:
    """All of standard input, as bytes: decoded by the caller, as it decodes a file (a byte-order mark, its errors)."""
    stream = getattr(sys.stdin, "buffer", None)
    return stream.read() if stream is not None else sys.stdin.read().encode("utf-8", "surrogateescape")

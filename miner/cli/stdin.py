"""Standard input as a command's input file ('-'), for the commands that read one (classify, detect)."""

from __future__ import annotations

import fcntl
import os
import sys


def stdin_unreadable() -> str | None:
    """Why standard input cannot be read (closed, opened for writing only), or None. Reads nothing: a pipe's
    first line may be a long time coming."""
    if sys.stdin is None or sys.stdin.closed:
        return "closed"
    try:
        fd = sys.stdin.fileno()
    except (OSError, ValueError):  # a stream with no file behind it (a test runner's)
        return None
    try:
        write_only = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY
    except OSError:
        return "closed"
    return "not open for reading" if write_only else None


def read_stdin() -> bytes:
    """All of standard input, as bytes: decoded by the caller, as it decodes a file (a byte-order mark, its errors)."""
    stream = getattr(sys.stdin, "buffer", None)
    return stream.read() if stream is not None else sys.stdin.read().encode("utf-8", "surrogateescape")

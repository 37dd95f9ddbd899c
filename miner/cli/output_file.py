"""An -o file of `miner classify` and `miner detect`: standard output, a descriptor named by a path (/dev/stdout),
or a file written beside it and renamed into place."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import tempfile
from typing import IO, Any

import click

from miner.cli.stdio import stdout_unwritable
from miner.cli.stopping import stop_on_signal


class Target:
    """A regular -o file, written as a temporary file beside it (.NAME.XXXXXXXX.tmp) that a run that ends renames
    to it: one cut short leaves the file as it was (an earlier run's results), never emptied or half written."""

    def __init__(self, name: str, path: str, temp: str) -> None:
        self.name, self.path, self.temp = name, path, temp

    def commit(self, out: IO[str]) -> None:
        try:
            out.flush()
            os.fsync(out.fileno())  # the rows are on disk before the name points at them (a crash, a power cut)
            out.close()
            os.replace(self.temp, self.path)
        except OSError as exc:
            raise click.ClickException(f"cannot write {self.name}: {exc.strerror or exc}") from None

    def discard(self, out: IO[str]) -> str:
        """Remove the temporary file; and the line saying so, for stderr: "Interrupted by SIGINT" alone left a reader
        to take the file there, an earlier run's, for this one's."""
        with contextlib.suppress(OSError):
            out.close()
        with contextlib.suppress(OSError):
            os.unlink(self.temp)
        kept = "the file there is an earlier run's" if os.path.lexists(self.path) else "no file made"
        return f"{self.name}: not written ({kept})"


def write_rows(out: IO[str], text: str, name: str) -> None:
    """Write ``text`` (whole lines) to ``out`` and flush it.

    On standard output, a SIGINT, SIGTERM or SIGHUP that lands while the write waits on a full pipe (a slow reader)
    ends the run once the line in progress is written: Python's buffered write gave up part-way through it, and the
    rows read before the exit ended in half a row. A second signal stops at once. An -o file needs none of this: a run
    cut short leaves it as it was.
    """
    fd = _descriptor(out) if name == "-" else None
    if fd is None:
        out.write(text)
        out.flush()
        return
    out.flush()  # anything written through ``out`` goes first
    raw = text.encode("utf-8")  # as open_output opened it
    data, done = memoryview(raw), 0
    with stop_on_signal("the output line being written is finished first") as stop:
        while done < len(raw):
            # The handler only sets ``stop``, so each count os.write returns is kept: one raised within the write
            # would leave no count of the bytes it had written.
            if stop.is_set():
                if not done or raw[done - 1] == ord("\n"):
                    break
                end = raw.index(b"\n", done) + 1
                while done < end:
                    done += os.write(fd, data[done:end])
                break
            done += os.write(fd, data[done:])


def _descriptor(out: IO[str]) -> int | None:
    try:
        return out.fileno()
    except (OSError, ValueError):  # a stream with no file behind it (a test runner's)
        return None


def input_stat(input_file: IO[Any]) -> os.stat_result | None:
    """The file behind an input stream, for :func:`open_output` to compare with; None for one without a file."""
    try:
        return os.fstat(input_file.fileno())
    except (OSError, ValueError, AttributeError):  # a test runner's stream
        return None


def open_output(output: str, source: os.stat_result | None) -> tuple[IO[str], Target | None]:
    """The -o stream, opened now, so that a bad -o fails before the work (a model loaded, a series scored); and,
    where -o is a regular file (or none yet), the Target it is written through. ``source``: the input's file, which
    the output must not be (see :func:`input_stat`)."""
    hint = "'-o' / '--output'"
    if output == "-" and (why := stdout_unwritable()):  # `>&-`, a supervisor's: was an internal error
        raise click.BadParameter(f"standard output is {why}: give a file to write to", param_hint=hint)
    # A stdout appending to the input reads its own rows back as input lines (`>> in.jsonl`: each an error row,
    # appended in turn, until the disk is full): the output must not be the input under another name (a symlink,
    # ./x, stdin < x, stdout >> x).
    try:
        target = os.fstat(sys.stdout.fileno()) if output == "-" else os.stat(output)
        same = source is not None and stat.S_ISREG(target.st_mode) and os.path.samestat(source, target)
    except (OSError, ValueError, AttributeError):  # no output yet, or an input or stdout without a file behind it
        same = False
    if same:
        where = "standard output" if output == "-" else repr(output)
        raise click.BadParameter(f"{where} is the input file; write the output elsewhere", param_hint=hint)
    if output != "-" and (named := _named_descriptor(output)) is not None:
        return _through(output, named), None
    try:
        if output == "-" or not _regular_or_none(output):  # stdout, /dev/null, a pipe: not ours to replace
            out = click.open_file(output, "w", encoding="utf-8")
            click.get_current_context().call_on_close(out.close)
            return out, None
        _check_writable(output)
        path = os.path.realpath(output)  # through a symlink, the file it names is what is written
        fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=os.path.dirname(path))
    except OSError as exc:
        raise click.BadParameter(f"{output!r}: {exc.strerror or exc}", param_hint=hint) from None
    try:
        os.fchmod(fd, _mode(path))
        out = open(fd, "w", encoding="utf-8")  # noqa: SIM115 (closed by Target, or when the command ends)
    except BaseException:
        os.close(fd)
        os.unlink(temp)
        raise
    click.get_current_context().call_on_close(out.close)
    return out, Target(output, path, temp)


def _named_descriptor(path: str) -> int | None:
    """The descriptor of this process that ``path`` names through /proc/self/fd or /dev/fd (/dev/stdout and
    /dev/stderr are links to them), or None."""
    ours = os.path.realpath("/proc/self/fd")  # /proc/PID/fd
    path = os.path.abspath(path)
    for _ in range(40):  # as many links as the kernel follows
        folder, name = os.path.split(path)
        if name.isdigit() and os.path.realpath(folder) == ours:
            return int(name)
        try:
            link = os.readlink(path)
        except OSError:  # no link (or nothing there)
            return None
        path = os.path.normpath(os.path.join(folder, link))
    return None


def _through(output: str, fd: int) -> IO[str]:
    """The rows written through descriptor ``fd`` as it was opened, at its offset: `-o /dev/stdout >> log.jsonl`
    renamed a file onto log.jsonl, its earlier lines gone and what the script wrote to its standard output after the
    run lost with the file replaced; opened by its name again, a regular file is emptied."""
    try:
        out = open(os.dup(fd), "w", encoding="utf-8")  # noqa: SIM115 (closed when the command ends)
    except OSError as exc:
        raise click.BadParameter(f"{output!r}: {exc.strerror or exc}", param_hint="'-o' / '--output'") from None
    click.get_current_context().call_on_close(lambda: _close(out))
    return out


def _close(out: IO[str]) -> None:
    """Close a descriptor's stream when the command ends. After a failed write (said already), the close flushes the
    rows still buffered and fails again: that OSError replaced the write's error with an "internal error"."""
    with contextlib.suppress(OSError):
        out.close()


def _check_writable(path: str) -> None:
    """Raise the OSError that opening ``path`` for writing would: the temporary file beside it skips that open, and
    realpath() made "" the current folder (a whole run, then "cannot write : Is a directory") and "new/" a file
    "new"."""
    if not path:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))
    if path.endswith(os.sep):  # open() takes a trailing slash for a folder's name
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
    # A file the user may not write (read-only, to keep it) was replaced all the same: the folder's permission is what
    # a rename needs. Opened without O_TRUNC, it stays as it is.
    with contextlib.suppress(FileNotFoundError):
        os.close(os.open(path, os.O_WRONLY | os.O_CLOEXEC))


def _regular_or_none(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        return True


def _mode(path: str) -> int:
    """The permissions the -o file keeps: its own, or for a new one those open() gives (0o666 less the umask)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        umask = os.umask(0o022)  # read only by setting it: set back at once
        os.umask(umask)
        return 0o666 & ~umask

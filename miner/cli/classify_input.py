"""`miner classify`'s input: the lines of a UTF-8 file or pipe, gzip-compressed or not, a chunk at a time."""

from __future__ import annotations

import codecs
import gzip
import io
import os
import select
import stat
import time
import zlib
from collections.abc import Callable, Iterator
from typing import IO, Any

from miner.errors import InputError
from miner.jsonl import MAX_LINE_BYTES, lines

# Lines read, classified and written at a time, whatever --batch-size: memory stays bounded on huge inputs (a
# chunk of batch_size * 128 lines read a 500k-line file whole at --batch-size 8192), and length-sorting within
# 128 default batches leaves little padding (8 batches per chunk cost ~20 % more CPU per post on real posts).
CHUNK_LINES = 4096
# ... and at most about this many bytes of them: 4,096 lines of 250 KB each were a gigabyte read, decoded and
# parsed at once, about 4.5 times that in memory (a 500 MB file of 2,000 such posts peaked at 2.3 GB).
CHUNK_BYTES = 8 << 20
# How long the first line of a chunk read from a pipe waits for more lines to join it, at most (Pipe, chunks()).
HOLD_SECONDS = 1.0


class _Prefixed(io.RawIOBase):
    """``head``, then the rest of ``rest``: the first bytes of an input, read ahead of it, put back."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        super().__init__()
        self.head = head
        self.read_rest = getattr(rest, "read1", rest.read)  # read1: a pipe's lines come as they are written

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        data = self.head[: len(buf)] or self.read_rest(len(buf))
        self.head = self.head[len(data) :]
        buf[: len(data)] = data
        return len(data)


def with_head(fh: IO[bytes], size: int = 6) -> IO[bytes]:
    """``fh``, or the same bytes from a reader whose first ``size`` of them are there to peek at, where ``fh`` has
    not read them yet: peek() reads once, and a pipe written a byte at a time had only its first byte there, so a
    gzip or UTF-16 input (its magic bytes cut) was read as lines of text, each an error row."""
    peek = getattr(fh, "peek", None)
    if peek is None or len(peek(size)) >= size:
        return fh
    return io.BufferedReader(_Prefixed(fh.read(size), fh))  # read() waits for them, or for the end of the input


def reader(fh: IO[bytes], original: IO[bytes]) -> tuple[IO[bytes] | gzip.GzipFile | Pipe, bool]:
    """What the lines of ``fh`` (``original``, or it with its first bytes put back) are read from, and whether it is
    gzip (by its magic bytes), decompressed as it streams: a pipe's lines as its writer writes them, a file's as a
    file's."""
    peek = getattr(fh, "peek", None)  # a file's or real stdin's buffered reader (not an in-memory stream)
    packed = peek is not None and peek(2)[:2] == b"\x1f\x8b"
    if (stream := pipe(fh, original, packed)) is not None:
        return stream, packed
    return (gzip.GzipFile(fileobj=fh) if packed else fh), packed


# What the input is when it starts so, each line of which was an error row that did not say why: UTF-16 (Windows
# PowerShell 5's `>`) also made the newline's second byte a line of its own; compressed, its rows were a count of
# stray newline bytes. Only gzip is read (decompressed). UTF-32's marks come first: the little-endian one starts
# with UTF-16's, and `iconv -f UTF-16` makes a NUL of every other character of UTF-32.
_UTF16 = "UTF-16 (it starts with such a byte-order mark), not UTF-8: convert it first (iconv -f UTF-16 -t UTF-8)"
_UTF32 = "UTF-32 (it starts with such a byte-order mark), not UTF-8: convert it first (iconv -f UTF-32 -t UTF-8)"


def _unmarked(encoding: str) -> str:
    return (f"{encoding} without a byte-order mark (NULs beside its first '{{'), not UTF-8: convert it first "
            f"(iconv -f {encoding} -t UTF-8)")


_FOREIGN = {
    codecs.BOM_UTF32_LE: _UTF32,
    codecs.BOM_UTF32_BE: _UTF32,
    codecs.BOM_UTF16_LE: _UTF16,
    codecs.BOM_UTF16_BE: _UTF16,
    # ... and without a byte-order mark (.NET's `new UnicodeEncoding(false, false)`, `iconv -t UTF-16LE`), where the
    # first line starts its object at once: a '{' with NULs, which no UTF-8 JSON holds outside a string.
    b"{\x00\x00\x00": _unmarked("UTF-32LE"),
    b"\x00\x00\x00{": _unmarked("UTF-32BE"),
    b"{\x00": _unmarked("UTF-16LE"),
    b"\x00{": _unmarked("UTF-16BE"),
    b"BZh": "bzip2-compressed: only gzip is read; decompress it first (bzip2 -dc FILE | miner classify -)",
    b"\xfd7zXZ\x00": "xz-compressed: only gzip is read; decompress it first (xz -dc FILE | miner classify -)",
    b"\x28\xb5\x2f\xfd": "zstd-compressed: only gzip is read; decompress it first (zstd -dc FILE | miner classify -)",
    b"PK\x03\x04": "a zip archive: only gzip is read; extract the file first (unzip -p FILE | miner classify -)",
}


def foreign(fh: IO[bytes] | gzip.GzipFile | Pipe) -> str | None:
    """What ``fh`` is, by its first bytes, where it is not (possibly gzip-compressed) UTF-8 text; else None.

    Raises what reading ``fh`` raises (a damaged gzip file): it cannot be read on past that.
    """
    peek = getattr(fh, "peek", None)
    if peek is None:
        return None
    head = peek(6)[:6]
    return next((what for magic, what in _FOREIGN.items() if head.startswith(magic)), None)


class Gunzip:
    """The bytes of a gzip-compressed pipe, decompressed as its compressed bytes come: GzipFile read its input 8 KiB
    at a time, waiting for all 8 KiB, so posts piped in compressed got no row until more came (4,096 lines, or the
    end of the input, whatever a writer flushed). Members follow one another (`cat a.gz b.gz`), and zeros after one
    pad the input, as GzipFile reads them; each member's CRC-32 and size are checked (zlib.error where they differ).
    """

    def __init__(self, read1: Callable[[int], bytes]) -> None:
        self.source = read1
        self.inflate = zlib.decompressobj(wbits=31)  # 16 + 15: a gzip header and trailer around deflate data
        self.tail = b""  # compressed bytes read, not yet decompressed
        self.full = False  # the last bytes decompressed filled what was asked for: zlib may hold more

    def held(self, size: int) -> bytes:
        """At most ``size`` bytes that the compressed bytes read so far hold; b"" where they hold no more."""
        while True:
            if self.inflate.eof:  # a member ended: zeros that pad the input, or the next member, may follow
                self.tail = self.tail.lstrip(b"\0")
                if not self.tail:
                    return b""
                if len(self.tail) >= 2 and self.tail[:2] != b"\x1f\x8b":  # as GzipFile says it (zlib: "incorrect
                    raise gzip.BadGzipFile(f"Not a gzipped file ({self.tail[:2]!r})")  # header check")
                self.inflate = zlib.decompressobj(wbits=31)
            if not self.tail and not self.full:
                return b""
            data = self.inflate.decompress(self.tail, size)
            # What follows a member that ended is its unused_data alone: where the call began from an unconsumed_tail
            # (output cut at ``size`` before), zlib leaves those bytes in that too, and taken from both, the next
            # member came twice.
            self.tail = self.inflate.unused_data if self.inflate.eof else self.inflate.unconsumed_tail
            self.full = len(data) == size
            if data:
                return data
            if not self.inflate.eof:  # all of it taken in, nothing out yet: the rest must be read
                return b""

    def read1(self, size: int) -> bytes:
        """At most ``size`` bytes, b"" at the end: reads the pipe (waiting for its writer) only where none are held."""
        while not (data := self.held(size)):
            more = self.source(1 << 16)
            if not more:
                if self.inflate.eof:
                    return b""
                raise EOFError("Compressed file ended before the end-of-stream marker was reached")  # GzipFile's
            self.tail += more
        return data


class Pipe:
    """The lines of a pipe, a terminal or a socket (not a regular file), and whether the next one is there yet.

    Read with read1, as much as the writer has written: once this reader's bytes and the buffered reader's below it
    (and those a gzip input's Gunzip holds) are used up, a select() on the descriptor says whether the next read would
    wait on the writer.
    """

    def __init__(self, read1: Callable[[int], bytes], fd: int, gunzip: Gunzip | None = None) -> None:
        self.read1, self.fd, self.gunzip = read1, fd, gunzip
        self.buf = bytearray()
        self.searched = 0  # bytes of ``buf`` with no newline: a 16 MiB line is not searched again at each read
        self.ended = False

    def peek(self, size: int) -> bytes:
        """The next ``size`` bytes (fewer at the end), left to be read (``foreign`` looks at a gzip input's first)."""
        while len(self.buf) < size and not self.ended:
            data = self.read1(1 << 16)
            self.buf += data
            self.ended = not data
        return bytes(self.buf[:size])

    def readline(self, size: int) -> bytes:
        while (end := self.buf.find(b"\n", self.searched, size)) < 0 and len(self.buf) < size and not self.ended:
            self.searched = len(self.buf)
            # More than the buffered reader's buffer (8 KiB) holds: it hands over all it has, or reads once.
            data = self.read1(1 << 16)
            self.buf += data
            self.ended = not data
        take = end + 1 if end >= 0 else min(size, len(self.buf))
        line = bytes(self.buf[:take])
        del self.buf[:take]
        self.searched = 0
        return line

    def waits(self, timeout: float) -> bool:
        """Whether the next line waits on the writer: none whole here yet, and nothing more written within
        ``timeout`` seconds."""
        while self.gunzip is not None and b"\n" not in self.buf and (data := self.gunzip.held(1 << 16)):
            self.buf += data  # read already: a line these bytes end waits on no writer
        if self.ended or b"\n" in self.buf:  # stops at the first newline: the next line's end
            return False
        try:
            return not select.select([self.fd], [], [], timeout)[0]
        except (OSError, ValueError):  # a descriptor select() cannot watch: read on, as before
            return False


def pipe(fh: IO[bytes], original: IO[bytes], compressed: bool = False) -> Pipe | None:
    """``fh`` (``original``, or it with its first bytes put back) as a Pipe, where ``original`` is no regular file:
    a regular file's next line never waits. ``compressed``: ``fh`` is gzip, decompressed as it comes."""
    read1 = getattr(fh, "read1", None)  # read() would wait for as many bytes as it asks for
    try:
        fd = original.fileno()
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except (OSError, ValueError):  # no descriptor behind it (a test runner's stdin): read as a file is
        return None
    if regular or read1 is None:
        return None
    if compressed:
        gunzip = Gunzip(read1)
        return Pipe(gunzip.read1, fd, gunzip)
    return Pipe(read1, fd)


def chunks(fh: IO[bytes] | gzip.GzipFile | Pipe, size: int) -> Iterator[list[tuple[int, bytes | None]]]:
    """Chunks of at most ``size`` lines (and about CHUNK_BYTES), as (line number, line or None: see lines()).

    From a Pipe, a chunk also ends where the writer has written no further line within HOLD_SECONDS of its first:
    `tail -f posts.jsonl | miner classify -`, or posts typed in, waited for 4,096 lines (or the end of the input)
    before any row came out. A writer that keeps up (`cat posts.jsonl |`) still fills each chunk, as a file does:
    how posts are batched moves their scores a little (models/MODEL_CARD.md), and ending a chunk at each moment the
    reader caught up with `cat` made chunks of a few hundred lines, whose rows changed from one run to the next.
    """
    source = fh if isinstance(fh, Pipe) else None
    chunk: list[tuple[int, bytes | None]] = []
    n = held = 0
    first = 0.0
    try:
        for n, line in enumerate(lines(fh, MAX_LINE_BYTES), 1):
            if not chunk:
                first = time.monotonic()
            chunk.append((n, line))
            held += len(line or b"")
            if len(chunk) >= size or held >= CHUNK_BYTES or (
                source is not None and source.waits(max(0.0, first + HOLD_SECONDS - time.monotonic()))
            ):
                yield chunk
                chunk, held = [], 0
    except (EOFError, OSError, zlib.error) as exc:  # truncated or corrupt gzip input
        if chunk:
            yield chunk  # the lines read before the damage still get their output
        raise InputError(f"input unreadable after line {n} ({exc})") from None
    if chunk:
        yield chunk

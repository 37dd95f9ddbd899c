"""`miner classify`'s input: the lines of a UTF-8 file or pipe, gzip-compressed or not, a chunk at a time."""

from __future__ import annotations

import codecs
import gzip
import io
import zlib
from collections.abc import Iterator
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


def decompressed(fh: IO[bytes]) -> gzip.GzipFile | None:
    """``fh`` decompressed as it streams, if it is gzip (by its magic bytes), else None."""
    peek = getattr(fh, "peek", None)  # a file's or real stdin's buffered reader (not an in-memory stream)
    if peek is None or peek(2)[:2] != b"\x1f\x8b":
        return None
    return gzip.GzipFile(fileobj=fh)


# What the input is when it starts so, each line of which was an error row that did not say why: UTF-16 (Windows
# PowerShell 5's `>`) also made the newline's second byte a line of its own; compressed, its rows were a count of
# stray newline bytes. Only gzip is read (decompressed). UTF-32's marks come first: the little-endian one starts
# with UTF-16's, and `iconv -f UTF-16` makes a NUL of every other character of UTF-32.
_UTF16 = "UTF-16 (it starts with such a byte-order mark), not UTF-8: convert it first (iconv -f UTF-16 -t UTF-8)"
_UTF32 = "UTF-32 (it starts with such a byte-order mark), not UTF-8: convert it first (iconv -f UTF-32 -t UTF-8)"
_FOREIGN = {
    codecs.BOM_UTF32_LE: _UTF32,
    codecs.BOM_UTF32_BE: _UTF32,
    codecs.BOM_UTF16_LE: _UTF16,
    codecs.BOM_UTF16_BE: _UTF16,
    b"BZh": "bzip2-compressed: only gzip is read; decompress it first (bzip2 -dc FILE | miner classify -)",
    b"\xfd7zXZ\x00": "xz-compressed: only gzip is read; decompress it first (xz -dc FILE | miner classify -)",
    b"\x28\xb5\x2f\xfd": "zstd-compressed: only gzip is read; decompress it first (zstd -dc FILE | miner classify -)",
    b"PK\x03\x04": "a zip archive: only gzip is read; extract the file first (unzip -p FILE | miner classify -)",
}


def foreign(fh: IO[bytes] | gzip.GzipFile) -> str | None:
    """What ``fh`` is, by its first bytes, where it is not (possibly gzip-compressed) UTF-8 text; else None.

    Raises what reading ``fh`` raises (a damaged gzip file): it cannot be read on past that.
    """
    peek = getattr(fh, "peek", None)
    if peek is None:
        return None
    head = peek(6)[:6]
    return next((what for magic, what in _FOREIGN.items() if head.startswith(magic)), None)


def chunks(fh: IO[bytes] | gzip.GzipFile, size: int) -> Iterator[list[tuple[int, bytes | None]]]:
    chunk: list[tuple[int, bytes | None]] = []
    n = held = 0
    try:
        for n, line in enumerate(lines(fh, MAX_LINE_BYTES), 1):
            chunk.append((n, line))
            held += len(line or b"")
            if len(chunk) >= size or held >= CHUNK_BYTES:
                yield chunk
                chunk, held = [], 0
    except (EOFError, OSError, zlib.error) as exc:  # truncated or corrupt gzip input
        if chunk:
            yield chunk  # the lines read before the damage still get their output
        raise InputError(f"input unreadable after line {n} ({exc})") from None
    if chunk:
        yield chunk

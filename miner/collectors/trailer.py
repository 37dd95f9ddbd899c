"""A compressed body whose data ended whole but whose trailer did not come: told from one cut short inside its data.

A gzip stream ends with an 8-byte trailer (the CRC-32 and size of what it holds), a zlib one ("deflate") with a 4-byte
Adler-32. Some servers and proxies never send it, or close the connection right after the last deflate block: the body
is all there, only its check is missing. zlib's decompressor does not tell that from a body cut inside its data (its
``eof`` waits for the trailer), so a body missing only its trailer failed every poll as "cut short", and such a feed
was never read. Fed to a copy of the decompressor, the trailer its output should have (computed here as it came) ends
the stream only if the compressed data had ended: data cut inside needs at least a byte more before any trailer, so
those 8 bytes (4 for zlib) cannot end it, and a trailer partly received is tried from each place it may have stopped.
A trailer that came and does not match is zlib's own error ("incorrect data check"), a damaged body, as before.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterator

from miner.collectors.poll_notes import no_trailer, note

log = logging.getLogger(__name__)


class Tally:
    """What one compressed stream put out, counted to rebuild the trailer it should end with."""

    def __init__(self) -> None:
        self.framing: str | None = None  # "gzip", "zlib" or "raw" (deflate with no framing, and so no trailer)
        self._crc = 0
        self._adler = 1
        self._size = 0

    def start(self, data: bytes) -> None:
        """Note the stream's framing from its first bytes (zlib's header detection: gzip's magic, else zlib's)."""
        if self.framing is None and data:
            self.framing = "gzip" if data[0] == 0x1F else "zlib"

    def add(self, out: bytes) -> None:
        if self.framing == "gzip":
            self._crc = zlib.crc32(out, self._crc)
            self._size += len(out)
        elif self.framing == "zlib":
            self._adler = zlib.adler32(out, self._adler)

    def _trailer(self) -> bytes:
        if self.framing == "gzip":
            return self._crc.to_bytes(4, "little") + (self._size & 0xFFFFFFFF).to_bytes(4, "little")
        if self.framing == "zlib":
            return self._adler.to_bytes(4, "big")
        return b""

    def data_ended(self, decoder: zlib._Decompress) -> bool:
        """Whether ``decoder``, short of its stream's end (not ``eof``, every byte given and its output drained), has
        read all of its compressed data and waits only for the trailer, or the rest of it."""
        trailer = self._trailer()
        for start in range(len(trailer)):  # how much of the trailer came
            probe = decoder.copy()
            try:
                out = probe.decompress(trailer[start:])
            except zlib.error:  # the bytes taken for the trailer's start were not it
                continue
            if probe.eof and not out and not probe.unused_data:
                return True
        return False


def drained(decoder: zlib._Decompress, tally: Tally, step: int) -> Iterator[bytes]:
    """What ``decoder`` still holds of the input it has taken, ``step`` bytes at most at a time."""
    while out := decoder.decompress(b"", step):
        tally.add(out)
        yield out


def warn_no_trailer(where: str, codings: list[str]) -> None:
    """Tell the poll (its warnings, logged naming the source) that the body from ``where`` (a URL as messages show
    it) came without the trailer of its ``codings``; outside a poll, log it."""
    what = f"{' and '.join(dict.fromkeys(codings))} body from {where}"
    if not note("no_trailer", what):
        log.warning("%s", no_trailer(what))

"""A response body's gzip and deflate decoded a step at a time, so that a compressed bomb is refused by the size cap
before it is inflated (`miner.collectors.http.fetch` reads every body through `decoded`)."""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import httpx

from miner.collectors.trailer import Tally, drained

_DECODE_STEP = 65_536  # most bytes one decompression step may produce
# A decompressor per coding, each a generator inside the next: 1,000 listed raised RecursionError, an "internal error"
# with a traceback of 1,000 lines at every poll. curl refuses more than 5 too (CVE-2023-23916).
_MAX_CODINGS = 5
_STEPPED = frozenset({"gzip", "x-gzip", "deflate"})
# Compressions we do not ask for. httpx decodes brotli and zstd whole per read (no step bound) once their packages
# are importable, which any other dependency may bring; without them it passed the compressed bytes on as the
# body, a "malformed feed" or "invalid JSON" that hid the cause.
_UNASKED = frozenset({"br", "zstd", "compress", "x-compress"})


def decoded(resp: httpx.Response, whole: bool = True, no_trailer: list[str] | None = None) -> Iterator[bytes]:
    """The body, gzip/deflate decoded in steps of at most ``_DECODE_STEP`` bytes.

    httpx decodes each network read whole: one 64 KB read of a gzip bomb is 64 MB in memory before the size
    cap can refuse it. Stepping the decompressor bounds that, for each coding of a list ("gzip, gzip": a
    double-gzipped bomb took 600 MB to refuse under a 1 MB cap when httpx decoded it). A compression we did not
    ask for is an error; any other name (a server's "utf-8", "none") is ignored, as browsers and httpx do.

    ``whole``: a compressed stream that ends before its end (a body cut short with its framing intact) is an error, as
    curl, Go and Python's gzip make it. Without it (an error page, read for what it says) it is read as far as it got.
    A stream whose compressed data ended whole but whose trailer (its checksum) did not come is read, and its coding
    added to ``no_trailer`` (`miner.collectors.trailer`).
    """
    codings = [c.strip() for c in resp.headers.get("content-encoding", "").lower().split(",")]
    if unasked := next((c for c in codings if c in _UNASKED), None):
        raise httpx.DecodingError(f"Content-Encoding {unasked!r}, which miner does not ask for (gzip or deflate)")
    stepped = [c for c in codings if c in _STEPPED]
    if len(stepped) > _MAX_CODINGS:
        raise httpx.DecodingError(f"Content-Encoding lists {len(stepped)} compressions; no more than {_MAX_CODINGS} "
                                  "are read")
    if not stepped:  # identity, or a name that is no compression, which httpx passes through too
        yield from resp.iter_bytes()
        return
    body = resp.iter_raw()
    for coding in reversed(stepped):  # listed in the order they were applied
        body = _inflate(body, coding, whole, [] if no_trailer is None else no_trailer)
    yield from body


def _inflate(chunks: Iterator[bytes], coding: str, whole: bool, no_trailer: list[str]) -> Iterator[bytes]:
    decoder = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib framing, detected from the header
    tally = Tally()
    first = True
    read = False
    for raw in chunks:
        read = read or bool(raw)
        data = raw
        while data:
            tally.start(data)
            try:
                out = decoder.decompress(data, _DECODE_STEP)
            except zlib.error as exc:
                if not (first and coding == "deflate"):
                    raise httpx.DecodingError(str(exc)) from None
                decoder = zlib.decompressobj(-zlib.MAX_WBITS)  # "deflate" sent raw, without zlib framing
                tally.framing = "raw"
                first = False
                continue
            first = False
            data = decoder.unconsumed_tail
            if out:
                tally.add(out)
                yield out
            if decoder.eof:
                # The stream has ended: zlib would keep all that follows (unused_data), copying it whole at each read,
                # unseen by the size cap (it counts inflated bytes) and by the deadline check (reached only with
                # output). A second gzip member was never read either.
                return
    if whole and read:
        try:
            yield from drained(decoder, tally, _DECODE_STEP)  # what the last step's bound held back
        except zlib.error as exc:
            raise httpx.DecodingError(str(exc)) from None
        if decoder.eof:
            return
        if tally.data_ended(decoder):  # only the trailer did not come: the body is whole, unchecked
            no_trailer.append(coding)
            return
        # zlib inflates what came and waits for more: a stream cut short (a proxy's or cache's copy cut off, with a
        # Content-Length that matches the cut, so no transport error) read as a whole body, the poll a success
        # without what followed the cut. No bytes at all (a 304 or HEAD labelled gzip) is no stream.
        raise httpx.DecodingError(f"{coding} body cut short: it ends before the end of its compressed stream "
                                  "(truncated on the way?)")
    yield decoder.flush()

"""gzip for the status board's pages and the read API's answers (http_cache), to a client that takes it.

The board's index of 300 services is 1.2 MB of HTML, most of it the sparklines' points, and it reloads itself every
minute: 70 MB an hour to a phone left open on it, and the endpoint's bandwidth times the crowd when a large service
goes down. gzip makes it 65 KB. A page holds no secret and nothing of the visitor's, so compressing what it reflects of
a request (a 404's name) beside it gives nothing away (BREACH needs both).
"""

from __future__ import annotations

import gzip

# Smaller answers are sent as they are: the few bytes saved do not pay for the compressing.
MIN_SIZE = 1024
# zlib's default: the index of 300 services in 36 ms, once per kept answer (server.cache_seconds), to 5.4% of it.
LEVEL = 6


def accepts_gzip(header: str | None) -> bool:
    """Whether an ``Accept-Encoding`` header takes gzip (RFC 9110 12.5.3): named (or as x-gzip), else by ``*``, with
    a weight above 0."""
    weights: dict[str, float] = {}
    for item in (header or "").split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        weight = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    weight = float(value.strip())
                except ValueError:
                    weight = 0.0  # not a weight: not taken as a yes
        if coding:
            weights[coding.lower()] = weight
    for name in ("gzip", "x-gzip", "*"):
        if name in weights:
            return weights[name] > 0  # NaN is no yes either
    return False


def compress(body: str) -> bytes:
    """``body`` as UTF-8, gzipped; the same bytes each time (no time stamp in the header)."""
    return gzip.compress(body.encode("utf-8"), compresslevel=LEVEL, mtime=0)

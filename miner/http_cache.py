"""The status board's pages and the read API's answers, kept for a few seconds (``server.cache_seconds``) and shared by
every client that asks for the same path and query meanwhile (for a page, the same parameters it reads: one that
carries ``?fbclid=`` or ``?utm_source=`` besides is the same page, status_board.kept_query).

When a large service goes down, its users open the board at once and reload it, and dashboards poll the API: each
request was a read of the store through the API's one connection, 8 at most waiting their turn, the rest answered
503 (docs/operations.md#outage-traffic has the numbers). Kept, a page costs one read per path and query every
``seconds``, however many ask; requests for one that is being read wait for that read rather than each queueing one
of their own. A 200 is sent with ``Cache-Control: max-age`` and ``Age``, so that a reverse proxy or CDN in front can
keep it as long, and no longer, in all: what the store holds (a new incident) shows within ``seconds`` either way.
A 200 is gzipped for a client that takes it (http_gzip), once per answer kept.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from miner import status_board
from miner.http_gzip import MIN_SIZE, compress
from miner.read_api import read_began
from miner.read_paging import link_headers

# An answer quotes the client's path or field name: in JSON, < > & are written \u003c \u003e \u0026 (the same
# JSON), so that no browser or proxy that sniffs a body for HTML finds any tag in it.
_JSON_HTML = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})
# Characters of answers kept at most, the oldest dropped first: each query string of the API is a key of its own (each
# ?since= another answer), so without a bound a client could fill the memory one made-up query at a time.
MAX_KEPT = 16_000_000
# How long a request waits for the same read by another before it reads for itself: longer than a read waits for its
# turn (read_api.READ_WAIT) and takes.
FOLLOW_WAIT = 30.0
# Requests waiting for another's read at once, in all; those beyond read for themselves, through the read API's
# queue (READ_QUEUE, 8, reading or waiting their turn, the rest answered 503 at once). Each holds one of the
# endpoint's 32 connections: without a bound, a crowd waiting for one slow read held every one of them, and /healthz
# and reports were answered 503 until it ended; 8 reading and 16 following leave 8 for them.
MAX_FOLLOWING = 16

# status, body (bytes when gzipped), content type, headers beside the endpoint's own
Reply = tuple[int, "str | bytes", str, dict[str, str]]
ReadAnswer = Callable[[str, str], "tuple[int, dict[str, Any]] | None"]
BoardPage = Callable[[str, str], "tuple[int, str] | None"]


def json_text(obj: dict[str, Any]) -> str:
    return json.dumps(obj, default=str).translate(_JSON_HTML)


@dataclass
class _Kept:
    status: int
    body: str
    ctype: str
    headers: dict[str, str]
    at: float  # time.monotonic() of the read
    # Its body gzipped, once the first client that takes gzip asks. Not counted in MAX_KEPT: a page is 5 to 20% of
    # its size gzipped.
    gzipped: bytes | None = None


class _Read:
    """A read under way, which requests for the same key wait for."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.kept: _Kept | None = None


class Answers:
    """The answer to a GET of a read API path or a board page, read through ``read`` and ``board`` (either None
    where the endpoint serves none), or kept from one read less than ``seconds`` ago (0: none is kept)."""

    def __init__(self, read: ReadAnswer | None, board: BoardPage | None, seconds: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._read_api = read
        self._board = board
        self.seconds = seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._kept: OrderedDict[tuple[str, str], _Kept] = OrderedDict()
        self._size = 0
        self._reading: dict[tuple[str, str], _Read] = {}
        self._following = 0  # requests waiting for another's read (MAX_FOLLOWING)

    def get(self, path: str, query: str, gzip: bool = False) -> Reply | None:
        """(status, body, content type, headers), or None for a path that is neither the API's nor the board's. With
        ``gzip`` (the client takes it), a 200 of MIN_SIZE characters or more is its body gzipped."""
        if not self.seconds:
            return self._reply(self._answer(path, query), gzip)
        key = (path, status_board.kept_query(path, query) if self._board is not None else query)
        mine = other = None
        with self._lock:
            kept = self._fresh(key)
            if kept is None and (other := self._reading.get(key)) is None:
                mine = self._reading[key] = _Read()
            elif other is not None and self._following >= MAX_FOLLOWING:
                other = None  # read for itself below, or be answered 503 by the read API's queue
            elif other is not None:
                self._following += 1
        if other is not None:
            # What the other request read, its 503 too (this one would have queued behind it); if it failed or is
            # stuck, a read of its own, as without the cache.
            try:
                kept = other.kept if other.done.wait(FOLLOW_WAIT) else None
            finally:
                with self._lock:
                    self._following -= 1
            if kept is None:
                kept = self._answer(path, query)
        elif mine is not None:
            try:
                kept = mine.kept = self._answer(path, query)
            finally:
                with self._lock:
                    del self._reading[key]
                    if kept is not None and kept.status == 200:
                        self._keep(key, kept)
                mine.done.set()
        elif kept is None:
            kept = self._answer(path, query)
        return self._reply(kept, gzip)

    def _reply(self, kept: _Kept | None, gzip: bool) -> Reply | None:
        if kept is None:
            return None
        # Vary: a proxy in front keeps the gzipped answer for clients that take it only.
        headers = {**kept.headers, "Vary": "Accept-Encoding"}
        if kept.status == 200 and self.seconds:
            # Age: a proxy in front keeps it for what is left of the seconds, not for as many again.
            headers.update({"Cache-Control": f"max-age={self.seconds}",
                            "Age": str(int(max(0.0, self._clock() - kept.at)))})
        body: str | bytes = kept.body
        if gzip and kept.status == 200 and len(kept.body) >= MIN_SIZE:
            if kept.gzipped is None:  # two requests at once may both compress it: the same bytes
                kept.gzipped = compress(kept.body)
            body, headers["Content-Encoding"] = kept.gzipped, "gzip"
        return kept.status, body, kept.ctype, headers

    def _answer(self, path: str, query: str) -> _Kept | None:
        at = self._clock()
        read_began()  # one of this thread's earlier requests
        if self._read_api is not None and (answer := self._read_api(path, query)) is not None:
            status, obj = answer
            kept = _Kept(status, json_text(obj), "application/json", link_headers(obj), at)
        elif self._board is not None and (page := self._board(path, query)) is not None:
            kept = _Kept(page[0], page[1], "text/html", dict(status_board.HEADERS), at)
        else:
            return None
        # Dated from its read of the store, not from the request, which may have waited seconds for its turn: an
        # answer that waited the cache's seconds was dropped as soon as read, and sent with an Age of as many.
        if (began := read_began()) is not None:
            kept.at = max(at, began)
        return kept

    def _fresh(self, key: tuple[str, str]) -> _Kept | None:
        kept = self._kept.get(key)
        if kept is not None and self._clock() - kept.at >= self.seconds:
            self._drop(key)
            kept = None
        return kept

    def _keep(self, key: tuple[str, str], kept: _Kept) -> None:
        if key in self._kept:
            self._drop(key)
        self._kept[key] = kept
        self._size += len(kept.body)
        now = self._clock()
        while self._kept and (self._size > MAX_KEPT or now - next(iter(self._kept.values())).at >= self.seconds):
            self._drop(next(iter(self._kept)))

    def _drop(self, key: tuple[str, str]) -> None:
        self._size -= len(self._kept.pop(key).body)

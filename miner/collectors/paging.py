"""Reading more than one page of an API in one poll.

A poll reads at most ``collect.max_pages`` pages (`Pager`). A failure on a page after the first (a 429, a timeout)
ends the paging without failing the poll: what the earlier pages brought is kept, and the collector leaves its
cursor where the next poll can go on from. A server that says, in its rate-limit headers, that no request is left
ends the paging too. Either way the result's ``retry_after`` keeps the next poll from coming sooner than the server
asked.

APIs that answer newest first are read down to the cursor. When the paging ends before it gets there, what lies
between is a `Backlog` window, kept with the cursor (`join_cursor`) and read by the next polls, after what is new
then, where the API can start a page below a given point (a time bound, an item to page after).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from miner.collectors.base import PollContext
from miner.collectors.http import Response
from miner.collectors.ratelimit import rate_limit_wait
from miner.config import SourceConfig
from miner.errors import SourceError
from miner.records import SourceState
from miner.timeutil import counted

log = logging.getLogger(__name__)

T = TypeVar("T")

class Pager:
    """Counts the pages of one poll and says why the paging ended early.

    ``next(call)`` runs ``call`` (one request and its parsing, returning the response and what was read from it)
    and returns what it read, or None when no further page is to be read: the cap is reached, or an earlier page
    ended the paging. An error on the first page is the poll's, and is raised.
    """

    def __init__(self, source: SourceConfig, ctx: PollContext, limit: int | None = None) -> None:
        self.source = source
        self.ctx = ctx
        self.limit = ctx.settings.max_pages if limit is None else limit
        self.pages = 0
        self.retry_after: float | None = None
        self.stopped: str | None = None  # why a page was refused or failed: a warning for the result

    @property
    def capped(self) -> bool:
        """Whether the page cap ended the paging (rather than an error or a rate limit)."""
        return self.pages >= self.limit and self.stopped is None

    @property
    def can_continue(self) -> bool:
        return self.pages < self.limit and self.stopped is None

    def next(self, call: Callable[[], tuple[Response, T]]) -> T | None:
        if not self.can_continue:
            return None
        try:
            resp, value = call()
        except SourceError as exc:
            if self.pages == 0:
                raise
            self._stop(f"page {self.pages + 1} failed ({exc}); kept the {counted(self.pages, 'page')} before it",
                       exc.retry_after)
            return None
        self.pages += 1
        wait = rate_limit_wait(resp.headers, self.ctx.now())
        if wait is not None:
            self._stop(f"the server's rate limit is used up after page {self.pages} (reset in {wait:.0f} s)", wait)
        return value

    def _stop(self, why: str, retry_after: float | None) -> None:
        self.stopped = why
        if retry_after is not None:
            self.retry_after = max(retry_after, self.retry_after or 0.0)
        log.warning("source %s: %s", self.source.name, why)

    def warnings(self) -> list[str]:
        return [self.stopped] if self.stopped else []


# Windows kept at most. Each is one stretch a poll could not reach; more of them means the source has fallen far
# behind (a flood lasting many polls), and the oldest are given up, with a warning, rather than kept forever.
MAX_BACKLOG = 10


@dataclass(frozen=True)
class Backlog:
    """Items a poll left unread: newer than ``floor`` (a cursor, as the collector writes it), from ``start`` down
    (the collector's own point to start a page at: a time bound, an item to page after)."""

    floor: str
    start: str


def split_cursor(state: SourceState) -> tuple[SourceState, list[Backlog]]:
    """The state with its plain cursor, and the windows left to read (newest first)."""
    raw = state.cursor
    if not raw or not raw.startswith("{"):
        return state, []
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return replace(state, cursor=None), []  # not ours: start over, as from a cursor of another type
    cursor = data.get("cursor")
    windows = [Backlog(w[0], w[1]) for w in data.get("backlog") or []
               if isinstance(w, list) and len(w) == 2 and all(isinstance(v, str) for v in w)]
    return replace(state, cursor=cursor if isinstance(cursor, str) else None), windows


def join_cursor(cursor: str | None, backlog: Sequence[Backlog]) -> str | None:
    """The cursor to store: the plain one while nothing is left unread (as every earlier version wrote it)."""
    if not backlog or cursor is None:
        return cursor
    return json.dumps({"cursor": cursor, "backlog": [[w.floor, w.start] for w in backlog]}, separators=(",", ":"))


def gap_warning(source: SourceConfig, message: str) -> str:
    """Log and return a warning that posts were or may have been missed for good: the source's counts are a floor."""
    log.warning("source %s: %s", source.name, message)
    return message


def bounded_backlog(source: SourceConfig, windows: list[Backlog]) -> tuple[list[Backlog], list[str]]:
    """At most MAX_BACKLOG windows (newest first) and, when older ones are given up, the warning that says so."""
    if len(windows) <= MAX_BACKLOG:
        return windows, []
    dropped = windows[MAX_BACKLOG:]
    return windows[:MAX_BACKLOG], [gap_warning(
        source, f"fell too far behind: gave up reading {len(dropped)} older stretch(es) of posts, back to cursor "
                f"{dropped[-1].floor}; posts in them are missing (raise collect.max_pages or poll more often)")]

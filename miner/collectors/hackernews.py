"""`hackernews`: Algolia's HN search API, newest first, stories and comments.

Cursor: the newest `created_at_i` seen; the next poll asks for `numericFilters=created_at_i>N` and also drops
anything not newer, in case the filter is ignored. `url` overrides the API base (default hn.algolia.com).
When more is new than one page holds, the poll reads the next pages (`page=1, 2, ...`: new hits only push older
ones to later pages, so none is skipped), up to `max_pages`. What the cap leaves unread is a backlog window
`created_at_i>N,created_at_i<=T` that the next polls read, after what is new then; a window also gets around
Algolia's limit of 1000 hits per query.
Each read down to a cursor asks from `LOOKBACK` before it: a hit Algolia indexed late (or in the cursor's own second
after the poll) lies behind the cursor. The margin is read as far as the page that reaches the cursor holds, so it
costs no request; the hits read again are dropped by the store's dedupe.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from miner.collectors.base import (
    PollContext,
    as_dict,
    as_list,
    base_url,
    epoch_cursor,
    epoch_not_after_now,
    loose_list,
    make_post,
    text_of,
)
from miner.collectors.http import Response, fetch, json_object
from miner.collectors.normalise import parse_time
from miner.collectors.paging import Backlog, Pager, bounded_backlog, join_cursor, split_cursor
from miner.collectors.poll_notes import note
from miner.config import SourceConfig
from miner.records import FetchResult, Post, SourceState
from miner.urls import shown_url

DEFAULT_BASE = "https://hn.algolia.com"
ITEM_URL = "https://news.ycombinator.com/item?id={}"
MAX_HITS = 1000  # Algolia answers the first 1000 hits of a query, whatever the page
# How far below a cursor a read asks too. Algolia indexes an HN item within about a minute of its creation, several
# minutes late when its queue backs up (a busy outage); `created_at_i` is the creation time, so such a hit, and one
# created in the cursor's own second after the poll, lies behind the cursor. Only the pages a poll reads anyway
# bring the margin, so a wider one costs no request, only hits parsed again (at most a page).
LOOKBACK = 600


class HackerNewsCollector:
    def poll(self, source: SourceConfig, state: SourceState, ctx: PollContext) -> FetchResult:
        plain, backlog = split_cursor(state)
        since = epoch_cursor(plain, ctx)
        cursor = None if since is None else int(since)
        # The first poll reads one page, the newest hits: a new source does not page back through history.
        pager = Pager(source, ctx, limit=1 if cursor is None else None)
        read = _Read(source, ctx, pager)
        left: list[Backlog] = []
        windows: list[tuple[int | None, int | None]] = [(cursor, None)]
        if cursor is not None:
            windows += [(int(w.floor), int(w.start)) for w in backlog if w.floor.isdigit() and w.start.isdigit()]
        for floor, top in windows:
            done, oldest = read.window(floor, top) if pager.can_continue else (False, None)
            start = oldest if oldest is not None else top
            if not done and floor is not None and start is not None:
                left.append(Backlog(str(floor), str(start)))
        left, gaps = bounded_backlog(source, left)
        newest = max(read.newest, cursor or 0)
        cursor_out = join_cursor(str(newest) if newest else None, left)
        return FetchResult(posts=read.posts, state=SourceState(cursor=cursor_out), warnings=pager.warnings() + gaps,
                           retry_after=pager.retry_after, gap=bool(gaps), catching_up=frozenset(read.catching_up))


class _Read:
    """The pages one poll reads, window by window, and what they brought."""

    def __init__(self, source: SourceConfig, ctx: PollContext, pager: Pager) -> None:
        self.source, self.ctx, self.pager = source, ctx, pager
        self.url = f"{base_url(source, DEFAULT_BASE)}/api/v1/search_by_date"
        self.where = shown_url(self.url, secret=source.secret_url)
        self.per_page = min(ctx.settings.max_items, MAX_HITS)
        self.posts: list[Post] = []
        self.seen: set[str] = set()  # a window's margin may overlap a backlog window read in the same poll
        self.catching_up: set[str] = set()  # read in a window an earlier poll left: older than posts stored, not late
        self.newest = 0

    def window(self, floor: int | None, top: int | None) -> tuple[bool, int | None]:
        """Read the hits newer than ``floor`` and not newer than ``top``, newest first, while the pager allows.
        Returns whether the window was read to its end, and the oldest `created_at_i` read."""
        low = None if floor is None else floor - LOOKBACK
        filters = [f"created_at_i>{low}"] if low is not None else []
        if top is not None:
            filters.append(f"created_at_i<={top}")
        oldest: int | None = None
        reached = False  # a hit at or below the floor was read: the window is read, its margin as far as this page
        page = 0
        while True:
            params: dict[str, str | int] = {"query": self.source.query or "", "tags": "(story,comment)",
                                            "hitsPerPage": self.per_page}
            if filters:
                params["numericFilters"] = ",".join(filters)
            if page:
                params["page"] = page
            hits = self.pager.next(partial(self._page, params))
            if hits is None:
                return False, oldest
            for hit in hits:
                created_i = hit.get("created_at_i")
                if not isinstance(created_i, int) or not hit.get("objectID"):
                    note("malformed", self.where)
                    continue
                if str(hit["objectID"]) in self.seen:
                    continue
                if top is not None and created_i > top:
                    continue  # the filter was ignored
                if floor is not None and created_i <= floor:
                    reached = True
                    if low is not None and created_i <= low:
                        continue  # the filter was ignored
                    # in the margin: read before, or indexed late (the store keeps one of each)
                else:
                    oldest = created_i if oldest is None else min(oldest, created_i)
                self.seen.add(str(hit["objectID"]))
                self.newest = max(self.newest, int(epoch_not_after_now(created_i, self.ctx)))
                if (post := self._post(hit)) is not None:
                    self.posts.append(post)
                    if top is not None and (floor is None or created_i > floor):
                        self.catching_up.add(post.external_id)
            if reached or (len(hits) < self.per_page and page * self.per_page + len(hits) < MAX_HITS):
                return True, oldest
            if (page + 1) * self.per_page >= MAX_HITS:
                return False, oldest  # the rest of the window is past Algolia's reach: a new window starts below
            page += 1

    def _page(self, params: dict[str, str | int]) -> tuple[Response, list[dict[str, Any]]]:
        resp = fetch(self.ctx.client, self.ctx.settings, self.url, timeout=self.source.timeout, now=self.ctx.now,
                     secret_url=self.source.secret_url, params=params, headers={"Accept": "application/json"})
        return resp, [as_dict(h) for h in as_list(json_object(resp).get("hits"), "hits", resp.where)]

    def _post(self, hit: dict[str, Any]) -> Post | None:
        is_comment = "comment" in loose_list(hit.get("_tags")) or bool(hit.get("comment_text"))
        return make_post(
            self.source, self.ctx,
            external_id=str(hit["objectID"]),
            title="" if is_comment else text_of(hit.get("title")),
            body_html=text_of(hit.get("comment_text") if is_comment else hit.get("story_text")),
            created_at=parse_time(hit.get("created_at_i")),
            url=ITEM_URL.format(hit["objectID"]),
            author=text_of(hit.get("author")) or None,
        )

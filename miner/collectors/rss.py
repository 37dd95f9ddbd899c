"""`rss`: any RSS or Atom feed of posts (subreddit/search RSS, forums, news search, Mastodon tag RSS).

Incremental by conditional GET (ETag / Last-Modified); the store dedupes entries seen before by id.
A feed holds its newest entries only and cannot be paged: when more is new between two polls than it holds, the
rest is gone. The cursor (the newest entry's date) tells: a feed whose every dated entry is newer than the newest
of the last poll may have dropped posts in between, and the poll says so.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from miner.collectors.base import PollContext, make_post, not_after_now, time_cursor
from miner.collectors.feeds import (
    entry_author,
    entry_body,
    entry_id,
    entry_lang,
    entry_time,
    fetch_feed,
    parse_feed,
)
from miner.collectors.http import Response, state_after
from miner.collectors.paging import gap_warning
from miner.config import SourceConfig
from miner.errors import SourceError
from miner.records import FetchResult, Post, SourceState
from miner.timeutil import iso


def posts_from_feed(
    source: SourceConfig,
    resp: Response,
    ctx: PollContext,
    clean_body: Callable[[str], str] | None = None,
    state: SourceState | None = None,
    skip: Callable[[Any], bool] | None = None,
) -> FetchResult:
    """Parse a fetched feed into posts; ``clean_body`` strips a site's boilerplate from entry HTML. ``state``: the
    source's state before this poll, whose cursor (the newest entry date read then) tells whether the feed still
    reaches back to it. ``skip`` tells the entries that are no posts (a site's bot's); their dates still count."""
    parsed, warnings = parse_feed(resp, source.name)
    feed = parsed.get("feed") or {}
    posts: list[Post] = []
    dates: list[datetime] = []
    for entry in parsed.get("entries") or []:
        if (when := entry_time(entry)) is not None:
            dates.append(when)
        if skip is not None and skip(entry):
            continue
        post = _entry_post(source, ctx, entry, feed, clean_body, when)
        if post is not None:
            posts.append(post)
    last = time_cursor(state, ctx) if state is not None else None
    newest = max((not_after_now(d, ctx) for d in dates), default=None)
    gap = False
    if last is not None and len(dates) > 1 and min(dates) > last:
        # Nothing the last poll read is still in the feed: more was new than it holds, or exactly as many.
        gap = True
        warnings = [*warnings, gap_warning(source, (
            f"every dated entry of the feed ({len(dates)}) is newer than the newest the last poll read ({iso(last)}): "
            f"posts published between then and {iso(min(dates))} may be missing (poll more often)"))]
    cursor = max(newest, last) if newest is not None and last is not None else newest or last
    return FetchResult(posts=posts, state=state_after(resp, cursor.isoformat() if cursor else None),
                       warnings=warnings, gap=gap)


def _entry_post(
    source: SourceConfig, ctx: PollContext, entry: Any, feed: Any, clean_body: Callable[[str], str] | None,
    created_at: datetime | None,
) -> Post | None:
    body = entry_body(entry)
    if clean_body is not None:
        body = clean_body(body)
    return make_post(
        source, ctx,
        external_id=entry_id(entry),
        title=str(entry.get("title", "") or ""),
        body_html=body,
        created_at=created_at,
        url=str(entry.get("link", "") or "") or None,
        author=entry_author(entry),
        lang=entry_lang(entry, feed),
    )


class RssCollector:
    def poll(self, source: SourceConfig, state: SourceState, ctx: PollContext) -> FetchResult:
        if not source.url:
            raise SourceError(f"source {source.name!r} has no url", permanent=True)
        resp = fetch_feed(source, state, ctx, source.url)
        if resp.status == 304:
            return FetchResult(state=state, not_modified=True)
        return posts_from_feed(source, resp, ctx, state=state)

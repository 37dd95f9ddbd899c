"""`rss`: any RSS or Atom feed of posts (subreddit/search RSS, forums, news search, Mastodon tag RSS).

Incremental by conditional GET (ETag / Last-Modified); the store dedupes entries seen before by id.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from miner.collectors.base import PollContext, make_post
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
from miner.config import SourceConfig
from miner.errors import SourceError
from miner.records import FetchResult, Post, SourceState


def posts_from_feed(
    source: SourceConfig,
    resp: Response,
    ctx: PollContext,
    clean_body: Callable[[str], str] | None = None,
) -> FetchResult:
    """Parse a fetched feed into posts; ``clean_body`` strips a site's boilerplate from entry HTML."""
    parsed, warnings = parse_feed(resp, source.name)
    feed = parsed.get("feed") or {}
    posts: list[Post] = []
    for entry in parsed.get("entries") or []:
        post = _entry_post(source, ctx, entry, feed, clean_body)
        if post is not None:
            posts.append(post)
    return FetchResult(posts=posts, state=state_after(resp), warnings=warnings)


def _entry_post(
    source: SourceConfig, ctx: PollContext, entry: Any, feed: Any, clean_body: Callable[[str], str] | None
) -> Post | None:
    body = entry_body(entry)
    if clean_body is not None:
        body = clean_body(body)
    return make_post(
        source, ctx,
        external_id=entry_id(entry),
        title=str(entry.get("title", "") or ""),
        body_html=body,
        created_at=entry_time(entry),
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
        return posts_from_feed(source, resp, ctx)

"""`hackernews`: Algolia's HN search API, newest first, stories and comments.

Cursor: the newest `created_at_i` seen; the next poll asks for `numericFilters=created_at_i>N` and also drops
anything not newer, in case the filter is ignored. `url` overrides the API base (default hn.algolia.com).
"""

from __future__ import annotations

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
from miner.collectors.http import fetch, json_object
from miner.collectors.normalise import parse_time
from miner.config import SourceConfig
from miner.records import FetchResult, Post, SourceState

DEFAULT_BASE = "https://hn.algolia.com"
ITEM_URL = "https://news.ycombinator.com/item?id={}"


class HackerNewsCollector:
    def poll(self, source: SourceConfig, state: SourceState, ctx: PollContext) -> FetchResult:
        url = f"{base_url(source, DEFAULT_BASE)}/api/v1/search_by_date"
        since = epoch_cursor(state, ctx)
        cursor = None if since is None else int(since)
        params: dict[str, str | int] = {
            "query": source.query or "",
            "tags": "(story,comment)",
            "hitsPerPage": min(ctx.settings.max_items, 1000),
        }
        if cursor is not None:
            params["numericFilters"] = f"created_at_i>{cursor}"
        resp = fetch(ctx.client, ctx.settings, url, timeout=source.timeout, secret_url=source.secret_url,
                     params=params, headers={"Accept": "application/json"})
        data = json_object(resp)
        newest = cursor or 0
        posts: list[Post] = []
        for raw in as_list(data.get("hits"), "hits", resp.where):
            hit = as_dict(raw)
            created_i = hit.get("created_at_i")
            if not isinstance(created_i, int) or not hit.get("objectID"):
                continue
            if cursor is not None and created_i <= cursor:
                continue
            newest = max(newest, int(epoch_not_after_now(created_i, ctx)))
            is_comment = "comment" in loose_list(hit.get("_tags")) or bool(hit.get("comment_text"))
            post = make_post(
                source, ctx,
                external_id=str(hit["objectID"]),
                title="" if is_comment else text_of(hit.get("title")),
                body_html=text_of(hit.get("comment_text") if is_comment else hit.get("story_text")),
                created_at=parse_time(created_i),
                url=ITEM_URL.format(hit["objectID"]),
                author=text_of(hit.get("author")) or None,
            )
            if post is not None:
                posts.append(post)
        return FetchResult(posts=posts, state=SourceState(cursor=str(newest) if newest else None))

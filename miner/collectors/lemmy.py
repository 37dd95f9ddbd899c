"""`lemmy`: a Lemmy instance's `/api/v3/search?q=...&type_=All&sort=New` (posts and comments).

Cursor: the newest `published` time seen (ISO 8601, UTC); older or equal items are skipped. External ids
are the ActivityPub ids, which stay the same whichever instance federated the item.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from miner.collectors.base import (
    PollContext,
    as_dict,
    as_list,
    base_url,
    make_post,
    not_after_now,
    text_of,
    time_cursor,
)
from miner.collectors.http import fetch, json_object
from miner.collectors.normalise import parse_time
from miner.config import SourceConfig
from miner.errors import SourceError
from miner.records import FetchResult, Post, SourceState


def _view_post(source: SourceConfig, ctx: PollContext, view: dict[str, Any], kind: str) -> Post | None:
    item = as_dict(view.get(kind))
    creator = as_dict(view.get("creator"))
    if item.get("deleted") or item.get("removed") or not item.get("id"):
        return None
    ap_id = text_of(item.get("ap_id"))
    return make_post(
        source, ctx,
        external_id=ap_id or f"{kind}:{item['id']}",
        title=text_of(item.get("name")) if kind == "post" else "",
        body_html=text_of(item.get("body") if kind == "post" else item.get("content")),
        created_at=parse_time(item.get("published")),
        url=ap_id or None,
        author=text_of(creator.get("actor_id")) or text_of(creator.get("name")) or None,
    )


class LemmyCollector:
    def poll(self, source: SourceConfig, state: SourceState, ctx: PollContext) -> FetchResult:
        if not source.url:
            raise SourceError(f"source {source.name!r} has no url", permanent=True)
        url = f"{base_url(source, '')}/api/v3/search"
        params: dict[str, str | int] = {"q": source.query or "", "type_": "All", "sort": "New",
                                        "limit": min(ctx.settings.max_items, 50)}
        resp = fetch(ctx.client, ctx.settings, url, timeout=source.timeout, secret_url=source.secret_url,
                     params=params, headers={"Accept": "application/json"})
        data = json_object(resp)
        where = resp.where
        if "posts" not in data and "comments" not in data:
            raise SourceError(f"unexpected JSON from {where}: no 'posts' or 'comments' (is this Lemmy?)")
        cursor = time_cursor(state, ctx)
        newest: datetime | None = cursor
        posts: list[Post] = []
        for kind, key in (("post", "posts"), ("comment", "comments")):
            for raw in as_list(data.get(key), key, where, required=False):  # checked above: one of them is there
                post = _view_post(source, ctx, as_dict(raw), kind)
                if post is None or (cursor is not None and post.created_at <= cursor):
                    continue
                seen = not_after_now(post.created_at, ctx)
                newest = seen if newest is None else max(newest, seen)
                posts.append(post)
        return FetchResult(posts=posts, state=SourceState(cursor=newest.isoformat() if newest else None))

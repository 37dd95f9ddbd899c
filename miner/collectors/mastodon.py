"""`mastodon`: a public hashtag timeline, `/api/v1/timelines/tag/:tag?since_id=...` (`query` is the tag).

Cursor: the highest status id seen, sent as `since_id`. Status ids are numeric strings that grow with time.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from miner.collectors.base import FUTURE_SLACK, PollContext, as_dict, as_list, base_url, make_post, text_of
from miner.collectors.http import fetch, read_json
from miner.collectors.normalise import parse_time
from miner.config import SourceConfig
from miner.errors import SourceError
from miner.records import FetchResult, Post, SourceState

MAX_LIMIT = 40  # Mastodon's own cap for timelines


def status_external_id(uri: str, local_id: str) -> str:
    """host/id from an ActivityPub status URI: stable across instances, and free of the author's handle
    (Mastodon URIs read https://host/users/<name>/statuses/<id>)."""
    parts = urlsplit(uri)
    last = parts.path.rstrip("/").rsplit("/", 1)[-1]
    if parts.hostname and last:
        return f"{parts.hostname}/{last}"
    return f"status:{local_id}"


def _ahead_of_clock(ident: str, ctx: PollContext) -> bool:
    """Whether a snowflake id (milliseconds << 16) claims a time past our clock: as since_id it would hide
    every real status from then on (see base.not_after_now), so it is never kept as the cursor, and one stored
    before starts the source over. Old sequential ids imply times near 1970."""
    return ident.isdigit() and int(ident) >> 16 > (ctx.now() + FUTURE_SLACK).timestamp() * 1000


def _id_key(value: str) -> tuple[int, str]:
    """Order ids numerically when they are digits (snowflakes), else by length then text."""
    return (len(value), value)


class MastodonCollector:
    def poll(self, source: SourceConfig, state: SourceState, ctx: PollContext) -> FetchResult:
        if not source.url:
            raise SourceError(f"source {source.name!r} has no url", permanent=True)
        tag = (source.query or "").strip().lstrip("#")
        url = f"{base_url(source, '')}/api/v1/timelines/tag/{quote(tag, safe='')}"
        params: dict[str, str | int] = {"limit": min(ctx.settings.max_items, MAX_LIMIT)}
        since = state.cursor if state.cursor and not _ahead_of_clock(state.cursor, ctx) else None
        if since:
            params["since_id"] = since
        resp = fetch(ctx.client, ctx.settings, url, timeout=source.timeout, secret_url=source.secret_url,
                     params=params, headers={"Accept": "application/json"})
        where = resp.where
        statuses = as_list(read_json(resp), "the timeline", where)
        newest = since
        posts: list[Post] = []
        for raw in statuses:
            status = as_dict(raw)
            ident = text_of(status.get("id"))
            if not ident or (since and _id_key(ident) <= _id_key(since)):
                continue
            if (newest is None or _id_key(ident) > _id_key(newest)) and not _ahead_of_clock(ident, ctx):
                newest = ident
            shown = as_dict(status.get("reblog")) or status  # a boost carries the boosted status
            post = make_post(
                source, ctx,
                external_id=status_external_id(text_of(shown.get("uri")), text_of(shown.get("id")) or ident),
                title=text_of(shown.get("spoiler_text")),
                body_html=text_of(shown.get("content")),
                created_at=parse_time(shown.get("created_at")),
                url=text_of(shown.get("url")) or text_of(shown.get("uri")) or None,
                author=text_of(as_dict(shown.get("account")).get("acct")) or None,
                lang=text_of(shown.get("language")) or None,
            )
            if post is not None:
                posts.append(post)
        return FetchResult(posts=posts, state=SourceState(cursor=newest))

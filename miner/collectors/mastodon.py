"""`mastodon`: a public hashtag timeline, `/api/v1/timelines/tag/:tag?min_id=...` (`query` is the tag).

Cursor: the highest status id seen, sent as `min_id`. Status ids are numeric strings that grow with time.
`min_id` asks for the statuses just after the cursor, so a poll pages forward from it (up to `max_pages`) and
the next poll goes on where it stopped. `since_id` alone would answer the newest `limit` statuses: after a burst
of more than a page, the cursor would jump to the newest and skip the rest.
"""

from __future__ import annotations

from functools import partial
from typing import Any
from urllib.parse import quote, urlsplit

from miner.collectors.base import FUTURE_SLACK, PollContext, as_dict, as_list, base_url, make_post, text_of
from miner.collectors.http import Response, fetch, read_json
from miner.collectors.normalise import parse_time
from miner.collectors.paging import Pager
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


def account_handle(account: dict[str, Any], instance: str) -> str | None:
    """The author as every instance names it. ``acct`` is relative to the instance answering: "alice" there is
    "alice@mastodon.social" on the next one, so one author read from two instances would hash as two and count
    twice. The profile ``url`` is the author's own server's, the same from anywhere."""
    url = text_of(account.get("url"))
    if url:
        return url
    acct = text_of(account.get("acct"))
    if acct and "@" not in acct and instance:
        acct = f"{acct}@{instance}"
    return acct or None


def _id_key(value: str) -> tuple[int, str]:
    """Order ids numerically when they are digits (snowflakes), else by length then text."""
    return (len(value), value)


class MastodonCollector:
    def poll(self, source: SourceConfig, state: SourceState, ctx: PollContext) -> FetchResult:
        if not source.url:
            raise SourceError(f"source {source.name!r} has no url", permanent=True)
        tag = (source.query or "").strip().lstrip("#")
        url = f"{base_url(source, '')}/api/v1/timelines/tag/{quote(tag, safe='')}"
        limit = min(ctx.settings.max_items, MAX_LIMIT)
        since = state.cursor if state.cursor and not _ahead_of_clock(state.cursor, ctx) else None
        pager = Pager(source, ctx)
        instance = urlsplit(url).hostname or ""
        newest = since
        after = since  # where the next page starts: the highest id read so far
        posts: list[Post] = []
        while True:
            params: dict[str, str | int] = {"limit": limit}
            if after:
                # min_id pages forward from the cursor; since_id too, for servers that know only since_id (they
                # answer the newest statuses after it, as before).
                params["min_id"] = params["since_id"] = after
            statuses = pager.next(partial(self._page, source, ctx, url, params))
            if statuses is None:
                break
            top = after
            for raw in statuses:
                status = as_dict(raw)
                ident = text_of(status.get("id"))
                if not ident or (since and _id_key(ident) <= _id_key(since)):
                    continue
                if top is None or _id_key(ident) > _id_key(top):
                    top = ident
                if (newest is None or _id_key(ident) > _id_key(newest)) and not _ahead_of_clock(ident, ctx):
                    newest = ident
                if (post := _status_post(source, ctx, status, ident, instance)) is not None:
                    posts.append(post)
            # The first poll reads one page (the newest statuses); a short page means none is left after it.
            if since is None or len(statuses) < limit or top == after:
                break
            after = top
        return FetchResult(posts=posts, state=SourceState(cursor=newest), warnings=pager.warnings(),
                           retry_after=pager.retry_after)

    @staticmethod
    def _page(source: SourceConfig, ctx: PollContext, url: str,
              params: dict[str, str | int]) -> tuple[Response, list[Any]]:
        resp = fetch(ctx.client, ctx.settings, url, timeout=source.timeout, now=ctx.now,
                     secret_url=source.secret_url, params=params, headers={"Accept": "application/json"})
        return resp, as_list(read_json(resp), "the timeline", resp.where)


def _status_post(source: SourceConfig, ctx: PollContext, status: dict[str, Any], ident: str,
                 instance: str) -> Post | None:
    shown = as_dict(status.get("reblog")) or status  # a boost carries the boosted status
    account = as_dict(shown.get("account"))
    if account.get("bot") is True:
        return None  # an automated account (news relay, status mirror, monitor): no user's complaint
    return make_post(
        source, ctx,
        external_id=status_external_id(text_of(shown.get("uri")), text_of(shown.get("id")) or ident),
        title=text_of(shown.get("spoiler_text")),
        body_html=text_of(shown.get("content")),
        created_at=parse_time(shown.get("created_at")),
        url=text_of(shown.get("url")) or text_of(shown.get("uri")) or None,
        author=account_handle(account, instance),
        lang=text_of(shown.get("language")) or None,
    )

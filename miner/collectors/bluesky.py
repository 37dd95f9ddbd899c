"""`bluesky`: `app.bsky.feed.searchPosts` with an app password (anonymous search is refused since 2025).

Logs in with `com.atproto.server.createSession` (identifier and app password from the env vars named by
`env.identifier` and `env.password`), renews with `com.atproto.server.refreshSession` when the access JWT
expires or is refused as expired, and logs in afresh when the refresh token is spent too.
Cursor: the newest `indexedAt` seen, sent as `since`. `url` overrides the service base (bsky.social).
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
from miner.collectors.http import Response, fetch, json_object, status_error
from miner.collectors.normalise import parse_time
from miner.collectors.tokens import Token, TokenCache, jwt_expiry
from miner.config import SourceConfig
from miner.errors import SourceError
from miner.records import FetchResult, Post, SourceState
from miner.urls import shown_url

DEFAULT_BASE = "https://bsky.social"
_AUTH_ERRORS = frozenset({400, 401})
_EXPIRED = frozenset({"ExpiredToken", "InvalidToken"})


def _error_name(resp: Response) -> str:
    try:
        return text_of(json_object(resp).get("error"))
    except SourceError:
        return ""


def post_url(uri: str, did: str) -> str | None:
    """The bsky.app link of an at:// post URI (by DID, which survives handle changes)."""
    parts = uri.removeprefix("at://").split("/")
    if len(parts) == 3 and parts[1] == "app.bsky.feed.post" and did:
        return f"https://bsky.app/profile/{did}/post/{parts[2]}"
    return None


class BlueskyCollector:
    def __init__(self) -> None:
        self.sessions = TokenCache()

    def _session_from(self, source: SourceConfig, resp: Response, what: str) -> Token:
        data = json_object(resp)
        access, refresh = text_of(data.get("accessJwt")), text_of(data.get("refreshJwt"))
        if not access:
            raise SourceError(f"bluesky {what} from {resp.where} returned no accessJwt")
        token = Token(access=access, expires_at=jwt_expiry(access), refresh=refresh or None)
        self.sessions.put(source.name, token)
        return token

    def _login(self, source: SourceConfig, ctx: PollContext) -> Token:
        identifier = ctx.require_credential(source, "identifier")
        password = ctx.require_credential(source, "password")
        url = f"{base_url(source, DEFAULT_BASE)}/xrpc/com.atproto.server.createSession"
        resp = fetch(ctx.client, ctx.settings, url, method="POST", timeout=source.timeout, secret_url=source.secret_url,
                     json_body={"identifier": identifier, "password": password}, ok_statuses=_AUTH_ERRORS)
        if resp.status in _AUTH_ERRORS:
            detail = _error_name(resp) or f"HTTP {resp.status}"
            raise SourceError(f"bluesky login refused ({detail}): check env.identifier and env.password",
                              permanent=True)
        return self._session_from(source, resp, "createSession")

    def _refresh(self, source: SourceConfig, ctx: PollContext, token: Token) -> Token:
        if not token.refresh:
            return self._login(source, ctx)
        url = f"{base_url(source, DEFAULT_BASE)}/xrpc/com.atproto.server.refreshSession"
        resp = fetch(ctx.client, ctx.settings, url, method="POST", timeout=source.timeout, secret_url=source.secret_url,
                     headers={"Authorization": f"Bearer {token.refresh}"}, ok_statuses=_AUTH_ERRORS)
        if resp.status in _AUTH_ERRORS:
            self.sessions.drop(source.name)
            return self._login(source, ctx)
        return self._session_from(source, resp, "refreshSession")

    def _session(self, source: SourceConfig, ctx: PollContext) -> Token:
        token = self.sessions.get(source.name)
        if token is None:
            return self._login(source, ctx)
        if not token.fresh(ctx.now()):
            return self._refresh(source, ctx, token)
        return token

    def poll(self, source: SourceConfig, state: SourceState, ctx: PollContext) -> FetchResult:
        url = f"{base_url(source, DEFAULT_BASE)}/xrpc/app.bsky.feed.searchPosts"
        params: dict[str, str | int] = {"q": source.query or "", "sort": "latest",
                                        "limit": min(ctx.settings.max_items, 100)}
        cursor = time_cursor(state, ctx)
        if cursor is not None:
            params["since"] = cursor.isoformat()
        token = self._session(source, ctx)
        for attempt in range(2):
            resp = fetch(ctx.client, ctx.settings, url, timeout=source.timeout, params=params,
                         headers={"Authorization": f"Bearer {token.access}", "Accept": "application/json"},
                         ok_statuses=_AUTH_ERRORS, secret_url=source.secret_url)
            if resp.status not in _AUTH_ERRORS:
                return self._results(source, state, ctx, json_object(resp), resp.where)
            if attempt == 0 and _error_name(resp) in _EXPIRED:
                token = self._refresh(source, ctx, token)
                continue
            raise status_error(resp)
        raise SourceError(f"bluesky search at {shown_url(url, secret=source.secret_url)} refused the renewed session")

    def _results(
        self, source: SourceConfig, state: SourceState, ctx: PollContext, data: dict[str, Any], where: str
    ) -> FetchResult:
        cursor = time_cursor(state, ctx)
        newest: datetime | None = cursor
        posts: list[Post] = []
        for raw in as_list(data.get("posts"), "posts", where):
            item = as_dict(raw)
            record, author = as_dict(item.get("record")), as_dict(item.get("author"))
            uri = text_of(item.get("uri"))
            indexed = parse_time(item.get("indexedAt")) or parse_time(record.get("createdAt"))
            if not uri or indexed is None or (cursor is not None and indexed <= cursor):
                continue
            seen = not_after_now(indexed, ctx)
            newest = seen if newest is None else max(newest, seen)
            langs = record.get("langs")
            post = make_post(
                source, ctx,
                external_id=uri,
                body_html=text_of(record.get("text")),
                plain=True,
                created_at=parse_time(record.get("createdAt")) or indexed,
                url=post_url(uri, text_of(author.get("did"))),
                author=text_of(author.get("did")) or text_of(author.get("handle")) or None,
                lang=text_of(langs[0]) if isinstance(langs, list) and langs else None,
            )
            if post is not None:
                posts.append(post)
        return FetchResult(posts=posts, state=SourceState(cursor=newest.isoformat() if newest else None))

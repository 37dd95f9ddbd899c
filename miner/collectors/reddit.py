"""`reddit`: anonymous search/subreddit RSS, or the JSON API with OAuth client credentials.

`query` is search terms, or `r/<subreddit>` for a subreddit's newest posts. OAuth is used when
the environment variables named by `env.client_id` and `env.client_secret` are both set (the token is
cached until it expires); when neither is set the anonymous RSS is polled, with a warning.
`url` overrides the base URL (tests, mirrors); with no `query` it is the full RSS feed URL.
Anonymous RSS is incremental by conditional GET, OAuth by the newest `created_utc` seen.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import replace
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from miner.collectors.base import (
    PollContext,
    as_dict,
    as_list,
    base_url,
    epoch_cursor,
    epoch_not_after_now,
    make_post,
    text_of,
)
from miner.collectors.feeds import fetch_feed
from miner.collectors.http import Response, fetch, json_object, status_error
from miner.collectors.normalise import parse_time
from miner.collectors.rss import posts_from_feed
from miner.collectors.tokens import Token, TokenCache
from miner.config import SourceConfig
from miner.errors import SourceError
from miner.records import FetchResult, Post, SourceState

log = logging.getLogger(__name__)

WWW = "https://www.reddit.com"
OAUTH_API = "https://oauth.reddit.com"
_SUBREDDIT = re.compile(r"^/?r/([A-Za-z0-9_+]+)/?$")
# Reddit RSS bodies end with "submitted by /u/<name> [link] [comments]": it names the author, so it goes.
_SUBMITTED_BY = re.compile(r"(?:&#32;|\s)*submitted\s+by(?:&#32;|\s)*<a\b.*\Z", re.IGNORECASE | re.DOTALL)


def strip_reddit_boilerplate(html: str) -> str:
    return _SUBMITTED_BY.sub("", html)


def listing_path(query: str, suffix: str) -> tuple[str, dict[str, str | int]]:
    """The path and parameters for a query: a subreddit's newest posts, or a site search by date."""
    match = _SUBREDDIT.match(query.strip())
    if match:
        return f"/r/{quote(match.group(1))}/new{suffix}", {}
    return f"/search{suffix}", {"q": query, "sort": "new", "type": "link"}


class RedditCollector:
    def __init__(self) -> None:
        self.tokens = TokenCache()

    def poll(self, source: SourceConfig, state: SourceState, ctx: PollContext) -> FetchResult:
        client_id, secret = ctx.credential(source, "client_id"), ctx.credential(source, "client_secret")
        if client_id and secret:
            return self._poll_api(source, state, ctx)
        if client_id or secret:  # half-configured credentials are a mistake, not a wish for anonymity
            missing = "client_secret" if client_id else "client_id"
            ctx.require_credential(source, missing)
        result = self._poll_rss(source, state, ctx)
        if "client_id" in source.env:
            note = f"{source.env['client_id']} is not set: polled the anonymous RSS feed instead of the API"
            log.info("%s: %s", source.name, note)
            return replace(result, warnings=[*result.warnings, note])
        return result

    def _poll_rss(self, source: SourceConfig, state: SourceState, ctx: PollContext) -> FetchResult:
        if source.query:
            path, params = listing_path(source.query, "/.rss" if _SUBREDDIT.match(source.query) else ".rss")
            query = "&".join(f"{k}={quote(str(v))}" for k, v in params.items())
            url = f"{base_url(source, WWW)}{path}" + (f"?{query}" if query else "")
        elif source.url:
            url = source.url
        else:
            raise SourceError(f"source {source.name!r} needs a query or a url", permanent=True)
        resp = fetch_feed(source, state, ctx, url)
        if resp.status == 304:
            return FetchResult(state=state, not_modified=True)
        return posts_from_feed(source, resp, ctx, clean_body=strip_reddit_boilerplate)

    def _token(self, source: SourceConfig, ctx: PollContext) -> str:
        cached = self.tokens.get(source.name)
        now = ctx.now()
        if cached is not None and cached.fresh(now):
            return cached.access
        client_id = ctx.require_credential(source, "client_id")
        secret = ctx.require_credential(source, "client_secret")
        resp = fetch(ctx.client, ctx.settings, f"{base_url(source, WWW)}/api/v1/access_token",
                     method="POST", timeout=source.timeout, secret_url=source.secret_url, auth=(client_id, secret),
                     form={"grant_type": "client_credentials"}, ok_statuses=frozenset({401}))
        data = json_object(resp) if resp.status != 401 else {}
        access = text_of(data.get("access_token"))
        if not access:
            reason = text_of(data.get("error")) or f"HTTP {resp.status}"
            raise SourceError(f"reddit token request refused ({reason}): check client_id/client_secret",
                              permanent=True)
        expires_in = data.get("expires_in")
        expires = now + timedelta(seconds=float(expires_in)) if isinstance(expires_in, int | float) else None
        self.tokens.put(source.name, Token(access=access, expires_at=expires))
        return access

    def _poll_api(self, source: SourceConfig, state: SourceState, ctx: PollContext) -> FetchResult:
        path, params = listing_path(source.query or "", ".json")
        params = {**params, "limit": min(ctx.settings.max_items, 100), "raw_json": 1}
        api = base_url(source, OAUTH_API)
        resp: Response | None = None
        for _attempt in range(2):
            token = self._token(source, ctx)
            resp = fetch(ctx.client, ctx.settings, f"{api}{path}", timeout=source.timeout, params=params,
                         secret_url=source.secret_url,
                         headers={"Authorization": f"bearer {token}", "Accept": "application/json"},
                         ok_statuses=frozenset({401}))
            if resp.status != 401:
                break
            self.tokens.drop(source.name)  # revoked or expired early: log in once more
        assert resp is not None
        if resp.status == 401:
            raise status_error(resp)
        return self._listing(source, state, ctx, json_object(resp), resp.where)

    def _listing(
        self, source: SourceConfig, state: SourceState, ctx: PollContext, data: dict[str, Any], where: str
    ) -> FetchResult:
        if data.get("kind") != "Listing":
            raise SourceError(f"unexpected JSON from {where}: not a reddit Listing")
        cursor = epoch_cursor(state, ctx)
        newest = cursor
        posts: list[Post] = []
        for raw in as_list(as_dict(data.get("data")).get("children"), "data.children", where):
            item = as_dict(as_dict(raw).get("data"))
            created = item.get("created_utc")
            if not isinstance(created, int | float) or not math.isfinite(created) or not text_of(item.get("name")):
                continue
            if cursor is not None and created <= cursor:
                continue
            seen = epoch_not_after_now(float(created), ctx)
            newest = seen if newest is None else max(newest, seen)
            author = text_of(item.get("author"))
            post = make_post(
                source, ctx,
                external_id=text_of(item.get("name")),
                title=text_of(item.get("title")),
                body_html=text_of(item.get("selftext_html")) or text_of(item.get("selftext")),
                created_at=parse_time(created),
                url=f"{WWW}{item['permalink']}" if text_of(item.get("permalink")).startswith("/") else None,
                author=None if author in ("", "[deleted]") else author,
            )
            if post is not None:
                posts.append(post)
        return FetchResult(posts=posts, state=SourceState(cursor=None if newest is None else f"{newest:.0f}"))

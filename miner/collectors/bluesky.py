"""`bluesky`: `app.bsky.feed.searchPosts` with an app password (anonymous search is refused since 2025).

Logs in with `com.atproto.server.createSession` (identifier and app password from the env vars named by
`env.identifier` and `env.password`), renews with `com.atproto.server.refreshSession` when the access JWT
expires or is refused as expired, and logs in afresh when the refresh token is spent too.
Cursor: the newest `indexedAt` seen; `since` asks from a minute before it (`SINCE_MARGIN`: the search orders
by the earlier of createdAt and indexedAt). `url` overrides the service base (bsky.social).
Newest first: a poll reads the next pages (the answer's `cursor`) down to it, up to `max_pages`; what is left is a
window (`since` the cursor, `until` the last post read) the next polls read.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial
from typing import Any

from miner.collectors.base import (
    PollContext,
    as_dict,
    as_list,
    base_url,
    loose_list,
    make_post,
    not_after_now,
    text_of,
    time_cursor,
    without_credentials,
)
from miner.collectors.http import Response, fetch, json_object, status_error
from miner.collectors.normalise import parse_time
from miner.collectors.paging import Backlog, Pager, bounded_backlog, join_cursor, split_cursor
from miner.collectors.poll_notes import note
from miner.collectors.tokens import Token, TokenCache, jwt_expiry
from miner.config import SourceConfig
from miner.errors import BadContent, SourceError
from miner.records import FetchResult, Post, SourceState
from miner.urls import shown_url

DEFAULT_BASE = "https://bsky.social"
# How far before the cursor `since` asks from. The search orders and bounds posts by sortAt, the earlier of createdAt
# and indexedAt, while the cursor is the newest indexedAt read: a post written before that but indexed (searchable)
# only after the poll has a sortAt before the cursor, and `since=<cursor>` would hide it for good. The posts the
# margin brings again are dropped by their indexedAt.
SINCE_MARGIN = timedelta(seconds=60)
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

    def _session_from(self, source: SourceConfig, resp: Response, what: str, now: datetime) -> Token:
        data = json_object(resp)
        access, refresh = text_of(data.get("accessJwt")), text_of(data.get("refreshJwt"))
        if not access:
            raise BadContent(f"bluesky {what} from {resp.where} returned no accessJwt")
        token = Token(access=access, expires_at=jwt_expiry(access, now), refresh=refresh or None)
        self.sessions.put(source.name, token)
        return token

    def _login(self, source: SourceConfig, ctx: PollContext) -> Token:
        identifier = ctx.require_credential(source, "identifier")
        password = ctx.require_credential(source, "password")
        url = f"{base_url(source, DEFAULT_BASE)}/xrpc/com.atproto.server.createSession"
        resp = fetch(ctx.client, ctx.settings, url, method="POST", timeout=source.timeout, now=ctx.now,
                     secret_url=source.secret_url, json_body={"identifier": identifier, "password": password},
                     ok_statuses=_AUTH_ERRORS)
        if resp.status in _AUTH_ERRORS:
            detail = without_credentials(_error_name(resp), identifier, password) or f"HTTP {resp.status}"
            raise SourceError(f"bluesky login refused ({detail}): check env.identifier and env.password",
                              permanent=True)
        return self._session_from(source, resp, "createSession", ctx.now())

    def _refresh(self, source: SourceConfig, ctx: PollContext, token: Token) -> Token:
        if not token.refresh:
            return self._login(source, ctx)
        url = f"{base_url(source, DEFAULT_BASE)}/xrpc/com.atproto.server.refreshSession"
        resp = fetch(ctx.client, ctx.settings, url, method="POST", timeout=source.timeout, now=ctx.now,
                     secret_url=source.secret_url, headers={"Authorization": f"Bearer {token.refresh}"},
                     ok_statuses=_AUTH_ERRORS)
        if resp.status in _AUTH_ERRORS:
            self.sessions.drop(source.name)
            return self._login(source, ctx)
        return self._session_from(source, resp, "refreshSession", ctx.now())

    def _session(self, source: SourceConfig, ctx: PollContext) -> Token:
        token = self.sessions.get(source.name)
        if token is None:
            return self._login(source, ctx)
        if not token.fresh(ctx.now()):
            return self._refresh(source, ctx, token)
        return token

    def poll(self, source: SourceConfig, state: SourceState, ctx: PollContext) -> FetchResult:
        plain, backlog = split_cursor(state)
        cursor = time_cursor(plain, ctx)
        # The first poll reads one page, the newest posts: a new source does not page back through history.
        pager = Pager(source, ctx, limit=1 if cursor is None else None)
        read = _Search(self, source, ctx, pager)
        left: list[Backlog] = []
        windows: list[tuple[datetime | None, str | None]] = [(cursor, None)]
        if cursor is not None:
            windows += [(floor, w.start) for w in backlog if (floor := parse_time(w.floor)) is not None]
        for floor, until in windows:
            done, start = read.window(floor, until) if pager.can_continue else (False, until)
            if not done and floor is not None and start is not None:
                left.append(Backlog(floor.isoformat(), start))
        left, gaps = bounded_backlog(source, left)
        newest = cursor if read.newest is None else max(read.newest, cursor or read.newest)
        plain_cursor = newest.isoformat() if newest else None
        return FetchResult(posts=read.posts, state=SourceState(cursor=join_cursor(plain_cursor, left)),
                           warnings=pager.warnings() + gaps, retry_after=pager.retry_after, gap=bool(gaps))

    def get(self, source: SourceConfig, ctx: PollContext, url: str, params: dict[str, str | int]) -> Response:
        """One search request, renewing the session once when the server says it expired."""
        token = self._session(source, ctx)
        for attempt in range(2):
            resp = fetch(ctx.client, ctx.settings, url, timeout=source.timeout, now=ctx.now, params=params,
                         headers={"Authorization": f"Bearer {token.access}", "Accept": "application/json"},
                         ok_statuses=_AUTH_ERRORS, secret_url=source.secret_url)
            if resp.status not in _AUTH_ERRORS:
                return resp
            if attempt == 0 and _error_name(resp) in _EXPIRED:
                token = self._refresh(source, ctx, token)
                continue
            raise status_error(resp, ctx.now())
        raise SourceError(f"bluesky search at {shown_url(url, secret=source.secret_url)} refused the renewed session")


def _automated(author: dict[str, Any]) -> bool:
    """Whether the account marked itself as automated: its own "bot" self-label (one a labeler applied to it is
    someone else's opinion)."""
    did = text_of(author.get("did"))
    return any(label.get("val") == "bot" and label.get("src") == did and not label.get("neg")
               for label in map(as_dict, loose_list(author.get("labels"))))


def _sort_time(item: dict[str, Any]) -> datetime | None:
    """When the search orders a post by ("sortAt"): the earlier of its createdAt and indexedAt."""
    times = [t for t in (parse_time(item.get("indexedAt")), parse_time(as_dict(item.get("record")).get("createdAt")))
             if t is not None]
    return min(times) if times else None


class _Search:
    """The pages of a search one poll reads, newest first, window by window, and what they brought.

    Within a window the server's ``cursor`` pages on; a window left by an earlier poll is bounded by ``until``
    (exclusive, on the time the search orders by), so posts arriving since cannot shift it.
    """

    def __init__(self, collector: BlueskyCollector, source: SourceConfig, ctx: PollContext, pager: Pager) -> None:
        self.collector, self.source, self.ctx, self.pager = collector, source, ctx, pager
        self.url = f"{base_url(source, DEFAULT_BASE)}/xrpc/app.bsky.feed.searchPosts"
        self.where = shown_url(self.url, secret=source.secret_url)
        self.params: dict[str, str | int] = {"q": source.query or "", "sort": "latest",
                                             "limit": min(ctx.settings.max_items, 100)}
        self.posts: list[Post] = []
        self.taken: set[str] = set()  # the posts a window of this poll took: another window's margin lists them too
        self.newest: datetime | None = None

    def window(self, floor: datetime | None, until: str | None) -> tuple[bool, str | None]:
        """Read the posts indexed after ``floor`` and ordered before ``until`` while the pager allows. Returns
        whether the window was read to its end, and the ``until`` that a later window goes on from."""
        params = dict(self.params)
        if floor is not None:
            params["since"] = (floor - SINCE_MARGIN).isoformat()
        below_floor = False  # into the margin: what is left there is read if the pages allow, not kept for later
        if until is not None:
            params["until"] = until
        listed: set[str] = set()  # every post this window's pages listed, taken or not
        while True:
            page = self.pager.next(partial(self._page, params))
            if page is None:
                return below_floor, until
            items, next_cursor = page
            progress = fresh = False
            for item in items:
                uri = text_of(item.get("uri"))
                indexed = parse_time(item.get("indexedAt")) or parse_time(as_dict(item.get("record")).get("createdAt"))
                if not uri:
                    note("malformed", self.where)
                    continue
                if uri in listed:
                    continue
                listed.add(uri)
                progress = True
                # Only the posts taken count as read: the margin of a poll's first window reaches into the stretch a
                # window an earlier poll left holds (a burst read in part), and a post there that it passed over,
                # indexed before its floor, was then passed over by that window too, as read, and lost.
                if indexed is None:
                    note("malformed", self.where)
                    continue
                if (floor is not None and indexed <= floor) or uri in self.taken:
                    continue
                self.taken.add(uri)
                fresh = True
                seen = not_after_now(indexed, self.ctx)
                self.newest = seen if self.newest is None else max(self.newest, seen)
                if (post := self._post(item, uri, indexed)) is not None:
                    self.posts.append(post)
            if items and (last := _sort_time(items[-1])) is not None:
                # Exclusive: a millisecond after the last post read, so posts sharing its time are read again.
                until = (last + timedelta(milliseconds=1)).isoformat()
                below_floor = floor is not None and last < floor
            # No cursor: the search has no more. A page of posts all read before: a server ignoring the cursor.
            # In the margin, a page without a new post ends it: a late post sits near the cursor, and a burst
            # would otherwise spend the poll's pages on the margin's posts read before.
            if not next_cursor or not items or not progress or (below_floor and not fresh):
                return True, None
            params["cursor"] = next_cursor

    def _page(self, params: dict[str, str | int]) -> tuple[Response, tuple[list[dict[str, Any]], str | None]]:
        resp = self.collector.get(self.source, self.ctx, self.url, params)
        data = json_object(resp)
        items = [as_dict(raw) for raw in as_list(data.get("posts"), "posts", resp.where)]
        return resp, (items, text_of(data.get("cursor")) or None)

    def _post(self, item: dict[str, Any], uri: str, indexed: datetime) -> Post | None:
        record, author = as_dict(item.get("record")), as_dict(item.get("author"))
        if _automated(author):
            return None  # an automated account (news relay, status mirror, monitor): no user's complaint
        langs = record.get("langs")
        return make_post(
            self.source, self.ctx,
            external_id=uri,
            body_html=text_of(record.get("text")),
            plain=True,
            created_at=parse_time(record.get("createdAt")) or indexed,
            url=post_url(uri, text_of(author.get("did"))),
            author=text_of(author.get("did")) or text_of(author.get("handle")) or None,
            lang=text_of(langs[0]) if isinstance(langs, list) and langs else None,
        )

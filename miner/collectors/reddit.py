"""`reddit`: anonymous search/subreddit RSS, or the JSON API with OAuth client credentials.

`query` is search terms, or `r/<subreddit>` for a subreddit's newest posts. OAuth is used when
the environment variables named by `env.client_id` and `env.client_secret` are both set (the token is
cached until it expires); when neither is set the anonymous RSS is polled, with a warning.
`url` overrides the base URL (tests, mirrors); with no `query` it is the full RSS feed URL.
Anonymous RSS is incremental by conditional GET, OAuth by the newest `created_utc` seen: a poll reads the listing
newest first (`after=<fullname>`) down to it, up to `max_pages` pages; what is left is a window the next polls
read from the last post read on. Each read down to a cursor keeps every post of the page that reaches it, those
below it too: a post the search indexed late lies behind the cursor, by minutes or hours.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import quote

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
    without_credentials,
)
from miner.collectors.canonical import reddit_post_id
from miner.collectors.feed_boilerplate import reddit_post_link, without_reddit_trailer
from miner.collectors.feeds import entry_author, entry_id, fetch_feed
from miner.collectors.http import Response, fetch, json_object, status_error
from miner.collectors.normalise import html_to_text, parse_time
from miner.collectors.paging import Backlog, Pager, bounded_backlog, gap_warning, join_cursor, split_cursor
from miner.collectors.poll_notes import note
from miner.collectors.rss import posts_from_feed
from miner.collectors.tokens import Token, TokenCache, expiry_after
from miner.config import SourceConfig
from miner.env_names import shown_name
from miner.errors import BadContent, SourceError
from miner.records import FetchResult, Post, SourceState
from miner.timeutil import iso

log = logging.getLogger(__name__)

WWW = "https://www.reddit.com"
OAUTH_API = "https://oauth.reddit.com"
_REMOVED_BODIES = frozenset({"[removed]", "[deleted]"})
# Below a cursor, a read of the API keeps every post of the page that reaches it. Search is an index that lags the
# site, by minutes when Reddit is loaded (an outage everyone posts about), by hours at times: a post dated by its
# creation turns up there after newer ones were read. A subreddit's newest posts are listed at once, in order, but
# `created_utc` has whole seconds: a post of the cursor's own second may follow the poll. That page is read anyway:
# no request more, at most a page of posts sent again, which the store has (it keeps one of each) or, older than it
# keeps posts, leaves out (the collect stage's retention cutoff).
_SUBREDDIT = re.compile(r"^/?r/([A-Za-z0-9_+]+)/?$")


# Reddit's own rule bot, whose posts (scheduled megathreads, "daily discussion" posts) a subreddit's moderators
# set up: no user's report. Reddit has no bot flag on accounts; this one is the same account on every subreddit.
_AUTOMODERATOR = "automoderator"


def by_automoderator(author: str | None) -> bool:
    """Whether ``author``, as the API (``AutoModerator``) or the RSS (``/u/AutoModerator``) names it, is Reddit's
    AutoModerator (user names are case-insensitive)."""
    return (author or "").strip().removeprefix("/u/").lower() == _AUTOMODERATOR


def feed_post_id(entry: Any) -> str:
    """The fullname (``t3_...``) of the post a feed entry is, as the API names it (see canonical.reddit_post_id); an
    entry that is no post (a comment, of a comments feed) keeps its id as every feed's entry does."""
    return reddit_post_id(entry) or entry_id(entry)


def _short_links(result: FetchResult) -> FetchResult:
    """``result`` with its posts' links as `reddit_post_link` gives them (a comment of a comments feed keeps its
    own)."""
    return replace(result, posts=[replace(p, url=reddit_post_link(p.external_id) or p.url) for p in result.posts])


def strip_reddit_boilerplate(html: str) -> str:
    # Reddit's trailer names the author (see feed_boilerplate).
    body = without_reddit_trailer(html)
    # A deleted or removed post's body is Reddit's placeholder, no word of the poster's: the title is what is left.
    return "" if html_to_text(body) in _REMOVED_BODIES else body


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
            note = f"{shown_name(source.env['client_id'])} is not set: polled the anonymous RSS feed instead of the API"
            log.info("%s: %s", source.name, note)
            return replace(result, warnings=[*result.warnings, note])
        return result

    def _poll_rss(self, source: SourceConfig, state: SourceState, ctx: PollContext) -> FetchResult:
        if source.query:
            path, params = listing_path(source.query, "/.rss" if _SUBREDDIT.match(source.query) else ".rss")
            # A feed cannot be paged: ask for the most it holds (25 by default), so a burst between two polls
            # is less likely to push posts off it unread.
            params = {**params, "limit": min(ctx.settings.max_items, 100)}
            query = "&".join(f"{k}={quote(str(v))}" for k, v in params.items())
            url = f"{base_url(source, WWW)}{path}" + (f"?{query}" if query else "")
        elif source.url:
            url = source.url
        else:
            raise SourceError(f"source {source.name!r} needs a query or a url", permanent=True)
        resp = fetch_feed(source, state, ctx, url)
        if resp.status == 304:
            return FetchResult(state=state, not_modified=True)
        return _short_links(posts_from_feed(source, resp, ctx, clean_body=strip_reddit_boilerplate, state=state,
                                            skip=lambda entry: by_automoderator(entry_author(entry)),
                                            post_id=feed_post_id))

    def _token(self, source: SourceConfig, ctx: PollContext) -> str:
        cached = self.tokens.get(source.name)
        now = ctx.now()
        if cached is not None and cached.fresh(now):
            return cached.access
        client_id = ctx.require_credential(source, "client_id")
        secret = ctx.require_credential(source, "client_secret")
        resp = fetch(ctx.client, ctx.settings, f"{base_url(source, WWW)}/api/v1/access_token",
                     method="POST", timeout=source.timeout, now=ctx.now, secret_url=source.secret_url,
                     auth=(client_id, secret),
                     form={"grant_type": "client_credentials"}, ok_statuses=frozenset({401}))
        data = json_object(resp) if resp.status != 401 else {}
        access = text_of(data.get("access_token"))
        if not access:
            reason = without_credentials(text_of(data.get("error")), client_id, secret) or f"HTTP {resp.status}"
            raise SourceError(f"reddit token request refused ({reason}): check client_id/client_secret",
                              permanent=True)
        self.tokens.put(source.name, Token(access=access, expires_at=expiry_after(data.get("expires_in"), now)))
        return access

    def _poll_api(self, source: SourceConfig, state: SourceState, ctx: PollContext) -> FetchResult:
        plain, backlog = split_cursor(state)
        cursor = epoch_cursor(plain, ctx)
        # The first poll reads one page, the newest posts: a new source does not page back through history.
        pager = Pager(source, ctx, limit=1 if cursor is None else None)
        read = _Listing(self, source, ctx, pager)
        left: list[Backlog] = []
        gaps: list[str] = []
        windows: list[tuple[float | None, str | None]] = [(cursor, None)]
        if cursor is not None:
            windows += [(float(w.floor), w.start) for w in backlog if w.floor.isdigit()]
        for floor, after in windows:
            if not pager.can_continue:
                if floor is not None and after is not None:
                    left.append(Backlog(f"{floor:.0f}", after))
                continue
            done, resume = read.window(floor, after)
            if done or floor is None:
                continue
            if resume is None:  # the page after `after` was empty, the window not read to its floor
                gaps.append(gap_warning(source, (
                    f"could not page on after {after} (removed, or past the 1000 posts a reddit listing reaches): "
                    f"posts between {iso(datetime.fromtimestamp(floor, UTC))} and that one are missing")))
            else:
                left.append(Backlog(f"{floor:.0f}", resume))
        left, dropped = bounded_backlog(source, left)
        newest = cursor if read.newest is None else max(read.newest, cursor or read.newest)
        plain_cursor = None if newest is None else f"{newest:.0f}"
        return FetchResult(posts=read.posts, state=SourceState(cursor=join_cursor(plain_cursor, left)),
                           warnings=pager.warnings() + gaps + dropped, retry_after=pager.retry_after,
                           gap=bool(gaps or dropped),
                           # A post read only through a crosspost is dated when it was written: older by design, not
                           # delivered late.
                           catching_up=frozenset(read.catching_up | (read.crossposted - read.listed)))

    def get(self, source: SourceConfig, ctx: PollContext, url: str, params: dict[str, str | int]) -> Response:
        """One API request, logging in once more when the token is refused."""
        resp: Response | None = None
        for _attempt in range(2):
            token = self._token(source, ctx)
            resp = fetch(ctx.client, ctx.settings, url, timeout=source.timeout, now=ctx.now, params=params,
                         secret_url=source.secret_url,
                         headers={"Authorization": f"bearer {token}", "Accept": "application/json"},
                         ok_statuses=frozenset({401}))
            if resp.status != 401:
                break
            self.tokens.drop(source.name)  # revoked or expired early: log in once more
        assert resp is not None
        if resp.status == 401:
            raise status_error(resp, ctx.now())
        return resp


def _crossposted(item: dict[str, Any]) -> dict[str, Any] | None:
    """The post a crosspost shares (as the listing gives it in ``crosspost_parent_list``, followed to the first post
    of a crosspost of a crosspost), or None for a post of its own or a crosspost that gives no usable parent.

    A crosspost is no report of its own, as a Mastodon boost is not: its poster shares someone's post in another
    subreddit, its title the original's unless changed. Read as itself, an hours-old "Outlook down?" crossposted to
    three subreddits counted as three complainers now; it is read as the post it shares, that author's, dated when
    written, stored once."""
    shown: dict[str, Any] | None = None
    current = item
    for _depth in range(5):
        parent_name = text_of(current.get("crosspost_parent"))
        parents = [p for p in map(as_dict, loose_list(current.get("crosspost_parent_list")))
                   if text_of(p.get("name")) == parent_name]
        if not parent_name or not parents or not _usable(parents[0]):
            break
        shown = current = parents[0]
    return shown


def _usable(item: dict[str, Any]) -> bool:
    """Whether a listing's item has the fullname and time a post needs."""
    created = item.get("created_utc")
    return isinstance(created, int | float) and math.isfinite(created) and bool(text_of(item.get("name")))


class _Listing:
    """The pages of a listing one poll reads, newest first, window by window, and what they brought.

    Reddit pages by item: ``after=<fullname>`` answers the posts listed after (older than) that one, so a window
    left by an earlier poll starts after the last post it read, wherever newer posts have pushed it since.
    """

    def __init__(self, collector: RedditCollector, source: SourceConfig, ctx: PollContext, pager: Pager) -> None:
        self.collector, self.source, self.ctx, self.pager = collector, source, ctx, pager
        path, params = listing_path(source.query or "", ".json")
        self.url = f"{base_url(source, OAUTH_API)}{path}"
        self.params: dict[str, str | int] = {**params, "limit": min(ctx.settings.max_items, 100), "raw_json": 1}
        self.posts: list[Post] = []
        self.catching_up: set[str] = set()  # read in a window an earlier poll left: older than posts stored, not late
        self.seen: set[str] = set()
        self.taken: set[str] = set()  # external ids: a crosspost and the post it shares are one post
        self.listed: set[str] = set()  # external ids of posts the listing gave themselves
        self.crossposted: set[str] = set()  # external ids of posts read through a crosspost
        self.newest: float | None = None

    def window(self, floor: float | None, after: str | None) -> tuple[bool, str | None]:
        """Read the posts newer than ``floor`` listed after ``after`` (from the newest when None) while the pager
        allows, and those below ``floor`` on the page that reaches it (read before, or indexed late: the store keeps
        one of each). Returns whether the window was read to its floor or the listing's end, and the post to page
        after to go on (None when a window's first page came back empty)."""
        # A window an earlier poll left: what it holds above its floor is no late post. Nor is any of a first read (no
        # cursor, or the anonymous feed's of a source given credentials since): its page reaches further back than
        # the feed's 25 posts, and the older ones are not late, only never read.
        catch_up = after is not None or floor is None
        first = True
        while True:
            params = {**self.params, "after": after} if after else self.params
            page = self.pager.next(partial(self._page, params))
            if page is None:
                return False, after
            children, count, next_after = page
            if not count:
                # After a post an earlier poll read, nothing: that post was removed, or is past the posts the
                # listing reaches. Anywhere else the listing simply ended.
                return (False, None) if first and after is not None else (True, None)
            first = False
            reached = fresh = False
            for item in children:
                created = item["created_utc"]
                if floor is not None and created <= floor:
                    reached = True
                if item["name"] in self.seen:
                    continue
                self.seen.add(item["name"])
                fresh = True
                seen = epoch_not_after_now(float(created), self.ctx)
                self.newest = seen if self.newest is None else max(self.newest, seen)
                shown = _crossposted(item) or item
                if (post := self._post(shown)) is None:
                    continue
                (self.listed if shown is item else self.crossposted).add(post.external_id)
                if post.external_id in self.taken:
                    continue
                self.taken.add(post.external_id)
                self.posts.append(post)
                if catch_up and (floor is None or created > floor):
                    self.catching_up.add(post.external_id)
            if reached or not next_after or not fresh:  # no new post on a page: a server ignoring `after`
                return True, None
            after = next_after

    def _page(self, params: dict[str, str | int]) -> tuple[Response, tuple[list[dict[str, Any]], int, str | None]]:
        resp = self.collector.get(self.source, self.ctx, self.url, params)
        data = json_object(resp)
        if data.get("kind") != "Listing":
            raise BadContent(f"unexpected JSON from {resp.where}: not a reddit Listing")
        listing = as_dict(data.get("data"))
        items = [as_dict(as_dict(raw).get("data"))
                 for raw in as_list(listing.get("children"), "data.children", resp.where)]
        valid = [i for i in items if _usable(i)]
        if len(valid) < len(items):
            note("malformed", resp.where, len(items) - len(valid))
        return resp, (valid, len(items), text_of(listing.get("after")) or None)

    def _post(self, item: dict[str, Any]) -> Post | None:
        author = text_of(item.get("author"))
        if by_automoderator(author):
            return None
        # A post its author deleted or a moderator removed keeps its title; its body is Reddit's placeholder, no
        # word of the poster's ("Is Outlook down? [removed]": subreddits remove "is it down" posts for a megathread).
        gone = text_of(item.get("selftext")).strip() in _REMOVED_BODIES
        return make_post(
            self.source, self.ctx,
            external_id=text_of(item.get("name")),
            title=text_of(item.get("title")),
            body_html="" if gone else text_of(item.get("selftext_html")) or text_of(item.get("selftext")),
            created_at=parse_time(item["created_utc"]),
            url=reddit_post_link(text_of(item.get("name"))),
            author=None if author in ("", "[deleted]") else author,
        )

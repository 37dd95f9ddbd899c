"""`mastodon`: a public hashtag timeline, `/api/v1/timelines/tag/:tag?since_id=...` (`query` is the tag).

Cursor: the highest status id seen. Status ids are numeric strings that grow with time. A poll asks for the newest
page after the id `LOOKBACK` before the cursor's time: a status the server fetched late, with an id dated by its
publication, is behind the cursor. When all of that page is new, the poll pages forward from the cursor with
`min_id` (the statuses just after it) up to that page, up to `max_pages`, and the next poll goes on where it
stopped; its result says it is `behind` meanwhile, as the cursor cannot show what lies between it and that page.
`since_id` alone would answer the newest `limit` statuses: after a burst of more than a page, the cursor would jump
to the newest and skip the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any
from urllib.parse import quote, urlsplit

from miner.collectors.base import PollContext, as_dict, as_list, base_url, cursor_limit, make_post, text_of
from miner.collectors.http import Response, fetch, host_of, read_json
from miner.collectors.normalise import parse_time
from miner.collectors.paging import Pager, gap_warning
from miner.collectors.poll_notes import note
from miner.config import SourceConfig
from miner.errors import SourceError
from miner.records import FUTURE_SLACK, FetchResult, Post, SourceState
from miner.urls import shown_url

MAX_LIMIT = 40  # Mastodon's own cap for timelines
# How far before the cursor's time the first page of a poll reaches. The tag timeline is in id order, and a status is
# given its id when the server stores it, except one it fetched later (a reply or boost of a status it did not have):
# that one gets an id dated by its publication, behind a cursor read meanwhile. The newest page a poll asks for anyway
# (`since_id`) then reaches an hour below the cursor: no request more, the statuses read again stored once.
LOOKBACK = timedelta(hours=1)
_SNOWFLAKE_MS_FLOOR = 1_000_000_000_000  # the time (ms) in a snowflake id is after 2001; a sequential id's is not


# The kinds of object whose numbers a server counts apart from those of another kind it federates, with what sets
# their URIs apart: Lemmy's and PieFed's /post/<n> and /comment/<n>, Mbin's threads /m/<magazine>/t/<n>, microblog
# posts /p/<n> and their comments /comment/<n> and /reply/<n>. As host/<n>, post 5 and comment 5 of one server were
# one id, and the store kept whichever came first. The first kind of each (post, t) keeps host/<n>, as before.
_NUMBERED_KINDS = frozenset({"comment", "reply", "p"})


# What a server answers an anonymous request for a hashtag timeline it shows to logged-in users only: Mastodon 4.5's
# "topic feed" setting other than public, or an older one's timeline preview turned off, 422 ("This method requires an
# authenticated user"); one in limited-federation (secure) mode, 401 for its whole API.
_LOGIN_REQUIRED = frozenset({401, 422})


def _login_required(resp: Response) -> SourceError:
    """The error for a timeline shown to logged-in users only: permanent, as miner reads it anonymously. A 422 read as
    any other status was a passing failure, retried on the backoff for good and never listed as needing someone to
    act; a 401 sent the operator to the source's credentials, which the type has none of."""
    return SourceError(f"HTTP {resp.status} from {host_of(resp.url, resp.secret_url)} (this instance shows its hashtag "
                       "timelines to logged-in users only, and miner reads them anonymously: watch the tag on another "
                       "instance)", permanent=True, http_status=resp.status)


def status_external_id(uri: str, local_id: str) -> str:
    """host/id from an ActivityPub status URI: stable across instances, and free of the author's handle
    (Mastodon URIs read https://host/users/<name>/statuses/<id>); host/<kind>/<n> for a number of a kind in
    _NUMBERED_KINDS."""
    parts = urlsplit(uri)
    *_, kind, last = ["", "", *parts.path.rstrip("/").split("/")]
    if parts.hostname and last:
        if last.isdigit() and kind in _NUMBERED_KINDS:
            return f"{parts.hostname}/{kind}/{last}"
        return f"{parts.hostname}/{last}"
    return f"status:{local_id}"


def _ahead_of_clock(ident: str, ctx: PollContext, since: str | None = None) -> bool:
    """Whether a snowflake id (milliseconds << 16) claims a time past our clock: as since_id it would hide
    every real status from then on (see base.not_after_now), so it is never kept as the cursor. Our clock is
    never behind the time of the cursor ``since`` it kept by more than FUTURE_SLACK: when it is, it was set back since
    (NTP, a VM resumed), and the statuses after the cursor, dated past our clock by the server's, are read on from
    it, not held at it until our clock is right again. Otherwise the slack counts from our clock, not from the
    cursor: from the cursor, each poll could move it up to the slack past the one before, and statuses from an
    instance whose clock is ahead ratcheted it on, hiding the real ones as since_id. Old sequential ids encode no
    time."""
    ms = _snowflake_ms(ident)
    slack_ms = FUTURE_SLACK / timedelta(milliseconds=1)
    clock_ms = ctx.now().timestamp() * 1000
    since_ms = _snowflake_ms(since or "") or 0
    return ms is not None and ms > (since_ms if since_ms > clock_ms + slack_ms else clock_ms) + slack_ms


def _stored_cursor(cursor: str | None, ctx: PollContext) -> str | None:
    """The stored cursor to go on from: one ahead of the clock by no more than it may have been set back
    (base.CLOCK_SET_BACK) is kept, as a time cursor is; one further ahead (a status dated 2100, kept before the rule
    above) starts the source over."""
    ms = _snowflake_ms(cursor or "")
    return None if not cursor or (ms is not None and ms > cursor_limit(ctx).timestamp() * 1000) else cursor


def _snowflake_ms(ident: str) -> int | None:
    """The time (Unix ms) a snowflake id (milliseconds << 16) encodes; None for an old sequential id."""
    if not ident.isdigit() or int(ident) >> 16 < _SNOWFLAKE_MS_FLOOR:
        return None
    return int(ident) >> 16


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
        since = _stored_cursor(state.cursor, ctx)
        pager = Pager(source, ctx)
        read = _Read(source, ctx, urlsplit(url).hostname or "", shown_url(url, secret=source.secret_url))

        def page(params: dict[str, str | int]) -> list[Any] | None:
            return pager.next(partial(self._page, source, ctx, url, {"limit": limit, **params}))

        if since is None:  # the first poll reads one page, the newest statuses
            newest = _newest(read.take(page({}) or [], None), None, ctx)
            return read.result(newest, pager)
        # The newest page down to an hour before the cursor: in a quiet poll all that is new, and what came late.
        first = page({"since_id": _margin_floor(since)}) or []
        newer = [i for i in read.take(first, _margin_floor(since)) if _id_key(i) > _id_key(since)]
        if len(first) < limit or len(newer) < len(first) or not newer:
            return read.result(_newest(newer, since, ctx), pager)
        # More is new than a page holds: page forward from the cursor (min_id answers the statuses just after it) up
        # to that page, so that a burst past the page cap is read over the next polls, oldest first, none skipped;
        # since_id too, for servers that know only since_id (they answer the newest statuses after it, as before).
        bottom = min(newer, key=_id_key)
        forward: list[str] = []
        after = since  # the highest id the forward pages read
        while (statuses := page({"min_id": after, "since_id": after})) is not None:
            on_page = read.take(statuses, since, forward=True)
            forward += on_page
            top = max([after, *on_page], key=_id_key)
            if len(statuses) < limit or top == after or _id_key(top) >= _id_key(bottom):
                gaps = self._skipped(source, page, since, bottom) if after == since and len(statuses) >= limit \
                    and on_page and _id_key(min(on_page, key=_id_key)) >= _id_key(bottom) else []
                return read.result(_newest(newer + forward, since, ctx), pager, gaps=gaps)  # caught up
            after = top
        # Stopped short of the newest page: the next poll goes on after the last status read forward. The cursor
        # cannot show the statuses left between it and the newest page, so the result says it is behind.
        return read.result(_newest(forward, since, ctx), pager, behind=True)

    @staticmethod
    def _skipped(source: SourceConfig, page: Callable[[dict[str, str | int]], list[Any] | None], since: str,
                 bottom: str) -> list[str]:
        """The warning, when there is one, that statuses between the cursor and the newest page were skipped.

        A full page forward from the cursor that starts at the newest page is what a server that does not know
        min_id answers (the newest statuses after since_id, again), and what one that knows it answers when nothing
        lies between: the newest status below that page and above the cursor, one request for one status, tells.
        """
        between = page({"max_id": bottom, "since_id": since, "limit": 1})
        if not between or not any(_id_key(since) < _id_key(text_of(as_dict(s).get("id"))) < _id_key(bottom)
                                  for s in between):
            return []  # nothing between (or the request failed, which the pager's warning says)
        return [gap_warning(source, (
            f"the server does not page forward with min_id: it answered the newest statuses again, so statuses "
            f"after status {since} and before {bottom} are missing (poll more often)"))]

    @staticmethod
    def _page(source: SourceConfig, ctx: PollContext, url: str,
              params: dict[str, str | int]) -> tuple[Response, list[Any]]:
        resp = fetch(ctx.client, ctx.settings, url, timeout=source.timeout, now=ctx.now,
                     secret_url=source.secret_url, params=params, headers={"Accept": "application/json"},
                     ok_statuses=_LOGIN_REQUIRED)
        if resp.status in _LOGIN_REQUIRED:
            raise _login_required(resp)
        return resp, as_list(read_json(resp), "the timeline", resp.where)


class _Read:
    """The statuses one poll takes, each once: a boost and the status it boosts are one status."""

    def __init__(self, source: SourceConfig, ctx: PollContext, instance: str, where: str) -> None:
        self.source, self.ctx, self.instance, self.where = source, ctx, instance, where
        self.posts: list[Post] = []
        self.seen: set[str] = set()
        self.taken: set[str] = set()  # external ids
        self.listed: set[str] = set()  # external ids of statuses the timeline listed themselves, not only boosted
        self.forward: set[str] = set()  # external ids first read paging forward from the cursor

    def take(self, statuses: list[Any], floor: str | None, forward: bool = False) -> list[str]:
        """Take a page's statuses above ``floor`` not taken before; return the ids of those above it. ``forward``: a
        page read forward from the cursor."""
        idents = []
        for raw in statuses:
            status = as_dict(raw)
            ident = text_of(status.get("id"))
            if not ident:
                note("malformed", self.where)
                continue
            if floor and _id_key(ident) <= _id_key(floor):
                continue  # the server ignored since_id
            idents.append(ident)
            if ident in self.seen:
                continue
            self.seen.add(ident)
            post = _status_post(self.source, self.ctx, status, ident, self.instance)
            if post is None:
                continue
            if not as_dict(status.get("reblog")):
                self.listed.add(post.external_id)
            if post.external_id not in self.taken:
                self.taken.add(post.external_id)
                self.posts.append(post)
                if forward:
                    self.forward.add(post.external_id)
        return idents

    def result(self, newest: str | None, pager: Pager, behind: bool = False, gaps: list[str] | None = None
               ) -> FetchResult:
        # None of these arrived late, though dated before posts stored before them. A status read only through a
        # boost is dated when it was written, however long ago (see _status_post). One read forward from the cursor
        # lies above it: new, or, after a poll that stopped behind, in the stretch that poll left unread below the
        # newest page it stored.
        older = (self.taken - self.listed) | self.forward
        return FetchResult(posts=self.posts, state=SourceState(cursor=newest), warnings=pager.warnings() + (gaps or []),
                           retry_after=pager.retry_after, behind=behind, gap=bool(gaps), catching_up=frozenset(older))


def _newest(idents: list[str], since: str | None, ctx: PollContext) -> str | None:
    """The cursor after reading ``idents``: the highest not past our clock (nor ``since``'s time), never below
    ``since``."""
    kept = [i for i in idents if not _ahead_of_clock(i, ctx, since)] + ([since] if since else [])
    return max(kept, key=_id_key) if kept else None


def _margin_floor(cursor: str) -> str:
    """The id LOOKBACK before the time a snowflake ``cursor`` encodes; an old sequential id has no time: itself."""
    ms = _snowflake_ms(cursor)
    return cursor if ms is None else str((ms - int(LOOKBACK.total_seconds() * 1000)) << 16)


def _status_post(source: SourceConfig, ctx: PollContext, status: dict[str, Any], ident: str,
                 instance: str) -> Post | None:
    # A boost is no report of its own: the booster says nothing of their own service, and a wave of boosts, or one of
    # a status from hours or years ago, would read as a wave of complaints now. It is read as the status it boosts,
    # that author's report dated when written: stored once (a duplicate when the store has it), in that time's
    # bucket, which the detector may have scored already (docs/collectors.md, mastodon).
    shown = as_dict(status.get("reblog")) or status
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

"""`lemmy`: a Lemmy instance's `/api/v3/search?q=...&type_=All&sort=New` (posts and comments).

Cursor: the newest `published` time seen (ISO 8601, UTC). External ids are the ActivityPub ids, which stay the same
whichever instance federated the item; a Mastodon user's status in a community, and a Misskey user's note, is named
as the `mastodon` type names it (see `_view_post`). Newest first: a poll reads `page=2, 3, ...` down to the cursor,
up to `max_pages`. Lemmy pages by offset only, so what the cap leaves cannot be read later: the poll says posts are
missing. A later page that fails (a rate limit) keeps the cursor, and the poll is `behind`: the next one reads down
to it again. The items below the cursor on the page that reaches it are read too: a post federated late keeps its
original `published` time.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import partial
from typing import Any

from miner.collectors.base import (
    PollContext,
    as_dict,
    as_list,
    base_url,
    make_post,
    not_after_now,
    source_secrets,
    text_of,
    time_cursor,
)
from miner.collectors.canonical import mastodon_uri_identity, misskey_note_identity
from miner.collectors.http import Response, fetch, host_of, json_object, status_error
from miner.collectors.normalise import parse_time
from miner.collectors.paging import Pager, gap_warning
from miner.collectors.poll_notes import note
from miner.collectors.ratelimit import rate_limit_wait
from miner.config import SourceConfig
from miner.errors import BadContent, SourceError
from miner.records import FetchResult, Post, SourceState
from miner.redaction import redact
from miner.timeutil import iso
from miner.urls import shown_url

MAX_LIMIT = 50  # Lemmy's own cap
# Below the cursor, the items of the page that reaches it are read too. A post or comment from another instance
# arrives when that instance delivers it, dated by its `published` time there: after newer ones were read when the
# sender's queue is behind, or hours later when this instance was unreachable and gets it on a retry. Only the page
# that reaches the cursor, read anyway, brings them: no request more, at most a page of each list sent again, which
# the store has (it keeps one of each) or, older than it keeps posts, leaves out.


# Lemmy 0.18 and 0.19 answer every error but a wrong login or a missing object as a 400, their rate limit too
# ({"error": "rate_limit_error"}, no Retry-After; 60 searches in 10 minutes an address by default).
_REFUSED = frozenset({400})
_RATE_LIMITED = "rate_limit_error"
# The name of any other refusal ("couldnt_find_community", "instance_is_private") is what tells the operator why: a
# bare "HTTP 400 from host" left them to guess. It is the server's text, shown in logs, `miner status` and the board:
# what is not a character of such a name goes (a line break, an escape, markup), and a long one is cut.
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_.:\[\]-]+")
_NAME_LIMIT = 64


def _shown_name(name: str, secrets: tuple[str, ...] = ()) -> str:
    """Lemmy's error name as a message shows it: without ``secrets`` (a url_env source's key, if the server quotes
    it, as ``[redacted]``), only ASCII letters, digits and ``_.:-[]`` (others as a space), at most _NAME_LIMIT
    characters."""
    shown = " ".join(_NOT_IN_NAME.sub(" ", redact(name, secrets) if secrets else name).split())
    return shown if len(shown) <= _NAME_LIMIT else shown[:_NAME_LIMIT - 1].rstrip() + "…"


def _refusal(resp: Response, source: SourceConfig, ctx: PollContext) -> SourceError:
    """The error for a 400: Lemmy's rate limit, which passes by itself as a 429 does, or a request refused, which
    does not (a permanent error, see http.status_error), with the name Lemmy gave it. Read as a bad request, a
    rate-limited source was failed for good: polled hourly and listed as needing someone to act."""
    try:
        name = text_of(json_object(resp).get("error"))
    except SourceError:
        name = ""
    if name == _RATE_LIMITED:
        return SourceError(f"HTTP {resp.status} from {host_of(resp.url, resp.secret_url)} (Lemmy's rate limit: {name})",
                           retry_after=rate_limit_wait(resp.headers, ctx.now()), http_status=resp.status)
    refused = status_error(resp, ctx.now())
    if not (shown := _shown_name(name, source_secrets(source))):
        return refused
    return SourceError(f"{refused} (Lemmy's error: {shown})", retry_after=refused.retry_after,
                       permanent=refused.permanent, needs_action=refused.needs_action, http_status=resp.status)


def _view_post(source: SourceConfig, ctx: PollContext, view: dict[str, Any], kind: str, where: str) -> Post | None:
    item = as_dict(view.get(kind))
    creator = as_dict(view.get("creator"))
    if item.get("deleted") or item.get("removed"):
        return None
    if not item.get("id"):
        note("malformed", where)
        return None
    if creator.get("bot_account") is True:
        return None  # an automated account (news relay, status mirror, monitor): no user's complaint
    ap_id = text_of(item.get("ap_id"))
    # A Mastodon user's status in a community (a post, or a comment) keeps its ActivityPub id, and its creator the
    # actor id (https://host/users/<name>): named so, it was another post and another author than the status a
    # `mastodon` source reads, by host/<id> and the profile URL, and counted twice. It is named as that source names it;
    # one stored before by its ap_id is that post still (feed_id). So is a Misskey user's note, its creator the actor
    # https://host/users/<database id>, which a `mastodon` source names by the profile URL https://host/@<name>.
    actor = text_of(creator.get("actor_id"))
    status = mastodon_uri_identity(ap_id, actor) or misskey_note_identity(ap_id, actor, text_of(creator.get("name")))
    return make_post(
        source, ctx,
        external_id=status.external_id if status else ap_id or f"{kind}:{item['id']}",
        title=text_of(item.get("name")) if kind == "post" else "",
        body_html=text_of(item.get("body") if kind == "post" else item.get("content")),
        created_at=parse_time(item.get("published")),
        url=ap_id or None,
        author=status.author if status else text_of(creator.get("actor_id")) or text_of(creator.get("name")) or None,
        feed_id=ap_id if status else None,
    )


class LemmyCollector:
    def poll(self, source: SourceConfig, state: SourceState, ctx: PollContext) -> FetchResult:
        if not source.url:
            raise SourceError(f"source {source.name!r} has no url", permanent=True)
        url = f"{base_url(source, '')}/api/v3/search"
        where = shown_url(url, secret=source.secret_url)
        limit = min(ctx.settings.max_items, MAX_LIMIT)
        cursor = time_cursor(state, ctx)
        # The first poll reads one page, the newest items: a new source does not page back through history.
        pager = Pager(source, ctx, limit=1 if cursor is None else None)
        newest: datetime | None = cursor
        oldest: datetime | None = None
        posts: list[Post] = []
        seen: set[str] = set()
        # Above the cursor: new, or, after a poll a later page failed, what it left unread below the pages it stored.
        # Either way not late (that is one below the cursor, federated late).
        above: set[str] = set()
        # Posts and comments are two lists, each paged on its own: `page=N` answers the Nth `limit` of each.
        done = {"posts": False, "comments": False}
        page = 1
        while not all(done.values()):
            data = pager.next(partial(self._page, source, ctx, url, {"q": source.query or "", "type_": "All",
                                                                     "sort": "New", "limit": limit, "page": page}))
            if data is None:
                break
            for kind, key in (("post", "posts"), ("comment", "comments")):
                if done[key]:
                    continue
                views = data[key]
                if len(views) < limit:
                    done[key] = True  # the list has no more
                for view in views:
                    item = as_dict(view.get(kind))
                    published = parse_time(item.get("published"))
                    late = cursor is not None and published is not None and published <= cursor
                    # Lemmy lists the posts an admin featured first, whatever the sort: an old one (a pinned megathread)
                    # says nothing of where the list stands, and ended it at its top, the new posts past page 1 unread.
                    if late and not (item.get("featured_local") is True or item.get("featured_community") is True):
                        done[key] = True  # newest first: the rest of this list was read before, but for late ones
                    post = _view_post(source, ctx, view, kind, where)
                    if post is None or post.external_id in seen:  # the list moved down under new items
                        continue
                    seen.add(post.external_id)
                    posts.append(post)  # one below the cursor: read before, or federated late (the store keeps one)
                    if late:
                        continue
                    above.add(post.external_id)
                    seen_at = not_after_now(post.created_at, ctx)
                    newest = seen_at if newest is None else max(newest, seen_at)
                    oldest = post.created_at if oldest is None else min(oldest, post.created_at)
            page += 1
        warnings = pager.warnings()
        gap = behind = False
        if cursor is not None and not all(done.values()):
            if pager.capped:
                # Lemmy pages by offset only: a later poll could not start where this one stopped.
                gap = True
                warnings.append(gap_warning(source, (
                    f"more was new than {pager.pages} pages of {limit} hold: posts and comments published after "
                    f"{iso(cursor)} and before {iso(oldest or cursor)} are missing (raise collect.max_pages or "
                    "poll more often)")))
            else:
                newest = cursor  # a later page failed: the next poll reads down to the cursor again
                behind = True
        return FetchResult(posts=posts, state=SourceState(cursor=newest.isoformat() if newest else None),
                           warnings=warnings, retry_after=pager.retry_after, gap=gap, behind=behind,
                           catching_up=frozenset(above))

    @staticmethod
    def _page(source: SourceConfig, ctx: PollContext, url: str,
              params: dict[str, str | int]) -> tuple[Response, dict[str, list[dict[str, Any]]]]:
        resp = fetch(ctx.client, ctx.settings, url, timeout=source.timeout, now=ctx.now,
                     secret_url=source.secret_url, params=params, headers={"Accept": "application/json"},
                     ok_statuses=_REFUSED)
        if resp.status in _REFUSED:
            raise _refusal(resp, source, ctx)
        data = json_object(resp)
        if "posts" not in data and "comments" not in data:
            raise BadContent(f"unexpected JSON from {resp.where}: no 'posts' or 'comments' (is this Lemmy?)")
        # One of them is there (checked above); a missing one is an empty list.
        return resp, {key: [as_dict(v) for v in as_list(data.get(key), key, resp.where, required=False)]
                      for key in ("posts", "comments")}

"""`discourse`: a Discourse forum: `/search.json?q=... order:latest` when `query` is set, else `/latest.json`.

Cursor: the highest post id (search) or topic id (latest) seen, as `post:N` or `topic:N`; ids only grow, so older
items are skipped. A cursor of the other kind (the source's `query` added or removed) starts the source afresh.
Newest first: a poll reads the next pages (`page=`) down to the cursor, up to `max_pages`. Discourse pages by
offset only, so what the cap leaves cannot be read later: the poll says posts are missing. A later page that fails
(a rate limit) keeps the cursor, and the poll is `behind`: the next one reads down to it again.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from miner.collectors.base import (
    PollContext,
    as_dict,
    as_list,
    base_url,
    int_cursor,
    loose_list,
    make_post,
    text_of,
)
from miner.collectors.http import Response, fetch, host_of, json_object, status_error
from miner.collectors.normalise import parse_time
from miner.collectors.paging import Pager, gap_warning
from miner.collectors.poll_notes import note
from miner.config import SourceConfig
from miner.errors import BadContent, SourceError
from miner.records import FetchResult, Post, SourceState
from miner.urls import shown_url

# The usernames Discourse gives its built-in automation accounts: `system` (user id -1: auto-close notices,
# welcome and policy topics) and the narrative bot `discobot` (-2). Search results name a post's author only by
# username; topic lists give the user id, where every id not above 0 is such an account (Discourse's User#bot?).
_BOT_USERNAMES = frozenset({"system", "discobot"})


_REFUSED = frozenset({403})


def _checked(resp: Response, ctx: PollContext) -> Response:
    """``resp``, or the error for a 403. A forum shown to logged-in users only (`login_required`) answers an anonymous
    request for its JSON 403 `not_logged_in`: the source type takes no credentials, so "check the source's
    credentials" sent the operator after none; its feeds take a user's API key in their URL."""
    if resp.status not in _REFUSED:
        return resp
    try:
        kind = text_of(json_object(resp).get("error_type"))
    except SourceError:
        kind = ""
    if kind == "not_logged_in":
        raise SourceError(f"HTTP {resp.status} from {host_of(resp.url, resp.secret_url)} (the forum shows itself to "
                          "logged-in users only, and miner reads it anonymously: watch its /latest.rss as an rss "
                          "source, its URL with an api_key and api_username given by url_env)", permanent=True,
                          http_status=resp.status)
    raise status_error(resp, ctx.now())


def _cursor(state: SourceState, kind: str) -> int | None:
    """The id a cursor holds, when it is of ``kind``. Post ids run far ahead of topic ids: read as a topic id, a
    search's cursor hid every topic until the forum had as many topics as posts. A bare id (written before cursors
    said their kind) is taken as the configured kind's, as it was then."""
    mark, _, ident = (state.cursor or "").rpartition(":")
    return int_cursor(SourceState(cursor=ident)) if mark in ("", kind) else None


class DiscourseCollector:
    def poll(self, source: SourceConfig, state: SourceState, ctx: PollContext) -> FetchResult:
        if not source.url:
            raise SourceError(f"source {source.name!r} has no url", permanent=True)
        base = base_url(source, "")
        # Post links are built on the forum's URL as messages show it: never with a user:password@, nor, for a url
        # from the environment, with its path (which may be its key).
        site = shown_url(base, secret=source.secret_url, link=True)
        kind = "post" if source.query else "topic"
        cursor = _cursor(state, kind)
        # The first poll reads one page, the newest items: a new source does not page back through history.
        pager = Pager(source, ctx, limit=1 if cursor is None else None)
        fresh: dict[int, Post] = {}
        passed: set[int] = set()  # the new ids read, those of items skipped (a bot's, one without text) too
        page = 1 if source.query else 0  # search pages count from 1, topic lists from 0
        complete = False
        while (read := pager.next(partial(self._page, source, ctx, base, site, page))) is not None:
            items, order, more = read
            fresh.update((n, p) for n, p in items if cursor is None or n > cursor)
            new = [n for n in order if cursor is None or n > cursor]
            passed.update(new)
            # Topics by creation are newest first: an older one means the rest was read before. Search results
            # are not strictly in id order (a topic's posts may be shown together): a page with nothing new ends it.
            if not more or not new or (not source.query and len(new) < len(order)):
                complete = True
                break
            page += 1
        # Past the skipped items too, so that they are not read again by every poll until a post follows them.
        newest = max([*fresh, *passed, *([] if cursor is None else [cursor])], default=None)
        warnings = pager.warnings()
        gap = behind = False
        if cursor is not None and not complete:
            if pager.capped:
                # Discourse pages by offset only: a later poll could not start where this one stopped.
                gap = True
                what = "posts" if source.query else "topics"
                warnings.append(gap_warning(source, (
                    f"more was new than {pager.pages} pages hold: {what} with ids after {cursor} and before "
                    f"{min(fresh, default=cursor)} are missing (raise collect.max_pages or poll more often)")))
            else:
                newest = cursor  # a later page failed: the next poll reads down to the cursor again
                behind = True
        # Every post is above the cursor: none arrived late. After a poll a later page failed, the pages it stored
        # are read again, and the posts it left below them are older by design.
        return FetchResult(posts=list(fresh.values()),
                           state=SourceState(cursor=f"{kind}:{newest}" if newest is not None else None),
                           warnings=warnings, retry_after=pager.retry_after, gap=gap, behind=behind,
                           catching_up=frozenset(p.external_id for p in fresh.values()))

    def _page(self, source: SourceConfig, ctx: PollContext, base: str, site: str,
              page: int) -> tuple[Response, tuple[list[tuple[int, Post]], list[int], bool]]:
        """One page: its items with their ids, the ids that tell where the page stands in the order (every item's
        but a pinned topic's), and whether the forum says there are more pages."""
        params: dict[str, str | int]
        if source.query:
            params = {"q": f"{source.query} order:latest"}
            if page > 1:
                params["page"] = page
            resp = _checked(fetch(ctx.client, ctx.settings, f"{base}/search.json", timeout=source.timeout,
                                  now=ctx.now, params=params, headers={"Accept": "application/json"},
                                  secret_url=source.secret_url, ok_statuses=_REFUSED), ctx)
            data = json_object(resp)
            items = self._search_posts(source, ctx, site, data, resp.where)
            order = [p["id"] for p in map(as_dict, loose_list(data.get("posts"))) if isinstance(p.get("id"), int)]
            more = bool(as_dict(data.get("grouped_search_result")).get("more_full_page_results"))
            return resp, (items, order, more)
        params = {"order": "created"}
        if page:
            params["page"] = page
        resp = _checked(fetch(ctx.client, ctx.settings, f"{base}/latest.json", timeout=source.timeout, now=ctx.now,
                              params=params, headers={"Accept": "application/json"}, secret_url=source.secret_url,
                              ok_statuses=_REFUSED), ctx)
        data = json_object(resp)
        items = self._latest_topics(source, ctx, site, data, resp.where)
        topic_list = as_dict(data.get("topic_list"))
        order = [t["id"] for t in map(as_dict, loose_list(topic_list.get("topics")))
                 if isinstance(t.get("id"), int) and not t.get("pinned_globally") and not t.get("pinned")]
        return resp, (items, order, bool(topic_list.get("more_topics_url")))

    def _search_posts(
        self, source: SourceConfig, ctx: PollContext, site: str, data: dict[str, Any], where: str
    ) -> list[tuple[int, Post]]:
        if "posts" not in data and "grouped_search_result" not in data:
            raise BadContent(f"unexpected JSON from {where}: no 'posts' (is this a Discourse forum?)")
        topics = [t for t in map(as_dict, loose_list(data.get("topics"))) if isinstance(t.get("id"), int)]
        titles = {t["id"]: text_of(t.get("title")) for t in topics}
        out: list[tuple[int, Post]] = []
        # A search with no hits may leave out "posts" (grouped_search_result is always there).
        for raw in as_list(data.get("posts"), "posts", where, required=False):
            item = as_dict(raw)
            ident, topic_id = item.get("id"), item.get("topic_id")
            if not isinstance(ident, int):
                note("malformed", where)
                continue
            if text_of(item.get("username")).lower() in _BOT_USERNAMES:
                continue  # Discourse's own notices ("This topic was automatically closed..."): no user's complaint
            if not isinstance(topic_id, int):
                topic_id = None
            post_number = item.get("post_number") or 1
            post = make_post(
                source, ctx,
                external_id=f"post:{ident}",
                # Replies stand alone; only the opening post reads better after its topic's title.
                title=titles.get(topic_id, "") if post_number == 1 else "",
                body_html=text_of(item.get("blurb")),
                created_at=parse_time(item.get("created_at")),
                url=f"{site}/t/-/{topic_id}/{post_number}" if topic_id else None,
                author=text_of(item.get("username")) or None,
            )
            if post is not None:
                out.append((ident, post))
        return out

    def _latest_topics(
        self, source: SourceConfig, ctx: PollContext, site: str, data: dict[str, Any], where: str
    ) -> list[tuple[int, Post]]:
        users = {u["id"]: text_of(u.get("username"))
                 for u in map(as_dict, loose_list(data.get("users"))) if isinstance(u.get("id"), int)}
        topic_list = as_dict(data.get("topic_list"))
        if "topic_list" not in data:
            raise BadContent(f"unexpected JSON from {where}: no 'topic_list' (is this a Discourse forum?)")
        out: list[tuple[int, Post]] = []
        for raw in as_list(topic_list.get("topics"), "topic_list.topics", where):
            item = as_dict(raw)
            ident = item.get("id")
            if not isinstance(ident, int):
                note("malformed", where)
                continue
            if item.get("pinned_globally"):
                continue
            posters = [as_dict(p) for p in loose_list(item.get("posters"))]
            opener = next((p for p in posters if "Original Poster" in text_of(p.get("description"))), None)
            user_id = (opener or (posters[0] if posters else {})).get("user_id")
            if isinstance(user_id, int) and user_id <= 0:
                continue  # opened by one of Discourse's automation accounts (system, discobot): no user's complaint
            author = users.get(user_id) if isinstance(user_id, int) else None
            post = make_post(
                source, ctx,
                external_id=f"topic:{ident}",
                title=text_of(item.get("title")),
                body_html=text_of(item.get("excerpt")),
                created_at=parse_time(item.get("created_at")),
                # Without its slug, the title's words: contact details the text has as placeholders, a name.
                # Discourse takes "-" for any slug.
                url=f"{site}/t/-/{ident}",
                author=author or None,
            )
            if post is not None:
                out.append((ident, post))
        return out

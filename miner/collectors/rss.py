"""`rss`: any RSS or Atom feed of posts (subreddit/search RSS, forums, news search, Mastodon tag RSS).

Incremental by conditional GET (ETag / Last-Modified); the store dedupes entries seen before by id, and by link and
date (see `miner.store.relisted.relisted`): some feeds give their entries new ids at every fetch.
A feed holds its newest entries only and cannot be paged: when more is new between two polls than it holds, the
rest is gone. The cursor (the newest entry's date) tells: a feed whose every dated entry is newer than the newest
of the last poll may have dropped posts in between, and the poll says so.
A feed listing its whole history is read to its newest ``max_entries`` entries (see `posts_from_feed`); what that
leaves is never read, and the poll says so too when it may have held posts not read before.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from miner.collectors.base import (
    PollContext,
    author_space,
    make_post,
    named_everywhere,
    not_after_now,
    time_cursor,
)
from miner.collectors.canonical import feed_author_url, reddit_shared_post, site_identity, vouched_author
from miner.collectors.fedi_feed import feed_server
from miner.collectors.feed_boilerplate import feed_entry_text, lemmy_creator
from miner.collectors.feeds import (
    entry_author,
    entry_body,
    entry_id,
    entry_lang,
    entry_published,
    entry_time,
    fetch_feed,
    parse_feed_ends,
    whole_feed,
)
from miner.collectors.http import Response
from miner.collectors.normalise import stable_id
from miner.collectors.paging import gap_warning
from miner.collectors.validators import state_after
from miner.config import SourceConfig
from miner.errors import SourceError
from miner.records import FetchResult, Post, SourceState
from miner.source_identity import same_url
from miner.source_settings import DEFAULT_MAX_ENTRIES
from miner.timeutil import iso

log = logging.getLogger(__name__)
_UNDATED = datetime.max.replace(tzinfo=UTC)  # how `_newest` ranks an entry without a date: new, as it is dated now


def posts_from_feed(
    source: SourceConfig,
    resp: Response,
    ctx: PollContext,
    clean_body: Callable[[str], str] | None = None,
    state: SourceState | None = None,
    skip: Callable[[Any], bool] | None = None,
    post_id: Callable[[Any], str] = entry_id,
) -> FetchResult:
    """Parse a fetched feed into posts; ``clean_body`` strips a site's boilerplate from entry HTML. ``state``: the
    source's state before this poll, whose cursor (the newest entry date read then) tells whether the feed still
    reaches back to it. ``skip`` tells the entries that are no posts (a site's bot's); their dates still count.
    ``post_id`` gives an entry's external_id (a site whose API gives its posts' ids otherwise than its feed).

    Of a feed listing more than the source's ``max_entries``, the newest that many are read (see `_newest`)."""
    keep = source.max_entries or DEFAULT_MAX_ENTRIES
    parsed, warnings, unread = parse_feed_ends(resp, source.name, keep)
    feed = parsed.get("feed") or {}
    entries = [(entry, entry_time(entry)) for entry in parsed.get("entries") or []]
    dates = [when for _entry, when in entries if when is not None]
    kept = _newest(entries, keep)
    dated: list[tuple[Post, datetime | None, Any]] = []
    for entry, when in kept:
        if skip is not None and skip(entry):
            continue
        post = _entry_post(source, ctx, entry, feed, clean_body, when, post_id)
        if post is not None:
            dated.append((post, when, entry))
    posts = _told_apart(source, dated)
    last = time_cursor(state, ctx) if state is not None else None
    kept_dates = [when for _entry, when in kept if when is not None]
    # The newest date stored, not merely read: the gap checks of later polls count from it.
    newest = max((not_after_now(d, ctx) for d in kept_dates), default=None)
    gap = False
    # A feed whose every entry is dated ahead of our clock (a site writing its local time as UTC) cannot be told
    # against the cursor, which stops at our clock: each poll of it was said to miss posts.
    if last is not None and len(dates) > 1 and last < min(dates) <= ctx.now():
        # Nothing the last poll read is still in the feed: more was new than it holds, or exactly as many.
        gap = True
        warnings = [*warnings, gap_warning(source, (
            f"every dated entry of the feed ({len(dates)}) is newer than the newest the last poll read ({iso(last)}): "
            f"posts published between then and {iso(min(dates))} may be missing (poll more often)"))]
    if (total := len(entries) + unread) > keep:
        dropped, oldest = total - keep, min(kept_dates, default=None)
        note = (f"the feed lists {total} entries, more than max_entries ({keep}): the {keep} newest were read, "
                f"the {dropped} older ones left unread")
        if last is None:
            # The first poll (or a feed without dates): as an API's first page, its backlog is not read.
            warnings = [*warnings, _logged(source, f"{note} (nothing older is stored at a source's first poll, nor "
                                                   "from a feed whose entries have no dates; raise max_entries to "
                                                   "keep more)")]
        elif oldest is None or oldest > last:
            # Every poll reads the newest `keep` again, so what this one left is never read: missed for good.
            gap = True
            since = f"{iso(last)} and {iso(oldest)}" if oldest is not None else f"{iso(last)} and now"
            warnings = [*warnings, gap_warning(source, (
                f"{note}: posts published between {since} were among them and are missed (raise max_entries or "
                "poll more often)"))]
        else:
            # All older than an entry the last poll read: nothing new is lost, so no warning stands for good.
            log.info("source %s: %s, all dated before the newest the last poll read (%s)", source.name, note, iso(last))
    cursor = max(newest, last) if newest is not None and last is not None else newest or last
    return FetchResult(posts=posts, state=state_after(resp, cursor.isoformat() if cursor else None, whole_feed(parsed)),
                       warnings=warnings, gap=gap, by_link=True)


def _told_apart(source: SourceConfig, dated: list[tuple[Post, datetime | None, Any]]) -> list[Post]:
    """The posts, those of distinct entries that share one id told apart: a guid the feed gives every entry (its
    home page), or, without guids, the link each reply of a thread's feed gives (its thread). By that one id the
    store kept the first and dropped the rest as known. Each gets its id with ``#`` and 16 hex digits of the first of
    its `_keys` that no entry of the id with other content has: its own link, else its publication date and author,
    else its text, date and author. The first two stay when its text is edited or its update date moves, where a
    suffix of its text gave it a new id and it was stored again. The one the store had under the bare id, before
    another entry shared it, is told by its link, text and date (store.relisted.relisted). An entry listed twice (one
    content) is one post."""
    contents: dict[str, set[tuple[str, str, str]]] = {}
    for post, when, _entry in dated:
        contents.setdefault(post.external_id, set()).add(_content(post, when))
    shared = {ident for ident, seen in contents.items() if len(seen) > 1}
    if not shared:
        return [post for post, _when, _entry in dated]
    log.info("source %s: %d entries share an id with other entries (%s): told apart by their link, date or content",
             source.name, sum(post.external_id in shared for post, _when, _entry in dated), sorted(shared)[0])
    keys = [_keys(post, when, entry) if post.external_id in shared else [] for post, when, entry in dated]
    holders: dict[tuple[str, tuple[str, ...]], set[tuple[str, str, str]]] = {}
    for (post, when, _entry), own in zip(dated, keys, strict=True):
        for key in own:
            holders.setdefault((post.external_id, key), set()).add(_content(post, when))
    # The last key, the content, is held by entries of that content only: each shared one finds one.
    return [replace(post, external_id=f"{post.external_id}#{stable_id(*told)[2:18]}")
            if (told := next((key for key in own if len(holders[post.external_id, key]) == 1), None)) else post
            for (post, _when, _entry), own in zip(dated, keys, strict=True)]


def _keys(post: Post, when: datetime | None, entry: Any) -> list[tuple[str, ...]]:
    """What may tell an entry from others sharing its id, the steadiest first: its link (the stored one), its
    publication date (not its update's) and author, its content."""
    keys: list[tuple[str, ...]] = [("link", post.url)] if post.url else []
    published = entry_published(entry)
    if published is not None or post.author_hash:
        keys.append(("by", iso(published) if published is not None else "", post.author_hash or ""))
    # Last: an entry of the id with no other key of its own. As every suffix was made before, so such ids stay.
    return [*keys, _content(post, when)]


def _content(post: Post, when: datetime | None) -> tuple[str, str, str]:
    # The entry's own date, not the post's: one dated ahead of our clock is dated at each fetch.
    return post.text, iso(when) if when is not None else "", post.author_hash or ""


def _newest(entries: list[tuple[Any, datetime | None]], keep: int) -> list[tuple[Any, datetime | None]]:
    """The ``keep`` newest of ``entries`` (an entry and its date), in the feed's order. An entry without a date
    counts as new (it is dated at its fetch), and of entries alike the earlier in the feed: feeds list the newest
    first, or the oldest (then their dates tell)."""
    if len(entries) <= keep:
        return entries
    order = sorted(range(len(entries)), key=lambda i: entries[i][1] or _UNDATED, reverse=True)  # stable
    chosen = set(order[:keep])
    return [e for i, e in enumerate(entries) if i in chosen]


def _logged(source: SourceConfig, message: str) -> str:
    log.warning("source %s: %s", source.name, message)
    return message


def _entry_post(
    source: SourceConfig, ctx: PollContext, entry: Any, feed: Any, clean_body: Callable[[str], str] | None,
    created_at: datetime | None, post_id: Callable[[Any], str],
) -> Post | None:
    raw = body = entry_body(entry)
    if clean_body is not None:
        body = clean_body(body)
    own = post_id(entry)
    # The post as its site's API source names it and its author, where the entry says which post it is: read by both,
    # it is one complainer (see collectors/canonical.py).
    feed_host = urlsplit(source.url or "").hostname or ""
    site = site_identity(entry, author_space(source) == "reddit", feed_server(feed, entry), feed_author_url(feed),
                         feed_host)
    # Without what the site's feed writes beside the post's words (its author's name among it), as its API gives it.
    text = feed_entry_text(entry, site, str(entry.get("title", "") or ""), body,
                           str(entry.get("link", "") or "") or None)
    author = site.author if site else entry_author(entry)
    space = site.author_space if site else None
    if space is None and named_everywhere(author) and \
            not vouched_author(entry, author, feed_host, lemmy_creator(entry, raw)):
        # A DID or another host's profile the feed names its entry's author by is the feed's user, not that person
        # (canonical.vouched_author): one complainer per name within the feed.
        space = author_space(source)
    post = make_post(
        source, ctx,
        external_id=site.external_id if site else _feed_scoped(source, own),
        title=text.title,
        body_html=text.body,
        created_at=created_at,
        url=text.url,
        author=author,
        lang=entry_lang(entry, feed),
        space=space,
        feed_id=own,
    )
    if post is not None and site is not None and site.external_id.startswith("t3_") and \
            (shared := reddit_shared_post(raw, site.external_id)) is not None:
        post = replace(post, shares=shared)
    return post


# A guid that names its site: a URI (a scheme: https:, urn:, tag:; and the "h:" of an id made of an entry's content), a
# Message-ID (@ its host), or one that starts with its host (Discourse's <host>-topic-<id>).
_NAMES_A_SITE = re.compile(
    r"^[A-Za-z][A-Za-z0-9+.-]*:|@|^[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?:$|[^A-Za-z0-9.])")


def _feed_scoped(source: SourceConfig, own: str) -> str:
    """``own``, the id a feed gives an entry, as the store keeps it: a guid that names no site (``42``,
    ``topic-4821``) names the entry within its site only, so it is stored after the feed's host (and port), without
    its login (``forum.example.net#topic-4821``). Bare, it was the same id as another site's entry of that guid, and
    two such entries of one second were taken for one post (store.posts: COMPLAINER, _SAME_POST), one complainer, or
    one given the other's author. By the host, not the feed's address: a forum's latest and category feeds list one
    topic under one guid, and it is one post. A post stored under the bare guid before is found by it (Post.feed_id)."""
    if _NAMES_A_SITE.search(own) or not source.url:
        return own
    host = urlsplit(same_url(source.url)).netloc.rpartition("@")[2]
    return f"{host}#{own}"


class RssCollector:
    def poll(self, source: SourceConfig, state: SourceState, ctx: PollContext) -> FetchResult:
        if not source.url:
            raise SourceError(f"source {source.name!r} has no url", permanent=True)
        resp = fetch_feed(source, state, ctx, source.url)
        if resp.status == 304:
            return FetchResult(state=state, not_modified=True)
        return posts_from_feed(source, resp, ctx, state=state)

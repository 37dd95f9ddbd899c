"""The `Collector` protocol, the context a poll runs in, and helpers every source type shares."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from miner.collectors.normalise import hash_author, lang_code, parse_time, post_text
from miner.collectors.settings import CollectSettings
from miner.config import SourceConfig
from miner.env_names import shown_name
from miner.errors import BadContent, SourceError
from miner.records import FUTURE_SLACK, UNDATED_NEW, FetchResult, Post, SourceState
from miner.redaction import redact
from miner.urls import link_id, secret_parts, stored_link, url_problem


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class PollContext:
    """What a poll may use: the shared client, settings, the author-hash key and the environment.

    ``environ`` is where credentials named in ``SourceConfig.env`` are looked up (os.environ by default).
    """

    client: httpx.Client
    settings: CollectSettings
    # Neither is in the repr: the key makes author hashes reversible for known handles, and the environment holds
    # every credential (os.environ's repr lists it whole).
    hash_key: bytes = field(repr=False)
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ, repr=False)
    now: Callable[[], datetime] = utc_now

    def credential(self, source: SourceConfig, name: str) -> str | None:
        """The value of the env var that ``source.env[name]`` names, or None when unset or empty."""
        var = source.env.get(name)
        if not var:
            return None
        value = self.environ.get(var, "")
        return value or None

    def require_credential(self, source: SourceConfig, name: str) -> str:
        var = source.env.get(name)
        if not var:
            raise SourceError(f"env.{name} is not configured for source {source.name!r}", permanent=True)
        value = self.environ.get(var, "")
        if not value:
            raise SourceError(f"environment variable {shown_name(var)} (env.{name}) is not set", permanent=True)
        return value


def without_credentials(quoted: str, *credentials: str) -> str:
    """``quoted`` (a login's refusal, in the words of the server it went to) without ``credentials``: the server, or a
    mirror or proxy in front of it, may quote what it was sent, and the words go into the source's error (stored,
    logged, in `miner status` and the digest), as sent or percent-encoded (a form's field, a query value). One of
    fewer than 4 characters stays: it would garble the words."""
    return redact(quoted, (c for c in credentials if len(c) >= 4))


class Collector(Protocol):
    """One source type. ``poll`` returns new items and the state to remember, or raises SourceError."""

    def poll(self, source: SourceConfig, state: SourceState, ctx: PollContext) -> FetchResult: ...


def make_post(
    source: SourceConfig,
    ctx: PollContext,
    *,
    external_id: str,
    title: str = "",
    body_html: str = "",
    created_at: datetime | None,
    url: str | None = None,
    author: str | None = None,
    lang: str | None = None,
    plain: bool = False,
    space: str | None = None,
    feed_id: str | None = None,
) -> Post | None:
    """A normalised Post, or None when the item has no text at all.

    ``plain`` marks a body that is plain text already (a "<" in it is a character, not a tag). ``space``: where
    ``author`` is unique, None for where the source's are (`author_space`). ``feed_id``: the id the source's feed
    gives the item, where ``external_id`` is its site's (see Post.feed_id).
    """
    now = ctx.now()
    undated = None
    if created_at is None:
        # Dated when first seen; whether it counts depends on how long the source went unread (CollectStage).
        created_at, undated = now, UNDATED_NEW
    elif created_at > now + FUTURE_SLACK:
        created_at = now  # a wrong clock at the source must not put posts into buckets not yet reached
    # An item's text, and an id made of its link (a feed item without a guid), hold what the link holds.
    secrets = source_secrets(source)
    text = post_text(title, body_html, ctx.settings.max_text_chars, plain=plain, secrets=secrets)
    if not text:
        return None
    # A url_env source's links lose a host label that reads as a key even where its URL holds no key that
    # secret_parts reads: migration 0030, which has no URL, rewrote what it stored so.
    external_id = link_id(external_id, secrets, token_hosts=source.secret_url)
    feed_id = link_id(feed_id, secrets, token_hosts=source.secret_url) if feed_id is not None else None
    if space is None:
        space = "" if named_everywhere(author) else author_space(source)
    return Post(
        source=source.name,
        external_id=external_id,
        text=text,
        created_at=created_at,
        url=stored_link(url, secrets, token_hosts=source.secret_url),
        author_hash=hash_author(author, ctx.hash_key, space),
        lang=lang_code(lang),
        undated=undated,
        feed_id=feed_id if feed_id != external_id else None,
    )


def resolved(source: SourceConfig, environ: Mapping[str, str]) -> SourceConfig:
    """``source`` with the url its ``url_env`` names read from ``environ``. Raises SourceError, which never shows the
    value (the URL holds a secret), when it is unset or cannot be fetched."""
    if not source.url_env:
        return source
    url = environ.get(source.url_env, "")
    what = f"environment variable {shown_name(source.url_env)} (url_env)"
    if not url:
        raise SourceError(f"{what} is not set", permanent=True)
    if problem := url_problem(url, secret=True):
        raise SourceError(f"{what} {problem}", permanent=True)
    return replace(source, url=url)


def source_secrets(source: SourceConfig) -> tuple[str, ...]:
    """What the links and ids of a source's items must not hold: the parts of its URL from the environment (url_env)
    that may be its key (`miner.urls.secret_parts`); none for a URL in feeds.toml."""
    return secret_parts(source.url) if source.secret_url and source.url else ()


def author_space(source: SourceConfig) -> str:
    """Where a source's author names are unique. Mastodon, Lemmy and Bluesky name authors by URL or DID, the same
    from everywhere; a plain user name is one site's: Reddit's (its API and its feeds alike), Hacker News', or a
    forum's or feed's host."""
    if source.type in ("mastodon", "lemmy", "bluesky"):
        return ""
    host = urlsplit(source.url or "").hostname or ""
    if source.type == "reddit" or host == "reddit.com" or host.endswith(".reddit.com"):
        return "reddit"  # its own type, or a subreddit's feed read as plain RSS
    if source.type == "hackernews":
        return "hackernews"
    return host or source.name


def named_everywhere(author: str | None) -> bool:
    """Whether ``author`` names the author the same wherever their post is read: a profile or actor URL (Lemmy's
    feeds name authors by their actor id, as its API does) or a DID. A feed source hashed it in its host's space, and
    the author of a post its API source read too counted twice. A feed's entry names one so only where the feed's
    host vouches for it (canonical.vouched_author); any other is the feed's own user."""
    return (author or "").strip().lower().startswith(("https://", "http://", "did:"))


def as_list(value: Any, what: str, url: str, *, required: bool = True) -> list[Any]:
    """The list of items a response is about. Missing (when required) or not a list is a SourceError: an API
    answering in another shape must show as failing, not as a healthy source with nothing new."""
    if value is None and not required:
        return []
    if value is None:
        raise BadContent(f"unexpected JSON from {url}: no {what}")
    if not isinstance(value, list):
        raise BadContent(f"unexpected JSON from {url}: {what} is not a list")
    return value


def loose_list(value: Any) -> list[Any]:
    """A side list (users, tags, components): anything but a list counts as empty."""
    return value if isinstance(value, list) else []


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def text_of(value: Any) -> str:
    return value if isinstance(value, str) else ""


def base_url(source: SourceConfig, default: str) -> str:
    return (source.url or default).rstrip("/")


def int_cursor(state: SourceState) -> int | None:
    try:
        return int(state.cursor) if state.cursor else None
    except ValueError:
        return None  # a cursor from another type or version: start over rather than fail forever


# A time cursor never runs ahead of our clock. One item dated 2100 (a wrong clock, a broken API) would
# otherwise make every later poll ask for "newer than 2100" and drop every real post from then on. The item
# itself is kept (make_post dates it now) and fetched again next poll, where the store drops the duplicate.
def not_after_now(when: datetime, ctx: PollContext) -> datetime:
    return min(when, ctx.now())


def epoch_not_after_now(seconds: float, ctx: PollContext) -> float:
    return min(seconds, ctx.now().timestamp())


# A stored cursor further ahead of the clock than CLOCK_SET_BACK (written before the rule above, from a post dated
# 2100) starts the source over, as a cursor of another type does: the store drops what it already has. One less far
# ahead is our clock set back since the poll that wrote it (NTP, a VM resumed): it is read as now. Started over, the
# source read one page and dropped the stretches an earlier poll left to read, with no warning.
CLOCK_SET_BACK = timedelta(days=1)


def cursor_limit(ctx: PollContext) -> datetime:
    """The latest time a stored cursor (a time, or a Mastodon id's) may stand at and still be gone on from."""
    return ctx.now() + CLOCK_SET_BACK


def time_cursor(state: SourceState, ctx: PollContext) -> datetime | None:
    when = parse_time(state.cursor)
    if when is None or when > cursor_limit(ctx):
        return None
    return min(when, ctx.now())


def epoch_cursor(state: SourceState, ctx: PollContext) -> float | None:
    try:
        seconds = float(state.cursor) if state.cursor else None
    except ValueError:
        return None
    if seconds is None or not seconds <= cursor_limit(ctx).timestamp():  # nan fails too
        return None
    return min(seconds, ctx.now().timestamp())

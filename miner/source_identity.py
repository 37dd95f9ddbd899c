"""What a `[[sources]]` entry fetches, so that two entries fetching the same thing are refused by `config check`: each
would poll it and store its posts under its own name, and a post without an author counted once per source."""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

from miner.settings import SettingsError
from miner.source_settings import SourceConfig

# The base a type's collector polls when a source gives no url (the collectors' own constants, which import this
# package's config: tests/test_config_same_fetch.py checks they agree).
DEFAULT_BASES = {"hackernews": "https://hn.algolia.com", "bluesky": "https://bsky.social",
                 "reddit": "https://www.reddit.com"}
_DEFAULT_PORTS = {"http": 80, "https": 443}
_SUBREDDIT = re.compile(r"^/?r/([A-Za-z0-9_+]+)/?$")  # as the reddit collector reads a query


def same_url(url: str) -> str:
    """``url`` as two spellings of one address share it: scheme and host in lower case, without the scheme's
    default port, a trailing ``/`` or a fragment (never sent). Its query stays as written: its order may matter to
    the server."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address, which hostname gives without its brackets
    port = parts.port
    login = parts.netloc.rpartition("@")[0]
    netloc = (f"{login}@" if login else "") + host + (f":{port}" if port not in (None, _DEFAULT_PORTS.get(scheme))
                                                      else "")
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), parts.query, ""))


def page_key(url: str) -> tuple[str, str, str]:
    """What two Statuspage URLs of one page share: `https://WWW.githubstatus.com/` is `https://www.githubstatus.com`,
    which added a second source polling it, storing each of its incidents twice; so is its API's
    `.../api/v2/incidents.json` (a statuspage source's url may be either), which added a second source polling the
    page too (each poll's request made twice), and passed the check that a page belongs to one service."""
    parts = urlsplit(same_url(url))
    path = re.sub(r"/api/v2/.*\.json$", "", parts.path, flags=re.IGNORECASE)
    return parts.scheme, parts.netloc, path.rstrip("/")


def _query(src: SourceConfig) -> str:
    """The query as the source's collector sends it, in one spelling where the service reads it so: Mastodon's tags
    and Reddit's subreddit names in any case and with or without ``#`` or ``/`` are one."""
    query = (src.query or "").strip()
    if src.type == "mastodon":
        return query.lstrip("#").lower()
    if src.type == "reddit" and (match := _SUBREDDIT.match(query)):
        return f"r/{match.group(1).lower()}"
    return query


def fetch_key(src: SourceConfig) -> tuple[str, ...] | None:
    """What ``src`` fetches: its type, where (its url, or the variable its url comes from) and what (its query:
    search terms, a tag, a subreddit, a community; a Discourse forum's latest topics without one). Sources with one key
    poll the same thing; None for a disabled source, which polls nothing. Services, interval, timeout and
    credentials are no part of it: they change how often or as whom, not what."""
    if not src.enabled:
        return None
    if src.url_env:
        where = f"${src.url_env}"
    elif src.type == "statuspage" and src.url:
        where = "".join(page_key(src.url))  # the page, whichever of its .json URLs is polled
    else:
        where = same_url(src.url or DEFAULT_BASES.get(src.type, ""))
    return src.type, where, _query(src)


def _what(src: SourceConfig) -> str:
    where = "url_env" if src.url_env else "url" if src.url else ""
    return " and ".join(key for key in (where, "query" if src.query else "") if key)


def check_same_fetch(sources: Sequence[SourceConfig]) -> None:
    """Refuse a source that fetches what an earlier one does (`fetch_key`), naming both's key."""
    first: dict[tuple[str, ...], int] = {}
    for i, src in enumerate(sources):
        key = fetch_key(src)
        if key is None:
            continue
        j = first.setdefault(key, i)
        if j == i:
            continue
        what = _what(src)
        field = "url_env" if src.url_env else "url" if src.url else "query"
        other_field = "url_env" if sources[j].url_env else "url" if sources[j].url else "query"
        raise SettingsError(f"sources[{i}].{field}",
                            f"source {src.name!r} polls what source {sources[j].name!r} polls (same type, "
                            f"{what}): each poll would be made twice and its posts stored and counted twice; remove "
                            "one of them (one source may list several services)",
                            also=(f"sources[{j}].{other_field}",))

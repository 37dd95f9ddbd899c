"""The `[[services]]` and `[[sources]]` tables: what we look for, where we poll, and each entry's own checks
(`config.py` cross-checks them with the rest of the file)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Literal
from urllib.parse import urlsplit

from miner.env_names import ENV_NAME
from miner.joiners import stray_joiner, without_joiners
from miner.settings import Conflict, SettingsError
from miner.spelling import term_key
from miner.timeutil import check_timezone
from miner.urls import control_char, public_url, shown_url, url_problem

SourceType = Literal[
    "rss", "reddit", "hackernews", "discourse", "lemmy", "mastodon", "bluesky", "statuspage", "status_feed"
]
# Source types that bring the provider's own incidents of one service, not posts.
STATUS_TYPES = frozenset({"statuspage", "status_feed"})


def _empty() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True)
class ServiceConfig:
    """A service whose outages we look for."""

    name: str
    aliases: tuple[str, ...] = ()  # other names, hashtags and handles that mean this service
    status_page: str | None = None  # Atlassian Statuspage base URL: adds a `statuspage` source for it
    provider: str | None = None  # e.g. "Meta", "AWS": services of one provider open as one grouped incident
    # Name and aliases match only in their configured case, as 1-2 character ones always do: a service named by a
    # common word (the ISP "Three", the app "Signal") was found in every "three days" and "no signal".
    match_case: bool = False
    timezone: str | None = None  # the clock its users live by: overrides detector.timezone for its daily pattern

    def validate(self) -> None:
        if self.timezone is not None:
            check_timezone(self.timezone)
        if not self.name.strip():
            raise ValueError("name: must not be empty")
        if self.name in (".", ".."):
            # Its page's link, services/. or services/.., is a dot segment that browsers and clients resolve away
            # (also written %2E), so its status board page and its series in the read API could never be reached.
            raise ValueError(f"name: must not be {self.name!r}: a URL path cannot name it (a dot segment)")
        for key, value in (("name", self.name), *((f"aliases[{j}]", a) for j, a in enumerate(self.aliases)),
                           ("provider", self.provider or "")):
            # An alias is only matched, never shown: it may be spelled as posts spell it, with the ZWNJ of Persian's
            # "دیجی‌کالا" (matching reads every joiner as nothing), but not with one that joins nothing.
            found = (stray_joiner(value) or control_char(without_joiners(value)) if key.startswith("aliases")
                     else control_char(value))
            if found:  # an alias at its own key: a list over several lines gives its line
                raise SettingsError(key, f"must not contain control or format characters (found {found} in {value!r})")
        if self.provider is not None and not self.provider.strip():
            # "" was no provider, but "  " one that two such services shared: grouped as "   platform outage".
            raise ValueError(f"provider: must not be blank (got {self.provider!r}; leave it out for no provider)")
        for j, alias in enumerate(self.aliases):
            if not term_key(alias):  # matching would skip it: the operator meant something else
                raise SettingsError(f"aliases[{j}]", f"must not be empty (got {alias!r})")
        if self.status_page is not None and not re.match(r"\s*https?://", self.status_page):
            raise ValueError("status_page: must start with http:// or https:// (the page's base URL)")
        if self.status_page is not None and (problem := url_problem(self.status_page)):
            raise ValueError(f"status_page: {problem}")
        if self.status_page is not None and (problem := _feed_not_page(self.status_page)):
            raise ValueError(f"status_page: {problem} a [[sources]] entry of type 'status_feed'")
        # As a source's url is (docs/configuration.md): it passed here with only a warning naming its source.
        if self.status_page is not None and urlsplit(self.status_page).password is not None:
            raise ValueError("status_page: must not hold a password; secrets come from environment variables (give "
                             "a [[sources]] entry of type 'statuspage' with url_env)")


def _feed_not_page(url: str) -> str | None:
    """A statuspage source polls <url>/api/v2/incidents.json: a feed's URL there failed every poll with a 404."""
    if re.search(r"\.(atom|rss|xml)$", urlsplit(url).path.rstrip("/"), re.IGNORECASE):
        return "is a status feed (RSS/Atom), not a Statuspage page or its .json API: give it"
    return None


# The credentials each source type reads, by name in `env`; the values name environment variables.
CREDENTIALS: Mapping[str, tuple[str, ...]] = {"reddit": ("client_id", "client_secret"),
                                              "bluesky": ("identifier", "password")}
def _one_hashtag(tag: str) -> bool:
    """Whether ``tag`` (without its "#") is one hashtag as Mastodon reads one: word characters (and its middle dot and
    zero-width non-joiner), not digits only. The tag timeline takes one tag; a server drops what else a name holds
    ("whatsapp down" read as #whatsappdown, "#WhatsApp #outage" as #whatsappoutage) or knows no such tag and answers
    an empty timeline: the source polled without error and never found a post."""
    return re.fullmatch(r"[\w\u00b7\u200c]+", tag) is not None and not tag.isdigit()


MIN_INTERVAL = 10
MAX_INTERVAL = 7 * 86400  # beyond a week a source is better disabled; larger values overflow datetimes
MAX_TIMEOUT = 600.0
# A feed's entries read per poll (SourceConfig.max_entries). Feeds list tens, a busy forum's a few hundred; 5 MB of
# small entries is 90,000, which took feedparser 15 s of CPU and stored a site's whole history at its first poll.
DEFAULT_MAX_ENTRIES = 500
MAX_ENTRIES = 100_000


@dataclass(frozen=True)
class SourceConfig:
    """One place we poll. ``env`` maps credential names to the environment variables holding them."""

    name: str
    type: SourceType
    url: str | None = None  # feed URL, or the API's base URL
    url_env: str = ""  # or: the env var holding it, for a URL with a key in it (secrets never live in feeds.toml)
    query: str | None = None  # search terms, subreddit, or tag, depending on the type
    services: tuple[str, ...] = ()  # empty: match posts against every service
    interval: int = 300  # seconds between polls
    timeout: float = 20.0  # seconds for one request
    enabled: bool = True
    env: Mapping[str, str] = field(default_factory=_empty)
    # Entries of a feed read per poll at most, the newest (rss, and reddit's feed); None: DEFAULT_MAX_ENTRIES.
    max_entries: int | None = None

    def validate(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.:\-]+", self.name):
            raise ValueError("name: use letters, digits and . _ : - only")
        if self.max_entries is not None and self.type not in ("rss", "reddit"):
            raise Conflict(f"max_entries: only for the feeds of types 'rss' and 'reddit', not {self.type!r}",
                           also=("type",))
        if self.max_entries is not None and not 1 <= self.max_entries <= MAX_ENTRIES:
            raise ValueError(f"max_entries: must be 1 to {MAX_ENTRIES}")
        if not MIN_INTERVAL <= self.interval <= MAX_INTERVAL:
            raise ValueError(f"interval: must be {MIN_INTERVAL} to {MAX_INTERVAL} seconds (7 days)")
        if not 0 < self.timeout <= MAX_TIMEOUT:
            raise ValueError(f"timeout: must be more than 0 and at most {MAX_TIMEOUT:.0f} seconds")
        needs_url = {"rss", "discourse", "lemmy", "mastodon", "statuspage", "status_feed"}
        if self.url_env and not ENV_NAME.fullmatch(self.url_env):
            raise ValueError("url_env: must name an environment variable, not hold the URL itself")
        if self.url and self.url_env:
            raise Conflict("url_env: give url or url_env, not both", also=("url",))
        if self.type in needs_url and not (self.url or self.url_env):
            raise Conflict(f"url: required for type {self.type!r} (or url_env, naming the environment variable "
                           "that holds it)", also=("type",))
        if self.url and (problem := url_problem(self.url)):
            raise ValueError(f"url: {problem}")
        if self.type == "statuspage" and self.url and (problem := _feed_not_page(self.url)):
            raise Conflict(f"url: {problem} type 'status_feed'", also=("type",))
        if self.url and urlsplit(self.url).password is not None:
            raise ValueError("url: must not hold a password; secrets come from environment variables")
        for key, var in self.env.items():
            if key not in CREDENTIALS.get(self.type, ()):
                takes = ", ".join(CREDENTIALS.get(self.type, ())) or "no credentials"
                raise Conflict(f"env.{key}: not a credential of type {self.type!r} (it takes {takes})", also=("type",))
            if not ENV_NAME.fullmatch(var):
                raise ValueError(f"env.{key}: must name an environment variable, not hold the secret itself")
        needs_query = {"hackernews", "lemmy", "mastodon", "bluesky"}
        # A blank query passed as given: hackernews and bluesky searched for spaces, mastodon's tag "#" read the
        # tag "", and discourse searched " order:latest" instead of listing its latest topics.
        blank = self.query is not None and not self.query.strip().lstrip("#" if self.type == "mastodon" else "")
        if blank:
            raise ValueError(f"query: must not be blank (got {self.query!r})")
        if self.type in needs_query and not self.query:
            raise Conflict(f"query: required for type {self.type!r}", also=("type",))
        if self.type == "mastodon" and self.query and not _one_hashtag(self.query.strip().lstrip("#")):
            raise ValueError(f"query: a mastodon source reads one hashtag's timeline, and {self.query!r} is not one "
                             "hashtag (letters, digits and _ only: Mastodon drops the rest and reads another tag, "
                             "or answers nothing, at every poll): give one tag, and a source for each further tag")
        if self.type == "reddit" and not (self.url or self.url_env or self.query):
            raise Conflict("query: reddit needs a search query/subreddit or a feed url", also=("type",))

    def __repr__(self) -> str:
        # The url as messages show it: after Poller.resolve it is the URL from url_env, a secret as a whole, and one
        # in feeds.toml may hold a key in its query or user name.
        url = self.url and (shown_url(self.url, secret=True) if self.secret_url else public_url(self.url))
        shown = ", ".join(f"{f.name}={url if f.name == 'url' else getattr(self, f.name)!r}" for f in fields(self))
        return f"{type(self).__name__}({shown})"

    @property
    def secret_url(self) -> bool:
        """Whether the url is a secret as a whole (it comes from ``url_env``): messages, logs and derived links show
        no more than its scheme and host (`miner.urls.shown_url`), as its key may be a path segment."""
        return bool(self.url_env)

    @property
    def stored_url(self) -> str | None:
        """The url as the store keeps it (sources.url): never with a credential the url holds (`public_url`), and for
        a url from the environment only the variable's name, as ``$NAME``."""
        if self.url_env:
            return f"${self.url_env}"
        return public_url(self.url) if self.url else None

"""feeds.toml -> typed, validated, frozen objects. Errors name the key path and the line.

Each stage owns the dataclass of its own section (``[detector]``, ``[classifier]``, ``[alerts]``,
``[collect]``); this module owns the top level, services, sources and groups, and cross-checks between them.
"""

from __future__ import annotations

import codecs
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from miner.config_lines import given_twice, locate, unclosed
from miner.env_names import ENV_NAME
from miner.errors import ConfigError
from miner.server_settings import ServerSettings
from miner.settings import SettingsError, build, guess, key_homes, misplaced
from miner.spelling import term_key
from miner.store_settings import StoreSettings
from miner.urls import control_char, public_url, shown_url, url_problem

if TYPE_CHECKING:
    from miner.alerts.settings import AlertSettings
    from miner.classify.settings import ClassifierSettings
    from miner.collectors.settings import CollectSettings
    from miner.detect.params import DetectorParams

SourceType = Literal[
    "rss", "reddit", "hackernews", "discourse", "lemmy", "mastodon", "bluesky", "statuspage", "status_feed"
]


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

    def validate(self) -> None:
        if not self.name.strip():
            raise ValueError("name: must not be empty")
        for key, value in (("name", self.name), *((f"aliases[{j}]", a) for j, a in enumerate(self.aliases)),
                           ("provider", self.provider or "")):
            if found := control_char(value):  # an alias at its own key: a list over several lines gives its line
                raise SettingsError(key, f"must not contain control or format characters (found {found} in {value!r})")
        if self.provider is not None and not self.provider.strip():
            # "" was no provider, but "  " one that two such services shared: grouped as "   platform outage".
            raise ValueError(f"provider: must not be blank (got {self.provider!r}; leave it out for no provider)")
        for j, alias in enumerate(self.aliases):
            if not term_key(alias):  # matching would skip it: the operator meant something else
                raise SettingsError(f"aliases[{j}]", f"must not be empty (got {alias!r})")
        if self.status_page is not None and not re.match(r"https?://", self.status_page):
            raise ValueError("status_page: must start with http:// or https:// (the page's base URL)")
        if self.status_page is not None and (problem := url_problem(self.status_page)):
            raise ValueError(f"status_page: {problem}")
        if self.status_page is not None and (problem := _feed_not_page(self.status_page)):
            raise ValueError(f"status_page: {problem} a [[sources]] entry of type 'status_feed'")


def _feed_not_page(url: str) -> str | None:
    """A statuspage source polls <url>/api/v2/incidents.json: a feed's URL there failed every poll with a 404."""
    if re.search(r"\.(atom|rss|xml)$", urlsplit(url).path.rstrip("/"), re.IGNORECASE):
        return "is a status feed (RSS/Atom), not a Statuspage page or its .json API: give it"
    return None


# The credentials each source type reads, by name in `env`; the values name environment variables.
CREDENTIALS: Mapping[str, tuple[str, ...]] = {"reddit": ("client_id", "client_secret"),
                                              "bluesky": ("identifier", "password")}
MIN_INTERVAL = 10
MAX_INTERVAL = 7 * 86400  # beyond a week a source is better disabled; larger values overflow datetimes
MAX_TIMEOUT = 600.0
MAX_SPAN = 366 * 86400  # seconds: the longest wait, window or age a setting may give (one year)
_UNITS = {1: "seconds", 60: "minutes", 3600: "hours", 86400: "days"}
MAX_CONFIG_BYTES = 16 * 2**20
# A feed's entries read per poll (SourceConfig.max_entries). Feeds list tens, a busy forum's a few hundred; 5 MB of
# small entries is 90,000, which took feedparser 15 s of CPU and stored a site's whole history at its first poll.
DEFAULT_MAX_ENTRIES = 500
MAX_ENTRIES = 100_000


def check_spans(settings: object, units: Mapping[str, int]) -> None:
    """Each setting named in ``units`` (its unit in seconds) is at most MAX_SPAN.

    TOML takes 1e300 or 99999999999 happily; as a timedelta from now they overflow a datetime, in the middle of a
    job at run time, not in `config check`.
    """
    for name, unit in units.items():
        value = getattr(settings, name)
        if value is not None and value * unit > MAX_SPAN:
            raise ValueError(f"{name}: must be at most {MAX_SPAN // unit} {_UNITS[unit]} (a year)")


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
            raise ValueError(f"max_entries: only for the feeds of types 'rss' and 'reddit', not {self.type!r}")
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
            raise ValueError("url_env: give url or url_env, not both")
        if self.type in needs_url and not (self.url or self.url_env):
            raise ValueError(f"url: required for type {self.type!r} (or url_env, naming the environment variable "
                             "that holds it)")
        if self.url and (problem := url_problem(self.url)):
            raise ValueError(f"url: {problem}")
        if self.type == "statuspage" and self.url and (problem := _feed_not_page(self.url)):
            raise ValueError(f"url: {problem} type 'status_feed'")
        if self.url and urlsplit(self.url).password is not None:
            raise ValueError("url: must not hold a password; secrets come from environment variables")
        for key, var in self.env.items():
            if key not in CREDENTIALS.get(self.type, ()):
                takes = ", ".join(CREDENTIALS.get(self.type, ())) or "no credentials"
                raise ValueError(f"env.{key}: not a credential of type {self.type!r} (it takes {takes})")
            if not ENV_NAME.fullmatch(var):
                raise ValueError(f"env.{key}: must name an environment variable, not hold the secret itself")
        needs_query = {"hackernews", "lemmy", "mastodon", "bluesky"}
        # A blank query passed as given: hackernews and bluesky searched for spaces, mastodon's tag "#" read the
        # tag "", and discourse searched " order:latest" instead of listing its latest topics.
        blank = self.query is not None and not self.query.strip().lstrip("#" if self.type == "mastodon" else "")
        if blank:
            raise ValueError(f"query: must not be blank (got {self.query!r})")
        if self.type in needs_query and not self.query:
            raise ValueError(f"query: required for type {self.type!r}")
        if self.type == "reddit" and not (self.url or self.url_env or self.query):
            raise ValueError("query: reddit needs a search query/subreddit or a feed url")

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


@dataclass(frozen=True)
class GroupConfig:
    """Services that fail together (one provider, one cloud): simultaneous openings become one incident."""

    name: str
    services: tuple[str, ...]
    cause: str = ""  # the likely common cause to show, e.g. "Meta platform outage"

    def validate(self) -> None:
        # The name is the subject's "(Meta)" of a grouped alert: blank it read "common cause across ", and a line
        # break in it failed every email of the group's incidents when the header was built.
        if not self.name.strip():
            raise ValueError(f"name: must not be blank (got {self.name!r})")
        for key in ("name", "cause"):
            if found := control_char(getattr(self, key)):
                raise ValueError(f"{key}: must not contain control or format characters (found {found})")


def _stage_settings() -> dict[str, Any]:
    """Each stage's settings class. Imported on use: stage packages import this module, so importing them
    at the top would be circular."""
    from miner.alerts.settings import AlertSettings
    from miner.classify.settings import ClassifierSettings
    from miner.collectors.settings import CollectSettings
    from miner.detect.params import DetectorParams

    return {"AlertSettings": AlertSettings, "ClassifierSettings": ClassifierSettings,
            "CollectSettings": CollectSettings, "DetectorParams": DetectorParams}


def _stage_default(name: str) -> Any:
    return field(default_factory=lambda: _stage_settings()[name]())


@dataclass(frozen=True)
class Config:
    services: tuple[ServiceConfig, ...] = ()
    sources: tuple[SourceConfig, ...] = ()
    groups: tuple[GroupConfig, ...] = ()
    store: StoreSettings = field(default_factory=StoreSettings)
    collect: CollectSettings = _stage_default("CollectSettings")  # noqa: RUF009
    classifier: ClassifierSettings = _stage_default("ClassifierSettings")  # noqa: RUF009
    detector: DetectorParams = _stage_default("DetectorParams")  # noqa: RUF009
    alerts: AlertSettings = _stage_default("AlertSettings")  # noqa: RUF009
    server: ServerSettings = field(default_factory=ServerSettings)
    path: str = field(default="", compare=False, metadata={"setting": False})  # the file it was read from

    def service(self, name: str) -> ServiceConfig | None:
        return next((s for s in self.services if s.name == name), None)

    def source(self, name: str) -> SourceConfig | None:
        return next((s for s in self.sources if s.name == name), None)

    @property
    def polled_sources(self) -> tuple[str, ...]:
        """Names of the enabled sources. Failures of removed or disabled ones are history, not news, so the
        digest's "failing sources" only looks at these."""
        return tuple(s.name for s in self.sources if s.enabled)


def default_config_path() -> Path:
    """./feeds.toml, the usual place. Commands that can run without one (the demo) pass their own."""
    return Path("feeds.toml")


def bundled_path(name: str) -> Path:
    """A file shipped in ``miner/defaults`` (e.g. the demo's config)."""
    return Path(str(resources.files("miner") / "defaults" / name))


def load_config(path: Path | str | None = None) -> Config:
    """Read, validate and freeze a feeds.toml. Raises ConfigError naming the key and line."""
    cfg_path = Path(path) if path is not None else default_config_path()
    try:
        with cfg_path.open("rb") as file:  # at most one byte past the limit: /dev/zero was read until memory ran out
            raw = file.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(f"larger than {MAX_CONFIG_BYTES // 2**20} MiB: not a feeds.toml (one watching a "
                              "thousand sources is well under 1 MiB)", path=str(cfg_path))
        raw = raw.removeprefix(codecs.BOM_UTF8)  # Windows editors may start the file with a BOM
    except FileNotFoundError:
        hint = " (pass --config PATH or set MINER_CONFIG)" if path is None else ""
        raise ConfigError(f"file not found{hint}", path=str(cfg_path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc}", path=str(cfg_path)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:  # e.g. a name with an accent saved as Latin-1 or Windows-1252
        raise ConfigError(f"not UTF-8: byte 0x{raw[exc.start]:02x} cannot be read (save the file as UTF-8)",
                          path=str(cfg_path), line=raw[:exc.start].count(b"\n") + 1) from None
    return parse_config(text, str(cfg_path))


def parse_config(text: str, path: str = "feeds.toml") -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        line, hint = int(match.group(1)) if match else None, ""
        # "at end of document": something opened is never closed, and the line to look at is where it opens.
        if line is None and (line := unclosed(text)) is not None:
            hint = f"; the string, array or inline table that starts on line {line} is not closed"
        elif line is not None:
            lines = text.split("\n")  # as tomllib counts lines (splitlines would split at U+2028 too)
            hint = given_twice(str(exc), lines[line - 1] if line <= len(lines) else "")
        raise ConfigError(f"not valid TOML: {exc}{hint}", path=path, line=line) from None
    except RecursionError:  # tomllib recurses per level of [[[...]]] or {a={b=...}}
        raise ConfigError("not valid TOML: arrays or inline tables nested too deeply", path=path) from None
    try:
        config = build(Config, data, localns=_stage_settings())
        written = len(config.sources)
        config = _with_status_sources(config)
        _cross_check(config, written)
        config = _with_declared_service_names(config)
        # A silence of a provider mutes the services the config gives it now, also those given it since.
        # Alerts grouped by provider group a service without one with its first [[groups]] entry's services.
        service_groups: dict[str, str] = {}
        for grp in config.groups:
            for name in grp.services:
                service_groups.setdefault(name.lower(), grp.name)
        config = replace(config, alerts=replace(config.alerts, providers={
            svc.name.lower(): svc.provider for svc in config.services if svc.provider}, service_groups=service_groups))
    except SettingsError as exc:
        exc = misplaced(exc, key_homes(Config, _stage_settings()))
        raise ConfigError(exc.message, path=path, key=exc.key, line=locate(text, exc.key)) from None
    return replace(config, path=path)


def _with_status_sources(config: Config) -> Config:
    """A service's `status_page` is shorthand for a statuspage source watching that service."""
    extra = tuple(
        SourceConfig(name=f"status:{_slug(s.name)}", type="statuspage", url=s.status_page, services=(s.name,),
                     interval=300)
        for s in config.services
        if s.status_page and not any(src.type == "statuspage" and src.url and _same_page(src.url, s.status_page)
                                     for src in config.sources)
    )
    return replace(config, sources=config.sources + extra) if extra else config


def _same_page(a: str, b: str) -> bool:
    """Whether two Statuspage base URLs are one page: `https://WWW.githubstatus.com/` is `https://www.githubstatus.com`,
    which added a second source polling it, storing each of its incidents twice."""
    def key(url: str) -> tuple[str, str, str]:
        parts = urlsplit(url)
        return parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/")
    return key(a) == key(b)


def _with_declared_service_names(config: Config) -> Config:
    """Sources' services spelt as the services declare them (names match in any case): the status-page incidents
    a source stores carry that name, and the store looks them up by the service's own."""
    names = {svc.name.lower(): svc.name for svc in config.services}
    sources = tuple(
        replace(src, services=tuple(names.get(s.lower(), s) for s in src.services)) for src in config.sources
    )
    return replace(config, sources=sources) if sources != config.sources else config


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _cross_check(config: Config, written: int) -> None:
    """``written``: how many of ``config.sources`` the file lists; the rest come from services' status_page."""
    names: dict[str, int] = {}
    for i, svc in enumerate(config.services):
        if svc.name.lower() in names:
            raise SettingsError(f"services[{i}].name", f"duplicate service {svc.name!r}")
        names[svc.name.lower()] = i
    # One term for two services would count every post naming it for whichever was declared first only.
    terms: dict[str, tuple[int, str]] = {}
    for i, svc in enumerate(config.services):
        for key, term in ((f"services[{i}].name", svc.name),
                          *((f"services[{i}].aliases[{j}]", alias) for j, alias in enumerate(svc.aliases))):
            first, first_key = terms.setdefault(term_key(term), (i, key))
            if first != i:
                raise SettingsError(key, f"{term!r} also names service {config.services[first].name!r} ({first_key}): "
                                         "a post naming it would count for one of them only")
    declared = [svc.name for svc in config.services]  # a name that is none of them may be a typo of one
    seen: set[str] = set()
    for i, src in enumerate(config.sources):
        if src.name in seen and i >= written:
            # There is no sources[i] in the file to point at: the status_page that made it is.
            raise SettingsError(f"services[{names[src.services[0].lower()]}].status_page",
                                f"its source would be named {src.name!r}, which another source has; add a "
                                "[[sources]] entry of type 'statuspage' with this url and a name of your own")
        if src.name in seen:
            raise SettingsError(f"sources[{i}].name", f"duplicate source {src.name!r}")
        seen.add(src.name)
        for j, svc_name in enumerate(src.services):
            if svc_name.lower() not in names:
                raise SettingsError(f"sources[{i}].services[{j}]",
                                    f"unknown service {svc_name!r}{guess(svc_name, declared)}")
    groups: set[str] = set()
    for i, grp in enumerate(config.groups):
        if grp.name.lower() in groups:  # two "Meta" groups' incidents read as one group's in alerts
            raise SettingsError(f"groups[{i}].name", f"duplicate group {grp.name!r}")
        groups.add(grp.name.lower())
        for j, svc_name in enumerate(grp.services):
            if svc_name.lower() not in names:
                raise SettingsError(f"groups[{i}].services[{j}]",
                                    f"unknown service {svc_name!r}{guess(svc_name, declared)}")
        need = config.detector.group_min_services
        if len({svc_name.lower() for svc_name in grp.services}) < need:  # it could never open a grouped incident
            raise SettingsError(f"groups[{i}].services", f"a group needs at least {need} different services "
                                                          "(detector.group_min_services) to ever open")
    _check_bucket_retention(config)
    route_check = getattr(config.alerts, "check_services", None)
    if callable(route_check):
        route_check(declared)


def _check_bucket_retention(config: Config) -> None:
    """Bucket rows are kept as long as the detector may read them: it steps the buckets since its last one, up to
    detector.max_fill_hours back (plus the bucket in progress and the one before it); older gaps are skipped."""
    days = config.store.bucket_retention_days
    params = config.detector
    need = timedelta(hours=params.max_fill_hours, minutes=2 * params.bucket_minutes)
    if days is not None and timedelta(days=days) < need:
        raise SettingsError("store.bucket_retention_days",
                            f"must cover detector.max_fill_hours ({params.max_fill_hours:g} h) and two buckets "
                            f"({math.ceil(need / timedelta(days=1))} days): the detector reads that far back")

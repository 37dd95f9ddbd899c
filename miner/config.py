"""feeds.toml -> typed, validated, frozen objects. Errors name the key path and the line.

Each stage owns the dataclass of its own section (``[detector]``, ``[classifier]``, ``[alerts]``,
``[collect]``), `source_settings.py` the services and sources; this module owns the top level and groups, and the
cross-checks between them.
"""

from __future__ import annotations

import codecs
import hashlib
import math
import re
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from miner.config_lines import given_twice, locate, unclosed
from miner.errors import ConfigError
from miner.server_settings import ServerSettings
from miner.settings import SettingsError, build, key_homes, misplaced, unknown_service
from miner.source_identity import check_same_fetch
from miner.source_identity import page_key as _page_key
from miner.source_settings import STATUS_TYPES
from miner.source_settings import ServiceConfig as ServiceConfig
from miner.source_settings import SourceConfig as SourceConfig
from miner.spelling import term_key
from miner.store_settings import StoreSettings
from miner.urls import control_char

if TYPE_CHECKING:
    from miner.alerts.settings import AlertSettings
    from miner.classify.settings import ClassifierSettings
    from miner.collectors.settings import CollectSettings
    from miner.detect.params import DetectorParams

MAX_SPAN = 366 * 86400  # seconds: the longest wait, window or age a setting may give (one year)
_UNITS = {1: "seconds", 60: "minutes", 3600: "hours", 86400: "days"}
MAX_CONFIG_BYTES = 16 * 2**20


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
            arrays = {t[2:-2] for tables in key_homes(Config, _stage_settings()).values() for t in tables
                      if t.startswith("[[")}  # sources, alerts.routes, ...: what a [[...]] header may add to
            hint = given_twice(str(exc), lines[line - 1] if line <= len(lines) else "", lines[:line - 1], arrays)
        raise ConfigError(f"not valid TOML: {exc}{hint}", path=path, line=line) from None
    except RecursionError:  # tomllib recurses per level of [[[...]]] or {a={b=...}}
        raise ConfigError("not valid TOML: arrays or inline tables nested too deeply", path=path) from None
    except ValueError:  # int() of a number over sys.get_int_max_str_digits() digits: not a TOMLDecodeError
        most = sys.get_int_max_str_digits()
        long = re.search(f"[0-9_]{{{most + 1},}}", text)
        raise ConfigError(f"not valid TOML: a number of more than {most} digits", path=path,
                          line=text.count("\n", 0, long.start()) + 1 if long else None) from None
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
            svc.name.lower(): svc.provider for svc in config.services if svc.provider}, service_groups=service_groups,
            status_pages=frozenset(src.services[0].lower() for src in config.sources
                                   if src.type in STATUS_TYPES and src.services),
            polled_sources=frozenset(config.polled_sources)))
    except SettingsError as exc:
        exc = misplaced(exc, key_homes(Config, _stage_settings()))
        # The other keys of a conflict with their lines: the error's own line is of one key only, and the one to
        # change may be the other (persist_n lowered under persist_k, a group of two under group_min_services = 3).
        line = locate(text, exc.key)
        # Not one on the error's own line (an inline table's): the message already points there.
        others = "".join(f"; {other} is set on line {at}" for other in exc.also
                         if (at := locate(text, other, exact=True)) not in (None, line))
        raise ConfigError(exc.message + others, path=path, key=exc.key, line=line) from None
    return replace(config, path=path)


def _with_status_sources(config: Config) -> Config:
    """A service's `status_page` is shorthand for a statuspage source watching that service."""
    polled = _pages(config.sources)
    extra = tuple(
        SourceConfig(name=f"status:{_slug(s.name)}", type="statuspage", url=s.status_page, services=(s.name,),
                     interval=300)
        for s in config.services
        if s.status_page and _page_key(s.status_page) not in polled
    )
    return replace(config, sources=config.sources + extra) if extra else config


def _pages(sources: tuple[SourceConfig, ...]) -> dict[tuple[str, str, str], SourceConfig]:
    """The statuspage sources by their page (the first of each), read once: each service's status_page compared
    with every source took `config check` (and each reload) half a minute for 2,000 of each, two for 10,000 sources."""
    pages: dict[tuple[str, str, str], SourceConfig] = {}
    for src in sources:
        if src.type == "statuspage" and src.url:
            pages.setdefault(_page_key(src.url), src)
    return pages


def _with_declared_service_names(config: Config) -> Config:
    """Sources' services spelt as the services declare them (names match in any case): the status-page incidents
    a source stores carry that name, and the store looks them up by the service's own."""
    names = {svc.name.lower(): svc.name for svc in config.services}
    sources = tuple(
        replace(src, services=tuple(names.get(s.lower(), s) for s in src.services)) for src in config.sources
    )
    return replace(config, sources=sources) if sources != config.sources else config


def _slug(name: str) -> str:
    """The name in lower case, other characters as "-": ASCII letters and digits where it has any (the names of
    sources stored so far), else its letters and digits in any script ("Яндекс" and "ВКонтакте" were both
    "status:"), else a hash of it (a name of punctuation only)."""
    lower = name.lower()
    return (re.sub(r"[^a-z0-9]+", "-", lower).strip("-") or re.sub(r"[\W_]+", "-", lower).strip("-")
            or hashlib.sha256(name.encode()).hexdigest()[:8])


def _cross_check(config: Config, written: int) -> None:
    """``written``: how many of ``config.sources`` the file lists; the rest come from services' status_page."""
    names: dict[str, int] = {}
    for i, svc in enumerate(config.services):
        if svc.name.lower() in names:
            raise SettingsError(f"services[{i}].name", f"duplicate service {svc.name!r}",
                                also=(f"services[{names[svc.name.lower()]}].name",))
        names[svc.name.lower()] = i
    # One term for two services would count every post naming it for whichever was declared first only.
    terms: dict[str, tuple[int, str]] = {}
    for i, svc in enumerate(config.services):
        for key, term in ((f"services[{i}].name", svc.name),
                          *((f"services[{i}].aliases[{j}]", alias) for j, alias in enumerate(svc.aliases))):
            first, first_key = terms.setdefault(term_key(term), (i, key))
            if first != i:
                raise SettingsError(key, f"{term!r} also names service {config.services[first].name!r} ({first_key}): "
                                         "a post naming it would count for one of them only", also=(first_key,))
    pages = _pages(config.sources[:written])
    unsourced: dict[tuple[str, str, str], int] = {}  # a page no [[sources]] entry polls: its first service
    for i, svc in enumerate(config.services):
        # Each would get a source of its own: the page polled twice, each of its incidents stored for both. Before
        # the sources' names: two names of one slug ("slack", "Slack!") were told to add a [[sources]] entry for
        # the page, which the next check refused for the other service.
        if (svc.status_page and _page_key(svc.status_page) not in pages
                and (first := unsourced.setdefault(_page_key(svc.status_page), i)) != i):
            raise SettingsError(f"services[{i}].status_page",
                                f"service {config.services[first].name!r} has this status page too: a status page "
                                "belongs to one service; remove one of them", also=(f"services[{first}].status_page",))
    declared = [svc.name for svc in config.services]  # a name that is none of them may be a typo of one
    seen: dict[str, int] = {}
    for i, src in enumerate(config.sources):
        if src.name in seen and i >= written:
            # There is no sources[i] in the file to point at: the status_page that made it is.
            other = seen[src.name]
            raise SettingsError(f"services[{names[src.services[0].lower()]}].status_page",
                                f"its source would be named {src.name!r}, which another source has; add a "
                                "[[sources]] entry of type 'statuspage' with this url and a name of your own",
                                also=(f"sources[{other}].name" if other < written else
                                      f"services[{names[config.sources[other].services[0].lower()]}].status_page",))
        if src.name in seen:
            raise SettingsError(f"sources[{i}].name", f"duplicate source {src.name!r}",
                                also=(f"sources[{seen[src.name]}].name",))
        seen[src.name] = i
        for j, svc_name in enumerate(src.services):
            if svc_name.lower() not in names:
                raise SettingsError(f"sources[{i}].services[{j}]",
                                    unknown_service(svc_name, declared))
        # A status page's incidents are stored for its source's first service: none was stored for no service, and
        # those of a second one were never its.
        if src.type in STATUS_TYPES and i < written and len(src.services) != 1:
            raise SettingsError(f"sources[{i}].services", "a status page's incidents belong to one service: list "
                                f"exactly one (got {len(src.services)})", also=(f"sources[{i}].type",))
    check_same_fetch(config.sources[:written])
    for i, svc in enumerate(config.services):
        page = pages.get(_page_key(svc.status_page)) if svc.status_page else None
        # The [[sources]] entry stands in for the status_page (no second source polls the page): for this service
        # only if it is this service's page.
        if page is not None and page.services[0].lower() != svc.name.lower():
            raise SettingsError(f"services[{i}].status_page",
                                f"source {page.name!r} polls this page for service {page.services[0]!r}, so "
                                f"{svc.name!r} would get none of its incidents: a status page belongs to one "
                                "service; remove this status_page or that source",
                                also=(f"sources[{config.sources.index(page)}].url",))
    groups: dict[str, int] = {}
    for i, grp in enumerate(config.groups):
        if grp.name.lower() in groups:  # two "Meta" groups' incidents read as one group's in alerts
            raise SettingsError(f"groups[{i}].name", f"duplicate group {grp.name!r}",
                                also=(f"groups[{groups[grp.name.lower()]}].name",))
        groups[grp.name.lower()] = i
        for j, svc_name in enumerate(grp.services):
            if svc_name.lower() not in names:
                raise SettingsError(f"groups[{i}].services[{j}]",
                                    unknown_service(svc_name, declared))
        need = config.detector.group_min_services
        if len({svc_name.lower() for svc_name in grp.services}) < need:  # it could never open a grouped incident
            raise SettingsError(f"groups[{i}].services", f"a group needs at least {need} different services "
                                                          "(detector.group_min_services) to ever open",
                                also=("detector.group_min_services",))
    _check_bucket_retention(config)
    _check_stale_after(config)
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
                            f"({math.ceil(need / timedelta(days=1))} days): the detector reads that far back",
                            also=("detector.max_fill_hours", "detector.bucket_minutes"))


def _check_stale_after(config: Config) -> None:
    """An opening is dated at its bucket's end, but the detector scores the bucket only once its sources have polled
    since, detector.settle_minutes after its end at most, and the process and alerts jobs plan it within a minute
    of that: a stale_after shorter flagged openings seen in time as seen late (and, resolved by then, stale)."""
    from miner.alerts.settings import MIN_STALE_AFTER

    need = config.detector.settle_minutes * 60 + MIN_STALE_AFTER
    if config.alerts.enabled and config.alerts.stale_after < need:
        if config.alerts.stale_after == type(config.alerts).stale_after:
            # The file raised settle_minutes, not stale_after: that key and its line, where the error named
            # alerts.stale_after, a key of a table the file may not have, without a line.
            most = (config.alerts.stale_after - MIN_STALE_AFTER) / 60
            raise SettingsError("detector.settle_minutes",
                                f"must be at most {most:g} minutes with alerts.stale_after at its default, "
                                f"{config.alerts.stale_after:g} seconds (an opening is planned up to settle_minutes "
                                f"plus {MIN_STALE_AFTER:.0f} s after its bucket ended), got "
                                f"{config.detector.settle_minutes:g}: raise alerts.stale_after too",
                                also=("alerts.stale_after",))
        raise SettingsError("alerts.stale_after",
                            f"must be at least {need:.0f} seconds (detector.settle_minutes, "
                            f"{config.detector.settle_minutes:g} min, plus {MIN_STALE_AFTER:.0f} s): an opening is "
                            "planned up to that long after its bucket ended, so less flags openings seen in time "
                            "as seen late", also=("detector.settle_minutes",))

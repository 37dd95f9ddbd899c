"""The `[alerts]` table of feeds.toml: routes, maintenance windows and delivery timing; the SMTP server and webhooks
are in `channel_settings.py`.

"""

from __future__ import annotations

import email.policy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.errors import MessageError, NonASCIILocalPartDefect, ObsoleteHeaderDefect
from email.headerregistry import AddressHeader, BaseHeader
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from miner.alerts.channel_settings import NAME
from miner.alerts.channel_settings import PAGERDUTY_URL as PAGERDUTY_URL
from miner.alerts.channel_settings import SmtpSettings as SmtpSettings
from miner.alerts.channel_settings import WebhookSettings as WebhookSettings
from miner.alerts.text import idna_address, safe_url
from miner.config import check_spans
from miner.settings import Conflict, SettingsError, guess, unknown_service
from miner.timeutil import check_timezone, parse_iso, skipped_text
from miner.urls import control_char

MIN_STALE_AFTER = 60.0
_EMAIL = re.compile(r"[^@\s<>]+@[^@\s<>]+")
# What one group of a route's alerts is: its group_wait and group_interval run per route, channel and group.
GroupBy = Literal["provider", "service", "route"]


def one_address(value: str) -> bool:
    """Whether mail headers read ``value`` as one address with a domain, as written: an unquoted comma in a name
    (``Miner, Alerts <miner@example.org>``) makes two, the first an envelope sender ``Miner`` without a domain."""
    try:
        header = email.policy.default.header_factory("To", value)
    except (ValueError, IndexError, MessageError):  # IndexError: the parser's, for "name@"
        return False
    if not (isinstance(header, AddressHeader) and isinstance(header, BaseHeader)):
        return False
    groups, addresses = header.groups, header.addresses
    if len(groups) != 1 or groups[0].display_name is not None or len(addresses) != 1 or not addresses[0].domain:
        return False
    # A non-ASCII local part is an internationalized address (smtplib sends it with SMTPUTF8), and a period in a
    # name ("J. Smith") obsolete syntax every reader takes: neither is a typo.
    return all(isinstance(defect, (NonASCIILocalPartDefect, ObsoleteHeaderDefect)) for defect in header.defects)


def check_header(key: str, value: str) -> None:
    """Values that go into mail headers: CR/LF would split the header, so the message could never be built."""
    if found := control_char(value):
        raise ValueError(f"{key}: must not contain control or format characters such as a line break (found {found}): "
                         "it goes into an email header")


def check_cron(expr: str) -> None:
    from miner.alerts.schedule import next_fire, parse_cron

    parse_cron(expr, "UTC")
    # A date no month has (30 2, 31 4) parses, then the digest or window silently never happens.
    if next_fire(expr, "UTC", datetime(2000, 1, 1, tzinfo=UTC)) is None:
        raise ValueError(f"cron {expr!r} never fires: no month has that day")


@dataclass(frozen=True)
class RouteSettings:
    """Who hears about which services, how, and when their digest goes out."""

    name: str
    email: tuple[str, ...] = ()  # recipients of alerts and digests
    webhooks: tuple[str, ...] = ()  # names of [[alerts.webhooks]] for immediate alerts
    services: tuple[str, ...] = ()  # empty: every service
    immediate: bool = True  # alert when an incident opens
    notify_resolved: bool = True  # short notice when it resolves
    digest: str = ""  # cron (5 fields: minute hour day month weekday); empty: no digest
    timezone: str = "UTC"  # the digest schedule's time zone
    digest_when_quiet: bool = False  # send a digest even with nothing open, recent or failing
    list_unsubscribe: str = ""  # mailto: or https: URL for the digest's List-Unsubscribe header
    group_wait: float | None = None  # seconds; overrides [alerts].group_wait
    repeat_interval: float | None = None  # seconds; overrides [alerts].repeat_interval
    group_interval: float | None = None  # seconds; overrides [alerts].group_interval
    group_by: GroupBy | None = None  # overrides [alerts].group_by

    def validate(self) -> None:
        if not NAME.fullmatch(self.name):
            raise ValueError("name: use letters, digits and . _ - only")
        for i, addr in enumerate(self.email):
            if not _EMAIL.fullmatch(addr) or control_char(addr) or not one_address(addr):
                # At the entry's key, so that an array over several lines gives the entry's own line.
                raise SettingsError(f"email[{i}]", f"{addr!r} is not an email address")
        if not self.email and not self.webhooks:
            raise ValueError("email: a route needs at least one email recipient or webhook")
        self._check_listed_once()
        # Without immediate alerts a route sends only digests (a resolve notice follows an alert it sent): such a
        # route without a digest sent nothing at all, and its webhooks never anything, without a word.
        if not self.immediate and not self.digest:
            raise ValueError("immediate: a route with immediate = false sends only digests, and this one has no "
                             "digest: it would never send anything")
        if not self.immediate and self.webhooks:
            raise Conflict("webhooks: a route with immediate = false sends only digests, which are emailed: its "
                           "webhooks would never be used", also=("immediate",))
        check_timezone(self.timezone)
        if self.digest:
            try:
                check_cron(self.digest)
            except ValueError as exc:
                raise ValueError(f"digest: {exc}") from None
            if not self.email:
                raise ValueError("digest: digests are emailed; add an email recipient")
        check_header("list_unsubscribe", self.list_unsubscribe)
        if self.list_unsubscribe and not re.match(r"(mailto:|https://)", self.list_unsubscribe):
            raise ValueError("list_unsubscribe: must start with mailto: or https://")
        # The header goes to every recipient of the digest: a user:password@ in it was mailed to all of them.
        if self.list_unsubscribe.startswith("https://") and "@" in urlsplit(self.list_unsubscribe).netloc:
            raise ValueError("list_unsubscribe: must not hold a user name or password (every recipient sees the URL)")
        for key in ("group_wait", "repeat_interval", "group_interval"):
            value = getattr(self, key)
            if value is not None and value < 0:
                raise ValueError(f"{key}: must not be negative")
        check_spans(self, {"group_wait": 1, "repeat_interval": 1, "group_interval": 1})

    def _check_listed_once(self) -> None:
        """A recipient or webhook listed twice in a route is a copy-paste slip (for another one, maybe), and an address
        may get each message twice: an error at the second, naming the first one's line, as a name given twice is.
        A domain is the same in any case and in its IDNA form; the part before @ may not be (RFC 5321 2.4), so
        ``Ops@`` and ``ops@`` are two."""
        seen: dict[str, int] = {}
        for i, addr in enumerate(self.email):
            local, _, domain = idna_address(addr).rpartition("@")
            first = seen.setdefault(f"{local}@{domain.lower()}", i)
            if first != i:
                same = "" if self.email[first] == addr else f" (as {self.email[first]!r})"
                raise SettingsError(f"email[{i}]", f"{addr!r} is listed twice{same}: list each recipient once",
                                    also=(f"email[{first}]",))
        for i, hook in enumerate(self.webhooks):
            if hook in self.webhooks[:i]:
                raise SettingsError(f"webhooks[{i}]", f"webhook {hook!r} is listed twice: list each webhook once",
                                    also=(f"webhooks[{self.webhooks.index(hook)}]",))

    def matches(self, service: str) -> bool:
        return not self.services or service.lower() in {s.lower() for s in self.services}


@dataclass(frozen=True)
class MaintenanceWindow:
    """A planned window for one service: one-off (start + end) or recurring (cron + duration_minutes)."""

    service: str
    start: str = ""  # ISO 8601, in `timezone` unless it carries an offset
    end: str = ""
    cron: str = ""  # recurring: when each window starts, in `timezone`
    duration_minutes: float = 60.0
    timezone: str = "UTC"
    comment: str = ""

    def validate(self) -> None:
        check_timezone(self.timezone)
        if self.cron:
            if self.start or self.end:
                raise Conflict("cron: a window is either recurring (cron) or one-off (start/end), not both",
                               also=("start", "end"))
            try:
                check_cron(self.cron)
            except ValueError as exc:
                raise ValueError(f"cron: {exc}") from None
            if self.duration_minutes <= 0:
                raise ValueError("duration_minutes: must be positive")
            check_spans(self, {"duration_minutes": 60})
            return
        if not (self.start and self.end):
            # At the one the file gives, with its line: an end without a start was named start, at the header's line.
            given = "end" if self.end else "start"
            raise ValueError(f"{given}: a one-off window needs start and end (or give cron + duration_minutes)")
        for key in ("start", "end"):
            try:
                self._bound(key)
                skipped = skipped_text(getattr(self, key), ZoneInfo(self.timezone))
            except ValueError:
                raise ValueError(f"{key}: not an ISO 8601 time: {getattr(self, key)!r}") from None
            except OverflowError:
                raise ValueError(f"{key}: out of range: {getattr(self, key)!r}") from None
            if skipped:
                raise ValueError(f"{key}: {skipped}")
        if self._bound("end") <= self._bound("start"):
            raise ValueError("end: must be after start")

    def _bound(self, key: str) -> datetime:
        # Read in the window's own zone, as its cron is: "22:00" in a window with timezone = "Europe/Berlin" was
        # 22:00 UTC, an hour or two off the planned maintenance.
        return parse_iso(getattr(self, key), ZoneInfo(self.timezone))

    def active(self, at: datetime) -> bool:
        if not self.cron:
            return self._bound("start") <= at < self._bound("end")
        from miner.alerts.schedule import previous_fire

        began = previous_fire(self.cron, self.timezone, at, lookback=timedelta(minutes=self.duration_minutes))
        return began is not None and at < began + timedelta(minutes=self.duration_minutes)

    def span(self, at: datetime) -> tuple[datetime, datetime] | None:
        """The window in effect at ``at`` or, with none, the next one (a one-off's, even past); None: none to come."""
        if not self.cron:
            return self._bound("start"), self._bound("end")
        from miner.alerts.schedule import next_fire, previous_fire

        length = timedelta(minutes=self.duration_minutes)
        began = previous_fire(self.cron, self.timezone, at, lookback=length)
        if began is None or at >= began + length:
            began = next_fire(self.cron, self.timezone, at)
        return None if began is None else (began, began + length)


@dataclass(frozen=True)
class AlertSettings:
    enabled: bool = True
    from_addr: str = "miner <miner@localhost>"
    subject_prefix: str = "[miner]"
    dashboard_url: str = ""  # optional link shown in emails (your miner's status page or datasette)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    webhooks: tuple[WebhookSettings, ...] = ()
    routes: tuple[RouteSettings, ...] = ()
    maintenance: tuple[MaintenanceWindow, ...] = ()
    group_wait: float = 30.0  # seconds to hold the first alert of a batch so simultaneous openings go together
    repeat_interval: float = 4 * 3600.0  # seconds before a still-open incident is alerted again; 0 = never
    # Seconds after a message on a route and channel before the next one of its kind: the openings of an outage
    # spreading over detector buckets go out together. Three 5-minute buckets (docs/alerts.md); 0 = no wait.
    group_interval: float = 900.0
    # Which alerts of a route share group_wait and group_interval: those about services of one provider (a service
    # without one is a group of its own), so an unrelated outage is not held back by the last message (alerts.md).
    group_by: GroupBy = "provider"
    stale_after: float = 3600.0  # an opening older than this (seconds) when first seen is alerted only if still open
    # A 'sending' claim older than this is presumed crashed and retried. It must outlast the slowest send, which
    # smtp.timeout bounds per command (30 s x (9 + recipients)): 600 s covers a route of up to 11 recipients at the
    # defaults; a PagerDuty message, one event per incident, renews its claim before each event. The cost is a send
    # whose worker crashed waits that long to be retried (docs/alerts.md).
    lease_seconds: float = 600.0
    retry_base: float = 30.0  # seconds before the first retry; doubles per attempt, with jitter
    retry_max: float = 1800.0  # longest wait between retries
    # Seconds after planning when a still-failing message is marked failed, once it has failed 10 times (retry.py)
    give_up_after: float = 72 * 3600.0
    max_samples: int = 5  # sample posts per incident in emails (3-5 reads well)
    chart_hours: float = 12.0  # history before an incident's opening shown in its chart
    # Each service's provider (lower-case service name -> provider as [[services]] spells it), for silences of a
    # provider; filled in by the config loader from [[services]], never read from [alerts].
    providers: Mapping[str, str] = field(default_factory=dict, compare=False, metadata={"setting": False})
    # Lower-case service name -> the first [[groups]] entry listing it, for group_by = "provider" of a service
    # without a provider; filled in by the config loader too.
    service_groups: Mapping[str, str] = field(default_factory=dict, compare=False, metadata={"setting": False})
    # Lower-case names of the services a status page source watches (statuspage, status_feed), filled in by the
    # config loader: only of those is "nothing on the status page yet" news. None (settings made without a config):
    # every service.
    status_pages: frozenset[str] | None = field(default=None, compare=False, metadata={"setting": False})
    # The config's enabled sources (Config.polled_sources), filled in by the config loader: a provider incident of a
    # source since removed is no provider's word on an outage now (provider_ongoing). None: any source.
    polled_sources: frozenset[str] | None = field(default=None, compare=False, metadata={"setting": False})

    def validate(self) -> None:
        check_header("from_addr", self.from_addr)
        check_header("subject_prefix", self.subject_prefix)
        # The emails leave out a link that is not a plain http(s) URL: refused here, it is not silently missing.
        if self.dashboard_url and safe_url(self.dashboard_url) != self.dashboard_url:
            raise ValueError("dashboard_url: must be an http:// or https:// URL with a host, without spaces, quotes or "
                             "control characters (emails leave out any other link)")
        if not one_address(self.from_addr):
            raise ValueError(f"from_addr: {self.from_addr!r} is not one email address with an optional name, such as "
                             "'miner <miner@example.org>' (a name holding a comma goes in double quotes)")
        # Errors about one entry name its key path, so that `config check` can give its line.
        names = [w.name for w in self.webhooks]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise SettingsError(f"webhooks[{i}].name", f"duplicate webhook name {name!r}",
                                    also=(f"webhooks[{names.index(name)}].name",))
        routes = [r.name for r in self.routes]
        for i, name in enumerate(routes):
            if name in routes[:i]:
                raise SettingsError(f"routes[{i}].name", f"duplicate route name {name!r}",
                                    also=(f"routes[{routes.index(name)}].name",))
        for i, route in enumerate(self.routes):
            for j, webhook in enumerate(route.webhooks):
                if webhook not in names:
                    raise SettingsError(f"routes[{i}].webhooks[{j}]", f"route {route.name!r} names unknown webhook "
                                                                      f"{webhook!r}{guess(webhook, names)}")
        for key in ("group_wait", "repeat_interval", "group_interval"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key}: must not be negative")
        # An opening is dated when its bucket closed and planned once the detector has scored that bucket (after its
        # sources' next polls, detector.settle_minutes at most) and the process and alerts jobs (every 30 s) have
        # run, so it is always some seconds old: 0, read as "no limit" like repeat_interval's, suppressed every
        # alert as stale. This is the floor with settle_minutes 0; the config also refuses less than settle_minutes
        # plus this (miner/config.py), which it cannot check here.
        if self.stale_after < MIN_STALE_AFTER:
            raise ValueError(f"stale_after: must be at least {MIN_STALE_AFTER:.0f} seconds: an opening is often a "
                             "minute old when it is planned, so less suppresses alerts as stale (0: every one)")
        if self.lease_seconds < 10:
            raise ValueError("lease_seconds: must be at least 10")
        # Each names the key at fault: "retry_max: must be >= retry_base > 0" was the message for a retry_base of -1 or
        # one above retry_max too, with the line of the [alerts] header, as retry_max was not in the file. Of two keys
        # that disagree, the one changed from its default is the one the file sets.
        if self.retry_base <= 0:
            raise ValueError(f"retry_base: must be positive, got {self.retry_base:g}")
        if self.retry_base > self.retry_max:
            if self.retry_max == AlertSettings.retry_max:
                raise Conflict(f"retry_base: must be at most retry_max ({self.retry_max:g}), got {self.retry_base:g}",
                               also=("retry_max",))
            raise Conflict(f"retry_max: must be at least retry_base ({self.retry_base:g}), got {self.retry_max:g}",
                           also=("retry_base",))
        if self.give_up_after < self.retry_max:
            if self.give_up_after == AlertSettings.give_up_after:
                raise Conflict(f"retry_max: must be at most give_up_after ({self.give_up_after:g}), got "
                               f"{self.retry_max:g}", also=("give_up_after",))
            raise Conflict(f"give_up_after: must be at least retry_max ({self.retry_max:g}), got "
                           f"{self.give_up_after:g}", also=("retry_max",))
        if not 1 <= self.max_samples <= 10:
            raise ValueError("max_samples: must be 1..10")
        if self.chart_hours <= 0:
            raise ValueError("chart_hours: must be positive")
        check_spans(self, {"group_wait": 1, "repeat_interval": 1, "group_interval": 1, "stale_after": 1,
                           "lease_seconds": 1, "retry_base": 1, "retry_max": 1, "give_up_after": 1,
                           "chart_hours": 3600})

    @property
    def slowest_send(self) -> float:
        """Seconds one notification's send may take at most: a webhook's timeout bounds its whole request, but
        smtp.timeout bounds each SMTP command (greeting, EHLO, STARTTLS and EHLO again, AUTH, MAIL, one RCPT per
        recipient, DATA, the message, QUIT). A send still running when ``lease_seconds`` ends can be sent twice.
        A PagerDuty message is one request per incident, each up to the timeout, but its claim is renewed before each
        (pagerduty_send.send_events): the lease must outlast one of them, not the batch."""
        most_rcpt = max((len(r.email) for r in self.routes), default=0)
        smtp = self.smtp.timeout * (9 + most_rcpt) if most_rcpt else 0.0
        return max([smtp, *(w.timeout for w in self.webhooks)])

    def check_services(self, declared: Sequence[str]) -> None:
        """Called by the config loader with the services' names: routes and windows may only name known ones, in
        any case."""
        services = {name.lower() for name in declared}
        for i, route in enumerate(self.routes):
            for j, svc in enumerate(route.services):
                if svc.lower() not in services:
                    raise SettingsError(f"alerts.routes[{i}].services[{j}]",
                                        unknown_service(svc, declared))
        for i, window in enumerate(self.maintenance):
            if window.service.lower() not in services:
                raise SettingsError(f"alerts.maintenance[{i}].service",
                                    unknown_service(window.service, declared))

    def route(self, name: str) -> RouteSettings | None:
        return next((r for r in self.routes if r.name == name), None)

    def webhook(self, name: str) -> WebhookSettings | None:
        return next((w for w in self.webhooks if w.name == name), None)

    def unsendable(self, route: str, channel: str) -> str | None:
        """Why a message planned for ``route`` and ``channel`` (``email``, ``webhook:NAME``) can no longer go:
        feeds.toml changed since, and it is never sent elsewhere (None: it can go). The dispatcher fails such a
        message, and `miner outbox retry` refuses to queue it again, which only failed it again at the next send."""
        settings = self.route(route)
        if settings is None:
            return f"route {route!r} is no longer configured"
        if channel == "email":
            return None if settings.email else f"route {route!r} no longer sends email"
        name = channel.removeprefix("webhook:")
        if name not in settings.webhooks:
            return f"route {route!r} no longer sends to webhook {name!r}"
        return None if self.webhook(name) is not None else f"webhook {name!r} is no longer configured"

    def group_wait_for(self, route: RouteSettings) -> timedelta:
        return timedelta(seconds=self.group_wait if route.group_wait is None else route.group_wait)

    def group_interval_for(self, route: RouteSettings) -> timedelta:
        return timedelta(seconds=self.group_interval if route.group_interval is None else route.group_interval)

    def group_of(self, route: RouteSettings, service: str) -> str:
        """The group of ``route``'s alerts about ``service`` (outbox.group_key): "" is the whole route.

        By provider, a service without one goes with the services of the first [[groups]] entry listing it, which
        the detector groups as it groups a provider's: a grouped incident was otherwise split over messages.
        """
        by = self.group_by if route.group_by is None else route.group_by
        if by == "route":
            return ""
        group = (self.provider_of(service) or self.service_groups.get(service.lower())) if by == "provider" else None
        # Lower case: the config names services, providers and groups in any case (provider silences match so too),
        # and a provider and a [[groups]] entry of one name ("Meta") are one group.
        return f"group:{group.lower()}" if group else f"service:{service.lower()}"

    def repeat_for(self, route: RouteSettings) -> timedelta:
        return timedelta(seconds=self.repeat_interval if route.repeat_interval is None else route.repeat_interval)

    def provider_of(self, service: str) -> str | None:
        return self.providers.get(service.lower())

    def in_maintenance(self, service: str, at: datetime) -> MaintenanceWindow | None:
        return next((w for w in self.maintenance if w.service.lower() == service.lower() and w.active(at)), None)

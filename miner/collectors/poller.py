"""Polling sources: the type -> collector registry, one shared HTTP client, service matching, and the pool of
polls in flight across collect runs (`Poller.pool`, :class:`miner.collectors.inflight.PollPool`).

The pool polls on up to ``max_workers`` threads with at most ``per_host_concurrency`` requests per host, and
isolates failures: every source polled gets an outcome, and one source raising (even a bug) never stops the
others. Each outcome is handed over as soon as its poll ends, so the caller stores a fast source's posts while a
slow one is still answering, and it stops starting polls when asked to stop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING

from miner.collectors.base import Collector, PollContext, resolved, source_secrets, utc_now
from miner.collectors.bluesky import DEFAULT_BASE as BLUESKY_BASE
from miner.collectors.bluesky import BlueskyCollector
from miner.collectors.connections import OpenConnections
from miner.collectors.discourse import DiscourseCollector
from miner.collectors.hackernews import DEFAULT_BASE as HN_BASE
from miner.collectors.hackernews import HackerNewsCollector
from miner.collectors.http import host_of, make_client
from miner.collectors.internal_errors import internal_error
from miner.collectors.lemmy import LemmyCollector
from miner.collectors.mastodon import MastodonCollector
from miner.collectors.matching import ServiceMatcher
from miner.collectors.normalise import hash_key_from_env
from miner.collectors.paging import split_cursor
from miner.collectors.poll_notes import noting
from miner.collectors.reddit import WWW as REDDIT_BASE
from miner.collectors.reddit import RedditCollector
from miner.collectors.rss import RssCollector
from miner.collectors.settings import CollectSettings
from miner.collectors.status_feed import StatusFeedCollector
from miner.collectors.statuspage import StatuspageCollector
from miner.config import Config, ServiceConfig, SourceConfig
from miner.email_addresses import redact_emails
from miner.errors import SourceError
from miner.records import FetchResult, SourceState
from miner.urls import credentials_in_url

if TYPE_CHECKING:
    from miner.collectors.inflight import PollPool

log = logging.getLogger(__name__)

_DEFAULT_BASES = {"hackernews": HN_BASE, "bluesky": BLUESKY_BASE, "reddit": REDDIT_BASE}

# How long a collect round asked to stop still waits for the polls in flight. A poll that has its answer needs
# well under a second more to read and parse it (at most max_body_bytes), so one nearly done is kept rather than
# fetched again at the next start; one still waiting on its server could take up to the source's timeout (20 s
# by default, up to minutes). 5 s leaves most of the 10 s that `docker stop` (and many supervisors) wait before
# SIGKILL for the other jobs to finish their batch.
STOP_GRACE_S = 5.0


def default_collectors() -> dict[str, Collector]:
    """A fresh collector per source type. Reddit and Bluesky cache login tokens, so keep one set per process."""
    return {
        "rss": RssCollector(),
        "reddit": RedditCollector(),
        "hackernews": HackerNewsCollector(),
        "discourse": DiscourseCollector(),
        "lemmy": LemmyCollector(),
        "mastodon": MastodonCollector(),
        "bluesky": BlueskyCollector(),
        "statuspage": StatuspageCollector(),
        "status_feed": StatusFeedCollector(),
    }


def source_host(source: SourceConfig) -> str:
    """The host a source's requests go to: what per-host concurrency limits are keyed by."""
    return host_of(source.url or _DEFAULT_BASES.get(source.type, source.name))


def interleave_hosts(jobs: Sequence[tuple[SourceConfig, SourceState | None]]) -> list[int]:
    """Job indexes in host round-robin order, so ten sources on one host waiting for its concurrency
    limit do not hold every worker while other hosts' sources queue behind them."""
    by_host: dict[str, list[int]] = {}
    for i, (source, _state) in enumerate(jobs):
        by_host.setdefault(source_host(source), []).append(i)
    order: list[int] = []
    queues = list(by_host.values())
    while queues:
        order.extend(q.pop(0) for q in queues)
        queues = [q for q in queues if q]
    return order


@dataclass(frozen=True)
class PollOutcome:
    """What happened to one source in a round: a result, or the error that becomes its last_error."""

    source: str
    started_at: datetime
    duration_s: float
    result: FetchResult | None = None
    error: SourceError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Poller:
    """Owns the shared httpx client and the collectors (with their token caches). Close it when done."""

    stop_grace: float = STOP_GRACE_S  # see STOP_GRACE_S

    def __init__(
        self,
        settings: CollectSettings,
        services: Sequence[ServiceConfig] = (),
        hash_key: bytes | None = None,
        environ: Mapping[str, str] | None = None,
        collectors: Mapping[str, Collector] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.settings = settings
        self.matcher = ServiceMatcher(services)
        self.collectors = dict(collectors) if collectors is not None else default_collectors()
        client = make_client(settings)
        self._connections = OpenConnections(client)
        self._closed = threading.Event()
        self.ctx = PollContext(
            client=client, settings=settings,
            hash_key=hash_key if hash_key is not None else hash_key_from_env(None, env), environ=env,
        )
        self._pool: PollPool | None = None

    @classmethod
    def from_config(cls, config: Config, environ: Mapping[str, str] | None = None) -> Poller:
        env = os.environ if environ is None else environ
        for source in config.sources:
            if source.url and (found := credentials_in_url(source.url)):
                log.warning("source %s: its url in the config holds what looks like a credential (%s); secrets belong "
                            "in the environment: put the URL in an environment variable and name it in url_env",
                            source.name, ", ".join(found))
        return cls(config.collect, config.services, hash_key_from_env(config.store.hash_key_env, env), env)

    @property
    def pool(self) -> PollPool:
        """The polls in flight across collect runs, on threads that live as long as the poller (see PollPool)."""
        if self._pool is None:
            from miner.collectors.inflight import PollPool  # it imports this module

            self._pool = PollPool(self)
        return self._pool

    def close(self) -> None:
        """Give up every poll in flight, at once: none is stored, none counts as a failure of its source."""
        self._closed.set()  # first: the polls given up fail quietly as their connections are shut down under them
        if self._pool is not None:
            self._pool.close()
        # The client's close alone left a poll reading from a server that sends nothing blocked, its thread and
        # connection with it, until the source's timeout (see OpenConnections).
        self._connections.abort()
        self.ctx.client.close()

    def __enter__(self) -> Poller:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def resolve(self, source: SourceConfig) -> SourceConfig:
        """``source`` with the url its ``url_env`` names read from the environment (see base.resolved)."""
        return resolved(source, self.ctx.environ)

    def poll(self, source: SourceConfig, state: SourceState | None = None) -> FetchResult:
        """Poll one source and tag its posts with the services they mention, people's handles in their text left out.
        Raises SourceError."""
        collector = self.collectors.get(source.type)
        if collector is None:
            raise SourceError(f"no collector for source type {source.type!r}", permanent=True)
        source = self.resolve(source)
        with noting() as notes:
            result = collector.poll(source, state or SourceState(), self.ctx)
        if noted := notes.warnings():
            # Met below the collector (a JSON body's bad bytes or permanent redirect, on any page or login; items
            # skipped), where the source is not known: logged here, once a poll, rather than once a response.
            for line in noted:
                log.warning("source %s: %s", source.name, line)
            result = replace(result, warnings=[*result.warnings, *noted])
        if secrets := source_secrets(source):
            result = replace(result, secrets=secrets)  # for the store to scrub from what it stored of the source
        if not result.behind and split_cursor(result.state)[1]:
            # Windows kept with the cursor are what this poll left for the next ones (Hacker News, Reddit, Bluesky):
            # said here once rather than by each collector that keeps them.
            result = replace(result, behind=True)
        if not result.posts:
            return result
        # Matched before the handles of people go: "@bob" is no service, but "@WhatsAppSupport" is one's.
        matcher = self.matcher
        posts = [replace(p, services=matcher.match(p.text, source.services), text=matcher.redact_people(p.text))
                 for p in result.posts]
        return replace(result, posts=posts)

    def host_key(self, source: SourceConfig) -> str:
        """The host that per-host limits count the source's polls against (its ``url_env``'s, if set)."""
        with contextlib.suppress(SourceError):  # reported by the poll itself
            source = self.resolve(source)
        return source_host(source)

    def poll_isolated(self, source: SourceConfig, state: SourceState | None = None) -> PollOutcome:
        """Poll one source now, on this thread, outside the pool and its per-host limit; never raises."""
        return self._outcome(source, state, utc_now(), time.monotonic())

    def _outcome(self, source: SourceConfig, state: SourceState | None, started: datetime, clock: float
                 ) -> PollOutcome:
        """Poll, turning every error into the outcome's. Once the poller is closed nobody will store this outcome
        (the close gives up and aborts the polls in flight), so an error is no warning."""
        try:
            result = self.poll(source, state)
        except Exception as exc:
            if self._closed.is_set():
                log.debug("source %s: poll given up by its round ended with %s: %s", source.name,
                          type(exc).__name__, exc)
                return PollOutcome(source.name, started, time.monotonic() - clock,
                                   error=SourceError("poll given up by its round"))
            if isinstance(exc, SourceError):
                # A TLS failure or a permanent one (a revoked token's 401, a feed's 404 or 410) lasts until someone
                # acts, as `miner status` says: an error, not a warning of a passing outage.
                log.log(logging.ERROR if exc.needs_action or exc.permanent else logging.WARNING, "source %s failed: %s",
                        source.name, redact_emails(str(exc)))  # as the store keeps it (store.poll_failures)
                return PollOutcome(source.name, started, time.monotonic() - clock, error=exc)
            # A collector bug must cost one source one round, not the whole round. Its text quotes what it was given,
            # the source's secrets among them: the error and the log say it without them.
            with contextlib.suppress(SourceError):  # unresolved, its url_env's URL is in none of it
                source = self.resolve(source)
            message, trace = internal_error(exc, source, self.ctx.environ)
            log.error("source %s: unexpected error in the %s collector\n%s", source.name, source.type, trace)
            error = SourceError(message)
            return PollOutcome(source.name, started, time.monotonic() - clock, error=error)
        # result.warnings were logged where they arose, at their own level (see FetchResult).
        return PollOutcome(source.name, started, time.monotonic() - clock, result=result)

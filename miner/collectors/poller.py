"""Polling sources: the type -> collector registry, one shared HTTP client, service matching, and
`collect_many` for due sources.

`collect_many` polls in a thread pool with at most ``per_host_concurrency`` requests per host, and isolates
failures: every source gets an outcome, and one source raising (even a bug) never stops the others.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from types import TracebackType

from miner.collectors.base import Collector, PollContext, utc_now
from miner.collectors.bluesky import DEFAULT_BASE as BLUESKY_BASE
from miner.collectors.bluesky import BlueskyCollector
from miner.collectors.discourse import DiscourseCollector
from miner.collectors.hackernews import DEFAULT_BASE as HN_BASE
from miner.collectors.hackernews import HackerNewsCollector
from miner.collectors.http import host_of, make_client
from miner.collectors.lemmy import LemmyCollector
from miner.collectors.mastodon import MastodonCollector
from miner.collectors.matching import ServiceMatcher
from miner.collectors.normalise import hash_key_from_env
from miner.collectors.reddit import WWW as REDDIT_BASE
from miner.collectors.reddit import RedditCollector
from miner.collectors.rss import RssCollector
from miner.collectors.settings import CollectSettings
from miner.collectors.status_feed import StatusFeedCollector
from miner.collectors.statuspage import StatuspageCollector
from miner.config import Config, ServiceConfig, SourceConfig
from miner.errors import SourceError
from miner.records import FetchResult, SourceState

log = logging.getLogger(__name__)

_DEFAULT_BASES = {"hackernews": HN_BASE, "bluesky": BLUESKY_BASE, "reddit": REDDIT_BASE}


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
        self.ctx = PollContext(
            client=make_client(settings), settings=settings,
            hash_key=hash_key if hash_key is not None else hash_key_from_env(None, env), environ=env,
        )
        self._host_locks: dict[str, threading.BoundedSemaphore] = {}
        self._locks_guard = threading.Lock()

    @classmethod
    def from_config(cls, config: Config, environ: Mapping[str, str] | None = None) -> Poller:
        env = os.environ if environ is None else environ
        return cls(config.collect, config.services, hash_key_from_env(config.store.hash_key_env, env), env)

    def close(self) -> None:
        self.ctx.client.close()

    def __enter__(self) -> Poller:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def poll(self, source: SourceConfig, state: SourceState | None = None) -> FetchResult:
        """Poll one source and tag its posts with the services they mention. Raises SourceError."""
        collector = self.collectors.get(source.type)
        if collector is None:
            raise SourceError(f"no collector for source type {source.type!r}", permanent=True)
        result = collector.poll(source, state or SourceState(), self.ctx)
        if not result.posts:
            return result
        posts = [replace(p, services=self.matcher.match(p.text, source.services)) for p in result.posts]
        return replace(result, posts=posts)

    def _host_lock(self, source: SourceConfig) -> threading.BoundedSemaphore:
        host = source_host(source)
        with self._locks_guard:
            lock = self._host_locks.get(host)
            if lock is None:
                lock = threading.BoundedSemaphore(self.settings.per_host_concurrency)
                self._host_locks[host] = lock
            return lock

    def poll_isolated(self, source: SourceConfig, state: SourceState | None = None) -> PollOutcome:
        """Poll one source under its host's concurrency limit; never raises."""
        started, clock = utc_now(), time.monotonic()
        try:
            with self._host_lock(source):
                result = self.poll(source, state)
        except SourceError as exc:
            log.warning("source %s failed: %s", source.name, exc)
            return PollOutcome(source.name, started, time.monotonic() - clock, error=exc)
        except Exception as exc:  # a collector bug must cost one source one round, not the whole round
            log.exception("source %s: unexpected error in the %s collector", source.name, source.type)
            error = SourceError(f"internal error in the {source.type} collector: {type(exc).__name__}: {exc}")
            return PollOutcome(source.name, started, time.monotonic() - clock, error=error)
        # result.warnings were logged where they arose, at their own level (see FetchResult).
        return PollOutcome(source.name, started, time.monotonic() - clock, result=result)

    def collect_many(self, jobs: Sequence[tuple[SourceConfig, SourceState | None]]) -> list[PollOutcome]:
        """Poll several due sources concurrently; outcomes come back in the order of ``jobs``."""
        if not jobs:
            return []
        workers = min(self.settings.max_workers, len(jobs))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="miner-collect") as pool:
            futures = {i: pool.submit(self.poll_isolated, *jobs[i]) for i in interleave_hosts(jobs)}
            return [futures[i].result() for i in range(len(jobs))]

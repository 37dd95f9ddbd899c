"""The collect stage of the pipeline: one round of polls stored as each ends, and posts from elsewhere stored.

A mixin of :class:`miner.pipeline.Pipeline`, which owns the store, the config and the order of the stages.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from miner.collectors.matching import ServiceMatcher
from miner.collectors.schedule import next_poll_at
from miner.config import Config, SourceConfig
from miner.errors import SourceError, StoreError
from miner.records import FetchResult, Post
from miner.store import Store
from miner.timeutil import floor_time, iso

if TYPE_CHECKING:
    from miner.collectors.poller import Poller, PollOutcome

log = logging.getLogger("miner.pipeline")  # one logger for the pipeline's stages, as operators filter on it


class CollectStage:
    config: Config
    store: Store
    _matcher: ServiceMatcher | None

    @property
    def bucket(self) -> timedelta:
        """The detector's bucket width, which every stage counts in (collect: the buckets a prune made final)."""
        return timedelta(minutes=self.config.detector.bucket_minutes)

    def collect(self, now: datetime, poller: Poller, *, due_only: bool = True, rng: random.Random | None = None,
                stop: threading.Event | None = None) -> list[CollectReport]:
        """Poll the enabled sources (only those due, by default) and store what each returned.

        Each poll is stored as soon as it ends, while slower ones are still running: one slow or hanging server
        delays no other source's posts. One failing source never stops the others: its error is stored as its
        ``last_error`` and it is scheduled again with backoff. Posts and the source's new cursor are stored in
        one transaction. Once ``stop`` is set no further poll starts, and polls still running after the poller's
        ``stop_grace`` are given up: nothing of theirs is stored, so those sources are due again at once, with
        no error counted against them. Reports come in the config's order, one per source polled.
        """
        rng = rng or random.Random()
        self._resume_prune_after_clock_ahead(now)
        sources = [s for s in self.config.sources if s.enabled]
        for name in self.store.sync_sources(sources):
            log.info("%s: type or url changed in the config; its cursor, validators and backoff start afresh", name)
        earlier = self.store.earlier_names(self.config.sources)
        names = {s.name for s in sources}
        if due_only:
            names = set(self.store.due_sources(sorted(names), now))
        chosen = [s for s in sources if s.name in names]
        reports: dict[int, CollectReport] = {}
        # Stored here, on the thread that owns the store, in the order the polls end.
        for i, outcome in poller.poll_as_completed([(s, self.store.source_state(s.name)) for s in chosen], stop):
            reports[i] = self._record_poll(chosen[i], outcome, now, rng, earlier.get(chosen[i].name, ()))
        if len(reports) < len(chosen):
            left = [s.name for i, s in enumerate(chosen) if i not in reports]
            log.info("stopping: %d due sources not polled in this round, due again at the next: %s", len(left),
                     ", ".join(left))
        return [reports[i] for i in sorted(reports)]

    def _resume_prune_after_clock_ahead(self, now: datetime) -> None:
        """Take a prune cutoff recorded by a clock that was ahead back to the bucket in progress (see
        Store.rewind_prune_cutoff), or every post would be dropped as pruned until real time reached it.

        Here, not in a stage a replay runs too (ingest, classify, detect): a replay's clock is simulated, and a
        real prune's cutoff lies after it rightly. The service runs collect at start, and at once when it sees the
        clock go back.
        """
        if (cutoff := self.store.rewind_prune_cutoff(now, self.bucket)) is not None:
            log.warning("the clock was ahead: a prune recorded its cutoff at %s, so every post dated before it was "
                        "dropped as pruned; it is taken back to %s, the bucket in progress", iso(cutoff),
                        iso(floor_time(now, self.bucket)))

    def _record_poll(self, source: SourceConfig, outcome: PollOutcome, now: datetime, rng: random.Random,
                     earlier: Sequence[str] = ()) -> CollectReport:
        """Store one source's poll, or its failure with the next try backed off.

        ``earlier``: the names this source's feed had before it was renamed (Store.earlier_names). What they
        stored is not stored again under the new name: a renamed source starts without a cursor, and the items its
        feed still lists would count twice in their buckets.
        """
        settings = self.config.collect
        err = outcome.error
        if outcome.result is not None:
            nxt = next_poll_at(source, now, 0, outcome.result.retry_after, settings, rng)
            result, skipped = self._within_retention(outcome.result, now)
            if earlier and result.posts:
                seen = self.store.stored_ids(earlier, [p.external_id for p in result.posts])
                if seen:
                    result = replace(result, posts=[p for p in result.posts if p.external_id not in seen])
                    skipped += len(seen)  # reported as duplicates, as they are
            try:
                stats = self.store.save_fetch(source.name, result, now, nxt)
            except StoreError:
                # The store takes no writes (disk full, locked): no other poll of the round can be stored either,
                # nor this failure. One error for the round, not a traceback per source on every collect run.
                raise
            except Exception as exc:  # a poll the store refuses (a bug) must cost this source, not the round
                log.exception("source %s: cannot store its poll", source.name)
                err = SourceError(f"internal error storing the poll: {type(exc).__name__}: {exc}")
            else:
                return CollectReport(source.name, source.type, stats.posts_new, stats.posts_seen + skipped,
                                     stats.incidents_new + stats.incidents_updated, None, nxt,
                                     result.not_modified, outcome.duration_s, result.gap)
        err = err or SourceError("unknown error")
        failures = self.store.consecutive_failures(source.name) + 1
        nxt = next_poll_at(source, now, failures, err.retry_after, settings, rng, permanent=err.permanent)
        self.store.record_poll_failure(source.name, str(err), now, nxt)
        return CollectReport(source.name, source.type, 0, 0, 0, str(err), nxt, False, outcome.duration_s)

    def _within_retention(self, result: FetchResult, now: datetime) -> tuple[FetchResult, int]:
        """The poll without its posts created before the retention cutoff or pruned (see _not_pruned), and how many
        those were. Retention deletes such posts but keeps their buckets: a feed that still lists one would have it
        stored again after every prune."""
        kept, too_old = self._not_pruned(result.posts, now - timedelta(days=self.config.store.retention_days))
        if not too_old:
            return result, 0
        return replace(result, posts=kept), too_old

    def _not_pruned(self, posts: Sequence[Post], since: datetime | None = None) -> tuple[list[Post], int]:
        """``posts`` without those created before ``since`` or in a bucket a prune has made final (see
        Store.first_open_bucket: `miner prune --days` shorter than retention goes past the retention cutoff), and
        how many those were. Such a bucket is never recounted (Store.refresh_buckets): the post would count nowhere.
        """
        cutoffs = [c for c in (since, self.store.first_open_bucket(self.bucket)) if c is not None]
        if not cutoffs:
            return list(posts), 0
        kept = [p for p in posts if p.created_at >= max(cutoffs)]
        return kept, len(posts) - len(kept)

    def ingest(self, posts: Sequence[Post], now: datetime) -> Ingested:
        """Store posts that did not come from a poll (replay, user reports), matched to services.

        Those dated in a bucket a prune has made final are left out, as from a poll: a replay of old posts into a
        pruned store stored them, and no bucket counted them. The retention cutoff is not applied: on a replay's
        simulated clock it means nothing, and a user report is dated now.
        """
        kept, too_old = self._not_pruned(posts)
        matched = [replace(p, services=p.services or self.matcher.match(p.text)) for p in kept]
        return Ingested(self.store.insert_posts(matched, now).posts_new, too_old)

    @property
    def matcher(self) -> ServiceMatcher:
        if self._matcher is None:
            self._matcher = ServiceMatcher(self.config.services)
        return self._matcher


@dataclass(frozen=True)
class Ingested:
    """What :meth:`CollectStage.ingest` did with its posts."""

    stored: int
    too_old: int  # left out: dated in a bucket a prune has made final


@dataclass(frozen=True)
class CollectReport:
    """One source's part of a collect round, for `miner collect` and the service log."""

    source: str
    type: str
    stored: int
    duplicates: int
    official_incidents: int
    error: str | None
    next_poll_at: datetime
    not_modified: bool
    seconds: float
    gap: bool = False  # posts were or may have been missed for good (the source's last_warning says where)

"""The collect stage of the pipeline: one round of polls stored as each ends, and posts from elsewhere stored.

A mixin of :class:`miner.pipeline.Pipeline`, which owns the store, the config and the order of the stages.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from miner.collectors.matching import ServiceMatcher
from miner.collectors.schedule import next_poll_at
from miner.config import Config, SourceConfig
from miner.errors import SourceError, StoreError
from miner.held_polls import HeldPoll, HeldPolls
from miner.records import UNDATED_BACKLOG, UNDATED_NEW, FetchResult, Post
from miner.store import Store
from miner.timeutil import duration_text, floor_time, iso

if TYPE_CHECKING:
    from miner.collectors.inflight import Landed
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
                stop: threading.Event | None = None, held: HeldPolls | None = None,
                wait: float | None = None) -> list[CollectReport]:
        """Poll the enabled sources (only those due, by default) and store what each returned.

        Each poll is stored as soon as it ends, while slower ones are still running: one slow or hanging server
        delays no other source's posts. One failing source never stops the others: its error is stored as its
        ``last_error`` and it is scheduled again with backoff. Posts and the source's new cursor are stored in
        one transaction. Once ``stop`` is set no further poll starts, and polls still running after the poller's
        ``stop_grace`` are given up: nothing of theirs is stored, so those sources are due again at once, with
        no error counted against them. Reports come in the config's order, one per poll stored, after those of
        polls held earlier and stored now.

        ``wait`` (the service's): return once that many seconds have passed, with the polls still running carried
        over (see PollPool). The next call stores each first, with the round time ``now`` of the call that started
        it, and starts no source in flight: a source that hangs until its timeout delays no other source's next
        poll. None (`miner collect`): return once every poll has ended.

        A store that takes no writes (a full disk) raises StoreError, unless ``held`` (the service's) is given: the
        polls it does not take are then kept there and stored first at the next round that it takes writes again
        (see HeldPolls), and ``held.store_error`` says why.
        """
        rng = rng or random.Random()
        started = time.monotonic()  # a poll's answer is dated on the round's clock: ``now`` and the time since
        sources = [s for s in self.config.sources if s.enabled]
        if held is not None:
            held.store_error = None
        try:
            self._resume_prune_after_clock_ahead(now)
            for name in self.store.sync_sources(sources):  # before the held polls: they update the sources' rows
                log.info("%s: type or url changed in the config; its cursor, validators and backoff start afresh",
                         name)
                if held is not None:
                    held.mark_stale(name)
        except StoreError as exc:
            if held is None:
                raise
            held.store_error = exc
        late = self.store_held(held) if held is not None and held.store_error is None else []
        self._follow_renames(held)  # after the held polls: those of a source's old name are stored under it
        earlier = self.store.earlier_names(self.config.sources)
        pool = poller.pool
        # The polls of earlier runs that ended since, first: their sources may be due again.
        reports = [self._record_landed(x, rng, earlier, held) for x in pool.landed(started)]
        names = {s.name for s in sources} - pool.in_flight()
        first: dict[str, int] = {}  # longest due first: those withdrawn last run go before sources polled since
        if due_only:
            first = {n: i for i, n in enumerate(self.store.due_sources([s.name for s in sources if s.name in names],
                                                                       now))}
            names = {n for n in names if (held.due(n, now) if held is not None and held.schedules(n) else
                                          n in first)}
        if held is not None and held.full:
            names = set()  # nothing more is fetched than memory can keep; the sources stay due
        if stop is not None and stop.is_set():
            names = set()  # the round still stores what ends within the stop's grace
        chosen = sorted((s for s in sources if s.name in names), key=lambda s: first.get(s.name, -1))
        jobs = [(s, (held.state(s.name) if held is not None else None) or self.store.source_state(s.name))
                for s in chosen]
        asked = set(pool.start(jobs, now, started))
        # Stored here, on the thread that owns the store, in the order the polls end.
        for landed in pool.landed(None if wait is None else started + wait, stop):
            asked.discard(landed.flight.source.name)
            reports.append(self._record_landed(landed, rng, earlier, held))
        if left := sorted(asked - pool.in_flight()):
            if stop is not None and stop.is_set():
                log.info("stopping: %d due sources not polled in this round, due again at the next: %s", len(left),
                         ", ".join(left))
            else:
                log.info("%d due sources not started in this round, as collect.max_workers (or per_host_concurrency) "
                         "polls were running: due again at the next: %s", len(left), ", ".join(left))
        order = {s.name: i for i, s in enumerate(self.config.sources)}
        return late + sorted(reports, key=lambda r: order.get(r.source, len(order)))

    def _follow_renames(self, held: HeldPolls | None) -> None:
        """Give each renamed source its old name's poll state and failed polls (Store.follow_renames), before any
        poll of it is started or stored."""
        if held is not None and held.store_error is not None:
            return  # the store takes no writes: at the round that stores the held polls
        try:
            followed = self.store.follow_renames(self.config.sources)
        except StoreError as exc:
            if held is None:
                raise
            held.store_error = exc
            return
        for old, new in followed:
            log.info("%s: renamed %s in the config (same type and url); its poll state and failed polls follow it",
                     old, new)

    def _record_landed(self, landed: Landed, rng: random.Random, earlier: dict[str, list[str]],
                       held: HeldPolls | None) -> CollectReport:
        source = landed.flight.source
        return self._record_poll(source, landed.outcome, landed.flight.now, rng, earlier.get(source.name, ()), held,
                                 landed.answered)

    def store_held(self, held: HeldPolls) -> list[CollectReport]:
        """Store the polls held while the store took no writes, each source's in the order they were made, and
        report them (``late``). The first the store refuses sets ``held.store_error``; it and the rest stay held."""
        reports: list[CollectReport] = []
        for name in held.sources:
            while name in held.polls:
                poll, after = held.polls[name][0], held.polls[name][1:2]
                try:
                    if poll.result is not None:
                        stats = self.store.save_fetch(name, poll.result, poll.polled_at, poll.next_poll_at,
                                                      self.bucket)
                        report = CollectReport(name, poll.type, stats.posts_new, stats.posts_seen + poll.skipped,
                                               stats.incidents_new + stats.incidents_updated, None,
                                               poll.next_poll_at, poll.result.not_modified, poll.duration_s,
                                               late=True, posts_late=stats.posts_late, late_by_s=stats.late_by_s,
                                               too_old=poll.too_old)
                    else:
                        self.store.record_poll_failure(name, poll.error or "", poll.polled_at, poll.next_poll_at,
                                                       needs_action=poll.needs_action, http_status=poll.http_status,
                                                       retry_after=poll.retry_after)
                        report = CollectReport(name, poll.type, 0, 0, 0, poll.error, poll.next_poll_at, False,
                                               poll.duration_s, late=True)
                    if poll.stale and not (after and after[0].stale):
                        # The old type's or url's last: a failure here keeps it held, stored again (its posts once).
                        self.store.reset_poll_state(name)
                except StoreError as exc:
                    held.store_error = exc
                    return reports
                except Exception as exc:  # a poll the store refuses (a bug): it must not block every later one
                    log.exception("source %s: cannot store a poll held since %s; it is dropped", name,
                                  iso(poll.polled_at))
                    report = CollectReport(name, poll.type, 0, 0, 0, f"internal error storing the poll: "
                                           f"{type(exc).__name__}: {exc}", poll.next_poll_at, False,
                                           poll.duration_s, late=True)
                held.release(name)
                reports.append(report)
        return reports

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
                     earlier: Sequence[str] = (), held: HeldPolls | None = None,
                     answered: datetime | None = None) -> CollectReport:
        """Store one source's poll, or its failure with the next try backed off.

        ``earlier``: the names this source's feed had before it was renamed (Store.earlier_names). What they
        stored is not stored again under the new name: posts are one per source and id, and the items its feed
        still lists (a feed lists them at every poll, an API those in its cursor's look-back) would count twice in
        their buckets.

        ``held``: a poll the store does not take is held there (see collect); so is any poll of a source with
        polls held already, which must be stored after them.

        ``answered``: when the poll ended, on the round's clock; its backoff and Retry-After count from then.
        """
        settings = self.config.collect
        err = outcome.error
        if outcome.result is not None:
            nxt = next_poll_at(source, now, 0, outcome.result.retry_after, settings, rng, answered=answered)
            result, too_old = self._within_retention(outcome.result, now)
            skipped = 0
            if earlier and result.posts:
                seen = self.store.stored_ids(earlier, [p.external_id for p in result.posts])
                if seen:
                    result = replace(result, posts=[p for p in result.posts if p.external_id not in seen])
                    skipped = len(seen)  # reported as duplicates, as they are
            result = self._undated_backlog(source, result, now, held)
            poll = HeldPoll(source.type, result, None, now, nxt, outcome.duration_s, skipped, too_old=too_old)
            if held is not None and (source.name in held.polls or held.store_error is not None):
                # After its earlier polls; and once the store refused a write in this round, the next would wait
                # out the busy timeout (10 s) again for a store that is locked.
                return held.hold(source.name, poll)
            try:
                stats = self.store.save_fetch(source.name, result, now, nxt, self.bucket)
            except StoreError as exc:
                # The store takes no writes (disk full, locked): no other poll of the round can be stored either,
                # nor this failure. One error for the round, not a traceback per source on every collect run.
                if held is None:
                    raise
                held.store_error = exc
                return held.hold(source.name, poll)
            except Exception as exc:  # a poll the store refuses (a bug) must cost this source, not the round
                log.exception("source %s: cannot store its poll", source.name)
                err = SourceError(f"internal error storing the poll: {type(exc).__name__}: {exc}")
            else:
                if stats.posts_late:
                    log.debug("source %s: %s", source.name, late_text(stats.posts_late, stats.late_by_s))
                return CollectReport(source.name, source.type, stats.posts_new, stats.posts_seen + skipped,
                                     stats.incidents_new + stats.incidents_updated, None, nxt,
                                     result.not_modified, outcome.duration_s, result.gap,
                                     posts_late=stats.posts_late, late_by_s=stats.late_by_s, too_old=too_old)
        err = err or SourceError("unknown error")
        failures = self.store.consecutive_failures(source.name)
        if held is not None:
            failures = held.consecutive_failures(source.name, failures)
        nxt = next_poll_at(source, now, failures + 1, err.retry_after, settings, rng, permanent=err.permanent,
                           answered=answered)
        failed = CollectReport(source.name, source.type, 0, 0, 0, str(err), nxt, False, outcome.duration_s)
        action = err.calls_for_action(failures + 1)
        poll = HeldPoll(source.type, None, str(err), now, nxt, outcome.duration_s, needs_action=action,
                        http_status=err.http_status, retry_after=err.retry_after)
        if held is not None and (source.name in held.polls or held.store_error is not None):
            held.hold(source.name, poll)
            return failed
        try:
            self.store.record_poll_failure(source.name, str(err), now, nxt, needs_action=action,
                                           http_status=err.http_status, retry_after=err.retry_after)
        except StoreError as exc:
            if held is None:
                raise
            held.store_error = exc
            held.hold(source.name, poll)  # its backoff (a Retry-After) holds while the store takes no writes
        return failed

    def _undated_backlog(self, source: SourceConfig, result: FetchResult, now: datetime,
                         held: HeldPolls | None) -> FetchResult:
        """The poll with its posts that have no time of their own marked as backlog (UNDATED_BACKLOG), counted in
        no bucket, unless the source's last successful poll was recent (UNDATED_WINDOW_POLLS intervals, or a bucket).

        Such a post is dated when fetched. Seen by a poll soon after the last, it was posted in between, and that
        date is near enough. Seen by a source's first poll, or by one after the source (or miner) was down for
        hours, it may be from any time before: a feed's whole backlog, dated in one bucket, was a false spike
        there, and could open an incident for a service whose baseline was learned without that feed.
        """
        undated = [p.external_id for p in result.posts if p.undated == UNDATED_NEW]
        if not undated:
            return result
        last_ok = (held.last_ok(source.name) if held is not None else None) or self.store.last_ok_at(source.name)
        window = max(timedelta(seconds=UNDATED_WINDOW_POLLS * source.interval), self.bucket)
        if last_ok is not None and now - last_ok <= window:
            return result
        fresh = len(undated) - len(self.store.stored_ids([source.name], undated))
        if fresh:
            gap = None if last_ok is None else duration_text((now - last_ok).total_seconds())
            since = ("on the source's first poll" if last_ok is None else
                     f"after {gap} without a successful poll (since {iso(last_ok)})")
            message = (f"{fresh} new item{'' if fresh == 1 else 's'} without a date {since}: stored, dated at this "
                       "fetch, but counted in no bucket, since when they were posted is unknown (posts.undated = "
                       "'backlog')")
            log.warning("source %s: %s", source.name, message)
            result = replace(result, warnings=[*result.warnings, message])
        posts = [replace(p, undated=UNDATED_BACKLOG) if p.undated == UNDATED_NEW else p for p in result.posts]
        return replace(result, posts=posts)

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
        """Store posts that did not come from a poll (replay, user reports), matched to services, people's handles
        left out of their text as from a poll.

        Those dated in a bucket a prune has made final are left out, as from a poll: a replay of old posts into a
        pruned store stored them, and no bucket counted them. The retention cutoff is not applied: on a replay's
        simulated clock it means nothing, and a user report is dated now. A post of a configured source is matched
        only against that source's ``services``, as a poll of it is.
        """
        kept, too_old = self._not_pruned(posts)
        matcher = self.matcher
        only = {s.name: s.services for s in self.config.sources}
        matched = [replace(p, services=p.services or matcher.match(p.text, only.get(p.source, ())),
                           text=matcher.redact_people(p.text)) for p in kept]
        return Ingested(self.store.insert_posts(matched, now, self.bucket).posts_new, too_old)

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
    held: int = 0  # posts of this poll held in memory: the store took no writes (see HeldPolls)
    late: bool = False  # a poll of an earlier round, held then and stored in this one
    # Of ``stored``, those dated before a post of the same poll the store had already (indexed or delivered late), and
    # the most seconds one was dated before it (Store.save_fetch).
    posts_late: int = 0
    late_by_s: float = 0.0
    # Posts left out as older than the store keeps them ([store].retention_days, or a bucket a prune has made final):
    # counted with the duplicates, a feed's first poll read "stored 0, dupes 17", as if dedupe were broken.
    too_old: int = 0


def late_text(posts: int, seconds: float) -> str:
    """``3 posts arrived late, up to 2 h 05 min``: for the log and `miner collect`."""
    whole = round(seconds)  # 59.7 s is "1 min", not "60 s"
    by = f"{whole} s" if whole < 60 else duration_text(whole)
    return f"{posts} post{'' if posts == 1 else 's'} arrived late, up to {by}"


# Polls' worth of time (or one bucket, when longer) since a source's last successful poll within which a post it
# gives no time is counted, dated when fetched: one failed poll may lie between.
UNDATED_WINDOW_POLLS = 3

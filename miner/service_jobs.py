"""What each job of the service does at a run: the pipeline stage it runs, what it counts on /metrics and logs.

A mixin of :class:`miner.service.Service`, which owns the scheduler, the store connections, the metrics and the
stop event, and records each run's outcome (health, store failures).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from miner.alerts.unprepared import UnpreparedAlerts
from miner.collect_stage import CollectReport, late_text
from miner.config import Config
from miner.errors import StoreError
from miner.held_polls import HeldPolls
from miner.metrics import Metrics
from miner.service_schedule import PartTicks
from miner.store.maintenance import held_prune_message
from miner.timeutil import counted, iso

if TYPE_CHECKING:
    from miner.pipeline import Pipeline
    from miner.service import JobHealth, ServiceOptions
    from miner.store import Store

log = logging.getLogger("miner.service")  # one logger for the service and its jobs, as operators filter on it


class ServiceJobs:
    config: Config
    metrics: Metrics
    _held: HeldPolls
    _stop: threading.Event
    _poller: Any
    _source_up: dict[str, float]  # miner_source_up of the sources polled since the start (see metrics_text)
    _source_up_guard: threading.Lock
    _collected: threading.Event  # the first collect round has stored its polls (see job_process, job_collect)
    _first_collect: float | None
    _first_withdrawn: set[str]  # the sources due at the first run and not started since (see _first_round_stored)
    _job_names: frozenset[str]  # the jobs this service runs
    options: ServiceOptions
    health: dict[str, JobHealth]
    # job -> time.monotonic() at the start of the part of its run going now (the alerts job's backlog, sent in parts):
    # the run's end (Service._run_job) times its last part, as each part before it was timed.
    _part_started: dict[str, float]
    _part_ticks: PartTicks  # the ticks that find a part going, held to its end
    # The newest post a source dated, as the process job's last run found it ahead of the clock (Store.clock_behind):
    # /healthz is degraded while it still is. None: not behind, or no run yet.
    _clock_behind: datetime | None
    _unprepared: UnpreparedAlerts  # the alerts job's messages the store failed while they were prepared

    if TYPE_CHECKING:
        def _store(self, job: str) -> Store: ...

        def _pipeline(self, job: str) -> Pipeline: ...

        def _store_failing(self, job: str, error: StoreError | None) -> tuple[str, str] | None: ...

    def job_collect(self, now: datetime) -> None:
        held = self._held
        started = time.monotonic()
        every = self._every("collect", 15.0)
        ran = False  # the run got to its end: the pool's withdrawn are this run's
        try:
            # Back before the next tick: polls still running then are carried over, and stored by a later run.
            reports = self._pipeline("collect").collect(now, self._poller, stop=self._stop, held=held,
                                                        wait=max(every - 1.0, every / 2))
            ran = True
        finally:
            self.metrics.set("miner_posts_held", float(held.posts))
            self.metrics.set("miner_polls_in_flight", float(len(self._poller.pool.in_flight())))
            if not self._collected.is_set():
                self._first_round_stored(ran)
        polled = [r for r in reports if not r.late]  # a held poll is counted when made, its posts when stored
        for r in reports:
            self.metrics.inc("miner_posts_stored_total", r.stored, source=r.source)
            if r.posts_late:
                self.metrics.inc("miner_posts_late_total", r.posts_late, source=r.source)
                self.metrics.set("miner_source_late_seconds", r.late_by_s, source=r.source)
        for r in polled:
            self.metrics.inc("miner_polls_total", source=r.source)
            self.metrics.set("miner_poll_seconds", round(r.seconds, 3), source=r.source)
            with self._source_up_guard:
                self._source_up[r.source] = 0.0 if r.error else 1.0
            if r.error:
                self.metrics.inc("miner_poll_errors_total", source=r.source)
            else:
                self.metrics.inc("miner_posts_fetched_total", r.stored + r.duplicates + r.too_old + r.held,
                                 source=r.source)
                if r.gap:
                    self.metrics.inc("miner_poll_gaps_total", source=r.source)
        carried = self._carried_polls(every)
        if reports or carried:
            late = [r for r in reports if r.late]
            # In the round's one line, not a line per poll: a search that lags does so at every poll.
            arrived_late = "; ".join(f"{r.source}: {late_text(r.posts_late, r.late_by_s)}"
                                     for r in reports if r.posts_late)
            took = time.monotonic() - started
            log.info("collected from %s: %s, %s%s%s%s%s", counted(len(polled), "source"),
                     counted(sum(r.stored for r in reports), "new post"),
                     counted(sum(1 for r in polled if r.error), "error"),
                     f"; {sum(r.stored for r in late)} of them from {counted(len(late), 'poll')} held earlier"
                     if late else "",
                     f"; {counted(sum(r.held for r in polled), 'post')} held in memory"
                     if any(r.held for r in polled) else "",
                     f" ({arrived_late})" if arrived_late else "",
                     self._slowest_polls(polled, took, every) + carried,
                     # The polls that brought or held posts, or failed; not those that found nothing new, most of
                     # every run: 189 sources' entries were 90 MB of JSON log a day.
                     extra={"sources": [{"source": r.source, "stored": r.stored, "held": r.held, "late": r.late,
                                         "posts_late": r.posts_late, "late_by_s": round(r.late_by_s),
                                         "error": r.error} for r in reports
                                        if r.stored or r.held or r.late or r.posts_late or r.error]})
        if held.store_error is not None:
            # The same failure while the posts held grow: logged once (Service._run_job), not at every poll.
            raise StoreError(f"{held.store_error}; {held.describe()}" if held.polls else str(held.store_error),
                             cause=held.store_error.cause, same_as=held.store_error.same_as)

    def _first_round_stored(self, ran: bool) -> None:
        """Set _collected once the first round has ended: the polls it started stored, not when its run returns with
        some carried over, and so are those of the sources due that it left unstarted (every worker busy), started
        by the runs after it: the buckets of the time the service was down were scored without their posts. ``ran``:
        the run ended without an error (one that failed before it started its polls withdrew none)."""
        pool = self._poller.pool
        if self._first_collect is None or self._first_withdrawn:
            # This run started (or withdrew again) sources the first run left: the round ends with their polls.
            first = self._first_collect is None
            self._first_collect = time.monotonic()  # not the wall clock, which may step
            if ran:
                self._first_withdrawn = set(pool.withdrawn) if first else self._first_withdrawn & pool.withdrawn
        oldest = pool.oldest()
        if not self._first_withdrawn and (oldest is None or oldest > self._first_collect):
            self._collected.set()

    def _every(self, name: str, default: float) -> float:
        """Seconds between the runs of job ``name``; ``default`` where the service does not schedule it."""
        return next((job.every for job in self.options.jobs if job.name == name), default)

    def _slowest_polls(self, polled: list[CollectReport], took: float, every: float) -> str:
        """For a run that outlasted the collect job's interval (storing its polls took that long: a store locked by
        another writer): the ticks meanwhile were skipped, and the sources due then waited."""
        if took <= every or not polled:
            return ""
        return f"; the run took {took:.0f} s, past the collect job's {every:g} s interval: sources due meanwhile waited"

    def _carried_polls(self, every: float) -> str:
        """The polls running for longer than the collect job's interval, longest first (at a stop, all those running:
        given up): carried over to the next run, they delay no other source, but a source slow to answer (or hanging
        until its timeout) is polled less often than its interval says, and nothing else said which source it was."""
        # At a stop, every poll still running was given up (the run said "carried over to the next run" of them,
        # right after the pool said they were given up): none of it is stored, and the next start polls them again.
        stopping = self._stop.is_set()
        slow = [(name, took) for name, took in self._poller.pool.running_for() if stopping or took > every]
        if not slow:
            return ""
        named = ", ".join(f"{name} {took:.0f} s" for name, took in slow[:3]) + (", ..." if len(slow) > 3 else "")
        if stopping:
            return (f"; {counted(len(slow), 'poll')} in flight given up at the stop, polled again at the next start: "
                    f"{named}")
        return (f"; {counted(len(slow), 'poll')} in flight for longer than the collect job's {every:g} s interval, "
                f"carried over to the next run: {named}")

    def job_process(self, now: datetime) -> None:
        pipeline = self._pipeline("process")
        # The detector steps no bucket while the clock is behind the store, and says so in the log once: /healthz
        # said ok for as long as it lasted. Read at every run (one entry of an index), the early returns below too.
        self._clock_behind = pipeline.store.clock_behind(now)
        # Read before the posts are classified: the round's posts are then classified before the buckets are scored.
        collected = self._collected.is_set() or "collect" not in self._job_names
        held = bool(self._held.polls)
        polled = pipeline.store.source_rows()  # so a poll stored while this job runs waits for the next run
        started = time.monotonic()
        # A stop ends a backlog (a store `miner collect` filled while no service ran, the job failing a while) after
        # its batch: all of it kept a SIGTERM waiting minutes, past systemd's stop timeout, whose SIGKILL lost the
        # polls held.
        classified = pipeline.classify_pending(now, stop=self._stop, progress=self._classified_batch)
        if classified:
            self.metrics.inc("miner_posts_classified_total", classified)
            self.metrics.inc("miner_classify_seconds_total", time.monotonic() - started)
        if self._stop.is_set():
            log.info("process: stopped; the posts left to classify, and the buckets, go at the next run")
            return
        if not collected:
            # Both jobs start at once: the detector stepped the buckets of the time the service was down (up to
            # detector.max_fill_hours) before the first round had stored their posts, scoring them empty, resolving
            # an outage still going on and learning the silence; the posts, stored a moment later, were too late.
            log.debug("process: the buckets are scored once the first collect round has ended")
            return
        if held:
            # The store took none of a round's polls (a lock held past the busy timeout, a full disk) and takes this
            # job's writes first: the sources' last polls stored were more than settle_minutes old, and the buckets
            # since were scored without the posts held for the next round to store.
            log.debug("process: the buckets are scored once the polls held in memory are stored")
            return
        report = pipeline.detect(now, polled)
        for service, at in report.opened:
            log.warning("incident opened: %s at %s", service, iso(at), extra={"service": service})
        for service, at in report.resolved:
            log.info("incident resolved: %s at %s", service, iso(at), extra={"service": service})

    def _classified_batch(self, _count: int) -> None:
        """A sign of life for systemd's watchdog (service_notify): a backlog of a million posts (`miner collect` ran
        without it) is classified in one run, for longer than the job's limit, getting on all the while. A service
        whose jobs leave out "process" has no health of it to keep, though it may run the job (as a test does)."""
        health = self.health.get("process")
        if health is not None:
            health.alive_monotonic = time.monotonic()

    def job_alerts(self, now: datetime) -> None:
        # In slices of one interval, each a whole tick (planning first) and each ended recorded as the job's success:
        # a backlog to a slow but working server (100 messages queued through a mail outage, 5-20 s each) sent in
        # one go outlasted the job's limit, so the watchdog restarted the service mid-send (a message the server had
        # taken went again after its lease), /healthz said the job was stuck, and an incident opened meanwhile was
        # not planned until the backlog was out. The next slice starts at once: left to the next tick, a run ending
        # just past one waited out the next, and a backlog went out at half the pace.
        every = self._every("alerts", 30.0)
        pipeline = self._pipeline("alerts")
        parts, began, sent, retried, failed = 0, time.monotonic(), 0, 0, 0
        while True:
            started = self._part_started["alerts"] = time.monotonic()
            self._part_ticks.begin("alerts", started + every, every)
            more = False
            try:
                stats = pipeline.alert(now, stop=self._stop, deadline=started + every)
                more = bool(stats.left) and not self._stop.is_set()
            finally:
                if skipped := self._part_ticks.end("alerts", more):
                    self.metrics.inc("miner_job_runs_total", skipped, stage="alerts", outcome="skipped")
            parts += 1
            sent, retried, failed = sent + stats.sent, retried + stats.retried, failed + stats.failed
            if stats.sent:
                self.metrics.inc("miner_notifications_sent_total", stats.sent)
            if stats.failed:
                # Counted, not only logged: a mail server refusing every message (expired login) stops the sent
                # counter, leaves the outbox queue empty and the alerts job healthy, so nothing else on /metrics
                # would show it.
                self.metrics.inc("miner_notifications_failed_total", stats.failed)
                log.error("alerts: %s failed permanently (see `miner outbox`)", counted(stats.failed, "notification"))
            # At each part, as each part counts as a run: a message the store failed to prepare waits, retried.
            unprepared = self._unprepared.after(stats, pipeline.store)
            if parts == 1 and more:
                # Once, and a summary at the end: a line at each part came every 30 s for the whole backlog.
                log.info("alerts: a backlog of due messages goes out in parts of %g s (the job's interval), each "
                         "planning first, the next started at once: %d left after the first part's %s "
                         "(and any others due)", every, stats.left, counted(stats.claimed, "attempt"))
            if not more:
                if parts > 1:
                    log.info("alerts: %s in %d parts over %.0f s: %d sent, %d to retry, %d failed",
                             "stopped sending a backlog (the rest go at the next start)" if self._stop.is_set()
                             else "the backlog went out", parts, time.monotonic() - began, sent, retried, failed)
                if unprepared is not None:
                    raise unprepared  # after every attempt was recorded: the run's store failure (Service._run_job)
                return
            self._slice_ended("alerts", started, unprepared)
            now = self.options.clock()

    def _slice_ended(self, name: str, started: float, failed: StoreError | None = None) -> None:
        """A part of a run (begun at ``started``, a time.monotonic()) ended, and counts as a run does
        (Service._run_job): for systemd's watchdog (service_notify), the job gets on; on /metrics, a run of the job, of
        the part's length; for /healthz, a success, or a failure of the store's (``failed``: a message it failed to
        prepare still waits) as the run's end would count it. Counted as one run, a backlog of 40 parts stood still on
        miner_job_runs_total and /healthz's runs, then set miner_job_seconds to the whole backlog's 80 s (or 30 min),
        as if a tick's work had taken that long. A job not scheduled has no health to keep."""
        health = self.health.get(name)
        if health is not None:
            mono = time.monotonic()
            health.alive_monotonic = mono
            health.runs += 1
            self.metrics.set("miner_job_seconds", round(mono - started, 3), stage=name)
            if failed is not None:
                health.last_error, health.last_error_at = f"{type(failed).__name__}: {failed}", self.options.clock()
                self.metrics.inc("miner_job_runs_total", stage=name, outcome="error")
                self._store_failing(name, failed)
                return
            health.last_ok, health.last_ok_monotonic = self.options.clock(), mono
            self.metrics.inc("miner_job_runs_total", stage=name, outcome="ok")
            self.metrics.set("miner_job_last_success_timestamp_seconds", time.time(), stage=name)

    def job_retention(self, now: datetime) -> None:
        settings, store = self.config.store, self._store("retention")
        cutoff = now - timedelta(days=settings.retention_days)
        if (held := store.hold_prune(cutoff, now)) is not None:
            # Nothing at all: the alert history's times are the same clock's. Each run says so again (4 a day).
            log.warning("%s", held_prune_message(held))
            return
        removed = store.prune_posts(cutoff, stop=self._stop)
        if removed:
            log.info("retention: pruned %s older than %s", counted(removed, "post"),
                     counted(settings.retention_days, "day"))
        buckets = 0 if self._stop.is_set() else store.prune_buckets(now - timedelta(days=settings.bucket_days),
                                                                    stop=self._stop)
        if buckets:
            log.info("retention: pruned %s older than %s", counted(buckets, "bucket row"),
                     counted(settings.bucket_days, "day"))
        # The alert history is kept as long as the bucket rows its charts were drawn from.
        notifications, silences = (0, 0) if self._stop.is_set() else store.prune_alert_history(
            now - timedelta(days=settings.bucket_days), stop=self._stop)
        if notifications or silences:
            log.info("retention: pruned %s and %s older than %s", counted(notifications, "finished notification"),
                     counted(silences, "ended silence"), counted(settings.bucket_days, "day"))
        # And the record of failed polls, as operational history.
        polls = 0 if self._stop.is_set() else store.prune_poll_failures(now - timedelta(days=settings.bucket_days),
                                                                        stop=self._stop)
        if polls:
            log.info("retention: pruned %s older than %s", counted(polls, "failed poll record"),
                     counted(settings.bucket_days, "day"))
        if self._stop.is_set():
            # Each batch is committed: the next start's retention run goes on from there.
            log.info("retention: stopped; what is left to prune goes at the next run")

"""`miner run`: the background service. APScheduler 3 jobs run the pipeline's stages on their intervals.

Each job kind runs one at a time (``max_instances=1``, ``coalesce``) on its own store connection; the store's
transactions make every batch all-or-nothing, so SIGKILL at any moment loses no committed post and repeats
no notification. A stop (SIGTERM, SIGINT, or a reload's SIGHUP: see :mod:`miner.service_reload`) shuts the scheduler
down and waits for running jobs to finish their batch. A store file deleted or replaced under the running service
stops it with an error (after saving a copy of what it held).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.schedulers.background import BackgroundScheduler

from miner.alerts.unprepared import UnpreparedAlerts
from miner.config import Config
from miner.errors import MinerError, StoreError
from miner.held_polls import HeldPolls
from miner.http_api import HttpApi
from miner.http_listener import Listener
from miner.metrics import JOB_OUTCOMES, SOURCE_COUNTERS, Metrics
from miner.pipeline import Pipeline
from miner.read_api import ReadApi
from miner.records import Decision
from miner.report_intake import ReportIntake
from miner.service_endpoint import ServiceEndpoint
from miner.service_handover import warn_lost
from miner.service_jobs import ServiceJobs
from miner.service_lock import ServiceLock
from miner.service_notify import Notifier
from miner.service_schedule import QUIET_SKIPS, CatchUpInterval, PartTicks
from miner.service_scrape import ServiceScrape
from miner.service_starting import Starting
from miner.service_stores import JobStores
from miner.service_switch import ServiceSwitch
from miner.stop_event import StopEvent
from miner.store import Store
from miner.timeutil import counted, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobSpec:
    name: str
    every: float  # seconds


JOBS = (
    JobSpec("collect", 15.0),  # checks which sources are due; each source keeps its own interval
    JobSpec("process", 30.0),  # classify new posts, recount buckets, step detectors, track incidents
    JobSpec("alerts", 30.0),  # plan notifications, enqueue due digests, dispatch the outbox
    JobSpec("retention", 6 * 3600.0),
)
# The clock going back more than this (seconds) restarts the job schedule; smaller steps only delay jobs as much.
CLOCK_STEP_BACK = 5.0


@dataclass
class JobHealth:
    last_ok: datetime | None = None
    last_ok_monotonic: float | None = None  # freshness is measured on this: the wall clock may step
    last_error: str | None = None
    last_error_at: datetime | None = None
    runs: int = 0
    # A run ended (or a batch of the process job's classified, a part of the alerts job's backlog sent): systemd's
    # watchdog is pinged while this is recent.
    alive_monotonic: float | None = None


@dataclass
class ServiceOptions:
    jobs: tuple[JobSpec, ...] = JOBS
    clock: Callable[[], datetime] = utcnow
    http: bool | None = None  # None: as [server].enabled says
    http_port: int | None = None
    extra_endpoints: dict[str, Any] = field(default_factory=dict)
    notify: Notifier = field(default_factory=Notifier)  # systemd's, from `miner run`'s environment; none by default


class Service(ServiceJobs, ServiceScrape, ServiceSwitch, ServiceEndpoint):
    def __init__(self, config: Config, db_path: str | Path, options: ServiceOptions | None = None) -> None:
        self.config = config
        self.db_path = str(db_path)
        self.options = options or ServiceOptions()
        self.metrics = Metrics()
        for counter in SOURCE_COUNTERS:
            self.metrics.zero(counter, ({"source": name} for name in config.polled_sources))
        self.metrics.zero("miner_job_runs_total", ({"stage": job.name, "outcome": outcome}
                                                   for job in self.options.jobs for outcome in JOB_OUTCOMES))
        self.health: dict[str, JobHealth] = {job.name: JobHealth() for job in self.options.jobs}
        self._clock_behind: datetime | None = None  # set by each run of the process job, read by /healthz
        self.lock = ServiceLock(self.db_path)
        self._handing_over = False  # a reload's stop, or a start with what it handed over: lock and held polls are kept
        self._listener: Listener | None = None  # the HTTP endpoint's: handed over at the start, or kept at the stop
        self._keep_listener = False  # a reload's stop, or a start on a listener handed over: it is kept open
        self._bound_early = False  # _listener is the one `miner run` bound before its imports (listen_on)
        self._finish_later = False  # a reload's stop: finish_stop once the new service accepts
        self._answering: HttpApi | None = None  # the HTTP server stopped, its requests still answered until finish_stop
        self._stop = StopEvent()  # set by a signal's handler (request_stop), maybe within run_started's wait on it
        self.starting = Starting(self.healthz, self.metrics, self.options.clock, self.options.notify.status)
        self._stores = JobStores(self.db_path, self._stop.set, self._stop)
        self._scheduler: BackgroundScheduler | None = None
        self._http: HttpApi | None = None  # the endpoint of the service started
        self._opening: HttpApi | None = None  # the endpoint answering while the service starts (service_starting)
        self.read_api: ReadApi | None = None
        self._poller: Any = None
        self._classifier: Any = None
        self._reports = ReportIntake(config.services, config.server.report_rate_per_hour, self.metrics,
                                     self.options.clock, lambda post, now: self._pipeline("http").ingest([post], now),
                                     lambda: self._stores.forget("http"), self.db_path)
        self._clock_mark: tuple[datetime, float] | None = None  # (clock, monotonic) at the last look
        self._started: float | None = None  # monotonic, when the scheduler started: a first run's grace counts from it
        self._held = HeldPolls()  # polls the store did not take (a full disk), stored first once it does
        self._collected = threading.Event()
        self._first_collect: float | None = None  # monotonic, when the first collect round's last run ended
        self._first_withdrawn: set[str] = set()  # see ServiceJobs._first_round_stored
        self._job_names = frozenset(job.name for job in self.options.jobs)
        self._part_started: dict[str, float] = {}  # see ServiceJobs._part_started
        self._part_ticks = PartTicks()
        self._unprepared = UnpreparedAlerts()  # see ServiceJobs.job_alerts
        # job -> (cause, StoreError.same_as) of its last run's store failure; not the error itself, which holds its
        # frames
        self._store_errors: dict[str, tuple[str, str]] = {}
        self._store_errors_guard = threading.Lock()
        # job -> what its last run failed with, if it failed: its type and message (a store error's cause and same_as)
        self._failures: dict[str, tuple[str, ...]] = {}
        self._scrape_error: str | None = None  # the store error the last /metrics scrape logged, while it lasts
        self._scrape_guard = threading.Lock()  # held by the scrape reading the store
        # miner_verdicts_other_model and miner_verdicts_other_settings as last counted
        self._other_verdicts: tuple[str, Decision, datetime, int, int] | None = None
        # miner_source_up of the sources polled since the start (1.0: ok); the others' comes from the store.
        self._source_up: dict[str, float] = {}
        self._source_up_guard = threading.Lock()

    # Start-up: fail fast with one clear error (lock, files, port, store, model) before any job runs. -------

    def start(self) -> None:
        from miner.config_files import (
            check_named_files,
            warn_smtp_setup,
            warn_unalerted,
            warn_unset_alert_env,
            warn_unusable_proxies,
        )

        if not self.lock.held:  # held already when a reload handed it over
            self.lock.acquire()
        try:
            prepared = self.prepared  # by a reload, while the service before ran (ServiceSwitch.prepare)
            if not prepared:
                check_named_files(self.config)  # the model folder and CA file, with their key and line
            # Before the slow part: a liveness probe found the port refused for all of it and had the service killed
            # mid-upgrade (service_starting). A reload's start, prepared, is quick: it answers once started, on the
            # socket handed over, its connections waiting in the backlog meanwhile, as they did.
            if self._listener is None or self._bound_early:
                self._opening = self._open_endpoint()
            # The store is checked first but upgraded only once the model has loaded: a new version refusing a
            # model folder of an older layout left the store upgraded all the same, so going back to the version
            # that ran took restoring a backup (versions after 0.1.0 refuse a store a newer one has upgraded).
            if self.db_path != ":memory:":
                self.starting.set("store_check", "checking the store")
                probe = Store.open(self.db_path, upgrade=False)
                try:
                    # A SIGTERM ends a wait for another's upgrade.
                    probe.database.check_writable(self._stop, self.starting.set)
                finally:
                    probe.close()
            if not prepared:
                self.starting.set("model_load", "loading the model")
                self.load_parts()
            warn_unset_alert_env(self.config, log)
            warn_smtp_setup(self.config, log)
            warn_unusable_proxies(self.config, log)
            warn_unalerted(self.config, log)
            self.starting.set("store_check", "opening the store")
            self._stores.get("startup", self.starting.set).database.check_writable()
            # For `miner status`, another process, and /metrics: which model gave the verdicts from now on.
            try:
                self._store("startup").record_serving_model(self._classifier.version, self.options.clock(),
                                                            self._classifier.decision)
            except StoreError as exc:  # a damaged page the jobs may never read: they report the store, not this
                log.warning("cannot record the model loaded, which `miner status` shows: %s", exc)
            self.metrics.replace("miner_model_info", {(("version", self._classifier.version),): 1.0})
            self._stores.watch_file()
            # Started as far as the endpoint goes: a reload's new service opens its endpoint only here, on the socket
            # handed over, and the requests waiting in its backlog are the started service's to answer, as before.
            self.starting.started()
            self._http, self._opening = self._opening or self._open_endpoint(), None
            # No misfire grace: a run due more than its grace ago (the machine suspended, the clock stepped
            # forward) was skipped with a warning, and retention waited another 6 h; coalesced, it runs once, late.
            scheduler = BackgroundScheduler(timezone="UTC", job_defaults={
                "max_instances": 1, "coalesce": True, "misfire_grace_time": None})
            now = datetime.now().astimezone()
            for job in self.options.jobs:
                scheduler.add_job(self._run_job, CatchUpInterval(seconds=job.every, timezone="UTC"), args=(job.name,),
                                  id=job.name, name=job.name, next_run_time=now)
            scheduler.add_listener(self._on_skipped, EVENT_JOB_MAX_INSTANCES)
            logging.getLogger("apscheduler.scheduler").addFilter(QUIET_SKIPS)
            self._started = time.monotonic()
            scheduler.start()
            self._scheduler = scheduler
            self._handing_over = self._keep_listener = False
        except BaseException:
            self.stop()
            raise
        sources = sum(1 for s in self.config.sources if s.enabled)
        log.info("miner service started: store %s, model %s, %s", self.db_path, self._classifier.version,
                 counted(sources, "source"))
        self.options.notify.watch(self.stuck)
        self.options.notify.ready(f"running: model {self._classifier.version}, {counted(sources, 'source')}")

    def run_started(self, until: Callable[[], bool] | None = None) -> None:
        """Once :meth:`start` has succeeded: block until :meth:`request_stop` (a signal's handler calls it) or
        ``until``, asked once a second, says to stop; then stop gracefully. Signals are :mod:`miner.service_reload`'s
        to handle."""
        try:
            while not self._stop.wait(1.0):
                self._stores.lost()  # sets _stop when the store file is gone
                self._clock_went_back()
                if until is not None and until():
                    break
        finally:
            if not self._handing_over:  # a reload's stop is told as RELOADING (service_reload)
                self.options.notify.stopping()
            log.info("stopping: waiting for running jobs to finish their batch")
            self.stop()
            log.info("stopped")
        if self._stores.lost_reason is not None:
            raise StoreError(self._stores.lost_reason)  # exit 1: a supervisor (and its operator) sees the failure

    def request_stop(self) -> None:
        """Ask :meth:`run_started` to stop; safe in a signal handler, as it only sets an event."""
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()  # a running alerts job sends no further notification, a collect round starts no poll
        self.options.notify.unwatch(self.stuck)
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
        if self._poller is not None:
            self._store_carried_at_stop()
            self._poller.close()  # the polls still running are given up and aborted: due again at once
            self._poller = None
        if self._opening is not None:  # a start that failed, or was stopped, with its endpoint open
            self._http, self._opening = self._opening, None
        # After the polls' grace: stopped first, the endpoint refused connections (/healthz, reports, the board)
        # for the whole of it, 5 s of each reload while a source hung, on top of the new service's start.
        if self._http is not None:
            kept, at = self._http.stop(self._keep_listener, wait=False), self._listen_at()
            if kept is not None and at is not None and self._listener is None:  # a reload's: for handover()
                self._listener = Listener(*at, kept)
            self._answering, self._http = self._http, None
        self._store_held_at_stop()
        # A reload's stop leaves the requests being answered to finish_stop (a lost store's copy is saved now).
        if not self._finish_later or self._stores.lost_reason is not None:
            self.finish_stop()
        if not self._handing_over:
            self.lock.release()

    def finish_stop(self) -> None:
        """The end of :meth:`stop`: the requests still being answered waited for, then the store closed. A reload
        calls it once the new service accepts: waited for before, a client still sending its request (5 s at most
        for a head) kept the endpoint from accepting for as long."""
        if self._answering is not None:
            self._answering.wait_answered()
            self._answering = None
        self._stores.close_all()

    def _store_carried_at_stop(self) -> None:
        """Store the polls carried over from the last collect run that end within the stop's grace (see
        Poller.stop_grace), as a run stopped mid-way stores them; a reload's new service starts a new poller, which
        polls those still running again at its first run, as nothing of theirs was stored."""
        if not self._poller.pool.in_flight() or self._stores.lost_reason is not None:
            return
        try:
            reports = self._pipeline("collect").collect(self.options.clock(), self._poller, stop=self._stop,
                                                        held=self._held)
        except Exception as exc:  # the stop goes on; a store that takes no writes held them in _held
            log.error("stopping: the polls that ended in the grace could not be stored: %s", exc)
            return
        if polled := [r for r in reports if not r.late]:  # else nothing ended in the grace: the log says so
            # Silent before: a source's poll, its posts or its error, was in no collect line.
            log.info("stopping: stored the %s that ended in the grace: %s, %s (%s)", counted(len(polled), "poll"),
                     counted(sum(r.stored for r in reports), "new post"),
                     counted(sum(1 for r in polled if r.error), "error"), ", ".join(r.source for r in polled))

    def _store_held_at_stop(self) -> None:
        """One last try to store the polls held in memory (space may have been freed since the last round); what
        the store still does not take goes to the next service at a reload, or is lost with the process, and said
        so."""
        if not self._held.polls:
            return
        if self._stores.lost_reason is None:
            with contextlib.suppress(MinerError):
                Pipeline(self.config, self._store("collect"), self._classifier).store_held(self._held)
        if not self._handing_over:
            warn_lost(self._held)

    # Jobs ----------------------------------------------------------------------------------------------

    def _clock_went_back(self) -> bool:
        """Run every job now if the clock went back since the last look (once a second, from run_started).

        APScheduler 3 waits for each job's next run time on the wall clock: set back an hour (an NTP step, a VM
        restored from a snapshot), it would run no job for an hour, while /healthz, comparing the jobs' last
        success with that same clock, said ok. Run now, each job counts its interval from the new time.
        """
        now, mono = self.options.clock(), time.monotonic()
        mark, self._clock_mark = self._clock_mark, (now, mono)
        if mark is None or self._scheduler is None:
            return False
        back = (mark[0] + timedelta(seconds=mono - mark[1]) - now).total_seconds()
        if back <= CLOCK_STEP_BACK:
            return False
        log.warning("the clock went back %.0f s; running every job now so that none waits that long", back)
        for job in self.options.jobs:
            self._scheduler.modify_job(job.name, next_run_time=datetime.now(UTC))
        return True

    def _store(self, job: str) -> Store:
        return self._stores.get(job)

    def _pipeline(self, job: str) -> Pipeline:
        return Pipeline(self.config, self._store(job), self._classifier)

    def _on_skipped(self, event: JobSubmissionEvent) -> None:
        if self._part_ticks.hold(str(event.job_id)):
            log.debug("job %s: sending in parts at its next tick, which the next part does", event.job_id)
            return
        self.metrics.inc("miner_job_runs_total", stage=str(event.job_id), outcome="skipped")
        log.debug("job %s: still running at its next tick, which is skipped", event.job_id)

    def _run_job(self, name: str) -> None:
        health = self.health[name]
        started = self._part_started[name] = time.monotonic()
        try:
            getattr(self, f"job_{name}")(self.options.clock())  # ServiceJobs' job_collect, job_process, ...
        except Exception as exc:  # one failing job run must not kill the scheduler; it is retried next time
            health.last_error, health.last_error_at = f"{type(exc).__name__}: {exc}", self.options.clock()
            self.metrics.inc("miner_job_runs_total", stage=name, outcome="error")
            if isinstance(exc, StoreError):
                self._stores.forget(name)
            self._store_failing(name, exc if isinstance(exc, StoreError) else None)
            failure = (type(exc).__name__, *((exc.cause, exc.same_as) if isinstance(exc, StoreError) else (str(exc),)))
            if self._failures.pop(name, None) == failure:
                # A corrupt store (or a full disk) fails every run of every job until someone acts, and so does a
                # stored row a job cannot read (its traceback every 30 s): logged at each, the same error came every
                # 15 s from collect alone, and buried the rest of the log. /healthz and miner_store_error (for the
                # store's) still show it at every run.
                log.debug("job %s failed again: %s", name, exc)
            elif isinstance(exc, MinerError):
                log.error("job %s failed: %s", name, exc)
            else:
                log.exception("job %s failed", name)
            self._failures[name] = failure
        else:
            health.last_ok, health.last_ok_monotonic = self.options.clock(), time.monotonic()
            self.metrics.inc("miner_job_runs_total", stage=name, outcome="ok")
            self.metrics.set("miner_job_last_success_timestamp_seconds", time.time(), stage=name)
            failed = self._failures.pop(name, None)
            if (previous := self._store_failing(name, None)) is not None:
                log.info("job %s succeeded again: the store no longer fails it (%s)", name, previous[0])
            elif failed is not None:
                log.info("job %s succeeded again (it failed with %s)", name, failed[0])
        finally:
            health.runs, health.alive_monotonic = health.runs + 1, time.monotonic()
            took = time.monotonic() - started
            # Of a run sent in parts, its last part's: each part before it counted as a run (ServiceJobs._slice_ended).
            self.metrics.set("miner_job_seconds", round(time.monotonic() - self._part_started.pop(name), 3),
                             stage=name)
            log.debug("job %s took %.2f s", name, took)

    def _store_failing(self, job: str, error: StoreError | None) -> tuple[str, str] | None:
        """Show on /metrics which jobs the store fails and why (``error``: this run's store failure, None for none),
        until each succeeds again. Returns the cause and same_as of the job's previous run's store failure, None
        for none.

        A full disk was only in the log and /healthz's last_error: the metrics showed job errors and posts held, but
        not that the store was the cause, nor which cause (space, permissions, a lock), so an alert on them could
        not tell the operator what to do."""
        with self._store_errors_guard:
            previous = self._store_errors.pop(job, None)
            if error is not None:
                self._store_errors[job] = (error.cause, error.same_as)
            self.metrics.replace("miner_store_error", {(("cause", c), ("stage", j)): 1.0
                                                       for j, (c, _) in self._store_errors.items()})
        return previous

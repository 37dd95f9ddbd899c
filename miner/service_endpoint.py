"""The service's HTTP endpoint: opened where the config says (before the slow part of a first start, to answer while
the service starts: :mod:`miner.service_starting`), and the jobs' health it answers /healthz with.

A mixin of :class:`miner.service.Service`, which owns the jobs' health, the store connections and the listener.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from miner.config import Config
from miner.http_api import Endpoints, HttpApi
from miner.http_listener import Listener
from miner.read_api import ReadApi
from miner.report_intake import ReportIntake
from miner.service_starting import Starting
from miner.service_stores import JobStores
from miner.status import clock_behind, clock_behind_text
from miner.status_board import StatusBoard
from miner.store.clock import past_slack
from miner.timeutil import iso

if TYPE_CHECKING:
    from miner.service import JobHealth, JobSpec, ServiceOptions
    from miner.store import Store

log = logging.getLogger("miner.service")  # one logger for the service and its parts, as operators filter on it


class ServiceEndpoint:
    config: Config
    options: ServiceOptions
    health: dict[str, JobHealth]
    starting: Starting
    read_api: ReadApi | None
    _reports: ReportIntake
    _stores: JobStores
    _listener: Listener | None
    _http: HttpApi | None
    _opening: HttpApi | None
    _classifier: Any  # the Classifier loaded, None before the start loads it
    _started: float | None
    _clock_behind: datetime | None  # the process job's last look (ServiceJobs.job_process)

    if TYPE_CHECKING:
        def _store(self, job: str) -> Store: ...
        def _listen_at(self) -> tuple[str, int] | None: ...
        def metrics_text(self) -> str: ...

    def _open_endpoint(self) -> HttpApi | None:
        """The HTTP endpoint listening and answering (what it answers while the service starts: service_starting),
        or None where it does not listen."""
        if (at := self._listen_at()) is None:
            return None
        # The read API on a connection of its own, as the reports and scrapes each have.
        self.read_api = ReadApi(self.config, lambda: self._store("api"), lambda: self._stores.forget("api"),
                                self.options.clock)
        http = HttpApi(*at, Endpoints(self.healthz, self.metrics_text, self._reports.accept, self.read_api.answer,
                                      StatusBoard(self.read_api).page, self.starting.answer),
                       self.config.server.trusted_proxies, self.config.server.report_ipv6_prefix,
                       self.config.server.allowed_hosts, self.config.server.cache_seconds,
                       self._listener.sock if self._listener is not None else None)
        http.start()
        host, bound = http.address
        log.info("http endpoint on http://%s:%d%s", f"[{host}]" if ":" in host else host, bound,
                 "" if self.starting.phase is None else " (answering 503 \"starting\" until the service has started)")
        return http

    @property
    def http_address(self) -> tuple[str, int] | None:
        """Where the HTTP endpoint listens (host, port), None while it does not: the port bound, which for a configured
        port 0 is the one the kernel chose, as the log's `http endpoint on` line names it."""
        http = self._http or self._opening
        return http.address if http is not None else None

    def healthz(self) -> tuple[bool, dict[str, Any]]:
        """Healthy when every job has succeeded within its limit (_limit: three of its intervals and a minute, or for
        the alerts job what its run may take going on as it should), or has not had time to.
        A collect run returns within its interval, its slow polls carried over to the next (see
        CollectStage.collect): a source that does not answer does not hold it up.

        Degraded too while the process job's last run found the clock behind the store (``clock_behind``, with a
        ``reason``), and the clock still is: the detector steps no bucket and notifications wait, for every service,
        until someone sets the clock right. A restart mends it no more than a full disk (a failing job), but a
        monitor is what has to hear of it: the log said it once, and nothing else did."""
        now, mono = self.options.clock(), time.monotonic()
        stages: dict[str, Any] = {}
        ok = True
        for job in self.options.jobs:
            h = self.health[job.name]
            limit, _ = self._limit(job)
            # On the monotonic clock: a wall clock stepped a day forward made every job look a day late.
            fresh = h.last_ok_monotonic is not None and mono - h.last_ok_monotonic <= limit
            # As long as a later run would have: a first run stuck (a source that never answers, a store lock never
            # released) kept runs at 0, and /healthz said ok for as long as it hung.
            starting = h.runs == 0 and (self._started is None or mono - self._started <= limit)
            # last_error stays after the job succeeds again: its time tells a past failure from a current one.
            stages[job.name] = {"ok": fresh or starting, "last_ok": iso(h.last_ok) if h.last_ok else None,
                                "last_error": h.last_error,
                                "last_error_at": iso(h.last_error_at) if h.last_error_at else None, "runs": h.runs}
            ok = ok and (fresh or starting)
        model = self._classifier.version if self._classifier is not None else None
        if lost := self._stores.lost():
            return False, {"status": "failed", "error": lost, "now": iso(now), "model": model, "stages": stages}
        # Compared with the clock now, not at the run: set right since, it is not behind any more.
        newest = past_slack(self._clock_behind, now)
        behind = clock_behind(newest, now) if newest is not None else None
        reason = {"reason": clock_behind_text(behind)} if behind is not None else {}
        ok = ok and behind is None
        return ok, {"status": "ok" if ok else "degraded", **reason, "now": iso(now), "model": model,
                    "clock_behind": behind, "stages": stages}

    def stuck(self) -> str | None:
        """Why systemd's watchdog should not be pinged (service_notify), None while every job gets on: a job whose
        run has not ended for longer than /healthz's limit (a run hung, or the scheduler no longer starting them),
        counted from its last run's end (a run that failed ended too: a failure is /healthz's and the log's to show,
        a restart fixes none), a batch it classified, a part of a backlog it sent (the alerts job), or the
        scheduler's start."""
        if self._started is None:
            return None
        mono = time.monotonic()
        for job in self.options.jobs:
            alive = self.health[job.name].alive_monotonic
            since = mono - max(self._started, alive if alive is not None else self._started)
            limit, what = self._limit(job)
            if since > limit:
                return (f"the {job.name} job has not ended a run for {since:.0f} s, past its limit of {limit:.0f} s "
                        f"({what})")
        return None

    def _limit(self, job: JobSpec) -> tuple[float, str]:
        """Seconds a job may go without a run ended (stuck) or succeeded (healthz), and what they are: three of its
        intervals and a minute; for the alerts job, at least what its run may take going on as it should (a part of
        one interval, the tick before it, a send cut at alerts.slowest_send: smtp.timeout per SMTP command, 300 s at
        the defaults) and a minute: a send to a slow server within its timeouts had the service restarted mid-send."""
        limit = 3 * job.every + 60
        alerts = self.config.alerts
        if job.name == "alerts" and alerts.enabled and (bound := 2 * job.every + alerts.slowest_send + 60) > limit:
            return bound, "two of its intervals, its slowest send (alerts.slowest_send) and a minute"
        return limit, "three of its intervals and a minute"

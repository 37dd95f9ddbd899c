"""User reports posted to the service's `POST /report`: validated, rate-limited per client, stored one at a time.

The HTTP server answers on its own threads; each report is one small write through the pipeline's ingest, so
reports are taken one at a time, and a report that cannot get its turn soon is answered 503 rather than queued
(the server's connections are few, and `/healthz` and `/metrics` must stay answerable).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from miner.collectors.reports import RateLimiter, Report, ReporterHashes, report_post, validate_report
from miner.config import ServiceConfig
from miner.errors import InputError, MinerError, RateLimited, ReportsBusy, StoreError
from miner.log_throttle import LogThrottle
from miner.metrics import Metrics
from miner.records import Post
from miner.timeutil import counted

# The endpoint's logger, where the reports' failures have always been logged.
log = logging.getLogger("miner.http_api")

# Seconds a user report waits for the ones ahead of it, which are stored one at a time.
REPORT_WAIT = 5.0
# Reports being stored or waiting their turn at once; more are answered 503 at once. Each holds one of the endpoint's
# 32 connections (http_api.MAX_CONNECTIONS) while it waits: with the store locked by another writer (`miner prune` run
# by hand), 32 reporters at once held them all for REPORT_WAIT, and /healthz, /livez and /metrics were answered
# "too many connections" meanwhile. Stored in 2 ms each, 8 wait together only behind a store that holds them up.
REPORT_QUEUE = 8
# miner_reports_total's results, each written at 0 from the start (metrics.ZERO_AT_START).
RESULTS = ("accepted", "invalid", "rate_limited", "unavailable")


class ReportIntake:
    """``ingest`` stores one post at ``now``; ``store_failed`` is called when it raised, before the 503."""

    def __init__(self, services: Sequence[ServiceConfig], rate_per_hour: int, metrics: Metrics,
                 clock: Callable[[], datetime], ingest: Callable[[Post, datetime], object],
                 store_failed: Callable[[], None], store_name: str) -> None:
        self._services = services
        self._limiter = RateLimiter(rate_per_hour)
        self._authors = ReporterHashes()
        self._metrics = metrics
        metrics.zero("miner_reports_total", ({"result": result} for result in RESULTS))
        self._clock = clock
        self._ingest = ingest
        self._store_failed = store_failed
        self._store_name = store_name
        self.lock = threading.Lock()  # held by the report being stored
        self._queue = threading.BoundedSemaphore(REPORT_QUEUE)  # held by it and those waiting for the lock
        self._busy_log = LogThrottle()

    @property
    def clients(self) -> tuple[RateLimiter, ReporterHashes]:
        """What the intake knows of its clients: their rate limits, and the reporter key of the day."""
        return self._limiter, self._authors

    def take_over(self, clients: tuple[RateLimiter, ReporterHashes]) -> None:
        """Before any report: go on from the ``clients`` of a reload's service before, at this intake's rate."""
        self._limiter.take_over(clients[0])
        self._authors = clients[1]

    def accept(self, payload: object, client: str) -> dict[str, Any]:
        """The 202 answer's body; raises InputError (400), RateLimited (429) or MinerError (503)."""
        try:
            report = validate_report(payload, self._services)
        except InputError:
            self._count("invalid")
            raise
        if not self._queue.acquire(blocking=False):
            self._count("unavailable")
            raise self._busy()
        try:
            self._store_in_turn(report, client)
        finally:
            self._queue.release()
        self._count("accepted")
        return {"accepted": True, "service": report.service, "symptom": report.symptom}

    def _store_in_turn(self, report: Report, client: str) -> None:
        # A report facing a store locked by another writer waits out SQLite's busy timeout (10 s) before its 503:
        # unbounded, the reports queued behind it took 10 s more each, the tenth 100 s, each holding one of the
        # server's connections until /healthz was turned away too.
        if not self.lock.acquire(timeout=REPORT_WAIT):
            self._count("unavailable")
            raise StoreError(f"store {self._store_name} is busy: a report waited {REPORT_WAIT:g} s for the ones "
                             "before it")
        try:
            now_s = time.monotonic()
            if not self._limiter.allow(client, now_s):
                self._count("rate_limited")
                raise RateLimited(self._limiter.retry_after(client, now_s))
            now = self._clock()
            # One client's reports are one complainer per bucket, however many its rate limit lets through.
            self._ingest(report_post(report, now, self._authors.author(client, now)), now)
        except RateLimited:
            raise
        except MinerError:  # the store failed it: answered 503
            self._limiter.give_back(client)
            self._count("unavailable")
            self._store_failed()
            raise
        finally:
            self.lock.release()

    def _busy(self) -> ReportsBusy:
        """The error refusing a report at once; logged once a minute, with how many were refused so meanwhile: a crowd
        of reporters held up by a locked store, a report refused each, was a line of the log each."""
        busy = ReportsBusy(f"store {self._store_name} is busy: {REPORT_QUEUE} reports are being stored or waiting for "
                           "their turn")
        refused = self._busy_log.due()
        if refused is not None:
            log.error("report intake failed: %s; answered 503 (%slogged once a minute at most)", busy,
                      f"{counted(refused, 'report')} refused so since the last such line; " if refused else "")
        return busy

    def _count(self, result: str) -> None:
        self._metrics.inc("miner_reports_total", result=result)

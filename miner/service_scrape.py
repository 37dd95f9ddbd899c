"""What a `/metrics` scrape shows beyond the counters kept in-process: the gauges read from the store at its time.

A mixin of :class:`miner.service.Service`, which owns the store connections, the metrics and the guards.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from miner.config import Config
from miner.errors import MinerError
from miner.metrics import Metrics
from miner.pipeline import REPORTS_SOURCE
from miner.records import Decision
from miner.status import alert_channels, channel_status, clock_status
from miner.store.sources import current_warning

if TYPE_CHECKING:
    from miner.service import ServiceOptions
    from miner.store import Store

log = logging.getLogger("miner.service")  # one logger for the service and its parts, as operators filter on it

# How long miner_verdicts_other_model and miner_verdicts_other_settings are shown as counted: counting reads a day of
# posts with their latest verdict, 65-120 ms at 100,000 posts a day, under the scrape lock at every scrape of every
# Prometheus server, for a number that moves slowly (a reclassify forgotten after a model update stays for hours).
OTHER_MODEL_REFRESH = timedelta(minutes=1)


class ServiceScrape:
    config: Config
    metrics: Metrics
    options: ServiceOptions
    _classifier: Any  # the Classifier the service loaded, None before its start
    # (model version, decision, counted at, other model's count, other settings' count) of the last count
    _other_verdicts: tuple[str, Decision, datetime, int, int] | None
    _scrape_error: str | None
    _scrape_guard: threading.Lock
    _source_up: dict[str, float]
    _source_up_guard: threading.Lock

    if TYPE_CHECKING:
        def _store(self, job: str) -> Store: ...

    def metrics_text(self) -> str:
        """Counters kept in-process plus gauges read from the store at scrape time."""
        # One scrape at a time on the metrics connection, as the read API and the reports use theirs: scrapes at once
        # (a pair of Prometheus servers, a dashboard) ran their statements on it together, in one SQLite read
        # transaction that lasted while any of them ran, and answered from a snapshot older than their request.
        with self._scrape_guard:
            stored_up = self._store_gauges()
        with self._source_up_guard:
            up = {**stored_up, **self._source_up}
        self.metrics.replace("miner_source_up", {(("source", name),): value for name, value in up.items()})
        return self.metrics.render()

    def _store_gauges(self) -> dict[str, float]:
        """Set the gauges read from the store; returns miner_source_up of the sources as the store has them."""
        stored_up: dict[str, float] = {}
        try:
            # Not the reports' connection: one report waiting out a locked store there (up to SQLite's busy
            # timeout, 10 s) held it, and every scrape waited behind it, past Prometheus' own timeout.
            store = self._store("metrics")
            for queue, depth in store.queue_depths().items():
                self.metrics.set("miner_queue_depth", float(depth), queue=queue)
            open_rows = store.incidents(status="open")
            # Each configured service at 0 when none is open: with only the open ones written, a dashboard's
            # sum() of them said "no data" whenever all was well, and a service's panel broke off at each resolve.
            counts: dict[tuple[tuple[str, str], ...], float] = {
                (("service", s.name),): 0.0 for s in self.config.services}
            for row in open_rows:
                key = (("service", row["service"]),)
                counts[key] = counts.get(key, 0.0) + 1
            self.metrics.replace("miner_open_incidents", counts)
            # From the store, by the rule `miner status` shows them by: a 304 poll clears no warning, and a poll's
            # report does not say whether one stands. Of the sources polled, as miner_source_up.
            rows = {r["name"]: r for r in store.source_rows()}
            self.metrics.set("miner_prune_held", 1.0 if store.prune_held() else 0.0)
            # Read at each scrape: one entry of the index posts_source_dated, 5 us at a million posts.
            behind = clock_status(store, self.options.clock())
            self.metrics.set("miner_clock_behind_seconds", float(behind["seconds"]) if behind else 0.0)
            if self._classifier is not None:
                other_model, other_settings = self._other_verdicts_counted(store)
                self.metrics.set("miner_verdicts_other_model", float(other_model))
                self.metrics.set("miner_verdicts_other_settings", float(other_settings))
            failing = {c["channel"] for c in channel_status(store, self.config)}
            self.metrics.replace("miner_alert_channel_up", {
                (("channel", ch),): 0.0 if ch in failing else 1.0 for ch in alert_channels(self.config)})
            # From the store, as `miner status` shows it: after a restart, a source failing for good (polled again
            # only backoff_max later) has it at once.
            self.metrics.replace("miner_source_needs_action", {
                (("source", s.name),): 1.0 if rows.get(s.name, {}).get("needs_action_since") else 0.0
                for s in self.config.sources if s.enabled})
            self.metrics.replace("miner_source_warning", {
                (("source", s.name),): 1.0 if current_warning(rows.get(s.name, {})) else 0.0
                for s in self.config.sources if s.enabled})
            # A source not polled since the start has its latest poll's outcome in the store: after a restart, one
            # failing for good (a 404, polled again only backoff_max later) had no series to alert on until then.
            stored_up = {s.name: 0.0 if rows[s.name]["consecutive_failures"] else 1.0
                         for s in self.config.sources
                         if s.enabled and s.name in rows and (rows[s.name]["last_ok_at"]
                                                              or rows[s.name]["consecutive_failures"])}
        except MinerError as exc:
            # Once while it lasts, as for the jobs: Prometheus scrapes every 15 s or so.
            if str(exc) != self._scrape_error:
                log.error("metrics: cannot read the store: %s", exc)
            self._scrape_error = str(exc)
        else:
            self._scrape_error = None
        return stored_up

    def _other_verdicts_counted(self, store: Store) -> tuple[int, int]:
        """(miner_verdicts_other_model, miner_verdicts_other_settings): counted again once OTHER_MODEL_REFRESH has
        passed since the last count, or at once for another model version or decision than they were counted for.
        Under the scrape lock."""
        now, version, decision = self.options.clock(), self._classifier.version, self._classifier.decision
        last = self._other_verdicts
        # A clock set back counts again too: the count it kept might otherwise be shown until the clock caught up.
        if last is not None and last[:2] == (version, decision) and last[2] <= now < last[2] + OTHER_MODEL_REFRESH:
            return last[3], last[4]
        other_model = store.other_model_verdicts(now, version, skip_source=REPORTS_SOURCE)
        other_settings = store.other_decision_verdicts(now, version, decision, skip_source=REPORTS_SOURCE)
        self._other_verdicts = (version, decision, now, other_model, other_settings)
        return other_model, other_settings

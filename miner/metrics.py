"""In-process counters and gauges, rendered in the Prometheus text exposition format (version 0.0.4)."""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping

Labels = tuple[tuple[str, str], ...]

HELP = {
    "miner_posts_fetched_total": ("counter", "Posts returned by sources, before deduplication."),
    "miner_posts_stored_total": ("counter", "New posts stored."),
    "miner_poll_errors_total": ("counter", "Failed polls, per source."),
    "miner_polls_total": ("counter", "Polls, per source."),
    "miner_poll_gaps_total": ("counter", "Polls that missed posts for good (more was new than they could read), per "
                              "source: its counts are a floor."),
    "miner_posts_late_total": ("counter", "New posts stored dated before a post of the same poll that the store had "
                               "already, per source: its search indexed them (or its server delivered them) late."),
    "miner_source_late_seconds": ("gauge", "Of the source's latest poll that stored late posts, the most seconds "
                                  "one was dated before the newest post of that poll the store had already."),
    "miner_poll_seconds": ("gauge", "Seconds the source's latest poll stored took (a failed one too); one longer "
                           "than the source's interval has it polled less often."),
    "miner_polls_in_flight": ("gauge", "Polls started and not stored yet at the end of the latest collect run: "
                              "those still running are carried over to the next."),
    "miner_job_seconds": ("gauge", "Seconds each stage's (job's) latest run took (of the alerts job's backlog sent in "
                          "parts, its latest part); a collect run longer than the job's interval (15 s) delays "
                          "every source due meanwhile."),
    "miner_posts_classified_total": ("counter", "Posts classified."),
    "miner_classify_seconds_total": ("counter", "Time spent classifying."),
    "miner_reports_total": ("counter", "User reports by result: accepted, invalid (a field refused), rate_limited, "
                            "or unavailable (the store could not take it)."),
    # The jobs' label is `stage`, as /healthz names them: Prometheus sets `job` (the scrape's) on every series, and
    # renames a `job` of ours exported_job, where no rule asking for job="collect" finds it.
    "miner_job_runs_total": ("counter", "Scheduled job runs, per stage (job) and outcome (ok, error, or skipped: "
                             "the previous run was still going at the tick); each part of the alerts job's backlog "
                             "sent in parts counts as a run, and a tick its next part does is not skipped."),
    "miner_notifications_sent_total": ("counter", "Notifications delivered."),
    "miner_notifications_failed_total": ("counter", "Notifications failed for good: a permanent error, or given up."),
    "miner_queue_depth": ("gauge", "Work waiting: posts to classify, notifications to send."),
    "miner_posts_held": ("gauge", "Posts fetched and held in memory because the store took no writes (full disk)."),
    "miner_store_error": ("gauge", "1 per stage (job) whose last run the store failed (the alerts job's too while a "
                          "message the store failed to prepare waits), by cause: disk_full (or an I/O error), "
                          "read_only, locked, corrupt, cannot_open, lost (deleted or replaced), other."),
    "miner_open_incidents": ("gauge", "Incidents currently open, per service."),
    "miner_job_last_success_timestamp_seconds": ("gauge", "Unix time of each stage's (job's) last successful run."),
    "miner_source_up": ("gauge", "1 when the source's latest poll succeeded, else 0."),
    "miner_prune_held": ("gauge", "1 while the last retention prune was held back, deleting nothing, as its cutoff "
                         "was after the newest post a source dated (a clock ahead?); `miner status` says more."),
    "miner_clock_behind_seconds": ("gauge", "Seconds the newest post a source dated is after the current time, "
                                   "while more than 10 minutes (the clock is behind the store: the detector steps "
                                   "no bucket and notifications wait until it is set right); else 0."),
    "miner_config_reloads_total": ("counter", "Config reloads (SIGHUP) since the start, by result: success, or "
                                   "failure (the config refused, or the service not started with it)."),
    "miner_config_last_reload_successful": ("gauge", "1 when the last config reload (or the start) succeeded, 0 "
                                            "when it failed and the service runs on with the config before."),
    "miner_config_last_reload_success_timestamp_seconds": ("gauge", "Unix time of the last successful config "
                                                           "reload, or of the start."),
    "miner_starting": ("gauge", "1 while the service starts (the store checked and upgraded, the model loaded), before "
                       "its jobs run and its read API, status board and reports answer; 0 once started."),
    "miner_start_phase": ("gauge", "1, labelled with what the starting service is doing: start, store_check, "
                          "store_wait (for another process's upgrade), model_load, store_upgrade; none once "
                          "started."),
    "miner_model_info": ("gauge", "1, labelled with the version of the classifier model the service loaded."),
    "miner_verdicts_other_model": ("gauge", "Posts created in the last 24 h whose counted verdict is another model's "
                                   "than the one loaded: after a model update, until `miner reclassify --since` "
                                   "gives them its verdicts."),
    "miner_verdicts_other_settings": ("gauge", "Posts created in the last 24 h whose counted verdict is the loaded "
                                      "model's, decided at another threshold or early-exit setting than the "
                                      "service's: after a change of [classifier] settings, until `miner reclassify "
                                      "--since` decides them again."),
    "miner_alert_channel_up": ("gauge", "0 while the alert channel's server was found failing at its last attempt "
                               "(down, or a TLS certificate not trusted: `miner status` says which), until a message "
                               "gets through; else 1."),
    "miner_source_needs_action": ("gauge", "1 while the source's failed polls need someone to act (a 401, 404 or 410, "
                                  "a TLS certificate not trusted, a page that is no feed poll after poll: `miner "
                                  "status` says which), not a failure that passes by itself (a 429, a 5xx, a "
                                  "timeout); else 0."),
    "miner_source_warning": ("gauge", "1 while the source has a warning that stands (`miner status` shows it: a "
                             "URL moved for good, posts missed...), else 0."),
}


# Counters a rule takes the increase of (docs/operations.md: "alert on its increase"), written at 0 from the start.
# Written only once one had counted, the series began at 1 after each start or reload, and Prometheus takes a series'
# first sample as its start: increase() and rate() saw nothing of that first failure, the one alert a login refused
# since the restart that changed it brought.
# The classifier's counters too: a dashboard's rate() of them said "no data" on a service whose sources had brought
# nothing to classify since its start, not 0.
ZERO_AT_START = ("miner_notifications_sent_total", "miner_notifications_failed_total", "miner_posts_classified_total",
                 "miner_classify_seconds_total")
# Labelled counters are written at 0 for each label value known at the start, for the same reason (see zero): each
# polled source's counters (SOURCE_COUNTERS), each job's runs per outcome, each result of a report. A reload starts a
# new service, with new metrics: a source added has its series from it, and one removed none.
JOB_OUTCOMES = ("ok", "error", "skipped")
# Every counter per source, not the failed polls' alone: the first poll that missed posts for good (or stored late
# ones) after a start or reload began its series at 1, where an alert on its increase saw nothing, and a ratio of
# errors to polls had no polls for a source whose first poll failed.
SOURCE_COUNTERS = ("miner_polls_total", "miner_poll_errors_total", "miner_poll_gaps_total", "miner_posts_late_total",
                   "miner_posts_fetched_total", "miner_posts_stored_total")


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, dict[Labels, float]] = defaultdict(dict)
        for name in ZERO_AT_START:
            self._values[name][()] = 0.0

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._values[name]
            series[key] = series.get(key, 0.0) + value

    def zero(self, name: str, label_sets: Iterable[Mapping[str, str]]) -> None:
        """Write counter ``name`` at 0 for each of ``label_sets`` that has no value yet (ZERO_AT_START)."""
        with self._lock:
            series = self._values[name]
            for labels in label_sets:
                series.setdefault(tuple(sorted(labels.items())), 0.0)

    def set(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._values[name][tuple(sorted(labels.items()))] = value

    def replace(self, name: str, values: Mapping[Labels, float]) -> None:
        """Set a whole gauge family at once, dropping label sets that no longer exist."""
        with self._lock:
            self._values[name] = dict(values)

    def get(self, name: str, **labels: str) -> float:
        with self._lock:
            return self._values.get(name, {}).get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> str:
        lines = []
        with self._lock:
            snapshot = {k: dict(v) for k, v in self._values.items()}
        for name in sorted(set(snapshot) | set(HELP)):
            kind, text = HELP.get(name, ("untyped", ""))
            lines.append(f"# HELP {name} {text}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in sorted(snapshot.get(name, {}).items()):
                lines.append(f"{name}{_labels(labels)} {_number(value)}")
        return "\n".join(lines) + "\n"


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    # Python writes nan, inf and -inf, which parsers that keep to the format's spelling refuse.
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if float(value).is_integer() else repr(value)

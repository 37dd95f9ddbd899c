"""What /metrics and the log say while the service's alerts job sends a backlog in parts of one interval
(ServiceJobs.job_alerts): a real service with the alerts job alone, a real aiosmtpd server that answers each message
late, a real store."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from smtp_server import SmtpServer
from test_alerts_support import open_incident
from test_service import wait_for
from test_service_notify import alerting_service

from miner.service import Service
from miner.store import Store
from miner.timeutil import utcnow

EVERY = 2.0  # the alerts job's interval: a part sends for this long, then the message in flight
DELAY = 0.5  # each message's DATA answered this late: four messages at most in a part


@contextmanager
def backlog(tmp_path: Path, n: int, spare: int = 0) -> Iterator[tuple[Service, Store, SmtpServer]]:
    """A service running the alerts job alone, every EVERY s, with ``n`` messages due (one per incident, of the
    services Svc0...) to a mail server taking DELAY s for each, and ``spare`` services more without an incident; its
    store, open; the server. Stopped and closed after."""
    smtp = SmtpServer()
    smtp.inbox.delay = DELAY
    smtp.start()
    service, store = alerting_service(tmp_path, smtp, n, every=EVERY, spare=spare)
    service.start()
    try:
        yield service, store, smtp
    finally:
        service.stop()
        smtp.stop()
        store.close()


def test_each_part_of_an_alerts_backlog_counts_as_a_run_of_the_job(tmp_path: Path) -> None:
    # A run of 40 parts was one observation: miner_job_runs_total{outcome="ok"} and /healthz's runs stood still for
    # the whole backlog (half an hour at 30 s a part), and miner_job_seconds said 80 s (or 1800 s) at its end, as if
    # one tick's work had taken that long, though each part ends, and counts as the job's success, as a run does.
    n = 16
    with backlog(tmp_path, n) as (service, store, smtp):
        wait_for(lambda: len(smtp.inbox.messages) >= 10, timeout=60)  # into the third part at least
        ok = service.metrics.get("miner_job_runs_total", stage="alerts", outcome="ok")
        seconds = service.metrics.get("miner_job_seconds", stage="alerts")
        runs = service.healthz()[1]["stages"]["alerts"]["runs"]
        assert store.outbox_listing(["pending"]), "the backlog went out before the test looked"
        assert ok >= 2 and runs >= 2, (ok, runs)
        # A part's length: its interval, and the message then in flight; not the run's so far.
        assert 0 < seconds < EVERY + 4 * DELAY, seconds
        wait_for(lambda: len(store.outbox_listing(["sent"])) == n, timeout=60)


def test_ticks_that_find_an_alerts_backlog_going_in_parts_are_not_skipped_runs_and_a_part_too_slow_still_is(
        tmp_path: Path) -> None:
    # Each tick during a backlog sent in parts was counted in miner_job_runs_total{outcome="skipped"}, one a part
    # (one in 30 s for half an hour), though the next part, started at once, does the tick's work: an operator alerting
    # on skipped runs was paged for a job getting on as designed.
    n = 16
    with backlog(tmp_path, n, spare=1) as (service, store, smtp):
        def skipped() -> float:
            return service.metrics.get("miner_job_runs_total", stage="alerts", outcome="skipped")

        wait_for(lambda: len(smtp.inbox.messages) >= 10, timeout=60)  # into the third part at least
        during = skipped()
        assert len(store.outbox_listing(["pending"])) > 1, "the backlog went out before the test looked"
        assert during == 0
        wait_for(lambda: len(store.outbox_listing(["sent"])) == n, timeout=60)
        # A part still going an interval past its deadline is too slow for its interval, or stuck: its ticks are
        # skipped as they come, not held until it ends.
        after = skipped()
        smtp.inbox.delay = 4 * EVERY
        open_incident(store, f"Svc{n}", utcnow() - timedelta(minutes=2), posts=False, series=False)
        wait_for(lambda: skipped() > after, timeout=60)
        assert len(store.outbox_listing(["sent"])) == n, "the slow message went out before its ticks were counted"


def test_an_alerts_backlog_sent_in_parts_is_logged_at_its_first_part_and_at_its_end_not_at_each_part(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Each part that stopped at its deadline logged "N due outbox message(s) left for the next run", at INFO, every
    # 30 s for the whole backlog (60 lines for half an hour), though the next part starts at once: "the next run" was
    # not even when they would go. Now one line as the backlog starts, and one as it ends, with what went and how long.
    caplog.set_level(logging.INFO)
    n = 16
    with backlog(tmp_path, n) as (_service, store, _smtp):
        wait_for(lambda: len(store.outbox_listing(["sent"])) == n, timeout=60)
        # The summary comes as the last part ends, after its message's record.
        wait_for(lambda: any("the backlog went out" in r.getMessage() for r in caplog.records), timeout=10)
        sent = len(store.outbox_listing(["sent"]))
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO
             and (r.getMessage().startswith("alerts: ") or "left for the next" in r.getMessage())]
    assert len(lines) == 2, lines
    assert lines[0].startswith("alerts: a backlog of due messages goes out in parts of 2 s"), lines
    assert f"{sent} sent" in lines[1] and sent == n, (sent, lines)

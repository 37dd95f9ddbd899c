"""The service jobs' trigger: APScheduler 3's interval trigger, but catching up on the runs missed in one step; and the
filter that keeps APScheduler's warning for a skipped tick out of the log."""

from __future__ import annotations

import logging
from datetime import datetime

from apscheduler.triggers.interval import IntervalTrigger


class CatchUpInterval(IntervalTrigger):  # type: ignore[misc]  # APScheduler 3 has no type hints
    """Every ``seconds``; after a stretch without runs (the clock stepped forward, the machine suspended), the next
    run time is the first of the grid after now, reached by arithmetic.

    APScheduler steps through every run time missed, one call to the trigger each, and lists them all, to run only
    the last (the jobs coalesce): a clock stepped forward a year (a machine without a real-time clock, started before
    its time was set) was 2 million run times for the 15 s collect job, seconds of the scheduler's thread, while no
    job ran, and hundreds of MB, for the one run it then made.
    """

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        if previous_fire_time is not None and previous_fire_time + self.interval <= now:
            previous_fire_time += (now - previous_fire_time) // self.interval * self.interval
        return super().get_next_fire_time(previous_fire_time, now)  # type: ignore[no-any-return]


class _QuietSkips(logging.Filter):
    """Drops APScheduler's warning for a tick that found the job's previous run still going.

    That is the design (max_instances=1, coalesce: the tick is simply skipped), yet it was a WARNING at every such
    tick: a source answering slowly within its 20 s timeout made each 15 s collect round outlast its interval, and
    the log took a warning every round for as long as the source stayed slow. The skips are counted in
    miner_job_runs_total{outcome="skipped"} instead (see Service._on_skipped)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith("Execution of job")
                    and "maximum number of running instances" in record.msg)


QUIET_SKIPS = _QuietSkips()

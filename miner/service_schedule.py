"""The service jobs' trigger: APScheduler 3's interval trigger, but catching up on the runs missed in one step; the
filter that keeps APScheduler's warning for a skipped tick out of the log; and which ticks a job sending in parts
(the alerts job's backlog) did not skip."""

from __future__ import annotations

import logging
import threading
import time
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
    miner_job_runs_total{outcome="skipped"} instead (see Service._on_skipped, and PartTicks for those that are not)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith("Execution of job")
                    and "maximum number of running instances" in record.msg)


QUIET_SKIPS = _QuietSkips()


class PartTicks:
    """The ticks that find a job in a part of a run sent in parts (the alerts job's backlog: ServiceJobs.job_alerts),
    held until the part ends: the next part, started at once, does their work (they coalesce into it, as APScheduler
    coalesces missed runs), so they were not skipped; if none follows, they were, as a run outlasting its tick's.

    Counted at each tick, a backlog sent in parts of one interval skipped a tick at every part (one in 30 s, for half
    an hour), and an operator alerting on skipped runs was paged for a job getting on as designed. A part is meant to
    run past its tick by the message then in flight; one still going an interval after its deadline (a message
    taking that long, a store locked) is too slow or stuck, and a tick that finds it so is skipped at once.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()  # ticks come on the scheduler's thread, parts on the job's
        self._parts: dict[str, float] = {}  # job -> time.monotonic() until which a tick finding its part is held
        self._held: dict[str, int] = {}

    def begin(self, job: str, deadline: float, every: float) -> None:
        """A part of ``job`` starts, to claim nothing after ``deadline`` (a time.monotonic()), every ``every`` s."""
        with self._guard:
            self._parts[job], self._held[job] = deadline + every, 0

    def hold(self, job: str) -> bool:
        """A tick found ``job`` running: True where it is held, to count (or not) at the part's end."""
        with self._guard:
            until = self._parts.get(job)
            if until is None or time.monotonic() >= until:
                return False
            self._held[job] += 1
            return True

    def end(self, job: str, more: bool) -> int:
        """The part of ``job`` ended; ``more``: another part starts at once. Returns the ticks held that it skipped."""
        with self._guard:
            self._parts.pop(job, None)
            held = self._held.pop(job, 0)
        return 0 if more else held

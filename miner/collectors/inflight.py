"""The polls of a :class:`~miner.collectors.poller.Poller` in flight across collect runs (:class:`PollPool`).

A collect round that waited for its last poll lasted as long as its slowest source (up to its timeout, 600 s at
most): one server that hung for 120 s made every other source's real interval 120 s, as the next round started
only then. The pool's ``max_workers`` threads live as long as the poller; a collect run starts the due sources
that are not in flight, stores what ends for a while, and returns; the polls still running are carried over, and
a later run stores each with the round time that started it (see CollectStage.collect).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from miner.collectors.base import utc_now
from miner.config import SourceConfig
from miner.errors import SourceError
from miner.records import SourceState
from miner.timeutil import counted

if TYPE_CHECKING:
    from miner.collectors.poller import Poller, PollOutcome

log = logging.getLogger("miner.collectors.poller")

# How often a run waiting for polls looks whether it was asked to stop.
_STOP_CHECK_S = 0.1


@dataclass(frozen=True)
class Flight:
    """A poll asked for by a collect run: its source, and the run's round time ``now`` and monotonic ``clock``."""

    source: SourceConfig
    state: SourceState | None
    now: datetime
    clock: float
    host: str


@dataclass(frozen=True)
class Landed:
    """A poll that has ended, to be stored by a collect run (maybe a later one than the run that started it)."""

    flight: Flight
    outcome: PollOutcome
    ended: float  # monotonic

    @property
    def answered(self) -> datetime:
        """When the poll ended, on its round's clock, in whole seconds as the store keeps its times: a quick poll's
        next one is planned as from its round start."""
        return self.flight.now + timedelta(seconds=int(self.ended - self.flight.clock))


class PollPool:
    """Up to ``max_workers`` polls at once, at most ``per_host_concurrency`` per host, each source's one at a time.

    Polls are asked for with :meth:`start` and their outcomes taken with :meth:`landed`, on the thread that stores
    them. A source is in flight from :meth:`start` until its outcome is taken, and is not started again meanwhile,
    so that one source's polls are stored in the order they were made. Polls not started when a :meth:`landed`
    ends are withdrawn: their sources are still due at the next run, which starts them with its own round time.
    The threads are daemons, and the poller's close aborts the polls it gives up (at a stop, a reload), whose threads
    then end at once: a server that hangs holds neither a thread nor a connection past the poller's close.
    """

    def __init__(self, poller: Poller) -> None:
        self._poller = poller
        self._cv = threading.Condition()
        self._pending: deque[Flight] = deque()
        self._running: dict[str, tuple[Flight, float]] = {}  # source -> its flight, and monotonic when it started
        self._landed: deque[Landed] = deque()
        self._hosts: dict[str, int] = {}  # polls running per host
        self._workers = 0
        self._closed = False
        self._give_up_at: float | None = None  # monotonic: the stop's grace ends
        self._given_up = False
        self.withdrawn: set[str] = set()  # the sources the last landed() withdrew, not started: due at the next run

    def in_flight(self) -> set[str]:
        """The sources asked for whose outcome has not been taken yet."""
        with self._cv:
            return ({f.source.name for f in self._pending} | set(self._running)
                    | {x.flight.source.name for x in self._landed})

    def oldest(self) -> float | None:
        """When (monotonic) the run that started the oldest poll in flight began, or None."""
        with self._cv:
            flights = [f for f, _at in self._running.values()] + [x.flight for x in self._landed] + list(self._pending)
            return min((f.clock for f in flights), default=None)

    def running_for(self) -> list[tuple[str, float]]:
        """The polls running and for how many seconds, longest first."""
        mono = time.monotonic()
        with self._cv:
            return sorted(((name, mono - at) for name, (_f, at) in self._running.items()), key=lambda p: -p[1])

    def start(self, jobs: Sequence[tuple[SourceConfig, SourceState | None]], now: datetime, clock: float) -> list[str]:
        """Ask for a poll of each source of ``jobs`` not in flight, on the round time ``now`` (``clock``: monotonic
        then). Returns the names of the sources asked for."""
        from miner.collectors.poller import interleave_hosts

        busy = self.in_flight()
        fresh = [job for job in jobs if job[0].name not in busy]
        flights = [Flight(fresh[i][0], fresh[i][1], now, clock, self._poller.host_key(fresh[i][0]))
                   for i in interleave_hosts(fresh)]
        with self._cv:
            if self._closed:
                return []
            self._pending.extend(flights)
            while self._workers < min(self._poller.settings.max_workers, len(self._pending) + len(self._running)):
                threading.Thread(target=self._work, name=f"miner-collect-{self._workers}", daemon=True).start()
                self._workers += 1
            self._cv.notify_all()
        return [f.source.name for f in flights]

    def landed(self, until: float | None = None, stop: threading.Event | None = None) -> Iterator[Landed]:
        """Yield each poll's outcome as it ends (and first those that ended since the last call), until none is in
        flight, or ``until`` (monotonic) has passed: the polls still running then are carried over. Once ``stop``
        is set no further poll starts, and the polls running get the poller's ``stop_grace`` seconds from the first
        stop seen; then they are given up (nothing of theirs is to be stored)."""
        try:
            while True:
                with self._cv:
                    while True:
                        limit = until
                        if stop is not None and stop.is_set():
                            self._pending.clear()
                            if self._give_up_at is None:
                                self._give_up_at = time.monotonic() + self._poller.stop_grace
                            limit = self._give_up_at if limit is None else min(limit, self._give_up_at)
                        if self._landed:
                            item = self._landed.popleft()
                            break
                        if not self._running and not self._pending:
                            return
                        left = None if limit is None else limit - time.monotonic()
                        if left is not None and left <= 0:
                            if stop is not None and stop.is_set() and not self._given_up:
                                self._given_up = True  # said once, not again by the stop's last call
                                log.info("stop requested: %s still in flight given up after %g s",
                                         counted(len(self._running), "poll"), self._poller.stop_grace)
                            return
                        wait = left if stop is None else min(left if left is not None else _STOP_CHECK_S,
                                                             _STOP_CHECK_S)
                        self._cv.wait(wait)
                yield item
        finally:
            with self._cv:
                self.withdrawn = {f.source.name for f in self._pending}
                self._pending.clear()

    def close(self) -> None:
        """Give up every poll in flight: none will be stored, and no further poll starts. The poller, which calls
        this, then aborts the polls running (closed first, so that their failures are no warning)."""
        with self._cv:
            self._closed = True
            self._pending.clear()
            self._cv.notify_all()

    def _next(self) -> Flight | None:
        """The first poll asked for whose host has room, taken out of the queue; None when closed."""
        limit = self._poller.settings.per_host_concurrency
        with self._cv:
            while not self._closed:
                for flight in self._pending:
                    if self._hosts.get(flight.host, 0) < limit:
                        self._pending.remove(flight)
                        self._hosts[flight.host] = self._hosts.get(flight.host, 0) + 1
                        self._running[flight.source.name] = (flight, time.monotonic())
                        return flight
                self._cv.wait()
        return None

    def _work(self) -> None:
        # A worker that died with an error was still counted: once max_workers had, no poll started again, and
        # `miner collect --once` waited forever for the polls asked for.
        try:
            while (flight := self._next()) is not None:
                started, clock = utc_now(), time.monotonic()
                outcome: PollOutcome | None = None
                try:
                    outcome = self._poller._outcome(flight.source, flight.state, started, clock)
                except Exception as exc:  # past the poller's own handling (a MemoryError building the outcome)
                    log.exception("source %s: poll failed unexpectedly", flight.source.name)
                    outcome = _failed(flight, exc, started, clock)
                finally:
                    with self._cv:
                        self._hosts[flight.host] -= 1
                        del self._running[flight.source.name]
                        if outcome is not None and not self._closed:  # none: not even its error (memory)
                            self._landed.append(Landed(flight, outcome, time.monotonic()))
                        self._cv.notify_all()
        finally:
            with self._cv:
                self._workers -= 1  # the next start() starts another in its place


def _failed(flight: Flight, exc: Exception, started: datetime, clock: float) -> PollOutcome | None:
    """The error of a poll that raised past the poller's own handling, stored as the source's with its backoff, as a
    collector's bug is: with nothing stored, the source was polled again at every run (a traceback each time), past
    its interval, and shown nowhere but the log. None when even that cannot be made (memory): due again at once."""
    from miner.collectors.poller import PollOutcome

    try:  # the exception's name only: its text may be what raised
        return PollOutcome(flight.source.name, started, time.monotonic() - clock, error=SourceError(
            f"internal error: the poll failed with {type(exc).__name__} (see the log)"))
    except Exception:
        return None

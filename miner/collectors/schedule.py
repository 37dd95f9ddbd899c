"""When to poll a source next: its interval after success, capped exponential backoff with jitter after
failures, and never sooner than the server's Retry-After. Pure: ``now`` and ``rng`` are passed in."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from miner.collectors.settings import CollectSettings
from miner.config import SourceConfig


class Random(Protocol):
    def random(self) -> float: ...


def backoff_seconds(consecutive_failures: int, settings: CollectSettings, rng: Random) -> float:
    """Base * 2^(failures-1), capped at backoff_max, then shortened by up to ``backoff_jitter`` at random
    so that sources failing together (one provider down) do not retry in lockstep."""
    exponent = min(max(consecutive_failures - 1, 0), 32)
    delay = min(settings.backoff_max, settings.backoff_base * (2.0**exponent))
    return delay * (1.0 - settings.backoff_jitter * rng.random())


def next_poll_at(
    source: SourceConfig,
    now: datetime,
    consecutive_failures: int,
    retry_after: float | None,
    settings: CollectSettings,
    rng: Random,
    *,
    permanent: bool = False,
    answered: datetime | None = None,
) -> datetime:
    """The time of the next poll.

    Success (``consecutive_failures == 0``): ``source.interval`` after ``now`` (the poll's round began). Failure:
    the longer of the interval and the jittered backoff, so a failing source is never polled more often than a
    healthy one; a permanent error (bad credentials, 404) waits the full ``backoff_max``. Never before Retry-After.

    The backoff and Retry-After count from ``answered`` (default ``now``), when the poll ended: a server's "retry
    after 30 s" is 30 s after its answer, and a poll that waited its turn in a long round, or its server's answer
    (up to its timeout), was retried at once when they counted from the round's start.
    """
    answered = now if answered is None else max(now, answered)
    if consecutive_failures <= 0:
        at = now + timedelta(seconds=float(source.interval))
    else:
        wait = settings.backoff_max if permanent else backoff_seconds(consecutive_failures, settings, rng)
        at = max(now + timedelta(seconds=float(source.interval)), answered + timedelta(seconds=wait))
    if retry_after is not None:
        at = max(at, answered + timedelta(seconds=retry_after))
    return at

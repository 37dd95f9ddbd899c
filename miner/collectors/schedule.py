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
) -> datetime:
    """The time of the next poll.

    Success (``consecutive_failures == 0``): ``source.interval`` later. Failure: the longer of the interval
    and the jittered backoff, so a failing source is never polled more often than a healthy one; a
    permanent error (bad credentials, 404) waits the full ``backoff_max``. Never before Retry-After.
    """
    if consecutive_failures <= 0:
        delay = float(source.interval)
    elif permanent:
        delay = max(float(source.interval), settings.backoff_max)
    else:
        delay = max(float(source.interval), backoff_seconds(consecutive_failures, settings, rng))
    if retry_after is not None and retry_after > delay:
        delay = retry_after
    return now + timedelta(seconds=delay)

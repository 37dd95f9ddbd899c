"""The throttle that keeps a recurring condition to one line of the log a minute."""

from __future__ import annotations

from miner.log_throttle import EVERY, LogThrottle


class Clock:
    """A monotonic clock the test moves: on the real one, a loaded runner's pause between two calls made a burst
    look like a quiet spell."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_first_occurrence_is_logged_then_the_rest_of_the_minute_is_counted_for_the_next_line() -> None:
    clock = Clock()
    throttle = LogThrottle(clock=clock)
    assert throttle.due() == 0  # the first line has no "since"
    assert [throttle.due() for _ in range(4)] == [None] * 4
    clock.now += EVERY - 0.5
    assert throttle.due() is None  # still within the minute
    clock.now += 0.5  # a minute after the first line
    assert throttle.due() == 6  # the five kept quiet and this one
    assert throttle.due() is None


def test_a_quiet_spell_longer_than_the_interval_logs_the_next_occurrence_alone() -> None:
    clock = Clock()
    throttle = LogThrottle(every=0.05, clock=clock)
    assert throttle.due() == 0
    clock.now += 0.1
    assert throttle.due() == 1

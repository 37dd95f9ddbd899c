"""The throttle that keeps a recurring condition to one line of the log a minute."""

from __future__ import annotations

import time

from miner.log_throttle import LogThrottle


def test_the_first_occurrence_is_logged_then_the_rest_of_the_minute_is_counted_for_the_next_line() -> None:
    throttle = LogThrottle(every=0.2)
    assert throttle.due() == 0  # the first line has no "since"
    assert [throttle.due() for _ in range(5)] == [None] * 5
    time.sleep(0.25)
    assert throttle.due() == 6  # the five kept quiet and this one
    assert throttle.due() is None


def test_a_quiet_spell_longer_than_the_interval_logs_the_next_occurrence_alone() -> None:
    throttle = LogThrottle(every=0.05)
    assert throttle.due() == 0
    time.sleep(0.1)
    assert throttle.due() == 1

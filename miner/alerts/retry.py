"""When a failed attempt is tried again (backoff with jitter, a server's Retry-After), and when it is given up.

A message is given up only on evidence of a long failure: it is at least ``give_up_after`` old AND it has failed at
least GIVE_UP_ATTEMPTS times. Age alone is the wall clock's word: a clock stepped days ahead (NTP after a long drift,
a laptop resumed, a VM restored) made a message planned just before it look 72 h old, and its first failure after
the jump, a passing one, gave it up; nothing had been tried meanwhile. The attempts cannot be faked so: each
failure after the first waits out its backoff in real time.

The age is counted from the message's planning (outbox.created_at), which nothing moves but a clock found ahead
(store/clock.py); the attempts from its last requeue (`miner outbox retry`), if any (outbox_claims.REQUEUED_AFTER).
Requeued, a message given up once is so given a new run of GIVE_UP_ATTEMPTS failures, not a new give_up_after: the
requeue used to restamp created_at as if it were planned then, so a message requeued at each give-up was never old,
and its planning time was lost.
"""

from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta
from typing import Any

from miner.alerts.settings import AlertSettings
from miner.errors import StoreError
from miner.store.outbox import Finish
from miner.timeutil import counted, parse_iso

log = logging.getLogger(__name__)

# Failed attempts (the one that fails now included) before a message old enough may be given up. With the default
# backoff (retry_base 30 s doubling to retry_max 1800 s, each wait 50-100 % of that) the 10th attempt comes an hour
# (at the shortest waits) to two hours after the first: a message that had not failed before the clock jumped fails
# that long in real time before it is dropped (one that had failed 10 times, hours of failing, may go at its next
# failure). A channel that is down is tried once per run of the alerts job, by one of its messages due: with up to
# a few hundred waiting, each is tried 10 times long before give_up_after, and is given up no later than it was.
GIVE_UP_ATTEMPTS = 10


def gives_up(settings: AlertSettings, row: dict[str, Any], now: datetime) -> bool:
    """Whether outbox ``row`` failing now is given up: old enough and failed often enough since its last requeue, if
    any (module docstring; ``requeued_after``: the attempts it had then, as Store.claim_due reads them)."""
    old = (now - parse_iso(row["created_at"])).total_seconds() >= settings.give_up_after
    failures = int(row["attempts"]) - int(row.get("requeued_after") or 0) + 1
    return old and failures >= GIVE_UP_ATTEMPTS


def retry(settings: AlertSettings, row: dict[str, Any], now: datetime, error: str, retry_after: float | None,
          rng: random.Random, needs_action: bool = False, give_up: bool = True) -> Finish:
    """The outcome of a failed attempt: retried after its backoff, or failed once it is given up (``give_up``: the
    failure counts towards that; not one of the store's, which says nothing of the message or its channel)."""
    attempts = int(row["attempts"]) + 1
    if give_up and gives_up(settings, row, now):
        # As loud as a permanent error: the warnings before it said it would be retried, and this one will not be.
        log.error("outbox %d (%s): gave up after %s (give_up_after %.0fs): %s", row["id"], row["channel"],
                  counted(attempts, "attempt"), settings.give_up_after, error)
        return Finish("failed", f"gave up after {counted(attempts, 'attempt')}: {error}")
    delay = min(settings.retry_max, settings.retry_base * 2 ** min(attempts - 1, 30))
    delay *= rng.uniform(0.5, 1.0)  # jitter: a recovered server is not hit by the whole queue at once
    if retry_after is not None:
        # Up to 5 % on top: the server's rows retried at the instant it named would all hit it again together.
        delay = min(max(delay, retry_after * rng.uniform(1.0, 1.05)), settings.give_up_after)
    if needs_action:
        # A TLS failure lasts until someone fixes it: said as an error at the first attempt, not when give_up_after
        # (72 h by default) ends the retries. Retried still, so the queue goes out by itself once it is fixed.
        log.error("outbox %d (%s): attempt %d failed, and will until someone acts; retrying in %.0fs, until "
                  "give_up_after: %s", row["id"], row["channel"], attempts, delay, error)
    else:
        log.warning("outbox %d (%s): attempt %d failed, retrying in %.0fs: %s", row["id"], row["channel"], attempts,
                    delay, error)
    return Finish("retry", error, now + timedelta(seconds=delay))


def store_failed(settings: AlertSettings, row: dict[str, Any], now: datetime, exc: StoreError,
                 rng: random.Random) -> Finish:
    """The outcome of an attempt the store failed while its message was prepared (dispatcher.send_row: before
    anything went out): retried, never given up for it. Another writer's lock past the busy timeout, a full disk,
    a read-only file or mount, an I/O error: the store's state, not the message's, and it passes once the store is
    mended. Failed as a message that "cannot be rendered", such a message waited for a `miner outbox retry`."""
    if exc.cause == "locked":
        return retry(settings, row, now, f"nothing sent: the store was locked while the message was prepared ({exc})",
                     None, rng, give_up=False)
    # An error, naming the store: a store that takes no writes holds back every message that needs one.
    log.error("outbox %d (%s): the store failed (%s) while the message was prepared: nothing was sent, and it is "
              "retried, never given up for it: %s", row["id"], row["channel"], exc.cause, exc)
    return retry(settings, row, now, f"nothing sent: the store failed ({exc.cause}) while the message was prepared "
                 f"({exc})", None, rng, give_up=False)

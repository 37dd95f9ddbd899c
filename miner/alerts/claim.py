"""A claimed outbox row's writes while it is sent: whom its message reached so far (the recipients of an email
that the server took, the PagerDuty events accepted), the claim's renewal between the parts of a message sent in
many, and the attempt's outcome.

Each is written again, a second apart, while another writer holds the store past SQLite's busy timeout (a prune, a
backup, `miner outbox retry`), until it is written, the claim lapses or the service stops. Raised at once, a lost
record made the message go again to whom it had reached: an outcome ``sent`` once the claim lapsed, the recipients
or events reached at the message's next attempt, since the attempt failed as a message that cannot be rendered.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from miner.errors import StoreError
from miner.timeutil import parse_iso

if TYPE_CHECKING:
    from miner.store import Store
    from miner.store.outbox import Finish

log = logging.getLogger(__name__)

T = TypeVar("T")


class NotRecorded(StoreError):
    """A claim's record could not be written: the store stayed locked until the claim lapsed or the service
    stopped, or failed otherwise. It ends the dispatch run, as any store failure does, the row still claimed."""


class Claim:
    """Outbox row ``row`` as claimed by ``worker`` (Store.claim_due), until ``lease_seconds`` after its claim."""

    def __init__(self, store: Store, row: dict[str, Any], worker: str, lease_seconds: float,
                 clock: Callable[[], datetime], stop: threading.Event | None = None) -> None:
        self.store = store
        self.id = int(row["id"])
        self.channel = str(row["channel"])
        self.worker = worker
        self.clock = clock
        self.stop = stop
        self.lease = timedelta(seconds=lease_seconds)
        self.lapses = parse_iso(row["claimed_at"]) + self.lease

    def remember(self, key: str, value: str, what: str, lost: str) -> None:
        """Set alert_state ``key`` to ``value``: ``what`` the attempt reached so far, for the log; ``lost``: what
        follows when it cannot be written."""
        self._written(what, lambda: self.store.set_alert_state(key, value), lost)

    def renew(self) -> bool:
        """Stamp the claim anew at the clock's time, for a whole lease from now (Store.renew_claim); False when it had
        lapsed and been taken over: the worker that took it sends the rest."""
        now = self.clock()
        if not self._written("its claim's renewal", lambda: self.store.renew_claim(self.id, self.worker, now),
                             "its claim not renewed: the rest of the message goes once its claim lapses "
                             "(lease_seconds), to whom it has not reached"):
            return False
        self.lapses = now + self.lease
        return True

    def finish(self, finish: Finish) -> bool:
        """Record the attempt (Store.finish_notification); False when the claim had lapsed and been taken over."""
        # Who gets it again, said at each: a record given up ends the run with only the store's error otherwise,
        # naming no message.
        if finish.outcome == "sent" and finish.delivered:
            lost = "sent, but not recorded as sent: it is sent again once its claim lapses (lease_seconds)"
        else:
            outcome = finish.outcome if finish.delivered else "nothing to send"
            lost = (f"its attempt ({outcome}) not recorded: it is tried again once its claim lapses "
                    "(lease_seconds), to whom it has not reached")
        return self._written(f"its attempt ({finish.outcome})",
                             lambda: self.store.finish_notification(self.id, self.worker, self.clock(), finish), lost)

    def _written(self, what: str, write: Callable[[], T], lost: str) -> T:
        pause = self.stop or threading.Event()
        while True:
            try:
                return write()
            except StoreError as exc:
                if exc.cause != "locked" or self.clock() >= self.lapses or pause.is_set():
                    log.error("outbox %d (%s): %s (%s)", self.id, self.channel, lost, exc)
                    raise NotRecorded(str(exc), cause=exc.cause, same_as=exc.same_as) from exc
                log.warning("outbox %d (%s): %s not recorded yet: %s; trying again", self.id, self.channel, what, exc)
            pause.wait(1.0)  # SQLite waited out its busy timeout already; this is for a lock it refused at once

"""One alerts tick for the service and the replay: plan, enqueue due digests, dispatch."""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection
from datetime import datetime
from typing import TYPE_CHECKING

from miner.alerts.delivery import Senders
from miner.alerts.digests import enqueue_due_digests
from miner.alerts.dispatcher import DispatchStats, dispatch
from miner.alerts.planner import plan_notifications
from miner.alerts.settings import AlertSettings

if TYPE_CHECKING:
    from miner.store import Store

log = logging.getLogger(__name__)


def run_alerts(store: Store, settings: AlertSettings, now: datetime, *, worker_id: str,
               senders: Senders | None = None, sources: Collection[str] | None = None,
               stop: threading.Event | None = None, deadline: float | None = None) -> DispatchStats:
    """Plan notifications for new transitions, queue due digests, then send whatever is due.

    ``sources``: the names of the sources the config polls, so digests leave out sources since removed.
    ``stop``: set when the service is stopping; sending stops before the next notification.
    ``deadline``: a time.monotonic() after which no further notification is claimed (dispatch), once one was.
    First, alert state stamped by a clock that was ahead is taken back to ``now`` (Store.retime_alerts); not in a
    replay, whose simulated clock is behind the live service's rows and silences, not they ahead of it: it moved a
    stopped service's silences back by days, and made its rows due.
    """
    if settings.enabled and store.outbox_after is None and (retimed := store.retime_alerts(now)):
        log.warning("the clock was ahead; alert state it stamped in the future is taken back to the current time: %s",
                    ", ".join(retimed))
    plan_notifications(store, settings, now)
    enqueue_due_digests(store, settings, now, sources=sources)
    return dispatch(store, settings, now, worker_id=worker_id, senders=senders, sources=sources, stop=stop,
                    deadline=deadline)

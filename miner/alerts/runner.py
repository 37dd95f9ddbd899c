"""One alerts tick for the service and the replay: plan, enqueue due digests, dispatch."""

from __future__ import annotations

import threading
from collections.abc import Collection
from datetime import datetime
from typing import TYPE_CHECKING

from miner.alerts.delivery import Senders
from miner.alerts.dispatcher import DispatchStats, dispatch
from miner.alerts.planner import enqueue_due_digests, plan_notifications
from miner.alerts.settings import AlertSettings

if TYPE_CHECKING:
    from miner.store import Store


def run_alerts(store: Store, settings: AlertSettings, now: datetime, *, worker_id: str,
               senders: Senders | None = None, sources: Collection[str] | None = None,
               stop: threading.Event | None = None) -> DispatchStats:
    """Plan notifications for new transitions, queue due digests, then send whatever is due.

    ``sources``: the names of the sources the config polls, so digests leave out sources since removed.
    ``stop``: set when the service is stopping; sending stops before the next notification.
    """
    plan_notifications(store, settings, now)
    enqueue_due_digests(store, settings, now, sources=sources)
    return dispatch(store, settings, now, worker_id=worker_id, senders=senders, sources=sources, stop=stop)

"""Sending a replay's notifications on its simulated clock, at the times the live service's alerts job would.

The replay's clock moves a bucket (or, between posts, an hour) at a time, where the service's alerts job runs every
30 s: a notification falls due between two ticks (an alert group_wait after the tick that opened its incident).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from miner.timeutil import parse_iso

if TYPE_CHECKING:
    from miner.pipeline import Pipeline


def send_due_before(pipeline: Pipeline, now: datetime) -> None:
    """Send what fell due since the last tick and before ``now``, each at the time it fell due.

    Sent at the next tick instead, the demo's alert was dated an hour after its incident opened ("Since: 17:00 UTC
    (1 h 00 min)" in a mail dated 18:00), though the service sends it group_wait (30 s) after: a first look at miner
    read as an hour's delay in alerting. Rows due at ``now`` are the tick's own. A row that a run at its due time
    leaves due (held back for its group's interval, a failed send's retry) ends the loop: the tick sends it, as
    before.
    """
    from miner.alerts.dispatcher import dispatch

    store, alerts = pipeline.store, pipeline.config.alerts
    last: datetime | None = None
    while due := store.due_notifications(now, 1):
        at = parse_iso(due[0]["next_attempt_at"])
        if at >= now or (last is not None and at <= last):
            return
        dispatch(store, alerts, at, worker_id=pipeline.worker_id, senders=pipeline.senders,
                 sources=pipeline.config.polled_sources, clock=_stopped(at))
        last = at


def flush(pipeline: Pipeline, end: datetime) -> None:
    """Send what the replay planned that is due within group_wait of the clock's end, stamped at its end.

    After the last tick nothing more is planned, so nothing would join a batch waiting out its group wait there: an
    outage opening at the end of a capture that ends now (the clock stops at the current time) was alerted past the
    clock's end, left pending and never written. The clock itself runs no further.
    """
    from miner.alerts.dispatcher import dispatch

    send_due_before(pipeline, end)
    alerts = pipeline.config.alerts
    wait = max((alerts.group_wait_for(r) for r in alerts.routes), default=timedelta(0))
    dispatch(pipeline.store, alerts, end + wait, worker_id=pipeline.worker_id, senders=pipeline.senders,
             sources=pipeline.config.polled_sources, clock=lambda: end)


def _stopped(at: datetime) -> Callable[[], datetime]:
    """A clock that reads ``at``: the simulated one, which stands still while a tick's sends run."""
    return lambda: at

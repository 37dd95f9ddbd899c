"""The AWS Health Dashboard's status feed: one item per update of an event, joined into one incident per event."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta

from miner.records import OfficialIncident

# The AWS Health Dashboard posts each update of an event as an item of its own, its guid the service and region and
# the update's time: "https://status.aws.amazon.com/#internetconnectivity-us-gov-west-1_1639584617".
_AWS_GUID = re.compile(r"^https?://(?:status|health)\.aws\.amazon\.com/#(.+)_(\d{9,11})$")
# Updates of one service and region further apart than this are two events.
_AWS_EVENT_GAP = timedelta(hours=24)


def merge_aws_updates(incidents: list[OfficialIncident]) -> list[OfficialIncident]:
    """AWS's items, one per update, joined into one incident per event, in the place of its latest update; other
    incidents as they are.

    An event is the run of a service and region's updates with no gap over _AWS_EVENT_GAP; it keeps its first
    update's guid (so the next poll, with more updates, updates the same incident), its latest update's title and
    status, and is resolved at the first of its closing run of resolved updates (a summary posted hours later is
    no later resolution).
    """
    runs: dict[str, list[int]] = {}  # service and region -> the indexes of its updates
    for i, inc in enumerate(incidents):
        match = _AWS_GUID.match(inc.external_id)
        if match:
            runs.setdefault(match.group(1), []).append(i)
    events: dict[int, OfficialIncident] = {}  # index of an event's latest update -> the event
    for run in runs.values():
        run.sort(key=lambda i: (incidents[i].started_at, incidents[i].external_id))
        event = [run[0]]
        for i in run[1:]:
            if incidents[i].started_at - incidents[event[-1]].updated_at > _AWS_EVENT_GAP:
                events[event[-1]] = _aws_event([incidents[j] for j in event])
                event = []
            event.append(i)
        events[event[-1]] = _aws_event([incidents[j] for j in event])
    updates = {i for run in runs.values() for i in run}
    return [events.get(i, inc) for i, inc in enumerate(incidents) if i in events or i not in updates]


def _aws_event(updates: list[OfficialIncident]) -> OfficialIncident:
    first, last = updates[0], updates[-1]
    resolved_at = None
    if last.status == "resolved":
        closing = len(updates)
        while closing > 0 and updates[closing - 1].status == "resolved":
            closing -= 1
        resolved_at = updates[closing].resolved_at
    return replace(last, external_id=first.external_id, started_at=first.started_at,
                   updated_at=max(u.updated_at for u in updates), resolved_at=resolved_at)

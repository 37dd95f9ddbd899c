"""The AWS Health Dashboard's status feed: one item per update of an event, joined into one incident per event.

The feed holds the latest items only: once an event's first update has dropped out, its earliest update still
listed would name it, and it would be stored as a second incident. So each poll remembers (in the source's
cursor) the events it saw, and those no longer listed that an update could still continue, and the next one carries
a remembered event's name and start over to the updates that continue it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from miner.records import OfficialIncident
from miner.timeutil import iso, parse_iso

# The AWS Health Dashboard posts each update of an event as an item of its own, its guid the service and region and
# the update's time: "https://status.aws.amazon.com/#internetconnectivity-us-gov-west-1_1639584617".
_AWS_GUID = re.compile(r"^https?://(?:status|health)\.aws\.amazon\.com/#(.+)_(\d{9,11})$")
# Updates of one service and region further apart than this are two events.
_AWS_EVENT_GAP = timedelta(hours=24)


@dataclass(frozen=True)
class KnownEvent:
    """An event as a poll stored it: what a later poll needs to recognise its updates once its first is gone."""

    key: str  # service and region, from the guid
    external_id: str
    started_at: datetime
    updated_at: datetime
    resolved_at: datetime | None

    def continued_by(self, key: str, first: OfficialIncident) -> bool:
        """Whether an event whose earliest listed update is ``first`` is this one (or its continuation)."""
        return key == self.key and self.started_at <= first.started_at <= self.updated_at + _AWS_EVENT_GAP


def merge_aws_updates(incidents: list[OfficialIncident], known: tuple[KnownEvent, ...] = ()
                      ) -> tuple[list[OfficialIncident], list[KnownEvent]]:
    """AWS's items, one per update, joined into one incident per event, in the place of its latest update; other
    incidents as they are. Also the events, for the next poll's ``known``.

    An event is the run of a service and region's updates with no gap over _AWS_EVENT_GAP; it keeps its first
    update's guid (so the next poll, with more updates, updates the same incident), its latest update's title and
    status, and is resolved at the first of its closing run of resolved updates (a summary posted hours later is
    no later resolution). An event of ``known`` whose updates go on in this poll lends it its guid and start; one
    not listed now is remembered while an update could still continue it.
    """
    runs: dict[str, list[int]] = {}  # service and region -> the indexes of its updates
    for i, inc in enumerate(incidents):
        match = _AWS_GUID.match(inc.external_id)
        if match:
            runs.setdefault(match.group(1), []).append(i)
    events: dict[int, OfficialIncident] = {}  # index of an event's latest update -> the event
    seen: list[KnownEvent] = []
    for key, run in runs.items():
        run.sort(key=lambda i: (incidents[i].started_at, incidents[i].external_id))
        groups = [[run[0]]]
        for i in run[1:]:
            if incidents[i].started_at - incidents[groups[-1][-1]].updated_at > _AWS_EVENT_GAP:
                groups.append([])
            groups[-1].append(i)
        for group in groups:
            updates = [incidents[j] for j in group]
            before = next((k for k in reversed(known) if k.continued_by(key, updates[0])), None)
            event = _aws_event(updates, before)
            events[group[-1]] = event
            seen.append(KnownEvent(key, event.external_id, event.started_at, event.updated_at, event.resolved_at))
    listed = {i for run in runs.values() for i in run}
    # An event none of whose updates is listed now (pushed out by other services' in a busy outage) is kept while an
    # update to come (none older than the newest listed) could still continue it: forgotten, its next update was
    # stored as a second incident.
    newest = max((incidents[i].started_at for i in listed), default=None)
    ids = {e.external_id for e in seen}
    seen += [k for k in known if k.external_id not in ids
             and (newest is None or newest <= k.updated_at + _AWS_EVENT_GAP)]
    return [events.get(i, inc) for i, inc in enumerate(incidents) if i in events or i not in listed], seen


def _aws_event(updates: list[OfficialIncident], before: KnownEvent | None) -> OfficialIncident:
    first, last = updates[0], updates[-1]
    resolved_at = None
    if last.status == "resolved":
        closing = len(updates)
        while closing > 0 and updates[closing - 1].status == "resolved":
            closing -= 1
        resolved_at = updates[closing].resolved_at
        if closing == 0 and before is not None and before.resolved_at is not None:
            resolved_at = before.resolved_at  # resolved by an update no longer listed
    external_id, started_at = (first.external_id, first.started_at) if before is None else (
        before.external_id, min(before.started_at, first.started_at))
    # Each update is an item of its own: the event was posted with its first.
    return replace(last, external_id=external_id, started_at=started_at, posted_at=started_at,
                   updated_at=max(u.updated_at for u in updates), resolved_at=resolved_at)


def read_known(cursor: str | None) -> tuple[KnownEvent, ...]:
    """The events a source's cursor remembers; none from a cursor of another kind or version (start afresh)."""
    try:
        rows = json.loads(cursor or "{}").get("aws_events", [])
        return tuple(KnownEvent(key, ident, parse_iso(start), parse_iso(updated),
                                parse_iso(resolved) if resolved else None)
                     for key, ident, start, updated, resolved in rows)
    except (ValueError, TypeError, AttributeError, OverflowError):
        return ()


def write_known(events: list[KnownEvent]) -> str | None:
    """The cursor for ``events``: None for a feed with no AWS event, as for every other status feed."""
    if not events:
        return None
    return json.dumps({"aws_events": [[e.key, e.external_id, iso(e.started_at), iso(e.updated_at),
                                       iso(e.resolved_at) if e.resolved_at else None] for e in events]},
                      separators=(",", ":"))

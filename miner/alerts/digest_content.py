"""The incidents a digest covers, as of the time it is rendered at."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from miner.alerts.content import IncidentView, incident_view
from miner.alerts.settings import AlertSettings
from miner.alerts.text import safe_number
from miner.timeutil import iso, parse_iso

if TYPE_CHECKING:
    from miner.store import Store


def digest_incident_rows(store: Store, services_match: Any, since: datetime, as_of: datetime) -> list[dict[str, Any]]:
    """The incidents a digest covers: open or resolved since ``since``, and opened by ``as_of``.

    Shared by the digest and the planner's "is there news?" check, so a quiet digest is never sent as "all quiet"
    because of an incident that opened after the time it is rendered at.
    """
    return [r for r in store.incidents(since=since) if services_match(r["service"]) and r["opened_at"] <= iso(as_of)]


@dataclass(frozen=True)
class DigestIncidents:
    views: list[IncidentView]  # the most important first, at most the limit asked for
    total: int  # all the digest covers, shown or not
    open: int  # of total


def digest_incidents(store: Store, settings: AlertSettings, services_match: Any, since: datetime,
                     as_of: datetime, limit: int | None = None) -> DigestIncidents:
    """Open incidents and those resolved since ``since``, opened by ``as_of``: open ones first, then by peak z.

    Only the first ``limit`` are read in full (samples, series, official post): a digest after a storm of
    thousands stays quick, and says how many it leaves out.
    """
    def still_open(row: dict[str, Any]) -> bool:
        return not row.get("resolved_at") or parse_iso(row["resolved_at"]) > as_of  # as incident_view sees it

    rows = sorted(digest_incident_rows(store, services_match, since, as_of),
                  key=lambda r: (not still_open(r), -safe_number(r.get("peak_score")), parse_iso(r["opened_at"])))
    chosen = rows if limit is None else rows[:limit]
    # An opening miner saw late says so here as in its alert: the digest is all a route hears of one it was not
    # alerted to (stale, muted, a digest-only route), where it read as an outage miner had seen begin.
    late = store.late_openings(chosen)
    views = [replace(v, seen_late_at=late[v.id][0], late_seconds=late[v.id][1]) if v.id in late else v
             for r in chosen if (v := incident_view(store, settings, r["id"], as_of)) is not None]
    return DigestIncidents(views, len(rows), sum(still_open(r) for r in rows))

"""When a provider's incident, as the store keeps it (an official_incidents row), counts as going on: the one rule that
an alert's provider note, a digest's providers' section and the read API's provider state (the status board's too)
follow, so that none calls an incident going on that another calls over.

Each of the three wrote it on its own, and they differed: an alert took one whose status says resolved, stored
without a resolve time, for the provider's incident going on at its opening, and one of a source removed from
feeds.toml, that the digest and the API of the same moment both left out.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime, timedelta
from typing import Any

from miner.records import MAINTENANCE, OVER
from miner.timeutil import parse_iso

# How recently the provider must have updated an open incident for it to count as going on: a provider at work on an
# outage posts updates far more often than that, and one whose resolve miner never read (a status feed entry that
# says no status) stays open in the store for good.
ONGOING_QUIET = timedelta(days=1)


def over_at(o: Mapping[str, Any]) -> datetime | None:
    """When the provider's incident ended: its resolve; for one whose status says it is over (records.OVER) without
    a resolve time, its last update (as a status feed's entry without a "Resolved" stamp is dated); None while open."""
    if o["resolved_at"]:
        return parse_iso(o["resolved_at"])
    return parse_iso(o["updated_at"]) if o["status"] in OVER else None


def ongoing(o: Mapping[str, Any], at: datetime, sources: Collection[str] | None) -> bool:
    """Whether the provider's incident ``o`` counts as going on at ``at``: not planned work; of a status source still
    polled (``sources``, the config's enabled ones; None: any), since one a removed source left open is never read
    to its end; not over before ``at`` (over_at; one over at ``at`` exactly still is, as miner's own incidents in a
    digest); and updated by its provider within ONGOING_QUIET before ``at``."""
    if o["status"] in MAINTENANCE or (sources is not None and o["source"] not in sources):
        return False
    over = over_at(o)
    return (over is None or over >= at) and parse_iso(o["updated_at"]) >= at - ONGOING_QUIET

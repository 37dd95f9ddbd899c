"""The providers' incidents a digest lists in a section of their own, whether or not miner saw an outage of their
services."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from miner.alerts.official import ONGOING_QUIET, Official, official_of
from miner.alerts.text import clean_text
from miner.records import MAINTENANCE
from miner.timeutil import parse_iso

if TYPE_CHECKING:
    from miner.store import Store


@dataclass(frozen=True)
class DigestOfficial:
    """A provider's incident a digest lists on its own, whether or not miner saw an outage of its service."""

    service: str
    official: Official
    open: bool


# The statuses that say a provider's incident is over, whatever its resolved_at (a feed entry may say so first).
_OVER = frozenset({"resolved", "postmortem"})


def digest_officials(store: Store, services_match: Any, since: datetime, as_of: datetime,
                     sources: Collection[str] | None) -> list[DigestOfficial]:
    """The providers' incidents of the route's services open (updated within ONGOING_QUIET), or resolved since
    ``since``, that miner had seen by ``as_of``: open ones first, then by start. The store keeps each one's latest
    state alone, so they are shown as they stand now. Planned work is left out, and so are those of sources no longer
    polled (``sources``; None: any), whose incidents left open stay so in the store for good."""
    rows = [o for o in store.official_incidents(None, since)
            if o["service"] and services_match(str(o["service"])) and o["status"] not in MAINTENANCE
            and parse_iso(o["first_seen_at"]) <= as_of and (sources is None or o["source"] in sources)]
    shown = []
    for o in rows:
        is_open = o["resolved_at"] is None and o["status"] not in _OVER
        if is_open and parse_iso(o["updated_at"]) < as_of - ONGOING_QUIET:
            # One whose resolve miner never read (a feed entry that says no status), as for the alerts: listed, it
            # would keep every digest from saying all quiet for good.
            continue
        shown.append(DigestOfficial(clean_text(o["service"], 80), official_of(o), is_open))
    return sorted(shown, key=lambda d: not d.open)  # stable: by start within each

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
    ``since``, that miner had seen by ``as_of``, by start (listed_officials picks and orders those a digest lists).
    The store keeps each one's latest state alone, so they are shown as they stand now. Planned work is left out, and
    so are those of sources no longer polled (``sources``; None: any), whose incidents left open stay so in the store
    for good."""
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
    return shown


# A digest lists at most this many of them: a cloud provider's outage puts an incident on the status page of every
# service that runs on it, and 40 pages with 6 each (240 listed, 85 KB of HTML) left room under render.MAX_HTML_BYTES
# for 4 of miner's own 15 incidents; 100 pages made an HTML part of 156 KB, past Gmail's clip, with one.
MAX_OFFICIALS = 20


def listed_officials(officials: list[DigestOfficial], miner_open: Collection[str]) -> list[DigestOfficial]:
    """The MAX_OFFICIALS of ``officials`` a digest lists, in the order it lists them: open ones first, then those of
    services with a miner incident open (``miner_open``), then the latest to start."""
    busy = {s.casefold() for s in miner_open}
    return sorted(officials, key=lambda d: (not d.open, d.service.casefold() not in busy,
                                            -parse_iso(d.official.started_at).timestamp()))[:MAX_OFFICIALS]

"""The providers' incidents a digest lists in a section of their own, whether or not miner saw an outage of their
services."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from miner.alerts.official import Official, official_of
from miner.alerts.text import clean_text
from miner.provider_ongoing import ongoing, over_at
from miner.records import MAINTENANCE
from miner.timeutil import iso, parse_iso

if TYPE_CHECKING:
    from miner.store import Store


@dataclass(frozen=True)
class Later:
    """What the provider said of its incident after the digest's time: its latest status and impact, and when."""

    status: str
    impact: str
    at: str


@dataclass(frozen=True)
class DigestOfficial:
    """A provider's incident a digest lists on its own, whether or not miner saw an outage of its service."""

    service: str
    official: Official  # its status and impact those of the digest's time; "open" or "resolved" alone where later is
    open: bool  # at the digest's time
    later: Later | None = None  # its row changed after the digest's time: what it says now


def digest_officials(store: Store, services_match: Any, since: datetime, as_of: datetime,
                     sources: Collection[str] | None) -> list[DigestOfficial]:
    """The providers' incidents of the route's services going on at ``as_of`` (provider_ongoing), or over in
    [``since``, ``as_of``), that miner had seen by ``as_of``, by start (listed_officials picks and orders those a
    digest lists). Planned work is left out, and so are those of sources no longer polled (``sources``; None: any),
    whose incidents left open stay so in the store for good.

    The store keeps each one's latest state alone (its title, status, impact and resolve are overwritten by each poll,
    with no history). Its resolve (or its last update, see over_at) tells whether it was open at ``as_of``,
    half-open as miner's own incidents in a digest: one resolved at a digest's time is open in it and resolved in the
    next. Where the row changed after ``as_of`` (the provider's update, or the resolve, came later), its status and
    impact then are not known: it shows open or resolved alone, and the status it has now, marked later; its title
    is the latest."""
    rows = [o for o in store.official_incidents(None, since)
            if o["service"] and services_match(str(o["service"])) and o["status"] not in MAINTENANCE
            and parse_iso(o["first_seen_at"]) <= as_of and (sources is None or o["source"] in sources)]
    shown = []
    for o in rows:
        over, updated = over_at(o), parse_iso(o["updated_at"])
        is_open = ongoing(o, as_of, sources)
        if not is_open and not (over is not None and since <= over < as_of):
            # Over before the digest's period (the store reads one without resolved_at whatever its end), or open in
            # the store but quiet too long: one whose resolve miner never read (a feed entry that says no status),
            # listed, would keep every digest from saying all quiet for good.
            continue
        official, later = official_of(o), None
        if updated > as_of or (over is not None and over >= as_of):
            later = Later(official.status, official.impact, iso(max(updated, over or updated)))
            official = replace(official, status="open" if is_open else "resolved", impact="")
        shown.append(DigestOfficial(clean_text(o["service"], 80), official, is_open, later))
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

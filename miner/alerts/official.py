"""The provider's own word on an incident, as notifications show it: the status page incident it is linked to, or
the one nearest it in time."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from miner.alerts.text import clean_text, safe_number, safe_url
from miner.provider_ongoing import ongoing
from miner.records import MAINTENANCE
from miner.timeutil import duration_text, parse_iso

if TYPE_CHECKING:
    from miner.store import Store


@dataclass(frozen=True)
class Official:
    title: str
    status: str
    started_at: str
    url: str | None
    impact: str
    # The provider gave no start: started_at is when miner first saw the incident (its first_seen_at).
    first_seen: bool = False
    # When the provider posted it (official_incidents.posted_at), what our lead is measured to; its impact may have
    # begun long before (started_at, as the provider dates it). official_of gives started_at where the store has none.
    posted_at: str = ""

    @property
    def started_apart(self) -> bool:
        """Whether the provider dates the impact from another minute than its post (backdated): both are worth telling
        (to the minute, as messages give times: a feed's update stamps have no seconds)."""
        return bool(self.posted_at) and not self.first_seen and self.posted_at[:16] != self.started_at[:16]


def provider_incident(store: Store, row: dict[str, Any], opened: datetime, end: datetime,
                      sources: Collection[str] | None) -> tuple[Official | None, float | None]:
    """The provider's incident of ``row`` (an incident open from ``opened`` to ``end``), and our lead on it in
    minutes; (None, None) when the provider said nothing. ``sources``: the config's enabled sources (None: any), of
    which one begun earlier must be to be taken as still going on."""
    wanted = row.get("official_incident_id")
    candidates = store.official_incidents(str(row["service"]), opened - timedelta(days=1))
    match = next((o for o in candidates if o["id"] == wanted), None) if wanted else None
    if match is None:
        # Unlinked: take the provider's incident that started closest to ours, within two hours either side; planned
        # work is no outage's official incident, as in the detector's matching.
        near = [o for o in candidates if abs((parse_iso(o["started_at"]) - opened).total_seconds()) <= 7200
                and parse_iso(o["started_at"]) <= end and o["status"] not in MAINTENANCE]
        match = min(near, key=lambda o: abs((parse_iso(o["started_at"]) - opened).total_seconds()), default=None)
    if match is None:
        # One begun earlier and still going on when ours opened (provider_ongoing, as the digest and the read API
        # take it) is the provider's incident all the same: the alert said "nothing on the status page yet" of a
        # provider that had been investigating for hours.
        begun = [o for o in candidates if parse_iso(o["started_at"]) <= opened and ongoing(o, opened, sources)]
        match = max(begun, key=lambda o: parse_iso(o["started_at"]), default=None)
    if match is None:
        return None, None
    official = official_of(match)
    lead = row.get("lead_time_minutes")
    if lead is None:
        lead = (parse_iso(official.posted_at) - opened).total_seconds() / 60
    return official, safe_number(lead)


def official_of(match: dict[str, Any]) -> Official:
    """A stored provider incident (an official_incidents row) as messages show it, its provider text made safe."""
    return Official(clean_text(match.get("title"), 160), clean_text(match.get("status"), 30),
                    str(match.get("started_at", "")), safe_url(match.get("url")),
                    clean_text(match.get("impact") or "", 20),
                    first_seen=match.get("started_at") == match.get("first_seen_at"),
                    posted_at=str(match.get("posted_at") or match.get("started_at", "")))


LEAD = "Our lead"


def lead_words(minutes: float | None, first_seen: bool) -> tuple[str, str]:
    """The heading and text of the alerts' lead line, ("", "") without a lead. A negative lead is a lag: "Our lead:
    4 min after the provider posted it" read as miner being first, so the provider's head start says who was first
    (from a whole minute: the words give whole minutes).
    To the provider's post, not to the start it gives the impact; of an incident it gave no time for, to when miner
    first saw it there (its post was no later)."""
    if minutes is None:
        return "", ""
    if abs(minutes) < 1:
        # Kept to a tenth of a minute, shown in whole ones: "Provider first: ... 0 min before" is a head start of
        # nothing, so a lead within a minute either way says so rather than who was first.
        said = "miner first saw it on the provider's" if first_seen else "the provider posted it on its"
        return LEAD, f"under a minute either way: we detected it as {said} status page"
    took = duration_text(abs(minutes) * 60)
    if minutes < 0:
        said = "miner first saw it on its status page" if first_seen else "posted it on its status page"
        return "Provider first", f"{said} {took} before we detected it"
    said = "miner first saw it on the provider's" if first_seen else "the provider posted it on its"
    return LEAD, f"{took} before {said} status page"

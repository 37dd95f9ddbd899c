"""The providers' own incidents, from status pages: stored with each poll (a source's incidents upserted, the ones its
list of every open incident leaves out resolved) and read by the detector and the alerts."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from miner.records import OfficialIncident
from miner.store.sql_lists import IN_LIST, json_list
from miner.timeutil import iso, parse_iso

if TYPE_CHECKING:
    import sqlite3

    from miner.store.db import Database


# Migration 0038: when the provider first said so (OfficialIncident.posted_at), kept apart from the start it may
# backdate. Miner kept neither Statuspage's created_at nor a feed's first update before: a row stored before takes
# its start, what its lead was measured to then.
POSTED_SQL = """
    ALTER TABLE official_incidents ADD COLUMN posted_at TEXT;
    UPDATE official_incidents SET posted_at = started_at;
"""


class OfficialIncidentsMixin:
    database: Database

    def official_incident_records(self, service: str, since: datetime) -> list[OfficialIncident]:
        """The provider's incidents for ``service`` still open at or started after ``since``."""
        return [
            OfficialIncident(
                source=r["source"], external_id=r["external_id"], service=r["service"], title=r["title"],
                status=r["status"], started_at=parse_iso(r["started_at"]), updated_at=parse_iso(r["updated_at"]),
                posted_at=parse_iso(r["posted_at"]) if r["posted_at"] else None,
                impact=r["impact"], components=tuple(json.loads(r["components"] or "[]")),
                resolved_at=parse_iso(r["resolved_at"]) if r["resolved_at"] else None, url=r["url"],
            )
            for r in self.official_incidents(service, since)
        ]

    def official_incident_id(self, source: str, external_id: str) -> int | None:
        row = self.database.one("SELECT id FROM official_incidents WHERE source = ? AND external_id = ?",
                                (source, external_id))
        return int(row["id"]) if row else None

    def official_incident_id_of_ref(self, ref: str) -> int | None:
        """The row of a detector's "source:external_id" ref. Either part may hold colons (the "status:<service>"
        sources a service's status_page adds, Atom "tag:" ids), so each colon is tried as the separator."""
        cut = ref.find(":")
        while cut >= 0:
            found = self.official_incident_id(ref[:cut], ref[cut + 1:])
            if found is not None:
                return found
            cut = ref.find(":", cut + 1)
        return None

    def official_incidents_by_id(self, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        if not ids:
            return {}
        return {int(r["id"]): r for r in self.database.rows(f"SELECT * FROM official_incidents WHERE id {IN_LIST}",
                                                             (json_list(ids),))}

    def official_incidents(self, service: str | None, since: datetime) -> list[dict[str, Any]]:
        """The incidents of ``service`` (None: of every service) still open or resolved at or after ``since``."""
        # Two statements, not "(? IS NULL OR service = ?)": that one reads no index, and an alert reads one service's.
        since_sql = "(resolved_at IS NULL OR resolved_at >= ?) ORDER BY started_at"
        if service is None:
            return self.database.rows(f"SELECT * FROM official_incidents WHERE {since_sql}", (iso(since),))
        return self.database.rows(f"SELECT * FROM official_incidents WHERE service = ? AND {since_sql}",
                                  (service, iso(since)))


def resolve_unlisted(conn: sqlite3.Connection, source: str, listed: Sequence[OfficialIncident],
                      now: datetime) -> int:
    """Resolve, as of this poll, the source's open incidents that its list of every open one leaves out. The
    provider's updated_at stays, so the incident listed again with a newer one (reopened) is stored open again."""
    cur = conn.execute(
        "UPDATE official_incidents SET status = 'resolved', resolved_at = ? WHERE source = ? AND resolved_at IS NULL "
        f"AND external_id NOT {IN_LIST}",
        (iso(now), source, json_list(inc.external_id for inc in listed)),
    )
    return cur.rowcount


# An incident's page on its status page: Statuspage's incidents.json id is the code in its feeds' entry links
# (https://www.githubstatus.com/incidents/qcvjkzcs7j74), so the same incident read by both has the same permalink.
_PERMALINK = re.compile(r"^https?://([^/?#]+)/incidents/([A-Za-z0-9]+)/?(?:[?#].*)?$", re.IGNORECASE)


def _page_incident(url: str | None) -> tuple[str, str] | None:
    """(host, incident code) of an incident's permalink; None for another kind of link (or none)."""
    match = _PERMALINK.match(url or "")
    return (match.group(1).lower(), match.group(2)) if match else None


def _same_incident_elsewhere(conn: sqlite3.Connection, inc: OfficialIncident) -> int | None:
    """The row of this incident stored from another source of the same service (the page's statuspage JSON and its
    history feed both configured): the same permalink on the same page is the same incident."""
    key = _page_incident(inc.url)
    if key is None:
        return None
    rows = conn.execute(
        "SELECT id, url FROM official_incidents WHERE service IS ? AND source != ? AND url LIKE ? ORDER BY id",
        (inc.service, inc.source, f"%/incidents/{key[1]}%"),
    ).fetchall()
    return next((int(row[0]) for row in rows if _page_incident(row[1]) == key), None)


# Where the incident starts and when it was posted, from a source that dates them (not OfficialIncident.undated): the
# earliest of what every source said, so that neither which of a page's two sources was polled first nor which was
# updated last decides it (its statuspage JSON gives the impact's start, which the provider may set hours before it
# posted the incident; its history feed gives only its first update). A row stored undated starts, and was posted,
# when miner first saw it: the provider had posted it by then, so a later time from the other source is not taken
# (a start after that is planned work's, or a clock ahead). Taking it, the undated source's own update put the start
# back to first_seen_at (_OWN_UNDATED), and the two polls moved it to and fro, the row "updated" at each poll, an
# incident going on for good. A start the provider moves later is not followed. Values as upsert_official binds them
# (?6 start, ?10 posted).
_START = "min(started_at, ?6)"
_POSTED = "min(coalesce(posted_at, started_at), ?10)"
_DATED = f"started_at = {_START}, posted_at = {_POSTED}"
# The columns an incident's newer update sets, from its values in upsert_official's order.
_NEWER = ("service = ?1, title = ?2, status = ?3, impact = coalesce(?4, impact), "
          "components = CASE WHEN ?5 = '[]' THEN components ELSE ?5 END, updated_at = ?7, resolved_at = ?8, url = ?9, "
          + _DATED)
# The same for an incident the provider gave no start (OfficialIncident.undated): the start and post stored (when it
# was first seen, or the provider's own from another source) stay, and the times of the poll it would take are no
# earlier than it; a resolution stored stays too, where the poll's is that poll's time again. ISO texts of one form
# compare as times.
_NEWER_UNDATED = ("service = ?1, title = ?2, status = ?3, impact = coalesce(?4, impact), "
                  "components = CASE WHEN ?5 = '[]' THEN components ELSE ?5 END, updated_at = max(?7, started_at), "
                  "resolved_at = CASE WHEN ?8 IS NULL THEN NULL ELSE coalesce(resolved_at, max(?8, started_at)) END, "
                  "url = ?9")
# The source's own row (its start its own undated polls', moved to each poll's time by an earlier miner) starts when
# first stored; another source's start may be the provider's, or a planned start after it was first seen.
_OWN_UNDATED = (f"started_at = min(started_at, first_seen_at), posted_at = min(coalesce(posted_at, started_at), "
                f"first_seen_at), {_NEWER_UNDATED}")
# An incident whose update the provider dated neither (OfficialIncident.update_undated) has each poll's time as its
# updated_at: it is newer only where what it says differs from the row (or the row's start is to go back, above).
# Moved at every poll, the row counted as updated at each, and one never read resolved (a feed entry that names no
# status) stayed "updated" within the day for good, the provider's ongoing incident in every alert and digest. On
# another source's row of the same incident (a page read two ways, its JSON stored first), whose start the update
# does not move, it only resolves: _RESOLVES, below.
_SAYS = (" AND (title IS NOT ?2 OR status IS NOT ?3 OR (?4 IS NOT NULL AND impact IS NOT ?4)"
         " OR (?5 != '[]' AND components IS NOT ?5) OR url IS NOT ?9 OR (resolved_at IS NULL) != (?8 IS NULL)")
_SAYS_OTHERWISE = f"{_SAYS} OR started_at > first_seen_at)"
# An update the provider dated neither was seen by the poll that read it, and written at some time before that nobody
# knows: it is not newer than any dated update, whatever its poll time. A status feed lagging the page's JSON (the
# JSON's incident resolved at 10:05, the feed's entry still "investigating", read undated at 10:07) took the row back
# to what it had said, open again in alerts, digests, the board and the API, and the JSON's next poll (10:05, older
# than the row's 10:07) did not bring it back. So it never reopens an incident a dated source resolved (a resolution
# stands unless a dated later update reopens it): on another source's row (the JSON's, dated) it only resolves one
# still open (_RESOLVES), and so on its own row where a dated source dated the start (_UNLESS_DATED). Its own row that
# no dated source dated was resolved by its own earlier reading, which it does not lag: read open again, the provider
# reopened it. A feed that reads resolved has seen the resolution, whoever lags, unless the dated source updated the
# incident since miner first saw it (updated_at after first_seen_at): that update may be a reopen (resolved at 10:05,
# open again at 10:20), and a feed lagging it still reads the resolution before it. Resolved again as of the feed's
# poll (10:22), the row was newer than the reopen, which the JSON's next polls did not bring back: the incident hidden
# while it went on. The dated source resolves it then; an undated source's row (its updates its polls') it still
# resolves.
_NOT_REOPENED = " AND (resolved_at IS NULL OR ?8 IS NOT NULL)"
_RESOLVED_NOW = ("resolved_at IS NULL AND ?8 IS NOT NULL"
                 " AND (started_at >= first_seen_at OR updated_at <= first_seen_at)")
_RESOLVES = f" AND {_RESOLVED_NOW}"
# A row that a dated source gave a start before miner first saw it (the JSON's, merged into the feed's row) has a
# dated update too: on it, as on another source's row, an undated update only resolves (as _RESOLVES says).
_UNLESS_DATED = f" AND (started_at >= first_seen_at OR ({_RESOLVED_NOW}))"
# The other way round, the feed's row stored first (at its poll, 10:07, "investigating") and the JSON's update dated
# before that poll (10:05, resolved) was not newer, and the feed's lag kept the incident open. A dated update also wins
# over a row no dated source has given a start yet, where it says something else and dates the incident's start
# before miner first saw it (so that its start moves earlier, and it is the dated row above from then on); it does
# not reopen an incident resolved.
_OVER_UNDATED = f" OR (started_at >= first_seen_at AND ?6 < first_seen_at{_NOT_REOPENED}{_SAYS}))"
# What another source's older update of the row's incident still gives it: the impact and components the row lacks
# (the JSON's, read after the feed), and a start or post earlier than the row's (_DATED).
_FILL = ("impact = coalesce(impact, ?4), components = CASE WHEN components = '[]' THEN ?5 ELSE components END")
_FILLS = "(impact IS NULL AND ?4 IS NOT NULL) OR (components = '[]' AND ?5 != '[]')"
_MOVES = f" OR started_at IS NOT {_START} OR posted_at IS NOT {_POSTED}"


def upsert_official(conn: sqlite3.Connection, incidents: Sequence[OfficialIncident], now: datetime) -> tuple[int, int]:
    new = updated = 0
    for inc in incidents:
        values = (inc.service, inc.title, inc.status, inc.impact, json.dumps(list(inc.components)),
                  iso(inc.started_at), iso(inc.updated_at), iso(inc.resolved_at) if inc.resolved_at else None,
                  inc.url, iso(inc.posted))
        newer = _NEWER_UNDATED if inc.undated else _NEWER
        if inc.undated and inc.update_undated:
            own_when = f"updated_at < ?7{_SAYS_OTHERWISE}{_UNLESS_DATED}"
            other_when = f"updated_at < ?7{_RESOLVES}"
        else:
            own_when = other_when = f"(updated_at < ?7{_OVER_UNDATED})"
        # A feed's entry (no impact, no components) leaves those the page's JSON gave the same incident in place.
        cur = conn.execute(
            f"UPDATE official_incidents SET {_OWN_UNDATED if inc.undated else _NEWER} "
            f"WHERE source = ?11 AND external_id = ?12 AND {own_when}", (*values, inc.source, inc.external_id))
        if cur.rowcount:
            updated += 1
            continue
        if conn.execute("SELECT 1 FROM official_incidents WHERE source = ? AND external_id = ?",
                        (inc.source, inc.external_id)).fetchone() is None:
            other = _same_incident_elsewhere(conn, inc)
            if other is not None:
                # Kept in the one row: the newer update wins; an older one still adds what _FILL says.
                cur = conn.execute(f"UPDATE official_incidents SET {newer} WHERE id = ?11 AND {other_when}",
                                   (*values, other))
                if not cur.rowcount:
                    dated = not inc.undated
                    cur = conn.execute(
                        f"UPDATE official_incidents SET {_FILL}{', ' + _DATED if dated else ''} "
                        f"WHERE id = ?11 AND ({_FILLS}{_MOVES if dated else ''})", (*values, other))
                updated += cur.rowcount
                continue
        if inc.undated:
            # It starts, and was posted, when this poll stored it (first_seen_at, the same time), and no time of it
            # is earlier.
            values = (*values[:5], iso(now), iso(max(inc.updated_at, now)),
                      iso(max(inc.resolved_at, now)) if inc.resolved_at else None, inc.url, iso(now))
        cur = conn.execute(
            "INSERT INTO official_incidents (service, title, status, impact, components, started_at, "
            "updated_at, resolved_at, url, posted_at, source, external_id, first_seen_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (source, external_id) DO NOTHING",
            (*values, inc.source, inc.external_id, iso(now)),
        )
        new += cur.rowcount
    return new, updated

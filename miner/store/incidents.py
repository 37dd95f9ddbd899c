"""Incidents, the transitions each went through (incident_events), and the groups related ones join."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from miner.store.sql_lists import IN_LIST, json_list
from miner.timeutil import iso, parse_iso, second_at_or_after

if TYPE_CHECKING:
    from miner.store.db import Database


# The indexes incidents_newest_first reads with a service (the read API's ?service=, the status board's service page;
# migration 0035). incidents_service (service, status) gave a service's incidents in no order: each page sorted every
# one of them (a page of 1000 of one service's 20,000: 36-90 ms; bench/paging_bench.py). With (service, opened_at)
# alone, a page of ?status=open read every incident of the service for its one open (11-20 ms), so the index by status
# takes opening times too; it serves each query incidents_service served (open_incident_for sorts by id the one open).
BY_SERVICE_SQL = """
    DROP INDEX IF EXISTS incidents_service;
    CREATE INDEX incidents_service_opened ON incidents (service, opened_at);
    CREATE INDEX incidents_service_status ON incidents (service, status, opened_at);
"""

# The open incidents by opening time, whatever their service (migration 0037): the read API's ?status=open, which
# on-call dashboards poll, incidents(status="open"), which the detector, the alerts planner and each metrics scrape
# read, and each prune batch's read of their sample posts walked incidents_opened (or the table) over every incident
# for the few open (about 25 ms of 100,000; bench/paging_bench.py). SQLite reads it for "status = ?" too: a statement
# is prepared again once 'open' is bound to it.
OPEN_SQL = "CREATE INDEX incidents_open ON incidents (opened_at) WHERE status = 'open';"


def is_reopening(event: Mapping[str, Any]) -> bool:
    """Whether an incident event is a re-opening: the detector opened again within the cool-down, so the resolved
    incident came back (an ``update`` with reason ``reopened``)."""
    if event["kind"] != "update":
        return False
    try:
        details = json.loads(event.get("details") or "{}")
    except ValueError:
        return False
    reason = details.get("reason") if isinstance(details, dict) else None
    return bool(reason) and "reopened" in str(reason).split(",")


def reopenings(events: Iterable[Mapping[str, Any]], as_of: datetime | None = None
               ) -> list[tuple[datetime | None, datetime]]:
    """An incident's re-openings by ``as_of`` (None: all) from its ``events`` in order, oldest first, each as (the
    resolve before it, the re-opening); the resolve is None where none is recorded. What its alerts say of them
    (miner.alerts.content) and the status board shows."""
    found: list[tuple[datetime | None, datetime]] = []
    last_resolve: datetime | None = None
    for ev in events:
        at = parse_iso(ev["at"])
        if as_of is not None and at > as_of:
            continue
        if ev["kind"] == "resolve":
            last_resolve = at
        elif is_reopening(ev):
            found.append((last_resolve, at))
            last_resolve = None
    return found


def resolved_by(events: Iterable[Mapping[str, Any]], as_of: datetime) -> datetime | None:
    """From an incident's ``events`` in order: when it had last resolved by ``as_of``, None where it was open then
    (its opening or a re-opening by then came after its last resolve by then), or had not opened yet."""
    state: datetime | None = None
    for ev in events:
        at = parse_iso(ev["at"])
        if at > as_of:
            continue
        if ev["kind"] == "resolve":
            state = at
        elif ev["kind"] == "open" or is_reopening(ev):
            state = None
    return state


# The reasons miner resolves an incident itself (miner.detect_stage, miner.detect_relearn), without the detector
# seeing it end, as the on-call reads them: the alerts (miner.alerts.content) and the read API say so.
UNTRACKED = {
    "unwatched": "the service was removed from feeds.toml, so miner stopped watching it",
    "detector state unreadable": "its detector state could not be read, so miner lost track of it",
}


def untracked_reason(details: Any) -> str:
    """Why miner closed an incident whose last resolve event has ``details`` (its JSON) without the detector seeing
    it end, or "" when the detector resolved it."""
    try:
        data = json.loads(details) if isinstance(details, str) else None
    except ValueError:
        return ""
    reason = data.get("reason") if isinstance(data, dict) else None
    return UNTRACKED.get(reason, "") if isinstance(reason, str) else ""


class UnscoredGap(NamedTuple):
    """Of an incident the detector resolved after miner's own downtime, its end unseen: the span miner was not
    scoring (start, end), and the earliest its end may have come (ended_from): the start of the first quiet bucket
    the resolve counted, when scored before the span (complaints were seen back to normal from then), else start.
    The outage ended at some time from ended_from to end."""

    start: datetime
    end: datetime
    ended_from: datetime


def unscored_gap(details: Any) -> UnscoredGap | None:
    """The span miner was not scoring in (its own downtime, longer than detector.max_fill_hours) when the detector
    resolved an incident whose end it did not see, from its last resolve event's ``details`` (its JSON); None for
    a resolve the detector saw (see DetectStage._persist_incident). A resolve stored without ended_from (before
    miner kept it) reads as it did: the end fell in the span."""
    try:
        data = json.loads(details) if isinstance(details, str) else None
        if isinstance(data, dict) and data.get("unscored_from") and data.get("unscored_to"):
            start, end = parse_iso(str(data["unscored_from"])), parse_iso(str(data["unscored_to"]))
        else:
            return None
    except (ValueError, OverflowError):
        return None
    ended_from = start
    try:
        if data.get("ended_from"):
            ended_from = min(parse_iso(str(data["ended_from"])), start)
    except (ValueError, OverflowError):
        pass
    return UnscoredGap(start, end, ended_from)


def gap_json(gap: UnscoredGap) -> dict[str, str]:
    """An UnscoredGap as the read API and the JSON webhook give it (resolved_after_gap): from and to, the span miner
    was not scoring, as they always were; ended_from, the earliest the outage may have ended."""
    return {"from": iso(gap.start), "to": iso(gap.end), "ended_from": iso(gap.ended_from)}


def opening_width(incident: Mapping[str, Any], width: timedelta | None) -> timedelta | None:
    """The width of the bucket ``incident`` opened in, as it recorded it (incidents.bucket_minutes):
    detector.bucket_minutes may have changed since. ``width`` (the store's) for one opened before miner recorded it."""
    minutes = incident.get("bucket_minutes")
    return timedelta(minutes=minutes) if isinstance(minutes, int) and minutes > 0 else width


def first_bucket(starts: Iterable[datetime], opened: datetime, own: timedelta, width: timedelta | None) -> datetime:
    """Where the incident's buckets begin: its opening bucket's start (``opened`` less ``own``, see opening_width),
    or, where detector.bucket_minutes grew to ``width`` since and that bucket was counted again in a wider one, the
    wider one's. ``starts``: the stored buckets' starts around it. A recount leaves no bucket at the opening one's
    start (and the opening one counted complaints, so it is stored where it was not recounted): the latest before
    it, within ``width``, holds it. Its peak was looked for from the opening bucket's start, and after a change from
    5 to 60 the hour holding it, its peak, set against the opening bucket's baseline: "123 vs baseline 0.13"."""
    start = opened - own
    if width is None or width <= own:
        return start
    before = [s for s in starts if start - width < s <= start]
    return max(before, default=start)


class IncidentsMixin:
    database: Database

    def first_bucket(self, service: str, opened: datetime, own: timedelta, width: timedelta | None) -> datetime:
        """`first_bucket` of ``service``'s incident opened at ``opened`` from its stored buckets."""
        if width is None or width <= own:
            return opened - own
        rows = self.database.rows(
            "SELECT bucket_start FROM buckets WHERE service = ? AND bucket_start > ? AND bucket_start <= ? "
            "ORDER BY bucket_start DESC LIMIT 1", (service, iso(opened - own - width), iso(opened - own)))
        return first_bucket([parse_iso(r["bucket_start"]) for r in rows], opened, own, width)

    def record_opening_widths(self, minutes: int) -> None:
        """Give the incidents that have no bucket width ``minutes``, the store's before detector.bucket_minutes
        changes: those of a store that recorded none at the upgrade (0.1.0's: migration 0020 left them NULL), whose
        width is read as the store's, would take the new one."""
        with self.database.transaction() as conn:
            conn.execute("UPDATE incidents SET bucket_minutes = ? WHERE bucket_minutes IS NULL", (minutes,))

    def peak_baseline(self, incident: Mapping[str, Any], width: timedelta | None, until: datetime) -> float | None:
        """What the detector expected in the bucket of ``incident``'s peak, as its alerts give it (the webhook's
        baseline; miner.alerts.peak.peak_baseline finds it in the series an alert reads anyway): the baseline of its
        first bucket from its first (`first_bucket`: of the width it opened in, ``width``, the store's, where it
        recorded none) to its resolve, or ``until`` while open, that counted its peak and was scored. Its stored
        baseline, the opening bucket's, where no stored bucket of it holds the peak (pruned, or counted again)."""
        stored: float | None = incident["baseline"]
        if (own := opening_width(incident, width)) is None:
            return stored
        end = parse_iso(incident["resolved_at"]) if incident["resolved_at"] else until
        start = self.first_bucket(incident["service"], parse_iso(incident["opened_at"]), own, width)
        row = self.database.one(
            "SELECT baseline FROM buckets WHERE service = ? AND bucket_start >= ? AND bucket_start < ? "
            "AND complaints = ? AND baseline IS NOT NULL ORDER BY bucket_start LIMIT 1",
            (incident["service"], iso(start), iso(end), int(incident["peak_complaints"] or 0)))
        return stored if row is None else float(row["baseline"])

    def open_incident(self, service: str, at: datetime, fields: Mapping[str, Any], details: Mapping[str, Any]) -> int:
        with self.database.transaction() as conn:
            cols = ["service", "status", "opened_at", "updated_at", *fields]
            vals = [service, "open", iso(at), iso(at), *(_encode(v) for v in fields.values())]
            cur = conn.execute(
                f"INSERT INTO incidents ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                vals,
            )
            incident_id = int(cur.lastrowid or 0)
            _event(conn, incident_id, "open", at, details)
        return incident_id

    def update_incident(
        self, incident_id: int, at: datetime, fields: Mapping[str, Any], kind: str = "update",
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Update columns of an incident and log the transition ``kind`` (update, resolve or group)."""
        with self.database.transaction() as conn:
            sets = ", ".join(f"{k} = ?" for k in fields)
            conn.execute(
                f"UPDATE incidents SET updated_at = ?{', ' if sets else ''}{sets} WHERE id = ?",
                [iso(at), *(_encode(v) for v in fields.values()), incident_id],
            )
            _event(conn, incident_id, kind, at, details or {})

    def update_incident_quietly(self, incident_id: int, at: datetime, fields: Mapping[str, Any]) -> None:
        """Refresh running figures (totals, samples) without logging a transition."""
        with self.database.transaction() as conn:
            sets = "".join(f", {k} = ?" for k in fields)
            conn.execute(
                f"UPDATE incidents SET updated_at = ?{sets} WHERE id = ?",
                [iso(at), *(_encode(v) for v in fields.values()), incident_id],
            )

    def open_incident_for(self, service: str) -> dict[str, Any] | None:
        return self.database.one(
            "SELECT * FROM incidents WHERE service = ? AND status = 'open' ORDER BY id DESC LIMIT 1", (service,)
        )

    def incident(self, incident_id: int) -> dict[str, Any] | None:
        return self.database.one("SELECT * FROM incidents WHERE id = ?", (incident_id,))

    def incidents(self, *, status: str | None = None, since: datetime | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM incidents WHERE 1 = 1"
        params: list[Any] = []
        if status:
            sql += " AND status = ?"
            params.append(status)
        if since:
            sql += " AND (resolved_at IS NULL OR resolved_at >= ?)"
            params.append(iso(second_at_or_after(since)))
        return self.database.rows(sql + " ORDER BY opened_at, id", params)

    def incidents_newest_first(self, *, status: str | None, service: str | None, since: datetime | None,
                               limit: int, until: datetime | None = None, after: tuple[str, int] | None = None
                               ) -> list[dict[str, Any]]:
        """Up to ``limit`` incidents, the latest opened first: of ``status`` and ``service`` (None: any), open at
        some time since ``since`` (still open, or resolved at or after it; None: ever) and opened before ``until``
        (None: ever), and after ``after`` in that order, the (opened_at as stored, id) a page ended at (None: from the
        latest)."""
        sql = "SELECT * FROM incidents WHERE 1 = 1"
        params: list[Any] = []
        for column, value in (("status", status), ("service", service)):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        # The bounds to the microsecond (a client's ?since=...T20:00:00.123Z), as the whole seconds stored compare.
        if since is not None:
            sql += " AND (resolved_at IS NULL OR resolved_at >= ?)"
            params.append(iso(second_at_or_after(since)))
        if until is not None:
            sql += " AND opened_at < ?"
            params.append(iso(second_at_or_after(until)))
        if after is not None:
            # The first term bounds a range of the opening-time index; the second leaves out the page's own.
            sql += " AND opened_at <= ? AND (opened_at < ? OR id < ?)"
            params.extend([after[0], after[0], after[1]])
        return self.database.rows(sql + " ORDER BY opened_at DESC, id DESC LIMIT ?", [*params, limit])

    def incident_events(self, incident_id: int) -> list[dict[str, Any]]:
        return self.database.rows(
            "SELECT * FROM incident_events WHERE incident_id = ? ORDER BY id", (incident_id,)
        )

    def last_opened_at(self, incident: Mapping[str, Any]) -> datetime:
        """When the incident last opened: its opening, or its latest re-opening (the service failing again now)."""
        return max([parse_iso(incident["opened_at"]),
                    *(parse_iso(e["at"]) for e in self.incident_events(incident["id"]) if is_reopening(e))])

    def late_openings(self, incidents: Sequence[Mapping[str, Any]]) -> dict[int, tuple[datetime, float]]:
        """Of these incidents, those whose last (re-)opening miner first saw late (it was down, or caught up a
        backlog): incident id -> (when it first saw it, how many seconds late). The planner's word, kept with the
        opening's alerts on any route, suppressed ones too (outbox_items.seen_late_at): an opening that no route
        alerts on at once is in none."""
        ids = [int(inc["id"]) for inc in incidents]
        rows = self.database.rows(
            "SELECT incident_id, seen_late_at, late_seconds FROM outbox_items WHERE kind = 'open' "
            f"AND seen_late_at IS NOT NULL AND late_seconds IS NOT NULL AND incident_id {IN_LIST} "
            "ORDER BY seen_late_at", (json_list(ids),)) if ids else []
        late: dict[int, tuple[datetime, float]] = {}
        for inc in incidents:
            mine = [(parse_iso(r["seen_late_at"]), float(r["late_seconds"])) for r in rows
                    if r["incident_id"] == inc["id"]]
            opened = self.last_opened_at(inc) if mine else None
            # An earlier opening's, of an incident that resolved and opened again since, is not this one's.
            first = next((m for m in mine if opened is not None
                          and abs((m[0] - timedelta(seconds=m[1]) - opened).total_seconds()) < 1), None)
            if first is not None:
                late[int(inc["id"])] = first
        return late

    def ended_unseen(self, incident_ids: Sequence[int]) -> tuple[dict[int, str], dict[int, UnscoredGap]]:
        """Of these incidents, from one read of their last resolves: those miner closed without the detector seeing
        them end (their service left feeds.toml, their detector state could not be read), incident id -> why (see
        untracked_reason); and those the detector resolved after miner's own downtime, their end in it unseen,
        incident id -> the span it was not scoring and the earliest its end may have come (see unscored_gap)."""
        last = self._last_resolves(incident_ids)
        return ({iid: why for iid, details in last.items() if (why := untracked_reason(details))},
                {iid: gap for iid, details in last.items() if (gap := unscored_gap(details))})

    def reopenings_of(self, incident_ids: Sequence[int], as_of: datetime
                      ) -> dict[int, list[tuple[datetime | None, datetime]]]:
        """Of these incidents, those that re-opened by ``as_of``: incident id -> its `reopenings`, in one read."""
        ids = [int(i) for i in incident_ids]
        rows = self.database.rows(
            "SELECT incident_id, kind, at, details FROM incident_events WHERE kind IN ('resolve', 'update') "
            f"AND incident_id {IN_LIST} ORDER BY id", (json_list(ids),)) if ids else []
        # Grouped once: each incident's walk over every row was 0.5 s at limit=1000 with 20 events each.
        events: dict[int, list[Any]] = {}
        for r in rows:
            events.setdefault(int(r["incident_id"]), []).append(r)
        found = {iid: reopenings(events.get(iid, []), as_of) for iid in ids}
        return {iid: spells for iid, spells in found.items() if spells}

    def _last_resolves(self, incident_ids: Sequence[int]) -> dict[int, Any]:
        """The details of the latest resolve event of each of these incidents that is resolved now."""
        rows = self.database.rows(
            "SELECT e.incident_id, e.details FROM incident_events e JOIN incidents i ON i.id = e.incident_id "
            f"WHERE e.kind = 'resolve' AND i.status = 'resolved' AND e.incident_id {IN_LIST} ORDER BY e.id",
            (json_list(int(i) for i in incident_ids),)) if incident_ids else []
        return {int(r["incident_id"]): r["details"] for r in rows}

    def create_group(self, name: str, cause: str, services: Sequence[str], at: datetime,
                     incident_ids: Sequence[int]) -> int:
        with self.database.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO incident_groups (name, cause, services, opened_at) VALUES (?, ?, ?, ?)",
                (name, cause, json.dumps(list(services)), iso(at)),
            )
            group_id = int(cur.lastrowid or 0)
            for iid in incident_ids:
                conn.execute("UPDATE incidents SET group_id = ? WHERE id = ?", (group_id, iid))
                _event(conn, iid, "group", at, {"group_id": group_id, "group": name, "cause": cause})
        return group_id

    def join_group(self, group_id: int, services: Sequence[str], at: datetime, incident_ids: Sequence[int]) -> None:
        """Add late openings to an existing group."""
        with self.database.transaction() as conn:
            row = conn.execute("SELECT name, cause, services FROM incident_groups WHERE id = ?",
                               (group_id,)).fetchone()
            merged = list(dict.fromkeys([*json.loads(row["services"]), *services]))
            conn.execute("UPDATE incident_groups SET services = ? WHERE id = ?", (json.dumps(merged), group_id))
            for iid in incident_ids:
                conn.execute("UPDATE incidents SET group_id = ? WHERE id = ?", (group_id, iid))
                _event(conn, iid, "group", at, {"group_id": group_id, "group": row["name"], "cause": row["cause"]})


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, dict | list | tuple):
        return json.dumps(value)
    return value


def _event(conn: Any, incident_id: int, kind: str, at: datetime, details: Mapping[str, Any]) -> None:
    conn.execute(
        "INSERT INTO incident_events (incident_id, kind, at, details) VALUES (?, ?, ?, ?)",
        (incident_id, kind, iso(at), json.dumps(dict(details), default=str)),
    )

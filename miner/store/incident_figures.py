"""An incident's figures (peak, peak z, complaints, symptoms) as of an earlier time, counted again from its buckets
and posts: what a digest rendered as of its scheduled time shows (miner.alerts.as_of), where the incident's row holds
its figures of now."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from miner.store.incidents import resolved_by
from miner.store.posts import COMPLAINER
from miner.store.posts import LATEST as _LATEST
from miner.store.signals import _COUNTED
from miner.store.sql_lists import IN_LIST, json_list
from miner.timeutil import iso

if TYPE_CHECKING:
    from miner.store.db import Database


class Spell(NamedTuple):
    """Buckets of an incident to count: those beginning in [start, end), of ``service``."""

    incident_id: int
    service: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class BucketFigures:
    """An incident's figures over some of its buckets that the buckets' rows hold, as the detector keeps them on its
    row (see IncidentDraft): the most complaints and the highest z of one bucket, and the complaints of them all."""

    peak: int
    peak_score: float | None  # None: no bucket of it scored
    total: int


@dataclass(frozen=True)
class IncidentFigures(BucketFigures):
    """BucketFigures, and the complaints per symptom, counted from the buckets' posts."""

    symptoms: dict[str, int]


# The windows of one statement: a JSON array of objects bound once, no cap on how many (see sql_lists). DISTINCT
# keeps SQLite from flattening it into the posts' read, which parsed the JSON again for each post (4.4 s for the
# bench's storm, 0.75 s made once); AS MATERIALIZED says so only from SQLite 3.35.
_WINDOWS = ("WITH w AS (SELECT DISTINCT json_extract(value, '$.id') AS id, "
            "json_extract(value, '$.service') AS service, json_extract(value, '$.start') AS lo, "
            "json_extract(value, '$.end') AS hi FROM json_each(?)) ")


class IncidentFiguresMixin:
    database: Database

    def bucket_figures(self, spells: Sequence[Spell]) -> dict[int, BucketFigures]:
        """The figures of each incident of ``spells`` that its buckets' rows hold, over the buckets its spells hold,
        in one read for them all. Incidents with no spell are not in it; one with spells and no stored bucket has
        zeros. A read of buckets alone: a digest picks the incidents it shows by their figures of its time, read for
        all it covers, thousands in a storm, before it counts the symptoms of those it shows (incident_figures)."""
        if not spells:
            return {}
        # A bucket is counted once, in the one spell that holds it: the spells of an incident do not overlap.
        rows = self.database.rows(
            _WINDOWS + "SELECT w.id, max(b.complaints) AS peak, max(b.score) AS peak_score, "
            "sum(b.complaints) AS total FROM w JOIN buckets b ON b.service = w.service AND b.bucket_start >= w.lo "
            "AND b.bucket_start < w.hi GROUP BY w.id", (_windows(spells),))
        found = {int(r["id"]): r for r in rows}
        out: dict[int, BucketFigures] = {}
        for iid in dict.fromkeys(s.incident_id for s in spells):
            row = found.get(iid)
            out[iid] = BucketFigures(
                peak=int(row["peak"] or 0) if row else 0,
                peak_score=float(row["peak_score"]) if row and row["peak_score"] is not None else None,
                total=int(row["total"] or 0) if row else 0)
        return out

    def incident_figures(self, spells: Sequence[Spell], width: timedelta,
                         buckets: Mapping[int, BucketFigures] | None = None) -> dict[int, IncidentFigures]:
        """The figures of each incident of ``spells`` over the buckets (of ``width``) its spells hold, in two reads
        for them all: bucket_figures, and their posts' symptoms, counted per bucket as the detector counts them
        (symptom_counts: each author once per bucket, under the symptom of most of their posts in it). Incidents with
        no spell are not in it; one with spells and no stored bucket has zeros. ``buckets``: the bucket_figures of
        these spells' incidents read already (those a digest picked its incidents by), not read again."""
        if not spells:
            return {}
        found = dict(buckets or {})
        if missing := [s for s in spells if s.incident_id not in found]:
            found.update(self.bucket_figures(missing))
        seconds = int(width.total_seconds())
        # Each author once per bucket, under the symptom of most of their posts in it, the latest of two as frequent
        # (symptom_counts). The posts are read once per run of overlapping spells, through posts_created_at, in the
        # order written (CROSS JOIN), and the verdicts of the spells' posts only. Read per spell, a digest of a storm
        # of 60 services open together read the same 90,000 posts (of every service) for each of the 50 it shows:
        # 7.4 s, where once takes 0.8 s (bench/digest_as_of_bench.py).
        posts = self.database.rows(
            _WINDOWS + f"""
            , r AS (SELECT json_extract(value, '$[0]') AS lo, json_extract(value, '$[1]') AS hi FROM json_each(?))
            SELECT id, symptom, count(*) AS n FROM (
                SELECT id, symptom, row_number() OVER (PARTITION BY id, slot, who
                                                       ORDER BY n DESC, last DESC, last_id DESC) AS nth FROM (
                    SELECT w.id, CAST(strftime('%s', p.created_at) AS INTEGER) / {seconds} AS slot,
                           {COMPLAINER} AS who, coalesce(c.symptom, 'general') AS symptom,
                           count(*) AS n, max(p.created_at) AS last, max(p.id) AS last_id
                    FROM r CROSS JOIN posts p CROSS JOIN post_services ps ON ps.post_id = p.id
                    CROSS JOIN w ON w.service = ps.service AND p.created_at >= w.lo AND p.created_at < w.hi
                    CROSS JOIN classifications c ON c.post_id = p.id AND {_LATEST}
                    WHERE p.created_at >= r.lo AND p.created_at < r.hi AND c.outage = 1 AND {_COUNTED}
                    GROUP BY 1, 2, 3, 4))
            WHERE nth = 1 GROUP BY id, symptom
            """, (_windows(spells), json.dumps(_runs(spells))))
        symptoms: dict[int, dict[str, int]] = {}
        for r in posts:
            symptoms.setdefault(int(r["id"]), {})[r["symptom"]] = int(r["n"])
        out: dict[int, IncidentFigures] = {}
        for iid in dict.fromkeys(s.incident_id for s in spells):
            counts, of = symptoms.get(iid, {}), found[iid]
            out[iid] = IncidentFigures(of.peak, of.peak_score, of.total,
                                       dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))))
        return out

    def resolves_as_of(self, incident_ids: Sequence[int], as_of: datetime) -> dict[int, datetime | None]:
        """Of these incidents, each one's state at ``as_of`` from its events, in one read: when it had last
        resolved by then, or None where it was open then (its last opening or re-opening by then came after its
        last resolve). Those with no event by then (opened after) are not in it."""
        ids = [int(i) for i in incident_ids]
        rows = self.database.rows(
            "SELECT incident_id, kind, at, details FROM incident_events WHERE kind IN ('open', 'resolve', 'update') "
            f"AND at <= ? AND incident_id {IN_LIST} ORDER BY id", (iso(as_of), json_list(ids))) if ids else []
        events: dict[int, list[Any]] = {}
        for r in rows:
            events.setdefault(int(r["incident_id"]), []).append(r)
        return {iid: resolved_by(evs, as_of) for iid, evs in events.items()}


def _windows(spells: Sequence[Spell]) -> str:
    """``spells`` as _WINDOWS reads them."""
    return json.dumps([{"id": s.incident_id, "service": s.service, "start": iso(s.start), "end": iso(s.end)}
                       for s in spells])


def _runs(spells: Sequence[Spell]) -> list[list[str]]:
    """The spans of time ``spells`` cover, those that overlap or touch joined: [start, end] each, as stored."""
    runs: list[list[datetime]] = []
    for s in sorted(spells, key=lambda s: s.start):
        if runs and s.start <= runs[-1][1]:
            runs[-1][1] = max(runs[-1][1], s.end)
        else:
            runs.append([s.start, s.end])
    return [[iso(lo), iso(hi)] for lo, hi in runs]

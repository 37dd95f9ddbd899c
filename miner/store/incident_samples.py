"""The sample posts of many incidents at once: what a digest of a storm shows for each of its incidents, in one read
where each incident's own (SignalsMixin.sample_posts) read the window's posts of every service again."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from miner.store.incident_figures import _WINDOWS, Spell, _runs
from miner.store.posts import LATEST as _LATEST
from miner.store.signals import _COUNTED
from miner.timeutil import iso

if TYPE_CHECKING:
    from miner.store.db import Database


class SampleSpan(NamedTuple):
    """The complaints about ``service`` created in [start, end) that an incident's samples are chosen from."""

    service: str
    start: datetime
    end: datetime


class IncidentSamplesMixin:
    database: Database

    def sample_posts_of(self, spans: Sequence[SampleSpan], limit: int) -> dict[SampleSpan, list[dict[str, Any]]]:
        """For each of ``spans``, what ``sample_posts(service, start, end, limit)`` gives, the same posts in the same
        order, in one read for them all: the posts are read once per run of overlapping spans, through
        posts_created_at, in the order written (CROSS JOIN, as incident_figures reads them). Read per span, a digest
        of a storm of 60 services open together read the same 90,000 posts (of every service) for each of the 50 it
        shows, 0.1 s each (bench/digest_as_of_bench.py)."""
        unique = list(dict.fromkeys(spans))
        if not unique:
            return {}
        spells = [Spell(i, s.service, s.start, s.end) for i, s in enumerate(unique)]
        windows = json.dumps([{"id": s.incident_id, "service": s.service, "start": iso(s.start), "end": iso(s.end)}
                              for s in spells])
        # Each span's texts once (their best post), then its best `limit` of them: sample_posts' two steps, per span.
        rows = self.database.rows(
            _WINDOWS + f"""
            , r AS (SELECT json_extract(value, '$[0]') AS lo, json_extract(value, '$[1]') AS hi FROM json_each(?))
            SELECT span, id, text, url, source, created_at, score, symptom FROM (
                SELECT *, row_number() OVER (PARTITION BY span
                                             ORDER BY score DESC, created_at DESC, id DESC) AS rank FROM (
                    SELECT w.id AS span, p.id, p.text, p.url, p.source, p.created_at, c.score, c.symptom,
                           row_number() OVER (PARTITION BY w.id, p.text
                                              ORDER BY c.score DESC, p.created_at DESC, p.id DESC) AS nth
                    FROM r CROSS JOIN posts p CROSS JOIN post_services ps ON ps.post_id = p.id
                    CROSS JOIN w ON w.service = ps.service AND p.created_at >= w.lo AND p.created_at < w.hi
                    CROSS JOIN classifications c ON c.post_id = p.id AND {_LATEST}
                    WHERE p.created_at >= r.lo AND p.created_at < r.hi AND c.outage = 1 AND {_COUNTED})
                WHERE nth = 1)
            WHERE rank <= ? ORDER BY span, rank
            """, (windows, json.dumps(_runs(spells)), limit))
        out: dict[SampleSpan, list[dict[str, Any]]] = {s: [] for s in unique}
        for r in rows:
            span = r.pop("span")
            out[unique[int(span)]].append(r)
        return out

"""An incident as it stood at an earlier time: the time a digest is rendered as of (its scheduled time, `miner digest
--at`, a retry of a queued one), where the incident's row holds what it is now.

Its state then comes from its events up to that time; its figures (peak, peak z, complaints, symptoms) from the
buckets that had ended by then, counted again from the store (IncidentFiguresMixin), but only for an incident whose
row changed after that time: the row of one that did not is its state then, read as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from miner.alerts.text import safe_number
from miner.store.incident_figures import BucketFigures, IncidentFigures, Spell
from miner.store.incidents import opening_width
from miner.timeutil import floor_time, parse_iso

if TYPE_CHECKING:
    from miner.store import Store

Reopenings = Sequence[tuple[datetime | None, datetime]]  # (the resolve before it, the re-opening): see reopenings()


def changed_after(row: Mapping[str, Any], as_of: datetime) -> bool:
    """Whether the incident's row was written after ``as_of`` (its updated_at: the end of the last bucket that
    changed it), so that its figures are not those of then. A row without updated_at is taken to have been."""
    at = row.get("updated_at")
    return not at or parse_iso(str(at)) > as_of


def resolved_at(row: Mapping[str, Any], as_of: datetime, events_say: datetime | None) -> datetime | None:
    """When the incident had resolved by ``as_of``, None where it was open then: its row's resolve, where that came
    by then (no re-opening follows it: a re-opening clears it); otherwise what its events by then say
    (``events_say``, see miner.store.incidents.resolved_by), which know of a resolve by ``as_of`` that a re-opening
    after it undid."""
    at = row.get("resolved_at")
    if at and parse_iso(str(at)) <= as_of:
        return parse_iso(str(at))
    return events_say


def cut(as_of: datetime, width: timedelta, own: timedelta | None) -> datetime:
    """The end of the last bucket ended by ``as_of``: what is counted as of it. A bucket still in progress then is
    not: it was not scored, and its count now holds posts that came after (a retry would show them). Of ``width``,
    the store's, or the narrower ``own``, the incident's opening bucket's (opening_width): a width grown since kept
    the buckets before the first post it counted again at their width, and an hour's grid cut the 5-minute buckets
    of an incident opened just before out of it."""
    return floor_time(as_of, min(width, own) if own else width)


def spells(row: Mapping[str, Any], resolved: datetime | None, reopenings: Reopenings, as_of: datetime,
           width: timedelta) -> list[Spell]:
    """The runs of buckets the detector had folded into the incident by ``as_of`` (IncidentDraft.total_complaints):
    from its opening bucket to the last bucket ended by then, or to its resolving one (the bucket ending at
    ``resolved``, its resolve by then), without the quiet buckets between a resolve and a re-opening (after the one
    that resolved it, before the one that opened it again)."""
    opened = parse_iso(str(row["opened_at"]))
    own = opening_width(row, width) or width
    # A width grown since it opened (its buckets counted again wider): the wider bucket holding its opening one.
    start = opened - own if width <= own else floor_time(opened - own, width)
    end = cut(as_of, width, own)
    end = min(end, resolved) if resolved is not None else end
    found: list[Spell] = []
    iid, service = int(row["id"]), str(row["service"])
    for before, back in reopenings:
        if before is None or back > as_of:
            continue
        found.append(Spell(iid, service, start, before))
        start = back - width
    found.append(Spell(iid, service, start, end))
    return [s for s in found if s.start < s.end]


Then = tuple[Mapping[str, Any], datetime | None, Reopenings]  # an incident's row, its resolve and re-openings by then


def spells_as_of(incidents: Sequence[Then], as_of: datetime, width: timedelta | None) -> list[Spell]:
    """The spells (see spells()) of those of ``incidents`` whose row changed after ``as_of``: what their figures
    then are counted over; none without a bucket width (no detector has scored a bucket: there are no buckets to
    count)."""
    if width is None:
        return []
    return [s for row, resolved, back in incidents if changed_after(row, as_of)
            for s in spells(row, resolved, back, as_of, width)]


def figures_as_of(store: Store, incidents: Sequence[Then], as_of: datetime,
                  width: timedelta | None) -> dict[int, IncidentFigures]:
    """The figures as of ``as_of`` of those of ``incidents`` (row, its resolve by then, its re-openings by then)
    whose row changed after it, in one read of the store for them all; {} without a bucket width or where none
    changed after it."""
    found = spells_as_of(incidents, as_of, width)
    return store.incident_figures(found, width) if found and width else {}


def peak_z(row: Mapping[str, Any], then: BucketFigures | None) -> float:
    """The incident's peak z as of a time, as notifications show it: its figures then (``then``: None where its
    row's are those of then), or its row's where no bucket of it had scored by then. A digest picks the incidents it
    shows by it too, so that it leaves out none whose z then is above that of one it shows."""
    return then.peak_score if then is not None and then.peak_score is not None else safe_number(row.get("peak_score"))


def rows_as_of(store: Store, rows: Sequence[dict[str, Any]], as_of: datetime
               ) -> list[tuple[dict[str, Any], datetime | None]]:
    """``rows`` with each one's resolve by ``as_of`` (None: open then), reading the events, in one read, only of
    those its row cannot say it of (not resolved by then: open now, or resolved after)."""
    unsure = [int(r["id"]) for r in rows if not (r.get("resolved_at") and parse_iso(r["resolved_at"]) <= as_of)]
    said = store.resolves_as_of(unsure, as_of) if unsure else {}
    return [(r, resolved_at(r, as_of, said.get(int(r["id"])))) for r in rows]

"""The incidents a digest covers, as of the time it is rendered at (its scheduled time: a retry, or a digest queued
with `miner digest --at`, shows what that time's digest showed)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from miner.alerts.as_of import changed_after, peak_z, rows_as_of, spells_as_of
from miner.alerts.content import IncidentView, incident_view, most_important, sample_span, samples_of
from miner.alerts.settings import AlertSettings
from miner.timeutil import iso, parse_iso

if TYPE_CHECKING:
    from miner.store import Store


def _covered(store: Store, services_match: Any, since: datetime, as_of: datetime
             ) -> list[tuple[dict[str, Any], datetime | None]]:
    """The incidents a digest covers, each with its resolve by ``as_of`` (None: open then): opened by then, and open
    then or resolved in [since, as_of). One resolved after ``since``, re-opened and resolved again after ``as_of`` is
    not open then, and one resolved by then before ``since`` is not covered, whatever its row says now.

    Half-open, as a route's digests' periods meet (``since`` is the last one's ``as_of``): one resolved exactly at a
    digest's time was in that digest and, "resolved since" it, in the next one too. It goes in the next one, not in
    that one: a resolve is dated at its bucket's end, often a digest's time on the hour, and recorded once the
    detector scores that bucket, minutes later, so the digest sent then showed it open, and with (since, as_of] no
    digest would have said it resolved. So that digest shows it open however late it is rendered. The
    first digest's ``since`` (the time its schedule was first seen, or the
    time a clock that was ahead was set right, which incidents stamped by that clock are taken back to) is in it."""
    rows = [r for r in store.incidents(since=since) if services_match(r["service"]) and r["opened_at"] <= iso(as_of)]
    # Resolves read as of just before as_of: one resolved at as_of itself is open in this digest whenever it is
    # rendered. Read as resolved, it was in neither period's "open" nor this one's "resolved", and a digest rendered
    # after the detector recorded it (a retry, a send after the process job) said "no incidents" for a period the
    # incident was open throughout.
    before = as_of - timedelta(microseconds=1)  # stored times are whole seconds
    return [(r, resolved) for r, resolved in rows_as_of(store, rows, before)
            if resolved is None or since <= resolved < as_of]


def digest_incident_rows(store: Store, services_match: Any, since: datetime, as_of: datetime) -> list[dict[str, Any]]:
    """The incidents a digest covers: open at ``as_of`` or resolved since ``since``, and opened by ``as_of``.

    Shared by the digest and the planner's "is there news?" check, so a quiet digest is never sent as "all quiet"
    because of an incident that opened after the time it is rendered at.
    """
    return [r for r, _ in _covered(store, services_match, since, as_of)]


@dataclass(frozen=True)
class DigestIncidents:
    views: list[IncidentView]  # the most important first, at most the limit asked for
    total: int  # all the digest covers, shown or not
    open: int  # of total
    open_services: frozenset[str] = frozenset()  # of those open, shown or not


def digest_incidents(store: Store, settings: AlertSettings, services_match: Any, since: datetime,
                     as_of: datetime, limit: int | None = None) -> DigestIncidents:
    """Open incidents and those resolved since ``since``, opened by ``as_of``, as they stood then: open ones first,
    then by peak z then.

    Only the first ``limit`` are read in full (samples, series, official post): a digest after a storm of
    thousands stays quick, and says how many it leaves out. They are chosen by their peak z as of ``as_of``, the one
    they show: the buckets' figures of those whose rows changed after it are read again, in one read for all it
    covers, and the symptoms of those it shows in one more.
    """
    minutes = store.bucket_minutes()
    width = timedelta(minutes=minutes) if minutes else None
    covered = _covered(store, services_match, since, as_of)
    changed = [int(r["id"]) for r, _ in covered if changed_after(r, as_of)]
    back = store.reopenings_of(changed, as_of) if changed and width else {}
    spells = spells_as_of([(r, resolved, back.get(int(r["id"]), [])) for r, resolved in covered], as_of, width)
    # Picked by their rows' z, one whose z rose after as_of took the place of one above it then, and showed the z of
    # then beside it: "z 4.0" shown, one of z 6.0 then left out.
    then = store.bucket_figures(spells)
    rows = sorted(covered, key=lambda rr: (rr[1] is not None, -peak_z(rr[0], then.get(int(rr[0]["id"]))),
                                           parse_iso(rr[0]["opened_at"])))
    chosen = rows if limit is None else rows[:limit]
    shown = {int(r["id"]) for r, _ in chosen}
    figures = (store.incident_figures([s for s in spells if s.incident_id in shown], width, then)
               if width is not None else {})
    # An opening miner saw late says so here as in its alert: the digest is all a route hears of one it was not
    # alerted to (stale, muted, a digest-only route), where it read as an outage miner had seen begin.
    late = store.late_openings([r for r, _ in chosen])
    # Their sample posts in one read too: each one's read the posts of every service in its span again, 0.1 s each
    # in a storm of 60 (bench/digest_as_of_bench.py). incident_view reads one whose span it finds otherwise itself.
    samples = samples_of(store, settings, [sample_span(r, resolved, as_of, width) for r, resolved in chosen])
    views = [replace(v, seen_late_at=late[v.id][0], late_seconds=late[v.id][1]) if v.id in late else v
             for r, _ in chosen
             if (v := incident_view(store, settings, r["id"], as_of, figures, samples, open_at_end=True)) is not None]
    # In the order of their peak z then, as picked (a stable sort: those alike keep their opening's order).
    return DigestIncidents(most_important(views), len(rows), sum(resolved is None for _, resolved in rows),
                           frozenset(str(r["service"]) for r, resolved in rows if resolved is None))

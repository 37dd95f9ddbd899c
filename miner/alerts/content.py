"""What a notification says about an incident, gathered from the store as of a given time.

Every field the detector or a collector wrote is read defensively (missing, null, odd JSON) and every piece of
post text is cleaned here, so the templates and webhook payloads only ever see safe, bounded values.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from miner.alerts.as_of import cut, figures_as_of, peak_z, resolved_at
from miner.alerts.official import LEAD, Official, lead_words, provider_incident
from miner.alerts.peak import peak_baseline
from miner.alerts.settings import AlertSettings
from miner.alerts.text import clean_text, safe_number, safe_url
from miner.store.incident_figures import IncidentFigures
from miner.store.incident_samples import SampleSpan
from miner.store.incidents import (
    UnscoredGap,
    first_bucket,
    opening_width,
    resolved_by,
    unscored_gap,
    untracked_reason,
)
from miner.store.incidents import reopenings as incident_reopenings
from miner.timeutil import duration_text, parse_iso

if TYPE_CHECKING:
    from miner.store import Store


@dataclass(frozen=True)
class SamplePost:
    text: str
    url: str | None
    source: str
    created_at: str
    symptom: str


@dataclass(frozen=True)
class IncidentView:
    id: int
    service: str
    status: str  # open | resolved
    opened_at: datetime
    resolved_at: datetime | None
    duration: str
    peak_complaints: int
    baseline: float
    peak_score: float
    total_complaints: int
    symptoms: list[tuple[str, int, int]]  # (symptom, posts, percent)
    samples: list[SamplePost]
    official: Official | None
    # A status page of its provider is watched (a statuspage or status_feed source): its silence is worth saying.
    watched: bool
    # > 0: we saw it this many minutes before the provider posted it (its post, not the start it gives the impact)
    lead_minutes: float | None
    group: str  # the incident group's name and likely cause, when grouped
    series: list[dict[str, Any]] = field(default_factory=list)
    cid: str = ""
    # An alert about an opening the planner first saw more than stale_after after it happened (miner was down, or
    # caught up a backlog): when it saw it and how late (outbox_items). None for every other notification.
    seen_late_at: datetime | None = None
    late_seconds: float | None = None
    # The incident resolved and came back within the detector's cool-down (the same incident): its last re-opening
    # by as_of, and the resolve before it. None if it never re-opened.
    reopened_at: datetime | None = None
    resolved_before: datetime | None = None
    # Each time it was resolved between two open spells by as_of, (resolve, re-opening): not part of the outage.
    gaps: tuple[tuple[datetime, datetime], ...] = ()
    # Resolved by miner, not by the detector seeing complaints fall (the service left feeds.toml, or its detector
    # state could not be read): why, for the on-call; "" for every other incident.
    untracked: str = ""
    # Resolved by the detector after miner's own downtime (longer than detector.max_fill_hours), with no bucket scored
    # since that showed it going on: the span miner was not scoring, and the earliest its end may have come (the
    # first quiet bucket counted, when scored before the span): the outage ended unseen at some time from then to the
    # span's end. Its resolved_at is only when miner scored again, and its duration the bounds these give. None
    # otherwise.
    unscored: UnscoredGap | None = None

    @property
    def ratio(self) -> float | None:
        return self.peak_complaints / self.baseline if self.baseline > 0 else None

    @property
    def baseline_text(self) -> str:
        return baseline_text(self.baseline)

    @property
    def symptom_line(self) -> str:
        return ", ".join(f"{name} {n} ({pct}%)" for name, n, pct in self.symptoms[:6])

    @property
    def seen_late(self) -> bool:
        """Whether this is an alert about an opening seen late: the one test every format makes (the JSON's
        detected_late said so of a row without its late_seconds, of which Slack, Teams and the email said nothing)."""
        return self.seen_late_at is not None and self.late_seconds is not None

    @property
    def news_at(self) -> datetime:
        """When an alert's news about it happened: its re-opening if it is open again (seen late too: a re-opening
        is the late one), else its opening. The email's heading and PagerDuty's timestamp give it."""
        return self.reopened_at if self.reopened_at and self.status == "open" else self.opened_at

    @property
    def late_text(self) -> str:
        """What an alert about an opening seen late says of it ("" for any other), so nobody reads it as an outage
        that has just begun: when it opened, when miner first saw it, and why so late."""
        if self.seen_late_at is None or self.late_seconds is None:  # not seen_late, spelt out for mypy
            return ""
        # seen_late_at is stored to the second, late_seconds to the planner's microsecond: "opened 10:09" for 10:10.
        seen, opened = self.seen_late_at, self.seen_late_at - timedelta(seconds=int(self.late_seconds))
        when = "%H:%M" if seen.date() == opened.date() else "%Y-%m-%d %H:%M"
        return (f"opened {opened.strftime(when)} UTC, first seen by miner at {seen.strftime(when)} UTC "
                f"({duration_text(self.late_seconds)} late: miner was down or catching up)")

    @property
    def gap_text(self) -> str:
        """What a notice of an incident resolved after a gap says of it ("" for any other): when miner was not
        watching, so nobody reads its resolve time, hours after the outage ended, for the end."""
        return "" if self.unscored is None else gap_text(self.unscored)

    @property
    def reopen_text(self) -> str:
        """When an incident that resolved came back ("" if it never did): an alert about the re-opening said only
        "Detected" at the first opening, hours back, read as the first alert sent again after its resolve notice."""
        return "" if self.reopened_at is None else reopen_text(self.reopened_at, self.resolved_before)

    @property
    def lead_label(self) -> str:
        return lead_words(self.lead_minutes, bool(self.official and self.official.first_seen))[0]

    @property
    def lead_text(self) -> str:
        return lead_words(self.lead_minutes, bool(self.official and self.official.first_seen))[1]

    @property
    def lead_line(self) -> str:
        """The lead in a line of chat (Slack, Teams): "" without one."""
        label, text = lead_words(self.lead_minutes, bool(self.official and self.official.first_seen))
        return "" if not text else f"our lead {text}" if label == LEAD else f"{label.lower()}: {text}"


def _within(first: datetime, then: datetime) -> str:
    """How ``then`` is written after ``first``: the time alone on the same day, else dated."""
    return "%H:%M" if first.date() == then.date() else "%Y-%m-%d %H:%M"


# The wording of a re-opening and of a resolve after a gap, shared with the status board (miner/status_board.py),
# which says of an incident what its alerts say.

def gap_text(unscored: UnscoredGap) -> str:
    """When miner was not scoring, and when an incident resolved after a gap ended, unseen (IncidentView.gap_text):
    in the span, or, when quiet buckets scored before it counted towards the resolve, from the first of them on
    (complaints were seen back to normal then, but might have come back in the span)."""
    start, end, ended_from = unscored
    text = f"miner was not scoring from {start:%Y-%m-%d %H:%M} to {end.strftime(_within(start, end))} UTC"
    if ended_from >= start:
        return text + ": the outage ended at some time in it, unseen"
    return (f"{text}; complaints were back to normal from {ended_from.strftime(_within(start, ended_from))} UTC, "
            f"before it: the outage ended at some time from then to {end.strftime(_within(start, end))} UTC, unseen")


def gap_duration(opened: datetime, unscored: UnscoredGap) -> str:
    """How long an incident resolved after a gap lasted: between the earliest its end may have come and the end of
    the span miner was not scoring."""
    return (f"{duration_text(max(0.0, (unscored.ended_from - opened).total_seconds()))} to "
            f"{duration_text((unscored.end - opened).total_seconds())}")


def reopen_text(reopened: datetime, resolved_before: datetime | None) -> str:
    """When an incident came back, and how long after the resolve before it (IncidentView.reopen_text)."""
    text = f"{reopened:%Y-%m-%d %H:%M} UTC"
    if resolved_before is not None:
        gap = (reopened - resolved_before).total_seconds()
        # A resolve the day before (23:50 for a re-opening at 00:10) is dated, as late_text does: the time alone
        # read as that day's.
        when = _within(reopened, resolved_before)
        text += f", {duration_text(gap)} after it resolved at {resolved_before.strftime(when)} UTC"
    return text


def baseline_text(baseline: float) -> str:
    """A baseline as shown beside the peak: to one decimal, or two below 1, where one made 0.352 "0.4" and
    "17 vs baseline 0.4 (48.3x)" did not add up (17 / 0.4 is 42.5)."""
    return f"{baseline:.2f}" if 0 < baseline < 1 else f"{baseline:.1f}"


@dataclass(frozen=True)
class FailingSource:
    name: str
    type: str
    error: str
    failures: int
    last_ok_at: str
    needs_action: bool = False  # lasts until someone acts (sources.needs_action_since): no use waiting for it


def _json(value: Any, default: Any) -> Any:
    if not isinstance(value, str):
        return default
    try:
        parsed = json.loads(value)
    except ValueError:
        return default
    return parsed if isinstance(parsed, type(default)) else default


_SAMPLE_READ = 5  # candidate posts read per sample shown
LEAD_IN = timedelta(minutes=30)  # before the opening, the least a notification's samples and symptoms reach back


def _lead_in(width: timedelta | None) -> timedelta:
    """How far before the opening (the end of its bucket) the samples and symptoms start: LEAD_IN, or the whole
    opening bucket when it is wider. 30 minutes of an hour-wide bucket left out the complaints that opened it."""
    return max(LEAD_IN, width) if width else LEAD_IN


def _until(as_of: datetime, width: timedelta | None, own: timedelta | None) -> datetime:
    """What the buckets ended by as_of hold: one still in progress then would be drawn, sampled and counted on a retry
    with the posts that came after as_of."""
    return cut(as_of, width, own) if width else as_of + timedelta(seconds=1)


def sample_span(row: Mapping[str, Any], resolved: datetime | None, as_of: datetime,
                width: timedelta | None) -> SampleSpan:
    """Where the samples (and symptoms) of incident ``row`` are read, as of ``as_of``, where it had resolved at
    ``resolved`` by then (None: open then); ``width``: the store's bucket width (None: no bucket scored yet).
    Reports just before the opening are what made it open: they are the incident's (_lead_in)."""
    own = opening_width(row, width)
    return SampleSpan(str(row["service"]), parse_iso(row["opened_at"]) - _lead_in(own),
                      min((resolved or as_of) + timedelta(seconds=1), _until(as_of, width, own)))


def samples_of(store: Store, settings: AlertSettings, spans: Sequence[SampleSpan]
               ) -> dict[SampleSpan, list[dict[str, Any]]]:
    """The candidate samples of many incidents' ``spans`` (sample_span), in one read, for incident_view."""
    return store.sample_posts_of(spans, settings.max_samples * _SAMPLE_READ)


def incident_view(store: Store, settings: AlertSettings, incident_id: int, as_of: datetime,
                  figures: Mapping[int, IncidentFigures] | None = None,
                  sample_reads: Mapping[SampleSpan, list[dict[str, Any]]] | None = None, *,
                  open_at_end: bool = False) -> IncidentView | None:
    """The incident as notifications show it, as of ``as_of``: its state then (open then, though resolved since),
    and its figures of the buckets ended by then (miner.alerts.as_of). ``figures``: those of the incidents whose
    rows changed after ``as_of``, read for a whole digest at once (None: read here, for this one, if it did).
    ``sample_reads``: candidate sample posts per span (samples_of), read for a whole digest at once; one whose span
    is not in it (or None) is read here. ``open_at_end``: one resolved at ``as_of`` itself is shown open (a digest's
    period ends before its time: digest_content._covered)."""
    row = store.incident(incident_id)
    if row is None:
        return None
    opened = parse_iso(row["opened_at"])
    # What happened after as_of is not known then: its transitions, and the row's figures (below).
    events = [ev for ev in store.incident_events(incident_id) if parse_iso(ev["at"]) <= as_of]
    before = as_of - timedelta(microseconds=1) if open_at_end else as_of  # stored times are whole seconds
    resolved = resolved_at(row, before, resolved_by(events, before))
    end = resolved or as_of
    service = str(row["service"])
    minutes = store.bucket_minutes()
    width = timedelta(minutes=minutes) if minutes else None  # None: no detector has scored a bucket yet
    reopenings = incident_reopenings(events, as_of)
    if figures is None:
        figures = figures_as_of(store, [(row, resolved, reopenings)], as_of, width)
    then = figures.get(incident_id)  # None: the row's figures are those of as_of
    # Reports just before the opening are what made it open: count them with the incident (as the samples do).
    own = opening_width(row, width)
    until = _until(as_of, width, own)
    span = sample_span(row, resolved, as_of, width)
    lead_in, posts_end = span.start, span.end
    symptoms = ((then.symptoms if then is not None else _json(row.get("symptoms"), {}))
                or store.symptom_counts(service, lead_in, posts_end, width))
    counts = {clean_text(k, 40): int(safe_number(v)) for k, v in symptoms.items() if safe_number(v) > 0}
    total = sum(counts.values()) or 1
    breakdown = sorted(((k, n, round(100 * n / total)) for k, n in counts.items()), key=lambda t: -t[1])
    samples: list[SamplePost] = []
    seen: set[str] = set()
    # The same words again (a retweet, a copied complaint, one post on two networks) tell the reader nothing new:
    # each sample is a different text. The store gives each text once; read more than needed so that texts the same
    # but for case or spacing (which the cleaning below makes equal) do not leave the list short.
    read = settings.max_samples * _SAMPLE_READ
    candidates = sample_reads.get(span) if sample_reads is not None else None
    for p in store.sample_posts(service, lead_in, posts_end, read) if candidates is None else candidates:
        text = clean_text(p.get("text"), 280)
        if text.casefold() in seen:
            continue
        seen.add(text.casefold())
        samples.append(SamplePost(text, safe_url(p.get("url")), clean_text(p.get("source"), 60),
                                  str(p.get("created_at", "")), clean_text(p.get("symptom") or "general", 40)))
        if len(samples) == settings.max_samples:
            break
    official, lead = provider_incident(store, row, opened, end, settings.polled_sources)
    # Enough history to judge the spike against (twice the incident, at least 3 h), capped by chart_hours.
    history = min(timedelta(hours=settings.chart_hours), max(timedelta(hours=3), 2 * (end - opened)))
    chart_start = opened - history
    series = store.series(service, chart_start, min(end + timedelta(hours=1), until))
    peak = then.peak if then is not None else int(safe_number(row.get("peak_complaints")))
    first = None if own is None else first_bucket((parse_iso(r["bucket_start"]) for r in series), opened, own, width)
    resolved_before, reopened = reopenings[-1] if reopenings else (None, None)
    # Its last resolve's details say whether miner saw its end (None while open: it has not ended).
    ending = _last_resolve(events) if resolved else None
    unscored = unscored_gap(ending)
    # Its end fell in the span miner was not scoring: the duration is known to lie between the two ends of that span.
    duration = duration_text((end - opened).total_seconds()) if unscored is None else gap_duration(opened, unscored)
    return IncidentView(
        id=incident_id, service=clean_text(service, 80), status="resolved" if resolved else "open",
        opened_at=opened, resolved_at=resolved, duration=duration,
        peak_complaints=peak, baseline=peak_baseline(series, first, end, peak, safe_number(row.get("baseline"))),
        peak_score=peak_z(row, then),
        total_complaints=then.total if then is not None else int(safe_number(row.get("total_complaints"))),
        symptoms=breakdown, samples=samples, official=official, lead_minutes=lead,
        watched=settings.status_pages is None or service.lower() in settings.status_pages,
        group=_group(events), series=series, cid=f"chart-{incident_id}", reopened_at=reopened,
        resolved_before=resolved_before, gaps=tuple((r, at) for r, at in reopenings if r is not None),
        untracked=untracked_reason(ending), unscored=unscored,
    )


def _last_resolve(events: Sequence[Mapping[str, Any]]) -> Any:
    """The details of the incident's last resolve event (None if it has none): why miner resolved it without the
    detector seeing it end (untracked_reason), or the span it was not scoring when it ended, unseen (unscored_gap)."""
    last = next((ev for ev in reversed(events) if ev["kind"] == "resolve"), None)
    return last.get("details") if last is not None else None


def item_views(store: Store, settings: AlertSettings, items: Sequence[Mapping[str, Any]],
               as_of: datetime) -> list[IncidentView]:
    """The incidents of a notification's ``items``, each once, as of ``as_of`` (those gone from the store left out).

    A batch can hold two items about one incident: a resolve notice waiting out group_interval is joined by the
    same incident's next resolve when it opened again and resolved again meanwhile ("RESOLVED: Instagram,
    Instagram", two cards, and twice in a webhook's incidents).
    """
    ids = dict.fromkeys(int(it["incident_id"]) for it in items)
    # The planner's word on each opening seen late, not recomputed here: stale_after may have changed since.
    late = {int(it["incident_id"]): (parse_iso(it["seen_late_at"]), safe_number(it.get("late_seconds")))
            for it in items if it.get("kind") == "open" and it.get("seen_late_at")}
    views = [v for iid in ids if (v := incident_view(store, settings, iid, as_of)) is not None]
    return [replace(v, seen_late_at=late[v.id][0], late_seconds=late[v.id][1]) if v.id in late else v
            for v in views]


def _group(events: Sequence[Mapping[str, Any]]) -> str:
    for ev in reversed(events):
        if ev["kind"] == "group":
            details = _json(ev.get("details"), {})
            name = clean_text(details.get("group"), 80)
            cause = clean_text(details.get("cause"), 120)
            return f"{name}: {cause}" if name and cause else name or cause
    return ""


def failing_sources(store: Store, sources: Collection[str] | None) -> list[FailingSource]:
    """Failing sources among ``sources`` (the configured ones; None: every source in the store)."""
    return [
        FailingSource(clean_text(r["name"], 80), clean_text(r["type"], 30), clean_text(r.get("last_error"), 200),
                      int(safe_number(r.get("consecutive_failures"))), str(r.get("last_ok_at") or "never"),
                      bool(r.get("needs_action_since")))
        for r in store.failing_sources(sources)
    ]


# A digest lists at most this many failing sources: an outage of miner's own network or DNS fails every source at
# once, and 600 of them made a digest's HTML 156 KB (past Gmail's clipping, its end and the footer cut off unsaid),
# which left room for one incident of 300. `miner status` lists them all.
MAX_FAILING = 20


def listed_failing(failing: list[FailingSource]) -> list[FailingSource]:
    """The MAX_FAILING of ``failing`` a digest lists, in their order: those that need someone to act first, then
    those failing longest."""
    if len(failing) <= MAX_FAILING:
        return failing
    kept = {s.name for s in sorted(failing, key=lambda s: (not s.needs_action, -s.failures))[:MAX_FAILING]}
    return [s for s in failing if s.name in kept]


# A message about a huge batch or a digest after a storm stays small enough for any mail server or webhook
# receiver (a few hundred KB): the most important incidents in full; the message says how many it leaves out.
MAX_INCIDENTS = 50


def most_important(views: list[IncidentView]) -> list[IncidentView]:
    """Open incidents first, then by peak z: the order of every message, and what MAX_INCIDENTS keeps."""
    return sorted(views, key=lambda v: (v.status != "open", -v.peak_score))

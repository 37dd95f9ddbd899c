"""Incident lifecycle: a pure state machine over the detector's bucket scores plus what else is known about
each bucket (symptoms, sample posts, the provider's status page).

The pipeline keeps one :class:`IncidentDraft` per service with an incident and calls :func:`advance`
once per bucket, right after :func:`miner.detect.zscore.step`:

    draft, transitions = advance(params, service, draft, score, facts)

It stores the returned draft and persists each :class:`Transition`. After a resolve the draft is kept, with
``resolved_at`` set, for ``cooldown_minutes``: if the detector re-opens within that time the same incident
comes back (an ``update`` with reason ``reopened``) instead of a new one, and a provider's incident begun before
the resolve and posted since is matched (``official``); after it the draft becomes ``None``.

- ``open``: the detector opened an incident at this bucket; the draft is new.
- ``update``: something worth telling people changed: the peak count grew past ``update_peak_ratio`` times the
  peak last announced (``peak``), a first match with the provider's own incident (``official``), a different
  leading symptom (``symptom``), or the incident came back within the cool-down (``reopened``). Running totals
  change every bucket without an ``update``.
- ``resolve``: the detector resolved the incident; the draft carries ``resolved_at``.

Replays are harmless: a replayed score, or a bucket that ends at or before the draft's last bucket does, returns
the draft unchanged and no transitions, so a restart never re-opens or re-announces an incident.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Literal

from miner.detect.params import DetectorParams
from miner.detect.zscore import BucketScore
from miner.records import MAINTENANCE, OfficialIncident
from miner.timeutil import iso


def _no_symptoms() -> Mapping[str, int]:
    return MappingProxyType({})


@dataclass(frozen=True)
class BucketFacts:
    """What the pipeline knows about one service's bucket besides its count."""

    symptoms: Mapping[str, int] = field(default_factory=_no_symptoms)  # symptom -> outage posts in the bucket
    samples: Sequence[tuple[str, float]] = ()  # (post id, classifier score) of the bucket's outage posts
    official: Sequence[OfficialIncident] = ()  # the provider's incidents for this service known by now
    # The complaints of a bucket that began before the incident's last bucket ended (detector.bucket_minutes grew
    # since), those after that end, which symptoms and samples are of too; None: the bucket's whole count.
    complaints: float | None = None


@dataclass(frozen=True)
class IncidentDraft:
    """One incident as we see it, open or just resolved. Round-trips through :meth:`to_json`."""

    service: str
    opened_at: datetime  # start of the bucket where the detector opened it
    last_bucket: datetime  # the last bucket folded in
    peak_count: float
    peak_z: float
    total_complaints: float  # all complaints from the opening bucket to the resolving bucket, both included
    symptoms: tuple[tuple[str, int], ...] = ()  # symptom -> posts, most reported first
    samples: tuple[tuple[str, float], ...] = ()  # the most confident outage posts (id, score), best first
    official_ref: str | None = None  # "source:external_id" of the matched status-page incident
    official_title: str | None = None
    lead_minutes: float | None = None  # the provider's post minus our opening: > 0 means we were first
    resolved_at: datetime | None = None
    reported_peak: float = 0.0  # the peak count last announced (open or "peak" update): the next one must beat it
    # The width of last_bucket: detector.bucket_minutes may have changed since (None: a draft from before it was kept).
    last_minutes: int | None = None
    # The buckets miner skipped unscored while it was open (down longer than max_fill_hours), when every bucket scored
    # since was quiet (below z_close): a resolve then is of an outage that ended in them, unseen (see DetectStage).
    unscored: tuple[datetime, datetime] | None = None
    # The start of the first quiet bucket in the detector's count of them towards a resolve (None: it counts none).
    quiet_from: datetime | None = None
    # With unscored: the earliest its end may have come, quiet_from when the count began before the gap (complaints
    # were seen back to normal from then), else the gap's start. None: the gap's start (a draft kept before it was).
    ended_from: datetime | None = None

    @property
    def top_symptom(self) -> str | None:
        return self.symptoms[0][0] if self.symptoms else None

    def after_gap(self, params: DetectorParams, bucket_start: datetime, z: float, quiet: int) -> IncidentDraft:
        """This draft after ``bucket_start`` scored at ``z``, ``quiet`` the detector's count of quiet buckets once
        scored: without its unscored span if the bucket shows the outage going on after the gap, its end then seen.
        One at z_open or above does (it restarts the count); one between z_close and z_open only while the detector
        counts no quiet bucket, as it lets such a bucket hold the count, not restart it (noise in a recovery): after
        quiet ones, the resolve still counts them, and the end fell at or before them. Quiet buckets scored before
        the gap count too: the detector's count carries through it, and quiet_from keeps where it began."""
        quiet_from = None
        if quiet:
            # A count begun in buckets step() zero-filled, or before a draft kept without quiet_from: taken as
            # consecutive quiet buckets, it began no earlier than this.
            quiet_from = self.quiet_from or bucket_start - (quiet - 1) * timedelta(minutes=params.bucket_minutes)
        draft = self if quiet_from == self.quiet_from else replace(self, quiet_from=quiet_from)
        if draft.unscored is None or z < params.z_close or (z < params.z_open and quiet):
            return draft
        return replace(draft, unscored=None, ended_from=None)

    def skipped(self, start: datetime, end: datetime, quiet: int, width: timedelta) -> IncidentDraft:
        """This draft, open, after the detector stepped over the buckets from ``start`` to ``end`` unscored, counting
        ``quiet`` buckets of ``width`` towards a resolve: they join its unscored span, and its end may have come from
        the first quiet bucket counted, when scored before them (the docs say of those buckets its end came at or
        before them), else from ``start``. A span it had already keeps the earliest end it gave."""
        if self.unscored is not None:
            return replace(self, unscored=(self.unscored[0], end))
        # A draft kept without quiet_from (before miner kept it): its count taken as consecutive quiet buckets.
        first = self.quiet_from or (start - quiet * width if quiet else start)
        return replace(self, unscored=(start, end), ended_from=min(first, start))

    def gap_details(self) -> dict[str, str]:
        """What a resolve of this draft stores of its unseen end (none if it was seen): the unscored span, and the
        earliest the end may have come (ended_from, from which the incident is no longer shaded as going on)."""
        if self.unscored is None:
            return {}
        start, end = self.unscored
        return {"unscored_from": iso(start), "unscored_to": iso(end), "ended_from": iso(self.ended_from or start)}

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "service": self.service, "opened_at": self.opened_at.timestamp(),
            "last_bucket": self.last_bucket.timestamp(), "peak_count": self.peak_count, "peak_z": self.peak_z,
            "total_complaints": self.total_complaints, "symptoms": [list(s) for s in self.symptoms],
            "samples": [list(s) for s in self.samples], "official_ref": self.official_ref,
            "official_title": self.official_title, "lead_minutes": self.lead_minutes,
            "resolved_at": None if self.resolved_at is None else self.resolved_at.timestamp(),
            "reported_peak": self.reported_peak, "last_minutes": self.last_minutes,
        }
        if self.unscored is not None:
            data["unscored"] = [self.unscored[0].timestamp(), self.unscored[1].timestamp()]
        for name in ("quiet_from", "ended_from"):
            if (value := getattr(self, name)) is not None:
                data[name] = value.timestamp()
        return json.dumps(data, separators=(",", ":"))

    def rewound(self, to: datetime, width: timedelta) -> IncidentDraft:
        """This draft with no time after ``to`` (see :meth:`DetectorState.rewound`): buckets after ``to`` fold in.

        Its unscored span ends where scoring resumes (``to`` + ``width``), or is none if it began after ``to``: a
        clock ahead by more than max_fill_hours skipped buckets to come as a gap, which are scored once it is set
        back, and a resolve said the end fell unseen in them, up to hours after it."""
        unscored = self.unscored
        if unscored is not None:
            unscored = None if unscored[0] > to else (unscored[0], min(unscored[1], to + width))
        # A count of quiet buckets begun after ``to`` is none: those buckets are to come (DetectorState.rewound).
        quiet_from = None if self.quiet_from is None or self.quiet_from > to else self.quiet_from
        return replace(self, opened_at=min(self.opened_at, to), last_bucket=min(self.last_bucket, to),
                       resolved_at=None if self.resolved_at is None else min(self.resolved_at, to), unscored=unscored,
                       quiet_from=quiet_from, ended_from=None if unscored is None else self.ended_from)

    @classmethod
    def from_json(cls, text: str) -> IncidentDraft:
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict):  # said plainly, not left to a TypeError from indexing a list or a number
                raise ValueError(f"not a JSON object: {type(raw).__name__}")
            d: dict[str, Any] = raw

            def at(value: Any) -> datetime:
                return datetime.fromtimestamp(float(value), UTC)

            return cls(
                service=str(d["service"]), opened_at=at(d["opened_at"]), last_bucket=at(d["last_bucket"]),
                peak_count=float(d["peak_count"]), peak_z=float(d["peak_z"]),
                total_complaints=float(d["total_complaints"]),
                symptoms=tuple((str(k), int(v)) for k, v in d["symptoms"]),
                samples=tuple((str(k), float(v)) for k, v in d["samples"]),
                official_ref=d["official_ref"], official_title=d["official_title"],
                lead_minutes=None if d["lead_minutes"] is None else float(d["lead_minutes"]),
                resolved_at=None if d["resolved_at"] is None else at(d["resolved_at"]),
                # Drafts stored before this field existed: their peak was the last one announced, or near it.
                reported_peak=float(d.get("reported_peak", d["peak_count"])),
                last_minutes=None if d.get("last_minutes") is None else int(d["last_minutes"]),
                unscored=None if d.get("unscored") is None else (at(d["unscored"][0]), at(d["unscored"][1])),
                quiet_from=None if d.get("quiet_from") is None else at(d["quiet_from"]),
                ended_from=None if d.get("ended_from") is None else at(d["ended_from"]),
            )
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
            raise ValueError(f"bad incident draft: {exc}") from None


@dataclass(frozen=True)
class Transition:
    """An event of the lifecycle, to persist and maybe notify about. ``incident`` is the draft after it."""

    kind: Literal["open", "update", "resolve"]
    service: str
    bucket_start: datetime
    incident: IncidentDraft
    reason: str = ""  # for updates: what changed ("peak", "official", "symptom")


def _merge_symptoms(old: Sequence[tuple[str, int]], new: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    merged = dict(old)
    for name, n in new.items():
        if n > 0:
            merged[name] = merged.get(name, 0) + n
    return tuple(sorted(merged.items(), key=lambda kv: (-kv[1], kv[0])))


def _merge_samples(
    old: Sequence[tuple[str, float]], new: Sequence[tuple[str, float]], keep: int
) -> tuple[tuple[str, float], ...]:
    best: dict[str, float] = dict(old)
    for post_id, score in new:
        best[post_id] = max(score, best.get(post_id, score))
    return tuple(sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:keep])


def match_official(
    params: DetectorParams, service: str, opened_at: datetime, official: Sequence[OfficialIncident]
) -> OfficialIncident | None:
    """The provider's incident for ``service`` that started closest after (or shortly before) our opening."""
    earliest = opened_at - timedelta(minutes=params.official_match_minutes)
    candidates = [
        o for o in official
        if o.service is not None and o.service.lower() == service.lower() and o.started_at >= earliest
        and o.status not in MAINTENANCE
    ]
    return min(candidates, key=lambda o: abs((o.started_at - opened_at).total_seconds()), default=None)


def _new_complaints(score: BucketScore, facts: BucketFacts) -> float:
    """The bucket's complaints not in the incident yet."""
    return score.count if facts.complaints is None else facts.complaints


def _fold(params: DetectorParams, draft: IncidentDraft, score: BucketScore, facts: BucketFacts) -> IncidentDraft:
    draft = replace(
        draft,
        last_bucket=score.bucket_start,
        last_minutes=params.bucket_minutes,
        peak_count=max(draft.peak_count, score.count),
        peak_z=max(draft.peak_z, score.score),
        total_complaints=draft.total_complaints + _new_complaints(score, facts),
        symptoms=_merge_symptoms(draft.symptoms, facts.symptoms),
        samples=_merge_samples(draft.samples, facts.samples, params.max_samples),
    )
    return _with_official(params, draft, facts.official)


def _with_official(params: DetectorParams, draft: IncidentDraft, official: Sequence[OfficialIncident]
                   ) -> IncidentDraft:
    """The draft with the provider's incident matched, if it has none yet and one of ``official`` matches."""
    if draft.official_ref is not None:
        return draft
    found = match_official(params, draft.service, draft.opened_at, official)
    if found is None:
        return draft
    # To when the provider posted it, not to the start it gives the impact: one posted at 14:00 and dated from 12:30
    # was still news to its users at our 13:00 opening.
    lead = (found.posted - draft.opened_at).total_seconds() / 60.0
    return replace(draft, official_ref=f"{found.source}:{found.external_id}", official_title=found.title,
                   lead_minutes=round(lead, 1))


def last_end(params: DetectorParams, draft: IncidentDraft) -> datetime:
    """The end of the draft's last bucket, at the width it was folded in."""
    return draft.last_bucket + timedelta(minutes=draft.last_minutes or params.bucket_minutes)


def advance(
    params: DetectorParams, service: str, draft: IncidentDraft | None, score: BucketScore, facts: BucketFacts
) -> tuple[IncidentDraft | None, list[Transition]]:
    """Fold one bucket's score and facts into the service's incident. See the module docstring."""
    width = timedelta(minutes=params.bucket_minutes)
    # A bucket that ends after the last one does is new, though it may begin before (a wider width since: the rest
    # of its hour held the complaints after the incident's last 5-minute bucket, see BucketFacts.complaints).
    if score.replayed or (draft is not None and score.bucket_start + width <= last_end(params, draft)):
        return draft, []
    out: list[Transition] = []
    at = score.bucket_start
    if draft is not None and draft.resolved_at is None and (score.resolved or not score.open):
        # The detector resolved it (possibly within a gap before this bucket): close with what we have.
        # The resolving bucket is the incident's last one; after a gap the resolve happened in zero-filled buckets.
        # Against the end of its last bucket at that bucket's own width: after a change from 60 to 5 minutes, the
        # 5-minute bucket right after the last hour was taken for one after a gap, and its complaints left out.
        adjacent = at <= last_end(params, draft)
        total = draft.total_complaints + (_new_complaints(score, facts) if adjacent else 0.0)
        # Its complaints' symptoms with them: the breakdown left them out, short of the total by that bucket.
        symptoms = _merge_symptoms(draft.symptoms, facts.symptoms) if adjacent else draft.symptoms
        draft = replace(draft, resolved_at=at, last_bucket=at, last_minutes=params.bucket_minutes,
                        total_complaints=total, symptoms=symptoms)
        out.append(Transition("resolve", service, at, draft))
        if not (score.reopened or score.opened):
            return draft, out
    if draft is not None and draft.resolved_at is not None:
        if score.reopened:
            back = _fold(params, replace(draft, resolved_at=None), score, facts)
            back = replace(back, reported_peak=back.peak_count)
            out.append(Transition("update", service, at, back, "reopened"))
            return back, out
        if not score.opened:
            if at - draft.resolved_at >= timedelta(minutes=params.cooldown_minutes):
                return None, out
            # A provider often posts its incident once the outage is over, dated when it began: matched only while
            # open, a short outage never had its official incident nor its lead time. One that began after ours
            # resolved is another matter.
            kept = replace(draft, last_bucket=at, last_minutes=params.bucket_minutes)
            matched = _with_official(params, kept, [o for o in facts.official if o.started_at <= draft.resolved_at])
            if matched.official_ref is not None and draft.official_ref is None:
                out.append(Transition("update", service, at, matched, "official"))
            return matched, out
        draft = None
    if draft is None:
        if not (score.opened or score.reopened):
            return None, out
        # A re-opening without a stored draft (e.g. the draft was lost) is announced as new rather than dropped.
        empty = IncidentDraft(service=service, opened_at=at, last_bucket=at - timedelta(seconds=1),
                              peak_count=0.0, peak_z=score.score, total_complaints=0.0)
        new = _fold(params, empty, score, facts)
        new = replace(new, reported_peak=new.peak_count)
        out.append(Transition("open", service, at, new))
        return new, out
    updated = _fold(params, draft, score, facts)
    reasons = []
    if updated.peak_count > draft.reported_peak * params.update_peak_ratio:
        # Against the last announced peak, not the previous bucket's: a steady climb is reported too.
        reasons.append("peak")
        updated = replace(updated, reported_peak=updated.peak_count)
    if updated.official_ref is not None and draft.official_ref is None:
        reasons.append("official")
    if updated.top_symptom != draft.top_symptom and draft.top_symptom is not None:
        reasons.append("symptom")
    if reasons:
        out.append(Transition("update", service, at, updated, ",".join(reasons)))
    return updated, out

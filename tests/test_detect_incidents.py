"""Incident lifecycle over real detector output: open, update, resolve, re-open in the cool-down, replay."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from miner.detect.incidents import BucketFacts, IncidentDraft, Transition, advance, match_official
from miner.detect.params import DetectorParams
from miner.detect.zscore import BucketScore, DetectorState, step
from miner.records import OfficialIncident

T0 = datetime(2025, 3, 3, tzinfo=UTC)
STEP = timedelta(minutes=5)
P = DetectorParams()


def history(n: int = 288) -> list[float]:
    return [float(x) for x in np.random.default_rng(7).poisson(20, n)]


def official(started: datetime, service: str = "WhatsApp") -> OfficialIncident:
    return OfficialIncident(source="status:whatsapp", external_id="abc", service=service,
                            title="Messages delayed", status="investigating", started_at=started,
                            updated_at=started)


class Runner:
    """Feeds buckets through step + advance the way the pipeline does, keeping state as stored JSON."""

    def __init__(self) -> None:
        self.state_json: str | None = None
        self.draft_json: str | None = None
        self.t = T0
        self.transitions: list[Transition] = []

    def feed(self, count: float, facts: BucketFacts | None = None, at: datetime | None = None) -> BucketScore:
        state = DetectorState.from_json(self.state_json) if self.state_json else None
        draft = IncidentDraft.from_json(self.draft_json) if self.draft_json else None
        bucket = at or self.t
        state, score = step(P, state, bucket, count)
        draft, out = advance(P, "WhatsApp", draft, score, facts or BucketFacts())
        self.state_json = state.to_json()
        self.draft_json = draft.to_json() if draft else None
        self.transitions += out
        if at is None:
            self.t += STEP
        return score

    def kinds(self) -> list[str]:
        return [t.kind for t in self.transitions]


def test_open_update_resolve_with_facts_and_official_lead_time() -> None:
    r = Runner()
    for c in history():
        r.feed(c)
    assert r.kinds() == []
    outage = [60.0, 90.0, 150.0, 300.0, 280.0, 260.0]
    for i, c in enumerate(outage):
        facts = BucketFacts(symptoms={"messaging": int(c // 10), "login": 1}, samples=[(f"p{i}", 0.5 + i / 20)])
        if i == 4:  # the provider acknowledges 15 minutes after our opening
            facts = replace(facts, official=[official(T0 + 289 * STEP + timedelta(minutes=15))])
        r.feed(c, facts)
    opened = r.transitions[0]
    assert opened.kind == "open" and opened.incident.opened_at == T0 + 289 * STEP
    updates = [t for t in r.transitions if t.kind == "update"]
    assert any("peak" in t.reason for t in updates)
    assert any("official" in t.reason for t in updates)
    draft = IncidentDraft.from_json(r.draft_json or "")
    assert draft.peak_count == 300.0 and draft.total_complaints == sum(outage[1:])  # from the opening bucket
    assert draft.top_symptom == "messaging" and draft.symptoms[1] == ("login", 5)
    assert [s[0] for s in draft.samples] == ["p5", "p4", "p3", "p2", "p1"]
    assert draft.official_ref == "status:whatsapp:abc" and draft.official_title == "Messages delayed"
    assert draft.lead_minutes == 15.0
    for c in history(30):
        r.feed(c)
    assert r.kinds().count("resolve") == 1 and r.kinds().count("open") == 1
    closed = r.transitions[-1].incident
    assert r.transitions[-1].kind == "resolve" and closed.resolved_at is not None


def test_recurrence_within_the_cool_down_reopens_the_same_incident() -> None:
    r = Runner()
    for c in history():
        r.feed(c)
    for _ in range(3):
        for c in [300.0] * 6 + history(20):
            r.feed(c)
    assert r.kinds().count("open") == 1
    assert r.kinds().count("resolve") == 3
    reopens = [t for t in r.transitions if t.reason == "reopened"]
    assert len(reopens) == 2 and all(t.incident.opened_at == r.transitions[0].incident.opened_at for t in reopens)
    # After the cool-down the resolved draft is dropped and a new outage is a new incident.
    for c in history(int(P.cooldown_minutes / 5) + 5):
        r.feed(c)
    assert r.draft_json is None
    for c in [300.0] * 6:
        r.feed(c)
    assert r.kinds().count("open") == 2


def test_replaying_stored_buckets_after_a_restart_announces_nothing() -> None:
    r = Runner()
    data = history() + [300.0] * 8 + history(4)
    for c in data:
        r.feed(c)
    before = list(r.transitions)
    stored_state, stored_draft = r.state_json, r.draft_json
    # The service restarts and re-runs the last hour of buckets it had already processed.
    for i in range(len(data) - 12, len(data)):
        r.feed(data[i], at=T0 + i * STEP)
    assert r.transitions == before
    assert (r.state_json, r.draft_json) == (stored_state, stored_draft)


def test_a_lost_draft_during_a_reopen_is_announced_as_new() -> None:
    score = BucketScore(T0, 50.0, 6.0, 10.0, 30.0, True, False, False, True, reopened=True)
    draft, out = advance(P, "WhatsApp", None, score, BucketFacts())
    assert draft is not None and [t.kind for t in out] == ["open"]


def test_official_matching_ignores_other_services_scheduled_work_and_old_incidents() -> None:
    opened_at = T0 + timedelta(hours=5)
    ours = official(opened_at + timedelta(minutes=20))
    assert match_official(P, "whatsapp", opened_at, [ours]) == ours
    assert match_official(P, "WhatsApp", opened_at, [official(opened_at, service="Instagram")]) is None
    assert match_official(P, "WhatsApp", opened_at, [replace(ours, status="scheduled")]) is None
    assert match_official(P, "WhatsApp", opened_at, [replace(ours, status="completed")]) is None  # maintenance done
    stale = official(opened_at - timedelta(minutes=P.official_match_minutes + 1))
    assert match_official(P, "WhatsApp", opened_at, [stale]) is None
    early = official(opened_at - timedelta(minutes=30))  # the provider was first: negative lead
    assert match_official(P, "WhatsApp", opened_at, [early, ours]) == ours


def test_the_providers_incident_posted_after_our_resolve_is_matched_in_the_cool_down() -> None:
    # A short outage: the provider posts its incident after ours resolved, dated when the outage began (a
    # retroactive post, or one written once it was over). It is the same outage; only the lead time tells of it.
    r = Runner()
    for c in history():
        r.feed(c)
    for c in [300.0] * 6 + history(20):
        r.feed(c)
    assert r.kinds() == ["open", "resolve"]
    opened_at = r.transitions[0].incident.opened_at
    resolved_at = r.transitions[-1].incident.resolved_at
    assert resolved_at is not None
    theirs = official(opened_at - timedelta(minutes=5))
    later = official(resolved_at + STEP)  # began after ours was over: not this outage
    r.feed(20.0, BucketFacts(official=[replace(later, external_id="later")]))
    r.feed(20.0, BucketFacts(official=[theirs, replace(later, external_id="later")]))
    assert r.kinds() == ["open", "resolve", "update"] and r.transitions[-1].reason == "official"
    draft = r.transitions[-1].incident
    assert draft.resolved_at == resolved_at and draft.official_ref == "status:whatsapp:abc"
    assert draft.lead_minutes == -5.0
    r.feed(20.0, BucketFacts(official=[theirs]))  # matched once
    assert r.kinds() == ["open", "resolve", "update"]


def test_draft_round_trips_through_json() -> None:
    draft = IncidentDraft(service="WhatsApp", opened_at=T0, last_bucket=T0 + STEP, peak_count=40.0, peak_z=7.5,
                          total_complaints=60.0, symptoms=(("messaging", 4),), samples=(("p1", 0.9),),
                          official_ref="s:1", official_title="t", lead_minutes=-3.5, resolved_at=T0 + 2 * STEP)
    assert IncidentDraft.from_json(draft.to_json()) == draft
    for not_an_object in ("[]", "null", "1", '"service"'):
        with pytest.raises(ValueError, match="not a JSON object"):
            IncidentDraft.from_json(not_an_object)


def test_a_steadily_growing_incident_reports_each_peak_past_the_ratio_of_the_last_reported_one() -> None:
    r = Runner()
    for c in [float(x) for x in np.random.default_rng(7).poisson(2, 2 * 288)]:
        r.feed(c)
    # Each bucket is under 1.5x the one before, but 53 is 5.9x the peak announced at the opening.
    for c in [6.0, 9.0, 13.0, 19.0, 27.0, 38.0, 53.0, 53.0, 40.0, 30.0, 15.0, 6.0]:
        r.feed(c)
    opened = r.transitions[0]
    assert opened.kind == "open" and opened.incident.peak_count <= 13.0
    peaks = [t.incident.peak_count for t in r.transitions if t.kind == "update" and "peak" in t.reason]
    reported = [opened.incident.peak_count, *peaks]
    assert len(peaks) >= 2 and reported[-1] >= 38.0
    assert all(b > a * P.update_peak_ratio for a, b in itertools.pairwise(reported))


def test_total_complaints_spans_the_opening_bucket_through_the_resolving_bucket() -> None:
    r = Runner()
    for c in history():
        r.feed(c)
    fed = [(r.feed(c), c) for c in [300.0] * 6 + [30.0] * 3 + history(20)]
    first = next(i for i, (s, _) in enumerate(fed) if s.opened)
    last = next(i for i, (s, _) in enumerate(fed) if s.resolved)
    closed = next(t.incident for t in r.transitions if t.kind == "resolve")
    assert closed.total_complaints == sum(c for _, c in fed[first:last + 1])


def test_the_symptom_breakdown_spans_the_same_buckets_as_the_total() -> None:
    # The resolving bucket's complaints were in total_complaints but not in the symptoms: the demo's MTN incident
    # read "Complaints: 36" over a breakdown of 33.
    r = Runner()
    for c in history():
        r.feed(c)
    for c in [300.0] * 6 + [30.0] * 3 + history(20):
        r.feed(c, BucketFacts(symptoms={"connectivity": int(c) - 5, "calls": 5}))
    closed = next(t.incident for t in r.transitions if t.kind == "resolve")
    assert sum(n for _, n in closed.symptoms) == closed.total_complaints


def test_a_gap_after_quiet_buckets_keeps_the_first_of_them_as_the_earliest_end_through_json_and_a_rewind() -> None:
    draft = IncidentDraft(service="WhatsApp", opened_at=T0, last_bucket=T0, peak_count=40.0, peak_z=7.5,
                          total_complaints=60.0)
    # Quiet from T0 + 5 min, a bucket between the thresholds holding the count, another quiet one: the count began at
    # the first; then the detector steps over an hour unscored.
    for k, z, quiet in ((1, 0.2, 1), (2, 2.0, 1), (3, 0.1, 2)):
        draft = draft.after_gap(P, T0 + k * STEP, z, quiet)
    assert draft.quiet_from == T0 + STEP
    gap = draft.skipped(T0 + 4 * STEP, T0 + 16 * STEP, 2, STEP)
    assert (gap.unscored, gap.ended_from) == ((T0 + 4 * STEP, T0 + 16 * STEP), T0 + STEP)
    assert gap.gap_details()["ended_from"] == "2025-03-03T00:05:00+00:00"
    back = IncidentDraft.from_json(gap.to_json())
    assert back == gap
    # A later gap joins the span and keeps the earliest end; an anomalous bucket after it drops both.
    assert back.skipped(T0 + 20 * STEP, T0 + 30 * STEP, 3, STEP).ended_from == T0 + STEP
    assert (back.after_gap(P, T0 + 16 * STEP, 9.0, 0).unscored, back.after_gap(P, T0 + 16 * STEP, 9.0, 0).ended_from
            ) == (None, None)
    # Taken back before the quiet buckets (a clock that was ahead): none counted, no span, no earliest end.
    assert (back.rewound(T0, STEP).quiet_from, back.rewound(T0, STEP).ended_from) == (None, None)
    # A draft kept before quiet_from was, two quiet buckets counted at the gap: taken as consecutive ones.
    legacy = replace(draft, quiet_from=None).skipped(T0 + 4 * STEP, T0 + 16 * STEP, 2, STEP)
    assert legacy.ended_from == T0 + 2 * STEP
    # No quiet bucket before the gap: its end came in it.
    assert replace(draft, quiet_from=None).skipped(T0 + 4 * STEP, T0 + 16 * STEP, 0, STEP).ended_from == T0 + 4 * STEP

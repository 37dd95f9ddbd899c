"""The detect stage of the pipeline: each service's detector stepped over the buckets completed since its last
run, the incidents it opens, updates and resolves, and the openings grouped.

A mixin of :class:`miner.pipeline.Pipeline`, which owns the store, the config and the order of the stages.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from miner.config import Config
from miner.detect import (
    BucketFacts,
    BucketScore,
    DetectorState,
    IncidentDraft,
    Transition,
    advance,
    due_buckets,
    step,
)
from miner.detect.grouping import Opening, correlate
from miner.detect.incidents import last_end
from miner.detect_due import due_now
from miner.detect_relearn import UNREADABLE, RelearnStage
from miner.errors import MinerError, StoreError
from miner.store import Store
from miner.timeutil import counted, duration_text, iso, parse_iso

log = logging.getLogger("miner.pipeline")  # one logger for the pipeline's stages, as operators filter on it

# The stores (paths) whose clock was found behind them, warned of in this process (see _resume_after_clock_ahead).
_CLOCK_BEHIND: set[str] = set()

# (store path, service) -> the type and message of the error the service's last step failed with, in this process:
# logged once while it lasts (each run has a pipeline of its own), as the job's own error is (see MinerService).
_FAILING: dict[tuple[str, str], tuple[str, str]] = {}


@dataclass
class TickReport:
    """What one pass of the pipeline did."""

    classified: int = 0
    buckets: int = 0
    opened: list[tuple[str, datetime]] = field(default_factory=list)
    reopened: list[tuple[str, datetime]] = field(default_factory=list)
    resolved: list[tuple[str, datetime]] = field(default_factory=list)
    sent: int = 0
    too_old: int = 0  # arrived posts left out: dated in a bucket a prune has made final (see CollectStage.ingest)
    stored: int = 0  # arrived posts new to the store (not stored before, nor earlier in the same arrival)
    # (service, first bucket, end of the last) of the buckets a service's detector stepped over unscored: a gap
    # longer than detector.max_fill_hours, taken for our own downtime
    skipped: list[tuple[str, datetime, datetime]] = field(default_factory=list)

    def merge(self, other: TickReport) -> None:
        """Add a service's step (``other``), once committed."""
        self.buckets += other.buckets
        self.opened += other.opened
        self.reopened += other.reopened
        self.resolved += other.resolved
        self.skipped += other.skipped


def _detect_failure(failed: Sequence[tuple[str, Exception]]) -> MinerError:
    """The error a detect run with failed services ends with, once the others are scored: the job's error (its
    health, miner_job_runs_total). A store failure stays one (the service's miner_store_error shows its cause)."""
    text = "; ".join(f"{service}: {exc}" for service, exc in failed)
    message = f"detect: {counted(len(failed), 'service')} not scored this run ({text}); the others were"
    store = next((exc for _, exc in failed if isinstance(exc, StoreError)), None)
    if store is not None:
        return StoreError(message, cause=store.cause, same_as=store.same_as)
    return MinerError(message)


class DetectStage(RelearnStage):
    config: Config
    store: Store

    if TYPE_CHECKING:
        @property
        def bucket(self) -> timedelta: ...  # CollectStage's: the detector's bucket width

    def detect(self, now: datetime, polled: Sequence[dict[str, Any]] | None = None) -> TickReport:
        """Step each service's detector over the buckets completed since its last run; track incidents.

        A service's detector state, incident draft, bucket scores and incident transitions are committed in
        one transaction, so a crash keeps a bucket's whole effect or none of it: a restart never re-opens or
        re-announces an incident. Services of one group or provider that opened (or re-opened) together are
        then grouped.

        ``polled``: the sources' rows (Store.source_rows) as read before the posts were classified, when a collect
        job may store polls meanwhile: a poll stored after the last batch was classified would let its buckets be
        scored without its posts, still unclassified. None: read them now.
        """
        report = TickReport()
        self._resolve_unwatched(now, report)
        self._rebucket_if_changed(now)
        self._relearn_if_reclassified(now, report)
        self._resume_after_clock_ahead(now)
        sources = {row["name"]: row for row in (self.store.source_rows() if polled is None else polled)}
        failed: list[tuple[str, Exception]] = []
        for service in self.config.services:
            mine = TickReport()  # counted once committed: a step rolled back opened nothing
            try:
                with self.store.database.transaction():
                    self._detect_service(service.name, now, mine, sources)
            except StoreError as exc:
                # The store's, not the service's (locked past the busy timeout, a full disk): each service after it
                # would wait out the busy timeout in turn. They step on from their own last bucket next run.
                failed.append((service.name, exc))
                break
            except Exception as exc:  # one service's failure never stops the others' steps (nor the grouping)
                failed.append((service.name, exc))
                self._log_failed(service.name, exc)
                continue
            if (before := _FAILING.pop((str(self.store.path), service.name), None)) is not None:
                log.info("detect: %s is scored again (it failed with %s)", service.name, before[0],
                         extra={"service": service.name})
            report.merge(mine)
        self._log_skipped(report.skipped)
        if not any(isinstance(exc, StoreError) for _, exc in failed):
            openings = report.opened + report.reopened
            self._group_openings(now, min((at for _, at in openings), default=now))
        if failed:
            raise _detect_failure(failed)
        return report

    def _log_failed(self, service: str, exc: Exception) -> None:
        """Log a service's failed step: once, with its traceback (a fault of miner's own), while it fails the same
        way; again when the error changes, or after a step that succeeded. A row the step cannot write put the same
        traceback in the log at every run, every 30 s, for as long as it stayed."""
        failure, key = (type(exc).__name__, str(exc)), (str(self.store.path), service)
        if _FAILING.get(key) == failure:
            log.debug("detect: %s is not scored this run either: %s: %s", service, *failure)
            return
        _FAILING[key] = failure
        log.error("detect: %s is not scored this run: %s: %s", service, *failure,
                  exc_info=None if isinstance(exc, MinerError) else exc, extra={"service": service})

    def _log_skipped(self, skipped: Sequence[tuple[str, datetime, datetime]]) -> None:
        """Warn of the buckets the detectors stepped over unscored, once per span, with the complaints stored for them.

        After miner was down longer than detector.max_fill_hours (a host asleep for a day) the detector resumes
        max_fill_hours back and never scores the time before: an outage then, its complaints fetched by the first
        collect round and shown in the charts, opened no incident, and nothing said that those hours were not
        watched."""
        spans: dict[tuple[datetime, datetime], list[str]] = {}
        for service, start, end in skipped:
            spans.setdefault((start, end), []).append(service)
        for (start, end), services in spans.items():
            stored = self.store.bucket_counts_of(services, start, end)
            complaints = {s: sum(c for _, c in stored[s].values()) for s in services}
            named = sorted((s for s in services if complaints[s]), key=lambda s: (-complaints[s], s))
            listed = ", ".join(f"{s} {complaints[s]}" for s in named[:10]) + (
                f" and {len(named) - 10} more" if len(named) > 10 else "")
            log.warning("detect: %s resuming after a gap longer than detector.max_fill_hours (%g h): the buckets "
                        "from %s to %s (%s) are not scored (an outage in them is not detected); complaints stored "
                        "for them: %s", counted(len(services), "service"), self.config.detector.max_fill_hours,
                        iso(start), iso(end), duration_text((end - start).total_seconds()), listed or "none")

    def _resume_after_clock_ahead(self, now: datetime) -> None:
        """Take detectors stepped by a clock that was ahead (see Store.detectors_ahead) back to the latest bucket
        that has ended, so that they step on from now instead of waiting for real time to reach their last bucket.

        The buckets they scored ahead of time (empty then) are not scored again with their real counts: nothing
        tells where the excursion began, and a bucket scored twice could announce an incident twice.
        """
        ahead, store = self.store.detectors_ahead(now, self.bucket), str(self.store.path)
        if not ahead:
            _CLOCK_BEHIND.discard(store)
            return
        # A clock behind the store is not one set right after running ahead (see Store.clock_behind): the detectors
        # wait until the clock is right again, and step on from their last bucket.
        newest = self.store.clock_behind(now)
        if newest is not None:
            if store not in _CLOCK_BEHIND:  # each run has a pipeline of its own: once per excursion, not every run
                log.warning("the clock is behind the store: it has a post its source dated %s; the detector steps no "
                            "bucket until the clock is set right (its last bucket ends %s), and nothing stored is "
                            "dated again", iso(newest), iso(max(saved.last_bucket for _, saved in ahead) + self.bucket))
            _CLOCK_BEHIND.add(store)
            return
        _CLOCK_BEHIND.discard(store)
        [resume] = due_buckets(self.config.detector, None, now)
        rewound, width = [], self.bucket
        for service, saved in ahead:
            draft, state = saved.draft, saved.state  # one that cannot be read is learned again (see _saved_step)
            with contextlib.suppress(*UNREADABLE):
                draft = IncidentDraft.from_json(saved.draft).rewound(resume, width).to_json() if saved.draft else None
            stepped = self.store.buckets_scored_after(service, resume)  # a gap skipped ahead is none of its quiet
            with contextlib.suppress(*UNREADABLE):
                state = DetectorState.from_json(saved.state).rewound(resume, width, stepped).to_json()
            rewound.append((service, replace(saved, last_bucket=resume, state=state, draft=draft)))
        redated = self.store.rewind_detectors(rewound, now, self.bucket)
        latest = max(saved.last_bucket for _, saved in ahead) + self.bucket
        log.warning("the clock was ahead: the detector had stepped buckets up to %s; %s resuming with the bucket "
                    "from %s, and %s dated in the future re-dated to now", iso(latest), counted(len(ahead), "service"),
                    iso(resume + self.bucket), counted(redated, "post"))

    def _resolve_unwatched(self, now: datetime, report: TickReport) -> None:
        """Resolve the open incidents of services no longer in feeds.toml (removed or renamed), at ``now`` (at their
        last change, when that is later: the clock is behind the store).

        Only a service's detector resolves its incident, and no detector steps a service the config does not
        name: its incident stayed open for good, in every digest, reminded of every repeat_interval. Its detector
        state stays (so the service, added back, resumes its baseline), without the incident.
        """
        watched = {s.name for s in self.config.services}
        for row in self.store.incidents(status="open"):
            service = row["service"]
            if service in watched:
                continue
            with self.store.database.transaction():
                self._resolve_lost(service, row, now, "unwatched", report)
                saved = self.store.detector_state(service)
                if saved is not None and saved.incident_id == row["id"]:
                    state = saved.state  # one that cannot be read is learned again if the service is added back
                    with contextlib.suppress(*UNREADABLE):
                        state = replace(DetectorState.from_json(saved.state), open=False, opened_at=None, quiet=0,
                                        hits=0).to_json()
                    self.store.save_detector_step(service, saved.last_bucket, state, [], now)
            log.warning("%s is no longer in the config: its open incident #%d is resolved", service, row["id"])

    def _detect_service(self, service: str, now: datetime, report: TickReport,
                        sources: dict[str, dict[str, Any]]) -> None:
        params = self._params(service)
        width = self.bucket
        state, draft, incident_id = self._saved_step(service, now, report)
        # The buckets that ended before the service's sources last polled (or stopped working); those after wait for
        # them (see miner.detect_due.collected_until).
        due = due_now(self.config, service, state, sources, now).buckets
        if not due:
            return
        if state is not None and state.last is not None and due[0] > state.last + width:
            # due_buckets skips only after a gap longer than max_fill_hours, resuming that span before now. step()
            # zero-filled a skipped part of up to max_fill_hours itself (a gap of 10 h left 4 h before the 6 h
            # scored): an outage going on through it resolved at 0 complaints and re-opened, paging twice, with no
            # warning. The skipped part is the gap: kept out of the baseline, its persistence forgotten, as step()
            # takes a longer one.
            report.skipped.append((service, state.last + width, due[0]))
            if draft is not None and draft.resolved_at is None:  # its end, if in them, goes unseen
                draft = draft.skipped(state.last + width, due[0], state.quiet, width)
            state = replace(state, last=due[0] - width, hits=0)
        counts = self.store.bucket_counts(service, due[0], due[-1] + width)
        scores = []
        for bucket_start in due:
            complaints = counts.get(iso(bucket_start), (0, 0))[1]
            state, score = step(params, state, bucket_start, complaints)
            if score.replayed:
                continue
            if draft is not None:  # seen going on after a gap in scoring, its end is seen
                draft = draft.after_gap(params, bucket_start, score.score, state.quiet)
            scores.append((bucket_start, score.score, score.baseline, score.upper, score.threshold))
            if draft is None and not (score.opened or score.reopened):
                continue  # the common case: nothing to track, no need to look at the posts
            before = draft
            draft, transitions = advance(params, service, draft, score, self._facts(service, bucket_start, draft))
            incident_id = self._persist_incident(service, incident_id, before, draft, transitions, score, report)
            if draft is None:
                incident_id = None
        report.buckets += len(scores)
        if state is not None and state.last is not None:
            self.store.save_detector_step(service, state.last, state.to_json(), scores, now,
                                          draft=draft.to_json() if draft else None, incident_id=incident_id)

    def _facts(self, service: str, bucket_start: datetime, draft: IncidentDraft | None) -> BucketFacts:
        end = bucket_start + self.bucket
        opened = draft.opened_at if draft else bucket_start
        window = timedelta(minutes=self.config.detector.official_match_minutes)
        # A bucket begun before the incident's last one ended (detector.bucket_minutes grew since): the posts before
        # that end are in the incident already, counted in its narrower buckets.
        start = max(bucket_start, last_end(self.config.detector, draft)) if draft is not None else bucket_start
        samples = self.store.sample_posts(service, start, end, self.config.detector.max_samples,
                                          held=[int(pid) for pid, _ in draft.samples] if draft is not None else [])
        symptoms = self.store.symptom_counts(service, start, end)
        return BucketFacts(
            symptoms=symptoms,
            samples=[(str(p["id"]), float(p["score"])) for p in samples],
            official=self.store.official_incident_records(service, opened - window),
            complaints=sum(symptoms.values()) if start > bucket_start else None,
        )

    def _persist_incident(self, service: str, incident_id: int | None, before: IncidentDraft | None,
                          draft: IncidentDraft | None, transitions: Sequence[Transition], score: BucketScore,
                          report: TickReport) -> int | None:
        """Write the lifecycle's transitions. Times are bucket ends: when the bucket closed, we knew. A resolve of
        a draft with unscored buckets says so (unscored_from, unscored_to; ended_from, see IncidentDraft.skipped):
        its end fell in them or after ended_from, unseen, and its resolved_at is only when miner scored again."""
        width = self.bucket
        for t in transitions:
            at = t.bucket_start + width
            fields = self._incident_fields(t.incident, None if t.kind == "open" else incident_id)
            details: dict[str, Any] = {"z": round(score.score, 2), "count": score.count,
                                       "baseline": round(score.baseline, 2), "upper": round(score.upper, 2)}
            if t.kind == "open":
                fields["baseline"] = round(score.baseline, 3)
                fields["bucket_minutes"] = self.config.detector.bucket_minutes  # its samples start with its bucket
                incident_id = self.store.open_incident(service, at, fields, details)
                report.opened.append((service, at))
            elif incident_id is None:
                log.error("%s: lifecycle %s without a stored incident; skipped", service, t.kind)
            elif t.kind == "resolve":
                details |= t.incident.gap_details()
                self.store.update_incident(incident_id, at, {**fields, "status": "resolved", "resolved_at": at},
                                           "resolve", details)
                report.resolved.append((service, at))
            else:
                if "reopened" in t.reason:
                    fields |= {"status": "open", "resolved_at": None}
                    report.reopened.append((service, at))
                self.store.update_incident(incident_id, at, fields, "update", {**details, "reason": t.reason})
        if not transitions and incident_id is not None and draft is not None and before is not None:
            # updated_at is the last change: a cool-down bucket only moves the draft's last_bucket, no column.
            fields = self._incident_fields(draft, incident_id)
            if fields != self._incident_fields(before, incident_id):
                self.store.update_incident_quietly(incident_id, score.bucket_start + width, fields)
        return incident_id

    def _incident_fields(self, draft: IncidentDraft, incident_id: int | None) -> dict[str, Any]:
        """The incident's columns the draft gives; ``incident_id``: the stored incident (None: the draft opens it)."""
        fields: dict[str, Any] = {
            "peak_complaints": int(draft.peak_count),
            "peak_score": round(draft.peak_z, 3),
            "total_complaints": int(draft.total_complaints),
            "symptoms": dict(draft.symptoms),
            "sample_post_ids": [int(pid) for pid, _ in draft.samples],
        }
        if draft.official_ref is not None:
            fields["official_incident_id"] = self.store.official_incident_id_of_ref(draft.official_ref)
            if draft.lead_minutes is not None:
                # The lifecycle measures from the opening bucket's start; we knew only when that bucket closed.
                fields["lead_time_minutes"] = round(draft.lead_minutes - self._opening_minutes(incident_id), 1)
        return fields

    def _opening_minutes(self, incident_id: int | None) -> int:
        """The width of the bucket the incident opened in, as it recorded it: detector.bucket_minutes may have changed
        since (from 60 to 5, the current width overstated the lead by 55 minutes). The current width for an incident
        being opened, and for one opened before miner recorded its width."""
        row = self.store.incident(incident_id) if incident_id is not None else None
        recorded = int(row.get("bucket_minutes") or 0) if row else 0
        return recorded if recorded > 0 else self.config.detector.bucket_minutes

    def _group_openings(self, now: datetime, earliest: datetime) -> None:
        """Group the openings of this run (the first at ``earliest``), and those of the store's open incidents not
        grouped yet, with those of related services (configured groups, shared providers) near them into one
        incident.

        From the store, not this run's openings only: a run that failed or crashed after its services' steps (each
        committed on its own) left their openings ungrouped, and the next run opened nothing, so each service was
        alerted on alone. Up to detector.max_fill_hours back, as far as a run after a restart steps.

        An incident joins at most one group: ``correlate`` gives each opening to one group at most, and the
        group ids set here are tracked, so an incident grouped earlier in this round is never grouped again.
        """
        # Read first, and the write lock only when there is a group to make: this runs at every run.
        if self._group_recent(now, self._recent_openings(now, earliest), write=False):
            with self.store.database.transaction():
                self._group_recent(now, self._recent_openings(now, earliest))

    def _recent_openings(self, now: datetime, earliest: datetime) -> list[tuple[dict[str, Any], datetime]]:
        """The open incidents (with their last opening) that may group with this run's openings or one another's."""
        params = self.config.detector
        window = timedelta(minutes=params.group_window_minutes)
        # From this run's openings, or max_fill_hours before now, not from now: a run after a restart steps up to
        # max_fill_hours of buckets, and services that opened together hours before now were left out, each alerted
        # alone; so were those a run before this one stored and failed to group.
        since = min(now - timedelta(hours=params.max_fill_hours), earliest) - 2 * window
        # updated_at is at or after the last (re-)opening: older incidents need no look at their events.
        rows = [r for r in self.store.incidents(status="open") if parse_iso(r["updated_at"]) >= since]
        if len(rows) < 2 or all(r["group_id"] is not None for r in rows):
            return []  # nothing to group
        recent = [(r, self.store.last_opened_at(r)) for r in rows]
        return [(r, at) for r, at in recent if at >= since]

    def _group_recent(self, now: datetime, recent: Sequence[tuple[dict[str, Any], datetime]], *,
                      write: bool = True) -> bool:
        """Group ``recent``; without ``write``, only tell whether there is an incident to group."""
        group_of: dict[int, int | None] = {r["id"]: r["group_id"] for r, _ in recent}
        openings = [Opening(r["service"], at, r["id"]) for r, at in recent]
        for found in correlate(self.config.detector, openings, self.config.groups, self.config.services):
            members = [(o.incident_id, o.service) for o in found.openings if o.incident_id is not None]
            existing = next((group_of[iid] for iid, _ in members if group_of[iid] is not None), None)
            ungrouped = [iid for iid, _ in members if group_of[iid] is None]
            if not ungrouped:
                continue
            if not write:
                return True
            # Only the services whose incidents end up in this group: one already in another group stays there.
            names = list(dict.fromkeys(svc for iid, svc in members if group_of[iid] in (None, existing)))
            if existing is None:
                existing = self.store.create_group(found.group, found.cause, names, now, ungrouped)
            else:
                self.store.join_group(existing, names, now, ungrouped)
            group_of.update(dict.fromkeys(ungrouped, existing))
        return False

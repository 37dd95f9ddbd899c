"""Learning a service's detector baseline again from its stored buckets: after detector.bucket_minutes changed, and
when its stored detector state cannot be read. A mixin of :class:`miner.detect_stage.DetectStage`.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from miner.config import Config
from miner.detect import DetectorParams, DetectorState, IncidentDraft, due_buckets, step
from miner.detect.incidents import last_end
from miner.detect_reclassified import ReclassifiedIncidents, Relearned
from miner.records import Decision
from miner.store import Store
from miner.store.signals import SavedDetector
from miner.timeutil import floor_time, iso, parse_iso

if TYPE_CHECKING:
    from miner.classify import Classifier
    from miner.detect_stage import TickReport

log = logging.getLogger("miner.pipeline")  # the pipeline's stages' one logger

# How much history a changed bucket width learns the baseline again from: the day-of-week offsets need two weeks
# (weekday_min_days) and learn over three (weekday_halflife_weeks); more would only make the change slower.
RELEARN_SPAN = timedelta(days=28)

# What a stored state or draft that cannot be read raises (a field of the wrong type, a time out of range).
UNREADABLE = (ValueError, OverflowError, OSError)


# Per store: the reclassify mark a service running another model was told of (see _relearn_if_reclassified).
_WAITING: dict[str, tuple[str, str, str, Decision | None]] = {}


class RelearnStage(ReclassifiedIncidents):
    config: Config
    store: Store
    _classifier: Classifier | None  # the pipeline's model, once loaded

    if TYPE_CHECKING:
        @property
        def bucket(self) -> timedelta: ...  # CollectStage's: the detector's bucket width

    def _saved_step(self, service: str, now: datetime, report: TickReport
                    ) -> tuple[DetectorState | None, IncidentDraft | None, int | None]:
        """The service's stored detector state, incident draft and incident id (None for a service never stepped).

        One that cannot be read (a row edited by hand, a bug of an older miner, a damaged page) failed the service's
        every run, for good: its baseline is learned again from its stored buckets instead (see _repair).
        """
        saved = self.store.detector_state(service)
        if saved is None:
            return None, None, None
        try:
            state = DetectorState.from_json(saved.state)
            draft = IncidentDraft.from_json(saved.draft) if saved.draft else None
        except UNREADABLE as exc:
            saved = self._repair(service, saved, exc, now, report)
            state = DetectorState.from_json(saved.state)
            draft = IncidentDraft.from_json(saved.draft) if saved.draft else None
        return state, draft, saved.incident_id

    def _repair(self, service: str, saved: SavedDetector, error: Exception, now: datetime,
                report: TickReport) -> SavedDetector:
        """Learn ``service``'s baseline again from its stored buckets, up to RELEARN_SPAN before its last one, as a
        changed bucket width does: it steps on from its last bucket, with no warm-up where the buckets go back far
        enough. Its incident goes on where the draft can be read; where it cannot, the incident it tracked is
        resolved (nothing else would ever resolve it), and the service's next anomalous bucket opens a new one.
        """
        last, width = saved.last_bucket, self.bucket
        try:
            draft = IncidentDraft.from_json(saved.draft) if saved.draft else None
        except UNREADABLE:
            draft = None
            self._resolve_untracked(service, saved.incident_id, now, report)
            self.store.save_detector_step(service, last, saved.state, [], now)  # no draft, no incident
        counts = self.store.bucket_counts(service, floor_time(last - RELEARN_SPAN, width), last + width)
        first = parse_iso(min(counts)) if counts else last
        self._relearn(service, first, last, now, scores=False)
        log.warning("detect: %s's stored detector state is unreadable (%s): its baseline is learned again from its "
                    "buckets from %s to %s%s", service, error, iso(first), iso(last),
                    "" if draft is not None or saved.incident_id is None else
                    f", and its incident #{saved.incident_id} is resolved", extra={"service": service})
        repaired = self.store.detector_state(service)
        assert repaired is not None
        return repaired

    def _resolve_untracked(self, service: str, incident_id: int | None, now: datetime, report: TickReport) -> None:
        """Resolve the open incident ``incident_id``, whose draft is lost."""
        row = self.store.incident(incident_id) if incident_id is not None else None
        if row is None or row["status"] != "open":
            return
        self._resolve_lost(service, row, now, "detector state unreadable", report)

    def _resolve_lost(self, service: str, row: dict[str, Any], now: datetime, reason: str, report: TickReport) -> None:
        """Resolve the open incident ``row``, which no detector tracks any more (``reason``: why), at ``now``, or at
        its last change when that is later (its opening at the earliest): with the clock behind the store, ``now`` was
        before the incident opened, and so was its resolve."""
        at = max(now, parse_iso(row["opened_at"]), parse_iso(row["updated_at"]))
        self.store.update_incident(row["id"], at, {"status": "resolved", "resolved_at": at}, "resolve",
                                   {"reason": reason})
        report.resolved.append((service, at))

    def _rebucket_if_changed(self, now: datetime) -> None:
        """Once detector.bucket_minutes has changed: count the posts again in buckets of the new width, and learn
        each service's baseline again from those buckets, as if the detector had always run at that width.

        A state learned from counts per old bucket scored the new, wider or narrower, counts against a wrong
        baseline (a spurious incident for every busy service when they grew), and a last bucket off the new grid
        stepped buckets that no count ever lands in: that service saw nothing, for good. A store that never
        recorded its width gets the configured one, unless the scores it stored say otherwise.
        """
        width = self.config.detector.bucket_minutes
        recorded = self.store.bucket_minutes()
        if recorded == width:
            return
        if recorded is not None:
            # Before the change: an incident with no width of its own (a store that recorded none at the upgrade,
            # migration 0020) took the store's, the new one, for its samples, lead time and peak.
            self.store.record_opening_widths(recorded)
            start = self.store.rebucket(self.bucket, timedelta(minutes=recorded))
            [latest] = due_buckets(self.config.detector, None, now)
            first = min(latest, max(start or latest, floor_time(latest - RELEARN_SPAN, self.bucket)))
            for service in self.config.services:
                with self.store.database.transaction():
                    self._relearn(service.name, first, latest, now, old=timedelta(minutes=recorded))
            # Services no longer configured have no open incident (see _resolve_unwatched), and a state learned at
            # the old width: added back, they start afresh.
            self.store.forget_detectors([s.name for s in self.config.services])
            log.warning("detector.bucket_minutes changed from %d to %d: the buckets from %s on are counted again "
                        "from the posts, and each service's baseline is learned again from %s on", recorded, width,
                        iso(start) if start else iso(latest), iso(first))
        self.store.set_bucket_minutes(width)

    def _relearn_if_reclassified(self, now: datetime, report: TickReport) -> None:
        """After a reclassify (Store.mark_reclassified): learn each service's baseline again from its buckets, now
        recounted with the new model's verdicts, up to RELEARN_SPAN before its last bucket, as a changed bucket width
        does. The next buckets are scored against a baseline of the new model's counts, so a model that finds more
        (or fewer) complaints is no outage (nor hides one) on its own. No past bucket opens an incident (an outage
        the new verdicts show going on opens at the next bucket); an open one whose complaints changed takes the new
        figures, and is resolved where the new verdicts leave no outage open (see _refigure_after_reclassify).
        """
        taken = self.store.reclassified_mark()
        if taken is None:
            return
        mark, model, runs, decision = taken
        serving = self._classifier
        if serving is not None and model and (serving.version != model or decision not in (None, serving.decision)):
            # A service not restarted since the model update still counts the old model's verdicts: a baseline of
            # the new model's counts would score them (a model finding fewer complaints opened an incident). It
            # learns once it runs that model. So for one not reloaded since [classifier] threshold or early_exit
            # changed: a threshold raised against false alarms would count more complaints than that baseline.
            if _WAITING.get(str(self.store.path)) != taken:
                _WAITING[str(self.store.path)] = taken
                if serving.version != model:
                    log.warning("detect: posts since %s were reclassified with model %s, but this service classifies "
                                "with %s: restart it with that model, and its baselines are learned again from the "
                                "buckets recounted", mark, model, serving.version)
                else:
                    log.warning("detect: posts since %s were reclassified at %s, but this service decides at %s: "
                                "reload (SIGHUP) or restart it with those [classifier] settings, and its baselines "
                                "are learned again from the buckets recounted", mark,
                                decision.text() if decision else "", serving.decision.text())
            return
        since, width = parse_iso(mark), self.bucket
        learned, incidents = [], []
        for service in self.config.services:
            saved = self.store.detector_state(service.name)
            # A service not stepped yet, or only before the posts reclassified, learns their counts as it steps them.
            if saved is None or saved.last_bucket + width <= since:
                continue
            counts = self.store.bucket_counts(service.name, floor_time(saved.last_bucket - RELEARN_SPAN, width),
                                              saved.last_bucket + width)
            try:
                with self.store.database.transaction():
                    relearned = self._relearn(service.name, parse_iso(min(counts)) if counts else saved.last_bucket,
                                              saved.last_bucket, now)
                    done, resolved = self._refigure_after_reclassify(service.name, since, model, relearned, now)
            except UNREADABLE:
                continue  # its draft cannot be read: _saved_step learns it again (see _repair)
            if done:
                incidents.append(f"{service.name}'s {done}")
            if resolved is not None:  # counted once committed
                report.resolved.append((service.name, resolved))
            learned.append(service.name)
        self.store.take_reclassified_mark(mark, runs)
        if learned:
            log.warning("detect: posts since %s were reclassified: the baselines of %s are learned again from their "
                        "buckets recounted, up to %d days back%s", mark, ", ".join(learned), RELEARN_SPAN.days,
                        "".join(f"; {i}" for i in incidents))

    def _relearn(self, service: str, first: datetime, latest: datetime, now: datetime, *, scores: bool = True,
                 old: timedelta | None = None) -> Relearned:
        """Step a fresh detector over the service's buckets from ``first`` to ``latest``, storing their scores (not
        without ``scores``: those the detector gave them when it stepped them stay). Returns whether that detector
        had an incident open at ``latest``, and the scores it gave.

        Only the lifecycle's incident decides what is open: the detector's own open flag follows it, so an
        incident the old width opened resolves (or goes on) by the next bucket's verdict, and one the new width
        would have opened in the past opens at the next anomalous bucket, announced as any other.

        ``old``: the width the buckets had (a changed detector.bucket_minutes). An open incident's buckets after
        its last one are not learned here but stepped next, so that they are folded into it: learned, their
        complaints were in no total (from 60 to 5 minutes, those from the end of its last hour to the change), and
        the hour holding its last 5-minute buckets (from 5 to 60) was skipped as one it had.
        """
        params, width = self._params(service), self.bucket
        saved = self.store.detector_state(service)
        kept = saved.draft if saved else None
        draft = IncidentDraft.from_json(kept) if kept else None
        if old is not None and draft is not None and draft.last_minutes is None:
            # A draft an older miner kept does not say its last bucket's width: the old one, kept with it, or the
            # detector took the new one for it (last_end), and from 5 to 60 minutes skipped the hour after its last
            # bucket and folded in only the complaints from 55 minutes past that bucket's end.
            draft = replace(draft, last_minutes=int(old.total_seconds()) // 60)
            kept = draft.to_json()
        if old is not None and draft is not None and draft.resolved_at is None:
            # The bucket from then on begins before it ends.
            latest = min(latest, floor_time(last_end(params, draft), width) - width)
        counts = self.store.bucket_counts(service, first, latest + width)
        # Nothing to learn from where the incident's last bucket ends before the first one counted again ends (a
        # store whose first post came with the outage): the detector starts afresh from there.
        state: DetectorState | None = DetectorState(zone=params.timezone, last=latest) if latest < first else None
        scored = []
        at = first
        while at <= latest:
            state, score = step(params, state, at, counts.get(iso(at), (0, 0))[1])
            scored.append((at, score.score, score.baseline, score.upper, score.threshold))
            at += width
        assert state is not None
        fresh_open = state.open
        if draft is None or draft.resolved_at is not None:
            state = replace(state, open=False, opened_at=None, quiet=0,
                            resolved_at=draft.resolved_at if draft else None)
        elif not state.open:
            # The new width had not opened it yet (its buckets since the opening had not ended, or were one): left
            # shut, the next bucket below z_open resolved it at once, with no quiet_minutes, the baseline learned the
            # outage, and its next anomalous buckets opened a second incident for the same outage.
            state = replace(state, open=True, opened_at=draft.opened_at, quiet=0)
        self.store.save_detector_step(service, latest, state.to_json(), scored if scores else [], now,
                                      draft=kept,
                                      incident_id=saved.incident_id if saved else None)
        return Relearned(fresh_open, scored)

    def _params(self, service: str) -> DetectorParams:
        """The [detector] settings, on the clock of the service's own timezone where it has one."""
        zone = next((s.timezone for s in self.config.services if s.name == service), None)
        return self.config.detector if zone is None else replace(self.config.detector, timezone=zone)

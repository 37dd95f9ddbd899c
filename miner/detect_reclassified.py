"""After a reclassify: an open incident whose complaints the new verdicts changed takes their figures, and is resolved
where the detector, learned again from them, has no incident open and they took complaints away. A mixin of
:class:`miner.detect_relearn.RelearnStage`, which calls it once it has learned a service's baseline again.

Only the open incident, and only where its counts changed: a resolved one keeps the figures its alerts and resolve
notice were sent with (nothing rewrites what was sent), and one of a service whose complaints the new model counts
alike keeps its own, not the z-scores of a baseline learned again from fewer days. Nothing is deleted: an incident
whose complaints were re-labelled away gets an ordinary resolve, which the planner turns into the usual resolve
notice for each route that alerted on its opening (and into none for one whose opening was suppressed).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from miner.config import Config
from miner.detect import DetectorParams, DetectorState, IncidentDraft
from miner.detect.incidents import last_end
from miner.store import Store
from miner.timeutil import iso, parse_iso

log = logging.getLogger("miner.pipeline")  # the pipeline's stages' one logger

# The reason an incident event gives for figures (or a resolve) a reclassify's new verdicts brought.
RECLASSIFIED = "reclassified"


class Relearned(NamedTuple):
    """What RelearnStage._relearn learned: whether the fresh detector had an incident open at the last bucket, and
    the scores it gave the buckets, (start, z, baseline, upper, threshold) each."""

    open: bool
    scored: list[tuple[datetime, float, float, float, float | None]]


def _figures(draft: IncidentDraft) -> tuple[Any, ...]:
    """What the verdicts decide of an incident, and a reclassify changes. Not its peak z, which moves with any
    baseline learned again, nor its samples, chosen bucket by bucket as it went on (one read over its whole span
    breaks ties of equal scores otherwise): both are taken again only with the counts."""
    return draft.peak_count, draft.total_complaints, draft.symptoms


def _shown(draft: IncidentDraft) -> dict[str, Any]:
    """The figures as an incident event keeps them (those it had before the reclassify, in ``was``)."""
    return {"peak_complaints": int(draft.peak_count), "peak_score": round(draft.peak_z, 3),
            "total_complaints": int(draft.total_complaints), "symptoms": dict(draft.symptoms),
            "sample_post_ids": [int(pid) for pid, _ in draft.samples]}


class ReclassifiedIncidents:
    config: Config
    store: Store

    if TYPE_CHECKING:
        @property
        def bucket(self) -> timedelta: ...  # CollectStage's: the detector's bucket width

        def _params(self, service: str) -> DetectorParams: ...  # RelearnStage's

    def _refigure_after_reclassify(self, service: str, since: datetime, model: str, learned: Relearned,
                                   now: datetime) -> tuple[str, datetime | None]:
        """Give ``service``'s open incident the figures of its buckets as recounted (since ``since``, by ``model``),
        and resolve it where the fresh detector (``learned``) has none open; in the caller's transaction. Returns
        what it did, for the log ("" for nothing), and when it resolved the incident (None: it did not)."""
        saved = self.store.detector_state(service)
        if saved is None or not saved.draft or saved.incident_id is None:
            return "", None
        draft = IncidentDraft.from_json(saved.draft)  # _relearn read it: readable
        row = self.store.incident(saved.incident_id)
        params, width = self._params(service), self.bucket
        end = last_end(params, draft)
        if draft.resolved_at is not None or row is None or row["status"] != "open" or end <= since:
            return "", None
        opened = draft.opened_at
        counts = self.store.bucket_counts(service, opened, end)
        complaints = [c for _, c in counts.values()]
        z = [s for at, s, *_ in learned.scored if opened <= at < end]
        samples = self.store.sample_posts(service, opened, end, params.max_samples)
        new = replace(draft, peak_count=float(max(complaints, default=0)), peak_z=max(z, default=draft.peak_z),
                      total_complaints=float(sum(complaints)),
                      symptoms=tuple(self.store.symptom_counts(service, opened, end, width).items()),
                      samples=tuple((str(p["id"]), float(p["score"])) for p in samples))
        if _figures(new) == _figures(draft):
            return "", None
        # Dated as the detector dates its transitions, at the end of the bucket it knew it in: its last one.
        at = max(saved.last_bucket + width, parse_iso(row["updated_at"]))
        scores = {b: (score, base, up) for b, score, base, up, _ in learned.scored}
        details: dict[str, Any] = {"reason": RECLASSIFIED, "model": model,
                                   "was": {**_shown(draft), "baseline": row["baseline"]}}
        fields = _shown(new)
        if (last := scores.get(saved.last_bucket)) is not None:
            details |= {"z": round(last[0], 2), "count": counts.get(iso(saved.last_bucket), (0, 0))[1],
                        "baseline": round(last[1], 2), "upper": round(last[2], 2)}
        if (opening := scores.get(opened)) is not None:
            # What it opened against, in the new verdicts' counts: the old model's beside their peak read as a jump
            # (or a fall) that no bucket had.
            fields["baseline"] = round(opening[1], 3)
        state, resolved = saved.state, None
        # Resolved only when complaints were taken away: a detector learned again from 28 days of buckets may leave
        # shut a marginal outage that the one that learned for longer had open, and one whose complaints grew is no
        # outage that went away (resolved, its next anomalous bucket would re-open it and page again).
        if learned.open or new.total_complaints >= draft.total_complaints:
            self.store.update_incident(saved.incident_id, at, fields, "update", details)
            done = f"#{saved.incident_id} takes the new figures"
        else:
            # The new verdicts leave no outage open: resolved, not deleted, so a route told of its opening is told it
            # ended. From the last bucket on, as the lifecycle resolves (a re-opening within the cool-down brings
            # this incident back).
            new = replace(new, resolved_at=saved.last_bucket, last_bucket=saved.last_bucket,
                          last_minutes=params.bucket_minutes)
            self.store.update_incident(saved.incident_id, at, {**fields, "status": "resolved", "resolved_at": at},
                                       "resolve", details)
            state = replace(DetectorState.from_json(saved.state), open=False, opened_at=None, quiet=0,
                            resolved_at=saved.last_bucket).to_json()
            resolved = at
            done = f"#{saved.incident_id} is resolved"
        self.store.save_detector_step(service, saved.last_bucket, state, [], now,
                                      draft=new.to_json(), incident_id=saved.incident_id)
        return done, resolved

"""The one place that knows the order of the stages: collect -> store -> classify -> detect -> alert.

Each stage reads what it needs from the store and writes its results back; stages never call each other.
Every function takes ``now`` so the same code runs live (wall clock) and in replay (simulated clock).
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from miner.collect_stage import CollectStage, Ingested
from miner.collectors.matching import ServiceMatcher
from miner.config import Config
from miner.detect_stage import DetectStage, TickReport
from miner.records import UNRECORDED_ROUNDING, Post, Prediction
from miner.store import PostToClassify, Store
from miner.timeutil import parse_iso

if TYPE_CHECKING:
    from miner.alerts import DispatchStats, Senders
    from miner.classify import Classifier

# User reports are complaints by definition (someone pressed "I have a problem"); the model is not asked.
REPORTS_SOURCE = "reports"

Progress = Callable[[int], None]


def load_model(config: Config) -> Classifier:
    """The model ``config`` names ([classifier].model_dir, relative to the config's folder)."""
    from miner.classify import load_classifier

    return load_classifier(config.classifier, base_dir=Path(config.path).parent if config.path else None)


class Pipeline(CollectStage, DetectStage):
    """Runs the stages against one store. Not thread-safe: the service runs one pipeline job at a time."""

    def __init__(self, config: Config, store: Store, classifier: Classifier | None = None, *,
                 senders: Senders | None = None, worker_id: str | None = None) -> None:
        self.config = config
        self.store = store
        self._classifier = classifier
        self.senders = senders  # None: SMTP and HTTP from the settings; replay and demo write files instead
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self._matcher: ServiceMatcher | None = None
        self.from_scores = 0  # of the posts the last reclassify_since gave verdicts, those decided from their score

    @property
    def classifier(self) -> Classifier:
        if self._classifier is None:
            self._classifier = load_model(self.config)
        return self._classifier

    def tick(self, now: datetime, arrived: Sequence[Post] = ()) -> TickReport:
        """One pass of every stage after collection: store ``arrived``, classify, detect, alert.

        A tick at or before the last one this store has processed only stores and classifies: a replay that
        resumes after a crash runs its clock again from the start, and must not plan alerts in the past.
        """
        ingested = self.ingest(arrived, now) if arrived else Ingested(0, 0)
        processed_until = self.store.detector_clock()
        if processed_until is not None and now <= processed_until:
            return TickReport(classified=self.classify_pending(now), too_old=ingested.too_old, stored=ingested.stored)
        classified = self.classify_pending(now)
        report = self.detect(now)
        report.classified = classified
        report.sent = self.alert(now).sent
        report.too_old, report.stored = ingested.too_old, ingested.stored
        return report

    def alert(self, now: datetime, stop: threading.Event | None = None, deadline: float | None = None) -> DispatchStats:
        """Plan notifications for new incident transitions, queue due digests, send what is due (until ``stop``, or
        ``deadline``, a time.monotonic(), once one was tried: the rest wait for the next run)."""
        from miner.alerts import run_alerts

        return run_alerts(self.store, self.config.alerts, now, worker_id=self.worker_id, senders=self.senders,
                          sources=self.config.polled_sources, stop=stop, deadline=deadline)

    # Classify --------------------------------------------------------------------------------------------

    def classify_pending(self, now: datetime, progress: Progress | None = None,
                         stop: threading.Event | None = None) -> int:
        """Classify every stored post that has no verdict yet, in batches; recount the buckets they touch.
        ``stop`` set ends it after the batch in progress (each is committed)."""
        return self._classify_all(lambda: now, progress, stop)

    def ingest_ahead(self, arrivals: Sequence[tuple[datetime, Sequence[Post]]]) -> Ingested:
        """Store and classify posts ahead of the replay ticks they arrive at, (tick, posts) for each, in large
        batches: each post is stored as collected at its tick and classified then, as that tick would have done
        (verdicts dated at each post's fetched_at). Nothing the detector reads changes before those ticks: it reads
        only buckets that have ended by its ``now``. Dated at the first tick after them, the verdicts of a chunk of
        posts were dated up to weeks before their posts were written."""
        stored = too_old = 0
        for at, posts in arrivals:
            ingested = self.ingest(posts, at)
            stored, too_old = stored + ingested.stored, too_old + ingested.too_old
        self._classify_all(lambda: None)
        return Ingested(stored, too_old)

    def _classify_all(self, clock: Callable[[], datetime | None], progress: Progress | None = None,
                      stop: threading.Event | None = None) -> int:
        batch = self._chunk()
        done = 0
        while True:
            todo = [] if stop is not None and stop.is_set() else self.store.posts_to_classify(batch)
            if not todo:
                return done
            self._classify_batch(todo, clock)
            done += len(todo)
            if progress:
                progress(len(todo))

    def reclassify_since(self, since: datetime, clock: Callable[[], datetime],
                         progress: Progress | None = None) -> int:
        """Classify posts created since ``since`` again with the current model (after a model update) at its
        decision (after a change of the threshold or early_exit); returns how many. ``from_scores`` is then how many
        of those were decided again from their stored score, without the model (see _decided_again).

        Each batch's verdicts are dated ``clock()`` as they are written, not when the run started: the latest
        verdict of a post is the one counted (store.posts.LATEST), and a post the service classified during a
        long run (with the old model, until it restarts) kept that verdict, dated after the run's start, over the
        one this run gave it later."""
        version, decision = self.classifier.version, self.classifier.decision
        batch = self._chunk()
        after = done = self.from_scores = 0
        try:
            while True:
                # A user report's verdict is no model's: giving it again changed nothing, but counted as reclassified.
                todo = self.store.posts_since(since, version, decision, after, batch, skip_source=REPORTS_SOURCE)
                if not todo:
                    return done
                decided = [(p.id, pred) for p in todo if (pred := self._decided_again(p)) is not None]
                self.from_scores += len(decided)
                self._classify_batch(todo, clock, decided)
                after = todo[-1].id
                done += len(todo)
                if progress:
                    progress(len(todo))
        finally:
            # Also after an interruption: the batches committed recounted their buckets. The detector's baselines
            # were learned from the old model's counts: a model finding 5x the complaints opened an incident for
            # every busy service within hours, and reclassify changed nothing of it.
            if done:
                self.store.mark_reclassified(since, version, decision)

    def _decided_again(self, post: PostToClassify) -> Prediction | None:
        """``post``'s verdict at the current threshold from its latest one's score, or None where the model must run.

        For a verdict of this model with early exits as they are now, its score is the one this model gives it (the
        whole network's, or an exit probe's below the exit's threshold, which a threshold change leaves as it is:
        the exits are calibrated against the model's threshold, and are off below it), stored unrounded, so
        comparing it with the new threshold decides as the model would. Running the model again gave the same
        decisions (5,000 of 5,000 in a bench; its batch-dependent quantization may move a few across the threshold:
        models/MODEL_CARD.md), in 60 to 100 times the time. One given with early exits otherwise, or whose setting
        was not recorded, is decided from its score where that tells either way (see _outage_either_exits). A post
        that was no outage and is one now needs its symptom, which a non-outage verdict does not keep: the model
        runs for it."""
        latest, now = post.latest, self.classifier.decision
        if latest is None or latest.model_version != self.classifier.version:
            return None
        if latest.decision is not None and latest.decision.early_exit == now.early_exit:
            outage: bool | None = latest.score >= now.threshold
        else:
            # Scores stored with their decision are unrounded; miner 0.1.0, which recorded none, rounded them.
            outage = self._outage_either_exits(latest.score, 0.0 if latest.decision else UNRECORDED_ROUNDING)
        if outage is None or (outage and latest.symptom is None):
            return None
        return Prediction(score=latest.score, outage=outage, symptom=latest.symptom if outage else None)

    def _outage_either_exits(self, score: float, margin: float) -> bool | None:
        """The current decision on a verdict of this model from its stored ``score``, whether early exits were on
        or off when it was given (another setting than now's, or none recorded: an older miner's), the score within
        ``margin`` of the model's; None where the score cannot tell and the model must run.

        With exits on, a post an exit stopped scores the probe's estimate, under the exits' threshold, not the whole
        network's; the threshold it was compared to does not change it. With exits on now, a score under the
        threshold is no outage either way: a post an exit stops is none, and one that goes through scores the
        whole network's, which it then scored too. One at or above it is an outage only if no exit stops it now,
        which its score does not tell. With exits off now, every score is the whole network's: a stored one at or
        above the exits' threshold is (a probe's is below it), and decides as the model would; one below it may be
        a probe's."""
        decision = self.classifier.decision
        if decision.early_exit:
            return False if score < decision.threshold - margin else None
        if (self.classifier.exit_threshold and score < self.classifier.exit_threshold + margin) \
                or abs(score - decision.threshold) <= margin:
            return None
        return score >= decision.threshold

    def reclassify_counts(self, since: datetime) -> tuple[int, int]:
        """What reclassify_since would do now: how many posts it would classify again (its progress bar's total;
        not user reports, nor posts with no verdict yet), and how many it leaves because their latest verdict is
        the current model's at its decision."""
        return self.store.reclassify_counts(since, self.classifier.version, self.classifier.decision,
                                            skip_source=REPORTS_SOURCE)

    def _chunk(self) -> int:
        """Posts per classify transaction: enough for length-sorted model batches to pad little (in `miner
        classify`, 256-post chunks cost ~20 % more CPU per post than 4,096), few enough that a kill or a
        graceful stop loses or waits for only seconds of work."""
        return max(self.config.classifier.batch_size * 32, 64)

    def _classify_batch(self, todo: Sequence[PostToClassify], clock: Callable[[], datetime | None],
                        decided: Sequence[tuple[int, Prediction]] = ()) -> None:
        """Classify ``todo`` and store the verdicts, dated ``clock()`` once the store's write lock is held (None: each
        at its post's fetched_at). ``decided``: verdicts of the model's for some of them, given without running it."""
        known = {pid for pid, _ in decided}
        model_posts = [p for p in todo if p.source != REPORTS_SOURCE and p.id not in known]
        reports = [
            (p.id, Prediction(score=1.0, outage=True, symptom=p.symptom_hint or "general"))
            for p in todo
            if p.source == REPORTS_SOURCE
        ]
        preds = self.classifier.predict([p.text for p in model_posts]) if model_posts else []
        verdicts = [*decided, *zip((p.id for p in model_posts), preds, strict=True)]
        # One transaction for the whole batch: posts are classified in id order, and the store relies on it.
        with self.store.database.transaction():
            now = clock()
            times = [*self.store.save_classifications(reports, REPORTS_SOURCE, now),
                     *(self.store.save_classifications(verdicts, self.classifier.version, now, self.classifier.decision)
                       if verdicts else [])]
            self.store.refresh_buckets_at([parse_iso(t) for t in times], self.bucket)

"""What `miner reclassify` decides again, and the mark it leaves for the detector.

A verdict is stored with the model version and the decision (threshold, early exits: records.Decision) it was given
at. Reclassify gives a new one to each post whose latest verdict is another model's or was decided at another
decision than the loaded model's: a rollback to an earlier model counts its verdicts again, and a change of
``[classifier] threshold`` or ``early_exit`` applies to the posts stored before it.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from miner.records import UNRECORDED_ROUNDING, Decision
from miner.store.posts import LAST_CLASSIFIED, LATEST, PostToClassify, StoredVerdict
from miner.timeutil import iso

if TYPE_CHECKING:
    from miner.store.db import Database

# store_state key: the earliest created_at whose posts a reclassify gave new verdicts, until the detector has learned
# its baselines again from the buckets recounted (see Store.mark_reclassified).
RECLASSIFIED_SINCE = "reclassified_since"
RECLASSIFIED_BY = "reclassified_by"  # and the model version that gave them
RECLASSIFIED_AT = "reclassified_at_decision"  # and the decision they were given at (decision_text)
# and how many reclassify runs have recorded one (kept): a run that ended while the detector relearned from the mark
# before, leaving its time as it was (the same --since run again after an interruption), was taken with it.
RECLASSIFIED_RUNS = "reclassified_runs"


def _latest_is(same: str) -> str:
    """Of the posts of ``posts p`` that have a verdict, those whose latest one is not ``same``'s (a condition on
    ``classifications c``); user reports (parameter skip_source, then those of ``same``) are left out."""
    return (f"p.id <= {LAST_CLASSIFIED} AND NOT EXISTS (SELECT 1 FROM classifications c "
            f"WHERE c.post_id = p.id AND (p.source IS ? OR {same} AND {LATEST}))")


# Parameters: model_version, threshold, early_exit. A verdict stored without its decision (before miner recorded it)
# was decided at none: it is decided again.
_SAME_DECISION = "c.model_version = ? AND c.threshold = ? AND c.early_exit = ?"
# Of the posts of ``posts p`` since a time, those that reclassify gives a verdict to (see posts_since), and those it
# leaves because their latest verdict is the current model's at the current decision; parameters of each:
# skip_source, model_version, threshold, early_exit.
RECLASSIFIED = _latest_is(_SAME_DECISION)
_CURRENT = ("p.source IS NOT ? AND EXISTS (SELECT 1 FROM classifications c WHERE c.post_id = p.id AND "
            f"{_SAME_DECISION} AND {LATEST})")
# Those whose latest verdict is another model's (skip_source, model_version): what a model update leaves.
OTHER_MODEL = _latest_is("c.model_version = ?")
# Those whose latest verdict is the model's, decided at another decision (skip_source, model_version, threshold,
# early_exit, threshold, threshold): what a change of the threshold or early_exit leaves. Recorded, or for a verdict
# stored before miner recorded it, told by its outage call: one the threshold does not make of its score (beyond a
# 0.1.0 rounding) was made at another. One called as the threshold calls it may have been made at another too, or
# with early exits otherwise, which nothing stored tells.
OTHER_DECISION = ("p.source IS NOT ? AND EXISTS (SELECT 1 FROM classifications c WHERE c.post_id = p.id AND "
                  "c.model_version = ? AND (c.threshold != ? OR c.early_exit != ? OR c.threshold IS NULL AND "
                  f"(c.outage = 1 AND c.score < ? - {UNRECORDED_ROUNDING!r} "
                  f"OR c.outage = 0 AND c.score >= ? + {UNRECORDED_ROUNDING!r})) AND {LATEST})")


def decision_args(decision: Decision) -> tuple[float, int]:
    return decision.threshold, int(decision.early_exit)


def other_decision_args(decision: Decision) -> tuple[float, int, float, float]:
    """OTHER_DECISION's parameters after skip_source and model_version."""
    return (*decision_args(decision), decision.threshold, decision.threshold)


def decision_text(decision: Decision) -> str:
    """As store_state keeps it; read by read_decision."""
    return f"{decision.threshold!r} {int(decision.early_exit)}"


def read_decision(text: str | None) -> Decision | None:
    try:
        threshold, exits = (text or "").split()
        return Decision(float(threshold), exits == "1")
    except ValueError:  # none recorded (an older miner's mark), or a row edited by hand
        return None


class ReclassifyMixin:
    database: Database

    def posts_since(self, since: datetime, model_version: str, decision: Decision, after_id: int, limit: int, *,
                    skip_source: str | None = None) -> list[PostToClassify]:
        """Posts created at or after ``since`` whose latest classification is not by ``model_version`` at
        ``decision`` (for reclassify), each with that verdict (``latest``): after a rollback to an earlier model,
        its old verdicts are outranked by the later model's; after a change of the threshold, those decided at the
        old one are the model's too.

        Only posts up to the highest classified id: those past it wait for their first verdict from
        posts_to_classify, which takes them in id order. A verdict given here to one of them (while the service
        had not classified it yet) moved that highest id past the posts left out by ``since`` (a feed item dated
        before it, fetched since), and those were never classified. Posts from ``skip_source`` (user reports, whose
        verdict is no model's) are left out once they have a verdict.
        """
        rows = self.database.rows(
            "SELECT p.id, p.text, p.symptom_hint, p.source, c.model_version, c.score, c.symptom, c.threshold, "
            f"c.early_exit FROM posts p LEFT JOIN classifications c ON c.post_id = p.id AND {LATEST} "
            f"WHERE p.created_at >= ? AND {RECLASSIFIED} AND p.id > ? ORDER BY p.id LIMIT ?",
            (iso(since), skip_source, model_version, *decision_args(decision), after_id, limit),
        )
        return [PostToClassify(r["id"], r["text"], r["symptom_hint"], r["source"], None if r["model_version"] is None
                               else StoredVerdict(r["model_version"], float(r["score"]), r["symptom"],
                                                  None if r["threshold"] is None or r["early_exit"] is None
                                                  else Decision(float(r["threshold"]), bool(r["early_exit"]))))
                for r in rows]

    def reclassify_counts(self, since: datetime, model_version: str, decision: Decision, *,
                          skip_source: str | None = None) -> tuple[int, int]:
        """Of the posts created at or after ``since``: how many posts_since gives, from the start (the total of
        reclassify's progress bar), and how many it leaves because their latest verdict is ``model_version``'s at
        ``decision``. One pass over the posts since ``since`` for both."""
        args = (skip_source, model_version, *decision_args(decision))
        row = self.database.one(
            f"SELECT coalesce(sum({RECLASSIFIED}), 0) AS todo, coalesce(sum({_CURRENT}), 0) AS current "
            "FROM posts p WHERE p.created_at >= ?", (*args, *args, iso(since)))
        return (int(row["todo"]), int(row["current"])) if row else (0, 0)

    def complaints_counted_from(self, start: datetime) -> int:
        """The complaints the buckets from ``start`` on count, every service together: what a reclassify changed."""
        row = self.database.one("SELECT coalesce(sum(complaints), 0) AS n FROM buckets WHERE bucket_start >= ?",
                                (iso(start),))
        return int(row["n"]) if row else 0

    def mark_reclassified(self, since: datetime, model_version: str, decision: Decision) -> None:
        """Record that ``model_version`` gave new verdicts at ``decision`` to posts created since ``since`` (a
        reclassify), for the detector to learn its baselines again from the buckets recounted (see detect_relearn);
        an earlier mark not yet taken stays, the earlier of the two."""
        with self.database.transaction() as conn:
            conn.execute("INSERT INTO store_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                         "SET value = min(value, excluded.value)", (RECLASSIFIED_SINCE, iso(since)))
            conn.executemany("INSERT INTO store_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                             "SET value = excluded.value",
                             [(RECLASSIFIED_BY, model_version), (RECLASSIFIED_AT, decision_text(decision))])
            conn.execute("INSERT INTO store_state (key, value) VALUES (?, '1') ON CONFLICT (key) DO UPDATE "
                         "SET value = CAST(value AS INTEGER) + 1", (RECLASSIFIED_RUNS,))

    def reclassified_mark(self) -> tuple[str, str, str, Decision | None] | None:
        """The mark_reclassified time (as stored), model, run count and decision (None: a mark an older miner
        recorded without it) not yet taken by the detector, or None."""
        rows = {r["key"]: str(r["value"]) for r in self.database.rows(
            "SELECT key, value FROM store_state WHERE key IN (?, ?, ?, ?)",
            (RECLASSIFIED_SINCE, RECLASSIFIED_BY, RECLASSIFIED_RUNS, RECLASSIFIED_AT))}
        return ((rows[RECLASSIFIED_SINCE], rows.get(RECLASSIFIED_BY, ""), rows.get(RECLASSIFIED_RUNS, ""),
                 read_decision(rows.get(RECLASSIFIED_AT))) if RECLASSIFIED_SINCE in rows else None)

    def take_reclassified_mark(self, mark: str, runs: str) -> None:
        """Delete the mark once the detector has learned from it: not if a reclassify has recorded one since it was
        read (``runs`` moved), whose buckets changed after the detector read them, even at the same time."""
        with self.database.transaction() as conn:
            now = conn.execute("SELECT value FROM store_state WHERE key = ?", (RECLASSIFIED_RUNS,)).fetchone()
            if (str(now[0]) if now else "") != runs:
                return
            if conn.execute("DELETE FROM store_state WHERE key = ? AND value = ?", (RECLASSIFIED_SINCE, mark)).rowcount:
                conn.execute("DELETE FROM store_state WHERE key IN (?, ?)", (RECLASSIFIED_BY, RECLASSIFIED_AT))

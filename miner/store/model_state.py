"""Which model the service runs, and how many recent posts still count another model's verdict.

Only `miner query` on the classifications showed which model gave the verdicts, and nothing showed which one the
service had loaded: a model update whose reclassify was forgotten went unseen, each stored post counting the old
model's verdict. The service records the model it loaded (``record_serving_model``) for `miner status`, which runs
in another process; ``other_model_verdicts`` is what `/metrics` and `miner status` show of the posts left behind.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from miner.records import Decision
from miner.store.reclassify import OTHER_DECISION, OTHER_MODEL, decision_text, other_decision_args, read_decision
from miner.timeutil import iso

if TYPE_CHECKING:
    from miner.store.db import Database

# store_state keys: the model version `miner run` loaded last, and when it did.
SERVING_MODEL = "serving_model"
SERVING_MODEL_AT = "serving_model_at"
SERVING_DECISION = "serving_decision"  # and the decision (threshold, early exits) it gave verdicts at (decision_text)
# And the command that loaded it: a replay (`miner demo` too) records the model that gave its verdicts, as the service
# does; without it, status said "none recorded yet" of a demo store whose every post the demo had classified.
SERVING_MODEL_BY = "serving_model_by"
# How far back other_model_verdicts looks: a day of posts, which a /metrics scrape reads through the posts_created_at
# index (one lookup per post in the classifications' primary key), never the whole classifications table.
OTHER_MODEL_WINDOW = timedelta(days=1)
# Parameters: since, skip_source, model_version. The posts whose latest verdict is another model's, which
# reclassify gives new verdicts (see posts_since).
# INDEXED BY: left to itself, SQLite read the condition on the highest classified id as a range of the posts' rowid
# and walked every post stored up to it, each with its lookups in the classifications.
OTHER_MODEL_SQL = (f"SELECT count(*) AS n FROM posts p INDEXED BY posts_created_at WHERE p.created_at >= ? "
                   f"AND {OTHER_MODEL}")
# Parameters: since, skip_source, model_version, threshold, early_exit, threshold, threshold (other_decision_args).
# Those whose latest verdict is the model's, decided at another threshold or early-exit setting, which reclassify
# decides again.
OTHER_DECISION_SQL = (f"SELECT count(*) AS n FROM posts p INDEXED BY posts_created_at WHERE p.created_at >= ? "
                      f"AND {OTHER_DECISION}")


class ModelStateMixin:
    database: Database

    def record_serving_model(self, version: str, now: datetime, decision: Decision, *,
                             by: str = "miner run") -> None:
        """Record that the command ``by`` loaded the model ``version`` at ``now``, deciding at ``decision``: the
        service at each start and reload, a replay (`miner replay`, `miner demo`) once it has given its verdicts."""
        with self.database.transaction() as conn:
            conn.executemany("INSERT INTO store_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                             "SET value = excluded.value", [(SERVING_MODEL, version), (SERVING_MODEL_AT, iso(now)),
                                                            (SERVING_DECISION, decision_text(decision)),
                                                            (SERVING_MODEL_BY, by)])

    def serving_decision(self) -> Decision | None:
        """The decision (threshold, early exits) the model `miner run` loaded last gives verdicts at; None if none
        recorded (no service has started since the store was upgraded to a miner that records it)."""
        row = self.database.one("SELECT value FROM store_state WHERE key = ?", (SERVING_DECISION,))
        return read_decision(str(row["value"])) if row else None

    def other_decision_verdicts(self, now: datetime, model_version: str, decision: Decision, *,
                                skip_source: str | None = None) -> int:
        """Posts created in the OTHER_MODEL_WINDOW before ``now`` whose counted (latest) verdict is
        ``model_version``'s, decided at another threshold or early-exit setting than ``decision``: those `miner
        reclassify --since` decides again after a change of either. A verdict stored before its decision was recorded
        is counted where its outage call is not the one ``decision``'s threshold makes of its score: it was made at
        another threshold. Called as this one calls it, nothing tells whether it was (see OTHER_DECISION)."""
        row = self.database.one(OTHER_DECISION_SQL, (iso(now - OTHER_MODEL_WINDOW), skip_source, model_version,
                                                     *other_decision_args(decision)))
        return int(row["n"]) if row else 0

    def serving_model(self) -> tuple[str, str | None, str] | None:
        """(version, when it was loaded, as stored, the command that loaded it) of the model `miner run` (or a replay
        since) loaded last; None if none recorded (no service has started nor replay run since the store was created
        or upgraded to a miner that records it). A model recorded before its command was is `miner run`'s."""
        rows = {r["key"]: str(r["value"]) for r in self.database.rows(
            "SELECT key, value FROM store_state WHERE key IN (?, ?, ?)",
            (SERVING_MODEL, SERVING_MODEL_AT, SERVING_MODEL_BY))}
        if SERVING_MODEL not in rows:
            return None
        return rows[SERVING_MODEL], rows.get(SERVING_MODEL_AT), rows.get(SERVING_MODEL_BY, "miner run")

    def other_model_verdicts(self, now: datetime, model_version: str, *, skip_source: str | None = None) -> int:
        """Posts created in the OTHER_MODEL_WINDOW before ``now`` whose counted (latest) verdict is not
        ``model_version``'s: those `miner reclassify --since` would give new verdicts. Posts from ``skip_source``
        (user reports, whose verdict is no model's) are left out."""
        row = self.database.one(OTHER_MODEL_SQL, (iso(now - OTHER_MODEL_WINDOW), skip_source, model_version))
        return int(row["n"]) if row else 0

"""Which model the service runs, and how many recent posts still count another model's verdict.

Only `miner query` on the classifications showed which model gave the verdicts, and nothing showed which one the
service had loaded: a model update whose reclassify was forgotten went unseen, each stored post counting the old
model's verdict. The service records the model it loaded (``record_serving_model``) for `miner status`, which runs
in another process; ``other_model_verdicts`` is what `/metrics` and `miner status` show of the posts left behind.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from miner.store.reclassify import OTHER_MODEL
from miner.timeutil import iso

if TYPE_CHECKING:
    from miner.store.db import Database

# store_state keys: the model version `miner run` loaded last, and when it did.
SERVING_MODEL = "serving_model"
SERVING_MODEL_AT = "serving_model_at"
# How far back other_model_verdicts looks: a day of posts, which a /metrics scrape reads through the posts_created_at
# index (one lookup per post in the classifications' primary key), never the whole classifications table.
OTHER_MODEL_WINDOW = timedelta(days=1)
# Parameters: since, skip_source, model_version. The posts whose latest verdict is another model's, which
# reclassify gives new verdicts (see posts_since).
# INDEXED BY: left to itself, SQLite read the condition on the highest classified id as a range of the posts' rowid
# and walked every post stored up to it, each with its lookups in the classifications.
OTHER_MODEL_SQL = (f"SELECT count(*) AS n FROM posts p INDEXED BY posts_created_at WHERE p.created_at >= ? "
                   f"AND {OTHER_MODEL}")


class ModelStateMixin:
    database: Database

    def record_serving_model(self, version: str, now: datetime) -> None:
        """Record that the service loaded the model ``version`` at ``now`` (at each start and reload)."""
        with self.database.transaction() as conn:
            conn.executemany("INSERT INTO store_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                             "SET value = excluded.value", [(SERVING_MODEL, version), (SERVING_MODEL_AT, iso(now))])

    def serving_model(self) -> tuple[str, str | None] | None:
        """(version, when it was loaded, as stored) of the model `miner run` loaded last; None if none recorded
        (no service has started since the store was created or upgraded to a miner that records it)."""
        rows = {r["key"]: str(r["value"]) for r in self.database.rows(
            "SELECT key, value FROM store_state WHERE key IN (?, ?)", (SERVING_MODEL, SERVING_MODEL_AT))}
        return (rows[SERVING_MODEL], rows.get(SERVING_MODEL_AT)) if SERVING_MODEL in rows else None

    def other_model_verdicts(self, now: datetime, model_version: str, *, skip_source: str | None = None) -> int:
        """Posts created in the OTHER_MODEL_WINDOW before ``now`` whose counted (latest) verdict is not
        ``model_version``'s: those `miner reclassify --since` would give new verdicts. Posts from ``skip_source``
        (user reports, whose verdict is no model's) are left out."""
        row = self.database.one(OTHER_MODEL_SQL, (iso(now - OTHER_MODEL_WINDOW), skip_source, model_version))
        return int(row["n"]) if row else 0

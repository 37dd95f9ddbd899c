"""The claims on outbox rows: taking one for a worker (a conditional UPDATE), renewing it while a message of many
parts goes out, and returning those whose worker died or hung (older than the lease) to pending."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from miner.store.outbox_order import waiting_sql
from miner.timeutil import iso

if TYPE_CHECKING:
    from miner.store.db import Database


# The attempts a claimed row had when it last failed for good (0: never), after which `miner outbox retry` queued it
# again: only the failures since count towards giving it up again (alerts/retry.py). Its last attempt that failed
# is in deliveries, which are kept with the row while it is pending.
REQUEUED_AFTER = ("(SELECT coalesce(max(d.attempt), 0) FROM deliveries d WHERE d.outbox_id = outbox.id "
                  "AND d.outcome = 'failed') AS requeued_after")


class OutboxClaimsMixin:
    database: Database
    outbox_scope: Callable[..., tuple[str, tuple[int, ...]]]  # ReplayOutboxMixin's

    def reclaim_stale(self, cutoff: datetime) -> int:
        """Return 'sending' claims older than ``cutoff`` (their worker crashed or hung) to pending."""
        scope, args = self.outbox_scope()
        with self.database.transaction() as conn:
            return conn.execute(
                "UPDATE outbox SET status = 'pending', claimed_by = NULL, claimed_at = NULL "
                f"WHERE status = 'sending' AND claimed_at < ? AND {scope}", (iso(cutoff), *args)
            ).rowcount

    def claim_notification(self, outbox_id: int, worker: str, now: datetime) -> bool:
        """Take one pending row for ``worker``; False when another worker (or a later state) got there first."""
        with self.database.transaction() as conn:
            return conn.execute(
                "UPDATE outbox SET status = 'sending', claimed_by = ?, claimed_at = ? WHERE id = ? "
                "AND status = 'pending'", (worker, iso(now), outbox_id),
            ).rowcount == 1

    def claim_due(self, outbox_id: int, worker: str, claimed_at: datetime, due_by: datetime) -> dict[str, Any] | None:
        """Take one row that is still pending and due by ``due_by``, stamped with the real ``claimed_at``.

        Returns the row as claimed (read in the same transaction, so its attempts are current) with its
        ``requeued_after`` (REQUEUED_AFTER), or None when another worker took it first, it was rescheduled (a failed
        attempt's backoff) since the caller listed it, or it waits for an older alert that failed or was taken since
        (outbox_order.waiting_sql).
        """
        older, args = self.outbox_scope("older.id")
        with self.database.transaction() as conn:
            if conn.execute("UPDATE outbox SET status = 'sending', claimed_by = ?, claimed_at = ? WHERE id = ? "
                            f"AND status = 'pending' AND next_attempt_at <= ? AND NOT {waiting_sql('outbox', older)}",
                            (worker, iso(claimed_at), outbox_id, iso(due_by), *args)).rowcount != 1:
                return None
            return dict(conn.execute(f"SELECT *, {REQUEUED_AFTER} FROM outbox WHERE id = ?", (outbox_id,)).fetchone())

    def renew_claim(self, outbox_id: int, worker: str, now: datetime) -> bool:
        """Stamp ``worker``'s claim on the row anew at ``now``: a whole lease from now, for the next part of a message
        sent in many (a PagerDuty event per incident). False when the claim lapsed and was taken over meanwhile."""
        with self.database.transaction() as conn:
            return conn.execute(
                "UPDATE outbox SET claimed_at = ? WHERE id = ? AND status = 'sending' AND claimed_by = ?",
                (iso(now), outbox_id, worker),
            ).rowcount == 1

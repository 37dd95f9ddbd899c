"""The messages the store failed while they were prepared, as a store failure of the service's alerts job.

Such an attempt is retried, never given up for it (retry.store_failed), and the run goes on: the job succeeded, so
/healthz said ok and /metrics had no ``miner_store_error``, while a damaged page, an I/O error or a full disk held
back every message that needed it, retried for as long, and only the log said so. Each is now followed until its
message is prepared (whatever its send then does) or it leaves the queue (sent, failed or muted otherwise: `miner
outbox`, a silence); while one waits, each run of the job fails with a StoreError saying so, as the other jobs' runs
do while the store fails them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from miner.errors import StoreError

if TYPE_CHECKING:
    from miner.alerts.dispatcher import DispatchStats
    from miner.store import Store

WAITING = ("pending", "sending")  # outbox statuses of a message still to go


class UnpreparedAlerts:
    """The service's record, across the alerts job's runs (and the parts of a backlog), of the outbox rows whose last
    attempt the store failed while their message was prepared."""

    def __init__(self) -> None:
        # outbox id -> the store failure's text, cause and same_as, the latest last
        self._rows: dict[int, tuple[str, str, str]] = {}

    def after(self, stats: DispatchStats, store: Store) -> StoreError | None:
        """Take in a dispatch run's attempts (DispatchStats.unprepared and prepared); the StoreError the job's run fails
        with while a message waits that the store failed to prepare, else None."""
        for outbox_id in stats.prepared:
            self._rows.pop(outbox_id, None)
        for outbox_id, failure in stats.unprepared.items():
            self._rows.pop(outbox_id, None)  # to the end: the latest failure is the one told
            self._rows[outbox_id] = failure
        if self._rows and not stats.unprepared:
            # Not tried in this run (waiting out its backoff), it may have left the queue otherwise since: one read
            # each, only while some wait. A store failing these reads fails the run as any store failure does.
            for outbox_id in list(self._rows):
                row = store.notification(outbox_id)
                if row is None or row["status"] not in WAITING:
                    del self._rows[outbox_id]
        return self.error()

    def error(self) -> StoreError | None:
        if not self._rows:
            return None
        message, cause, same_as = next(reversed(self._rows.values()))
        n = len(self._rows)
        which = "1 alert message" if n == 1 else f"{n} alert messages"
        # same_as: the store's failure, not the count of messages it holds back, which changes as they are planned
        return StoreError(f"the store failed ({cause}) while {which} {'was' if n == 1 else 'were'} prepared: nothing "
                          f"of {'it' if n == 1 else 'them'} went out, and {'it waits' if n == 1 else 'they wait'} in "
                          f"the outbox, retried until prepared: {message}", cause=cause, same_as=same_as)

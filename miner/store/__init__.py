"""The SQLite store: the only code that writes SQL.

Every stage reads from and writes to the store through :class:`Store`; its methods are grouped by what they
own (sources, posts, signals, incidents, maintenance). One ``Store`` wraps one connection and is used from one thread.
"""

from __future__ import annotations

import threading
from pathlib import Path

from miner.store.alert_threads import AlertThreadsMixin
from miner.store.channel_health import ChannelHealthMixin
from miner.store.clock import ClockMixin
from miner.store.db import Database
from miner.store.digest_backlog import DigestBacklogMixin
from miner.store.group_interval import GroupIntervalMixin
from miner.store.incident_figures import IncidentFiguresMixin
from miner.store.incident_samples import IncidentSamplesMixin
from miner.store.incidents import IncidentsMixin
from miner.store.maintenance import MaintenanceMixin
from miner.store.model_state import ModelStateMixin
from miner.store.mutes import MutesMixin
from miner.store.official import OfficialIncidentsMixin
from miner.store.outbox import OutboxMixin
from miner.store.outbox_claims import OutboxClaimsMixin
from miner.store.outbox_order import OutboxOrderMixin
from miner.store.poll_failures import PollFailuresMixin
from miner.store.posts import PostsMixin, PostToClassify, SaveStats
from miner.store.readonly import QueryRefused, require_store, run_readonly, stream_readonly
from miner.store.reclassify import ReclassifyMixin
from miner.store.replay_outbox import ReplayOutboxMixin
from miner.store.signals import SignalsMixin
from miner.store.sources import SourcesMixin
from miner.store.upgrade import OnPhase

__all__ = ["PostToClassify", "QueryRefused", "SaveStats", "Store", "require_store", "run_readonly",
           "stream_readonly"]


class Store(SourcesMixin, PostsMixin, OfficialIncidentsMixin, SignalsMixin, IncidentsMixin, IncidentFiguresMixin,
            IncidentSamplesMixin, MaintenanceMixin, OutboxMixin, OutboxClaimsMixin, OutboxOrderMixin,
            GroupIntervalMixin, MutesMixin, ClockMixin, ReplayOutboxMixin, DigestBacklogMixin, ModelStateMixin,
            ReclassifyMixin, ChannelHealthMixin, AlertThreadsMixin, PollFailuresMixin):
    def __init__(self, database: Database) -> None:
        self.database = database
        self._relisted_warned = set()
        self._secrets_scrubbed = set()

    @classmethod
    def open(cls, path: str | Path, *, readonly: bool = False, any_schema: bool = False,
             upgrade: bool = True, stop: threading.Event | None = None, on_phase: OnPhase | None = None) -> Store:
        """Open (creating and migrating if needed) the store at ``path``; raises StoreError with a clear line.

        ``any_schema`` with ``readonly``: take the file at whatever schema version it has (for a backup, which
        copies pages and reads no table) instead of refusing an older one. ``upgrade`` False: refuse what a
        migrating open refuses, but leave an older store's migrations pending. ``stop`` set ends a wait for another
        process's upgrade (see upgrade.begin_waiting); ``on_phase`` is told of each migration and wait (for the
        service's endpoint, which answers while it starts)."""
        return cls(Database.connect(path, readonly=readonly, migrate=not any_schema, upgrade=upgrade, stop=stop,
                                    on_phase=on_phase))

    @property
    def path(self) -> str:
        return self.database.path

    def close(self) -> None:
        self.database.close()

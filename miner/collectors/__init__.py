"""Collectors: poll sources over HTTP and return normalised posts and official incidents.

Collectors do no SQL: a poll takes a source's config and remembered state and returns a FetchResult or
raises SourceError. Use :class:`Poller` (shared client, matching, ``pool``) and :func:`next_poll_at`.
"""

from miner.collectors.base import Collector, PollContext
from miner.collectors.matching import ServiceMatcher
from miner.collectors.poller import Poller, PollOutcome, default_collectors
from miner.collectors.schedule import next_poll_at
from miner.collectors.settings import CollectSettings

__all__ = [
    "CollectSettings",
    "Collector",
    "PollContext",
    "PollOutcome",
    "Poller",
    "ServiceMatcher",
    "default_collectors",
    "next_poll_at",
]

"""Collectors: poll sources over HTTP and return normalised posts and official incidents.

Collectors do no SQL: a poll takes a source's config and remembered state and returns a FetchResult or
raises SourceError. Use :class:`Poller` (shared client, matching, ``pool``) and :func:`next_poll_at`.

Heavy imports (httpx, every collector) load on first use, as miner.alerts' do: reading feeds.toml, which needs
CollectSettings alone, took the whole package (0.19 s on 2 cores), before `miner run` could take its port.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from miner.collectors.base import Collector, PollContext
    from miner.collectors.matching import ServiceMatcher
    from miner.collectors.poller import Poller, PollOutcome, default_collectors
    from miner.collectors.schedule import next_poll_at
    from miner.collectors.settings import CollectSettings

_LAZY = {
    "Collector": "base", "PollContext": "base", "ServiceMatcher": "matching",
    "Poller": "poller", "PollOutcome": "poller", "default_collectors": "poller",
    "next_poll_at": "schedule", "CollectSettings": "settings",
}

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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'miner.collectors' has no attribute {name!r}")
    return getattr(importlib.import_module(f"miner.collectors.{module}"), name)

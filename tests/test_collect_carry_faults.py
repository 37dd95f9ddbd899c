"""PollPool's worker threads when a poll raises past the poller's own handling (PollPool._work): real loopback
servers, real SQLite stores."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from fakeserver import FakeServer
from streams import T0
from test_collect_carry import feed

from miner.collectors import Poller
from miner.collectors.poller import PollOutcome
from miner.config import SourceConfig, parse_config
from miner.pipeline import Pipeline
from miner.records import SourceState
from miner.store import Store


class _RaisingOnce(Poller):
    """A poller whose first poll of ``bad`` raises what Poller._outcome does not catch (a MemoryError building its
    outcome, past the one it caught)."""

    raised = False

    def _outcome(self, source: SourceConfig, state: SourceState | None, started: datetime, clock: float,
                 dropped: threading.Event | None = None) -> PollOutcome:
        if source.name == "bad" and not self.raised:
            self.raised = True
            raise MemoryError("building the outcome")
        return super()._outcome(source, state, started, clock, dropped)


def test_a_poll_that_raises_costs_its_source_one_round_not_the_pools_worker(store: Store) -> None:
    # The worker thread died with the error, still counted: with max_workers = 1 no poll ever started again, a
    # service's collect job went on succeeding with nothing polled, and `miner collect --once` waited forever.
    with FakeServer() as server:
        server.serve("/bad.rss", feed("b", T0))
        server.serve("/fast.rss", feed("f", T0))
        config = parse_config('[collect]\nmax_workers = 1\n[[services]]\nname = "MTN"\n'
                              f'[[sources]]\nname = "bad"\ntype = "rss"\nurl = "{server.url}/bad.rss"\n'
                              f'[[sources]]\nname = "fast"\ntype = "rss"\nurl = "{server.url}/fast.rss"\n'
                              "interval = 10\n")
        pipe = Pipeline(config, store)
        with _RaisingOnce(config.collect, hash_key=b"k") as poller:
            first = pipe.collect(T0, poller, wait=5.0)
            assert [r.source for r in first] == ["fast"]  # bad's poll raised: nothing of it stored
            assert poller.pool.in_flight() == set()
            again = pipe.collect(T0 + timedelta(seconds=15), poller, wait=5.0)
            assert [(r.source, r.stored) for r in again] == [("bad", 3), ("fast", 0)]  # bad due again, and polled

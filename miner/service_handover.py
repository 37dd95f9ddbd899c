"""What a reload (:mod:`miner.service_reload`) hands from the service it stops to the one it starts with the new
config, instead of releasing it at the stop and starting afresh.

The store lock, held throughout when the new service runs on the same store: released at the stop and taken again
at the start, it was free in between (the new model loading, a second or more) for a `miner replay` or another
`miner run` on the store to take, and the reload then failed on it twice, the config before too, and `miner run`
exited 1. A new service that fails to start leaves it to the one started again with the config before.

The polls held in memory while the store takes no writes (:class:`miner.held_polls.HeldPolls`), which the new
service stores first at its first collect round that the store takes them: lost at the stop before (with a
warning), and with them the feed items that scrolled off meanwhile, as the new service polled their sources again
from the store's cursors.

Both only when the new service runs on the same store; another store's lock is its own, and the polls held for
the store before are lost then, as at a stop.

What the user reports' intake knows of its clients: each one's rate limit, and the reporter key of the day that
makes one client's reports one complainer per bucket. Started afresh, a client that had spent its hour's reports
got a new burst at each reload, and its reports after one were a second complainer in the bucket. The rate set by
the new config applies to the buckets carried over (a lower burst caps them); clients are keyed as the new
`[server]` settings say (`trusted_proxies`, `report_ipv6_prefix`), so a client whose key they change starts
afresh, and its old key's bucket is pruned with the stale ones.

The HTTP endpoint's listening socket (:mod:`miner.http_listener`), when the new config listens on the same `[server]`
host and port: closed at the stop and bound again at the start, the port refused connections while the new service
started (health checks failed, reports posted then were lost); kept open, they wait in its backlog for the new
service. Whatever the store: the port is the process's. On another address, or with the endpoint off, it is closed
when the new service is given it, and that one binds its own. A new service that fails to start leaves it to the one
started again with the config before, which listens there; closed with the rest at :meth:`Handover.release`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from miner.collectors.reports import RateLimiter, ReporterHashes
from miner.held_polls import HeldPolls
from miner.http_listener import Listener
from miner.service_lock import ServiceLock

log = logging.getLogger("miner.service")


@dataclass(eq=False)
class Handover:
    lock: ServiceLock  # held
    held: HeldPolls
    # The reports' clients, taken whatever the store (a client is the same client); not the intake, which refers to
    # the service stopped, and would keep it and its model in memory.
    reports: tuple[RateLimiter, ReporterHashes]
    taken: bool = False  # by the service given it last
    listener: Listener | None = None  # the HTTP endpoint's, listening; kept for a start that fails

    def give_listener(self, at: tuple[str, int] | None) -> Listener | None:
        """The listener for a service that listens ``at`` (host, port; None: not at all), if it serves there; else
        it is closed, for the service to bind its own."""
        if self.listener is not None and (at is None or not self.listener.serves(*at)):
            self.listener.close()
            self.listener = None
        return self.listener

    def release(self) -> None:
        """Let go of all of it: the command stops, or no service started with it."""
        self.lock.release()
        warn_lost(self.held)
        if self.listener is not None:
            self.listener.close()

    def release_untaken(self) -> None:
        """Let go of what the new service, started, did not take: the lock and held polls of another store (the
        listener it did not take is closed already)."""
        if not self.taken:
            self.lock.release()
            warn_lost(self.held)


def warn_lost(held: HeldPolls) -> None:
    """The polls still held when the service stops (and no reload takes them) are lost with the process."""
    if held.polls:
        count = held.count
        log.warning("stopping with %d posts of %d held poll%s that the store never took (%s): they are lost, but their "
                    "sources' cursors in the store did not move, so the next start polls them from there (a feed's "
                    "items that have scrolled off it since are gone)", held.posts, count, "s" if count != 1 else "",
                    held.store_error or "the store was lost")

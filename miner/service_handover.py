"""What a reload (:mod:`miner.service_reload`) hands from the service it stops to the one it starts with the new
config, instead of releasing it at the stop and starting afresh.

The store lock, held throughout when the new service runs on the same store: released at the stop and taken again
at the start, it was free in between (the new model loading, a second or more) for a `miner replay` or another
`miner run` on the store to take, and the reload then failed on it twice, the config before too, and `miner run`
exited 1. A new service that fails to start leaves it to the one started again with the config before.
"""

from __future__ import annotations

from dataclasses import dataclass

from miner.service_lock import ServiceLock


@dataclass(eq=False)
class Handover:
    lock: ServiceLock  # held
    taken: bool = False  # by the service given it last

    def release(self) -> None:
        """Let go of what no service took: the new one runs on another store, or the command stops."""
        self.lock.release()

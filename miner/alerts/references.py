"""The ``References`` header of an alert email that replies to an earlier one (RFC 5322 3.6.4): the parent's own
References followed by the parent's Message-ID, so a mail client that threads on References (Thunderbird, Outlook's
conversation view, mutt, Apple Mail) places a reply whose parent it lacks (the recipient joined later, or deleted
it) under the messages before it, not in a thread of its own."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from miner.store import Store

# A flapping outage re-opened all day makes a long chain: the first Message-ID (the thread's root, what a client
# joins a reply to when everything between is gone) and the last ones (the nearest ancestors) are what threading
# uses, so the middle is dropped, as news software shortens it (RFC 5537 3.4.4: from the second id on, never the
# first). Ten ids of miner's usual 50 characters make a line of about 520.
MAX_REFERENCES = 10
# One line ("References: " and the ids) within RFC 5322's 998 octets: _Verbatim writes it unfolded only then.
MAX_LINE = 998


def bounded(chain: Sequence[str]) -> list[str]:
    """``chain`` (oldest first) shortened to its first id and the newest ones: at most MAX_REFERENCES, on one line."""
    kept = list(chain) if len(chain) <= MAX_REFERENCES else [chain[0], *chain[len(chain) - MAX_REFERENCES + 1:]]
    while len(kept) > 2 and len("References: ") + len(" ".join(kept)) > MAX_LINE:
        del kept[1]
    return kept


def reply_references(store: Store, route: str, parent: str, incident_ids: Sequence[int]) -> list[str]:
    """The References of a reply to the alert email ``parent`` about ``incident_ids`` on ``route``: the alerts
    before it in its thread and ``parent``, oldest first, bounded."""
    return bounded(store.alert_thread(route, incident_ids, parent))

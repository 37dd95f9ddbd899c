"""The polls a collect round could not store, held in memory until the store takes writes again.

Kept by the service across collect rounds (:class:`HeldPolls`); the collect stage holds a poll here instead of
storing it, and stores what is held first at the next round that the store takes writes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from miner.errors import StoreError
from miner.records import FetchResult, SourceState

if TYPE_CHECKING:
    from miner.collect_stage import CollectReport

# Posts held in memory at most while the store takes no writes (a few KB each with their text and incidents).
HELD_POSTS_MAX = 20_000
# Polls held at most, whatever posts they carry: a poll that brings no new post (a 304, a feed listing what is held
# already, a failure) is held all the same, to be stored in order.
HELD_POLLS_MAX = 20_000


@dataclass(frozen=True)
class HeldPoll:
    """A poll, or a failed poll (``error``), that the store did not take when it was made."""

    type: str
    result: FetchResult | None
    error: str | None
    polled_at: datetime
    next_poll_at: datetime
    duration_s: float
    skipped: int = 0  # posts left out as duplicates (of the source's held posts, or stored under an earlier name)
    stale: bool = False  # of the source's type or url before the config changed them (see HeldPolls.mark_stale)
    needs_action: bool = False  # a failure that lasts until someone acts (SourceError.calls_for_action)
    too_old: int = 0  # posts left out as older than the store keeps (CollectReport.too_old)
    http_status: int | None = None  # a failure's (SourceError.http_status), for the store's poll_failures
    retry_after: float | None = None  # a failure's: the seconds the server asked to wait (Retry-After)


class HeldPolls:
    """The polls the store did not take (a full disk, a read-only file, a lock held past the busy timeout), kept in
    memory by the service across collect rounds until it takes them, each source's in the order they were made.

    Without them every due source's poll was thrown away at each round (every 15 s) while the store took no
    writes: nothing counted or logged what was lost, a feed's items that scrolled off it meanwhile were lost for
    good, and since no poll was recorded, each source was polled every round, whatever its interval or a
    server's Retry-After. A source with polls held is polled on the schedule its last held poll set, from that
    poll's cursor and validators. At most ``max_posts`` posts, or ``max_polls`` polls, are held: beyond that no source
    is polled until the store takes writes again (polls that brought no new post, each held, grew without bound on a
    disk full for days). What is still held when the service stops is lost (and logged): the store's cursors did
    not move, so the next start polls those sources from where the store left them.
    """

    def __init__(self, max_posts: int = HELD_POSTS_MAX, max_polls: int = HELD_POLLS_MAX) -> None:
        self.max_posts = max_posts
        self.max_polls = max_polls
        self.polls: dict[str, list[HeldPoll]] = {}
        self.store_error: StoreError | None = None  # why the store took no writes in the last round, if it did not
        self._ids: dict[str, set[str]] = {}  # external ids of each source's held posts

    @property
    def sources(self) -> list[str]:
        return list(self.polls)

    @property
    def posts(self) -> int:
        return sum(len(p.result.posts) for polls in self.polls.values() for p in polls if p.result is not None)

    @property
    def count(self) -> int:
        return sum(len(polls) for polls in self.polls.values())

    @property
    def full(self) -> bool:
        return self.count >= self.max_polls or self.posts >= self.max_posts

    def hold(self, source: str, poll: HeldPoll) -> CollectReport:
        """Keep ``poll`` after the source's others; posts already held for the source are left out of it."""
        # Imported on use: collect_stage imports this module, so importing it at the top would be circular.
        from miner.collect_stage import CollectReport

        seen = self._ids.setdefault(source, set())
        if poll.result is not None:
            fresh = [p for p in poll.result.posts if p.external_id not in seen]
            poll = replace(poll, result=replace(poll.result, posts=fresh),
                           skipped=poll.skipped + len(poll.result.posts) - len(fresh))
            seen.update(p.external_id for p in fresh)
        self.polls.setdefault(source, []).append(poll)
        held = len(poll.result.posts) if poll.result is not None else 0
        return CollectReport(source, poll.type, 0, poll.skipped, 0, poll.error, poll.next_poll_at,
                             poll.result is not None and poll.result.not_modified, poll.duration_s,
                             poll.result is not None and poll.result.gap, held=held, too_old=poll.too_old)

    def release(self, source: str) -> None:
        """The source's first held poll is stored now."""
        polls = self.polls[source]
        polls.pop(0)
        if not polls:
            del self.polls[source]
            self._ids.pop(source, None)

    def mark_stale(self, source: str) -> None:
        """The source's type or url changed in the config (a reload): the polls held of the old ones are stored, and
        then its poll state starts afresh in the store (Store.reset_poll_state), as sync_sources started it; their
        cursor, validators, schedule and successes are not the new ones'. Stored after that reset, they wrote the
        old feed's back, and the new url was first polled an interval later, with the old feed's validators."""
        if source in self.polls:
            self.polls[source] = [replace(p, stale=True) for p in self.polls[source]]

    def schedules(self, source: str) -> bool:
        """Whether the source's last held poll sets when it is due (the store's next poll time is older)."""
        return source in self.polls and not self.polls[source][-1].stale

    def due(self, source: str, now: datetime) -> bool:
        return self.polls[source][-1].next_poll_at <= now

    def last_ok(self, source: str) -> datetime | None:
        """When the source's last held poll that succeeded was made (the store's last_ok_at is older)."""
        return next((p.polled_at for p in reversed(self.polls.get(source, []))
                     if p.result is not None and not p.stale), None)

    def state(self, source: str) -> SourceState | None:
        """The cursor and validators of the source's last poll held that returned any (the store's are older)."""
        for poll in reversed(self.polls.get(source, [])):
            if poll.result is not None and not poll.stale:
                return poll.result.state
        return None

    def consecutive_failures(self, source: str, stored: int) -> int:
        """The source's failures in a row, counting those held after the ``stored`` ones."""
        failures = 0
        for poll in reversed(self.polls.get(source, [])):
            if poll.stale:
                return failures  # the store's count starts afresh after them
            if poll.result is not None:
                return failures
            failures += 1
        return stored + failures

    def describe(self) -> str:
        """What is held, for the error the collect job reports while the store takes no writes."""
        text = (f"{self.posts:,} posts of {self.count} poll{'s' if self.count != 1 else ''} are held in memory until "
                "the store takes them; "
                "sources are polled on their own schedules meanwhile")
        if self.full:
            limit = f"{self.max_posts:,} posts" if self.posts >= self.max_posts else f"{self.max_polls:,} polls"
            text += f", or not at all while {limit} are held"
        return text

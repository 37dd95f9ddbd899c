"""Plain records that cross stage boundaries (collectors -> store -> classifier -> detector -> alerts).

They carry no behaviour and do no I/O, so every stage may import them without importing another stage.
All datetimes are timezone-aware UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Post:
    """One normalised post from a source, before it is stored.

    ``text`` is plain text: HTML stripped, entities decoded, whitespace folded. ``author_hash`` is a keyed
    hash of the author handle (never the handle itself). ``services`` is filled by service matching. ``undated``:
    the source gave no time, so ``created_at`` is when the post was fetched (UNDATED_NEW); UNDATED_BACKLOG when it
    came in a source's backlog, where that time says nothing of when it was posted, so it is counted in no bucket.
    """

    source: str
    external_id: str
    text: str
    created_at: datetime
    url: str | None = None
    author_hash: str | None = None
    lang: str | None = None
    services: tuple[str, ...] = ()
    symptom_hint: str | None = None  # user reports say what is broken; the classifier may use it
    undated: str | None = None  # None (dated by its source), UNDATED_NEW or UNDATED_BACKLOG
    # The id a feed gives the post, where ``external_id`` is the one its site gives it (collectors/canonical.py): a
    # store that has the post under the feed's id, from before miner read its site's, does not store it again.
    feed_id: str | None = None
    # The post this one shares as its site names it (a Reddit crosspost's, read from a feed that does not mark it so):
    # where the store has that post under those words, this one is it again (store/shares.py).
    shares: str | None = None


# Post.undated (and the posts.undated column): a post without a time of its own, dated when it was fetched. "new":
# first seen by a poll soon after the source's last successful one, so it was posted in between: counted. "backlog":
# first seen by a source's first poll, or one after a long gap, so it may be from any time before: not counted.
UNDATED_NEW = "new"
UNDATED_BACKLOG = "backlog"

# Post.source of a user report (POST /report), dated when it came: by our clock, not by a source's.
REPORT_SOURCE = "reports"

# How far after the clock polling it a source may date a post (make_post dates one further ahead at the poll): so a
# post stored further after the current time was stored by a clock ahead of this one (Store.clock_behind).
FUTURE_SLACK = timedelta(minutes=10)


@dataclass(frozen=True)
class OfficialIncident:
    """An incident as published by a provider's status page. Not a post: stored in its own table."""

    source: str
    external_id: str
    service: str | None
    title: str
    # investigating | identified | monitoring | resolved | postmortem | unknown; a maintenance is scheduled (announced
    # or under way) or completed (see MAINTENANCE)
    status: str
    started_at: datetime
    updated_at: datetime
    impact: str | None = None  # none | minor | major | critical
    components: tuple[str, ...] = ()
    resolved_at: datetime | None = None
    url: str | None = None
    # The provider gave no time for its start: started_at is the poll's time, and the store keeps the time it first
    # stored the incident (first_seen_at) as its start, which a later poll does not move.
    undated: bool = False
    # Nor for its latest update (a feed entry without any date, an incident without updated_at): updated_at is the
    # poll's time too, and the store moves it only when what the incident says (title, status, ...) changes.
    update_undated: bool = False
    # When the provider first said so publicly (Statuspage's created_at, a status feed's first dated update), which
    # may be long after started_at (the impact's start, as the provider backdates it). None: not known apart from
    # started_at (see ``posted``). Undated (``undated``), it is the poll's time, as started_at is.
    posted_at: datetime | None = None

    @property
    def posted(self) -> datetime:
        """When the provider said so: posted_at, else started_at. Our lead on the provider is measured to it."""
        return self.posted_at or self.started_at


# The statuses of planned work, not an outage: never matched to a detected incident.
MAINTENANCE = frozenset({"scheduled", "completed"})
# The statuses that say a provider's outage is over, whatever its resolved_at (a feed entry may say so first).
OVER = frozenset({"resolved", "postmortem"})


@dataclass(frozen=True)
class SourceState:
    """What a source remembers between polls: conditional-GET validators and an API cursor."""

    etag: str | None = None
    last_modified: str | None = None
    cursor: str | None = None


@dataclass(frozen=True)
class FetchResult:
    """The outcome of one successful poll.

    ``warnings`` holds survivable problems (e.g. feedparser's wrong-encoding ``bozo``) that were logged while
    the entries were kept. ``not_modified`` is true for a 304. ``retry_after``: seconds the next poll must wait at
    least, when a server's rate limit ended the paging of a poll that still succeeded. ``gap``: posts were (or may
    have been) missed for good, a warning says where: the source's counts are a floor. ``all_open``: ``incidents``
    lists every incident the source still has open (Statuspage's summary.json), so a stored one it no longer lists
    is over. ``catching_up``: the ids of posts read from a window an earlier poll left unread (its page cap, a failed
    later page), or by a read without a cursor of its own, or only through a boost (Mastodon: dated when written):
    older than posts stored before them, as expected, so none of them arrived late (see
    :class:`miner.store.SaveStats`). ``behind``: the poll stopped before it had read everything new since the last
    one (its page cap, a rate limit, a failed later page), and the next polls read the rest from the state it
    returns, so the detector waits for them (detector.settle_minutes at most); what is missed for good is a ``gap``
    instead. The poller sets it for a state whose cursor keeps windows left unread (a Backlog). ``by_link``: a
    post whose link and date (or text) match one stored from the source is that post listed again under another id
    (a feed's, see :func:`miner.store.relisted.relisted`). ``secrets``: the parts of the source's URL from the
    environment that its items' links and ids are kept without (`miner.urls.secret_parts`), for the store to take
    out of what it stored of the source before they were (see :func:`miner.store.link_scrub.scrub_source_secrets`).
    """

    posts: list[Post] = field(default_factory=list)
    incidents: list[OfficialIncident] = field(default_factory=list)
    state: SourceState = field(default_factory=SourceState)
    warnings: list[str] = field(default_factory=list)
    not_modified: bool = False
    retry_after: float | None = None
    gap: bool = False
    all_open: bool = False
    catching_up: frozenset[str] = frozenset()
    behind: bool = False
    by_link: bool = False
    secrets: tuple[str, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class Prediction:
    """The classifier's verdict on one post."""

    score: float  # outage probability 0..1
    outage: bool  # score >= the model's validated threshold
    symptom: str | None  # one of SYMPTOMS when outage, else None


@dataclass(frozen=True)
class Decision:
    """What a model's verdicts are decided at, stored with each: the threshold the score is compared to, and whether
    early exits were on (then a clear non-report's score is an exit probe's estimate, not the whole network's). Of
    one model, verdicts decided at another threshold with the same early exits are decided again from their score;
    those given with early exits otherwise, or with none recorded, where their score tells (Pipeline._decided_again)."""

    threshold: float
    early_exit: bool

    def text(self) -> str:
        return f"threshold {self.threshold:g}, early exits {'on' if self.early_exit else 'off'}"

    @classmethod
    def asked(cls, threshold: float | None, early_exit: bool, model_threshold: float, model_exits: bool) -> Decision:
        """The decision a model whose own threshold is ``model_threshold`` gives verdicts at, asked for ``threshold``
        (None: the model's own) and ``early_exit``; ``model_exits``: the model has an exit probe to run.

        The one rule for when the exits run: the Classifier serves by it, and `miner status` tells by it (without
        loading the model) whether feeds.toml asks for another decision than the service's. The exits were
        calibrated against the model's own threshold; a lower one asks for posts they would drop."""
        at = model_threshold if threshold is None else threshold
        return cls(at, early_exit and model_exits and at >= model_threshold)


# How far a verdict's stored score may be from the model's, where its decision was not recorded: miner 0.1.0 stored
# scores rounded to 6 decimals (0.3699996 as 0.37), and which side of a threshold so near it the model's fell on is
# unknown. Scores stored with their decision are unrounded.
UNRECORDED_ROUNDING = 1e-6

SYMPTOMS: tuple[str, ...] = (
    "connectivity",
    "login",
    "messaging",
    "calls",
    "media",
    "app",
    "website",
    "payments",
    "power",
    "general",
)

"""Posts, their service matches and classifications; a poll's official incidents are stored with its posts."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from miner.records import Decision, FetchResult, Post, Prediction
from miner.store.link_scrub import scrub_source_secrets
from miner.store.notice_pages import named_by_page, page_author, share_by_page
from miner.store.official import resolve_unlisted, upsert_official
from miner.store.poll_failures import log_recovery
from miner.store.relisted import relisted, under_feed_id
from miner.store.shares import drop_copies, shares_stored
from miner.store.sql_lists import IN_LIST, json_list
from miner.timeutil import iso, parse_iso

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import sqlite3

    from miner.store.db import Database

# The highest classified id. Posts are classified in id order, so every post up to it has a verdict.
LAST_CLASSIFIED = "(SELECT coalesce(max(post_id), 0) FROM classifications)"
# The posts of ``posts p`` that wait for a verdict: starting past LAST_CLASSIFIED keeps this an index lookup
# instead of a scan of every post ever stored.
UNCLASSIFIED = f"p.id > {LAST_CLASSIFIED} AND NOT EXISTS (SELECT 1 FROM classifications c WHERE c.post_id = p.id)"
# store_state key of the highest post id a prune deleted (see MaintenanceMixin.prune_posts): SQLite gives a new row
# the highest id in the table + 1, so once the newest posts were deleted their ids went to the next ones, and the
# post ids stored elsewhere (a resolved incident's sample_post_ids) cited unrelated posts. Posts are numbered past it.
LAST_PRUNED_ID = "last_pruned_post_id"

# Posts dated by their source, not by our clock: an item without a time is dated when it was fetched (undated), and
# one a source dates ahead of our clock is dated in its poll (make_post), never before the poll's start (fetched_at),
# while a real post was published before it. The retention guard's evidence and the late posts' mark.
SOURCE_DATED = "undated IS NULL AND created_at < fetched_at"
# The latest classification of each post ``p``, the one counted: reclassification with a new model supersedes the
# old verdict, and reclassifying with an earlier model again (a rollback) supersedes the new one's.
LATEST = (
    "c.rowid = (SELECT c2.rowid FROM classifications c2 WHERE c2.post_id = p.id "
    "ORDER BY c2.classified_at DESC, c2.rowid DESC LIMIT 1)"
)


@dataclass(frozen=True)
class SaveStats:
    """What storing a poll did. ``posts_late``: new posts dated before a post of the same poll that the store had
    already (one the source sent again, in its look-back or its whole feed), by ``late_by_s`` seconds at most: the
    source indexed or delivered them late, after newer ones were read (see :func:`_late_posts`)."""

    posts_new: int = 0
    posts_seen: int = 0  # already stored: re-polls store nothing twice
    incidents_new: int = 0
    incidents_updated: int = 0
    posts_late: int = 0
    late_by_s: float = 0.0


@dataclass(frozen=True)
class StoredVerdict:
    """A post's latest (counted) verdict, as stored: what reclassify decides again from its score (see
    Pipeline.reclassify_since). ``decision`` None: stored before miner recorded it (or a user report's)."""

    model_version: str
    score: float
    symptom: str | None
    decision: Decision | None


@dataclass(frozen=True)
class PostToClassify:
    id: int
    text: str
    symptom_hint: str | None
    source: str
    latest: StoredVerdict | None = None  # given by posts_since only


class PostsMixin:
    database: Database
    # The sources whose feed was found listing a stored post under a new id: told once (see relisted).
    _relisted_warned: set[str]
    # The sources (with the parts of their URL from the environment) whose stored links were scrubbed of them.
    _secrets_scrubbed: set[tuple[str, tuple[str, ...]]]

    if TYPE_CHECKING:
        def refresh_buckets_at(self, times: Iterable[datetime], bucket: timedelta) -> int: ...  # SignalsMixin's

    def save_fetch(self, source: str, result: FetchResult, now: datetime, next_poll_at: datetime,
                   bucket: timedelta | None = None) -> SaveStats:
        """Store one successful poll atomically: posts, matches, official incidents and the new source state, and the
        recovery in poll_failures where it ends a run of failed polls.

        The cursor and validators advance only together with the posts they cover: a crash cannot skip posts.

        The poll's warnings become the source's ``last_warning``, seen at ``now``. A poll that read the source
        without a warning records when it cleared the one before (``warning_cleared_at``), which is kept as
        history; a 304 neither sets nor clears one. See :func:`miner.store.sources.current_warning`.

        ``bucket``: the detector's bucket width, in which the buckets that counted a copy of a post stored now (a
        crosspost read before it: store/shares.py) are recounted, in the same transaction; None: left as they are.
        """
        if result.secrets and (source, result.secrets) not in self._secrets_scrubbed:
            # Before the posts: one stored with the key before is then found under the id this poll gives it. In
            # transactions of its own, short ones: the poll's would hold the write lock for them all.
            scrub_source_secrets(self.database, source, result.secrets)
            self._secrets_scrubbed.add((source, result.secrets))  # once per process and key: later rows have none
        with self.database.transaction() as conn:
            # Before the update below: the state this poll started from.
            prior = conn.execute("SELECT cursor, etag, last_modified FROM sources WHERE name = ?", (source,)).fetchone()
            new_posts, known = self._insert_recounting(conn, result.posts, now, bucket,
                                                       self._relisted_warned if result.by_link else None)
            posts_new, posts_seen = len(new_posts), len(known)
            # A first poll (or the first after the source's type or url changed) has nothing to be late against: a
            # new feed that lists a post the old one stored too would make all its older posts late.
            # A post the poll sent twice (a boost and the status it boosts) is no post the store had before it.
            fresh = {p.external_id for p in new_posts}
            before = [p for p in known if p.external_id not in fresh]
            late, late_by = (0, 0.0) if prior is None or not any(prior) else _late_posts(conn, source, new_posts,
                                                                                       before, result.catching_up)
            inc_new, inc_updated = upsert_official(conn, result.incidents, now)
            if result.all_open:
                inc_updated += resolve_unlisted(conn, source, result.incidents, now)
            state = result.state
            warning = "; ".join(result.warnings)[:2000] or None
            log_recovery(conn, source, now, next_poll_at)  # before the update below forgets the failures
            conn.execute(
                "UPDATE sources SET etag = :etag, last_modified = :last_modified, cursor = :cursor, "
                "last_poll_at = :now, last_ok_at = :now, last_error = NULL, consecutive_failures = 0, "
                "needs_action_since = NULL, behind = :behind, next_poll_at = :next, polls = polls + 1, "
                "posts_stored = posts_stored + :posts, incidents_stored = incidents_stored + :incidents, "
                "last_warning = coalesce(:warning, last_warning), "
                "last_warning_at = CASE WHEN :warning IS NULL THEN last_warning_at ELSE :now END, "
                "warning_cleared_at = CASE WHEN :warning IS NOT NULL THEN NULL "
                "WHEN :read AND last_warning IS NOT NULL THEN coalesce(warning_cleared_at, :now) "
                "ELSE warning_cleared_at END "
                "WHERE name = :source",
                {"etag": state.etag, "last_modified": state.last_modified, "cursor": state.cursor, "now": iso(now),
                 "next": iso(next_poll_at), "posts": posts_new, "incidents": inc_new, "warning": warning,
                 "behind": result.behind,
                 # A 304 read nothing: a warning about the content (a wrong encoding) still holds for the same
                 # content, so only a poll that read the source can clear it.
                 "read": not result.not_modified, "source": source},
            )
        return SaveStats(posts_new, posts_seen, inc_new, inc_updated, late, late_by)

    def insert_posts(self, posts: Iterable[Post], now: datetime, bucket: timedelta | None = None) -> SaveStats:
        """Store posts that come from no polled source (user reports, replay). Deduplicated like polls (``bucket``:
        see save_fetch)."""
        with self.database.transaction() as conn:
            new, seen = self._insert_recounting(conn, posts, now, bucket)
        return SaveStats(posts_new=len(new), posts_seen=len(seen))

    def _insert_recounting(self, conn: sqlite3.Connection, posts: Iterable[Post], now: datetime,
                           bucket: timedelta | None, by_link: set[str] | None = None) -> tuple[list[Post], list[Post]]:
        """_insert_posts, with the buckets that counted a copy of a post it stored (which it deletes: store/shares.py)
        recounted in ``bucket``, in the caller's transaction; None: left as they are."""
        dropped: list[str] = []
        stored = _insert_posts(conn, posts, now, by_link, dropped)
        if dropped and bucket is not None:
            self.refresh_buckets_at([parse_iso(at) for at in dropped], bucket)
        return stored

    def stored_ids(self, sources: Sequence[str], external_ids: Sequence[str]) -> set[str]:
        """Those of ``external_ids`` already stored from one of ``sources``."""
        rows = self.database.rows(f"SELECT external_id FROM posts WHERE source {IN_LIST} AND external_id {IN_LIST}",
                                  (json_list(sources), json_list(external_ids)))
        return {r["external_id"] for r in rows}

    def posts_to_classify(self, limit: int) -> list[PostToClassify]:
        """Posts that have no classification yet, oldest first."""
        rows = self.database.rows(
            f"SELECT p.id, p.text, p.symptom_hint, p.source FROM posts p WHERE {UNCLASSIFIED} ORDER BY p.id LIMIT ?",
            (limit,),
        )
        return [PostToClassify(r["id"], r["text"], r["symptom_hint"], r["source"]) for r in rows]

    def last_post_id(self) -> int:
        """The id of the post stored last (0 for none): the posts stored after now have higher ones."""
        row = self.database.one("SELECT coalesce(max(id), 0) AS n FROM posts")
        return int(row["n"]) if row else 0

    def count_posts_stored_after(self, post_id: int, created_before: datetime) -> int:
        """Posts stored after the one with ``post_id`` that were created before ``created_before``."""
        row = self.database.one("SELECT count(*) AS n FROM posts WHERE id > ? AND created_at < ?",
                                (post_id, iso(created_before)))
        return int(row["n"]) if row else 0

    def post_sources(self) -> list[str]:
        """The sources of the stored posts."""
        return [r["source"] for r in self.database.rows("SELECT DISTINCT source FROM posts ORDER BY source")]

    def save_classifications(
        self, items: Sequence[tuple[int, Prediction]], model_version: str, now: datetime | None,
        decision: Decision | None = None,
    ) -> list[str]:
        """Store verdicts dated ``now``, or (None) each at its post's fetched_at, decided at ``decision`` (None: no
        model's, a user report's); returns the created_at of the posts touched (distinct, in order), for bucket
        refresh.

        Verdicts for posts deleted since they were read (pruned by retention) are dropped."""
        if not items:
            return []
        with self.database.transaction() as conn:
            # Retention (the service's prune job, or `miner prune` beside it) may have deleted a post between
            # posts_to_classify and now: its verdict is skipped, checked under this write lock, rather than
            # failing the whole batch on the foreign key. The score is kept as the model gave it: rounded, one just
            # under the threshold could read as at it, beside the outage 0 decided on the unrounded one.
            # It is the score the threshold was compared to, so a reclassify after a change of the threshold alone
            # decides the verdict again from it, without the model.
            threshold, early_exit = (decision.threshold, int(decision.early_exit)) if decision else (None, None)
            conn.executemany(
                "INSERT OR REPLACE INTO classifications (post_id, model_version, outage, score, symptom, "
                "classified_at, threshold, early_exit) SELECT ?, ?, ?, ?, ?, coalesce(?, fetched_at), ?, ? "
                "FROM posts WHERE id = ?",
                [(pid, model_version, int(p.outage), p.score, p.symptom, iso(now) if now is not None else None,
                  threshold, early_exit, pid) for pid, p in items],
            )
            rows = conn.execute(f"SELECT DISTINCT created_at FROM posts WHERE id {IN_LIST} ORDER BY created_at",
                                (json_list(pid for pid, _ in items),)).fetchall()
        return [row[0] for row in rows]


# One post whichever sources stored it (one external_id at one second, as _SAME_POST says), for the buckets' posts:
# counted by row, a story read by the Hacker News search and an hnrss feed was two posts of its bucket, one complaint.
# A post dated at its fetch (undated) is its row: two sources fetch it at two times.
POST = "CASE WHEN p.undated IS NULL THEN 'post ' || p.external_id || ' ' || p.created_at ELSE p.id END"

# Who a counted post is a complaint of: its author, or, where no source named one, the post itself (POST). By its row
# id, a status that two feeds naming no author list (a Pleroma server's tag feed, and a Mastodon server's listing it
# as a remote status) was two complainers.
COMPLAINER = f"coalesce(p.author_hash, {POST})"


# The same post stored by another source: one id (a site's, as a feed entry gets it too: collectors/canonical.py) and
# one time to the second. Looked up by (source, external_id), the posts' unique index, once per other source: read
# through posts_created_at, every post of that second was read for each one stored, and 15,000 posts of one second
# (a feed's or a replay's, all dated alike) took 131 s to store, where 4 did before (the "+" keeps the planner off it).
_SAME_POST = ("source IN (SELECT name FROM sources WHERE name != ?) AND external_id = ? AND +created_at = ? "
              "AND undated IS NULL")


def _shared_author(conn: sqlite3.Connection, post: Post) -> str | None:
    """The author another source stored ``post`` with. A feed that names no author (Hacker News' own, a Mastodon
    tag feed's status of a server whose links name none) made each post it shares with an API source a complainer of
    its own, by its row id, beside the author the API source read. A Pleroma status's page is that status
    (store/notice_pages.py): the author a `mastodon` source stored it with by its page comes first."""
    if by_page := page_author(conn, post):
        return by_page
    row = conn.execute(f"SELECT author_hash FROM posts WHERE {_SAME_POST} AND author_hash IS NOT NULL ORDER BY id "
                       "LIMIT 1", (post.source, post.external_id, iso(post.created_at))).fetchone()
    return str(row[0]) if row is not None else None


def _share_author(conn: sqlite3.Connection, post: Post) -> None:
    """Give ``post``'s author to the rows other sources stored it with and without one (see _shared_author): read by
    a feed first, it was a complainer of its own. Its bucket is the new post's, recounted when that is classified."""
    conn.execute(f"UPDATE posts SET author_hash = ? WHERE {_SAME_POST} AND author_hash IS NULL",
                 (post.author_hash, post.source, post.external_id, iso(post.created_at)))
    share_by_page(conn, post)


def _insert_posts(conn: sqlite3.Connection, posts: Iterable[Post], now: datetime,
                  by_link: set[str] | None = None, dropped: list[str] | None = None) -> tuple[list[Post], list[Post]]:
    """Store the posts not stored yet; returns those it stored and those the store had. ``by_link``: a post the store
    has under another id is one too (see relisted); the sources told of it are added there. ``dropped``: the
    created_at of the copies of posts stored now that were stored before them (store/shares.py), which go."""
    new: list[Post] = []
    seen: list[Post] = []
    # Past the ids a prune deleted (see LAST_PRUNED_ID); None: SQLite's own, past every post stored. Only the first
    # post stored needs it: the ones after it are past it. None past the largest id there is (recorded by an upgrade
    # that read a number past 64 bits as it): one past it is a real, and every post failed with "datatype mismatch".
    row = conn.execute(
        "SELECT CAST(value AS INTEGER) + 1 FROM store_state WHERE key = ? "
        "AND CAST(value AS INTEGER) >= (SELECT coalesce(max(id), 0) FROM posts) "
        "AND CAST(value AS INTEGER) < 9223372036854775807", (LAST_PRUNED_ID,)).fetchone()
    next_id: int | None = row[0] if row else None
    # A post sharing another (a crosspost) after the others: the one it shares may come in the same poll.
    posts = sorted(posts, key=lambda p: p.shares is not None)
    listed = [p.external_id for p in posts]
    for post in posts:
        if post.feed_id is not None and (stored := under_feed_id(conn, post)) is not None:
            seen.append(replace(post, external_id=stored))
            continue
        if by_link is not None and conn.execute("SELECT 1 FROM posts WHERE source = ? AND external_id = ?",
                                                (post.source, post.external_id)).fetchone() is None and (
                stored := relisted(conn, post, listed)) is not None:
            # Under the id the store has: the mark _late_posts finds a poll's known posts by.
            seen.append(replace(post, external_id=stored))
            if post.source not in by_link:
                by_link.add(post.source)
                log.warning("source %s lists posts it listed before under new ids (%s, stored as %s): they are "
                            "told by their link and date (docs/collectors.md, rss)", post.source, post.external_id,
                            stored)
            continue
        if shares_stored(conn, post):
            seen.append(post)  # the post it shares again, as the API reads a crosspost
            continue
        if post.undated is None and post.author_hash is None:
            post = replace(post, author_hash=_shared_author(conn, post))
        elif post.undated is None and named_by_page(post):
            # A status's page named by a feed with its author's handle: the `mastodon` source's author is the one, and
            # no other source's: a feed linking a remote status by the url its server claims gave it another's page.
            post = replace(post, author_hash=page_author(conn, post) or post.author_hash)
        cur = conn.execute(
            # ON CONFLICT, not OR IGNORE: only a duplicate is skipped; a NOT NULL violation must fail the batch.
            "INSERT INTO posts (id, source, external_id, text, url, created_at, fetched_at, "
            "author_hash, lang, symptom_hint, undated, shares) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (source, external_id) DO NOTHING",
            (next_id, post.source, post.external_id, post.text, post.url, iso(post.created_at), iso(now),
             post.author_hash, post.lang, post.symptom_hint, post.undated, post.shares),
        )
        if cur.rowcount == 0:
            seen.append(post)
            continue
        next_id = None
        new.append(post)
        # After the insert: the copies' ids are below the new row's, so no later post takes one of them.
        copies = drop_copies(conn, post, cur.lastrowid) if cur.lastrowid is not None else []
        if dropped is not None:
            dropped.extend(copies)
        if post.author_hash is not None and post.undated is None:
            _share_author(conn, post)
        conn.executemany(
            "INSERT OR IGNORE INTO post_services (post_id, service) VALUES (?, ?)",
            [(cur.lastrowid, svc) for svc in post.services],
        )
    return new, seen


def _late_posts(conn: sqlite3.Connection, source: str, new: Sequence[Post], known: Sequence[Post],
                catching_up: frozenset[str]) -> tuple[int, float]:
    """How many of a poll's ``new`` posts arrived late, and by how many seconds at most: those dated before the newest
    post of the same poll that the store had already. The source sent that one again (a look-back below its cursor,
    a feed's every entry); an earlier poll read it, newest first, and not the new one dated before it, which the
    source indexed or delivered only since. The store's own newest post is no such mark: it may come from before
    the source's url changed, and finding it would read every post of the source. Posts a source gives no time
    (dated at their fetch) take no part, nor those read from a window an earlier poll left unread (``catching_up``:
    older than what the store has by design). A post later than the source's look-back is never sent: it is lost,
    and counted nowhere.

    A known post's date is the one the store has, from the poll that stored it: a feed that dates an entry by its
    last edit (Atom's ``updated``) sends it dated later, and every post published before the edit was late behind it.
    Nor is one dated at or after its fetch a mark: its source dated it ahead of our clock, which dated it instead (a
    pinned item dated next year, dated anew at each poll: make_post), as for the retention guard
    (store/maintenance.py)."""
    if not new or not known:
        return 0, 0.0
    row = conn.execute(
        "SELECT max(created_at) FROM posts WHERE source = ? AND external_id IN (SELECT value FROM json_each(?)) "
        f"AND {SOURCE_DATED}",
        (source, json.dumps([p.external_id for p in known])),
    ).fetchone()
    if row is None or row[0] is None:
        return 0, 0.0
    newest = parse_iso(row[0])
    # In whole seconds, as the store has the mark (and has these posts now).
    dated = [p.created_at.replace(microsecond=0) for p in new
             if p.undated is None and p.external_id not in catching_up]
    behind = [(newest - at).total_seconds() for at in dated if at < newest]
    return len(behind), max(behind, default=0.0)

"""Per-service volume buckets, detector state, and the complaint reads they rest on (samples, symptoms, totals)."""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from miner.store.posts import COMPLAINER, POST
from miner.store.posts import LATEST as _LATEST
from miner.store.sql_lists import IN_LIST, json_list
from miner.timeutil import floor_time, iso, parse_iso

if TYPE_CHECKING:
    from miner.store.db import Database



# Posts a bucket counts: not those without a time of their own that came in a source's backlog (posts.undated),
# dated when fetched though they may be from any time before: a new feed's backlog was a spike in its first bucket.
_COUNTED = "p.undated IS NOT 'backlog'"

# store_state key of the bucket width, in minutes, that the buckets and the detector states are counted in.
BUCKET_MINUTES = "bucket_minutes"

# Posts' time recounted per transaction when the bucket width changes (see rebucket).
REBUCKET_SPAN = timedelta(hours=6)


@dataclass(frozen=True)
class SavedDetector:
    last_bucket: datetime
    state: str  # DetectorState JSON
    draft: str | None  # IncidentDraft JSON while an incident is open or cooling down
    incident_id: int | None  # incidents.id of that draft


class SignalsMixin:
    database: Database

    if TYPE_CHECKING:
        def pruned_before(self) -> datetime | None: ...  # MaintenanceMixin's

    def first_open_bucket(self, bucket: timedelta) -> datetime | None:
        """Start of the first bucket a recount may change; None when no prune has run.

        A prune deletes the posts created before its cutoff and keeps their buckets, which from then on hold the
        only count of them: a recount from the posts left would lose it. The bucket holding the cutoff lost part
        of its posts, so it is final too.
        """
        cutoff = self.pruned_before()
        if cutoff is None:
            return None
        first = floor_time(cutoff, bucket)
        return first if first == cutoff else first + bucket

    def refresh_buckets(self, start: datetime, end: datetime, bucket: timedelta) -> int:
        """Recount posts and complaints per service for every bucket overlapping [start, end].

        ``complaints`` counts complaining authors, not posts: one account (or bot) posting fifty times in a
        bucket is one complaint, so it cannot open an incident alone. Posts with no known author (replayed
        streams, user reports, feeds without one) count one each, unless another source stored the same post with
        its author (store.posts._shared_author); the same post stored by several sources none of which named its
        author counts once (store.posts.COMPLAINER), and is one of ``posts`` whichever sources stored it (POST).
        Posts of a source's undated backlog (see _COUNTED) count nowhere.
        Counting is a recount, not an increment, so re-running it (after a crash, or after reclassify) is safe.
        Buckets before :meth:`first_open_bucket` are left as they are: their posts were pruned.
        """
        seconds = int(bucket.total_seconds())
        lo = floor_time(start, bucket)
        hi = floor_time(end, bucket) + bucket
        with self.database.transaction() as conn:
            # Read under the write lock: a prune in another process records its cutoff with its first deletions.
            first = self.first_open_bucket(bucket)
            if first is not None and first > lo:
                lo = first
                if lo >= hi:
                    return 0
            conn.execute(
                "UPDATE buckets SET posts = 0, complaints = 0 WHERE bucket_start >= ? AND bucket_start < ?",
                (iso(lo), iso(hi)),
            )
            cur = conn.execute(
                f"""
                INSERT INTO buckets (service, bucket_start, posts, complaints)
                SELECT ps.service,
                       strftime('%Y-%m-%dT%H:%M:%S+00:00',
                                (CAST(strftime('%s', p.created_at) AS INTEGER) / {seconds}) * {seconds},
                                'unixepoch') AS b,
                       count(DISTINCT {POST}),
                       count(DISTINCT CASE WHEN c.outage = 1 THEN {COMPLAINER} END)
                FROM posts p
                JOIN post_services ps ON ps.post_id = p.id
                LEFT JOIN classifications c ON c.post_id = p.id AND {_LATEST}
                WHERE p.created_at >= ? AND p.created_at < ? AND {_COUNTED}
                GROUP BY ps.service, b
                ON CONFLICT (service, bucket_start) DO UPDATE
                SET posts = excluded.posts, complaints = excluded.complaints
                """,
                (iso(lo), iso(hi)),
            )
            return cur.rowcount

    def refresh_buckets_at(self, times: Iterable[datetime], bucket: timedelta) -> int:
        """Recount (see refresh_buckets) the buckets holding ``times``, each run of consecutive buckets as one window.

        A classify batch's posts may lie days apart: a new feed's first poll lists weeks of items, a source back
        from an outage delivers a late post among new ones. One window from the oldest to the newest recounted
        every bucket between, of every service, under the write lock that collect and the reports wait on: at 2.5 M
        posts of 300 services, a new feed's 100 posts of the last three weeks held it 15 s (0.2 s now), past the 10 s
        the service's other jobs wait for it.
        """
        runs: list[tuple[datetime, datetime]] = []
        for start in sorted({floor_time(t, bucket) for t in times}):
            if runs and start - runs[-1][1] <= bucket:
                runs[-1] = (runs[-1][0], start)
            else:
                runs.append((start, start))
        with self.database.transaction():
            return sum(self.refresh_buckets(lo, hi, bucket) for lo, hi in runs)

    def bucket_minutes(self) -> int | None:
        """The bucket width (minutes) of this store's buckets and detector states: the one the detector recorded;
        for a store from before it did, the step between the last buckets a detector scored; None before any."""
        row = self.database.one("SELECT value FROM store_state WHERE key = ?", (BUCKET_MINUTES,))
        if row is not None:
            return int(row["value"])
        # The detector scores every bucket it steps, empty ones too: its last scores are one width apart.
        rows = self.database.rows(
            "SELECT b.bucket_start FROM buckets b JOIN (SELECT service, last_bucket FROM detector_state "
            "ORDER BY updated_at DESC LIMIT 1) d ON b.service = d.service AND b.bucket_start <= d.last_bucket "
            "WHERE b.score IS NOT NULL ORDER BY b.bucket_start DESC LIMIT 50")
        starts = [parse_iso(r["bucket_start"]) for r in rows]
        steps = [int((a - b).total_seconds()) // 60 for a, b in pairwise(starts)]
        return min(steps) if steps else None

    def set_bucket_minutes(self, minutes: int) -> None:
        with self.database.transaction() as conn:
            conn.execute("INSERT INTO store_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                         "SET value = excluded.value", (BUCKET_MINUTES, str(minutes)))

    def rebucket(self, bucket: timedelta, old: timedelta) -> datetime | None:
        """Count the posts again in buckets of width ``bucket``, after they were counted in buckets of ``old``.

        Returns the start of the first bucket recounted (None: no post to count). Every bucket row from there on
        goes, scores included, and the posts are counted again. The rows before it keep their width and counts:
        those a prune made final (see first_open_bucket), and those before the first post left (a prune by a
        miner that did not record its cutoff): their posts are gone, and their counts are the only record of
        them. Recounting starts on a boundary of both grids at or after them, so that no old row reaches into a
        new one and no post is counted twice (the old rows between keep counting their posts).

        It goes REBUCKET_SPAN at a time, oldest first, each span in a transaction of its own with a pause after it,
        as a prune does: in one transaction, 30 days of 300 services held the write lock for 33 s, past the 10 s
        that collect and the reports wait for it (2.6 s at most in these; the whole recount takes longer). A prune
        beside it may make more buckets final meanwhile: a span starts after them. Interrupted, it is done again
        from the start (the width is recorded after it), which deletes and counts again the spans it had done.
        """
        both = timedelta(seconds=math.lcm(int(bucket.total_seconds()), int(old.total_seconds())))
        span = self.database.one("SELECT min(created_at) AS first, max(created_at) AS last FROM posts")
        if not span or not span["first"]:
            return None
        start = _grid_at_or_after(self.first_open_bucket(old) or floor_time(parse_iso(span["first"]), old), both)
        last = parse_iso(span["last"])
        step = both * max(1, math.ceil(REBUCKET_SPAN / both))
        lo = start
        while True:
            began = time.monotonic()
            hi, final = lo + step, lo + step > last
            with self.database.transaction() as conn:
                # Under the write lock: a prune in another job records its cutoff with its deletions.
                kept = self.first_open_bucket(old)
                at = lo if kept is None else max(lo, _grid_at_or_after(kept, both))
                if final:
                    conn.execute("DELETE FROM buckets WHERE bucket_start >= ?", (iso(at),))
                    self.refresh_buckets(at, last, bucket)
                elif at < hi:
                    conn.execute("DELETE FROM buckets WHERE bucket_start >= ? AND bucket_start < ?", (iso(at), iso(hi)))
                    self.refresh_buckets(at, hi - bucket, bucket)
            if final:
                return start
            lo = hi
            if not self.database.conn.in_transaction:  # a waiting writer gets its turn (SQLite has no queue)
                time.sleep(time.monotonic() - began)

    def forget_detectors(self, keep: Sequence[str]) -> int:
        """Delete the detector state of every service not in ``keep``. Returns how many went."""
        with self.database.transaction() as conn:
            return conn.execute(f"DELETE FROM detector_state WHERE service NOT {IN_LIST}", (json_list(keep),)).rowcount

    def bucket_counts(self, service: str, start: datetime, end: datetime) -> dict[str, tuple[int, int]]:
        """{bucket_start: (posts, complaints)} for buckets in [start, end)."""
        rows = self.database.rows(
            "SELECT bucket_start, posts, complaints FROM buckets WHERE service = ? AND bucket_start >= ? "
            "AND bucket_start < ? ORDER BY bucket_start",
            (service, iso(start), iso(end)),
        )
        return {r["bucket_start"]: (r["posts"], r["complaints"]) for r in rows}

    def detector_state(self, service: str) -> SavedDetector | None:
        row = self.database.one(
            "SELECT last_bucket, state, draft, incident_id FROM detector_state WHERE service = ?", (service,))
        if row is None:
            return None
        return SavedDetector(parse_iso(row["last_bucket"]), row["state"], row["draft"], row["incident_id"])

    def detector_clock(self) -> datetime | None:
        """The latest ``now`` at which any service's detector ran: how far this store's clock has got."""
        row = self.database.one("SELECT max(updated_at) AS t FROM detector_state")
        return parse_iso(row["t"]) if row and row["t"] else None

    def save_detector_step(
        self,
        service: str,
        last_bucket: datetime,
        state_json: str,
        scores: Sequence[tuple[datetime, float, float, float, float | None]],
        now: datetime,
        *,
        draft: str | None = None,
        incident_id: int | None = None,
    ) -> None:
        """Persist detector state, the incident draft and the bucket scores they produced, in one transaction.
        Scores are (bucket start, z, baseline, upper, threshold), as BucketScore has them."""
        with self.database.transaction() as conn:
            conn.executemany(
                "INSERT INTO buckets (service, bucket_start, score, baseline, upper, threshold) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (service, bucket_start) DO UPDATE SET score = excluded.score, "
                "baseline = excluded.baseline, upper = excluded.upper, threshold = excluded.threshold",
                [(service, iso(b), s, base, up, at) for b, s, base, up, at in scores],
            )
            conn.execute(
                "INSERT INTO detector_state (service, last_bucket, state, draft, incident_id, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (service) DO UPDATE SET last_bucket = excluded.last_bucket, "
                "state = excluded.state, draft = excluded.draft, incident_id = excluded.incident_id, "
                "updated_at = excluded.updated_at",
                (service, iso(last_bucket), state_json, draft, incident_id, iso(now)),
            )

    def series(self, service: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Stored buckets (counts, scores, baseline, upper and threshold) for charts and status."""
        return self.database.rows(
            "SELECT bucket_start, posts, complaints, score, baseline, upper, threshold FROM buckets "
            "WHERE service = ? AND bucket_start >= ? AND bucket_start < ? ORDER BY bucket_start",
            (service, iso(start), iso(end)),
        )

    def last_scored(self, service: str) -> dict[str, Any] | None:
        """The detector's last bucket of ``service`` (detector_state's), with its ``score`` and ``baseline``; None
        before the detector scored any, or when that bucket holds no score (relearnt at a new width without them).

        What the detector knows, whatever the clock says: the read API, its status board and `miner status` show
        this one. Read on the clock instead (the latest bucket ended by ``now``), they disagreed while the clock was
        behind the store: one showed an older bucket's score, or the last one's through a fallback, the other none."""
        return self.database.one(
            "SELECT b.bucket_start, b.score, b.baseline FROM detector_state d JOIN buckets b "
            "ON b.service = d.service AND b.bucket_start = d.last_bucket WHERE d.service = ? AND b.score IS NOT NULL",
            (service,))

    def bucket_counts_of(self, services: Sequence[str], start: datetime, end: datetime
                         ) -> dict[str, dict[str, tuple[int, int]]]:
        """``bucket_counts`` of each of ``services`` at once, the buckets that counted a post only: {service:
        {bucket_start: (posts, complaints)}}, each service a key (none counted: {})."""
        # A range of the primary key per service: not the window's rows of every service (buckets_bucket_start),
        # those of services no longer configured too. The names as one JSON array: no cap on how many, as there is on
        # a statement's parameters. The detector stores every bucket, empty ones too: most of the rows read (two in
        # three over 300 services) count nothing, and making them Python rows was most of the read's time.
        rows = self.database.rows(
            "SELECT service, bucket_start, posts, complaints FROM buckets "
            "WHERE service IN (SELECT value FROM json_each(?)) AND bucket_start >= ? AND bucket_start < ? "
            "AND (posts > 0 OR complaints > 0)",
            (json.dumps(list(services)), iso(start), iso(end)),
        )
        found: dict[str, dict[str, tuple[int, int]]] = {name: {} for name in services}
        for row in rows:
            found[row["service"]][row["bucket_start"]] = (row["posts"], row["complaints"])
        return found

    def last_counted_post_at(self, service: str, bucket: timedelta) -> str | None:
        """When the newest post about ``service`` that its buckets count was created; None for none.

        Looked for in its newest bucket with posts only: the service's posts of all time (or all posts, newest
        first, for a quiet service) would be a read that grows with the store. The detector stores every bucket,
        empty ones too, so that bucket is looked for only where a stored post can be: not at all for a service no
        stored post names (that read each of its bucket rows kept, store.bucket_retention_days: 14 ms at 90 days of
        5-minute buckets), and from the oldest post stored on (the retention) for one named weeks ago. The buckets
        with posts are indexed apart (buckets_with_posts): on the primary key, the empty buckets since the service's
        last post were read too, 2.5-5.6 ms per quiet service at 90 days of 5-minute buckets."""
        # Not min() with the EXISTS as its WHERE: SQLite then walks every post's index entry looking for one row
        # that satisfies it, when none does.
        first = self.database.one("SELECT CASE WHEN EXISTS (SELECT 1 FROM post_services WHERE service = ?) "
                                  "THEN (SELECT min(created_at) FROM posts) END AS t", (service,))
        if first is None or first["t"] is None:
            return None
        row = self.database.one("SELECT bucket_start FROM buckets WHERE service = ? AND bucket_start >= ? "
                                "AND posts > 0 ORDER BY bucket_start DESC LIMIT 1",
                                (service, iso(floor_time(parse_iso(first["t"]), bucket))))
        if row is None:
            return None
        start = parse_iso(row["bucket_start"])
        # CROSS JOIN: read the bucket's posts, not all the service's (see sample_posts).
        found = self.database.one(
            f"SELECT max(p.created_at) AS t FROM posts p CROSS JOIN post_services ps ON ps.post_id = p.id "
            f"WHERE ps.service = ? AND p.created_at >= ? AND p.created_at < ? AND {_COUNTED}",
            (service, iso(start), iso(start + bucket)))
        return found["t"] if found else None

    def sample_posts(self, service: str, start: datetime, end: datetime, limit: int = 5,
                     held: Sequence[int] = ()) -> list[dict[str, Any]]:
        """The highest-scoring complaints about ``service`` in [start, end), the highest-scoring post of each text
        only, so that copies cannot take the place of other texts: examples for the detector's incidents and the
        alerts. ``held``: posts chosen already (an incident's samples from its earlier buckets), whose texts are left
        out."""
        # CROSS JOIN makes SQLite start from the posts in the window (posts_created_at) and check each one's
        # service. Left to itself it starts from the service's rows in post_services, that is from every post
        # of the service ever stored, to keep the few of one bucket: a read that grew with the store's history,
        # run twice per bucket while an incident is open and for every incident an alert or digest shows.
        # A storm of retweets or copied complaints scoring alike filled every row read with one text. The post id
        # settles ties (alike in score and time), so that sample_posts_of, reading many windows at once, picks the same.
        return self.database.rows(
            f"""
            SELECT id, text, url, source, created_at, score, symptom FROM (
                SELECT p.id, p.text, p.url, p.source, p.created_at, c.score, c.symptom,
                       row_number() OVER (PARTITION BY p.text
                                          ORDER BY c.score DESC, p.created_at DESC, p.id DESC) AS nth
                FROM posts p CROSS JOIN post_services ps ON ps.post_id = p.id
                JOIN classifications c ON c.post_id = p.id AND {_LATEST}
                WHERE ps.service = ? AND c.outage = 1 AND p.created_at >= ? AND p.created_at < ? AND {_COUNTED}
                AND p.text NOT IN (SELECT text FROM posts WHERE id {IN_LIST})
            ) WHERE nth = 1 ORDER BY score DESC, created_at DESC, id DESC LIMIT ?
            """,
            (service, iso(start), iso(end), json_list(held), limit),
        )

    def totals(self) -> dict[str, int]:
        """Posts stored, posts matched to a service, and posts whose latest verdict is an outage report."""
        row = self.database.one(
            f"SELECT (SELECT count(*) FROM posts) AS posts, "
            f"(SELECT count(DISTINCT post_id) FROM post_services) AS matched, "
            f"(SELECT count(*) FROM posts p JOIN classifications c ON c.post_id = p.id AND {_LATEST} "
            f"WHERE c.outage = 1) AS complaints"
        )
        return {k: int(v or 0) for k, v in (row or {}).items()}

    def service_totals(self) -> list[dict[str, Any]]:
        """Per service: posts matched, and complaints as its buckets count them (refresh_buckets: an author once per
        bucket, a post without one alone, an undated backlog nowhere), busiest first."""
        return self.database.rows(
            "SELECT ps.service, count(*) AS posts, coalesce((SELECT sum(b.complaints) FROM buckets b "
            "WHERE b.service = ps.service), 0) AS complaints FROM post_services ps GROUP BY ps.service "
            "ORDER BY posts DESC"
        )

    def posts_by_id(self, ids: Sequence[int]) -> list[dict[str, Any]]:
        if not ids:
            return []
        rows = self.database.rows(f"SELECT id, source, text, url, created_at FROM posts WHERE id {IN_LIST}",
                                  (json_list(ids),))
        order = {pid: i for i, pid in enumerate(ids)}
        return sorted(rows, key=lambda r: order[r["id"]])

    def symptom_counts(self, service: str, start: datetime, end: datetime,
                       bucket: timedelta | None = None) -> dict[str, int]:
        """Complaints about ``service`` in [start, end) per symptom, counted as a bucket's ``complaints`` are: each
        author once per bucket (of width ``bucket``; None: the window is one), under the symptom of most of their
        posts in it, the latest of two as frequent. Counted once per symptom, one person reporting login and then
        messaging made "login 15, messaging 15" of 15 complaints; counting posts put one account's fifty (or a
        second tap on the report button) beside one complaint."""
        seconds = int(bucket.total_seconds()) if bucket else 0
        slot = f"CAST(strftime('%s', p.created_at) AS INTEGER) / {seconds}" if seconds else "0"
        # CROSS JOIN: read the window's posts, not all the service's (see sample_posts).
        rows = self.database.rows(
            f"""
            SELECT {slot} AS slot, {COMPLAINER} AS who, coalesce(c.symptom, 'general') AS symptom,
                   count(*) AS n, max(p.created_at) AS last, max(p.id) AS last_id
            FROM posts p CROSS JOIN post_services ps ON ps.post_id = p.id
            JOIN classifications c ON c.post_id = p.id AND {_LATEST}
            WHERE ps.service = ? AND c.outage = 1 AND p.created_at >= ? AND p.created_at < ? AND {_COUNTED}
            GROUP BY 1, 2, 3
            """,
            (service, iso(start), iso(end)),
        )
        chosen: dict[tuple[Any, Any], dict[str, Any]] = {}
        for r in rows:
            key = (r["slot"], r["who"])
            best = chosen.get(key)
            if best is None or (r["n"], r["last"], r["last_id"]) > (best["n"], best["last"], best["last_id"]):
                chosen[key] = r
        counts = Counter(r["symptom"] for r in chosen.values())
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _grid_at_or_after(at: datetime, width: timedelta) -> datetime:
    start = floor_time(at, width)
    return start if start >= at else start + width

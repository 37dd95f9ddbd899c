"""The store on real SQLite files: dedupe, atomic polls, classifications, buckets, incidents, errors."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from miner.config import SourceConfig
from miner.errors import StoreError
from miner.records import Decision, FetchResult, OfficialIncident, Post, Prediction, SourceState
from miner.store import QueryRefused, Store, run_readonly
from miner.store.db import Database
from miner.store.migrations import MIGRATIONS, apply_migrations
from miner.store.sources import current_warning
from miner.timeutil import iso

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FIVE = timedelta(minutes=5)


def post(ext: str, text: str, at: datetime = T0, services: tuple[str, ...] = ("WhatsApp",),
         author: str | None = None) -> Post:
    return Post(source="feed", external_id=ext, text=text, created_at=at, services=services,
                author_hash=author or f"author-of-{ext}")


def test_migrations_are_recorded_and_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    Store.open(path).close()
    s = Store.open(path)
    ids = [r["id"] for r in s.database.rows("SELECT id FROM schema_migrations")]
    assert ids and len(ids) == len(set(ids))
    assert s.database.one("PRAGMA journal_mode")["journal_mode"] == "wal"  # type: ignore[index]
    s.close()


def test_store_from_a_newer_miner_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    Store.open(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES ('0099_from_the_future', '2030-01-01T00:00:00Z')")
    before = path.read_bytes()
    with pytest.raises(StoreError, match=r"s.sqlite was written by a newer version of miner "
                                         r"\(migration 0099_from_the_future\); upgrade miner"):
        Store.open(path)
    assert path.read_bytes() == before


@pytest.mark.parametrize("schema", [
    "CREATE TABLE moz_places (id INTEGER PRIMARY KEY, url TEXT); CREATE TABLE posts (id INTEGER PRIMARY KEY)",
    "CREATE TABLE schema_migrations (version TEXT PRIMARY KEY)",  # Rails' name, with its own columns
])
@pytest.mark.parametrize("readonly", [False, True])
def test_a_database_of_another_program_is_refused_untouched(tmp_path: Path, schema: str, readonly: bool) -> None:
    # A --db naming some other SQLite file: it was switched to WAL and given miner's tables beside its own (or
    # failed half-way with "table posts already exists"), and the commands that only look called it an older
    # miner's store and told the user to upgrade it so.
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(schema)
    conn.close()
    before = path.read_bytes()
    tables = "moz_places, posts" if "moz" in schema else "schema_migrations"
    with pytest.raises(StoreError, match=re.escape(
            f"store {path} is a SQLite database of something else, not a miner store (its tables: {tables}); it was "
            "left as it is")):
        Store.open(path, readonly=readonly)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]


@pytest.mark.parametrize("readonly", [False, True])
def test_an_sqlite_too_old_for_the_store_is_refused_before_the_store_is_touched(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, readonly: bool) -> None:
    # Python links the system's SQLite on most Linux distributions: one older than the store's SQL is tested on
    # would fail where that SQL first ran, perhaps hours after the start. tools/old_sqlite.py runs the suite on the
    # oldest supported one; here its version is only what the sqlite3 module reports.
    from miner.store import db

    path = tmp_path / "miner.sqlite"
    Store.open(path).close()
    before = path.read_bytes()
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 25, 3))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.25.3")
    db._sqlite_problem.cache_clear()
    try:
        with pytest.raises(StoreError, match=r"miner needs SQLite 3\.26\.0 or newer with its JSON functions; this "
                                             r"Python's sqlite3 module uses SQLite 3\.25\.3: run miner with a "
                                             r"Python linked to a newer SQLite, such as one `uv python install` "
                                             r"fetches, which carries its own$"):
            Store.open(path, readonly=readonly)
        with pytest.raises(StoreError, match=r"SQLite 3\.25\.3"):
            Store.open(tmp_path / "new.sqlite")
    finally:
        db._sqlite_problem.cache_clear()
    assert path.read_bytes() == before and not (tmp_path / "new.sqlite").exists()


def test_an_empty_file_is_a_new_store_not_an_old_one(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite"
    path.touch()
    with pytest.raises(StoreError, match=f"store {path} is empty: no miner store was written to it yet"):
        Store.open(path, readonly=True)  # it said "made by an older version of miner and needs upgrading"
    Store.open(path).close()  # a command that writes starts a store in it
    Store.open(path, readonly=True).close()


def test_stores_opened_at_once_migrate_once(tmp_path: Path) -> None:
    # Each process read the applied list before taking the write lock, so all but one failed with
    # "table ... already exists" when several opened a new store together.
    path = tmp_path / "s.sqlite"
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("PRAGMA journal_mode = WAL")  # as every store miner has written
        apply_migrations(conn, [MIGRATIONS[0]])
    # All open together, once imported: each says it is ready, then waits for the word (a start 3 s ahead came
    # before the imports had ended on a loaded CI runner, and the stores then opened one after the other).
    gate = tmp_path / "gate"
    gate.mkdir()
    code = ("import pathlib, sys, time; from miner.store import Store; gate = pathlib.Path(sys.argv[2]); "
            "(gate / sys.argv[3]).touch()\n"
            "while not (gate / 'go').exists(): time.sleep(0.001)\n"
            "Store.open(sys.argv[1]).close()")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), str(gate), f"ready{i}"], stderr=subprocess.PIPE)
             for i in range(8)]
    deadline = time.monotonic() + 120
    try:
        while len(list(gate.iterdir())) < 8 and time.monotonic() < deadline and all(p.poll() is None for p in procs):
            time.sleep(0.01)
        ready = len(list(gate.iterdir()))
    finally:
        (gate / "go").touch()  # even on a failure: no process is left waiting for it
    errors = [p.communicate()[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, errors
    # All were waiting for the word: fewer, and the stores opened one after the other, leaving the race untried.
    assert ready == 8, ready
    with sqlite3.connect(path) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM schema_migrations")]
    assert ids == [m.id for m in MIGRATIONS]


def test_read_only_open_takes_the_file_name_literally(tmp_path: Path) -> None:
    # The name went into a file: URI as is, so "%41" opened another file ("paA.sqlite") and "?" failed.
    for name in ("pa%41.sqlite", "what?.sqlite", "a#b.sqlite"):
        path = tmp_path / name
        s = Store.open(path)
        s.sync_sources([SourceConfig(name=name, type="rss", url="https://example.org/feed")])
        s.close()
        ro = Database.connect(path, readonly=True)
        assert [r["name"] for r in ro.rows("SELECT name FROM sources")] == [name]
        ro.close()


def test_save_fetch_dedupes_and_advances_state_with_posts(store: Store) -> None:
    store.sync_sources([SourceConfig(name="feed", type="rss", url="https://example.org/feed")])
    result = FetchResult(posts=[post("1", "whatsapp down"), post("2", "all fine", services=())],
                         state=SourceState(etag='"v1"', cursor="2"))
    first = store.save_fetch("feed", result, T0, T0 + FIVE)
    again = store.save_fetch("feed", result, T0 + FIVE, T0 + 2 * FIVE)
    assert (first.posts_new, first.posts_seen) == (2, 0)
    assert (again.posts_new, again.posts_seen) == (0, 2)
    assert store.database.one("SELECT count(*) AS n FROM posts")["n"] == 2  # type: ignore[index]
    assert store.source_state("feed") == SourceState(etag='"v1"', cursor="2")
    services = store.database.rows("SELECT service FROM post_services")
    assert services == [{"service": "WhatsApp"}]


def test_failed_poll_keeps_cursor_and_counts_failures(store: Store) -> None:
    store.sync_sources([SourceConfig(name="feed", type="rss", url="https://example.org/feed")])
    store.save_fetch("feed", FetchResult(state=SourceState(cursor="7")), T0, T0 + FIVE)
    assert store.record_poll_failure("feed", "HTTP 503", T0 + FIVE, T0 + 4 * FIVE) == 1
    assert store.record_poll_failure("feed", "HTTP 503", T0 + 4 * FIVE, T0 + 9 * FIVE) == 2
    row = store.source_row("feed")
    assert row is not None and row["last_error"] == "HTTP 503" and row["cursor"] == "7"
    assert store.due_sources(["feed"], T0 + 5 * FIVE) == []
    assert store.due_sources(["feed", "new"], T0 + 9 * FIVE) == ["new", "feed"]  # never polled first
    assert [r["name"] for r in store.failing_sources(["feed", "other"])] == ["feed"]
    assert [r["name"] for r in store.failing_sources(None)] == ["feed"]
    assert store.failing_sources(["other"]) == [] and store.failing_sources([]) == []  # "feed" left the config


def test_changed_type_or_url_resets_poll_state_but_keeps_posts(store: Store) -> None:
    hn = SourceConfig(name="forum", type="hackernews", url="https://hn.example.org")
    assert store.sync_sources([hn]) == []
    store.save_fetch("forum", FetchResult(posts=[post("1", "whatsapp down")],
                                          state=SourceState(etag='"e"', last_modified="Sun, 01 Mar 2026", cursor="99")),
                     T0, T0 + FIVE)
    store.record_poll_failure("forum", "HTTP 503", T0 + FIVE, T0 + 9 * FIVE)
    assert store.sync_sources([hn]) == []  # unchanged config: state kept
    assert store.source_state("forum") == SourceState(etag='"e"', last_modified="Sun, 01 Mar 2026", cursor="99")

    assert store.sync_sources([SourceConfig(name="forum", type="discourse", url="https://hn.example.org")]) == ["forum"]
    assert store.source_state("forum") == SourceState()
    row = store.source_row("forum")
    assert row is not None
    assert (row["type"], row["consecutive_failures"], row["next_poll_at"], row["last_error"]) == ("discourse", 0, None,
                                                                                                    None)
    assert row["posts_stored"] == 1 and store.due_sources(["forum"], T0 + 2 * FIVE) == ["forum"]
    assert store.database.one("SELECT count(*) AS n FROM posts")["n"] == 1  # type: ignore[index]

    store.save_fetch("forum", FetchResult(state=SourceState(cursor="5")), T0, T0 + FIVE)
    moved = SourceConfig(name="forum", type="discourse", url="https://forum.example.org")
    assert store.sync_sources([moved]) == ["forum"]
    assert store.source_state("forum") == SourceState()


def test_a_failing_write_stores_nothing(store: Store) -> None:
    bad = Post(source="feed", external_id="x", text=None, created_at=T0)  # type: ignore[arg-type]
    with pytest.raises(sqlite3.IntegrityError):
        store.insert_posts([post("ok", "first"), bad], T0)
    assert store.database.one("SELECT count(*) AS n FROM posts")["n"] == 0  # type: ignore[index]


def test_official_incidents_upsert_by_update_time(store: Store) -> None:
    inc = OfficialIncident(source="status:github", external_id="abc", service="GitHub", title="Actions degraded",
                           status="investigating", started_at=T0, updated_at=T0)
    r1 = store.save_fetch("status:github", FetchResult(incidents=[inc]), T0, T0)
    later = OfficialIncident(**{**inc.__dict__, "status": "resolved", "updated_at": T0 + FIVE,
                                "resolved_at": T0 + FIVE})
    r2 = store.save_fetch("status:github", FetchResult(incidents=[later]), T0, T0)
    r3 = store.save_fetch("status:github", FetchResult(incidents=[inc]), T0, T0)  # stale: ignored
    assert (r1.incidents_new, r2.incidents_updated, r3.incidents_updated) == (1, 1, 0)
    rows = store.official_incidents("GitHub", T0 - FIVE)
    assert [r["status"] for r in rows] == ["resolved"]


def test_classifications_and_bucket_recount(store: Store) -> None:
    store.insert_posts([post("1", "down", T0), post("2", "down again", T0 + timedelta(minutes=2)),
                        post("3", "love it", T0 + timedelta(minutes=7))], T0)
    todo = store.posts_to_classify(10)
    verdicts = [(p.id, Prediction(0.9, True, "general") if "down" in p.text else Prediction(0.1, False, None))
                for p in todo]
    touched = store.save_classifications(verdicts, "v1", T0)
    assert touched == ["2026-03-01T12:00:00+00:00", "2026-03-01T12:02:00+00:00", "2026-03-01T12:07:00+00:00"]
    store.refresh_buckets(T0, T0 + timedelta(minutes=7), FIVE)
    store.refresh_buckets(T0, T0 + timedelta(minutes=7), FIVE)  # a recount, not an increment
    assert store.bucket_counts("WhatsApp", T0, T0 + 2 * FIVE) == {
        "2026-03-01T12:00:00+00:00": (2, 2), "2026-03-01T12:05:00+00:00": (1, 0)}
    assert store.posts_to_classify(10) == []
    # A newer model's verdict supersedes the old one when buckets are recounted.
    store.save_classifications([(todo[0].id, Prediction(0.2, False, None))], "v2", T0 + FIVE, Decision(0.5, True))
    store.refresh_buckets(T0, T0, FIVE)
    assert store.bucket_counts("WhatsApp", T0, T0 + FIVE) == {"2026-03-01T12:00:00+00:00": (2, 1)}
    assert [p.id for p in store.posts_since(T0, "v2", Decision(0.5, True), 0, 10)] == [todo[1].id, todo[2].id]


def test_lists_longer_than_999_values_are_bound_on_an_sqlite_that_allows_only_999_variables(store: Store) -> None:
    # SQLite before 3.32 (Ubuntu 20.04's, RHEL 8's) refuses a statement with more than 999 bound variables, and the
    # conftest holds every connection here to that: a mark per value failed ("too many SQL variables") once a
    # classify batch, a dedupe check, a listing of 1,000 incidents or 1,000 sources held that many.
    assert store.database.conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) == 999
    n = 1200
    store.insert_posts([post(f"p{i}", "down", T0 + timedelta(seconds=i % 2)) for i in range(n)], T0)
    assert store.stored_ids(["feed", "other"], [f"p{i}" for i in range(n + 5)]) == {f"p{i}" for i in range(n)}
    todo = store.posts_to_classify(n)
    assert len(todo) == n
    assert store.save_classifications([(p.id, Prediction(0.9, True, None)) for p in todo], "v1", T0) == [
        iso(T0), iso(T0 + timedelta(seconds=1))]
    assert [r["id"] for r in store.posts_by_id([p.id for p in reversed(todo)])] == [p.id for p in reversed(todo)]
    many = list(range(1, n + 1))
    assert store.alert_incident_states(many) == {}
    assert store.reopenings_of(many, T0) == {}
    assert store.ended_unseen(many) == ({}, {})
    assert store.official_incidents_by_id(many) == {}
    names = [f"source-{i}" for i in range(n)]
    assert store.due_sources(names, T0) == names  # none polled yet
    assert store.failing_sources(names) == []
    assert store.forget_detectors(names) == 0


def test_a_stored_verdict_reads_outage_exactly_when_its_score_is_at_least_the_threshold(store: Store) -> None:
    # The score was stored rounded to 6 decimals and the outage decided on the unrounded one: a post the model scored
    # 0.3699996 at threshold 0.37 was stored as score 0.37 and no outage, and 0.4999996 at 0.5 the same.
    threshold = {"under": 0.37, "over": 0.37, "half": 0.5, "at": 0.37}
    scores = {"under": 0.3699996, "over": 0.37000004, "half": 0.4999996, "at": 0.37}
    store.insert_posts([post(name, name, T0) for name in scores], T0)
    ids = {p.id: p.text for p in store.posts_to_classify(10)}
    store.save_classifications([(pid, Prediction(scores[name], scores[name] >= threshold[name], None))
                                for pid, name in ids.items()], "v1", T0)
    rows = store.database.rows("SELECT post_id, outage, score FROM classifications")
    assert {ids[r["post_id"]]: (r["outage"], r["score"] >= threshold[ids[r["post_id"]]]) for r in rows} == {
        "under": (0, False), "over": (1, True), "half": (0, False), "at": (1, True)}
    assert {ids[r["post_id"]]: r["score"] for r in rows} == scores  # the model's score as it gave it


def test_one_author_complaining_many_times_in_a_bucket_is_one_complaint(store: Store) -> None:
    # A bot or one upset account posting 50 times must not open an incident alone; authorless posts count each.
    spam = [post(f"s{i}", "whatsapp down", T0 + timedelta(seconds=5 * i), author="bot") for i in range(50)]
    anonymous = [Post("replay", f"r{i}", "whatsapp down", T0, services=("WhatsApp",)) for i in range(3)]
    store.insert_posts([*spam, *anonymous, post("x", "whatsapp down")], T0)
    store.save_classifications([(p.id, Prediction(0.9, True, None)) for p in store.posts_to_classify(100)], "v1", T0)
    store.refresh_buckets(T0, T0, FIVE)
    assert store.bucket_counts("WhatsApp", T0, T0 + FIVE) == {"2026-03-01T12:00:00+00:00": (54, 5)}


def test_a_recount_leaves_the_buckets_a_prune_has_cut_into_alone(store: Store) -> None:
    # Posts in four 5-minute buckets of two services; the prune cuts into the third (12:10-12:15).
    times = [T0 + timedelta(minutes=m) for m in (0, 1, 6, 10, 11, 13, 17)]
    store.insert_posts([post(f"w{n}", "down", at) for n, at in enumerate(times)]
                       + [post(f"s{n}", "down", at, services=("Signal",)) for n, at in enumerate(times)], T0)
    verdicts = [(p.id, Prediction(0.9, True, "general")) for p in store.posts_to_classify(100)]
    store.save_classifications(verdicts, "v1", T0)
    store.refresh_buckets(T0, times[-1], FIVE)
    kept = {s: store.bucket_counts(s, T0, T0 + 3 * FIVE) for s in ("WhatsApp", "Signal")}
    assert kept["WhatsApp"] == {"2026-03-01T12:00:00+00:00": (2, 2), "2026-03-01T12:05:00+00:00": (1, 1),
                                "2026-03-01T12:10:00+00:00": (3, 3)}
    cutoff = T0 + timedelta(minutes=12)
    assert store.prune_posts(cutoff) == 2 * 5
    assert store.prune_posts(T0 + timedelta(minutes=3)) == 0  # an earlier cutoff does not move it back
    # A post stored again after the prune, and one after the cutoff, then a recount across the cutoff.
    store.insert_posts([post("w0-again", "down", times[0]), post("late", "down", T0 + timedelta(minutes=16))], T0)
    store.save_classifications([(p.id, Prediction(0.9, True, None)) for p in store.posts_to_classify(100)], "v1", T0)
    store.refresh_buckets(T0, T0 + timedelta(minutes=16), FIVE)
    for service in ("WhatsApp", "Signal"):
        assert store.bucket_counts(service, T0, T0 + 3 * FIVE) == kept[service]  # the partly pruned one too
    assert store.bucket_counts("WhatsApp", T0 + 3 * FIVE, T0 + 4 * FIVE) == {"2026-03-01T12:15:00+00:00": (2, 2)}
    assert store.bucket_counts("Signal", T0 + 3 * FIVE, T0 + 4 * FIVE) == {"2026-03-01T12:15:00+00:00": (1, 1)}


def test_a_bucket_prune_deletes_the_old_final_rows_only(store: Store) -> None:
    # Buckets were kept for good, empty ones included (the detector scores every bucket): 5 GB a year at 300
    # services. Posts every 10 minutes for 3 hours of two services, each bucket scored.
    times = [T0 + timedelta(minutes=m) for m in range(0, 180, 10)]
    store.insert_posts([post(f"w{n}", "down", at, services=("WhatsApp", "Signal")) for n, at in enumerate(times)], T0)
    store.refresh_buckets(T0, times[-1], FIVE)
    for service in ("WhatsApp", "Signal"):
        scores = [(T0 + i * FIVE, 0.5, 0.2, 4.0, 5.0) for i in range(36)]
        store.save_detector_step(service, T0 + 35 * FIVE, "{}", scores, T0 + 36 * FIVE)
    count = "SELECT count(*) AS n, min(bucket_start) AS first FROM buckets"
    assert store.database.one(count) == {"n": 72, "first": iso(T0)}
    # No prune of posts yet: every row may still be recounted from its posts, and stays.
    assert store.prune_buckets(T0 + timedelta(hours=2)) == 0
    assert store.prune_posts(T0 + timedelta(hours=1)) == 6  # cutoff 12:50:01, the newest post deleted + 1 s
    # Rows before the bucket cutoff and the posts' cutoff go, a few at a time; the rows after either stay.
    assert store.prune_buckets(T0 + timedelta(minutes=30), batch=4) == 2 * 6
    assert store.database.one(count) == {"n": 60, "first": iso(T0 + timedelta(minutes=30))}
    # Only those before the posts' cutoff: the bucket holding it (12:50) is final too, the next one is not.
    assert store.prune_buckets(T0 + timedelta(hours=2), batch=4) == 2 * 5
    assert store.database.one(count) == {"n": 50, "first": iso(T0 + timedelta(minutes=55))}
    # A recount over the rows deleted brings none back (they are final), and counts the rest as before.
    store.refresh_buckets(T0, times[-1], FIVE)
    assert store.database.one(count) == {"n": 50, "first": iso(T0 + timedelta(minutes=55))}
    assert store.bucket_counts("Signal", T0, T0 + timedelta(minutes=65)) == {
        iso(T0 + timedelta(minutes=55)): (0, 0), iso(T0 + timedelta(minutes=60)): (1, 0)}


def _release_0_1_0_store(path: Path, posts: list[tuple[int, datetime]], buckets: list[tuple[datetime, int, int]],
                         open_samples: tuple[int, ...] = ()) -> None:
    """A store as miner 0.1.0 left it: its two migrations, WhatsApp posts and buckets, an open incident's samples."""
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        apply_migrations(conn, MIGRATIONS[:2])
        for pid, at in posts:
            conn.execute("INSERT INTO posts (id, source, external_id, text, created_at, fetched_at) "
                         "VALUES (?, 'feed', ?, 'down', ?, ?)", (pid, f"p{pid}", iso(at), iso(at)))
            conn.execute("INSERT INTO post_services VALUES (?, 'WhatsApp')", (pid,))
        conn.executemany("INSERT INTO buckets (service, bucket_start, posts, complaints) VALUES ('WhatsApp', ?, ?, ?)",
                         [(iso(at), n, c) for at, n, c in buckets])
        conn.execute("INSERT INTO incidents (service, status, opened_at, updated_at, sample_post_ids) "
                     "VALUES ('WhatsApp', 'open', ?, ?, ?)", (iso(T0), iso(T0), json.dumps(list(open_samples))))


def test_a_store_pruned_by_a_miner_that_recorded_no_cutoff_keeps_its_pruned_counts(tmp_path: Path) -> None:
    # 0.1.0 pruned the posts before day 10 and kept their buckets, but recorded no cutoff: after the upgrade a feed
    # still listing a post of day 2 had it stored again, and its classify batch recounted day 2's bucket from that
    # one post, so 5 posts and 3 complaints became 1 and 1.
    path = tmp_path / "old.sqlite"
    day = timedelta(days=1)
    _release_0_1_0_store(path, [(1, T0 + day), (10, T0 + 10 * day), (11, T0 + 10 * day + FIVE)],
                         [(T0 + day, 1, 1), (T0 + 2 * day, 5, 3), (T0 + 10 * day, 2, 0)], open_samples=(1,))
    store = Store.open(path)
    # The earliest post left but the open incident's sample (which the prune kept) tells where the prune got to.
    assert store.pruned_before() == T0 + 10 * day
    store.insert_posts([post("again", "down", T0 + 2 * day)], T0 + 11 * day)
    store.save_classifications([(p.id, Prediction(0.9, True, None)) for p in store.posts_to_classify(10)], "v1",
                               T0 + 11 * day)
    store.refresh_buckets_at([T0 + 2 * day], FIVE)
    assert store.bucket_counts("WhatsApp", T0 + 2 * day, T0 + 2 * day + FIVE) == {iso(T0 + 2 * day): (5, 3)}
    store.close()


def test_a_store_whose_every_post_0_1_0_pruned_keeps_its_pruned_counts(tmp_path: Path) -> None:
    # 0.1.0's prune deleted every post (a month without one, `miner prune --days 1`) and recorded no cutoff, and the
    # upgrade took none from the earliest post left, there being none: a replay of one post of day 2 had it stored
    # and day 2's bucket recounted from it, 5 posts and 3 complaints becoming 1 and 1.
    day = timedelta(days=1)
    path = tmp_path / "old.sqlite"
    _release_0_1_0_store(path, [], [(T0 + day, 1, 1), (T0 + 2 * day, 5, 3), (T0 + 2 * day + FIVE, 0, 0)])
    store = Store.open(path)
    assert store.pruned_before() == T0 + 2 * day + FIVE  # the end of the last bucket that counted posts
    store.insert_posts([post("again", "down", T0 + 2 * day)], T0 + 11 * day)
    store.save_classifications([(p.id, Prediction(0.9, True, None)) for p in store.posts_to_classify(10)], "v1",
                               T0 + 11 * day)
    store.refresh_buckets_at([T0 + 2 * day], FIVE)
    assert store.bucket_counts("WhatsApp", T0 + 2 * day, T0 + 2 * day + FIVE) == {iso(T0 + 2 * day): (5, 3)}
    store.close()
    # No bucket after it (the detector never ran past it): a day after its start, the widest a bucket is.
    _release_0_1_0_store(tmp_path / "last.sqlite", [], [(T0, 0, 0), (T0 + day, 2, 1)])
    store = Store.open(tmp_path / "last.sqlite")
    assert store.pruned_before() == T0 + 2 * day
    store.close()
    # Buckets that never counted a post were never pruned.
    _release_0_1_0_store(tmp_path / "quiet.sqlite", [], [(T0, 0, 0), (T0 + day, 0, 0)])
    store = Store.open(tmp_path / "quiet.sqlite")
    assert store.pruned_before() is None
    store.close()


def test_a_store_never_pruned_gets_no_cutoff_from_the_upgrade(tmp_path: Path) -> None:
    # Every bucket's posts are still there: a new feed's backlog older than the first post is still stored.
    path = tmp_path / "old.sqlite"
    _release_0_1_0_store(path, [(1, T0), (2, T0 + timedelta(days=3))], [(T0, 1, 1), (T0 + timedelta(days=3), 1, 0)])
    store = Store.open(path)
    assert store.pruned_before() is None
    store.close()


def test_a_store_never_pruned_whose_every_post_is_an_open_sample_gets_no_cutoff(tmp_path: Path) -> None:
    # A young store whose posts are all the samples of its open incident has every post its buckets counted: it read
    # as one whose prune left none, and its buckets became final (a late post of their time was never counted).
    path = tmp_path / "old.sqlite"
    _release_0_1_0_store(path, [(1, T0), (2, T0 + FIVE)], [(T0, 1, 1), (T0 + FIVE, 1, 1)], open_samples=(1, 2))
    store = Store.open(path)
    assert store.pruned_before() is None
    store.close()
    # One that the prune left only the samples of: its buckets counted the posts it deleted.
    _release_0_1_0_store(tmp_path / "pruned.sqlite", [(2, T0 + FIVE)], [(T0, 4, 1), (T0 + FIVE, 1, 1)],
                         open_samples=(2,))
    store = Store.open(tmp_path / "pruned.sqlite")
    assert store.pruned_before() == T0 + FIVE + timedelta(days=1)  # no bucket after the last that counted
    store.close()


def test_an_open_incident_with_garbled_sample_ids_does_not_stop_the_upgrade(tmp_path: Path) -> None:
    # 0006 read every open incident's sample_post_ids as JSON: one row edited by hand stopped the upgrade, and the
    # store was called "not a SQLite database or corrupt" and to be restored from a backup.
    path = tmp_path / "old.sqlite"
    day = timedelta(days=1)
    _release_0_1_0_store(path, [(1, T0 + 10 * day)], [(T0, 3, 1), (T0 + 10 * day, 1, 1)])
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("UPDATE incidents SET sample_post_ids = '[1, 2'")
    conn.close()
    store = Store.open(path)
    assert store.pruned_before() == T0 + 10 * day
    store.close()


def test_a_null_among_an_open_incidents_sample_ids_changes_nothing_in_the_upgrade(tmp_path: Path) -> None:
    # "id NOT IN (1, NULL)" is never true: 0006 found no post left and backfilled no cutoff, and 0018 read the store
    # as one whose prune left none and put the cutoff a day past its last bucket, so every bucket became final.
    day = timedelta(days=1)
    for name, samples in (("plain", "[1]"), ("null", "[1, null]")):
        path = tmp_path / f"{name}.sqlite"
        _release_0_1_0_store(path, [(1, T0 + day), (10, T0 + 10 * day), (11, T0 + 10 * day + FIVE)],
                             [(T0 + day, 1, 1), (T0 + 2 * day, 5, 3), (T0 + 10 * day, 2, 0)], open_samples=(1,))
        with sqlite3.connect(path, isolation_level=None) as conn:
            conn.execute("UPDATE incidents SET sample_post_ids = ?", (samples,))
        conn.close()
        store = Store.open(path)
        assert store.pruned_before() == T0 + 10 * day, name
        store.close()


def test_the_upgrade_to_warning_times_keeps_every_source_and_its_warning_until_a_poll_reads_it(
        tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        apply_migrations(conn, MIGRATIONS[:7])  # the schema before warnings had times
        conn.execute("INSERT INTO sources (name, type, url, cursor, last_ok_at, polls, posts_stored, last_warning) "
                     "VALUES ('feed', 'rss', 'https://a.example/f', 'c1', ?, 9, 4, 'feed is not clean'), "
                     "('quiet', 'rss', 'https://b.example/f', NULL, ?, 3, 1, NULL)", (iso(T0), iso(T0)))
        conn.execute("INSERT INTO posts (source, external_id, text, created_at, fetched_at) "
                     "VALUES ('feed', 'p1', 'down', ?, ?)", (iso(T0), iso(T0)))
    conn.close()
    store = Store.open(path)
    rows = {r["name"]: r for r in store.source_rows()}
    assert {k: rows["feed"][k] for k in ("cursor", "polls", "posts_stored", "last_warning", "last_warning_at")} == \
        {"cursor": "c1", "polls": 9, "posts_stored": 4, "last_warning": "feed is not clean", "last_warning_at": None}
    assert rows["quiet"]["polls"] == 3 and store.database.one("SELECT count(*) AS n FROM posts") == {"n": 1}
    # When it was seen is unknown: it stands, without a time, until a poll reads the source.
    assert current_warning(rows["feed"]) == ("feed is not clean", None) and current_warning(rows["quiet"]) is None
    store.save_fetch("feed", FetchResult(state=SourceState(cursor="c1"), not_modified=True), T0, T0 + FIVE)
    assert current_warning(store.source_row("feed") or {}) == ("feed is not clean", None)
    store.save_fetch("feed", FetchResult(state=SourceState(cursor="c2")), T0 + FIVE, T0 + 2 * FIVE)
    assert current_warning(store.source_row("feed") or {}) is None
    assert (store.source_row("feed") or {})["warning_cleared_at"] == iso(T0 + FIVE)
    store.close()


def test_the_upgrade_gives_reddit_feed_posts_the_fullname_the_feed_and_api_now_store(tmp_path: Path) -> None:
    # Reddit's feed stored its posts under their fullname resolved against the feed's URL: the first poll after the
    # upgrade, storing the bare fullname, would have stored each post the feed still lists a second time.
    www = "https://www.reddit.com"
    path = tmp_path / "old.sqlite"
    stored = [("search", f"{www}/t3_1h10k2q"), ("search", f"{www}/t3_1h10d7x"),
              ("sub", f"{www}/r/sysadmin/new/t3_1h10k2q"), ("sub", f"{www}/r/sysadmin/new/t3_1h0zzq1"),
              ("sub", f"{www}/t3_1h0zzq1"),  # the same post from the source's search, before its query changed
              ("both", f"{www}/t3_1h10abc"), ("both", "t3_1h10abc"),  # read by the feed, then the API
              ("both", f"{www}/r/sysadmin/comments/1h10abc/t1_m4x9q2z"), ("both", f"{www}/t3_"),
              ("feed", f"{www}/r/sysadmin/new/t3_1h10k2q")]  # an rss source's, which keeps its ids
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        apply_migrations(conn, MIGRATIONS[:9])  # the schema before reddit feeds stored fullnames
        conn.executemany("INSERT INTO sources (name, type, url) VALUES (?, ?, ?)",
                         [("search", "reddit", None), ("sub", "reddit", None), ("both", "reddit", None),
                          ("feed", "rss", f"{www}/r/sysadmin/new/.rss")])
        conn.executemany("INSERT INTO posts (source, external_id, text, created_at, fetched_at) "
                         "VALUES (?, ?, 'down', ?, ?)", [(s, e, iso(T0), iso(T0)) for s, e in stored])
    conn.close()
    store = Store.open(path)
    rows = [(r["source"], r["external_id"]) for r in store.database.rows("SELECT * FROM posts ORDER BY id")]
    # Of the two old ids of one post, one takes the fullname (which, SQLite's plan tells) and the other stays.
    assert {rows[3][1], rows[4][1]} in ({"t3_1h0zzq1", f"{www}/t3_1h0zzq1"},
                                        {"t3_1h0zzq1", f"{www}/r/sysadmin/new/t3_1h0zzq1"})
    assert rows[:3] + rows[5:] == [
        ("search", "t3_1h10k2q"), ("search", "t3_1h10d7x"), ("sub", "t3_1h10k2q"),
        ("both", f"{www}/t3_1h10abc"), ("both", "t3_1h10abc"),
        ("both", f"{www}/r/sysadmin/comments/1h10abc/t1_m4x9q2z"), ("both", f"{www}/t3_"),
        ("feed", f"{www}/r/sysadmin/new/t3_1h10k2q")]
    # The next poll of the feed stores none of them again.
    again = [Post(source=s, external_id=e, text="down", created_at=T0, services=("WhatsApp",))
             for s, e in [("search", "t3_1h10k2q"), ("search", "t3_1h10d7x"), ("sub", "t3_1h10k2q"),
                          ("sub", "t3_1h0zzq1"), ("both", "t3_1h10abc")]]
    assert store.insert_posts(again, T0 + FIVE).posts_new == 0
    store.close()


def test_a_prune_by_a_clock_that_was_ahead_records_no_cutoff_past_the_newest_post_it_deleted(store: Store) -> None:
    # The retention job with the clock a year ahead: its cutoff (that clock less 30 days) lay 11 months ahead of
    # real time, and once the clock was set right no bucket up to it was ever counted again.
    times = [T0 + timedelta(minutes=m) for m in (0, 1, 7)]
    store.insert_posts([post(f"w{n}", "down", at) for n, at in enumerate(times)], T0 + timedelta(minutes=8))
    assert store.prune_posts(T0 + timedelta(days=365 - 30)) == 3  # every post it held
    assert store.pruned_before() == T0 + timedelta(minutes=7, seconds=1)
    assert store.first_open_bucket(FIVE) == T0 + 2 * FIVE  # final: the buckets it emptied, no more
    store.insert_posts([post("next", "down", T0 + timedelta(minutes=12))], T0 + timedelta(minutes=12))
    store.save_classifications([(p.id, Prediction(0.9, True, None)) for p in store.posts_to_classify(10)], "v1",
                               T0 + timedelta(minutes=12))
    assert store.refresh_buckets(T0 + timedelta(minutes=12), T0 + timedelta(minutes=12), FIVE) == 1
    assert store.bucket_counts("WhatsApp", T0 + 2 * FIVE, T0 + 3 * FIVE) == {"2026-03-01T12:10:00+00:00": (1, 1)}
    assert store.prune_posts(T0 + timedelta(days=400)) == 1  # the cutoff only moves on with what is deleted
    assert store.pruned_before() == T0 + timedelta(minutes=12, seconds=1)


def test_a_new_store_is_readable_by_its_owner_only_and_a_changed_mode_is_kept(tmp_path: Path) -> None:
    # SQLite created it as the umask had it: with the usual 022, any user of the machine could read its posts and
    # author hashes, and its -wal and -shm, which take the store's mode.
    old_umask = os.umask(0o022)
    try:
        path = tmp_path / "new" / "s.sqlite"
        store = Store.open(path)
        store.insert_posts([post("p1", "whatsapp down", T0)], T0)
        assert {p.name: p.stat().st_mode & 0o777 for p in path.parent.iterdir()} == {
            "s.sqlite": 0o600, "s.sqlite-wal": 0o600, "s.sqlite-shm": 0o600}
        store.close()
        path.chmod(0o640)  # shared with a group on purpose
        Store.open(path).close()
        assert path.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old_umask)


def test_a_pruned_posts_text_is_left_neither_in_the_store_file_nor_in_a_backup(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # SQLite's own default leaves a deleted row's bytes in the file's free pages until they are reused; this
    # machine's build (Debian's) overwrites them. A SQLite built with the default is what the store must not rely on.
    real_connect = sqlite3.connect

    def connect_with_sqlites_default(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = real_connect(*args, **kwargs)
        conn.execute("PRAGMA secure_delete = OFF")
        return conn

    monkeypatch.setattr(sqlite3, "connect", connect_with_sqlites_default)
    path = tmp_path / "s.sqlite"
    store = Store.open(path)
    old = [post(f"old{n}", f"pruned-text-{n:04d} of a private person, whatsapp down", T0 - timedelta(days=40))
           for n in range(300)]
    store.insert_posts([*old, post("new", "kept-text whatsapp down", T0)], T0)
    assert store.prune_posts(T0 - timedelta(days=30)) == 300
    store.backup(tmp_path / "backup.sqlite")
    store.close()
    for copy in (path, tmp_path / "backup.sqlite"):
        data = copy.read_bytes()
        assert b"kept-text" in data  # the bytes are there to find: posts are stored as plain UTF-8
        assert b"pruned-text-" not in data, copy


def test_a_post_pruned_while_being_classified_is_skipped(store: Store) -> None:
    # The service's retention job (or `miner prune` beside it) deleted posts between reading a batch and
    # saving its verdicts: the save failed on the foreign key and the process job logged an error.
    store.insert_posts([post("old", "down", T0 - timedelta(days=40)), post("new", "down too", T0)], T0)
    todo = store.posts_to_classify(10)
    other = Store.open(store.path)  # a second connection to the same file, as `miner prune` would be
    assert other.prune_posts(T0 - timedelta(days=30)) == 1
    other.close()
    touched = store.save_classifications([(p.id, Prediction(0.9, True, "general")) for p in todo], "v1", T0)
    assert touched == ["2026-03-01T12:00:00+00:00"]
    rows = store.database.rows("SELECT post_id FROM classifications")
    assert [r["post_id"] for r in rows] == [todo[1].id]
    assert store.posts_to_classify(10) == []
    # A batch whose every post is gone stores nothing and touches no bucket.
    assert store.save_classifications([(todo[0].id, Prediction(0.9, True, None))], "v2", T0) == []


def test_incident_transitions_are_logged(store: Store) -> None:
    iid = store.open_incident("WhatsApp", T0, {"peak_complaints": 9, "symptoms": {"messaging": 5}}, {"z": 6.1})
    store.update_incident(iid, T0 + FIVE, {"peak_complaints": 14}, "update", {"count": 14})
    store.update_incident(iid, T0 + 2 * FIVE, {"status": "resolved", "resolved_at": T0 + 2 * FIVE}, "resolve")
    inc = store.incident(iid)
    assert inc is not None and inc["status"] == "resolved" and inc["peak_complaints"] == 14
    assert inc["symptoms"] == '{"messaging": 5}'
    assert [e["kind"] for e in store.incident_events(iid)] == ["open", "update", "resolve"]
    assert store.open_incident_for("WhatsApp") is None


def test_readonly_query_refuses_writes(tmp_path: Path, store: Store) -> None:
    store.insert_posts([post("1", "x")], T0)
    cols, rows = run_readonly(store.path, "SELECT count(*) AS n FROM posts")
    assert cols == ["n"] and rows == [(1,)]
    for sql, kind in (("DELETE FROM posts", "DELETE"), ("UPDATE posts SET text = ''", "UPDATE"),
                      ("DROP TABLE posts", "DROP TABLE"), ("INSERT INTO posts (source) VALUES ('x')", "INSERT"),
                      ("PRAGMA journal_mode = DELETE", "PRAGMA"), ("ATTACH DATABASE 'x.db' AS x", "ATTACH"),
                      ("CREATE TABLE z(a)", "CREATE TABLE"), ("create temp table z(a)", "CREATE TEMP TABLE"),
                      ("/* why */ CREATE UNIQUE INDEX i ON posts(url)", "CREATE UNIQUE INDEX"),
                      ("CREATE VIEW v AS SELECT 1", "CREATE VIEW"), ("DROP INDEX posts_created_at", "DROP INDEX"),
                      ("ALTER TABLE posts ADD COLUMN z", "ALTER TABLE"), ("VACUUM", "VACUUM"),
                      # Actions of their own, which were named by number: "(action 27)".
                      ("REINDEX posts", "REINDEX"), ("DETACH x", "DETACH"), ("SAVEPOINT a", "a transaction statement"),
                      ("RELEASE a", "a transaction statement"),
                      ("CREATE TRIGGER t AFTER INSERT ON posts BEGIN SELECT 1; END", "CREATE TRIGGER")):
        with pytest.raises(QueryRefused, match="read-only") as refused:
            run_readonly(store.path, sql)
        assert str(refused.value).endswith(f"would write ({kind})"), sql
    assert store.database.one("SELECT count(*) AS n FROM posts")["n"] == 1  # type: ignore[index]
    for sql in ("PRAGMA user_version = 5", "PRAGMA page_size = 512", "PRAGMA query_only = 0",
                "PRAGMA journal_mode = WAL"):
        with pytest.raises(QueryRefused, match=r"would write \(PRAGMA\)"):
            run_readonly(store.path, sql)


def test_readonly_query_describes_the_store_with_pragmas(store: Store) -> None:
    # An analyst finding their way: `PRAGMA table_info(posts)` only reads, and was refused as a write "(PRAGMA)".
    cols, rows = run_readonly(store.path, "PRAGMA table_info(posts)")
    assert "name" in cols and "text" in [row[cols.index("name")] for row in rows]
    cols, rows = run_readonly(store.path, "SELECT name FROM pragma_index_list('posts') ORDER BY name")
    assert rows and all(name for (name,) in rows)
    version = store.database.execute("PRAGMA user_version").fetchone()[0]
    assert run_readonly(store.path, "PRAGMA user_version")[1] == [(version,)]


def _files(path: str) -> dict[str, tuple[bytes, int] | None]:
    """The store file and its write-ahead log: their bytes and modification times, None for one that is not there."""
    files: dict[str, tuple[bytes, int] | None] = {}
    for name in (path, f"{path}-wal"):
        files[name] = (Path(name).read_bytes(), os.stat(name).st_mtime_ns) if os.path.exists(name) else None
    return files


def test_readonly_query_checks_the_store_with_pragmas_and_leaves_it_as_it_was(store: Store) -> None:
    # An operator checking the store (`PRAGMA quick_check`, `PRAGMA journal_mode`) was refused as a write "(PRAGMA)".
    # Beside a writer that holds commits in the write-ahead log, as the service does.
    store.insert_posts([post("1", "x"), post("2", "y")], T0)
    before = _files(store.path)
    assert before[f"{store.path}-wal"] is not None
    for sql, rows in (("PRAGMA quick_check", [("ok",)]), ("PRAGMA quick_check(3)", [("ok",)]),
                      ("PRAGMA integrity_check", [("ok",)]), ("PRAGMA integrity_check(posts)", [("ok",)]),
                      ("SELECT * FROM pragma_integrity_check", [("ok",)]), ("PRAGMA foreign_key_check", []),
                      ("PRAGMA foreign_key_check(posts)", []), ("PRAGMA journal_mode", [("wal",)]),
                      ("PRAGMA main.journal_mode", [("wal",)]), ("SELECT * FROM pragma_journal_mode", [("wal",)]),
                      ("PRAGMA encoding", [("UTF-8",)]), ("PRAGMA auto_vacuum", [(0,)]),
                      ("PRAGMA application_id", [(0,)]), ("PRAGMA freelist_count", [(0,)])):
        assert run_readonly(store.path, sql)[1] == rows, sql
    assert run_readonly(store.path, "PRAGMA compile_options")[1]
    # Given a value, or one that writes whatever it is given (a checkpoint, ANALYZE), they are still refused.
    for sql in ("PRAGMA main.journal_mode = DELETE", "PRAGMA auto_vacuum = 1", "PRAGMA application_id = 7",
                "PRAGMA encoding = 'UTF-16'", "PRAGMA wal_checkpoint", "PRAGMA wal_checkpoint(TRUNCATE)",
                "PRAGMA optimize", "PRAGMA incremental_vacuum", "PRAGMA writable_schema = 1",
                "SELECT * FROM pragma_optimize"):
        with pytest.raises(QueryRefused, match=r"would write \(PRAGMA\)$"):
            run_readonly(store.path, sql)
    assert _files(store.path) == before
    assert store.database.one("PRAGMA journal_mode")["journal_mode"] == "wal"  # type: ignore[index]


def test_readonly_query_reads_json_columns_with_table_valued_functions(store: Store) -> None:
    # SQLite authorizes a table-valued function (json_each, json_tree, dbstat) as an UPDATE of the schema table,
    # though it writes nothing: `miner query` refused reading an incident's samples as a write "(SELECT)".
    store.insert_posts([post("1", "first"), post("2", "second")], T0)
    ids = [int(r["id"]) for r in store.database.rows("SELECT id FROM posts ORDER BY id")]
    iid = store.open_incident("WhatsApp", T0, {"sample_post_ids": ids, "symptoms": {"messaging": 2}}, {})
    samples = ("SELECT p.text FROM incidents i, json_each(i.sample_post_ids) j JOIN posts p ON p.id = j.value "
               "WHERE i.id = :id ORDER BY j.key")
    assert run_readonly(store.path, samples, {"id": iid}) == (["text"], [("first",), ("second",)])
    symptoms = "SELECT key, value FROM incidents, json_tree(symptoms) WHERE type = 'integer'"
    assert run_readonly(store.path, symptoms)[1] == [("messaging", 2)]
    assert run_readonly(store.path, "SELECT count(*) > 0 FROM dbstat WHERE name = 'posts'")[1] == [(1,)]
    # A pragma's table-valued function is a PRAGMA, refused as such but for those that only describe the store:
    # pragma_optimize runs ANALYZE.
    with pytest.raises(QueryRefused, match=r"would write \(PRAGMA\)$"):
        run_readonly(store.path, "SELECT * FROM pragma_optimize")
    with pytest.raises(QueryRefused, match=r"would write \(CREATE VIRTUAL TABLE\)$"):
        run_readonly(store.path, "CREATE VIRTUAL TABLE j USING json_each")
    assert store.database.one("PRAGMA journal_mode")["journal_mode"] == "wal"  # type: ignore[index]


def test_readonly_query_refuses_to_load_an_extension(store: Store) -> None:
    # Python's sqlite3 leaves extension loading off, and SQLite says so as "not authorized": `miner query` said
    # "store <path>: not authorized", as if the store file's permissions were wrong.
    for sql in ("SELECT load_extension('/tmp/evil.so')", "SELECT load_extension('/tmp/evil.so', 'init')"):
        with pytest.raises(QueryRefused, match=r"^refused: `miner query` loads no SQLite extension"):
            run_readonly(store.path, sql)


def test_corrupt_and_readonly_files_give_one_clear_error(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreError, match="not a SQLite database or is corrupt"):
        Store.open(corrupt)
    path = tmp_path / "s.sqlite"
    Store.open(path).close()
    readonly = Store.open(path, readonly=True)  # what a read-only mount or file gives
    with pytest.raises(StoreError, match="read-only"):
        readonly.insert_posts([post("1", "x")], T0)
    readonly.close()
    with pytest.raises(StoreError, match="does not exist"):
        Store.open(tmp_path / "missing.sqlite", readonly=True)
    # SQLite calls a folder a "disk I/O error" (read-only) or "unable to open" (read-write).
    for readonly in (True, False):
        with pytest.raises(StoreError, match=f"store {tmp_path} is a folder; the store path must name a file"):
            Store.open(tmp_path, readonly=readonly)


# Run without root's capabilities (which ignore permission bits). Prints what the stores opened after the store
# file is writable again say to a write.
SIDECAR_SCRIPT = """
import json, os, sys
from miner.config import SourceConfig
from miner.errors import StoreError
from miner.store import Store

path, meanwhile = sys.argv[1], sys.argv[2]
def writes(store):
    try:
        store.database.check_writable()
    except StoreError as exc:
        return str(exc)
    finally:
        store.close()
    return "writes"
Store.open(path).close()
writer = None if meanwhile == "read, alone" else Store.open(path)  # a running service's job: opened before
os.chmod(path, 0o444)
if meanwhile.startswith("read"):  # `miner status` or another read-only command
    Store.open(path, readonly=True).close()
else:  # a report or job of that service
    print(json.dumps(writes(Store.open(path))))
os.chmod(path, 0o644)
if writer is not None:
    writer.sync_sources([SourceConfig(name="feed", type="rss", url="https://example.org/feed")])
print(json.dumps([writes(Store.open(path)) for _ in range(2)]))
"""


@pytest.mark.skipif(os.geteuid() == 0 and not shutil.which("setpriv"), reason="root ignores permission bits")
@pytest.mark.parametrize("meanwhile", ["write", "read", "read, alone"])
def test_a_store_made_writable_again_is_opened_read_write(tmp_path: Path, meanwhile: str) -> None:
    # SQLite gives an empty -wal, and a new -shm, the mode of the store file when a connection opens them: opened
    # while the file was read-only, they stayed read-only after it was writable again, and so was every connection
    # opened after that, until a restart (the service's reports were refused with 503; with nothing else open, a
    # read-only command left a -shm that kept the service from starting).
    drop = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"] if os.geteuid() == 0 else []
    path = tmp_path / "s.sqlite"
    res = subprocess.run([*drop, sys.executable, "-c", SIDECAR_SCRIPT, str(path), meanwhile], capture_output=True,
                         text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    if meanwhile == "write":
        assert f"store {path} is read-only" in lines.pop(0)  # while the file was read-only: as it should
    assert lines == [["writes", "writes"]]

def test_backup_and_prune(tmp_path: Path, store: Store) -> None:
    store.insert_posts([post("old", "x", T0 - timedelta(days=40)), post("new", "y", T0)], T0)
    iid = store.open_incident("WhatsApp", T0, {}, {})
    assert iid
    size = store.backup(tmp_path / "copy.sqlite")
    assert size > 0
    copy = Store.open(tmp_path / "copy.sqlite")
    assert copy.database.one("SELECT count(*) AS n FROM posts")["n"] == 2  # type: ignore[index]
    copy.close()
    with pytest.raises(StoreError, match="exists"):
        store.backup(tmp_path / "copy.sqlite")
    assert store.prune_posts(T0 - timedelta(days=30)) == 1
    assert store.database.one("SELECT count(*) AS n FROM incidents")["n"] == 1  # type: ignore[index]


def test_an_open_incident_with_garbled_sample_ids_does_not_stop_the_prune(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    # The prune read every open incident's sample_post_ids as JSON: one row edited by hand (or cut short) failed each
    # prune with "malformed JSON", reported as a corrupt store to restore from a backup, and the retention job failed
    # at every run while the store grew without bound.
    old = T0 - timedelta(days=40)
    store.insert_posts([post(f"old{n}", "whatsapp down", old + timedelta(minutes=n)) for n in range(4)], old)
    ids = [row["id"] for row in store.database.rows("SELECT id FROM posts ORDER BY id")]
    store.open_incident("WhatsApp", T0, {"sample_post_ids": ids[:1]}, {})
    garbled = store.open_incident("Signal", T0, {"sample_post_ids": ids[1:2]}, {})
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE incidents SET sample_post_ids = ? WHERE id = ?", (f"[{ids[1]}, ", garbled))
    conn.close()
    with caplog.at_level("WARNING", logger="miner.store"):
        assert store.prune_posts(T0 - timedelta(days=30)) == 3
    # The valid incident's sample is still kept; the garbled one names no post to keep.
    assert [row["id"] for row in store.database.rows("SELECT id FROM posts")] == ids[:1]
    assert [r.getMessage() for r in caplog.records] == [
        f"prune: the sample_post_ids of open incident {garbled} is not JSON (edited by hand?): the prune keeps "
        "none of its sample posts"]


def test_a_null_among_an_open_incidents_sample_ids_does_not_stop_the_prune(store: Store) -> None:
    # "[12, null]" (or "null") is JSON, so no warning, but json_each gives a NULL, and "id NOT IN (..., NULL)" is
    # never true: every prune deleted nothing, silently, while the store grew.
    old = T0 - timedelta(days=40)
    store.insert_posts([post(f"old{n}", "whatsapp down", old + timedelta(minutes=n)) for n in range(4)], old)
    ids = [row["id"] for row in store.database.rows("SELECT id FROM posts ORDER BY id")]
    kept = store.open_incident("WhatsApp", T0, {"sample_post_ids": ids[:1]}, {})
    other = store.open_incident("Signal", T0, {}, {})
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE incidents SET sample_post_ids = ? WHERE id = ?", (f"[{ids[0]}, null]", kept))
        conn.execute("UPDATE incidents SET sample_post_ids = 'null' WHERE id = ?", (other,))
    conn.close()
    assert store.prune_posts(T0 - timedelta(days=30)) == 3
    assert [row["id"] for row in store.database.rows("SELECT id FROM posts")] == ids[:1]


def test_a_backup_leaves_a_target_made_while_it_copied_as_it_is(tmp_path: Path) -> None:
    # Two backups to one path at once (a timer's and an operator's): both found no file there, and the one that
    # ended last replaced the other's copy, each saying it had backed up to the path.
    db = tmp_path / "m.sqlite"
    writer = Store.open(db)
    writer.insert_posts([post(str(i), f"{i} " + "x" * 2000, T0) for i in range(15_000)], T0)
    writer.close()
    store = Store.open(db, readonly=True)
    failed: list[BaseException] = []

    def backup(target: Path) -> None:
        try:
            store.backup(target)
        except StoreError as exc:
            failed.append(exc)

    def made_while_copying(target: Path) -> bool:
        """Start a backup to ``target`` and make ``target`` while it copies; False when the copy ended first."""
        copying = threading.Thread(target=backup, args=(target,))
        copying.start()
        made = False
        while copying.is_alive():
            if list(target.parent.glob(".copy.sqlite.*.tmp")):  # the copy has begun: the target was not there
                try:  # made only if nothing is there yet, so certainly before the backup's copy is put there
                    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
                except FileExistsError:
                    break
                with os.fdopen(fd, "wb") as other:
                    other.write(b"the other backup")
                made = True
                break
            time.sleep(0.001)
        copying.join()
        return made

    try:
        # A loaded machine may not run the test while the copy is made (the whole window): then it tries again.
        for attempt in range(20):
            (folder := tmp_path / f"try{attempt}").mkdir()
            failed.clear()
            if made_while_copying(target := folder / "copy.sqlite"):
                break
        else:
            pytest.fail("every backup ended before the test could make its target")
    finally:
        store.close()
    assert target.read_bytes() == b"the other backup"
    assert [str(e) for e in failed] == [f"backup target {target} exists; choose a new path"]
    assert sorted(p.name for p in folder.iterdir()) == ["copy.sqlite"]


def test_a_post_id_a_prune_deleted_is_never_given_to_a_new_post(store: Store) -> None:
    # Rowids are max + 1: a prune that deleted the newest posts (`miner prune --force`, a store of user reports only)
    # gave their ids to the next posts, and a resolved incident's sample_post_ids then cited unrelated posts.
    store.insert_posts([post(f"old{n}", "whatsapp down", T0 + timedelta(minutes=n)) for n in range(3)], T0)
    old = [p.id for p in store.posts_to_classify(10)]
    store.save_classifications([(pid, Prediction(0.9, True, None)) for pid in old], "v1", T0)
    incident = store.open_incident("WhatsApp", T0, {"sample_post_ids": old}, {})
    store.update_incident(incident, T0 + FIVE, {"status": "resolved", "resolved_at": T0 + FIVE}, "resolve", {})
    assert store.prune_posts(T0 + timedelta(days=1)) == 3
    store.insert_posts([post("new0", "unrelated", T0 + timedelta(days=2))], T0 + timedelta(days=2))
    new = [p.id for p in store.posts_to_classify(10)]
    assert len(new) == 1 and new[0] > max(old)
    assert store.last_post_id() == new[0]
    # Pruned again down to none, then a store reopened (another process): still past every id given.
    assert store.prune_posts(T0 + timedelta(days=3)) == 1
    again = Store.open(store.path)
    again.insert_posts([post("new1", "unrelated", T0 + timedelta(days=4))], T0 + timedelta(days=4))
    assert [p.id for p in again.posts_to_classify(10)] == [new[0] + 1]
    again.close()


def test_a_post_id_a_0_1_0_prune_deleted_is_never_given_to_a_new_post(tmp_path: Path) -> None:
    # 0.1.0's prune deleted the newest posts too (every post after a month without one, `miner prune --days 1`) and
    # recorded no id: after the upgrade the next posts took the ids a resolved incident's sample_post_ids cite.
    path = tmp_path / "old.sqlite"
    _release_0_1_0_store(path, [(1, T0)], [(T0, 1, 1)])
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("INSERT INTO incidents (service, status, opened_at, updated_at, resolved_at, sample_post_ids) "
                     "VALUES ('WhatsApp', 'resolved', ?, ?, ?, '[4, 7, 5]')", (iso(T0), iso(T0), iso(T0)))
    conn.close()
    store = Store.open(path)
    store.insert_posts([post("new", "unrelated", T0 + timedelta(days=40))], T0 + timedelta(days=40))
    assert store.last_post_id() == 8
    store.close()


@pytest.mark.parametrize("recorded", ["60", None])
def test_the_upgrade_gives_incidents_the_bucket_width_the_store_records_for_their_sample_posts(
        tmp_path: Path, recorded: str | None) -> None:
    # An incident open at the upgrade opened in the buckets the store counts then: its samples start with its
    # opening bucket, however detector.bucket_minutes changes after (see test_alerts_figures).
    from miner.alerts.content import incident_view
    from miner.alerts.settings import AlertSettings

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        apply_migrations(conn, MIGRATIONS[:19])  # the schema before incidents recorded their bucket width
        if recorded is not None:
            conn.execute("INSERT INTO store_state (key, value) VALUES ('bucket_minutes', ?)", (recorded,))
        conn.execute("INSERT INTO incidents (service, status, opened_at, updated_at) VALUES ('WhatsApp', 'open', ?, ?)",
                     (iso(T0), iso(T0)))
    conn.close()
    store = Store.open(path)
    assert store.incident(1)["bucket_minutes"] == (60 if recorded else None)
    store.insert_posts([post("early", "whatsapp down since the hour began", T0 - timedelta(minutes=55))], T0)
    store.save_classifications([(p.id, Prediction(0.9, True, "messaging")) for p in store.posts_to_classify(10)],
                               "v1", T0)
    store.set_bucket_minutes(5)  # a reload's new width, after the upgrade
    view = incident_view(store, AlertSettings(), 1, T0)
    assert view is not None
    assert [s.text for s in view.samples] == (["whatsapp down since the hour began"] if recorded else [])
    store.close()


def test_a_sample_id_past_64_bits_does_not_stop_the_posts_stored_after_the_upgrade(tmp_path: Path) -> None:
    # A row edited by hand: the upgrade took the number for the largest id there is, the next post's id was one past
    # it, not an integer, and every post stored after it failed with "datatype mismatch".
    path = tmp_path / "old.sqlite"
    _release_0_1_0_store(path, [(1, T0)], [(T0, 1, 1)])
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("INSERT INTO incidents (service, status, opened_at, updated_at, resolved_at, sample_post_ids) "
                     "VALUES ('WhatsApp', 'resolved', ?, ?, ?, '[4, 100000000000000000000, 7]')",
                     (iso(T0), iso(T0), iso(T0)))
    conn.close()
    store = Store.open(path)
    store.insert_posts([post("new", "unrelated", T0 + timedelta(days=40))], T0 + timedelta(days=40))
    assert store.last_post_id() == 8  # past the ids the samples cite, as of any other upgrade
    # A store that an upgrade already gave the largest id there is takes SQLite's numbering.
    store.database.execute("UPDATE store_state SET value = '9223372036854775807' WHERE key = 'last_pruned_post_id'")
    store.insert_posts([post("newer", "unrelated", T0 + timedelta(days=41))], T0 + timedelta(days=41))
    assert store.last_post_id() == 9
    store.close()

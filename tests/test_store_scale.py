"""The store's reads and writes at the size of months of posts: each hot query reads what its window needs
(checked on its query plan, which SQLite chooses the same on a small file without statistics), and long
writes are cut into short transactions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlplan import query_plan

from miner.records import Decision, Post, Prediction
from miner.store import Store
from miner.timeutil import iso

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FIVE = timedelta(minutes=5)


def fill(store: Store, n: int = 40, start: datetime = T0, prefix: str = "p") -> None:
    """``n`` posts a minute apart about WhatsApp and Gmail by turns, every third one an outage report."""
    store.insert_posts([Post("feed", f"{prefix}{i}", f"post {i}", start + timedelta(minutes=i), author_hash=f"a{i}",
                             services=("WhatsApp" if i % 2 else "Gmail",)) for i in range(n)], start)
    verdicts = [(p.id, Prediction(0.9, True, "login") if p.id % 3 == 0 else Prediction(0.1, False, None))
                for p in store.posts_to_classify(n)]
    store.save_classifications(verdicts, "v1", start)


def plans(store: Store, call: Callable[[], Any]) -> list[str]:
    """The query plan lines of every statement ``call`` runs on the store's connection."""
    statements: list[str] = []
    conn = store.database.conn
    conn.set_trace_callback(statements.append)  # the statements with their values bound
    try:
        call()
    finally:
        conn.set_trace_callback(None)
    lines = []
    for sql in statements:
        if sql.lstrip().upper().startswith(("SELECT", "INSERT", "UPDATE", "DELETE", "WITH")):
            lines += query_plan(conn, sql)
    return lines


def test_a_services_posts_in_a_window_are_read_from_the_window(store: Store) -> None:
    # The detector reads a bucket's samples and symptoms twice per bucket while an incident is open, and alerts
    # and digests for each incident they show: these read every post of the service ever stored.
    fill(store)
    start, end = T0 + timedelta(minutes=10), T0 + timedelta(minutes=20)
    samples = store.sample_posts("WhatsApp", start, end)
    assert sorted(int(p["text"].split()[1]) for p in samples) == [11, 17]
    assert store.symptom_counts("WhatsApp", start, end) == {"login": 2}
    lines = plans(store, lambda: store.symptom_counts("WhatsApp", start, end))
    assert lines[0].startswith("SEARCH p USING") and "posts_created_at (created_at>? AND created_at<?)" in lines[0]
    assert not [line for line in lines if "post_services_service" in line], lines
    # The samples are one post per text (the best of each), through a window function over the same window.
    lines = plans(store, lambda: store.sample_posts("WhatsApp", start, end))
    assert any(line.startswith("SEARCH p USING") and "posts_created_at (created_at>? AND created_at<?)" in line
               for line in lines), lines
    assert not [line for line in lines if "post_services_service" in line or line.startswith("SCAN p")], lines


def test_the_classify_queue_depth_reads_only_the_posts_past_the_last_verdict(store: Store) -> None:
    # /metrics counted it by looking up a verdict for every post ever stored, on each scrape.
    fill(store)
    store.insert_posts([Post("feed", f"new{i}", "new", T0, services=("Gmail",)) for i in range(3)], T0)
    assert store.queue_depths() == {"classify": 3, "outbox": 0}
    lines = plans(store, store.queue_depths)
    assert "SEARCH p USING INTEGER PRIMARY KEY (rowid>?)" in lines
    assert not [line for line in lines if line.startswith("SCAN p")], lines


def test_prune_deletes_in_short_transactions(store: Store) -> None:
    # Pruning months of posts was one DELETE in one transaction: minutes of holding the write lock, in which the
    # service's collect and process jobs failed with "database is locked".
    fill(store, 25, start=T0 - timedelta(days=40))
    fill(store, 2, prefix="new")
    kept = store.database.one("SELECT min(id) AS id FROM posts")["id"]  # type: ignore[index]
    store.open_incident("Gmail", T0, {"sample_post_ids": [kept]}, {})
    statements: list[str] = []
    store.database.conn.set_trace_callback(statements.append)
    assert store.prune_posts(T0 - timedelta(days=30), batch=10) == 24
    store.database.conn.set_trace_callback(None)
    assert [s for s in statements if s.startswith("BEGIN")] == ["BEGIN IMMEDIATE"] * 3  # 10, 10 and the last 4
    left = store.database.rows("SELECT id FROM posts ORDER BY id")
    assert left[0]["id"] == kept and len(left) == 3
    assert store.database.one("SELECT count(*) AS n FROM classifications")["n"] == 3  # type: ignore[index]
    assert store.database.one("SELECT count(*) AS n FROM post_services")["n"] == 3  # type: ignore[index]


def test_a_bucket_recount_reads_the_buckets_of_its_window(store: Store) -> None:
    # Each classify batch zeroes its window's buckets before recounting them: that scanned every bucket ever
    # stored, and buckets are kept for good.
    fill(store)
    assert store.refresh_buckets(T0, T0 + timedelta(minutes=39), FIVE) == 16
    lines = plans(store, lambda: store.refresh_buckets(T0 + FIVE, T0 + FIVE, FIVE))
    assert "SEARCH buckets USING INDEX buckets_bucket_start (bucket_start>? AND bucket_start<?)" in lines
    assert not [line for line in lines if line.startswith("SCAN buckets")], lines
    assert store.bucket_counts("Gmail", T0, T0 + 2 * FIVE) == {
        "2026-03-01T12:00:00+00:00": (3, 1), "2026-03-01T12:05:00+00:00": (2, 1)}


def test_the_canned_hourly_query_reads_the_last_week_of_buckets(store: Store) -> None:
    # It grouped every bucket ever stored to show the newest 500 rows: over Datasette's 1 s limit after months.
    from miner.datasette_meta import CANNED

    sql = CANNED["complaints_per_service_per_hour"]["sql"]
    fill(store, 3, start=T0 - timedelta(days=9), prefix="old")
    fill(store, 3, start=T0 - timedelta(days=6, hours=23), prefix="week")
    fill(store, 3, prefix="new")
    store.refresh_buckets(T0 - timedelta(days=10), T0 + timedelta(hours=1), FIVE)
    rows = store.database.rows(sql)
    assert [(r["service"], r["hour"], r["posts"]) for r in rows] == [
        ("Gmail", "2026-03-01T12:00", 2), ("WhatsApp", "2026-03-01T12:00", 1),
        ("Gmail", "2026-02-22T13:00", 2), ("WhatsApp", "2026-02-22T13:00", 1)]
    lines = query_plan(store.database.conn, sql)
    assert "SEARCH buckets USING INDEX buckets_bucket_start (bucket_start>?)" in lines
    # The one scan is of the index from its newest end, to the 30,000th bucket (see the next test).
    assert [line for line in lines if line.startswith("SCAN buckets")] == [
        "SCAN buckets USING COVERING INDEX buckets_bucket_start"], lines


class _Outage:
    """A model that calls every post an outage report."""

    version = "v1"
    decision = Decision(0.5, early_exit=False)

    def predict(self, texts: list[str]) -> list[Prediction]:
        return [Prediction(0.9, True, "general") for _ in texts]


def test_a_classify_batch_recounts_the_buckets_of_its_posts_not_the_days_between(store: Store) -> None:
    # A new feed's first poll lists weeks of items with today's: the batch's recount ran from its oldest post to its
    # newest, every bucket of every service between (seconds of the write lock at millions of posts).
    import re

    from miner.config import parse_config
    from miner.pipeline import Pipeline

    config = parse_config('[[services]]\nname = "WhatsApp"\n\n[[services]]\nname = "Gmail"\n')
    fill(store)
    old, new = T0 - timedelta(days=20, minutes=2), T0 + timedelta(minutes=47)
    store.insert_posts([Post("feed", "old", "old", old, services=("Gmail",)),
                        Post("feed", "new", "new", new, services=("Gmail",)),
                        Post("feed", "new2", "new", new + FIVE, services=("WhatsApp",))], T0)
    statements: list[str] = []
    store.database.conn.set_trace_callback(statements.append)
    assert Pipeline(config, store, _Outage()).classify_pending(T0) == 3  # type: ignore[arg-type]
    store.database.conn.set_trace_callback(None)
    windows = [re.findall(r"'([^']+)'", s) for s in statements if s.startswith("UPDATE buckets SET posts = 0")]
    assert windows == [["2026-02-09T11:55:00+00:00", "2026-02-09T12:00:00+00:00"],
                       ["2026-03-01T12:45:00+00:00", "2026-03-01T12:55:00+00:00"]]
    assert store.bucket_counts("Gmail", old - FIVE, new + 2 * FIVE) == {
        "2026-02-09T11:55:00+00:00": (1, 1), "2026-03-01T12:45:00+00:00": (1, 1)}
    assert store.bucket_counts("WhatsApp", new, new + 2 * FIVE) == {"2026-03-01T12:50:00+00:00": (1, 1)}


def test_the_canned_hourly_query_reads_no_more_buckets_than_its_rows_need(store: Store) -> None:
    # 500 rows are shown: with many services they cover hours, not the week, and reading the whole week of every
    # service's buckets took 1 s at 300 services, Datasette's limit.
    from miner.datasette_meta import CANNED

    sql = CANNED["complaints_per_service_per_hour"]["sql"]
    week = ("SELECT service, substr(bucket_start, 1, 13) || ':00' AS hour, sum(posts) AS posts, sum(complaints) AS "
            "complaints FROM buckets WHERE bucket_start >= (SELECT strftime('%Y-%m-%dT%H:00:00+00:00', "
            "max(bucket_start), '-7 days') FROM buckets) GROUP BY hour, service ORDER BY hour DESC, service LIMIT 500")
    services = [f"s{i:02d}" for i in range(80)]  # 80 services' buckets over 100 hours: 96,000
    with store.database.transaction() as conn:
        conn.executemany("INSERT INTO buckets (service, bucket_start, posts, complaints) VALUES (?, ?, ?, ?)",
                         [(svc, iso(T0 - k * FIVE), k % 7, k % 3) for k in range(1200) for svc in services])

    def run(query: str) -> tuple[int, list[tuple[Any, ...]]]:
        """The rows, and how many thousand steps of SQLite's VM they took (the work, without timing it)."""
        ticks: list[int] = []
        store.database.conn.set_progress_handler(lambda: ticks.append(1) or 0, 1000)
        try:
            rows = [tuple(r) for r in store.database.conn.execute(query)]
        finally:
            store.database.conn.set_progress_handler(None, 0)
        return len(ticks), rows

    (whole_week, expected), (bounded, shown) = run(week), run(sql)
    assert shown == expected and len(shown) == 500
    assert shown[0] == ("s00", "2026-03-01T12:00", 0, 0) and shown[-1][1] == "2026-03-01T06:00"
    assert bounded * 2 < whole_week  # about a third of the buckets read


def test_the_wal_is_cut_back_after_a_large_transaction(store: Store) -> None:
    # SQLite reuses its -wal file but never shrinks it: one large transaction (a changed bucket width recounting
    # a month) left hundreds of MB beside the store for as long as the service ran.
    from pathlib import Path

    from miner.store.db import WAL_SIZE_LIMIT

    wal = Path(f"{store.path}-wal")
    big = "x" * (1 << 20)
    store.insert_posts([Post("feed", f"big{i}", big, T0) for i in range(48)], T0)  # 48 MB in one transaction
    assert wal.stat().st_size > WAL_SIZE_LIMIT
    store.insert_posts([Post("feed", "small", "small", T0)], T0)  # checkpointed by then: the log starts over
    assert wal.stat().st_size <= WAL_SIZE_LIMIT


def test_a_changed_bucket_width_is_counted_again_six_hours_at_a_time(store: Store) -> None:
    # The recount of a changed detector.bucket_minutes ran in one transaction: 30 days of 300 services held the write
    # lock for 33 s, and collect and the reports failed with "database is locked" meanwhile.
    import re

    store.insert_posts([Post("feed", f"p{i}", "down", T0 + timedelta(minutes=7 * i), author_hash=f"a{i}",
                             services=("Gmail",)) for i in range(300)], T0)  # 35 hours
    store.save_classifications([(p.id, Prediction(0.9, True, None)) for p in store.posts_to_classify(300)], "v1", T0)
    store.refresh_buckets(T0, T0 + timedelta(hours=36), FIVE)
    statements: list[str] = []
    store.database.conn.set_trace_callback(statements.append)
    assert store.rebucket(3 * FIVE, FIVE) == T0
    store.database.conn.set_trace_callback(None)
    deletes = [re.findall(r"'([^']+)'", s) for s in statements if s.startswith("DELETE FROM buckets")]
    assert [d[0][11:16] for d in deletes] == ["12:00", "18:00", "00:00", "06:00", "12:00", "18:00"]
    assert all(len(d) == 2 for d in deletes[:-1]) and len(deletes[-1]) == 1  # the last one to the end
    assert [s for s in statements if s.startswith("BEGIN")] == ["BEGIN IMMEDIATE"] * 6
    rows = store.database.rows("SELECT bucket_start, posts FROM buckets ORDER BY bucket_start")
    assert sum(r["posts"] for r in rows) == 300 and all(r["bucket_start"][14:16] in ("00", "15", "30", "45")
                                                        for r in rows)


def test_a_prune_between_the_spans_of_a_recount_keeps_the_counts_it_made_final(store: Store) -> None:
    # Between two spans of the recount, the retention job (another connection) deletes posts up to the third
    # span: their old rows are the only count of them and stay, the rest of the span is counted on the new grid.
    store.insert_posts([Post("feed", f"p{i}", "down", T0 + timedelta(minutes=7 * i), author_hash=f"a{i}",
                             services=("Gmail",)) for i in range(300)], T0)
    store.save_classifications([(p.id, Prediction(0.9, True, None)) for p in store.posts_to_classify(300)], "v1", T0)
    store.refresh_buckets(T0, T0 + timedelta(hours=36), FIVE)
    begun: list[str] = []

    def prune_before_the_third_span(sql: str) -> None:
        begun.extend([sql] if sql.startswith("BEGIN") else [])
        if sql.startswith("BEGIN") and len(begun) == 3:
            other = Store.open(store.path)
            assert other.prune_posts(T0 + timedelta(hours=13)) == 112  # up to 00:57, in the third span
            other.close()

    store.database.conn.set_trace_callback(prune_before_the_third_span)
    store.rebucket(3 * FIVE, FIVE)
    store.database.conn.set_trace_callback(None)
    rows = store.database.rows("SELECT bucket_start, posts FROM buckets ORDER BY bucket_start")
    assert sum(r["posts"] for r in rows) == 300  # no post lost from the counts, none counted twice
    third = [r["bucket_start"][11:16] for r in rows
             if r["bucket_start"].startswith(("2026-03-02T00", "2026-03-02T01:0"))]
    # The 5-minute rows of posts up to the cutoff (00:57:01), to the end of the bucket holding it; then 15 minutes.
    assert third == ["00:00", "00:05", "00:15", "00:20", "00:25", "00:35", "00:40", "00:50", "00:55", "01:00"]


def test_group_interval_reads_the_outbox_rows_of_its_group(store: Store) -> None:
    # Its lookups read every sent notification the outbox keeps (400 days), once per group: a planning run opening
    # 300 services of as many groups held the write lock for seconds.
    from miner.store.group_interval import held_until

    conn = store.database.conn
    conn.executemany(
        "INSERT INTO outbox (dedupe_key, route, channel, group_key, kind, status, message_id, created_at, "
        "next_attempt_at, sent_at) VALUES (?, 'ops', 'email', ?, 'alert', 'sent', ?, ?, ?, ?)",
        [(f"k{i}", f"service:s{i % 5}", f"m{i}", iso(T0 - i * FIVE), iso(T0 - i * FIVE), iso(T0 - i * FIVE))
         for i in range(20)])
    assert held_until(conn, "ops", "email", "service:s0", "alert", 240, T0) == T0 + timedelta(seconds=240)
    assert held_until(conn, "ops", "email", "service:s1", "alert", 240, T0) is None  # its last went 5 minutes ago
    # (waiting_batch reads the pending rows on outbox_due: few, whatever the outbox keeps.)
    lines = plans(store, lambda: held_until(conn, "ops", "email", "service:s0", "alert", 240, T0))
    assert lines == ["SEARCH outbox USING INDEX outbox_group (route=? AND channel=? AND group_key=? AND kind=? "
                     "AND status=?)"], lines


def test_a_services_newest_post_is_looked_for_only_in_buckets_a_stored_post_can_be_in(store: Store) -> None:
    # The read API's /services asks for every service's newest counted post. The detector stores every bucket, empty
    # ones too: for a service no post names, finding its newest bucket with posts read each of its bucket rows kept.
    fill(store)
    store.refresh_buckets(T0 - timedelta(days=2), T0 + timedelta(hours=1), FIVE)
    with store.database.transaction() as conn:
        conn.executemany("INSERT INTO buckets (service, bucket_start, posts, complaints) VALUES ('Slack', ?, 0, 0)",
                         [(iso(T0 - i * FIVE),) for i in range(200)])
        # Counted once, before the oldest post stored: its posts were pruned since.
        conn.execute("UPDATE buckets SET posts = 3 WHERE service = 'Slack' AND bucket_start = ?",
                     (iso(T0 - 100 * FIVE),))
    assert store.last_counted_post_at("WhatsApp", FIVE) == iso(T0 + timedelta(minutes=39))
    assert store.last_counted_post_at("Gmail", FIVE) == iso(T0 + timedelta(minutes=38))
    assert store.last_counted_post_at("Slack", FIVE) is None
    lines = plans(store, lambda: store.last_counted_post_at("Slack", FIVE))
    assert not [line for line in lines if "buckets" in line], lines
    assert "SEARCH post_services USING COVERING INDEX post_services_service (service=?)" in lines, lines
    # Not the primary key from the newest bucket down, every empty one since its last post read: only the buckets
    # that counted a post (index buckets_with_posts, migration 0016), one entry.
    lines = plans(store, lambda: store.last_counted_post_at("WhatsApp", FIVE))
    assert "SEARCH buckets USING INDEX buckets_with_posts (service=? AND bucket_start>?)" in lines, lines


def test_many_services_bucket_counts_are_read_from_each_ones_window(store: Store) -> None:
    # The status board's index reads every configured service's last day of buckets at once; buckets are kept for
    # months, and those of services no longer configured with them.
    fill(store)
    store.refresh_buckets(T0, T0 + timedelta(hours=1), FIVE)
    odd = 'O"Neil \u00fc'  # a name as feeds.toml may hold it
    with store.database.transaction() as conn:
        for service in ("Slack", odd, "Gone"):  # the detector's rows, empty ones too, for 10 days
            conn.executemany("INSERT INTO buckets (service, bucket_start, posts, complaints) VALUES (?, ?, 0, 0)",
                             [(service, iso(T0 + timedelta(hours=1) - i * FIVE)) for i in range(2880)])
        conn.execute("UPDATE buckets SET posts = 2, complaints = 1 WHERE service IN (?, 'Gone') AND bucket_start = ?",
                     (odd, iso(T0 + 2 * FIVE)))
    start, end = T0 + FIVE, T0 + 6 * FIVE
    names = ["Gmail", "Slack", odd, "WhatsApp", "Nowhere"]
    counts = store.bucket_counts_of(names, start, end)
    assert list(counts) == names
    for name in names:  # bucket_counts' rows that counted something, each service its own
        assert counts[name] == {k: v for k, v in store.bucket_counts(name, start, end).items() if v != (0, 0)}
    assert counts[odd] == {iso(T0 + 2 * FIVE): (2, 1)} and counts["Slack"] == counts["Nowhere"] == {}
    assert counts["Gmail"] == {"2026-03-01T12:05:00+00:00": (2, 1), "2026-03-01T12:10:00+00:00": (3, 1),
                               "2026-03-01T12:15:00+00:00": (2, 0), "2026-03-01T12:20:00+00:00": (3, 1),
                               "2026-03-01T12:25:00+00:00": (2, 1)}
    lines = plans(store, lambda: store.bucket_counts_of(names, start, end))
    assert "SEARCH buckets USING INDEX sqlite_autoindex_buckets_1 (service=? AND bucket_start>? AND bucket_start<?)" \
        in lines, lines
    assert not [line for line in lines if line.startswith("SCAN buckets")], lines


def test_the_retention_guard_reads_only_the_posts_a_source_dated(store: Store) -> None:
    # Looking for the newest post a source dated, it walked posts_created_at down from the newest post and read
    # each post on the way: on a store of user reports and items without a time, every post stored, to find none
    # (1.1 s at 2.5 M posts, at each retention run).
    later = T0 + timedelta(days=30)
    store.insert_posts([Post("reports", f"r{i}", "User report: problem with WhatsApp", T0 + timedelta(minutes=i),
                             services=("WhatsApp",)) for i in range(20)]
                       + [Post("feed", f"u{i}", "whatsapp down", T0 + timedelta(minutes=i), services=("WhatsApp",),
                               undated="new") for i in range(20)], T0 + timedelta(hours=1))
    assert store.hold_prune(later, later) is None  # nothing to check the clock against
    lines = plans(store, lambda: store.hold_prune(later, later))
    assert "SCAN posts USING INDEX posts_source_dated" in lines, lines
    assert not [line for line in lines if "posts_created_at" in line], lines
    store.insert_posts([Post("feed", "old", "whatsapp down", T0 - timedelta(days=1), services=("WhatsApp",))], T0)
    held = store.hold_prune(later, later)
    assert held is not None and held["newest_post"] == iso(T0 - timedelta(days=1))


def test_a_url_env_sources_stored_links_are_scrubbed_of_its_key_in_short_transactions(store: Store) -> None:
    # At the first poll after a start, each batch of 1,000 read every post of the source and sorted them, in the
    # poll's one transaction: 750,000 posts of the source whose links held the key took minutes with the write lock
    # held, in which the other jobs failed with "database is locked".
    from miner.config import SourceConfig
    from miner.records import FetchResult

    key = "s3cretTOKEN42"
    base = f"https://feeds.example.org/u/{key}"
    store.sync_sources([SourceConfig("private", "rss", url_env="FEED_URL")])
    rows = [("private", f"{base}/items/{i}", f"{base}/items/{i}") for i in range(1300)]
    # A thread's replies share its link: more of them than a batch, so batches end between two rows of one url.
    rows += [("private", f"{base}/thread/1#{i}", f"{base}/thread/1") for i in range(1200)]
    rows += [("other", f"{base}/items/1", f"{base}/items/1")]  # another source's: not this one's key
    with store.database.transaction() as conn:
        conn.executemany("INSERT INTO posts (source, external_id, text, url, created_at, fetched_at) VALUES "
                         "(?, ?, 'down', ?, ?, ?)", [(*r, iso(T0), iso(T0)) for r in rows])
    statements: list[str] = []
    store.database.conn.set_trace_callback(statements.append)
    try:
        store.save_fetch("private", FetchResult(secrets=(key,)), T0, T0)
    finally:
        store.database.conn.set_trace_callback(None)
    held = store.database.rows("SELECT source, count(*) AS n FROM posts WHERE instr(url, ?) OR instr(external_id, ?) "
                               "GROUP BY source", (key, key))
    assert held == [{"source": "other", "n": 1}]
    assert store.database.one("SELECT count(*) AS n FROM posts WHERE url = ?",  # type: ignore[index]
                              ("https://feeds.example.org/u/[redacted]/thread/1",))["n"] == 1200
    # Urls and ids 1,000 rows a transaction (3 each), then the poll's own.
    assert [s for s in statements if s.startswith("BEGIN")] == ["BEGIN IMMEDIATE"] * 7
    reads = [s for s in statements if s.startswith("SELECT") and "instr(" in s and "FROM posts" in s]
    # The texts, which no index holds, are searched once for the rows holding the key (here none): not a batch each.
    assert len([s for s in reads if "instr(text" in s]) == 1
    reads = [s for s in reads if "instr(text" not in s]
    assert len(reads) == 8  # 3 batches and the read that finds no more, of each column
    for sql in reads:
        lines = query_plan(store.database.conn, sql)
        assert len(lines) == 1 and lines[0].startswith("SEARCH posts USING COVERING INDEX"), lines


def test_the_open_incidents_are_read_from_the_index_of_open_ones(store: Store) -> None:
    # The detector reads them each run, the alerts planner each planning pass, each metrics scrape once: before
    # migration 0037 each walked the index of opening times over every incident kept for the few open (each prune
    # batch the table).
    for i in range(6):
        ident = store.open_incident(f"s{i % 3}", T0 + i * FIVE, {"peak_complaints": 3, "total_complaints": 3}, {})
        if i % 2:
            store.update_incident(ident, T0 + i * FIVE + FIVE,
                                  {"status": "resolved", "resolved_at": T0 + i * FIVE + FIVE}, kind="resolve")
    assert [r["opened_at"] for r in store.incidents(status="open")] == [iso(T0 + i * FIVE) for i in (0, 2, 4)]
    lines = plans(store, lambda: store.incidents(status="open"))
    assert lines == ["SCAN incidents USING INDEX incidents_open"], lines
    # And each prune batch's read of the posts they cite as samples, to keep.
    lines = plans(store, lambda: store.prune_posts(T0 - timedelta(days=30)))
    assert "SCAN incidents USING INDEX incidents_open" in lines, lines

"""A crosspost stored before the post it shares (store/shares.py): when that post is stored, the copy goes with
what the store kept of it, and what cited it cites the post it shared. A real store file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from miner.records import Post, Prediction
from miner.store import Store

BUCKET = timedelta(minutes=5)
WRITTEN = datetime(2026, 11, 27, 13, 12, 40, tzinfo=UTC)
SHARED = WRITTEN + timedelta(minutes=20)


def _crosspost(ident: str, title: str) -> Post:
    return Post(source="feed", external_id=ident, text=title, created_at=SHARED, author_hash=f"h-{ident}",
                services=("WhatsApp",), shares="t3_1h10k2q")


def test_the_copy_goes_with_its_verdict_services_and_count_and_an_incident_cites_the_post_it_shared(
        tmp_path: Path) -> None:
    store = Store.open(tmp_path / "m.sqlite")
    try:
        store.insert_posts([_crosspost("t3_1h11m3c", "Is WhatsApp down right now?"),
                            _crosspost("t3_1h11m7d", "Same in Warsaw, WhatsApp web won't load")], SHARED)
        posts = store.posts_to_classify(10)
        times = store.save_classifications([(p.id, Prediction(0.9, True, None)) for p in posts], "test", None)
        store.refresh_buckets_at([datetime.fromisoformat(t) for t in times], BUCKET)
        copy = next(p.id for p in posts if p.text.startswith("Is WhatsApp"))
        conn = store.database.conn
        with store.database.transaction():
            conn.execute("INSERT INTO incidents (service, status, opened_at, updated_at, sample_post_ids) "
                         "VALUES ('WhatsApp', 'open', ?, ?, ?)", (SHARED.isoformat(), SHARED.isoformat(),
                                                                  f"[{copy}, 77]"))
            conn.execute("INSERT INTO incidents (service, status, opened_at, updated_at, sample_post_ids) "
                         "VALUES ('WhatsApp', 'resolved', ?, ?, 'not json')", (SHARED.isoformat(),
                                                                               SHARED.isoformat()))
        assert [r["complaints"] for r in store.database.rows("SELECT complaints FROM buckets")] == [2]
        store.insert_posts([Post(source="api", external_id="t3_1h10k2q", created_at=WRITTEN, author_hash="h-t",
                                 text="Is WhatsApp down right now? Messages stuck on one tick.",
                                 services=("WhatsApp",))], SHARED, BUCKET)
        row = store.database.one("SELECT id FROM posts WHERE external_id = 't3_1h10k2q'")
        shared = row["id"] if row else None
        assert [r["external_id"] for r in store.database.rows("SELECT external_id FROM posts ORDER BY id")] \
            == ["t3_1h11m7d", "t3_1h10k2q"]
        assert store.database.rows("SELECT 1 FROM classifications WHERE post_id = ?", (copy,)) == []
        assert store.database.rows("SELECT 1 FROM post_services WHERE post_id = ?", (copy,)) == []
        # The link post's bucket counts its poster alone, recounted as the copy went.
        assert [(r["bucket_start"], r["complaints"]) for r in store.database.rows("SELECT bucket_start, complaints "
                                                                               "FROM buckets")] \
            == [("2026-11-27T13:30:00+00:00", 1)]
        assert [r["sample_post_ids"] for r in store.database.rows("SELECT sample_post_ids FROM incidents "
                                                                  "ORDER BY id")] == [f"[{shared},77]", "not json"]
    finally:
        store.close()


def test_the_copies_are_looked_up_by_the_post_they_share_not_by_every_post(tmp_path: Path) -> None:
    from miner.store.shares import _COPIES

    store = Store.open(tmp_path / "m.sqlite")
    try:
        plan = [r[3].replace("SEARCH TABLE ", "SEARCH ") for r in store.database.conn.execute(
            f"EXPLAIN QUERY PLAN SELECT id FROM posts WHERE {_COPIES}", {"id": "t3_1h10k2q", "row": 1, "text": "x"})]
        assert any(p.startswith("SEARCH posts USING INDEX posts_shares (shares=?)") for p in plan), plan
    finally:
        store.close()

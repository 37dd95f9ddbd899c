"""The whole pipeline on real SQLite with the shipped model: replay, incidents, restart, reclassify, collect."""

from __future__ import annotations

import gzip
import itertools
import json
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from fakeserver import FakeServer, Recorded, Reply
from streams import CONFIG, T0, ReportsOnly, outage_reports, warmed_pipeline, write_stream

from miner.classify import Classifier
from miner.collect_stage import CollectReport
from miner.collectors import Poller
from miner.collectors.base import PollContext
from miner.collectors.reports import report_post, validate_report
from miner.collectors.rss import RssCollector
from miner.config import Config, SourceConfig, parse_config
from miner.detect import DetectorState
from miner.errors import InputError, StoreError
from miner.held_polls import HeldPolls
from miner.pipeline import REPORTS_SOURCE, Pipeline
from miner.records import Decision, FetchResult, Post, Prediction, SourceState
from miner.replay import demo_stream_path, read_posts, run_replay
from miner.store import Store
from miner.store.sources import current_warning
from miner.timeutil import floor_time, iso, parse_iso


def replay_into(db: Path, config: Config, posts: Path, classifier: Classifier, limit: int | None = None) -> None:
    store = Store.open(db)
    pipe = Pipeline(config, store, classifier)

    def posts_iter() -> Iterator[Post]:
        for n, post in enumerate(read_posts(posts)):
            if limit is not None and n >= limit:
                return
            yield post

    run_replay(posts_iter(), pipe.bucket, pipe.tick, prefetch=pipe.ingest_ahead)
    store.close()


def test_replay_opens_one_incident_for_the_burst(tmp_path: Path, classifier: Classifier,
                                                 real_posts: dict[str, list[str]]) -> None:
    config = parse_config(CONFIG)
    posts = write_stream(real_posts, tmp_path / "posts.jsonl")
    replay_into(tmp_path / "m.sqlite", config, posts, classifier)
    store = Store.open(tmp_path / "m.sqlite")
    incidents = store.incidents()
    assert [i["service"] for i in incidents] == ["MTN"]
    inc = incidents[0]
    assert inc["status"] == "resolved"
    assert inc["updated_at"] == inc["resolved_at"]  # the cool-down after the resolve changes nothing
    opened = datetime.fromisoformat(inc["opened_at"])
    assert T0 + timedelta(days=2) < opened <= T0 + timedelta(days=2, hours=1)
    assert inc["peak_complaints"] >= 5
    symptoms = json.loads(inc["symptoms"])
    assert sum(symptoms.values()) >= 5
    samples = json.loads(inc["sample_post_ids"])
    assert 1 <= len(samples) <= 5
    kinds = [e["kind"] for e in store.incident_events(inc["id"])]
    assert kinds[0] == "open" and kinds[-1] == "resolve"
    # Every stored post got exactly one verdict and the buckets add up to the posts.
    counts = store.database.one(
        "SELECT (SELECT count(*) FROM posts) AS posts, (SELECT count(*) FROM classifications) AS verdicts, "
        "(SELECT sum(posts) FROM buckets) AS bucketed, (SELECT count(*) FROM post_services) AS matched")
    assert counts is not None
    assert counts["posts"] == counts["verdicts"] == sum(1 for _ in posts.open())
    assert counts["bucketed"] == counts["matched"]
    store.close()



def test_an_incidents_samples_are_one_post_per_text_through_a_storm_of_copies(
        tmp_path: Path, classifier: Classifier, real_posts: dict[str, list[str]]) -> None:
    # 40 copies of the most confident complaint through the burst (a retweet storm) outscored every other post of
    # each bucket: all 5 stored samples, and the 3 of the summary, were that one text.
    posts = write_stream(real_posts, tmp_path / "posts.jsonl")
    rows = [json.loads(line) for line in posts.open(encoding="utf-8")]
    burst = T0 + timedelta(days=2, minutes=5)
    rows += [{"id": f"rt{k}", "text": real_posts["mtn_outage"][0], "source": "test",
              "created_at": (burst + timedelta(minutes=k + 0.25)).isoformat()} for k in range(40)]
    posts.write_text("".join(json.dumps(r) + "\n" for r in sorted(rows, key=lambda r: r["created_at"])))
    replay_into(tmp_path / "m.sqlite", parse_config(CONFIG), posts, classifier)
    store = Store.open(tmp_path / "m.sqlite")
    [inc] = store.incidents()
    texts = [p["text"] for p in store.posts_by_id(json.loads(inc["sample_post_ids"]))]
    assert len(texts) == 5 and len(set(texts)) == 5, texts
    assert real_posts["mtn_outage"][0] in texts  # the storm's text is among them, once
    store.close()

def test_interrupted_replay_resumes_without_reopening(tmp_path: Path, classifier: Classifier,
                                                      real_posts: dict[str, list[str]]) -> None:
    config = parse_config(CONFIG)
    posts = write_stream(real_posts, tmp_path / "posts.jsonl")
    total = sum(1 for _ in posts.open())
    db = tmp_path / "m.sqlite"
    replay_into(db, config, posts, classifier, limit=total - 10)  # stops in the middle of the burst
    replay_into(db, config, posts, classifier)  # the restart replays everything again
    store = Store.open(db)
    assert store.database.one("SELECT count(*) AS n FROM posts")["n"] == total  # type: ignore[index]
    incidents = store.incidents()
    assert len(incidents) == 1
    assert [e["kind"] for e in store.incident_events(incidents[0]["id"])].count("open") == 1
    store.close()


def test_simultaneous_openings_of_a_group_become_one_grouped_incident(
        tmp_path: Path, classifier: Classifier, real_posts: dict[str, list[str]]) -> None:
    config = parse_config(CONFIG + '\n[[groups]]\nname = "Uganda mobile"\nservices = ["MTN", "Airtel"]\n'
                          'cause = "shared transmission network"\n')
    posts = write_stream(real_posts, tmp_path / "posts.jsonl", both=True)
    replay_into(tmp_path / "m.sqlite", config, posts, classifier)
    store = Store.open(tmp_path / "m.sqlite")
    incidents = store.incidents()
    assert sorted(i["service"] for i in incidents) == ["Airtel", "MTN"]
    assert incidents[0]["group_id"] is not None and incidents[0]["group_id"] == incidents[1]["group_id"]
    group = store.database.one("SELECT name, cause, services FROM incident_groups")
    assert group is not None and group["name"] == "Uganda mobile"
    assert sorted(json.loads(group["services"])) == ["Airtel", "MTN"]
    assert all("group" in [e["kind"] for e in store.incident_events(i["id"])] for i in incidents)
    store.close()


ACME = """
[[services]]
name = "Foonet"
[[services]]
name = "Zedtv"
[[services]]
name = "Barmail"
provider = "Acme"
[[services]]
name = "Bazdrive"
provider = "Acme"
[[services]]
name = "Quxpay"
provider = "Acme"

[[groups]]
name = "AcmeCore"
services = ["Barmail", "Bazdrive"]
cause = "shared auth backend"

[detector]
bucket_minutes = 15
"""


def replay_reports(db: Path, bursts: dict[str, list[tuple[float, float]]]) -> Store:
    """Replay two quiet days of an occasional user report per service, then, for each (start, end) in hours
    after those days, 30 reports per 15-minute bucket about that service. Returns the store, open."""
    config = parse_config(ACME)
    posts: list[Post] = []
    end = T0 + timedelta(days=2)
    for n, svc in enumerate(s.name for s in config.services):
        t = T0 + timedelta(minutes=7 * n)
        while t < end:
            posts.append(Post("reports", f"q{len(posts)}", f"problem with {svc}", t, services=(svc,)))
            t += timedelta(minutes=170)
    for svc, spans in bursts.items():
        for start, stop in spans:
            t = end + timedelta(hours=start)
            while t < end + timedelta(hours=stop):
                posts.append(Post("reports", f"b{len(posts)}", f"{svc} is down", t, services=(svc,)))
                t += timedelta(seconds=30)
    posts.sort(key=lambda p: p.created_at)
    store = Store.open(db)
    pipe = Pipeline(config, store, ReportsOnly())  # type: ignore[arg-type]
    run_replay(posts, pipe.bucket, pipe.tick, prefetch=pipe.ingest_ahead)
    return store


def test_services_of_a_configured_group_and_a_provider_opening_together_get_one_group(tmp_path: Path) -> None:
    # Barmail and Bazdrive are both in the configured AcmeCore and in the provider Acme (with Quxpay).
    store = replay_reports(tmp_path / "m.sqlite", {"Barmail": [(0, 1)], "Bazdrive": [(0, 1)]})
    incidents = store.incidents()
    assert sorted(i["service"] for i in incidents) == ["Barmail", "Bazdrive"]
    groups = store.database.rows("SELECT id, name, services FROM incident_groups")
    assert [(g["name"], sorted(json.loads(g["services"]))) for g in groups] == [
        ("AcmeCore", ["Barmail", "Bazdrive"])]  # the configured group comes first
    assert {i["group_id"] for i in incidents} == {groups[0]["id"]}
    for inc in incidents:
        assert [e["kind"] for e in store.incident_events(inc["id"])].count("group") == 1
    store.close()


def test_a_reopened_incident_is_grouped_with_a_new_opening(tmp_path: Path) -> None:
    # Bazdrive's first outage resolves; it comes back within the cool-down together with Barmail.
    store = replay_reports(tmp_path / "m.sqlite", {"Bazdrive": [(0, 1), (4, 5)], "Barmail": [(4, 5)]})
    incidents = {i["service"]: i for i in store.incidents()}
    assert sorted(incidents) == ["Barmail", "Bazdrive"]
    reasons = [json.loads(e["details"]).get("reason") for e in store.incident_events(incidents["Bazdrive"]["id"])]
    assert "reopened" in reasons
    groups = store.database.rows("SELECT id, name FROM incident_groups")
    assert [g["name"] for g in groups] == ["AcmeCore"]
    assert incidents["Barmail"]["group_id"] == incidents["Bazdrive"]["group_id"] == groups[0]["id"]
    store.close()


ACME_ONLY = """
[[services]]
name = "Barmail"
provider = "Acme"
[[services]]
name = "Bazdrive"
provider = "Acme"

[detector]
bucket_minutes = 15
warmup_hours = 1
"""


def test_services_opening_together_hours_before_a_catching_up_run_get_one_group(store: Store) -> None:
    pipe = warmed_pipeline(ACME_ONLY, store)
    # The service was down for two hours; back, its first run steps them, with the posts collect stored meanwhile.
    start = T0 + timedelta(hours=3, minutes=15)
    now = T0 + timedelta(hours=5)
    pipe.ingest([*outage_reports("Barmail", start, start + timedelta(hours=1)),
                 *outage_reports("Bazdrive", start, start + timedelta(hours=1))], now)
    pipe.classify_pending(now)
    report = pipe.detect(now)
    assert sorted(report.opened) == [("Barmail", start + timedelta(minutes=30)),
                                     ("Bazdrive", start + timedelta(minutes=30))]
    groups = store.database.rows("SELECT id, name, services FROM incident_groups")
    assert [(g["name"], sorted(json.loads(g["services"]))) for g in groups] == [("Acme", ["Barmail", "Bazdrive"])]
    assert {i["group_id"] for i in store.incidents()} == {groups[0]["id"]}


def test_replayed_posts_and_user_reports_keep_no_handle_of_a_person(tmp_path: Path) -> None:
    config = parse_config(CONFIG)
    store = Store.open(tmp_path / "m.sqlite")
    pipe = Pipeline(config, store)
    report = report_post(validate_report({"service": "MTN", "text": "@jane_k no calls, u/jane_k too; @mtnug?"},
                                         config.services), T0)
    pipe.ingest([Post("recorded", "1", "@bob_k same, @mtnug network down", T0), report], T0)
    rows = store.database.rows("SELECT p.text, ps.service FROM posts p JOIN post_services ps ON ps.post_id = p.id "
                               "ORDER BY p.id")
    assert [(r["text"], r["service"]) for r in rows] == [
        ("@[user] same, @mtnug network down", "MTN"),
        ("User report: problem with MTN. @[user] no calls, u/[user] too; @mtnug?", "MTN")]
    store.close()


def test_reclassify_since_uses_current_model(tmp_path: Path, classifier: Classifier,
                                             real_posts: dict[str, list[str]]) -> None:
    config = parse_config(CONFIG)
    store = Store.open(tmp_path / "m.sqlite")
    pipe = Pipeline(config, store, classifier)
    pipe.ingest([Post("test", str(i), text, T0 + timedelta(hours=i)) for i, text in
                 enumerate(real_posts["mtn_outage"][:4])], T0)
    store.save_classifications([(i, pred) for i, pred in zip(
        [1, 2, 3, 4], classifier.predict(["x"] * 4), strict=True)], "old-model", T0)
    assert pipe.classify_pending(T0) == 0
    assert pipe.reclassify_since(T0 + timedelta(hours=2), lambda: T0) == 2
    rows = store.database.rows("SELECT post_id, model_version FROM classifications ORDER BY post_id, model_version")
    assert [(r["post_id"], r["model_version"]) for r in rows] == [
        (1, "old-model"), (2, "old-model"), (3, classifier.version), (3, "old-model"),
        (4, classifier.version), (4, "old-model")]
    store.close()


def test_reclassify_beside_the_service_leaves_no_post_without_a_verdict(tmp_path: Path) -> None:
    # `miner reclassify` gave first verdicts to the posts the service had not classified yet: the highest classified
    # id passed a post of the same poll dated before --since, and the service, which classifies the posts past that
    # id, never classified it.
    config = parse_config(CONFIG)
    db = tmp_path / "m.sqlite"
    service_store, cli_store = Store.open(db), Store.open(db)
    service = Pipeline(config, service_store, _Verdict("v1", outage=False))
    service.ingest([Post("feed", str(i), "MTN is down", T0 + timedelta(hours=i)) for i in range(3)], T0)
    assert service.classify_pending(T0) == 3
    service.ingest([Post("feed", "old", "MTN is down", T0 - timedelta(days=3)),  # dated before --since
                    Post("feed", "new", "MTN is down", T0 + timedelta(hours=5))], T0)
    cli = Pipeline(config, cli_store, _Verdict("v2", outage=True))
    assert cli.reclassify_since(T0 - timedelta(days=1), lambda: T0) == 3
    assert service.classify_pending(T0) == 2
    rows = service_store.database.rows(
        "SELECT p.external_id AS post, group_concat(c.model_version) AS versions FROM posts p "
        "LEFT JOIN classifications c ON c.post_id = p.id GROUP BY p.id ORDER BY p.id")
    assert [(r["post"], sorted((r["versions"] or "").split(","))) for r in rows] == [
        ("0", ["v1", "v2"]), ("1", ["v1", "v2"]), ("2", ["v1", "v2"]), ("old", ["v1"]), ("new", ["v1"])]
    assert service_store.queue_depths()["classify"] == 0
    assert cli.reclassify_since(T0 - timedelta(days=1), lambda: T0) == 1  # the new post, now that it has a verdict
    service_store.close()
    cli_store.close()


def test_user_reports_count_as_complaints_without_the_model(tmp_path: Path) -> None:
    config = parse_config(CONFIG)
    store = Store.open(tmp_path / "m.sqlite")

    class NoModel:
        version = "unused"

        def predict(self, texts: list[str]) -> list[object]:
            raise AssertionError("reports must not be sent to the model")

    pipe = Pipeline(config, store, NoModel())  # type: ignore[arg-type]
    pipe.ingest([Post("reports", "r1", "User report: problem with MTN", T0, services=("MTN",),
                      symptom_hint="calls")], T0)
    assert pipe.classify_pending(T0) == 1
    row = store.database.one("SELECT outage, symptom, model_version FROM classifications")
    assert row == {"outage": 1, "symptom": "calls", "model_version": "reports"}
    store.close()


def test_bundled_stream_is_sorted_and_complete() -> None:
    with gzip.open(demo_stream_path(), "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    assert len(rows) == 5355
    assert [r["created_at"] for r in rows] == sorted(r["created_at"] for r in rows)


class _UnstorablePoll:
    """A collector with a bug: its post holds half a UTF-16 pair, which SQLite refuses to store."""

    def poll(self, source: SourceConfig, state: SourceState, ctx: PollContext) -> FetchResult:
        return FetchResult(posts=[Post(source.name, "x1", "broken \ud800 post", ctx.now())])


def test_a_poll_the_store_refuses_fails_its_source_not_the_round(store: Store) -> None:
    with FakeServer() as server:
        server.serve_fixture("/forum.rss", "rss/forum_latest.rss")
        config = parse_config(f"""
[[sources]]
name = "buggy"
type = "hackernews"
query = "down"
[[sources]]
name = "forum"
type = "rss"
url = "{server.url}/forum.rss"
""")
        collectors = {"rss": RssCollector(), "hackernews": _UnstorablePoll()}
        with Poller(config.collect, hash_key=b"k", collectors=collectors) as poller:
            reports = {r.source: r for r in Pipeline(config, store).collect(T0, poller, due_only=False)}
    assert reports["forum"].error is None and reports["forum"].stored > 0
    assert (reports["buggy"].error or "").startswith("internal error storing the poll: UnicodeEncodeError")
    row = store.source_row("buggy")
    assert row is not None and row["consecutive_failures"] == 1 and row["next_poll_at"] > iso(T0)


def test_retry_after_and_backoff_count_from_the_answer_not_from_the_rounds_start(store: Store) -> None:
    # One worker: the 429 and the 500 answer behind a poll 3 s slow, as in a round of many sources. Counted from the
    # round's start, a Retry-After of 20 s had 3 s of it spent before the answer came, and a hanging server's
    # timeout longer than the backoff had the source polled again at the very next round.
    with FakeServer() as server:
        server.fault("/slow.rss", "slow", fixture="rss/forum_latest.rss", delay=3.0)
        server.fault("/limited.rss", "429", retry_after="20")
        server.fault("/broken.rss", "500")
        config = parse_config("""
[collect]
max_workers = 1
backoff_base = 15.0
backoff_jitter = 0.0
""" + "".join(f"""
[[sources]]
name = "{name}"
type = "rss"
url = "{server.url}/{name}.rss"
interval = 10
""" for name in ("slow", "limited", "broken")))
        with Poller(config.collect, hash_key=b"k") as poller:
            reports = {r.source: r for r in Pipeline(config, store).collect(T0, poller, due_only=False)}
    assert reports["slow"].error is None and reports["slow"].next_poll_at == T0 + timedelta(seconds=10)
    assert reports["limited"].next_poll_at >= T0 + timedelta(seconds=23)
    assert reports["broken"].next_poll_at >= T0 + timedelta(seconds=18)
    for name in ("limited", "broken"):
        row = store.source_row(name)
        assert row is not None and parse_iso(row["next_poll_at"]) == reports[name].next_poll_at.replace(microsecond=0)
        assert row["last_poll_at"] == iso(T0)


def test_a_replay_stopped_by_a_bad_post_says_what_it_stored_and_a_rerun_is_safe(
        tmp_path: Path, classifier: Classifier) -> None:
    store = Store.open(tmp_path / "m.sqlite")
    pipe = Pipeline(parse_config(CONFIG), store, classifier)
    posts = [Post(source="s", external_id=str(n), text=f"mtn down {n}", created_at=T0 + timedelta(minutes=7 * n))
             for n in range(6)]
    unsorted = [*posts[:4], posts[5], posts[4]]
    # 15-minute buckets, stored 3 posts ahead: the first tick's 3 posts were stored when post 4 came.
    with pytest.raises(InputError, match=r"not in time order.*\(the 3 posts before it were stored; replaying the "
                                         r"corrected file into the same store is safe"):
        run_replay(unsorted, pipe.bucket, pipe.tick, prefetch=pipe.ingest_ahead, chunk=3)
    assert store.database.one("SELECT count(*) AS n FROM posts")["n"] == 3  # type: ignore[index]
    run_replay(posts, pipe.bucket, pipe.tick, prefetch=pipe.ingest_ahead, chunk=2)
    assert store.database.one("SELECT count(*) AS n FROM posts")["n"] == 6  # type: ignore[index]
    with pytest.raises(InputError, match=r"comes 400 days after .*\(nothing was stored\)"):
        run_replay([posts[0], replace(posts[1], created_at=T0 + timedelta(days=400))], pipe.bucket, pipe.tick)
    store.close()


def test_many_posts_in_one_bucket_are_stored_in_pieces_before_their_tick_runs_once(
        tmp_path: Path, classifier: Classifier) -> None:
    # A bucket's posts were held and stored as one batch: the whole file, for one whose posts all share a second
    # (200,000 of them took 200 MB more).
    stream = tmp_path / "s.jsonl"
    with stream.open("w", encoding="utf-8") as f:
        for n in range(1000):
            f.write(json.dumps({"id": str(n), "text": "mtn down", "created_at": iso(T0), "source": "s"}) + "\n")
        f.write(json.dumps({"id": "later", "text": "mtn down", "created_at": iso(T0 + timedelta(hours=1)),
                            "source": "s"}) + "\n")
    store = Store.open(tmp_path / "m.sqlite")
    pipe = Pipeline(parse_config(CONFIG), store, classifier)
    pieces: list[int] = []
    ticks: list[tuple[datetime, int]] = []

    def prefetch(arrivals: list[tuple[datetime, list[Post]]]) -> None:
        pieces.append(sum(len(batch) for _, batch in arrivals))
        pipe.ingest_ahead(arrivals)

    def tick(now: datetime, arrived: list[Post]) -> None:
        row = store.database.one("SELECT count(*) AS n FROM posts WHERE created_at < ?", (iso(now),))
        ticks.append((now, row["n"] if row else 0))
        pipe.tick(now, arrived)

    stats = run_replay(read_posts(stream), pipe.bucket, tick, prefetch=prefetch, chunk=100)
    assert stats.posts == 1001 and sum(pieces) == 1001 and max(pieces) < 200, pieces
    first = T0 + pipe.bucket
    assert [n for at, n in ticks if at == first] == [1000]  # once, with the whole bucket stored
    store.close()


def _forum_config(server: FakeServer, head: str = CONFIG, extra: str = "") -> Config:
    """``head`` (the services) and one RSS source, "forum", at ``server``'s /forum.rss."""
    return parse_config(f'{head}\n[[sources]]\nname = "forum"\ntype = "rss"\nurl = "{server.url}/forum.rss"\n{extra}')


def _rss(*items: tuple[str, str, datetime]) -> Reply:
    body = "".join(f"<item><guid>{guid}</guid><title>{text}</title><description>{text}</description>"
                   f"<pubDate>{format_datetime(at)}</pubDate></item>" for guid, text, at in items)
    return Reply(200, f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{body}</channel></rss>'
                 .encode(), content_type="application/rss+xml")


def _undated_rss(*items: tuple[str, str]) -> Reply:
    body = "".join(f"<item><guid>{guid}</guid><title>{text}</title></item>" for guid, text in items)
    return Reply(200, f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{body}</channel></rss>'
                 .encode(), content_type="application/rss+xml")


def test_a_feeds_undated_backlog_is_stored_but_counted_in_no_bucket(store: Store,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    # Entries without a date are dated when fetched: a feed added to a warmed-up service put its whole backlog in
    # the bucket of its first poll (and of the first poll after an outage), a spike that could open an incident.
    backlog = [(f"old{n}", f"mtn is down {n}") for n in range(20)]
    counts = "SELECT posts, complaints FROM buckets WHERE service = 'MTN' AND bucket_start = ?"
    undated = "SELECT external_id, undated FROM posts WHERE external_id LIKE '%/' || ? ORDER BY id"
    with FakeServer() as server:
        server.serve("/forum.rss", _undated_rss(*backlog))
        config = _forum_config(server)
        pipe = Pipeline(config, store, _Verdict("v1", outage=True))  # type: ignore[arg-type]
        with Poller(config.collect, config.services, hash_key=b"k") as poller:
            def poll(at: datetime) -> CollectReport:
                poller.ctx.now = lambda: at
                (report,) = pipe.collect(at, poller, due_only=False)
                pipe.classify_pending(at)
                return report

            with caplog.at_level("WARNING", logger="miner.pipeline"):
                assert poll(T0).stored == 20
            assert [r["undated"] for r in store.database.rows(undated, ("old%",))] == ["backlog"] * 20
            assert store.database.one(counts, (iso(T0),)) in (None, {"posts": 0, "complaints": 0})
            [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
            assert "20 new items without a date on the source's first poll" in warning
            assert "counted in no bucket" in (store.source_row("forum") or {})["last_warning"]
            # Polled again on its interval, what is new was posted since the last poll: dated now, and counted.
            server.serve("/forum.rss", _undated_rss(("new1", "mtn is down here"), ("new2", "mtn down"), *backlog))
            assert poll(T0 + timedelta(minutes=5)).stored == 2
            assert [r["undated"] for r in store.database.rows(undated, ("new%",))] == ["new"] * 2
            assert store.database.one(counts, (iso(T0),)) == {"posts": 2, "complaints": 2}
            # After three hours without a successful poll, what is new may be from any time in them.
            server.serve("/forum.rss", _undated_rss(("late1", "mtn is down"), ("new1", "mtn is down here")))
            later = T0 + timedelta(hours=3, minutes=5)
            assert poll(later).stored == 1
            assert "after 3 h 00 min without a successful poll" in (store.source_row("forum") or {})["last_warning"]
            assert [r["undated"] for r in store.database.rows(undated, ("late%",))] == ["backlog"]
            assert store.database.one(counts, (iso(floor_time(later, pipe.bucket)),)) in (
                None, {"posts": 0, "complaints": 0})
        # The feed at another url is a new feed: its backlog is no news either.
        moved_config = replace(config, sources=(replace(config.sources[0], url=f"{server.url}/forum.rss?page=1"),))
        pipe = Pipeline(moved_config, store, _Verdict("v1", outage=True))  # type: ignore[arg-type]
        server.serve("/forum.rss", _undated_rss(("moved1", "mtn is down")))
        with Poller(moved_config.collect, moved_config.services, hash_key=b"k") as poller:
            poller.ctx.now = lambda: later + timedelta(minutes=5)
            pipe.collect(later + timedelta(minutes=5), poller, due_only=False)
    assert [r["undated"] for r in store.database.rows(undated, ("moved%",))] == ["backlog"]


def test_a_retention_prune_by_a_clock_ahead_is_held_even_when_a_source_dates_its_posts_further_ahead(
        store: Store) -> None:
    # A post's time more than 10 minutes after our clock's is replaced by our clock's: a feed whose server dates its
    # items a year ahead had each one dated by a clock 45 days ahead, after that clock's cutoff, so the guard took
    # the clock to be right and the prune deleted every other post, for good.
    real = datetime.now(UTC).replace(microsecond=0)
    ahead = real + timedelta(days=45)
    store.insert_posts([Post("telecom-feed", str(days), "MTN is down", real - timedelta(days=days), services=("MTN",))
                        for days in (1, 10, 40)], real)
    with FakeServer() as server:
        server.serve("/forum.rss", _rss(("next-year", "mtn is down", real + timedelta(days=365))))
        config = _forum_config(server)
        with Poller(config.collect, config.services, hash_key=b"k") as poller:
            poller.ctx.now = lambda: ahead
            (report,) = Pipeline(config, store).collect(ahead, poller, due_only=False)
    assert report.error is None and report.stored == 1
    assert store.database.one("SELECT created_at FROM posts WHERE source = 'forum'") == {"created_at": iso(ahead)}
    held = store.hold_prune(ahead - timedelta(days=30), ahead)
    assert held is not None and parse_iso(held["newest_post"]) == real - timedelta(days=1)
    assert store.prune_held() == held
    # Set right, the clock's cutoff is before the posts that sources dated: the prune goes on.
    assert store.hold_prune(real - timedelta(days=30), real) is None and store.prune_held() is None


def test_a_warning_stands_with_its_time_until_a_poll_reads_the_source_without_it(store: Store) -> None:
    # The last warning was kept forever and without a time (coalesce on every poll): a feed whose encoding had been
    # put right, or that had been moved in feeds.toml, still showed a warning that no longer held.
    at0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)  # after the fixture's entries: none is dated in the future
    with FakeServer() as server:
        server.serve_fixture("/forum.rss", "rss/wrong_encoding.rss", content_type="application/rss+xml")
        config = _forum_config(server)
        pipe = Pipeline(config, store)
        with Poller(config.collect, config.services, hash_key=b"k") as poller:
            def poll(at: datetime, not_modified: bool = False) -> tuple[str, datetime | None] | None:
                poller.ctx.now = lambda: at
                (report,) = pipe.collect(at, poller, due_only=False)
                assert report.error is None and report.not_modified == not_modified
                return current_warning(store.source_row("forum") or {})

            warned = poll(at0)
            assert warned is not None and "CharacterEncodingOverride" in warned[0] and warned[1] == at0
            # Answered 304: nothing was read, so the same content's warning still holds, seen when it was.
            assert poll(at0 + timedelta(minutes=5), not_modified=True) == warned
            fixed = server.fixture_bytes("rss/wrong_encoding.rss").replace(b'"us-ascii"', b'"utf-8"', 1)
            server.serve("/forum.rss", Reply(200, fixed, content_type="application/rss+xml"))
            assert poll(at0 + timedelta(minutes=10)) is None
            # Kept as history: what it was, when last seen, and when a poll first read the source without it.
            row = store.source_row("forum") or {}
            assert (row["last_warning"], row["last_warning_at"], row["warning_cleared_at"]) == \
                (warned[0], iso(at0), iso(at0 + timedelta(minutes=10)))
            assert poll(at0 + timedelta(minutes=15)) is None
            assert (store.source_row("forum") or {})["warning_cleared_at"] == iso(at0 + timedelta(minutes=10))
            server.serve_fixture("/forum.rss", "rss/wrong_encoding.rss", content_type="application/rss+xml",
                                 validators=False)
            assert poll(at0 + timedelta(hours=1)) == (warned[0], at0 + timedelta(hours=1))


def test_a_feed_still_listing_pruned_posts_leaves_them_and_their_kept_buckets_alone(
        store: Store, classifier: Classifier) -> None:
    old = T0 - timedelta(days=40)  # retention_days is 30
    posts = [(f"p{n}", f"mtn network is down, no calls since morning {n}", old + timedelta(minutes=n))
             for n in range(3)]
    bucket_sql = "SELECT posts, complaints FROM buckets WHERE service = 'MTN' AND bucket_start = ?"
    with FakeServer() as server:
        server.serve("/forum.rss", _rss(*posts))
        config = _forum_config(server)
        pipe = Pipeline(config, store, classifier)
        with Poller(config.collect, config.services, hash_key=b"k") as poller:
            pipe.collect(old + timedelta(hours=1), poller, due_only=False)
            pipe.classify_pending(old + timedelta(hours=1))
            kept = store.database.one(bucket_sql, (iso(old),))
            assert kept is not None and kept["posts"] == 3
            assert store.prune_posts(T0 - timedelta(days=30)) == 3
            # Weeks later the feed still lists one of those posts, next to a new one.
            server.serve("/forum.rss", _rss(("new", "mtn is down here too", T0 - timedelta(minutes=5)), posts[2]))
            (report,) = pipe.collect(T0, poller, due_only=False)
            pipe.classify_pending(T0)
    assert (report.stored, report.duplicates, report.too_old) == (1, 0, 1)
    assert store.database.one(bucket_sql, (iso(old),)) == kept  # not recounted from the one post listed


def test_a_prune_shorter_than_retention_keeps_the_pruned_days_buckets_when_a_feed_lists_an_old_post(
        store: Store, classifier: Classifier) -> None:
    # `miner prune --days 2` with retention_days 30: the feed still lists a post of three days ago.
    days = [T0 - timedelta(days=d) for d in (4, 3)] + [T0 - timedelta(days=2, minutes=-m) for m in (0, 5, 10)]
    posts = [(f"{service}{n}", f"{service} network is down, no calls since morning {n}", at)
             for n, at in enumerate([*days, T0 - timedelta(days=1)]) for service in ("mtn", "airtel")]
    cutoff = T0 - timedelta(days=2) + timedelta(minutes=7)  # inside the 15-minute bucket of three posts each
    buckets_sql = "SELECT service, bucket_start, posts, complaints FROM buckets WHERE bucket_start < ? ORDER BY 1, 2"
    with FakeServer() as server:
        server.serve("/forum.rss", _rss(*posts))
        config = _forum_config(server)
        pipe = Pipeline(config, store, classifier)
        with Poller(config.collect, config.services, hash_key=b"k") as poller:
            pipe.collect(T0 - timedelta(hours=12), poller, due_only=False)
            pipe.classify_pending(T0 - timedelta(hours=12))
            kept = store.database.rows(buckets_sql, (iso(cutoff + timedelta(minutes=8)),))
            assert [(r["service"], r["posts"]) for r in kept] == [("Airtel", 1), ("Airtel", 1), ("Airtel", 3),
                                                                  ("MTN", 1), ("MTN", 1), ("MTN", 3)]
            assert store.prune_posts(cutoff) == 2 * 4
            server.serve("/forum.rss", _rss(("new", "mtn is down here too", T0 - timedelta(minutes=5)), posts[2]))
            (report,) = pipe.collect(T0, poller, due_only=False)
            pipe.classify_pending(T0)
    assert store.database.rows(buckets_sql, (iso(cutoff + timedelta(minutes=8)),)) == kept
    assert (report.stored, report.duplicates, report.too_old) == (1, 0, 1)  # the pruned post is not stored again
    assert store.database.one("SELECT 1 FROM posts WHERE external_id = ?", (posts[2][0],)) is None


def test_a_prune_cutoff_recorded_by_a_clock_that_was_ahead_is_taken_back_once_it_is_set_back(
        store: Store, classifier: Classifier, caplog: pytest.LogCaptureFixture) -> None:
    # The clock a year ahead for over a month: the retention job deleted a user report that clock had dated, and
    # recorded its cutoff 11 months ahead of real time (as any prune by such a clock did before). Once the clock
    # was set right, every post was dropped as pruned until real time got there.
    ahead = T0 + timedelta(days=365)
    pipe = Pipeline(parse_config(CONFIG), store, classifier)
    pipe.ingest([Post("reports", "r1", "MTN is down", ahead - timedelta(days=31), services=("MTN",))],
                ahead - timedelta(days=31))
    assert store.prune_posts(ahead - timedelta(days=30)) == 1
    now = T0 + timedelta(minutes=10)  # set right
    with FakeServer() as server:
        server.serve("/forum.rss", _rss(("new", "mtn network is down, no calls", T0 + timedelta(minutes=5))))
        config = _forum_config(server)
        pipe = Pipeline(config, store, classifier)
        with Poller(config.collect, config.services, hash_key=b"k") as poller, \
                caplog.at_level("WARNING", logger="miner.pipeline"):
            (report,) = pipe.collect(now, poller, due_only=False)
            pipe.collect(now + timedelta(minutes=1), poller, due_only=False)
    assert (report.stored, report.duplicates) == (1, 0)
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]  # once, not every run
    assert warning == ("the clock was ahead: a prune recorded its cutoff at 2027-01-02T00:00:01+00:00, so every "
                       "post dated before it was dropped as pruned; it is taken back to 2026-02-02T00:00:00+00:00, "
                       "the bucket in progress")
    assert store.pruned_before() == T0
    pipe.classify_pending(now)
    assert [b["posts"] for b in store.series("MTN", T0, now)] == [1]  # counted in the bucket in progress


def test_a_prune_cutoff_is_not_taken_back_by_a_clock_behind_the_store(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    # A right clock pruned the posts older than 30 days; the clock is now two months behind (a board without a
    # real-time clock started before NTP set it). Taken for a clock that had been ahead, the cutoff went back to
    # two months before real time: once the clock was right, the pruned days' buckets (kept longer than their
    # posts) were no longer final, and a recount or a feed still listing their posts changed them.
    pipe = Pipeline(parse_config(CONFIG), store)
    pipe.ingest([Post("forum", "old", "mtn is down", T0 - timedelta(days=31), services=("MTN",)),
                 Post("forum", "new", "mtn is down", T0 - timedelta(minutes=5), services=("MTN",))], T0)
    assert store.prune_posts(T0 - timedelta(days=30)) == 1
    cutoff = store.pruned_before()
    behind = T0 - timedelta(days=60)
    with FakeServer() as server:
        server.serve("/forum.rss", _rss())
        config = _forum_config(server)
        with Poller(config.collect, config.services, hash_key=b"k") as poller, \
                caplog.at_level("WARNING", logger="miner.pipeline"):
            poller.ctx.now = lambda: behind
            Pipeline(config, store).collect(behind, poller, due_only=False)
    assert cutoff is not None and store.pruned_before() == cutoff
    assert not [r for r in caplog.records if "clock was ahead" in r.getMessage()]


def test_sources_polled_by_a_clock_that_was_ahead_are_polled_again_once_it_is_set_back(store: Store) -> None:
    with FakeServer() as server:
        server.serve_fixture("/forum.rss", "rss/forum_latest.rss")
        config = _forum_config(server, head="", extra="interval = 300\n")
        pipe = Pipeline(config, store)
        with Poller(config.collect, hash_key=b"k") as poller:
            assert [r.source for r in pipe.collect(T0 + timedelta(hours=2), poller)] == ["forum"]  # clock 2 h ahead
            # Set right: the next poll was planned for 2 h 5 min from now.
            assert [r.source for r in pipe.collect(T0, poller)] == ["forum"]
            assert pipe.collect(T0 + timedelta(minutes=1), poller) == []  # back on its interval
            assert [r.source for r in pipe.collect(T0 + timedelta(minutes=5), poller)] == ["forum"]


def test_a_store_taking_no_writes_fails_the_round_with_one_error_and_no_traceback(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    # A full disk, or here another writer taking the lock while the source is polled: every collect run logged a
    # traceback per source.
    store.database.conn.execute("PRAGMA busy_timeout = 50")
    other = Store.open(store.database.path)
    with FakeServer() as server:
        feed = server.fixture_reply("rss/forum_latest.rss")

        def lock_then_reply(request: Recorded) -> Reply:
            other.database.conn.execute("BEGIN IMMEDIATE")
            return feed(request)

        server.serve("/forum.rss", lock_then_reply)
        config = _forum_config(server, head="")
        try:
            with Poller(config.collect, hash_key=b"k") as poller, pytest.raises(StoreError, match="is locked"):
                Pipeline(config, store).collect(T0, poller)
        finally:
            other.database.conn.execute("ROLLBACK")
            other.close()
    assert not [r for r in caplog.records if r.exc_info]
    row = store.source_row("forum")
    assert row is not None and row["polls"] == 0  # nothing of the poll stored: due again at the next run


def numbered_feed(first: int, last: int) -> bytes:
    """An RSS feed listing items ``first`` to ``last - 1``, newest first, as a feed lists its latest items; each
    takes a page of the store of its own."""
    items = "".join(f"<item><guid>item-{n}</guid><title>WhatsApp is down {n}</title><description>{'x' * 2000}"
                    f"</description><pubDate>{format_datetime(T0 + timedelta(seconds=n))}</pubDate></item>"
                    for n in reversed(range(first, last)))
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{items}</channel></rss>'.encode()


def fill(store: Store, full: bool) -> None:
    """A store on a full disk: no write may add a page (SQLite's own limit, on this connection only)."""
    pages = store.database.one("PRAGMA page_count")["page_count"] if full else 1 << 30  # type: ignore[index]
    store.database.conn.execute(f"PRAGMA max_page_count = {pages}")


def test_polls_the_store_does_not_take_are_held_and_stored_once_it_takes_writes(store: Store) -> None:
    # On a full disk every due source's poll was thrown away at every round (each 15 s) without a count, and each
    # source was polled again at every round whatever its interval, since no poll was recorded.
    windows = iter([(0, 4), (2, 7)])  # the second poll lists items the first did, and newer ones
    with FakeServer() as server:
        server.serve("/feed.rss", lambda request: Reply(200, numbered_feed(*next(windows)),
                                                        content_type="application/rss+xml"))
        config = parse_config('[[services]]\nname = "WhatsApp"\n'
                              f'[[sources]]\nname = "feed"\ntype = "rss"\nurl = "{server.url}/feed.rss"\n'
                              "interval = 60\n")
        pipe = Pipeline(config, store)
        held = HeldPolls()
        fill(store, full=True)
        with Poller(config.collect, hash_key=b"k") as poller:
            (report,) = pipe.collect(T0, poller, held=held)
            assert (report.stored, report.held, report.error) == (0, 4, None)
            assert "disk full" in str(held.store_error)
            assert held.describe().startswith("4 posts of 1 poll are held in memory until the store takes them")
            assert pipe.collect(T0 + timedelta(seconds=15), poller, held=held) == []  # polled on its interval
            assert len(server.requests_to("/feed.rss")) == 1
            (report,) = pipe.collect(T0 + timedelta(seconds=61), poller, held=held)
            assert (report.held, report.duplicates) == (3, 2)  # items 2 and 3 are held already
            assert _stored_posts(store.database.path, "feed") == 0
            assert store.source_row("feed")["polls"] == 0  # type: ignore[index]

            fill(store, full=False)  # space freed
            reports = pipe.collect(T0 + timedelta(seconds=75), poller, held=held)
            assert [(r.late, r.stored) for r in reports] == [(True, 4), (True, 3)]  # nothing is polled: not due
            assert len(server.requests_to("/feed.rss")) == 2
    assert held.store_error is None and not held.polls
    assert _stored_posts(store.database.path, "feed") == 7
    row = store.source_row("feed")
    assert row is not None and row["polls"] == 2
    assert row["next_poll_at"] == iso(T0 + timedelta(seconds=121))  # as the second poll planned


def test_a_full_store_holds_no_more_than_its_limit_and_then_polls_nothing(store: Store) -> None:
    with FakeServer() as server:
        server.serve("/feed.rss", lambda request: Reply(200, numbered_feed(0, 5), content_type="application/rss+xml"))
        config = parse_config(f'[[sources]]\nname = "feed"\ntype = "rss"\nurl = "{server.url}/feed.rss"\n'
                              "interval = 60\n")
        held = HeldPolls(max_posts=5)
        fill(store, full=True)
        with Poller(config.collect, hash_key=b"k") as poller:
            (report,) = Pipeline(config, store).collect(T0, poller, held=held)
            assert report.held == 5 and held.full
            assert Pipeline(config, store).collect(T0 + timedelta(hours=1), poller, held=held) == []
        assert len(server.requests_to("/feed.rss")) == 1
    assert held.describe().endswith("or not at all while 5 posts are held")


def test_a_full_store_holds_no_more_polls_than_its_limit_even_without_new_posts(store: Store) -> None:
    # A poll that brought no new post (the feed listing what is held already, a 304, a failure) was held all the
    # same, yet only posts counted toward the limit: on a disk full for days the held polls grew without bound.
    with FakeServer() as server:
        server.serve("/feed.rss", lambda request: Reply(200, numbered_feed(0, 2), content_type="application/rss+xml"))
        config = parse_config(f'[[sources]]\nname = "feed"\ntype = "rss"\nurl = "{server.url}/feed.rss"\n'
                              "interval = 60\n")
        held = HeldPolls(max_posts=1000, max_polls=3)
        fill(store, full=True)
        with Poller(config.collect, hash_key=b"k") as poller:
            for minute in range(6):
                Pipeline(config, store).collect(T0 + timedelta(minutes=minute, seconds=1), poller, held=held)
        assert len(server.requests_to("/feed.rss")) == 3
    assert (held.count, held.posts, held.full) == (3, 2, True)
    assert held.describe().endswith("or not at all while 3 polls are held")


def _stored_posts(db: str | Path, source: str) -> int:
    """Posts of ``source`` in the store file, read through a connection of its own (what the other jobs see)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return int(conn.execute("SELECT count(*) FROM posts WHERE source = ?", (source,)).fetchone()[0])
    finally:
        conn.close()


def test_a_fast_source_is_stored_while_a_slow_one_is_still_answering(store: Store) -> None:
    # A round stored its polls only once the slowest had answered: one slow server held up every source's posts.
    seen: list[int] = []
    with FakeServer() as server:
        feed = server.fixture_reply("rss/forum_latest.rss")
        server.serve("/fast.rss", feed)

        def slow(request: Recorded) -> Reply:
            deadline = time.monotonic() + 15.0  # without the fix it waits this long and sees nothing
            while not (n := _stored_posts(store.database.path, "fast")) and time.monotonic() < deadline:
                time.sleep(0.05)
            seen.append(n)
            return feed(request)

        server.serve("/slow.rss", slow)
        config = parse_config(f'[[sources]]\nname = "slow"\ntype = "rss"\nurl = "{server.url}/slow.rss"\n'
                              f'[[sources]]\nname = "fast"\ntype = "rss"\nurl = "{server.url}/fast.rss"\n')
        with Poller(config.collect, hash_key=b"k") as poller:
            reports = Pipeline(config, store).collect(T0, poller, due_only=False)
    assert seen and seen[0] > 0  # in the store, for the other jobs to classify, before the slow one answered
    assert [r.source for r in reports] == ["slow", "fast"]  # the config's order, whatever the completion order
    assert all(r.error is None and r.stored > 0 for r in reports)
    assert _stored_posts(store.database.path, "slow") > 0


def test_a_stop_during_a_round_starts_no_more_polls_and_gives_up_a_hanging_one_after_a_grace(store: Store) -> None:
    stop = threading.Event()
    with FakeServer() as server:
        feed = server.fixture_reply("rss/forum_latest.rss")
        server.serve("/fast.rss", feed)
        server.serve("/later.rss", feed)

        def hang(request: Recorded) -> Reply:
            stop.set()  # SIGTERM comes while this source's server keeps the round waiting
            return Reply(200, b"", delay=60.0)

        server.serve("/hang.rss", hang)
        # One worker: the sources are polled one after the other, in the config's order.
        config = parse_config(f"[collect]\nmax_workers = 1\n"
                              f'[[sources]]\nname = "fast"\ntype = "rss"\nurl = "{server.url}/fast.rss"\n'
                              f'[[sources]]\nname = "hang"\ntype = "rss"\nurl = "{server.url}/hang.rss"\n'
                              "timeout = 90\n"
                              f'[[sources]]\nname = "later"\ntype = "rss"\nurl = "{server.url}/later.rss"\n')
        with Poller(config.collect, hash_key=b"k") as poller:
            poller.stop_grace = 0.5
            started = time.monotonic()
            reports = Pipeline(config, store).collect(T0, poller, due_only=False, stop=stop)
            took = time.monotonic() - started
        assert not server.requests_to("/later.rss")  # not started once asked to stop
    assert took < 20  # the 0.5 s grace and the fast poll (on a loaded runner, a few s), not the server's 60 s
    assert [(r.source, r.error) for r in reports] == [("fast", None)]
    assert _stored_posts(store.database.path, "fast") > 0
    hung = store.source_row("hang")
    # Given up, not failed: no error, no backoff, nothing of its state advanced; due again at the next round.
    assert hung is None or (hung["polls"], hung["consecutive_failures"], hung["last_error"]) == (0, 0, None)
    assert set(store.due_sources(["fast", "hang", "later"], T0)) == {"hang", "later"}


CLOCK_AHEAD = """
[[services]]
name = "Foonet"

[detector]
bucket_minutes = 15
warmup_hours = 1
"""


def _warm_quiet_detector(store: Store) -> Pipeline:
    return warmed_pipeline(CLOCK_AHEAD, store)


def test_the_detector_stepped_by_a_clock_that_was_ahead_resumes_once_it_is_set_back(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    pipe = _warm_quiet_detector(store)
    pipe.detect(T0 + timedelta(hours=6))  # the clock 3 h ahead: it steps the (empty) buckets of 3 h to come
    now = T0 + timedelta(hours=3, minutes=5)  # set right
    with caplog.at_level("WARNING", logger="miner.pipeline"):
        assert pipe.detect(now).buckets == 0
        pipe.detect(now + timedelta(seconds=30))
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]  # once, not every run
    assert "clock was ahead" in warning
    assert "; 1 service resuming with the bucket from 2026-02-02T03:00:00+00:00, and 0 posts dated" in warning
    saved = store.detector_state("Foonet")
    assert saved is not None and saved.last_bucket == T0 + timedelta(hours=2, minutes=45)
    # An outage starting now opens an incident at its second bucket, not once real time has reached T0 + 6 h.
    start = T0 + timedelta(hours=3, minutes=15)
    pipe.ingest(outage_reports("Foonet", start, start + timedelta(minutes=30)), start + timedelta(minutes=30))
    pipe.classify_pending(start + timedelta(minutes=30))
    report = pipe.detect(start + timedelta(minutes=30))
    assert report.buckets == 3
    assert report.opened == [("Foonet", start + timedelta(minutes=30))]


def test_an_incident_resolved_by_a_clock_that_was_ahead_comes_back_once_it_is_set_back(store: Store) -> None:
    pipe = _warm_quiet_detector(store)
    start = T0 + timedelta(hours=3)
    pipe.ingest(outage_reports("Foonet", start, start + timedelta(minutes=30)), start + timedelta(minutes=30))
    pipe.classify_pending(start + timedelta(minutes=30))
    assert pipe.detect(start + timedelta(minutes=30)).opened == [("Foonet", start + timedelta(minutes=30))]
    # 3 h ahead, the clock sees three quiet hours to come: the incident resolves in the future.
    assert [s for s, _ in pipe.detect(start + timedelta(hours=3, minutes=30)).resolved] == ["Foonet"]
    now = start + timedelta(minutes=35)  # set right, and the outage goes on
    pipe.detect(now)
    pipe.ingest(outage_reports("Foonet", start + timedelta(minutes=30), now + timedelta(minutes=25)), now)
    pipe.classify_pending(now + timedelta(minutes=25))
    report = pipe.detect(start + timedelta(hours=1))
    assert report.opened == []  # the same incident, within its cool-down
    [incident] = store.incidents()
    assert incident["status"] == "open"
    assert [json.loads(e["details"]).get("reason") for e in store.incident_events(incident["id"])][-1] == "reopened"


class _Verdict:
    """A model that gives every post the same verdict."""

    decision = Decision(0.5, early_exit=False)

    def __init__(self, version: str, outage: bool) -> None:
        self.version, self.outage = version, outage

    def predict(self, texts: list[str]) -> list[Prediction]:
        return [Prediction(0.9 if self.outage else 0.1, self.outage, "general") for _ in texts]


def test_posts_dated_by_a_clock_that_was_ahead_count_in_the_bucket_in_progress_once_it_is_set_back(
        store: Store) -> None:
    pipe = _warm_quiet_detector(store)
    ahead = T0 + timedelta(hours=6)  # the clock 3 h ahead: user reports are dated by it
    pipe.ingest([Post("reports", f"r{i}", "Foonet is down", ahead - timedelta(minutes=i), services=("Foonet",))
                 for i in range(8)], ahead)
    pipe.classify_pending(ahead)
    pipe.detect(ahead)
    now = T0 + timedelta(hours=3, minutes=5)  # set right
    pipe.detect(now)
    assert store.database.one("SELECT count(*) AS n FROM posts WHERE created_at > ?", (iso(now),)) == {"n": 0}
    assert store.database.one("SELECT max(bucket_start) AS b FROM buckets") == {"b": iso(T0 + timedelta(hours=3))}
    # They count in the bucket in progress, which the detector steps next: not in one it reaches in 3 h.
    pipe.detect(T0 + timedelta(hours=3, minutes=15))
    [bucket] = store.series("Foonet", T0 + timedelta(hours=3), T0 + timedelta(hours=3, minutes=15))
    assert bucket["complaints"] == 8 and bucket["score"] > 2.5


def test_a_right_clock_stepped_back_minutes_dates_no_post_again(store: Store,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    # An NTP step of 8 minutes back from a right clock was taken for a clock that had been ahead: the posts its
    # sources dated in the last 7 minutes were dated now, piled into the bucket in progress (twice its count, the
    # next bucket empty, each scored so), and the log said the clock had been ahead.
    config = parse_config(CLOCK_AHEAD)
    pipe = Pipeline(config, store, _Verdict("v1", outage=False))
    for hours in range(4):
        pipe.detect(T0 + timedelta(hours=hours))
    start = T0 + timedelta(hours=3)
    posts = [Post("forum", str(i), "Foonet app works", start + timedelta(seconds=30 * i), services=("Foonet",))
             for i in range(30)]
    end = start + timedelta(minutes=15)
    pipe.ingest(posts, end)
    pipe.classify_pending(end)
    assert pipe.detect(end).buckets == 1
    before = (store.database.rows("SELECT id, created_at FROM posts ORDER BY id"),
              store.database.rows("SELECT * FROM buckets ORDER BY service, bucket_start"),
              store.detector_state("Foonet"))
    back = end - timedelta(minutes=8)
    with caplog.at_level("WARNING", logger="miner.pipeline"):
        assert pipe.detect(back).buckets == 0
        assert pipe.detect(back + timedelta(minutes=5)).buckets == 0
    assert (store.database.rows("SELECT id, created_at FROM posts ORDER BY id"),
            store.database.rows("SELECT * FROM buckets ORDER BY service, bucket_start"),
            store.detector_state("Foonet")) == before
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    # It steps on once the clock passes its next bucket's end, as if the clock had not moved.
    assert pipe.detect(end + timedelta(minutes=15)).buckets == 1


def test_a_clock_set_behind_the_store_is_not_taken_for_one_that_was_ahead(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    # The store was written by a right clock, and the clock is now a day behind it (a board without a real-time clock
    # started before NTP set it, a clock set by hand): taken for a clock that had been ahead, every post after it
    # was dated now, every bucket after it deleted and every incident's times moved to it, for good.
    config = parse_config(CLOCK_AHEAD)
    pipe = Pipeline(config, store, _Verdict("v1", outage=True))
    for hours in range(3):
        pipe.detect(T0 + timedelta(hours=hours))
    start = T0 + timedelta(hours=3)
    posts = [Post("forum", str(i), "Foonet is down", start + timedelta(seconds=20 * i)) for i in range(90)]
    pipe.ingest(posts, start + timedelta(minutes=30))
    pipe.classify_pending(start + timedelta(minutes=30))
    assert pipe.detect(start + timedelta(minutes=30)).opened
    before = (store.database.rows("SELECT id, created_at FROM posts ORDER BY id"),
              store.database.rows("SELECT * FROM buckets ORDER BY service, bucket_start"),
              store.database.rows("SELECT * FROM incidents"), store.database.rows("SELECT * FROM incident_events"),
              store.detector_state("Foonet"))
    behind = start - timedelta(days=1)
    with caplog.at_level("WARNING", logger="miner.pipeline"):
        assert pipe.detect(behind).buckets == 0
        pipe = Pipeline(config, store, _Verdict("v1", outage=True))  # the service's next run has a pipeline of its own
        pipe.detect(behind + timedelta(minutes=1))
    assert (store.database.rows("SELECT id, created_at FROM posts ORDER BY id"),
            store.database.rows("SELECT * FROM buckets ORDER BY service, bucket_start"),
            store.database.rows("SELECT * FROM incidents"), store.database.rows("SELECT * FROM incident_events"),
            store.detector_state("Foonet")) == before
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]  # once, not every run
    assert "behind" in warning and iso(posts[-1].created_at) in warning
    # Set right again, the detector steps on from where it was; set behind again, it says so again.
    assert pipe.detect(start + timedelta(minutes=45)).buckets == 1
    with caplog.at_level("WARNING", logger="miner.pipeline"):
        assert Pipeline(config, store, _Verdict("v1", outage=True)).detect(behind).buckets == 0
    assert sum("clock is behind" in r.getMessage() for r in caplog.records) == 2


def test_verdicts_given_by_a_clock_that_was_ahead_do_not_outrank_a_later_reclassify(store: Store) -> None:
    config = parse_config(CLOCK_AHEAD)
    posted = T0 + timedelta(hours=3, minutes=1)
    ahead = T0 + timedelta(hours=6)
    Pipeline(config, store, _Verdict("v1", outage=True)).ingest([Post("forum", "1", "Foonet is down", posted)], ahead)
    Pipeline(config, store, _Verdict("v1", outage=True)).classify_pending(ahead)  # the clock 3 h ahead
    Pipeline(config, store, _Verdict("v1", outage=True)).detect(ahead)
    now = T0 + timedelta(hours=3, minutes=5)
    pipe = Pipeline(config, store, _Verdict("v2", outage=False))
    pipe.detect(now)
    assert pipe.reclassify_since(T0, lambda: now + timedelta(minutes=1)) == 1
    [bucket] = store.series("Foonet", T0 + timedelta(hours=3), T0 + timedelta(hours=3, minutes=15))
    assert (bucket["posts"], bucket["complaints"]) == (1, 0)  # the new model's verdict counts


def test_incidents_opened_and_resolved_by_a_clock_that_was_ahead_are_in_the_next_digest(store: Store) -> None:
    from miner.alerts import enqueue_due_digests
    from miner.alerts.digest_content import digest_incidents
    from miner.alerts.settings import AlertSettings, RouteSettings

    pipe = _warm_quiet_detector(store)
    start = T0 + timedelta(hours=6)  # the clock 3 h ahead: an outage opens and resolves at its times
    pipe.ingest(outage_reports("Foonet", start, start + timedelta(minutes=30)), start + timedelta(minutes=30))
    pipe.classify_pending(start + timedelta(minutes=30))
    assert pipe.detect(start + timedelta(minutes=30)).opened
    assert pipe.detect(start + timedelta(hours=2)).resolved
    now = T0 + timedelta(hours=3, minutes=5)  # set right
    pipe.detect(now)
    hourly = RouteSettings(name="oncall", email=("oncall@example.org",), digest="0 * * * *")
    alerts = AlertSettings(routes=(hourly,))
    enqueue_due_digests(store, alerts, now)  # first sight: the schedule starts now
    # The 04:00 digest tells of it, rather than leaving it out (opened "after" 04:00) until 07:00 comes.
    assert enqueue_due_digests(store, alerts, T0 + timedelta(hours=4)) == 1
    covered = digest_incidents(store, alerts, hourly.matches, now, T0 + timedelta(hours=4))
    assert [(v.service, v.status) for v in covered.views] == [("Foonet", "resolved")]
    assert {e["at"] for e in store.incident_events(covered.views[0].id)} == {iso(now)}


def test_an_open_incident_of_a_service_removed_from_the_config_is_resolved_once(store: Store) -> None:
    from miner.alerts import plan_notifications
    from miner.alerts.settings import AlertSettings, RouteSettings

    alerts = AlertSettings(routes=(RouteSettings(name="oncall", email=("oncall@example.org",)),), repeat_interval=3600)
    pipe = _warm_quiet_detector(store)
    start = T0 + timedelta(hours=3)
    pipe.ingest(outage_reports("Foonet", start, start + timedelta(minutes=30)), start + timedelta(minutes=30))
    pipe.classify_pending(start + timedelta(minutes=30))
    assert pipe.detect(start + timedelta(minutes=30)).opened
    assert plan_notifications(store, alerts, start + timedelta(minutes=30)) == 1
    # Foonet is removed from feeds.toml (or renamed): no detector steps it any more.
    later = start + timedelta(hours=1)
    pipe = Pipeline(parse_config('[[services]]\nname = "Barnet"\n[detector]\nbucket_minutes = 15\n'), store,
                    ReportsOnly())  # type: ignore[arg-type]
    assert pipe.detect(later).resolved == [("Foonet", later)]
    [incident] = store.incidents()
    assert (incident["status"], incident["resolved_at"]) == ("resolved", iso(later))
    assert json.loads(store.incident_events(incident["id"])[-1]["details"]) == {"reason": "unwatched"}
    assert pipe.detect(later + timedelta(hours=1)).resolved == []
    # One resolve notice, and no reminder of an incident that nothing watches any more.
    assert plan_notifications(store, alerts, later) == 1
    assert plan_notifications(store, alerts, later + timedelta(days=1)) == 0
    # Added back, its detector resumes without the incident: the next outage opens a new one.
    saved = store.detector_state("Foonet")
    assert saved is not None and saved.draft is None and saved.incident_id is None
    assert not DetectorState.from_json(saved.state).open


def test_an_incident_of_a_removed_service_resolved_while_the_clock_is_behind_is_not_resolved_before_it_opened(
        store: Store) -> None:
    pipe = _warm_quiet_detector(store)
    start = T0 + timedelta(hours=3)
    pipe.ingest(outage_reports("Foonet", start, start + timedelta(minutes=30)), start + timedelta(minutes=30))
    pipe.classify_pending(start + timedelta(minutes=30))
    assert pipe.detect(start + timedelta(minutes=30)).opened
    # A post its source dated tells that the clock is behind the store, not set right after running ahead.
    store.insert_posts([Post("forum", "f1", "a post", start + timedelta(minutes=29))], start + timedelta(minutes=30))
    [opened] = store.incidents()
    # Foonet is removed from feeds.toml while the clock is a day behind (set wrong by hand, a board started before
    # NTP set it): resolved at the clock's time, it was resolved a day before it opened, a negative duration in
    # every digest, the API and the status board.
    behind = start - timedelta(days=1)
    pipe = Pipeline(parse_config('[[services]]\nname = "Barnet"\n[detector]\nbucket_minutes = 15\n'), store,
                    ReportsOnly())  # type: ignore[arg-type]
    [(service, at)] = pipe.detect(behind).resolved
    [incident] = store.incidents()
    assert service == "Foonet" and at == parse_iso(incident["resolved_at"]) == parse_iso(opened["updated_at"])
    assert incident["resolved_at"] >= incident["opened_at"] and incident["updated_at"] == incident["resolved_at"]
    assert [e["at"] for e in store.incident_events(incident["id"])] == sorted(
        e["at"] for e in store.incident_events(incident["id"]))


def _reports(service: str, start: datetime, end: datetime, every: timedelta) -> list[Post]:
    count = int((end - start) / every)
    return [Post("reports", f"{service}-{(start + i * every).timestamp()}", f"{service} is down", start + i * every,
                 services=(service,)) for i in range(count)]


def test_a_changed_bucket_width_counts_the_posts_again_and_learns_the_baseline_again(store: Store) -> None:
    # A day of 4 reports per 5 minutes, counted and learned in 5-minute buckets, the last one at 00:05 (off the
    # 15-minute grid). Then feeds.toml says 15. The detector stepped 00:20, 00:35... where no count lands, and
    # saw nothing for good; a baseline of 4 per bucket would have scored 12 per bucket as an outage.
    five = parse_config('[[services]]\nname = "Foonet"\n[detector]\nbucket_minutes = 5\nwarmup_hours = 1\n')
    pipe = Pipeline(five, store, ReportsOnly())  # type: ignore[arg-type]
    end = T0 + timedelta(days=1, minutes=10)
    posts = _reports("Foonet", T0, end, timedelta(seconds=75))
    pipe.ingest(posts, end)
    pipe.classify_pending(end)
    for at in [T0 + timedelta(minutes=5), *(T0 + timedelta(hours=h) for h in range(5, 25, 5)), end]:
        pipe.detect(at)
    assert store.detector_state("Foonet").last_bucket == end - timedelta(minutes=5)  # type: ignore[union-attr]
    assert store.prune_posts(T0 + timedelta(hours=2, minutes=7)) > 0  # the first two hours' buckets are final
    with store.database.transaction() as conn:  # as a store from before the width was recorded: it is inferred
        conn.execute("DELETE FROM store_state WHERE key = 'bucket_minutes'")

    fifteen = replace(five, detector=replace(five.detector, bucket_minutes=15))
    pipe = Pipeline(fifteen, store, ReportsOnly())  # type: ignore[arg-type]
    at = T0 + timedelta(days=1, minutes=25)
    more = _reports("Foonet", end, at + timedelta(hours=3), timedelta(seconds=75))
    opened = []
    while at <= T0 + timedelta(days=1, hours=3):
        pipe.ingest([p for p in more if p.created_at < at], at)
        pipe.classify_pending(at)
        opened += pipe.detect(at).opened
        at += timedelta(minutes=15)
    assert opened == []
    # The buckets up to the prune's (02:05-02:10, the last one final) keep their width; from the first bucket of
    # the new width after them, all are counted again on the new grid: every post counts in one bucket.
    rows = store.database.rows("SELECT bucket_start, posts, score, baseline FROM buckets ORDER BY bucket_start")
    recounted = [r for r in rows if r["bucket_start"] >= iso(T0 + timedelta(hours=2, minutes=10))]
    assert [(r["bucket_start"], r["posts"]) for r in recounted[:2]] == [
        (iso(T0 + timedelta(hours=2, minutes=10)), 4), (iso(T0 + timedelta(hours=2, minutes=15)), 12)]
    assert all(parse_iso(r["bucket_start"]).minute % 15 == 0 for r in recounted[1:])
    ingested = len(posts) + sum(1 for p in more if p.created_at < at - timedelta(minutes=15))
    assert sum(r["posts"] for r in rows) == ingested
    scored = [r for r in recounted if r["bucket_start"] >= iso(T0 + timedelta(days=1)) and r["score"] is not None]
    assert len(scored) >= 10 and all(abs(r["score"]) < 1.5 and 10 < r["baseline"] < 14 for r in scored)
    # And an outage opens an incident at its second bucket.
    start = T0 + timedelta(days=1, hours=3)
    pipe.ingest([p for p in more if p.created_at < start + timedelta(minutes=30)]
                + outage_reports("Foonet", start, start + timedelta(minutes=30)), start + timedelta(minutes=30))
    pipe.classify_pending(start + timedelta(minutes=30))
    assert pipe.detect(start + timedelta(minutes=30)).opened == [("Foonet", start + timedelta(minutes=30))]
    assert store.bucket_minutes() == 15  # recorded: the next start finds nothing to do


def test_a_renamed_source_does_not_store_again_what_its_feed_stored_under_its_old_name(store: Store) -> None:
    # Renamed in feeds.toml, the source started without a cursor: every item its feed still lists was stored a
    # second time under the new name, and counted twice in its bucket. (Its poll state follows it now, its schedule
    # too: polled here before its interval is over.)
    items = [(f"p{n}", f"Foonet is down again {n}", T0 - timedelta(minutes=n)) for n in range(5)]
    with FakeServer() as server:
        server.serve("/a.rss", _rss(*items))

        def config(name: str) -> Config:
            return parse_config(f'[[services]]\nname = "Foonet"\n[[sources]]\nname = "{name}"\ntype = "rss"\n'
                                f'url = "{server.url}/a.rss"\n')

        first = config("forum")
        with Poller(first.collect, first.services, hash_key=b"k") as poller:
            assert [r.stored for r in Pipeline(first, store).collect(T0, poller)] == [5]
        server.serve("/a.rss", _rss(("new", "Foonet is down here too", T0 + timedelta(minutes=1)), *items))
        renamed = config("forum-rss")
        with Poller(renamed.collect, renamed.services, hash_key=b"k") as poller:
            [report] = Pipeline(renamed, store).collect(T0 + timedelta(minutes=2), poller, due_only=False)
    assert (report.source, report.stored, report.duplicates) == ("forum-rss", 1, 5)
    rows = store.database.rows("SELECT source, count(*) AS n FROM posts GROUP BY source ORDER BY source")
    assert [(r["source"], r["n"]) for r in rows] == [("forum", 5), ("forum-rss", 1)]


def test_an_incident_open_at_a_changed_bucket_width_stays_one_incident_through_a_lull(store: Store) -> None:
    # Opened in 5-minute buckets at 03:10, then feeds.toml says 15: the 15-minute detector, learned again up to the
    # bucket that ended last (02:45), had not opened it. Left shut, it resolved the incident at the lull's one
    # quiet bucket (no quiet_minutes), and opened a second incident when the outage went on.
    fifteen = parse_config(CLOCK_AHEAD)
    five = replace(fifteen, detector=replace(fifteen.detector, bucket_minutes=5))
    pipe = Pipeline(five, store, ReportsOnly())  # type: ignore[arg-type]
    start = T0 + timedelta(hours=3)
    pipe.ingest(_reports("Foonet", T0 + timedelta(minutes=1), start, timedelta(minutes=20)), start)
    pipe.classify_pending(start)
    pipe.detect(T0 + timedelta(minutes=5))
    pipe.detect(start)
    posts = (outage_reports("Foonet", start, start + timedelta(minutes=15))  # a lull from 03:15 to 03:30
             + outage_reports("Foonet", start + timedelta(minutes=30), start + timedelta(hours=1)))
    at = start + timedelta(minutes=10)
    pipe.ingest([p for p in posts if p.created_at < at], at)
    pipe.classify_pending(at)
    assert pipe.detect(at).opened
    pipe = Pipeline(fifteen, store, ReportsOnly())  # type: ignore[arg-type]
    at += timedelta(minutes=2)
    while at < start + timedelta(hours=1, minutes=15):
        pipe.ingest([p for p in posts if p.created_at < at], at)
        pipe.classify_pending(at)
        report = pipe.detect(at)
        assert (report.opened, report.resolved) == ([], [])
        at += timedelta(minutes=5)
    [incident] = store.incidents()
    assert incident["status"] == "open"
    assert "resolve" not in [e["kind"] for e in store.incident_events(incident["id"])]


def test_a_changed_bucket_width_keeps_counts_whose_posts_are_gone_and_counts_no_post_twice(store: Store) -> None:
    # 7-minute buckets, then 15: the grids meet every 105 minutes, and an old row must not reach into a new one.
    # The store lost its first hour of posts to a prune that recorded no cutoff (a miner from before it did): the
    # rows of that hour are the only count of them, and a recount from the posts left would have wiped them.
    # Config check refuses 7 now (it does not divide a day), but a store counted by an earlier miner may have them.
    five = parse_config('[[services]]\nname = "Foonet"\n[detector]\nbucket_minutes = 5\nwarmup_hours = 1\n')
    seven = replace(five, detector=replace(five.detector, bucket_minutes=7))
    pipe = Pipeline(seven, store, ReportsOnly())  # type: ignore[arg-type]
    end = T0 + timedelta(hours=6)
    posts = _reports("Foonet", T0, end, timedelta(seconds=50))
    pipe.ingest(posts, end)
    pipe.classify_pending(end)
    pipe.detect(end)
    with store.database.transaction() as conn:
        conn.execute("DELETE FROM posts WHERE created_at < ?", (iso(T0 + timedelta(hours=1)),))
    before = store.database.rows("SELECT bucket_start, posts FROM buckets ORDER BY bucket_start")

    fifteen = replace(seven, detector=replace(seven.detector, bucket_minutes=15))
    Pipeline(fifteen, store, ReportsOnly()).detect(end + timedelta(minutes=15))  # type: ignore[arg-type]
    after = store.database.rows("SELECT bucket_start, posts FROM buckets ORDER BY bucket_start")
    first_hour = iso(T0 + timedelta(hours=1))
    assert [r for r in after if r["bucket_start"] < first_hour] == [r for r in before if r["bucket_start"] < first_hour]
    assert sum(r["posts"] for r in after) == len(posts)
    starts = [parse_iso(r["bucket_start"]) for r in after]
    # The grids meet every 105 minutes: the first such time from the 7-minute bucket of the first post left on.
    kept_until = floor_time(T0 + timedelta(hours=1), timedelta(minutes=7))
    switch = floor_time(kept_until - timedelta(seconds=1), timedelta(minutes=105)) + timedelta(minutes=105)
    assert iso(switch) in [r["bucket_start"] for r in after]
    widths = [timedelta(minutes=7 if s < switch else 15) for s in starts]
    assert all(a + w <= b for a, w, b in zip(starts, widths, starts[1:], strict=False))  # no two rows overlap


@pytest.mark.parametrize("written", ["status_page", "source"])
def test_an_incident_is_linked_to_the_provider_incident_of_its_status_page(
        store: Store, server: FakeServer, written: str) -> None:
    server.serve_fixture("/api/v2/incidents.json", "statuspage/incidents.json")
    if written == "status_page":
        # The status_page key names its source "status:foonet": a colon in the source name, as in the official ref.
        text = CLOCK_AHEAD.replace('name = "Foonet"', f'name = "Foonet"\nstatus_page = "{server.url}"')
        name = "status:foonet"
    else:
        # A source may name its service in another case: its incidents are the service's all the same.
        text = (CLOCK_AHEAD + f'[[sources]]\nname = "foo"\ntype = "statuspage"\nurl = "{server.url}"\n'
                'services = ["foonet"]\n')
        name = "foo"
    config = parse_config(text)
    [source] = config.sources
    assert source.name == name
    with Poller.from_config(config) as poller:
        store.save_fetch(source.name, poller.poll(source, SourceState()), T0, T0)
    pipe = Pipeline(config, store, ReportsOnly())  # type: ignore[arg-type]
    official_start = datetime.fromisoformat("2026-11-27T14:01:12+00:00")  # "Incident with Actions"
    quiet = floor_time(official_start - timedelta(hours=4), timedelta(minutes=15))
    for hours in range(4):
        pipe.detect(quiet + timedelta(hours=hours))
    start = quiet + timedelta(hours=3, minutes=30)
    pipe.ingest(outage_reports("Foonet", start, start + timedelta(minutes=30)), start + timedelta(minutes=30))
    pipe.classify_pending(start + timedelta(minutes=30))
    pipe.detect(start + timedelta(minutes=30))
    [incident] = store.incidents()
    linked = store.official_incident_id(name, "p3k9d2m1x8qz")
    assert linked is not None and incident["official_incident_id"] == linked
    assert incident["lead_time_minutes"] is not None


def test_an_incident_resolved_before_its_provider_posted_is_linked_to_that_post_in_the_cool_down(
        store: Store, server: FakeServer) -> None:
    server.serve_fixture("/api/v2/incidents.json", "statuspage/incidents.json")
    config = parse_config(CLOCK_AHEAD + f'[[sources]]\nname = "foo"\ntype = "statuspage"\nurl = "{server.url}"\n'
                          'services = ["Foonet"]\n')
    [source] = config.sources
    pipe = Pipeline(config, store, ReportsOnly())  # type: ignore[arg-type]
    official_start = datetime.fromisoformat("2026-11-27T14:01:12+00:00")  # "Incident with Actions"
    quiet = floor_time(official_start - timedelta(hours=4), timedelta(minutes=15))
    for hours in range(4):
        pipe.detect(quiet + timedelta(hours=hours))
    start = quiet + timedelta(hours=3, minutes=30)
    pipe.ingest(outage_reports("Foonet", start, start + timedelta(minutes=30)), start + timedelta(minutes=30))
    pipe.classify_pending(start + timedelta(minutes=30))
    assert pipe.detect(start + timedelta(minutes=30)).opened
    resolved = pipe.detect(start + timedelta(hours=2)).resolved
    assert resolved
    # The provider posts its incident (begun at 14:01, during ours) only now.
    posted = start + timedelta(hours=2, minutes=5)
    with Poller.from_config(config) as poller:
        store.save_fetch(source.name, poller.poll(source, SourceState()), posted, posted)
    pipe.detect(posted + timedelta(minutes=15))
    [incident] = store.incidents()
    assert (incident["status"], incident["resolved_at"]) == ("resolved", iso(resolved[0][1]))
    assert incident["official_incident_id"] == store.official_incident_id("foo", "p3k9d2m1x8qz")
    assert incident["official_incident_id"] is not None and incident["lead_time_minutes"] is not None
    assert [e["kind"] for e in store.incident_events(incident["id"])] == ["open", "resolve", "update"]


class _SaysDown:
    """A model that calls every post saying "down" an outage report."""

    version = "says-down"
    decision = Decision(0.5, early_exit=False)

    def predict(self, texts: list[str]) -> list[Prediction]:
        return [Prediction(0.9, True, "connectivity") if "down" in t else Prediction(0.1, False, None) for t in texts]


def _run_week(store: Store, prune_buckets: bool) -> None:
    """Seven days of two services, bucket by bucket: chatter, three MTN outages, a night with no post at all, the
    bucket width changed from 15 to 30 minutes on day 4, and the retention job every 6 hours (posts kept 1 day,
    bucket rows 2) in the middle of a bucket, between two ticks that each store and count half of its posts.
    Without ``prune_buckets`` it deletes the posts only, as it did before bucket rows were pruned."""
    rng = random.Random(11)
    base = parse_config(CONFIG + "\n[store]\nretention_days = 1\nbucket_retention_days = 2\n")
    wider = replace(base, detector=replace(base.detector, bucket_minutes=30))
    outages = [T0 + timedelta(days=d, hours=h) for d, h in ((1, 9), (3, 20), (5, 14))]
    at, n = T0, 0
    while at < T0 + timedelta(days=7):
        config = base if at < T0 + timedelta(days=4) else wider
        width = timedelta(minutes=config.detector.bucket_minutes)
        pipe = Pipeline(config, store, _SaysDown())  # type: ignore[arg-type]
        posts = []
        silent = T0 + timedelta(days=2, hours=22) <= at < T0 + timedelta(days=3, hours=8)
        for service, alias in (("MTN", "mtn"), ("Airtel", "airtel")):
            chatter = 0 if silent else rng.randrange(0, 6)
            down = rng.randrange(0, 2)
            if service == "MTN" and any(o <= at < o + timedelta(hours=1) for o in outages):
                down += 25
            texts = [f"{alias} bundles are pricey {i}" for i in range(chatter)] + [
                f"{alias} network is down again {i}" for i in range(down)]
            for text in texts:
                n += 1
                posts.append(Post("test", f"p{n}", text, at + rng.uniform(0, 0.99) * width, services=(service,),
                                  author_hash=f"a{n % 997}"))
        middle = at + width / 2
        pipe.tick(middle, [p for p in posts if p.created_at < middle])
        if at.hour % 6 == 0 and at.minute == 0:
            store.prune_posts(middle - timedelta(days=config.store.retention_days))
            if prune_buckets:
                store.prune_buckets(middle - timedelta(days=config.store.bucket_days))
        pipe.tick(at + width + timedelta(minutes=1), [p for p in posts if p.created_at >= middle])
        at += width


def test_pruning_old_bucket_rows_changes_nothing_the_detector_decides(tmp_path: Path) -> None:
    pruned, kept = Store.open(tmp_path / "pruned.sqlite"), Store.open(tmp_path / "kept.sqlite")
    _run_week(pruned, prune_buckets=True)
    _run_week(kept, prune_buckets=False)
    for sql in ("SELECT * FROM incidents ORDER BY id", "SELECT * FROM incident_events ORDER BY id",
                "SELECT * FROM detector_state ORDER BY service", "SELECT * FROM incident_groups ORDER BY id"):
        assert pruned.database.rows(sql) == kept.database.rows(sql), sql
    incidents = kept.incidents()
    assert [(i["service"], i["opened_at"][:10]) for i in incidents] == [
        ("MTN", "2026-02-03"), ("MTN", "2026-02-05"), ("MTN", "2026-02-07")]
    # The rows left are the same rows, and the old ones went.
    rows = "SELECT * FROM buckets WHERE bucket_start >= ? ORDER BY service, bucket_start"
    first = pruned.database.one("SELECT min(bucket_start) AS t FROM buckets")
    assert first is not None and parse_iso(first["t"]) >= T0 + timedelta(days=4, hours=18)  # the last prune's
    assert pruned.database.rows(rows, (first["t"],)) == kept.database.rows(rows, (first["t"],))
    count = "SELECT count(*) AS n FROM buckets WHERE bucket_start < ?"
    assert kept.database.one(count, (iso(T0 + timedelta(days=1)),)) == {"n": 2 * 4 * 24 + 2}
    assert pruned.database.one(count, (first["t"],)) == {"n": 0}
    pruned.close()
    kept.close()


def test_reclassify_after_a_rollback_to_an_earlier_model_gives_its_verdicts_back(store: Store) -> None:
    # Reclassify skipped posts that had a verdict by the current model, even one outranked by a later model's: after
    # rolling model v2 back to v1, v2's verdicts stayed the ones counted, and "reclassified 0 posts" said all was done.
    config = parse_config(CLOCK_AHEAD)
    posted = T0 + timedelta(hours=3, minutes=1)
    Pipeline(config, store, _Verdict("v1", outage=False)).ingest([Post("forum", "1", "Foonet is down", posted)], posted)
    assert Pipeline(config, store, _Verdict("v1", outage=False)).classify_pending(posted) == 1
    v2 = Pipeline(config, store, _Verdict("v2", outage=True))
    assert v2.reclassify_since(T0, lambda: posted + timedelta(minutes=1)) == 1
    rollback = Pipeline(config, store, _Verdict("v1", outage=False))
    assert rollback.reclassify_since(T0, lambda: posted + timedelta(minutes=2)) == 1
    [bucket] = store.series("Foonet", T0 + timedelta(hours=3), T0 + timedelta(hours=3, minutes=15))
    assert (bucket["posts"], bucket["complaints"]) == (1, 0)  # v1's verdict counts again
    assert rollback.reclassify_since(T0, lambda: posted + timedelta(minutes=3)) == 0  # and stands


def test_a_verdict_the_service_gives_during_a_reclassify_is_outranked_by_the_reclassify_one(store: Store) -> None:
    # `miner reclassify` dated every verdict with the time it started. A post the service (still on the old model)
    # classified during a long run got the new model's verdict in a later batch, counted in "reclassified N", but
    # dated before the old model's, which stayed the counted one.
    config = parse_config(CLOCK_AHEAD + "\n[classifier]\nbatch_size = 1\n")  # 64 posts per reclassify batch
    posted = T0 + timedelta(hours=3, minutes=1)
    service = Pipeline(config, store, _Verdict("v1", outage=False))
    service.ingest([Post("forum", str(i), "Foonet is down", posted) for i in range(70)], posted)
    assert service.classify_pending(posted) == 70
    service.ingest([Post("forum", "late", "Foonet is down", posted)], posted)
    minutes = itertools.chain([1], itertools.count(3))  # the reclassify's clock; the service classifies at 2

    def clock() -> datetime:
        return posted + timedelta(minutes=next(minutes))

    def between_batches(done: int) -> None:
        if done == 64:  # the first batch is written: the service classifies the late post before the second
            assert service.classify_pending(posted + timedelta(minutes=2)) == 1

    reclassify = Pipeline(config, store, _Verdict("v2", outage=True))
    assert reclassify.reclassify_since(T0, clock, between_batches) == 71
    [bucket] = store.series("Foonet", T0 + timedelta(hours=3), T0 + timedelta(hours=3, minutes=15))
    assert (bucket["posts"], bucket["complaints"]) == (71, 71)  # v2's verdicts count, the late post's too
    assert reclassify.reclassify_since(T0, clock) == 0


def test_reclassify_leaves_user_reports_alone(store: Store) -> None:
    # User reports are verdicts of no model: every run gave them one again and counted them, so a reclassify with
    # the model that had classified everything already said "reclassified 1 posts", and so on each time.
    config = parse_config(CLOCK_AHEAD)
    posted = T0 + timedelta(hours=3, minutes=1)
    pipe = Pipeline(config, store, _Verdict("v1", outage=False))
    pipe.ingest([Post("forum", "1", "Foonet is down", posted),
                 Post(REPORTS_SOURCE, "r1", "Foonet is down", posted, services=("Foonet",))], posted)
    assert pipe.classify_pending(posted) == 2
    assert pipe.reclassify_since(T0, lambda: posted + timedelta(minutes=1)) == 0
    assert Pipeline(config, store, _Verdict("v2", outage=True)).reclassify_since(T0, lambda: posted) == 1
    rows = store.database.rows("SELECT model_version, classified_at FROM classifications ORDER BY post_id, rowid")
    assert [(r["model_version"], r["classified_at"]) for r in rows] == [
        ("v1", iso(posted)), ("v2", iso(posted)), (REPORTS_SOURCE, iso(posted))]
    # One with no verdict below the highest classified id (left by an older reclassify) still gets its first.
    pipe.ingest([Post(REPORTS_SOURCE, "r2", "Foonet is down", posted, services=("Foonet",)),
                 Post("forum", "2", "Foonet is down", posted)], posted)
    store.save_classifications([(4, Prediction(0.1, False, None))], "v2", posted, _Verdict.decision)
    assert Pipeline(config, store, _Verdict("v2", outage=True)).reclassify_since(T0, lambda: posted) == 1
    assert store.database.rows("SELECT model_version FROM classifications WHERE post_id = 3") == [
        {"model_version": REPORTS_SOURCE}]


def test_a_restart_scores_the_time_it_was_down_once_the_first_collect_round_stored_its_posts(
        server: FakeServer, tmp_path: Path, classifier: Classifier, real_posts: dict[str, list[str]]) -> None:
    from miner.service import JobSpec, Service, ServiceOptions

    config = _forum_config(server, CONFIG + "warmup_hours = 1\n", "interval = 60\n")
    texts = real_posts["mtn_outage"]
    base = floor_time(datetime.now(UTC), timedelta(minutes=15)) - timedelta(hours=6)
    start = base + timedelta(hours=3)  # the outage: an outage report a minute, from here on

    def feed(until: datetime) -> None:
        minutes = int((until - start) / timedelta(minutes=1))
        server.serve("/forum.rss", _rss(*((f"o{n}", texts[n % len(texts)], start + timedelta(minutes=n))
                                          for n in range(max(minutes, 0)))))

    def service() -> Service:
        svc = Service(config, tmp_path / "m.sqlite", ServiceOptions(
            jobs=(JobSpec("collect", 3600.0), JobSpec("process", 3600.0)), http=False))
        svc._poller = Poller(config.collect, config.services, hash_key=b"k", environ={})
        svc._classifier = classifier
        return svc

    first = service()
    try:
        for now in [base + timedelta(hours=h, minutes=1) for h in range(3)] + [
                start + timedelta(minutes=m) for m in (1, 16, 31, 46)]:
            feed(now)
            first.job_collect(now)
            first.job_process(now)
        [incident] = Store.open(tmp_path / "m.sqlite").incidents()  # the outage opened
    finally:
        first.stop()
    # Down for two hours while the outage goes on; at the start, the process job runs before collect's round ends.
    now = base + timedelta(hours=5, minutes=1)
    feed(now)
    second = service()
    try:
        second.job_process(now)
        second.job_collect(now)
        second.job_process(now + timedelta(seconds=30))
    finally:
        second.stop()
    store = Store.open(tmp_path / "m.sqlite")
    assert [e["kind"] for e in store.incident_events(incident["id"])] == ["open"]
    assert store.incidents(status="open") == [store.incident(incident["id"])]
    saved = store.detector_state("MTN")
    assert saved is not None and saved.last_bucket == base + timedelta(hours=4, minutes=45)
    store.close()


def test_buckets_wait_for_the_polls_held_while_the_store_took_no_writes(
        server: FakeServer, tmp_path: Path, classifier: Classifier, real_posts: dict[str, list[str]]) -> None:
    # Another writer held the store's lock past the collect job's busy timeout (or the disk was full for its pages):
    # the round's polls were held in memory. The process job, able to write again before the next round stored
    # them, scored their buckets empty, as the store's last successful polls were more than settle_minutes old.
    from miner.service import JobSpec, Service, ServiceOptions

    config = _forum_config(server, CONFIG + "warmup_hours = 1\n", "interval = 60\n")
    texts = real_posts["mtn_outage"]
    base = floor_time(datetime.now(UTC), timedelta(minutes=15)) - timedelta(hours=6)
    svc = Service(config, tmp_path / "m.sqlite", ServiceOptions(
        jobs=(JobSpec("collect", 3600.0), JobSpec("process", 3600.0)), http=False))
    svc._poller = Poller(config.collect, config.services, hash_key=b"k", environ={})
    svc._classifier = classifier
    outage = base + timedelta(hours=2)
    server.serve("/forum.rss", _rss())
    try:
        for hour in range(2):
            svc.job_collect(base + timedelta(hours=hour, minutes=1))
            svc.job_process(base + timedelta(hours=hour, minutes=1))
        server.serve("/forum.rss", _rss(*((f"o{n}", texts[n % len(texts)], outage + timedelta(seconds=30 * n))
                                          for n in range(30))))
        collect = svc._store("collect")
        collect.database.execute(f"PRAGMA max_page_count = {collect.database.one('PRAGMA page_count')['page_count']}")
        with pytest.raises(StoreError, match="held in memory"):
            svc.job_collect(outage + timedelta(minutes=16))
        svc._stores.forget("collect")  # space freed: the next connection takes writes
        svc.job_process(outage + timedelta(minutes=30))  # before the next round
        waited = svc._store("process").detector_state("MTN")
        svc.job_collect(outage + timedelta(minutes=30, seconds=15))
        svc.job_process(outage + timedelta(minutes=30, seconds=30))
    finally:
        svc.stop()
    store = Store.open(tmp_path / "m.sqlite")
    assert waited is not None and waited.last_bucket < outage
    [bucket] = store.series("MTN", outage, outage + timedelta(minutes=15))
    store.close()
    assert bucket["complaints"] == 30 and bucket["score"] >= config.detector.z_open  # scored with its posts


def test_buckets_wait_for_a_collect_job_that_stalled_as_for_sources_that_fail(
        server: FakeServer, tmp_path: Path, classifier: Classifier, real_posts: dict[str, list[str]]) -> None:
    # The collect job hung for an hour (or the host was suspended) while an outage went on: no source polled after
    # the outage's buckets ended, and the process job scored them empty once settle_minutes had passed, as if the
    # sources were slow. The outage never opened, and the baseline learned its silence.
    from miner.service import JobSpec, Service, ServiceOptions

    config = _forum_config(server, CONFIG + "warmup_hours = 1\n", "interval = 60\n")
    texts = real_posts["mtn_outage"]
    base = floor_time(datetime.now(UTC), timedelta(minutes=15)) - timedelta(hours=6)
    outage = base + timedelta(hours=2)  # an outage report every 30 seconds from here on

    def collect(now: datetime) -> None:
        server.serve("/forum.rss", _rss(*((f"o{n}", texts[n % len(texts)], outage + timedelta(seconds=30 * n))
                                          for n in range(max(0, int((now - outage) / timedelta(seconds=30)))))))
        svc.job_collect(now)

    svc = Service(config, tmp_path / "m.sqlite", ServiceOptions(
        jobs=(JobSpec("collect", 3600.0), JobSpec("process", 3600.0)), http=False))
    svc._poller = Poller(config.collect, config.services, hash_key=b"k", environ={})
    svc._classifier = classifier
    try:
        for hour in range(2):
            collect(base + timedelta(hours=hour, minutes=1))
            svc.job_process(base + timedelta(hours=hour, minutes=1))
        collect(outage + timedelta(minutes=1))
        for minutes in range(2, 62, 2):  # the collect job stalls for an hour; the process job runs on
            svc.job_process(outage + timedelta(minutes=minutes))
        waited = svc._store("process").detector_state("MTN")
        collect(outage + timedelta(minutes=62))
        svc.job_process(outage + timedelta(minutes=62, seconds=30))
    finally:
        svc.stop()
    store = Store.open(tmp_path / "m.sqlite")
    assert waited is not None and waited.last_bucket < outage
    buckets = store.series("MTN", outage, outage + timedelta(hours=1))
    [incident] = store.incidents()
    store.close()
    assert [b["complaints"] for b in buckets] == [30, 30, 30, 30]  # scored with their posts
    assert buckets[0]["score"] >= config.detector.z_open and incident["status"] == "open"


@contextmanager
def _forum_watched(server: FakeServer, store: Store, classifier: Classifier | None = None, interval: int = 60
                   ) -> Iterator[tuple[Config, Pipeline, Callable[[datetime], None]]]:
    """MTN's one source, a forum polled and scored hourly for four hours from T0; poll(now) polls it at ``now``
    (its next poll due ``interval`` seconds later)."""
    config = _forum_config(server, CLOCK_AHEAD.replace('"Foonet"', '"MTN"\naliases = ["mtnug"]'),
                           f"interval = {interval}\n")
    pipe = Pipeline(config, store, classifier or ReportsOnly())  # type: ignore[arg-type]
    server.serve("/forum.rss", _rss())
    with Poller(config.collect, config.services, hash_key=b"k") as poller:
        def poll(now: datetime) -> None:
            poller.ctx.now = lambda: now
            pipe.collect(now, poller, due_only=False)

        for hours in range(4):
            poll(T0 + timedelta(hours=hours))
            pipe.detect(T0 + timedelta(hours=hours))
        yield config, pipe, poll


def test_an_outage_is_not_resolved_by_the_silence_of_sources_that_fail(server: FakeServer, store: Store) -> None:
    with _forum_watched(server, store) as (_, pipe, poll):
        start = T0 + timedelta(hours=3)
        pipe.ingest(outage_reports("MTN", start, start + timedelta(minutes=30)), start + timedelta(minutes=30))
        pipe.classify_pending(start + timedelta(minutes=30))
        poll(start + timedelta(minutes=30))
        assert pipe.detect(start + timedelta(minutes=30)).opened == [("MTN", start + timedelta(minutes=30))]
        # The forum fails for two hours: its silence is ours, not the end of the outage.
        server.serve("/forum.rss", Reply(503, b"down"))
        for minutes in range(45, 150, 15):
            poll(start + timedelta(minutes=minutes))
            assert pipe.detect(start + timedelta(minutes=minutes)).resolved == []
        saved = store.detector_state("MTN")
        assert saved is not None and saved.last_bucket == start + timedelta(minutes=15)
        # Back: the posts it fetched are scored in their buckets, and the quiet ones resolve the incident.
        server.serve("/forum.rss", _rss())
        poll(start + timedelta(minutes=150))
        report = pipe.detect(start + timedelta(minutes=150))
    assert report.buckets == 8 and [s for s, _ in report.resolved] == ["MTN"]


def test_a_service_whose_sources_fail_for_longer_than_max_fill_hours_is_scored_again(
        server: FakeServer, store: Store) -> None:
    with _forum_watched(server, store) as (config, pipe, poll):
        server.serve("/forum.rss", Reply(503, b"down"))
        poll(T0 + timedelta(hours=4))
        assert pipe.detect(T0 + timedelta(hours=4)).buckets == 0  # held
        # Broken for good: the user reports of an outage are still scored once the hold is past max_fill_hours.
        later = T0 + timedelta(hours=3 + config.detector.max_fill_hours, minutes=15)
        poll(later)
        pipe.ingest(outage_reports("MTN", later - timedelta(minutes=30), later), later)
        pipe.classify_pending(later)
        report = pipe.detect(later)
    assert report.buckets > 0 and report.opened == [("MTN", later)]


def test_a_bucket_is_scored_once_its_sources_have_polled_after_its_end(
        server: FakeServer, store: Store, classifier: Classifier, real_posts: dict[str, list[str]]) -> None:
    """Scored as soon as it ended, a bucket had the posts of the polls before its end only: here, with the forum
    polled 5 minutes into each 15-minute bucket, a third of its complaints."""
    texts = real_posts["mtn_outage"]
    with _forum_watched(server, store, classifier) as (_, pipe, poll):
        start = T0 + timedelta(hours=4)  # an outage report every 30 seconds from here on
        for minute in range(47):
            now = start + timedelta(minutes=minute)
            if minute % 15 == 5:
                server.serve("/forum.rss", _rss(*((f"o{k}", texts[k % len(texts)], start + timedelta(seconds=30 * k))
                                                  for k in range(2 * minute))))
                poll(now)
            pipe.classify_pending(now)
            report = pipe.detect(now)
            if minute == 15:
                assert report.buckets == 0  # the bucket that has just ended waits for the forum's next poll
        [incident] = store.incidents()
        [opening] = store.incident_events(incident["id"])
    assert opening["kind"] == "open" and json.loads(opening["details"])["count"] == 30
    assert incident["opened_at"] == iso(start + timedelta(minutes=30))


def test_a_bucket_waits_at_most_settle_minutes_for_a_source_to_poll(server: FakeServer, store: Store) -> None:
    # A source polled hourly, not due again until an hour after its last poll (one polled every minute, silent for
    # settle_minutes, is a collect job stalled: see test_buckets_wait_for_a_collect_job_that_stalled...).
    with _forum_watched(server, store, interval=3600) as (config, pipe, poll):
        poll(T0 + timedelta(hours=4, minutes=5))  # the forum's last poll before the bucket from 4 h ends
        pipe.detect(T0 + timedelta(hours=4, minutes=5))
        waits = [pipe.detect(T0 + timedelta(hours=4, minutes=m)).buckets for m in (15, 24)]
        scored = pipe.detect(T0 + timedelta(hours=4, minutes=15 + config.detector.settle_minutes)).buckets
    assert (waits, scored) == ([0, 0], 1)


def test_a_bucket_waits_past_settle_minutes_only_while_no_source_polled_though_due() -> None:
    from miner.detect_due import collected_until

    config = parse_config('[[services]]\nname = "MTN"\n' + "".join(
        f'[[sources]]\nname = "{n}"\ntype = "rss"\nurl = "https://{n}.example/feed"\n' for n in ("a", "b")))
    now, settled = T0 + timedelta(hours=1), T0 + timedelta(minutes=50)

    def row(last_ok: timedelta, next_poll: timedelta, behind: int = 0) -> dict[str, object]:
        return {"last_ok_at": iso(now - last_ok), "next_poll_at": iso(now + next_poll), "consecutive_failures": 0,
                "behind": behind}

    def until(a: dict[str, object], b: dict[str, object]) -> datetime | None:
        return collected_until(config, "MTN", {"a": a, "b": b}, now)[0]

    minute = timedelta(minutes=1)
    # One polls, the other is behind or has not polled since, though due: the other holds nothing past settle.
    assert until(row(minute, 4 * minute), row(30 * minute, -29 * minute)) == settled
    assert until(row(minute, 4 * minute), row(minute, 4 * minute, behind=1)) == settled
    # Neither polled for longer than settle_minutes: both polled less often than that, not yet due, or not.
    assert until(row(30 * minute, 30 * minute), row(20 * minute, -19 * minute)) == settled
    assert until(row(30 * minute, -29 * minute), row(20 * minute, -19 * minute)) == now - 20 * minute  # stalled
    # Stalled for longer than max_fill_hours: as for sources broken for good, the buckets are scored.
    days = timedelta(hours=config.detector.max_fill_hours + 1)
    assert until(row(days, -days), row(days, -days)) is None


def test_a_services_own_timezone_is_the_clock_of_its_daily_pattern(store: Store) -> None:
    mtn = '[[services]]\nname = "MTN"\ntimezone = "Africa/Kampala"\n\n'
    config = parse_config(CLOCK_AHEAD.replace("[detector]", mtn + '[detector]\ntimezone = "Europe/London"'))
    Pipeline(config, store, ReportsOnly()).detect(T0 + timedelta(hours=1))  # type: ignore[arg-type]
    zones = {}
    for name in ("Foonet", "MTN"):
        saved = store.detector_state(name)
        assert saved is not None
        zones[name] = DetectorState.from_json(saved.state).zone
    assert zones == {"Foonet": "Europe/London", "MTN": "Africa/Kampala"}


def test_a_poll_stored_after_the_posts_were_classified_waits_for_the_next_run(
        server: FakeServer, store: Store, classifier: Classifier, real_posts: dict[str, list[str]]) -> None:
    """The process job reads the sources' polls before it classifies: a collect round storing its poll in between
    would otherwise have its bucket scored without the poll's posts, not classified yet."""
    texts = real_posts["mtn_outage"]
    with _forum_watched(server, store, classifier) as (_, pipe, poll):
        start = T0 + timedelta(hours=4)
        poll(start + timedelta(minutes=5))
        pipe.detect(start + timedelta(minutes=5))
        now = start + timedelta(minutes=16)
        polled = store.source_rows()
        pipe.classify_pending(now)
        server.serve("/forum.rss", _rss(*((f"o{k}", texts[k % len(texts)], start + timedelta(minutes=k))
                                          for k in range(15))))
        poll(now)  # stored by the collect job while the process job ran
        assert pipe.detect(now, polled).buckets == 0
        pipe.classify_pending(now + timedelta(seconds=30))
        report = pipe.detect(now + timedelta(seconds=30))
        [row] = [r for r in store.bucket_counts("MTN", start, start + timedelta(minutes=15)).items()]
    assert report.buckets == 1 and row[1][1] == 15


class _Clock:
    """The replay's clock, for the minutes a paced replay would wait: sleeping moves it on at once."""

    now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    from miner import replay as replay_module

    fake = _Clock()
    monkeypatch.setattr(replay_module, "time", fake)
    return fake


def test_a_paced_replay_waits_out_every_bucket_however_long(clock: _Clock) -> None:
    # Each wait was cut to 60 s: at --speed 1, 15-minute buckets came a minute apart, and the hourly steps through a
    # silence too, a replay 15 times faster than the real time it was asked for.
    posts = [Post("s", str(n), "x", T0 + timedelta(minutes=m)) for n, m in enumerate((1, 16, 31, 151))]
    at: list[tuple[datetime, float]] = []
    run_replay(posts, timedelta(minutes=15), lambda now, _: at.append((now, clock.now)), speed=1.0,
               tail=timedelta(hours=1))
    start = T0  # the first bucket's start
    assert [round(wall) for _, wall in at] == [round((now - start).total_seconds()) for now, _ in at]
    assert at[-1][1] == pytest.approx(timedelta(hours=3, minutes=45).total_seconds())


def test_a_resumed_paced_replay_paces_only_the_ticks_after_where_the_store_had_got_to(clock: _Clock) -> None:
    # The ticks the run it resumes had done were waited out again in real time, doing nothing: a day replayed at
    # --speed 60, stopped at its 20th minute, took 20 minutes to come back to where it was.
    posts = [Post("s", str(n), "x", T0 + timedelta(minutes=m)) for n, m in enumerate((1, 16, 31, 46))]
    at: list[tuple[datetime, float]] = []
    run_replay(posts, timedelta(minutes=15), lambda now, _: at.append((now, clock.now)), speed=1.0,
               tail=timedelta(0), done_until=T0 + timedelta(minutes=30))
    assert [(now - T0, wall) for now, wall in at] == [(timedelta(minutes=m), w) for m, w in
                                                      ((15, 0), (30, 0), (45, 900), (60, 1800))]


class _Keyword:
    """A model that calls a post an outage report when it names one of ``words``."""

    decision = Decision(0.5, early_exit=False)

    def __init__(self, version: str, *words: str) -> None:
        self.version, self.words = version, words

    def predict(self, texts: list[str]) -> list[Prediction]:
        return [Prediction(0.9, True, "general") if any(w in t for w in self.words) else
                Prediction(0.1, False, None) for t in texts]


def _foonet_posts(start: datetime, end: datetime) -> list[Post]:
    """Twelve posts a 15-minute bucket, one of them saying "down" and the others "slow"."""
    return [Post("forum", f"{start.timestamp()}-{i}", "Foonet is down" if i % 12 == 0 else "Foonet is slow",
                 start + timedelta(minutes=1.25 * i), services=("Foonet",))
            for i in range(int((end - start) / timedelta(minutes=1.25)))]


def test_a_model_that_finds_more_complaints_is_no_outage_once_reclassified(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    # Reclassify recounted the buckets, but the detector's baseline stayed the one learned from the old model's
    # counts: a new model that also calls "slow" posts complaints (12 a bucket where there was 1) opened an incident
    # at the first buckets after the upgrade, paging on-call for the model change, and reclassify changed nothing.
    config = parse_config(CLOCK_AHEAD)
    upgrade = T0 + timedelta(days=2)
    old = Pipeline(config, store, _Keyword("v1", "down"))  # type: ignore[arg-type]
    old.ingest(_foonet_posts(T0, upgrade), upgrade)
    old.classify_pending(upgrade)
    for hours in range(1, 2 * 24 + 1):
        old.detect(T0 + timedelta(hours=hours))
    new = Pipeline(config, store, _Keyword("v2", "down", "slow"))  # type: ignore[arg-type]
    assert new.reclassify_since(T0, lambda: upgrade) == 2 * 24 * 4 * 12
    later = upgrade + timedelta(hours=6)
    new.ingest(_foonet_posts(upgrade, later), later)
    new.classify_pending(later)
    with caplog.at_level("WARNING", logger="miner.pipeline"):
        report = new.detect(later)
    assert report.buckets == 6 * 4
    assert store.database.rows("SELECT id, opened_at FROM incidents") == []
    assert any("learned again" in r.getMessage() for r in caplog.records), caplog.text
    # Learned once: the mark is taken.
    assert store.database.one("SELECT value FROM store_state WHERE key = 'reclassified_since'") is None
    # Past buckets are scored again against the new counts, and no incident opens for them.
    assert store.database.one("SELECT max(score) AS z FROM buckets WHERE bucket_start < ?",
                              (iso(upgrade - timedelta(days=1)),))["z"] < 3


def test_a_service_still_on_the_old_model_learns_no_baseline_from_a_reclassify_until_it_runs_the_new_one(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    # Reclassified before the service was restarted (the docs say to restart first), its baseline learned from the
    # new model's counts while it still counted the old one's: a model finding fewer complaints made every bucket
    # of the old model's an outage. It waits for the service to run that model.
    config = parse_config(CLOCK_AHEAD)
    upgrade = T0 + timedelta(days=2)
    old = Pipeline(config, store, _Keyword("v1", "down", "slow"))  # type: ignore[arg-type]
    old.ingest(_foonet_posts(T0, upgrade), upgrade)
    old.classify_pending(upgrade)
    for hours in range(1, 2 * 24 + 1):
        old.detect(T0 + timedelta(hours=hours))
    assert Pipeline(config, store, _Keyword("v2", "down")).reclassify_since(  # type: ignore[arg-type]
        T0, lambda: upgrade) == 2 * 24 * 4 * 12
    later = upgrade + timedelta(hours=6)
    old.ingest(_foonet_posts(upgrade, later), later)
    old.classify_pending(later)
    with caplog.at_level("WARNING", logger="miner.pipeline"):
        old.detect(later)
        old.detect(later + timedelta(minutes=1))
    assert store.database.rows("SELECT id FROM incidents") == []
    [warning] = [r.getMessage() for r in caplog.records]  # once
    assert "were reclassified with model v2, but this service classifies with v1: restart it" in warning
    # Restarted with the new model, it learns.
    restarted = Pipeline(config, store, _Keyword("v2", "down"))  # type: ignore[arg-type]
    restarted.reclassify_since(T0, lambda: later)
    restarted.detect(later + timedelta(minutes=2))
    assert store.database.one("SELECT value FROM store_state WHERE key = 'reclassified_since'") is None
    assert store.database.one("SELECT value FROM store_state WHERE key = 'reclassified_by'") is None


def test_a_restart_after_more_than_max_fill_hours_warns_of_the_buckets_it_does_not_score(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    pipe = _warm_quiet_detector(store)  # stepped up to T0 + 2:45
    # The host sleeps from T0 + 3 h to T0 + 27 h. A two-hour outage at 10:00 is in the buckets the detector skips
    # (more than max_fill_hours, 6, before the restart), whose posts the first collect round still fetches.
    back = T0 + timedelta(hours=27)
    pipe.ingest(outage_reports("Foonet", T0 + timedelta(hours=10), T0 + timedelta(hours=12)), back)
    pipe.classify_pending(back)
    with caplog.at_level("WARNING", logger="miner.pipeline"):
        report = pipe.detect(back)
        pipe.detect(back + timedelta(minutes=15))
    assert report.opened == [] and store.incidents() == []
    # Nothing told the on-call that 18 hours went unwatched, while the charts showed 240 complaints in them.
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]  # once, not every run
    assert ("1 service resuming after a gap longer than detector.max_fill_hours (6 h): the buckets from "
            "2026-02-02T03:00:00+00:00 to 2026-02-02T20:45:00+00:00 (17 h 45 min) are not scored") in warning
    assert warning.endswith("complaints stored for them: Foonet 240")
    # A gap within max_fill_hours is scored (as zeros where nothing was stored): no warning.
    caplog.clear()
    with caplog.at_level("WARNING", logger="miner.pipeline"):
        assert pipe.detect(back + timedelta(hours=5)).buckets == 19
    assert [r for r in caplog.records if r.levelname == "WARNING"] == []


def test_an_outage_going_on_through_a_gap_of_less_than_twice_max_fill_hours_is_neither_resolved_nor_re_opened(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    pipe = _warm_quiet_detector(store)  # stepped up to T0 + 2:45
    # An outage from 03:00 opens at 03:30 and goes on; the host sleeps from 04:00 to 14:00, 10 h. The detector
    # resumes max_fill_hours (6 h) back, at 07:45: step() filled the 3 h 45 min before with zero-complaint buckets,
    # resolved the incident at 08:00 (at 30 complaints, z 9.6) and re-opened it at 08:15, with no warning.
    start, back = T0 + timedelta(hours=3), T0 + timedelta(hours=14)
    pipe.ingest(outage_reports("Foonet", start, back), back)
    pipe.classify_pending(back)
    assert pipe.detect(start + timedelta(minutes=30)).opened == [("Foonet", start + timedelta(minutes=30))]
    assert pipe.detect(start + timedelta(hours=1)).resolved == []
    with caplog.at_level("WARNING", logger="miner.pipeline"):
        report = pipe.detect(back)
    assert (report.resolved, report.reopened, report.opened) == ([], [], [])
    assert [e["kind"] for e in store.database.rows("SELECT kind FROM incident_events ORDER BY id")] == ["open"]
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert ("the buckets from 2026-02-02T04:00:00+00:00 to 2026-02-02T07:45:00+00:00 (3 h 45 min) are not scored"
            in warning)


def test_a_reclassify_that_ends_while_the_detector_relearns_from_the_one_before_is_learned_from_again(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    # The detector took the mark once it had learned, unless a reclassify had moved it: one run again with the same
    # --since (the first interrupted) that ended while the detector relearned left it as it was, and the detector
    # took it with its baselines learned from the buckets barely recounted: 1.4 complaints expected where the new
    # model finds 12 in every bucket.
    config = parse_config(CLOCK_AHEAD + "\n[classifier]\nbatch_size = 1\n")  # 64 posts a batch
    upgrade = T0 + timedelta(days=2)
    old = Pipeline(config, store, _Keyword("v1", "down"))  # type: ignore[arg-type]
    old.ingest(_foonet_posts(T0, upgrade), upgrade)
    old.classify_pending(upgrade)
    for hours in range(1, 2 * 24 + 1):
        old.detect(T0 + timedelta(hours=hours))
    model = _Keyword("v2", "down", "slow")

    def interrupt(_done: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # the first batch done, the rest left
        Pipeline(config, store, model).reclassify_since(  # type: ignore[arg-type]
            T0, lambda: upgrade, progress=interrupt)
    other = Store.open(store.path)  # the same command run again, in another process
    take = store.take_reclassified_mark

    def ending_meanwhile(*mark: str) -> None:
        # It ends after the detector read the buckets, before it takes the mark.
        Pipeline(config, other, model).reclassify_since(T0, lambda: upgrade)  # type: ignore[arg-type]
        monkeypatch.setattr(store, "take_reclassified_mark", take)
        take(*mark)

    monkeypatch.setattr(store, "take_reclassified_mark", ending_meanwhile)
    later = upgrade + timedelta(hours=6)
    new = Pipeline(config, store, model)  # type: ignore[arg-type]
    new.ingest(_foonet_posts(upgrade, later), later)
    new.classify_pending(later)
    new.detect(later - timedelta(hours=3))
    assert store.reclassified_mark() is not None  # for the next run
    new.detect(later)
    other.close()
    assert store.reclassified_mark() is None
    [last] = store.database.rows("SELECT baseline FROM buckets WHERE score IS NOT NULL ORDER BY bucket_start DESC "
                                 "LIMIT 1")
    assert last["baseline"] > 10

"""The whole pipeline on real SQLite with the shipped model: replay, incidents, restart, reclassify, collect."""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from miner.classify import Classifier, load_classifier
from miner.config import Config, parse_config
from miner.pipeline import Pipeline
from miner.records import Post
from miner.replay import demo_stream_path, read_posts, run_replay
from miner.store import Store

CONFIG = """
[[services]]
name = "MTN"
aliases = ["mtnug", "mtn uganda"]

[[services]]
name = "Airtel"
aliases = ["airtelug", "airtel uganda"]

[detector]
bucket_minutes = 15
"""
T0 = datetime(2026, 2, 2, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    cfg = parse_config(CONFIG)
    return load_classifier(cfg.classifier)


@pytest.fixture(scope="module")
def real_posts(classifier: Classifier) -> dict[str, list[str]]:
    """Real texts from the bundled stream, split by what the shipped model says about them."""
    texts = [p.text for p in read_posts(demo_stream_path())]
    mtn = [t for t in texts if "mtn" in t.lower() and "airtel" not in t.lower()][:1500]
    airtel = [t for t in texts if "airtel" in t.lower() and "mtn" not in t.lower()][:600]
    mtn_preds = classifier.predict(mtn)
    airtel_preds = classifier.predict(airtel)
    out = {
        "mtn_outage": [t for t, p in sorted(zip(mtn, mtn_preds, strict=True), key=lambda tp: -tp[1].score)
                       if p.outage],
        "mtn_other": [t for t, p in zip(mtn, mtn_preds, strict=True) if not p.outage],
        "airtel_other": [t for t, p in zip(airtel, airtel_preds, strict=True) if not p.outage],
        "airtel_outage": [t for t, p in sorted(zip(airtel, airtel_preds, strict=True), key=lambda tp: -tp[1].score)
                          if p.outage],
    }
    assert len(out["mtn_outage"]) >= 30, "the shipped model finds too few outage reports in the stream"
    return out


def stream(real: dict[str, list[str]], path: Path, both: bool = False) -> Path:
    """Two quiet days of real chatter about both networks, then a burst of real MTN outage reports (and of
    Airtel ones at the same time with ``both``)."""
    rng = random.Random(5)
    rows = []
    t = T0
    end = T0 + timedelta(days=2)
    i = 0
    while t < end:
        svc = "mtn_other" if i % 2 == 0 else "airtel_other"
        rows.append((t, real[svc][i % len(real[svc])]))
        t += timedelta(minutes=rng.uniform(20, 70))
        i += 1
    burst_start = end + timedelta(minutes=5)
    for k in range(30):
        rows.append((burst_start + timedelta(minutes=1.5 * k), real["mtn_outage"][k]))
        if both:
            airtel = real["airtel_outage"]
            rows.append((burst_start + timedelta(minutes=1.5 * k + 0.5), airtel[k % len(airtel)]))
    rows.append((burst_start + timedelta(hours=5), real["airtel_other"][0]))
    rows.sort()
    with path.open("w", encoding="utf-8") as f:
        for n, (when, text) in enumerate(rows):
            f.write(json.dumps({"id": f"t{n}", "text": text, "created_at": when.isoformat(), "source": "test",
                                "url": f"https://example.org/{n}"}) + "\n")
    return path


def replay_into(db: Path, config: Config, posts: Path, classifier: Classifier, limit: int | None = None) -> None:
    store = Store.open(db)
    pipe = Pipeline(config, store, classifier)

    def posts_iter() -> Iterator[Post]:
        for n, post in enumerate(read_posts(posts)):
            if limit is not None and n >= limit:
                return
            yield post

    run_replay(posts_iter(), pipe.bucket, pipe.tick, prefetch=lambda batch: pipe.ingest(batch, T0))
    store.close()


def test_replay_opens_one_incident_for_the_burst(tmp_path: Path, classifier: Classifier,
                                                 real_posts: dict[str, list[str]]) -> None:
    config = parse_config(CONFIG)
    posts = stream(real_posts, tmp_path / "posts.jsonl")
    replay_into(tmp_path / "m.sqlite", config, posts, classifier)
    store = Store.open(tmp_path / "m.sqlite")
    incidents = store.incidents()
    assert [i["service"] for i in incidents] == ["MTN"]
    inc = incidents[0]
    assert inc["status"] == "resolved"
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


def test_interrupted_replay_resumes_without_reopening(tmp_path: Path, classifier: Classifier,
                                                      real_posts: dict[str, list[str]]) -> None:
    config = parse_config(CONFIG)
    posts = stream(real_posts, tmp_path / "posts.jsonl")
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
    posts = stream(real_posts, tmp_path / "posts.jsonl", both=True)
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
    assert pipe.reclassify_since(T0 + timedelta(hours=2), T0) == 2
    rows = store.database.rows("SELECT post_id, model_version FROM classifications ORDER BY post_id, model_version")
    assert [(r["post_id"], r["model_version"]) for r in rows] == [
        (1, "old-model"), (2, "old-model"), (3, classifier.version), (3, "old-model"),
        (4, classifier.version), (4, "old-model")]
    store.close()


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

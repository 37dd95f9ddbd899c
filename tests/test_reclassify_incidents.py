"""After `miner reclassify`, the detector's next run gives an open incident the figures of the new verdicts, and
resolves it (with the usual resolve notice) where they leave no outage; resolved incidents keep theirs."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from streams import T0
from test_alerts_support import settings

from miner.alerts import plan_notifications
from miner.alerts.settings import RouteSettings
from miner.config import parse_config
from miner.pipeline import Pipeline
from miner.records import Decision, Post, Prediction
from miner.store import Store
from miner.store.outbox import Finish

CONFIG = """
[[services]]
name = "Foonet"

[[services]]
name = "Barnet"

[detector]
bucket_minutes = 15
warmup_hours = 1
"""

EMAIL = RouteSettings(name="oncall", email=("oncall@example.org",), digest="0 * * * *")


class _Keyword:
    """A test model: a post is an outage report when it names one of ``words`` (no real model is loaded)."""

    decision = Decision(0.5, early_exit=False)

    def __init__(self, version: str, *words: str) -> None:
        self.version, self.words = version, words

    def predict(self, texts: list[str]) -> list[Prediction]:
        return [Prediction(0.9, True, "login" if "login" in t else "general") if any(w in t for w in self.words)
                else Prediction(0.1, False, None) for t in texts]


def _posts(service: str, start: datetime, end: datetime, text: str, every: timedelta) -> list[Post]:
    return [Post("forum", f"{text}-{start.timestamp()}-{i}", text, start + i * every, services=(service,),
                 author_hash=f"{text}-{start.timestamp()}-{i}")
            for i in range(int((end - start) / every))]


def _store_with_incidents(store: Store, *outage_texts: str, barnet: str = "") -> Pipeline:
    """A day of quiet Foonet posts (one "down" a bucket), an outage at 06:00 that resolved, and one from 20:00, open at
    21:15; each 30 posts a bucket of ``outage_texts`` in turn, which model v1 ("down", "crashed") counts as far as
    it names them. Barnet, quiet, has an outage of ``barnet`` posts from 20:00 too, if given. Detected hour by hour
    up to 21:15, as the service would have."""
    pipe = Pipeline(parse_config(CONFIG), store, _Keyword("v1", "down", "crashed"))  # type: ignore[arg-type]
    end = T0 + timedelta(hours=21, minutes=15)
    posts = _posts("Foonet", T0, end, "Foonet is down", timedelta(minutes=15))
    posts += _posts("Foonet", T0, end, "Foonet is fine", timedelta(minutes=1.5))
    posts += _posts("Barnet", T0, end, "Barnet is fine", timedelta(minutes=1.5))
    for start in (T0 + timedelta(hours=6), T0 + timedelta(hours=20)):
        for k, text in enumerate(outage_texts):
            posts += _posts("Foonet", start + k * timedelta(seconds=30), start + timedelta(hours=1), text,
                            timedelta(seconds=30) * len(outage_texts))
    if barnet:
        posts += _posts("Barnet", T0 + timedelta(hours=20), end, barnet, timedelta(seconds=30))
    pipe.ingest(posts, end)
    pipe.classify_pending(end)
    for hours in range(1, 22):
        pipe.detect(T0 + timedelta(hours=hours))
    pipe.detect(end)
    return pipe


def test_an_open_incident_whose_complaints_a_reclassify_takes_away_is_resolved_with_the_usual_notice(
        store: Store) -> None:
    pipe = _store_with_incidents(store, "Foonet crashed again")
    first, second = store.incidents()
    assert (first["status"], second["status"]) == ("resolved", "open")
    assert (second["total_complaints"], second["peak_complaints"]) == (3 * 31 + 1, 31)
    alerts = settings(routes=(EMAIL,), webhooks=())
    now = T0 + timedelta(hours=21, minutes=16)
    plan_notifications(store, alerts, now)
    sent = now + timedelta(minutes=1)  # after group_wait
    [opening] = store.due_notifications(sent, 10)  # the first incident's is stale: suppressed
    assert store.claim_due(int(opening["id"]), "test", sent, sent) is not None
    assert store.finish_notification(int(opening["id"]), "test", sent, Finish("sent"))

    # The new model takes "crashed" for no outage: the buckets of both outages count one complaint each.
    v2 = Pipeline(pipe.config, store, _Keyword("v2", "down"))  # type: ignore[arg-type]
    assert v2.reclassify_since(T0, lambda: now) > 0
    report = v2.detect(now + timedelta(minutes=1))
    assert report.resolved == [("Foonet", T0 + timedelta(hours=21, minutes=15))]
    after = store.incident(second["id"])
    assert after is not None and after["status"] == "resolved"
    assert after["resolved_at"] == (T0 + timedelta(hours=21, minutes=15)).isoformat()
    # From its opening bucket (20:15) to 21:15: one "down" a bucket.
    assert (after["peak_complaints"], after["total_complaints"]) == (1, 4)
    assert json.loads(after["symptoms"]) == {"general": 4}
    assert after["peak_score"] < pipe.config.detector.z_open
    # Not deleted, not rewritten: its events keep the opening and say what the reclassify changed from what.
    events = store.incident_events(second["id"])
    assert events[0]["kind"] == "open" and events[-1]["kind"] == "resolve"
    details = json.loads(events[-1]["details"])
    assert details["reason"] == "reclassified" and details["model"] == "v2"
    assert details["was"]["total_complaints"] == second["total_complaints"]
    assert details["was"]["peak_complaints"] == second["peak_complaints"]
    # The resolved one keeps the figures its alerts were sent with.
    assert store.incident(first["id"]) == first
    # The route told of the opening is told of the resolve, as for any other.
    plan_notifications(store, alerts, now + timedelta(minutes=2))
    [notice] = store.outbox_listing(["pending"])
    assert notice["kind"] == "resolved" and notice["reason"] is None
    assert store.database.one("SELECT incident_id FROM outbox_items WHERE outbox_id = ?",
                              (notice["id"],)) == {"incident_id": second["id"]}
    # The detector goes on from it: the next quiet buckets neither re-open nor resolve it again.
    later = v2.detect(now + timedelta(hours=1))
    assert (later.opened, later.reopened, later.resolved) == ([], [], [])


def test_an_open_incident_takes_the_complaints_a_reclassify_adds(store: Store) -> None:
    pipe = _store_with_incidents(store, "Foonet crashed again", "Foonet login broken")
    first, second = store.incidents()
    assert second["status"] == "open"
    was_total, was_peak = second["total_complaints"], second["peak_complaints"]
    assert json.loads(second["symptoms"]) == {"general": pytest.approx(was_total)}
    now = T0 + timedelta(hours=21, minutes=16)
    v2 = Pipeline(pipe.config, store, _Keyword("v2", "down", "crashed", "broken"))  # type: ignore[arg-type]
    assert v2.reclassify_since(T0, lambda: now) > 0
    report = v2.detect(now + timedelta(minutes=1))
    assert report.resolved == [] and report.opened == []
    after = store.incident(second["id"])
    assert after is not None and after["status"] == "open"
    assert after["peak_complaints"] == 2 * was_peak - 1  # both halves of the outage, and the one "down"
    assert after["total_complaints"] > was_total
    assert json.loads(after["symptoms"])["login"] == after["total_complaints"] - was_total
    [update] = [e for e in store.incident_events(second["id"]) if e["kind"] == "update"]
    details = json.loads(update["details"])
    assert details["reason"] == "reclassified" and details["was"]["total_complaints"] == was_total
    # The draft the detector folds the next buckets into has them too.
    saved = store.detector_state("Foonet")
    assert saved is not None and saved.draft is not None
    assert json.loads(saved.draft)["total_complaints"] == after["total_complaints"]
    assert store.incident(first["id"]) == first


def test_the_open_incident_of_a_service_whose_complaints_a_reclassify_leaves_as_they_were_is_left_as_it_is(
        store: Store) -> None:
    pipe = _store_with_incidents(store, "Foonet crashed again", barnet="Barnet is down")
    [barnet] = [i for i in store.incidents() if i["service"] == "Barnet"]
    assert barnet["status"] == "open"
    now = T0 + timedelta(hours=21, minutes=16)
    v2 = Pipeline(pipe.config, store, _Keyword("v2", "down"))  # type: ignore[arg-type]
    assert v2.reclassify_since(T0, lambda: now) > 0
    assert v2.detect(now + timedelta(minutes=1)).resolved == [("Foonet", T0 + timedelta(hours=21, minutes=15))]
    # Its baseline is learned again (from the same counts), and its incident keeps its figures and its events.
    assert store.incident(barnet["id"]) == barnet
    assert [e["kind"] for e in store.incident_events(barnet["id"])] == ["open"]

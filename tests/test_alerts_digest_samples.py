"""A digest reads the sample posts of all its incidents at once (Store.sample_posts_of): each incident shows the same
samples as its own read (Store.sample_posts) chose, where they compete: posts alike in score and time, copies of one
text, a post about two services whose windows overlap, posts before the lead-in and after the digest's time."""

from __future__ import annotations

from datetime import datetime, timedelta

from test_alerts_support import T0, resolve, settings

from miner.alerts.content import incident_view, sample_span
from miner.alerts.digest_content import digest_incidents
from miner.records import Post, Prediction
from miner.store import Store
from miner.store.incident_samples import SampleSpan

AS_OF = T0 + timedelta(minutes=40)
SINCE = T0 - timedelta(hours=6)


def _post(store: Store, key: str, text: str, at: datetime, score: float, services: tuple[str, ...],
          source: str = "mastodon:social") -> None:
    store.insert_posts([Post(source=source, external_id=key, text=text, created_at=at, services=services,
                             url=f"https://social.example/{key}")], at)
    todo = store.posts_to_classify(10)
    store.save_classifications([(p.id, Prediction(score, True, "login")) for p in todo], "test-model", at)


def _storm(tmp_path: object) -> Store:
    """Alpha open from T0, Beta from T0 + 10 min (their windows overlap), Gamma resolved before, with posts that
    compete for their samples."""
    store = Store.open(tmp_path / "miner.db")  # type: ignore[operator]
    store.set_bucket_minutes(5)
    fields = {"peak_complaints": 30, "peak_score": 8.0, "baseline": 1.0, "total_complaints": 60,
              "symptoms": {"login": 60}}
    store.open_incident("Alpha", T0, fields, {})
    store.open_incident("Beta", T0 + timedelta(minutes=10), {**fields, "peak_score": 7.0}, {})
    gamma = store.open_incident("Gamma", T0 - timedelta(hours=3), {**fields, "peak_score": 6.0}, {})
    resolve(store, gamma, T0 - timedelta(hours=2))
    tie = T0 + timedelta(minutes=5)
    # Fourteen texts alike in score and time: which of them make the ten candidates read is the post id's to say.
    for i in range(14):
        _post(store, f"tie-{i}", f"Alpha login broken, report {i}", tie, 0.8, ("Alpha",))
    # Copies of one text alike in score and time, from three sources: one of them is shown, with its source and link.
    for i, source in enumerate(("mastodon:social", "bluesky", "reddit:r/alpha")):
        _post(store, f"copy-{i}", "ALPHA IS DOWN", tie, 0.9, ("Alpha",), source)
    # About both, in the span the two windows share, and alike with the first of them.
    _post(store, "both", "Alpha and Beta both down?", tie, 0.9, ("Alpha", "Beta"))
    for i in range(4):
        _post(store, f"beta-{i}", f"Beta down {i}", T0 + timedelta(minutes=15), 0.85, ("Beta",))
    # In Alpha's lead-in (30 min before its opening) but not Beta's; before Alpha's; after the digest's time.
    _post(store, "lead", "Alpha slow since noon", T0 - timedelta(minutes=29), 0.95, ("Alpha", "Beta"))
    _post(store, "early", "Alpha flaky yesterday", T0 - timedelta(minutes=31), 0.99, ("Alpha", "Beta"))
    _post(store, "late", "Alpha still down at 12:45", T0 + timedelta(minutes=46), 0.99, ("Alpha", "Beta"))
    _post(store, "gamma", "Gamma down", T0 - timedelta(hours=2, minutes=30), 0.9, ("Gamma",))
    return store


def test_the_samples_read_for_many_spans_at_once_are_each_spans_own_read_in_its_order(tmp_path: object) -> None:
    store = _storm(tmp_path)
    alpha = SampleSpan("Alpha", T0 - timedelta(minutes=30), AS_OF)
    beta = SampleSpan("Beta", T0 - timedelta(minutes=20), AS_OF)
    spans = [alpha, beta, SampleSpan("Gamma", T0 - timedelta(hours=4), T0), alpha,
             SampleSpan("Alpha", T0 + timedelta(minutes=50), T0 + timedelta(hours=1)),  # none in it
             SampleSpan("Alpha", T0 - timedelta(hours=1), T0 + timedelta(hours=1))]
    for limit in (1, 3, 10, 25):
        together = store.sample_posts_of(spans, limit)
        assert together == {s: store.sample_posts(s.service, s.start, s.end, limit) for s in spans}
    ten = store.sample_posts_of([alpha], 10)[alpha]
    # The case is one the ties decide: the last candidates are some of the fourteen alike, and one copy of the text.
    assert [p["text"] for p in ten].count("ALPHA IS DOWN") == 1
    assert sum(p["text"].startswith("Alpha login broken") for p in ten) == 7
    assert store.sample_posts_of([], 5) == {}


def test_a_digest_of_incidents_whose_samples_compete_shows_each_ones_own_samples(tmp_path: object) -> None:
    store = _storm(tmp_path)
    cfg = settings(max_samples=4)
    route = cfg.routes[0]
    digest = digest_incidents(store, cfg, route.matches, SINCE, AS_OF)
    assert [v.service for v in digest.views] == ["Alpha", "Beta", "Gamma"]
    for v in digest.views:
        own = incident_view(store, cfg, v.id, AS_OF)  # its samples read by itself (sample_posts)
        assert own is not None and v.samples == own.samples
    shown = {v.service: [s.text for s in v.samples] for v in digest.views}
    assert shown["Alpha"][:2] == ["Alpha slow since noon", "Alpha and Beta both down?"] and len(shown["Alpha"]) == 4
    assert shown["Beta"][0] == "Alpha and Beta both down?" and "Alpha slow since noon" not in shown["Beta"]
    assert shown["Gamma"] == ["Gamma down"]


def test_an_incident_whose_span_the_digest_did_not_read_reads_its_own(tmp_path: object) -> None:
    store = _storm(tmp_path)
    cfg = settings(max_samples=3)
    alpha = store.open_incident_for("Alpha")
    assert alpha is not None
    span = sample_span(alpha, None, AS_OF, timedelta(minutes=5))
    other = SampleSpan("Alpha", span.start, span.end - timedelta(minutes=1))
    read = store.sample_posts_of([other], 15)
    view = incident_view(store, cfg, alpha["id"], AS_OF, sample_reads=read)
    own = incident_view(store, cfg, alpha["id"], AS_OF)
    assert view is not None and own is not None and view.samples == own.samples

"""A digest rendered as of an earlier time (its scheduled time, `miner digest --at`, a queued one sent late) shows the
incidents as they stood then: their state, and figures of the buckets ended by then, not the rows' figures of now."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from smtp_server import SmtpServer, smtp_server  # noqa: F401  (fixture)
from streams import T0 as STREAM_T0
from streams import warmed_pipeline
from test_alerts_figures import mail_settings
from test_alerts_rules import reopen
from test_alerts_support import BUCKET, T0, open_incident, resolve, settings

from miner.alerts import dispatch, render_digest
from miner.alerts.digests import enqueue_digest_now
from miner.pipeline import Pipeline
from miner.records import Post, Prediction
from miner.store import Store
from miner.timeutil import iso

QUARTER = timedelta(minutes=15)
START = STREAM_T0 + timedelta(hours=3)  # 03:00: the detector is warmed on the quiet hours before
# Reports of Foonet: 30 about logging in in each quarter from 03:00 to 03:45 (the detector opens at 03:30, on the
# second), then 45 about messages in each of 03:45-04:00 and 04:00-04:15, then none.
REPORTS = [Post("reports", f"login-{i}", f"Foonet login broken, report {i}", START + timedelta(seconds=30 * i),
                services=("Foonet",), symptom_hint="login") for i in range(90)]
REPORTS += [Post("reports", f"msg-{i}", f"Foonet messages stuck, report {i}",
                 START + 3 * QUARTER + timedelta(seconds=20 * i), services=("Foonet",), symptom_hint="messaging")
            for i in range(90)]
AS_OF = START + 3 * QUARTER + timedelta(minutes=5)  # 03:50: two of its buckets ended, the third in progress


def _run(pipe: Pipeline, frm: datetime, to: datetime) -> None:
    """The pipeline every 15 minutes from ``frm`` to ``to``: the reports of each quarter collected at its end."""
    t = frm
    while t <= to:
        pipe.ingest([p for p in REPORTS if t - QUARTER <= p.created_at < t], t)
        pipe.classify_pending(t)
        pipe.detect(t)
        t += QUARTER


def _pipeline(store: Store) -> Pipeline:
    pipe = warmed_pipeline("[[services]]\nname = \"Foonet\"\n[detector]\nbucket_minutes = 15\nwarmup_hours = 1\n",
                           store)
    _run(pipe, START + QUARTER, START + 3 * QUARTER)
    assert store.incident(1)["opened_at"] == iso(START + 2 * QUARTER)
    return pipe


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_a_digest_as_of_a_time_in_an_incident_shows_its_figures_of_then_and_a_later_one_the_whole(
        store: Store) -> None:
    pipe = _pipeline(store)
    # The detector goes on after 03:50: the messages' buckets, then quiet ones, until it resolves the incident.
    _run(pipe, START + 4 * QUARTER, START + timedelta(hours=3))
    row = store.incident(1)
    assert row["status"] == "resolved" and (row["total_complaints"], row["peak_complaints"]) == (150, 45)
    first_two = max(r["score"] for r in store.series("Foonet", START + QUARTER, START + 3 * QUARTER))
    assert first_two < row["peak_score"]  # the messages' bucket scored higher: the z of then is another

    then = render_digest(store, settings(), AS_OF, "oncall", since=START)
    text = _flat(then.text)
    # Open then, and two of its buckets had ended, 03:15 and 03:30 (the 03:00 one came before its opening one): not
    # the 03:45 one in progress, with messages in it.
    assert "1 open, 0 resolved" in text and "Foonet: OPEN" in text, text
    assert "Peak: 30 complaints per bucket" in text and f"z {first_two:.1f}" in text, text
    assert "Complaints: 60" in text and "Symptoms: login 60 (100%)" in text and "messaging" not in text, text
    assert "Foonet login broken" in text and "messages stuck" not in text, text  # its samples too
    [view] = then.incidents
    assert (view.total_complaints, view.peak_complaints, view.peak_score) == (60, 30, first_two)
    assert max(r["bucket_start"] for r in view.series) == iso(START + 2 * QUARTER)  # the chart ends at 03:45

    later = _flat(render_digest(store, settings(), START + timedelta(hours=3), "oncall", since=START).text)
    assert "0 open, 1 resolved" in later and "Peak: 45 complaints per bucket" in later, later
    assert "Complaints: 150" in later and "Symptoms: messaging 90 (60%), login 60 (40%)" in later, later
    assert f"z {row['peak_score']:.1f}" in later


def test_a_queued_digest_sent_after_the_incident_went_on_says_what_it_said_at_its_time(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # Queued at 03:50 (`miner digest`, or its schedule), and sent only at 06:00 (the mail server was down): the
    # incident grew and resolved meanwhile, and the digest showed its figures of 06:00 under "as of 03:50", open.
    pipe = _pipeline(store)
    cfg = mail_settings(smtp_server)
    [route] = cfg.routes
    assert enqueue_digest_now(store, cfg, route, AS_OF)
    _run(pipe, START + 4 * QUARTER, START + timedelta(hours=3))
    assert store.incident(1)["total_complaints"] == 150
    assert dispatch(store, cfg, START + timedelta(hours=3), worker_id="w").sent == 1

    msg = smtp_server.inbox.messages[-1]
    assert str(msg["Subject"]) == "[miner] Digest 2026-02-02 03:50 UTC: 1 open, 0 resolved"
    text = _flat(msg.get_body(("plain",)).get_content())
    assert "Complaints: 60" in text and "Symptoms: login 60 (100%)" in text, text
    assert "Peak: 30 complaints per bucket" in text, text


def test_an_incident_resolved_by_then_and_back_since_is_resolved_in_a_digest_of_then(store: Store) -> None:
    # Open at 12:00, resolved at 12:40, back at 13:00 and open since: a digest as of 12:50 said it open (its row has
    # no resolve now), with its figures of now.
    iid = open_incident(store, "WhatsApp", T0)
    resolve(store, iid, T0 + timedelta(minutes=40))
    reopen(store, iid, T0 + timedelta(minutes=60))
    store.update_incident_quietly(iid, T0 + timedelta(minutes=70), {"peak_complaints": 90, "total_complaints": 500})
    d = render_digest(store, settings(), T0 + timedelta(minutes=50), "oncall", since=T0 - timedelta(hours=1))
    text = _flat(d.text)
    assert "0 open, 1 resolved" in text and "WhatsApp: RESOLVED" in text, text
    assert "Open: 2026-11-27 12:00 UTC to 2026-11-27 12:40 UTC" in text, text
    # Its buckets from the opening one (11:55) to the one ending at the resolve: nine of 30 complaints.
    assert "Complaints: 270" in text and "Peak: 30 complaints per bucket" in text, text
    # Resolved before the digest's period began: not in it at all.
    d = render_digest(store, settings(), T0 + timedelta(minutes=50), "oncall", since=T0 + timedelta(minutes=45))
    assert "all quiet" in d.subject and "WhatsApp" not in d.text


def test_figures_of_spells_that_overlap_in_time_count_each_services_posts_as_the_detector_does(store: Store) -> None:
    # Two services in outages at once, their spells overlapping in time (read in one run of posts): each one's
    # symptoms are its own posts', each author once per bucket under the symptom of most of their posts in it.
    from miner.store.incident_figures import Spell

    t0 = T0 - timedelta(hours=1)
    posts = []
    for b in range(6):  # six 5-minute buckets
        for n in range(12):
            author = f"user{n % 5}"  # five authors, several posts each, of different symptoms
            for service in ("WhatsApp", "Signal"):
                posts.append(Post("mastodon:social", f"{service}-{b}-{n}", f"{service} down {b} {n}",
                                  t0 + b * BUCKET + timedelta(seconds=20 * n), author_hash=f"{service}{author}",
                                  services=(service,)))
    store.insert_posts(posts, t0 + timedelta(hours=1))
    todo = store.posts_to_classify(1000)
    symptoms = ["login", "messaging", "login", "calls"]
    store.save_classifications([(p.id, Prediction(0.9, True, symptoms[i % 4])) for i, p in enumerate(todo)], "m",
                               t0 + timedelta(hours=1))
    store.refresh_buckets(t0, t0 + timedelta(hours=1), BUCKET)
    spells = [Spell(1, "WhatsApp", t0 + BUCKET, t0 + 4 * BUCKET), Spell(2, "Signal", t0, t0 + 2 * BUCKET),
              Spell(2, "Signal", t0 + 3 * BUCKET, t0 + 6 * BUCKET)]  # Signal: a resolve and a re-opening between
    found = store.incident_figures(spells, BUCKET)

    def detector(service: str, buckets: list[int]) -> tuple[int, dict[str, int]]:
        counted = store.bucket_counts(service, t0, t0 + timedelta(hours=1))
        by_symptom: dict[str, int] = {}
        for b in buckets:
            for name, n in store.symptom_counts(service, t0 + b * BUCKET, t0 + (b + 1) * BUCKET).items():
                by_symptom[name] = by_symptom.get(name, 0) + n
        return sum(counted[iso(t0 + b * BUCKET)][1] for b in buckets), by_symptom

    for iid, service, buckets in ((1, "WhatsApp", [1, 2, 3]), (2, "Signal", [0, 1, 3, 4, 5])):
        total, by_symptom = detector(service, buckets)
        assert (found[iid].total, found[iid].symptoms) == (total, by_symptom)
        assert sum(by_symptom.values()) == total == 5 * len(buckets)


STORM_AS_OF = T0 + timedelta(minutes=30)


def _scored(store: Store, service: str, z_then: float, z_since: float | None, updated: datetime) -> int:
    """An incident of ``service`` open from T0 whose buckets scored ``z_then`` up to STORM_AS_OF and ``z_since``
    after it (None: none scored since), its row's peak z written at ``updated``."""
    steps = []
    for n in range(14):  # 11:55 to 13:00
        start = T0 + (n - 1) * BUCKET
        z = z_then if start < STORM_AS_OF else z_since
        if z is not None:
            steps.append((start, z, 1.0, 3.0, 5.0))
    store.save_detector_step(service, steps[-1][0], "{}", steps, updated)
    iid = store.open_incident(service, T0, {"peak_complaints": 30, "peak_score": z_then, "baseline": 1.0,
                                            "total_complaints": 90, "bucket_minutes": 5}, {})
    store.update_incident_quietly(iid, updated, {"peak_score": max(z_then, z_since or z_then)})
    return iid


def test_a_storm_digest_sent_late_shows_the_incidents_most_important_as_of_its_time_in_that_order(
        store: Store, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    # Queued at 12:30, and sent at 13:30 (the mail server was down). Riser's z was 4 at 12:30 and 20 since; Big's 9,
    # 9.5 since; Mid's 6, its row unchanged since. A digest showing two of them chose them by their z of now (Riser
    # and Big), printed the z of 12:30 beside them (4.0 and 9.0), and left out Mid, whose 6.0 was above Riser's then.
    monkeypatch.setattr("miner.alerts.render.MAX_INCIDENTS", 2)
    store.set_bucket_minutes(5)
    later = STORM_AS_OF + timedelta(minutes=30)
    riser = _scored(store, "Riser", 4.0, 20.0, later)
    big = _scored(store, "Big", 9.0, 9.5, later)
    mid = _scored(store, "Mid", 6.0, None, STORM_AS_OF - BUCKET)
    assert [store.incident(i)["peak_score"] for i in (riser, big, mid)] == [20.0, 9.5, 6.0]
    cfg = mail_settings(smtp_server)
    [route] = cfg.routes
    assert enqueue_digest_now(store, cfg, route, STORM_AS_OF)
    assert dispatch(store, cfg, later + timedelta(minutes=30), worker_id="w").sent == 1

    msg = smtp_server.inbox.messages[-1]
    assert str(msg["Subject"]) == "[miner] Digest 2026-11-27 12:30 UTC: 3 open, 0 resolved"
    text = _flat(msg.get_body(("plain",)).get_content())
    html = _flat(msg.get_body(("html",)).get_content())
    for part in (text, html):
        assert "Big" in part and "Mid" in part and "Riser" not in part, part
        assert part.index("Big") < part.index("Mid"), part  # in the order of their z then
        assert "shows the 2 most important of 3 incidents" in part, part
    assert "z 9.0" in text and "z 6.0" in text and "z 4.0" not in text and "z 9.5" not in text, text
    assert "1 more are left out" in text and "<b>1 more are left out</b>" in html
    # Rendered as of then by `miner digest --at`, and as of now, with the same pick as the figures they print.
    then = render_digest(store, cfg, STORM_AS_OF, "oncall", since=T0 - timedelta(hours=1))
    assert [(v.service, v.peak_score) for v in then.incidents] == [("Big", 9.0), ("Mid", 6.0)]
    now = render_digest(store, cfg, later, "oncall", since=T0 - timedelta(hours=1))
    assert [(v.service, v.peak_score) for v in now.incidents] == [("Riser", 20.0), ("Big", 9.5)]

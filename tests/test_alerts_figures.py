"""What the alerts say, figures and the provider's word, read as the on-call reads them: the mail as it arrives
at a real SMTP server."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta

from smtp_server import SmtpServer, smtp_server  # noqa: F401  (fixture)
from streams import T0 as STREAM_T0
from streams import ReportsOnly, outage_reports, warmed_pipeline
from test_alerts_support import BUCKET, T0, add_official, open_incident, seed_posts, settings

from miner.alerts import dispatch, plan_notifications
from miner.alerts.settings import AlertSettings, RouteSettings, SmtpSettings
from miner.cli.summary import print_summary
from miner.config import SourceConfig, parse_config
from miner.pipeline import Pipeline
from miner.records import FetchResult, OfficialIncident, Post, Prediction
from miner.store import Store


def mail_settings(server: SmtpServer, **overrides: object) -> AlertSettings:
    route = RouteSettings(name="oncall", email=("oncall@example.org",))
    smtp = SmtpSettings(host="127.0.0.1", port=server.port, security="none", timeout=5)
    return settings(routes=(route,), webhooks=(), smtp=smtp, group_wait=0.0, **overrides)


def _parts(server: SmtpServer, i: int = -1) -> tuple[str, str, str]:
    msg = server.inbox.messages[i]
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    return str(msg["Subject"]), text, html


def test_the_peak_is_set_against_the_baseline_of_its_own_bucket_not_of_the_opening(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # Opened at night, when 0.5 complaints were expected; peaked at 60 in the evening, when 20 were.
    steps, t = [], T0 - timedelta(hours=3)
    while t < T0 + timedelta(hours=1):
        baseline = 0.5 if t < T0 else 20.0
        steps.append((t, 1.0, baseline, 3 * baseline, max(3 * baseline, 5.0)))
        t += BUCKET
    store.save_detector_step("WhatsApp", t, "{}", steps, t)
    counts = {T0 - BUCKET: 6, T0: 25, T0 + BUCKET: 60, T0 + 2 * BUCKET: 40}
    with store.database.transaction() as conn:
        for b, n in counts.items():
            conn.execute("UPDATE buckets SET complaints = ? WHERE service = 'WhatsApp' AND bucket_start = ?",
                         (n, b.isoformat(timespec="seconds")))
    # As the detector stores it: the baseline of the opening bucket, the peak and z of the whole incident.
    store.open_incident("WhatsApp", T0, {"peak_complaints": 60, "peak_score": 9.0, "baseline": 0.5,
                                         "total_complaints": 131}, {"z": 6.0})
    cfg = mail_settings(smtp_server)
    now = T0 + 3 * BUCKET
    plan_notifications(store, cfg, now)
    assert dispatch(store, cfg, now, worker_id="w").sent == 1

    subject, text, html = _parts(smtp_server)
    # 60 against the 20 the chart draws at that bar: 3x normal, not "120.0x" against the night's 0.5.
    assert "(3.0x normal, z 9.0)" in subject
    assert "60 complaints per bucket vs baseline 20.0 (3.0x), z 9.0" in text
    assert ">20.0</div>" in html and ">3.0x</div>" in html and "120.0x" not in html
    assert store.incident(1)["baseline"] == 0.5  # the store keeps what it documents: the baseline at the opening
    # The summary of a replay or the demo gives the same baseline beside the same peak: it gave the opening's.
    lines: list[str] = []
    print_summary(store, parse_config('[[services]]\nname = "WhatsApp"\n'), lines.append)
    [row] = [line.split() for line in "\n".join(lines).splitlines() if line.startswith(" 1  WhatsApp")]
    assert row[5:8] == ["60", "9.0", "20.0"], lines


def test_a_provider_incident_begun_hours_before_ours_and_still_open_is_not_called_nothing_on_the_status_page(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # The provider has been investigating since 09:00, too early for the detector to claim it as ours
    # (official_match_minutes); an older one of its incidents was over before ours opened.
    add_official(store, "WhatsApp", T0 - timedelta(hours=3))
    store.sync_sources([SourceConfig(name="status:wa", type="statuspage", url="https://status.example.com")])
    over = OfficialIncident(source="status:wa", external_id="old", service="WhatsApp", title="Earlier trouble",
                            status="resolved", started_at=T0 - timedelta(hours=6), updated_at=T0 - timedelta(hours=5),
                            resolved_at=T0 - timedelta(hours=5))
    store.save_fetch("status:wa", FetchResult(incidents=[over]), T0 - timedelta(hours=5), T0 - timedelta(hours=5))
    open_incident(store, "WhatsApp", T0)
    cfg = mail_settings(smtp_server)
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0, worker_id="w").sent == 1

    _, text, html = _parts(smtp_server)
    assert "nothing on the status page yet" not in text and "No incident on the provider" not in html
    flat = " ".join(text.split())
    assert "Provider: Some users are unable to send messages (investigating," in flat and "09:00 UTC" in flat
    # it said so first (stored when it started: first seen by miner then, as the Provider line says)
    # A lag, not a lead: "Our lead: 3 h 00 min after ..." read as miner being first.
    assert "Provider first: miner first saw it on its status page 3 h 00 min before we detected it" in flat
    assert "Our lead" not in flat
    assert "Earlier trouble" not in text


def test_a_baseline_under_one_is_shown_so_that_the_peak_over_it_adds_up(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # The demo's MTN outage: 17 complaints against 0.352 expected, shown "vs baseline 0.4 (48.3x)" (17 / 0.4 = 42.5).
    store.open_incident("MTN", T0, {"peak_complaints": 17, "peak_score": 5.4, "baseline": 0.352,
                                    "total_complaints": 36}, {"z": 5.4})
    cfg = mail_settings(smtp_server)
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0, worker_id="w").sent == 1
    subject, text, html = _parts(smtp_server)
    assert "(48.3x normal, z 5.4)" in subject
    assert "17 complaints per bucket vs baseline 0.35 (48.3x), z 5.4" in text
    assert ">0.35</div>" in html and ">48.3x</div>" in html


def test_an_incident_miner_stopped_tracking_is_not_called_back_to_normal(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # Foonet opens, and is then removed from feeds.toml: the detector resolves its incident, which nothing watches
    # any more. The notice said "RESOLVED ... Complaints are back to normal" of an outage nobody saw end.
    pipe = warmed_pipeline("[[services]]\nname = \"Foonet\"\n[detector]\nbucket_minutes = 15\nwarmup_hours = 1\n",
                           store)
    start = STREAM_T0 + timedelta(hours=3)
    pipe.ingest(outage_reports("Foonet", start, start + timedelta(minutes=30)), start + timedelta(minutes=30))
    pipe.classify_pending(start + timedelta(minutes=30))
    assert pipe.detect(start + timedelta(minutes=30)).opened
    cfg = mail_settings(smtp_server)
    plan_notifications(store, cfg, start + timedelta(minutes=30))
    assert dispatch(store, cfg, start + timedelta(minutes=30), worker_id="w").sent == 1
    later = start + timedelta(hours=1)
    pipe = Pipeline(parse_config('[[services]]\nname = "Barnet"\n[detector]\nbucket_minutes = 15\n'), store,
                    ReportsOnly())  # type: ignore[arg-type]
    assert pipe.detect(later).resolved == [("Foonet", later)]
    plan_notifications(store, cfg, later)
    assert dispatch(store, cfg, later, worker_id="w").sent == 1

    subject, text, html = _parts(smtp_server)
    assert subject.startswith("[miner] CLOSED, NO LONGER TRACKED: Foonet after ")
    flat = " ".join(text.split())
    assert "Closed: not seen to end: the service was removed from feeds.toml, so miner stopped watching it" in flat
    assert "back to normal" not in flat.replace("cannot tell whether their complaints are back to normal", "")
    assert "Complaints are back to normal." not in html and "Closed, not seen to end:" in html


def test_an_alert_going_out_after_miner_stopped_tracking_its_incident_does_not_say_resolved(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # The alert waits out its group wait; meanwhile the service leaves feeds.toml and miner closes its incident. The
    # alert says the close when it goes out (the resolve notice is suppressed): its subject read "RESOLVED SINCE",
    # the one word the notice no longer says of an outage nobody saw end.
    cfg = replace(mail_settings(smtp_server), group_wait=60.0)
    iid = open_incident(store, "WhatsApp", T0)
    plan_notifications(store, cfg, T0)
    closed = T0 + timedelta(seconds=30)
    store.update_incident(iid, closed, {"status": "resolved", "resolved_at": closed}, kind="resolve",
                          details={"reason": "unwatched"})
    plan_notifications(store, cfg, closed)
    assert dispatch(store, cfg, T0 + timedelta(seconds=61), worker_id="w").sent == 1
    assert len(smtp_server.inbox.messages) == 1
    subject, text, _ = _parts(smtp_server)
    assert "Closed: not seen to end: the service was removed from feeds.toml" in " ".join(text.split())
    assert "RESOLVED" not in subject and subject.startswith("[miner] CLOSED, NO LONGER TRACKED SINCE: WhatsApp")


def test_the_sample_posts_of_an_hour_wide_bucket_include_the_posts_that_opened_it(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # With detector.bucket_minutes = 60 the opening bucket is 11:00-12:00; its complaints came at 11:05-11:10. The
    # samples were read from 30 minutes before the opening (11:30), the second half of that bucket only: the alert
    # showed no sample post of an outage made of posts.
    store.set_bucket_minutes(60)
    seed_posts(store, "WhatsApp", T0 - timedelta(minutes=55))
    seed_posts(store, "WhatsApp", T0 - timedelta(minutes=80), ["whatsapp down an hour before, a bucket earlier"])
    store.open_incident("WhatsApp", T0, {"peak_complaints": 6, "peak_score": 7.0, "baseline": 0.5,
                                         "total_complaints": 6}, {"z": 7.0})
    cfg = mail_settings(smtp_server)
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0, worker_id="w").sent == 1

    _, text, html = _parts(smtp_server)
    flat = " ".join(text.split())
    assert "Sample posts:" in flat and "WhatsApp is down for me, messages stuck on one tick" in flat
    assert "is whatsapp down? can&#39;t send anything in Kampala" in html
    assert "a bucket earlier" not in flat  # the bucket before the opening one did not open it


def test_the_heading_of_a_batch_gives_the_times_of_all_its_openings_not_of_the_first_alone(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # WhatsApp opened at 12:10, Instagram (the higher z, so shown first) at 12:55; the planner, behind, sends both in
    # one message at 13:00. Its heading said "Detected 2026-11-27 12:55 UTC." of both, WhatsApp's 45 minutes over.
    store.open_incident("WhatsApp", T0 + timedelta(minutes=10), {"peak_complaints": 30, "peak_score": 8.4,
                                                                 "baseline": 2.0, "total_complaints": 95}, {"z": 8.4})
    store.open_incident("Instagram", T0 + timedelta(minutes=55), {"peak_complaints": 40, "peak_score": 9.5,
                                                                  "baseline": 2.0, "total_complaints": 60}, {"z": 9.5})
    cfg = mail_settings(smtp_server, group_by="route")
    now = T0 + timedelta(hours=1)
    plan_notifications(store, cfg, now)
    assert dispatch(store, cfg, now, worker_id="w").sent == 1

    subject, text, html = _parts(smtp_server)
    assert subject == "[miner] OPEN: Instagram, WhatsApp"
    when = "Detected between 2026-11-27 12:10 and 12:55 UTC; each incident's time is below."
    assert when.replace("'", "&#39;") in html and "Detected 2026-11-27 12:55 UTC." not in html
    assert when in " ".join(text.split())


def test_the_symptoms_of_an_incident_add_up_to_its_complaints_when_people_report_two(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # 15 people report Foonet in each of two 15-minute buckets, each with two symptoms: ten say login twice and then
    # messaging, five say login and then messaging. Complaints count each person once per bucket (15 in the bucket
    # that opened it); the breakdown counted each once per symptom, "login 15 (50%), messaging 15 (50%)" under
    # "Complaints: 15".
    pipe = warmed_pipeline("[[services]]\nname = \"Foonet\"\n[detector]\nbucket_minutes = 15\nwarmup_hours = 1\n",
                           store)
    start = STREAM_T0 + timedelta(hours=3)
    posts = []
    for bucket in range(2):
        for who in range(15):
            for k, hint in enumerate(["login", "login", "messaging"] if who < 10 else ["login", "messaging"]):
                at = start + timedelta(minutes=15 * bucket + 4 * k, seconds=6 * who)
                posts.append(Post("reports", f"{bucket}-{who}-{k}", "Foonet is down", at, author_hash=f"{who:016x}",
                                  services=("Foonet",), symptom_hint=hint))
    now = start + timedelta(minutes=30)
    pipe.ingest(posts, now)
    pipe.classify_pending(now)
    assert pipe.detect(now).opened  # at the second bucket's end: the incident's complaints are that bucket's
    row = store.incident(1)
    assert row["total_complaints"] == 15
    # Each person under the symptom they reported most in the bucket, the latest of two reported as often.
    assert json.loads(row["symptoms"]) == {"login": 10, "messaging": 5}
    cfg = mail_settings(smtp_server)
    plan_notifications(store, cfg, now)
    assert dispatch(store, cfg, now, worker_id="w").sent == 1

    _, text, html = _parts(smtp_server)
    flat = " ".join(text.split())
    assert "Complaints: 15" in flat and "Symptoms: login 10 (67%), messaging 5 (33%)" in flat
    assert "10 (67%)" in html and "5 (33%)" in html


def test_symptoms_read_from_the_posts_count_each_person_once_per_bucket_as_the_complaints_do(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # An incident whose row holds no symptoms has them counted from its posts, over two 5-minute buckets here. One
    # person reports login and then messaging in the first, messaging in the second; another reports calls in the
    # first: 3 complaints. Each person was counted once per symptom over the whole window: "messaging 1, calls 1,
    # login 1", which says nothing of the second bucket's complaint and counted the first's twice.
    store.set_bucket_minutes(5)
    reports = [(T0 - 2 * BUCKET, "a", "login"), (T0 - 2 * BUCKET + timedelta(minutes=2), "a", "messaging"),
               (T0 - BUCKET, "a", "messaging"), (T0 - 2 * BUCKET + timedelta(minutes=1), "b", "calls")]
    store.insert_posts([Post("reports", f"r{i}", "WhatsApp is down", at, author_hash=f"{who * 16}",
                             services=("WhatsApp",), symptom_hint=hint)
                        for i, (at, who, hint) in enumerate(reports)], T0)
    store.save_classifications([(p.id, Prediction(1.0, True, p.symptom_hint)) for p in store.posts_to_classify(10)],
                               "reports", T0)
    store.open_incident("WhatsApp", T0, {"peak_complaints": 2, "peak_score": 6.0, "baseline": 0.5,
                                         "total_complaints": 3}, {"z": 6.0})
    assert store.incident(1)["symptoms"] == "{}"
    cfg = mail_settings(smtp_server)
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0, worker_id="w").sent == 1

    _, text, _ = _parts(smtp_server)
    flat = " ".join(text.split())
    assert "Complaints: 3" in flat and "Symptoms: messaging 2 (67%), calls 1 (33%)" in flat


def _opened_in_hour_buckets(store: Store) -> tuple[str, datetime]:
    """Foonet opens at 05:00 in hour-wide buckets, made of reports at 04:00-04:10 (its opening bucket) after more at
    03:00-03:10: (its config, when it opened)."""
    hourly = "[[services]]\nname = \"Foonet\"\n[detector]\nbucket_minutes = 60\nwarmup_hours = 1\n"
    pipe = warmed_pipeline(hourly, store)
    start = STREAM_T0 + timedelta(hours=3)
    posts = [Post("reports", f"{hour}-{i}", f"Foonet down, report {i} of hour {hour}",
                  start + timedelta(hours=hour, seconds=30 * i), services=("Foonet",)) for hour in range(2)
             for i in range(20)]
    opened = start + timedelta(hours=2)
    pipe.ingest(posts, opened)
    pipe.classify_pending(opened)
    assert pipe.detect(opened).opened == [("Foonet", opened)]
    return hourly, opened


def _provider_acknowledges_after_narrowing(store: Store, hourly: str, opened: datetime) -> datetime:
    """detector.bucket_minutes is set to 5 at 05:20; the provider's status page says the outage began at 05:30,
    matched in a 5-minute bucket after, while more reports come in: when that was detected."""
    reloaded = Pipeline(parse_config(hourly.replace("= 60", "= 5")), store, ReportsOnly())  # type: ignore[arg-type]
    reloaded.detect(opened + timedelta(minutes=20))
    add_official(store, "Foonet", opened + timedelta(minutes=30))
    later = [Post("reports", f"late-{i}", f"Foonet still down, report {i}",
                  opened + timedelta(minutes=30, seconds=10 * i), services=("Foonet",)) for i in range(30)]
    now = opened + timedelta(minutes=40)
    reloaded.ingest(later, now)
    reloaded.classify_pending(now)
    reloaded.detect(now)
    return now


def test_the_sample_posts_of_an_incident_open_across_a_bucket_width_change_are_of_its_opening_bucket(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # Foonet opens at 05:00 in hour-wide buckets, made of reports at 04:00-04:10 (its opening bucket) after more at
    # 03:00-03:10. detector.bucket_minutes is then set to 5 (a config reload), and the alert goes out after: its
    # samples were read from 30 minutes before the opening, as of a 5-minute bucket, and it showed none.
    hourly, opened = _opened_in_hour_buckets(store)
    assert store.incident(1)["bucket_minutes"] == 60  # what its samples start with, whatever the width later
    reloaded = Pipeline(parse_config(hourly.replace("= 60", "= 5")), store, ReportsOnly())  # type: ignore[arg-type]
    reloaded.detect(opened)
    assert store.bucket_minutes() == 5 and store.incident(1)["status"] == "open"
    cfg = mail_settings(smtp_server)
    plan_notifications(store, cfg, opened)
    assert dispatch(store, cfg, opened, worker_id="w").sent == 1

    _, text, _ = _parts(smtp_server)
    flat = " ".join(text.split())
    assert "Sample posts:" in flat and "of hour 1" in flat
    assert "of hour 0" not in flat  # the bucket before the opening one did not open it


def test_a_provider_incident_left_open_in_the_store_for_weeks_is_not_called_ongoing(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # The provider's last word on it was 40 days ago, and miner never read its resolve (its source left feeds.toml,
    # or its feed entry gives no status): it is no provider's word on an outage opening now.
    add_official(store, "WhatsApp", T0 - timedelta(days=40))
    # One begun two days ago that the provider updated an hour before ours opened is still going on.
    store.save_fetch("status:wa", FetchResult(incidents=[OfficialIncident(
        source="status:wa", external_id="long", service="Instagram", title="Feeds load slowly", status="identified",
        started_at=T0 - timedelta(days=2), updated_at=T0 - timedelta(hours=1))]),
        T0 - timedelta(hours=1), T0 - timedelta(hours=1))
    open_incident(store, "WhatsApp", T0)
    open_incident(store, "Instagram", T0, posts=False)
    cfg = mail_settings(smtp_server, group_by=("service",))
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0, worker_id="w").sent == 2

    flat = {}
    for i in range(2):
        subject, text, _ = _parts(smtp_server, i)
        flat[subject.split(": ")[1].split()[0]] = " ".join(text.split())
    assert "Some users are unable to send messages" not in flat["WhatsApp"]
    assert "nothing on the status page yet" in flat["WhatsApp"] and "40 d" not in flat["WhatsApp"]
    assert "Provider: Feeds load slowly (identified," in flat["Instagram"]
    assert "Provider first: posted it on its status page 2 d 0 h before we detected it" in flat["Instagram"]


def test_the_lead_time_of_an_incident_open_across_a_bucket_width_change_is_from_its_own_opening(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # Foonet opens at 05:00, the end of its hour-wide opening bucket; detector.bucket_minutes is then set to 5, and
    # the provider's status page says it began at 05:30, matched in a 5-minute bucket after: we were 30 minutes
    # first. Measured from the opening bucket's start less the current width, the lead read 85 minutes.
    hourly, opened = _opened_in_hour_buckets(store)
    now = _provider_acknowledges_after_narrowing(store, hourly, opened)
    row = store.incident(1)
    assert row is not None and row["status"] == "open" and row["official_incident_id"] is not None, row
    assert row["lead_time_minutes"] == 30.0
    cfg = mail_settings(smtp_server)
    plan_notifications(store, cfg, now)
    assert dispatch(store, cfg, now, worker_id="w").sent >= 1

    _, text, _ = _parts(smtp_server)
    flat = " ".join(text.split())
    assert "30 min before miner first saw it on the provider's status page" in flat, flat  # stored when it began


def test_the_lead_time_of_an_incident_of_a_store_that_recorded_no_width_is_from_its_own_opening_after_a_change(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # As above, in a store that recorded no bucket width at the upgrade (0.1.0's: its width is read from the
    # detector's last scores), which migration 0020 left its incidents without: read as the store's, the width of
    # the incident's opening bucket was the new one, and the lead read 85 minutes again.
    hourly, opened = _opened_in_hour_buckets(store)
    with store.database.transaction() as conn:  # as the upgrade left a 0.1.0 store
        conn.execute("DELETE FROM store_state WHERE key = 'bucket_minutes'")
        conn.execute("UPDATE incidents SET bucket_minutes = NULL")
    assert store.bucket_minutes() == 60
    _provider_acknowledges_after_narrowing(store, hourly, opened)
    row = store.incident(1)
    assert row is not None and row["official_incident_id"] is not None, row
    assert (row["bucket_minutes"], row["lead_time_minutes"]) == (60, 30.0)


def test_the_peak_of_an_incident_open_across_a_bucket_width_change_is_set_against_a_bucket_of_its_own(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # Foonet opens at 03:40 in 5-minute buckets, 15 complaints in each from 03:30 (the first did not open it, where
    # nothing was expected). detector.bucket_minutes is then set to 60: the posts are counted again from 04:00, where
    # the grids meet, and the buckets before keep their width. Its first bucket taken as an hour before its opening,
    # the 03:30 one, before the incident, stood for its peak: "15 vs baseline 0.0", where its own said 0.04.
    fine = "[[services]]\nname = \"Foonet\"\n[detector]\nbucket_minutes = 5\nwarmup_hours = 1\n"
    pipe = warmed_pipeline(fine, store)
    start = STREAM_T0 + timedelta(hours=3, minutes=30)
    posts = [Post("reports", f"r-{i}", f"Foonet down, report {i}", start + timedelta(seconds=20 * i),
                  services=("Foonet",)) for i in range(60)]
    now = start + timedelta(minutes=20)
    pipe.ingest(posts, now)
    pipe.classify_pending(now)
    assert pipe.detect(now).opened == [("Foonet", start + timedelta(minutes=10))]
    row = store.incident(1)
    assert row is not None and (row["peak_complaints"], row["baseline"], row["bucket_minutes"]) == (15, 0.043, 5)
    reloaded = Pipeline(parse_config(fine.replace("= 5", "= 60")), store, ReportsOnly())  # type: ignore[arg-type]
    reloaded.detect(now)
    assert store.bucket_minutes() == 60 and store.incident(1)["status"] == "open"
    cfg = mail_settings(smtp_server)
    plan_notifications(store, cfg, now)
    assert dispatch(store, cfg, now, worker_id="w").sent == 1

    subject, text, _ = _parts(smtp_server)
    flat = " ".join(text.split())
    assert "15 complaints per bucket vs baseline 0.04 (349.5x)" in flat and "349.5x normal" in subject, flat
    lines: list[str] = []  # the replay's summary gives the same baseline beside the same peak
    print_summary(store, parse_config(fine), lines.append)
    [summary] = [line.split() for line in "\n".join(lines).splitlines() if line.startswith(" 1  Foonet")]
    assert summary[5:8] == ["15", "6.5", "0.04"], lines


def test_the_plain_text_alert_gives_the_providers_impact_as_the_html_part_does(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # The status page calls it a major incident, first seen 5 minutes before ours opened: an on-call reading the text
    # part (a pager, a terminal mail reader) is told the impact as the HTML part tells it.
    add_official(store, "WhatsApp", T0 - timedelta(minutes=5))
    open_incident(store, "WhatsApp", T0)
    cfg = mail_settings(smtp_server)
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0, worker_id="w").sent == 1

    _, text, html = _parts(smtp_server)
    assert "(investigating, major impact, first seen 2026-11-27 11:55 UTC)" in " ".join(html.split())
    assert ("Provider: Some users are unable to send messages (investigating, major impact, first seen 2026-11-27 "
            "11:55 UTC)") in " ".join(text.split())

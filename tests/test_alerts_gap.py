"""An incident open when miner stopped for longer than detector.max_fill_hours (the host slept a day), resolved at the
first quiet buckets it scored after: every format says that its end was not seen, and when miner was not watching,
with no duration made of the downtime. Real store, real pipeline, a real SMTP server and real webhook receivers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from smtp_server import SmtpServer, smtp_server  # noqa: F401  (fixture)
from streams import T0, outage_reports, warmed_pipeline
from test_alerts_support import settings
from test_alerts_webhooks import Hook
from test_read_api import serving

from miner.alerts import dispatch, plan_notifications, render_digest
from miner.alerts.charts import in_incident, incident_figure
from miner.alerts.content import incident_view
from miner.alerts.settings import AlertSettings, RouteSettings, SmtpSettings, WebhookSettings
from miner.config import parse_config
from miner.pipeline import Pipeline
from miner.read_api import ReadApi
from miner.records import Post
from miner.status_board import _listed
from miner.store import Store
from miner.timeutil import parse_iso

CONFIG = """
[[services]]
name = "Foonet"

[detector]
bucket_minutes = 15
warmup_hours = 1
"""


@pytest.fixture
def hooks(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Hook]]:
    made = {fmt: Hook() for fmt in ("json", "slack", "teams")}
    for fmt, hook in made.items():
        monkeypatch.setenv(f"MINER_TEST_{fmt.upper()}", hook.url)
    yield made
    for hook in made.values():
        hook.close()


def _alerts(server: SmtpServer) -> AlertSettings:
    route = RouteSettings(name="oncall", email=("oncall@example.org",), webhooks=("json", "slack", "teams"),
                          digest="0 * * * *")
    hooks = tuple(WebhookSettings(name=fmt, url_env=f"MINER_TEST_{fmt.upper()}", format=fmt, timeout=10.0)
                  for fmt in ("json", "slack", "teams"))
    smtp = SmtpSettings(host="127.0.0.1", port=server.port, security="none", timeout=5)
    return settings(routes=(route,), webhooks=hooks, smtp=smtp, group_wait=0.0)


def test_an_incident_resolved_after_a_gap_longer_than_max_fill_hours_says_its_end_was_not_seen_in_every_format(
        store: Store, smtp_server: SmtpServer, hooks: dict[str, Hook]) -> None:  # noqa: F811
    cfg = _alerts(smtp_server)
    pipe = warmed_pipeline(CONFIG, store)  # stepped quiet buckets up to T0 + 2:45
    # An outage from 03:00 opens at 03:30 and is alerted; at 04:00 it goes on. Then the host sleeps a day.
    start = T0 + timedelta(hours=3)
    pipe.ingest(outage_reports("Foonet", start, start + timedelta(hours=1)), start + timedelta(hours=1))
    pipe.classify_pending(start + timedelta(hours=1))
    assert pipe.detect(start + timedelta(minutes=30)).opened == [("Foonet", start + timedelta(minutes=30))]
    plan_notifications(store, cfg, start + timedelta(minutes=30))
    assert dispatch(store, cfg, start + timedelta(minutes=30), worker_id="w").sent == 4
    assert pipe.detect(start + timedelta(hours=1)).resolved == []
    # Back a day later: the detector scores the last max_fill_hours (6 h) only, from 21:45; the outage ended at some
    # time from 04:00 to 21:45, unseen, and the first quiet buckets scored resolve it (at 22:45).
    back = T0 + timedelta(hours=28)
    [(_, resolved)] = pipe.detect(back).resolved
    plan_notifications(store, cfg, back)
    assert dispatch(store, cfg, back, worker_id="w").sent == 4

    gap = "miner was not scoring from 2026-02-02 04:00 to 21:45 UTC: the outage ended at some time in it, unseen"
    msg = smtp_server.inbox.messages[-1]
    subject, text = str(msg["Subject"]), " ".join(msg.get_body(("plain",)).get_content().split())
    html = " ".join(msg.get_body(("html",)).get_content().split())
    # It read "RESOLVED: Foonet after 19 h 15 min ... Complaints are back to normal.", a duration made of the sleep.
    assert subject == "[miner] RESOLVED, END NOT SEEN: Foonet"
    assert "19 h 15 min" not in subject + text + html and "22:45" not in text + html
    assert f"After gap: {gap}" in text and "Complaints are back to normal." not in text
    assert ("Open: 2026-02-02 03:30 UTC to some time from 2026-02-02 04:00 UTC to 2026-02-02 21:45 UTC "
            "(30 min to 18 h 15 min)") in text
    assert f"<b>Resolved after a gap:</b> {gap}" in html and "Complaints are back to normal." not in html

    [body] = hooks["json"].bodies[-1]["incidents"]
    assert body["resolved_after_gap"] == {"from": "2026-02-02T04:00:00+00:00", "to": "2026-02-02T21:45:00+00:00",
                                          "ended_from": "2026-02-02T04:00:00+00:00"}
    assert body["resolved_at"] == resolved.isoformat() and body["closed_untracked"] is None
    slack = hooks["slack"].bodies[-1]["blocks"][1]["text"]["text"]
    assert f":warning: resolved after a gap: {gap}" in slack and "19 h 15 min" not in slack
    teams = [b["text"] for b in hooks["teams"].bodies[-1]["attachments"][0]["content"]["body"][1]["items"]]
    assert f"resolved after a gap: {gap}" in teams and not any("19 h 15 min" in t for t in teams)

    digest = render_digest(store, cfg, back, "oncall")
    assert f"After gap: {gap}" in " ".join(digest.text.split())
    assert f"<b>Resolved after a gap:</b> {gap}" in " ".join(digest.html.split())

    read = ReadApi(parse_config(CONFIG), lambda: store, lambda: None, lambda: back)
    with serving(read) as url:
        [incident] = httpx.get(f"{url}/api/v1/incidents").json()["incidents"]
    assert incident["resolved_after_gap"] == body["resolved_after_gap"] and incident["closed_untracked"] is None


def test_only_an_incident_not_seen_going_on_after_the_gap_is_resolved_as_one_whose_end_was_not_seen(
        store: Store) -> None:
    pipe = warmed_pipeline(CONFIG + '[[services]]\nname = "Barnet"\n', store)
    start = T0 + timedelta(hours=3)
    for service in ("Foonet", "Barnet"):
        pipe.ingest(outage_reports(service, start, start + timedelta(hours=1)), start + timedelta(hours=1))
    pipe.classify_pending(start + timedelta(hours=1))
    pipe.detect(start + timedelta(hours=1))
    # Back a day later, Barnet's outage still going on in the first buckets scored (from 21:45): its end, at 23:00,
    # is seen. Foonet's ended in the gap.
    back = T0 + timedelta(hours=28)
    pipe.ingest(outage_reports("Barnet", T0 + timedelta(hours=21, minutes=45), T0 + timedelta(hours=23)), back)
    pipe.classify_pending(back)
    resolved = dict(pipe.detect(back).resolved)
    assert resolved["Barnet"] > T0 + timedelta(hours=23)
    ids = {row["service"]: row["id"] for row in store.incidents()}
    assert store.ended_unseen(list(ids.values()))[1] == {
        ids["Foonet"]: (T0 + timedelta(hours=4), T0 + timedelta(hours=21, minutes=45), T0 + timedelta(hours=4))}


def _open_before_the_sleep(store: Store) -> Pipeline:
    """An outage of Foonet from 03:00 to 04:00, open when the host goes to sleep at 04:00: the pipeline."""
    pipe = warmed_pipeline(CONFIG, store)
    start = T0 + timedelta(hours=3)
    pipe.ingest(outage_reports("Foonet", start, start + timedelta(hours=1)), start + timedelta(hours=1))
    pipe.classify_pending(start + timedelta(hours=1))
    pipe.detect(start + timedelta(hours=1))
    return pipe


def test_an_incident_seen_going_on_after_the_gap_between_z_close_and_z_open_is_not_resolved_as_unseen(
        store: Store) -> None:
    pipe = _open_before_the_sleep(store)
    # Back a day later, the outage still going on at 3 complaints a bucket from 21:45 to 22:45: buckets above
    # z_close, which hold the incident open, though none reaches z_open. Its end, at 22:45, is seen: it had resolved
    # "END NOT SEEN", as ended at some time from 04:00 to 21:45, and its charts stopped shading it at 04:00.
    back = T0 + timedelta(hours=28)
    after = T0 + timedelta(hours=21, minutes=45)
    pipe.ingest([Post("reports", f"Foonet-late-{i}", "Foonet is down", after + timedelta(minutes=5 * i),
                      services=("Foonet",)) for i in range(12)], back)
    pipe.classify_pending(back)
    assert [at for _, at in pipe.detect(back).resolved] == [T0 + timedelta(hours=23, minutes=45)]
    held = [row["score"] for row in store.series("Foonet", after, after + timedelta(hours=1))]
    assert len(held) == 4 and all(1.5 <= z < 2.5 for z in held)  # detector.z_close and z_open's defaults
    [incident] = store.incidents()
    assert store.ended_unseen([incident["id"]])[1] == {}


def test_one_bucket_between_z_close_and_z_open_after_quiet_ones_past_the_gap_still_leaves_its_end_unseen(
        store: Store) -> None:
    pipe = _open_before_the_sleep(store)
    # Back a day later, quiet from 21:45, then 3 stray complaints in the 22:15 bucket (z 2.3): noise the detector
    # lets hold its count of quiet buckets, not restart it, so the resolve at 23:00 counts 21:45 and 22:00. The
    # outage ended in the gap: it had been resolved as seen to end at 23:00, "after 19 h", the gap shaded as its.
    back = T0 + timedelta(hours=28)
    noise = T0 + timedelta(hours=22, minutes=15)
    pipe.ingest([Post("reports", f"Foonet-late-{i}", "Foonet is down", noise + timedelta(minutes=4 * i),
                      services=("Foonet",)) for i in range(3)], back)
    pipe.classify_pending(back)
    assert [at for _, at in pipe.detect(back).resolved] == [T0 + timedelta(hours=23)]
    [z] = [row["score"] for row in store.series("Foonet", noise, noise + timedelta(minutes=15))]
    assert 1.5 <= z < 2.5  # detector.z_close and z_open's defaults
    [incident] = store.incidents()
    assert store.ended_unseen([incident["id"]])[1] == {
        incident["id"]: (T0 + timedelta(hours=4), T0 + timedelta(hours=21, minutes=45), T0 + timedelta(hours=4))}


def test_an_incident_resolved_after_the_gap_by_a_later_run_still_says_its_end_was_not_seen(store: Store) -> None:
    # quiet_minutes longer than the 6 h scored at the wake: the run that skips the gap does not resolve, a later one
    # does, and its resolve knows of the gap all the same (kept in the incident's draft).
    pipe = warmed_pipeline(CONFIG + "quiet_minutes = 480\n", store)
    start = T0 + timedelta(hours=3)
    pipe.ingest(outage_reports("Foonet", start, start + timedelta(hours=1)), start + timedelta(hours=1))
    pipe.classify_pending(start + timedelta(hours=1))
    pipe.detect(start + timedelta(hours=1))
    back = T0 + timedelta(hours=28)
    assert pipe.detect(back).resolved == []
    assert [at for _, at in pipe.detect(back + timedelta(hours=3)).resolved] == [back + timedelta(hours=1, minutes=45)]
    [incident] = store.incidents()
    assert store.ended_unseen([incident["id"]])[1] == {
        incident["id"]: (T0 + timedelta(hours=4), T0 + timedelta(hours=21, minutes=45), T0 + timedelta(hours=4))}


def _resolved_after_a_gap(store: Store) -> None:
    pipe = warmed_pipeline(CONFIG, store)
    start = T0 + timedelta(hours=3)
    pipe.ingest(outage_reports("Foonet", start, start + timedelta(hours=1)), start + timedelta(hours=1))
    pipe.classify_pending(start + timedelta(hours=1))
    pipe.detect(start + timedelta(minutes=30))
    pipe.detect(start + timedelta(hours=1))
    # Back a day later, the reports made while miner slept (04:00 to 06:00) are collected late and counted into the
    # buckets of the gap, which the detector never scores: the outage ended at some time in it, unseen.
    back = T0 + timedelta(hours=28)
    pipe.ingest(outage_reports("Foonet", start + timedelta(hours=1), start + timedelta(hours=3)), back)
    pipe.classify_pending(back)
    [(_, resolved)] = pipe.detect(back).resolved
    assert resolved == T0 + timedelta(hours=22, minutes=45)


def test_the_charts_of_an_incident_resolved_after_a_gap_shade_it_to_the_gaps_start_as_the_status_board_does(
        store: Store) -> None:
    _resolved_after_a_gap(store)
    back = T0 + timedelta(hours=28)
    [incident] = store.incidents()
    view = incident_view(store, settings(), incident["id"], back)
    assert view is not None and view.unscored == (T0 + timedelta(hours=4), T0 + timedelta(hours=21, minutes=45),
                                                  T0 + timedelta(hours=4))
    starts = [parse_iso(r["bucket_start"]) for r in view.series]
    assert T0 + timedelta(hours=5) in starts  # the gap has buckets, with the late reports
    # The email's chart shaded every bucket up to the resolve, those of the gap and the quiet ones scored after it
    # (22:45), as a 19-hour outage; the board shades it to the gap's start.
    shaded = [t for t in starts if in_incident(t, timedelta(minutes=15), view)]
    assert shaded == [T0 + timedelta(hours=3, minutes=15), T0 + timedelta(hours=3, minutes=30),
                      T0 + timedelta(hours=3, minutes=45)]
    read = ReadApi(parse_config(CONFIG), lambda: store, lambda: None, lambda: back)
    with serving(read) as url:
        [listed] = httpx.get(f"{url}/api/v1/incidents").json()["incidents"]
    [(opened, end)] = _listed(listed, back, [])["spans"]
    assert (opened, end) == (view.opened_at, shaded[-1] + timedelta(minutes=15))


def test_a_clock_ahead_by_more_than_max_fill_hours_leaves_no_unseen_end_once_it_is_set_back(store: Store) -> None:
    # The clock 10 h ahead skipped the buckets from 04:00 to 08:00 (to come) as a gap: set back at 04:20, the
    # buckets from 04:15 on are scored, and only 04:00's never is; the incident kept 04:00 to 08:00 as the span its
    # end fell in, unseen, and its resolve, after 8 h of quiet buckets from 04:15, said so of buckets scored since.
    pipe = warmed_pipeline(CONFIG + "quiet_minutes = 480\n", store)  # not resolved by the 6 h scored ahead
    start = T0 + timedelta(hours=3)
    pipe.ingest(outage_reports("Foonet", start, start + timedelta(hours=1)), start + timedelta(hours=1))
    pipe.classify_pending(start + timedelta(hours=1))
    pipe.detect(start + timedelta(hours=1))
    assert pipe.detect(T0 + timedelta(hours=14)).resolved == []
    now = T0 + timedelta(hours=4, minutes=20)
    pipe.detect(now)
    [[(_, resolved)]] = [found for hour in range(5, 14) if (found := pipe.detect(T0 + timedelta(hours=hour)).resolved)]
    [incident] = store.incidents()
    assert store.ended_unseen([incident["id"]])[1] == {
        incident["id"]: (T0 + timedelta(hours=4), T0 + timedelta(hours=4, minutes=15), T0 + timedelta(hours=4))}
    assert resolved == T0 + timedelta(hours=12, minutes=15)  # not 2 h after, the 6 h stepped ahead counted as quiet


def test_an_outage_seen_going_on_once_a_clock_ahead_is_set_back_has_its_end_seen(store: Store) -> None:
    # The clock 10 h ahead stepped 6 h of empty buckets to come (08:00 to 14:00) as quiet ones of the incident; set
    # back at 04:20, the outage goes on at 3 complaints a bucket (z 2.2, between z_close and z_open) to 05:15. Those
    # 24 buckets held the detector's count of quiet ones: the resolve took 2 h of real quiet for 8, and said the end
    # fell unseen from 04:00 to 04:15, though the outage was seen going on after it, its end at 05:15.
    pipe = warmed_pipeline(CONFIG + "quiet_minutes = 480\n", store)
    start = T0 + timedelta(hours=3)
    pipe.ingest(outage_reports("Foonet", start, start + timedelta(hours=1)), start + timedelta(hours=1))
    pipe.classify_pending(start + timedelta(hours=1))
    pipe.detect(start + timedelta(hours=1))
    assert pipe.detect(T0 + timedelta(hours=14)).resolved == []
    pipe.detect(T0 + timedelta(hours=4, minutes=20))
    on = T0 + timedelta(hours=4, minutes=15)
    for k in range(4):
        bucket = on + timedelta(minutes=15 * k)
        pipe.ingest([Post("reports", f"Foonet-on-{k}-{i}", "Foonet is down", bucket + timedelta(minutes=4 * i),
                          services=("Foonet",)) for i in range(3)], bucket + timedelta(minutes=15))
        pipe.classify_pending(bucket + timedelta(minutes=15))
        assert pipe.detect(bucket + timedelta(minutes=20)).resolved == []
    held = [row["score"] for row in store.series("Foonet", on, on + timedelta(hours=1))]
    assert len(held) == 4 and all(1.5 <= z < 2.5 for z in held)  # detector.z_close and z_open's defaults
    resolves = [pipe.detect(T0 + timedelta(hours=hour)).resolved for hour in range(6, 15)]
    # 8 h of quiet buckets from 05:15, resolved with the one that ends at 13:15, scored by the run at 14:00.
    assert resolves == [[]] * 8 + [[("Foonet", T0 + timedelta(hours=13, minutes=15))]]
    [incident] = store.incidents()
    assert store.ended_unseen([incident["id"]])[1] == {}


def test_quiet_buckets_scored_before_a_clock_ahead_skipped_a_gap_still_count_once_it_is_set_back(store: Store
                                                                                                 ) -> None:
    # Complaints stopped at 03:30, and 03:30 and 03:45 scored quiet; the clock 10 h ahead skipped 04:00 to 07:45
    # (to come) as a gap and stepped 07:45 to 13:45. Set back at 04:20, the count of quiet buckets left out every
    # bucket after 04:00, the 15 skipped ones too, so 03:30 and 03:45 with them: the resolve, which says the end may
    # have come from 03:30 (ended_from), took 8 h of quiet buckets after 04:15 rather than 8 h from 03:30.
    pipe = warmed_pipeline(CONFIG + "quiet_minutes = 480\n", store)
    start = T0 + timedelta(hours=3)
    pipe.ingest(outage_reports("Foonet", start, start + timedelta(minutes=30)), start + timedelta(hours=1))
    pipe.classify_pending(start + timedelta(hours=1))
    pipe.detect(start + timedelta(hours=1))
    assert pipe.detect(T0 + timedelta(hours=14)).resolved == []
    pipe.detect(T0 + timedelta(hours=4, minutes=20))
    resolves = [pipe.detect(T0 + timedelta(hours=hour, minutes=minutes)).resolved
                for hour in range(5, 13) for minutes in (0, 30)]
    # 32 quiet buckets: 03:30 and 03:45, then 04:15 to 11:30 (04:00's never scored), resolved at 11:45.
    assert [r for r in resolves if r] == [[("Foonet", T0 + timedelta(hours=11, minutes=45))]]
    [incident] = store.incidents()
    assert store.ended_unseen([incident["id"]])[1][incident["id"]].ended_from == T0 + timedelta(hours=3, minutes=30)


def test_the_chart_of_an_incident_resolved_after_a_gap_marks_the_gap_not_a_resolve_time(store: Store) -> None:
    # It drew "resolved" at 22:45, when miner scored again, for an outage that ended at some time from 04:00 to
    # 21:45; the status board marks no end, and says "end not seen" with the gap.
    from matplotlib.dates import date2num

    _resolved_after_a_gap(store)
    back = T0 + timedelta(hours=28)
    [incident] = store.incidents()
    view = incident_view(store, settings(), incident["id"], back)
    assert view is not None and view.resolved_at is not None and view.unscored is not None
    ax = incident_figure(view, back).axes[0]
    labels = {t.get_text(): t.xy[0] for t in ax.texts if t.get_text() != "times in UTC"}
    assert labels == {"opened": view.opened_at, "end not seen": view.unscored[0]}
    upright = [set(line.get_xdata()) for line in ax.lines if len(set(line.get_xdata())) == 1]
    assert upright == [{view.opened_at}, {view.unscored[0]}]
    [gap] = [p for p in ax.patches if p.get_label() == "not scored"]
    ends = ax.transData.inverted().transform(gap.get_window_extent().get_points())[:, 0]
    assert [round(x, 4) for x in ends] == [round(date2num(t), 4) for t in view.unscored[:2]]

"""An incident whose complaints were seen back to normal before miner stopped for longer than detector.max_fill_hours,
resolved after it counting those quiet buckets: every format says its end may have come from the first of them, not
only in the span miner was not scoring, which they all still give as it was. Real store, real pipeline, a real SMTP
server and real webhook receivers."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
from smtp_server import SmtpServer, smtp_server  # noqa: F401  (fixture)
from streams import T0, outage_reports, warmed_pipeline
from test_alerts_gap import CONFIG, _alerts, hooks  # noqa: F401  (fixture)
from test_alerts_support import settings
from test_alerts_webhooks import Hook
from test_read_api import served, serving, write_config
from test_status_board import DAY, SVG, Board, charts, incident, page

from miner.alerts import dispatch, plan_notifications
from miner.alerts.charts import in_incident, incident_figure
from miner.alerts.content import incident_view
from miner.cli.summary import print_summary
from miner.config import parse_config
from miner.read_api import ReadApi
from miner.status_board import _listed
from miner.store import Store
from miner.timeutil import iso, parse_iso


def test_quiet_buckets_scored_before_the_gap_start_the_span_its_end_may_have_come_in(
        store: Store, smtp_server: SmtpServer, hooks: dict[str, Hook]) -> None:  # noqa: F811
    cfg = _alerts(smtp_server)
    pipe = warmed_pipeline(CONFIG, store)
    # An outage from 03:00 to 03:45 opens at 03:30 and is alerted; the buckets 03:45 and 04:00 are scored quiet (two
    # of the four quiet_minutes needs), then the host sleeps from 04:15 to a day later.
    start = T0 + timedelta(hours=3)
    pipe.ingest(outage_reports("Foonet", start, start + timedelta(minutes=30)), start + timedelta(minutes=30))
    pipe.classify_pending(start + timedelta(minutes=30))
    assert pipe.detect(start + timedelta(minutes=30)).opened == [("Foonet", start + timedelta(minutes=30))]
    plan_notifications(store, cfg, start + timedelta(minutes=30))
    assert dispatch(store, cfg, start + timedelta(minutes=30), worker_id="w").sent == 4
    sleep = start + timedelta(hours=1, minutes=15)
    pipe.ingest(outage_reports("Foonet", start + timedelta(minutes=30), start + timedelta(minutes=45)), sleep)
    pipe.classify_pending(sleep)
    assert pipe.detect(sleep).resolved == []
    scored = [(row["complaints"], row["score"]) for row in store.series("Foonet", start + timedelta(minutes=30), sleep)]
    assert len(scored) == 3 and scored[0][0] == 30 and all(z < 1.5 for _, z in scored[1:])  # z_close's default
    # Back a day later: scoring resumes at 21:45, and the resolve counts 03:45, 04:00, 21:45 and 22:00.
    back = T0 + timedelta(hours=28)
    [(_, resolved)] = pipe.detect(back).resolved
    assert resolved == T0 + timedelta(hours=22, minutes=15)
    plan_notifications(store, cfg, back)
    assert dispatch(store, cfg, back, worker_id="w").sent == 4

    ended_from, gap_start, gap_end = (T0 + timedelta(hours=3, minutes=45), T0 + timedelta(hours=4, minutes=15),
                                      T0 + timedelta(hours=21, minutes=45))
    [incident] = store.incidents()
    assert store.ended_unseen([incident["id"]])[1] == {incident["id"]: (gap_start, gap_end, ended_from)}
    # It said the outage "ended at some time from 04:15 to 21:45 (45 min to 18 h 15 min)": miner saw complaints back
    # to normal from 03:45, 15 minutes after it opened. The span miner was not scoring is still 04:15 to 21:45.
    gap = ("miner was not scoring from 2026-02-02 04:15 to 21:45 UTC; complaints were back to normal from 03:45 UTC, "
           "before it: the outage ended at some time from then to 21:45 UTC, unseen")
    msg = smtp_server.inbox.messages[-1]
    subject, text = str(msg["Subject"]), " ".join(msg.get_body(("plain",)).get_content().split())
    html = " ".join(msg.get_body(("html",)).get_content().split())
    assert subject == "[miner] RESOLVED, END NOT SEEN: Foonet"
    opened = ("2026-02-02 03:30 UTC to some time from 2026-02-02 03:45 UTC to 2026-02-02 21:45 UTC "
              "(15 min to 18 h 15 min)")
    assert f"Open: {opened}" in text and f"After gap: {gap}" in text
    assert opened in html and f"<b>Resolved after a gap:</b> {gap}" in html
    assert "45 min to 18 h 15 min" not in text + html

    after = {"from": "2026-02-02T04:15:00+00:00", "to": "2026-02-02T21:45:00+00:00",
             "ended_from": "2026-02-02T03:45:00+00:00"}
    [body] = hooks["json"].bodies[-1]["incidents"]
    assert body["resolved_after_gap"] == after
    slack = hooks["slack"].bodies[-1]["blocks"][1]["text"]["text"]
    assert f":warning: resolved after a gap: {gap}" in slack and "(15 min to 18 h 15 min)" in slack
    teams = [b["text"] for b in hooks["teams"].bodies[-1]["attachments"][0]["content"]["body"][1]["items"]]
    assert f"resolved after a gap: {gap}" in teams

    read = ReadApi(parse_config(CONFIG), lambda: store, lambda: None, lambda: back)
    with serving(read) as url:
        [listed] = httpx.get(f"{url}/api/v1/incidents").json()["incidents"]
    assert listed["resolved_after_gap"] == after
    # The status board shades it while it was seen going on, to 03:45, and gives the same bounds.
    board = _listed(listed, back, [])
    assert board["spans"] == [(start + timedelta(minutes=30), ended_from)]
    assert (board["ended_from"], board["ended_by"], board["lasted"]) == (
        after["ended_from"], after["to"], "15 min to 18 h 15 min")

    # The chart: the buckets up to 03:45 shaded as the incident's, the quiet ones not; "end not seen" at 03:45 and
    # the span not scored hatched from 04:15.
    view = incident_view(store, settings(), incident["id"], back)
    assert view is not None and view.unscored == (gap_start, gap_end, ended_from)
    starts = [parse_iso(r["bucket_start"]) for r in view.series]
    shaded = [t for t in starts if in_incident(t, timedelta(minutes=15), view)]
    assert shaded == [start + timedelta(minutes=15), start + timedelta(minutes=30)]
    ax = incident_figure(view, back).axes[0]
    labels = {t.get_text(): t.xy[0] for t in ax.texts if t.get_text() != "times in UTC"}
    assert labels == {"opened": view.opened_at, "end not seen": ended_from}


def fill_quiet_before_the_gap(store: Store) -> None:
    """Instagram: an incident open at 03:30 the day before, its complaints back to normal from 03:45, miner not
    scoring from 04:15 to 22:30, resolved at 22:45 (the resolve event as the detector stores it)."""
    day = DAY - timedelta(days=1)
    details = {"unscored_from": iso(day.replace(hour=4, minute=15)),
               "unscored_to": iso(day.replace(hour=22, minute=30)), "ended_from": iso(day.replace(hour=3, minute=45))}
    incident(store, day.replace(hour=3, minute=30), (day.replace(hour=22, minute=45), "resolve", details))


def test_the_service_page_gives_an_unseen_end_from_the_quiet_buckets_before_the_gap(tmp_path: Path) -> None:
    with served(tmp_path, write_config(tmp_path), fill_quiet_before_the_gap, board=True) as api:
        html, _, parsed = page(Board(api.base, api.store), "/services/Instagram?hours=72")
    text = parsed.words(" ")
    assert ("2026-11-26 03:30 UTC end not seen some time from 2026-11-26 03:45 UTC to 2026-11-26 22:30 UTC "
            "15 min to 19 h 00 min") in text
    assert ("Resolved after a gap: miner was not scoring from 2026-11-26 04:15 to 22:30 UTC; complaints were back "
            "to normal from 03:45 UTC, before it: the outage ended at some time from then to 22:30 UTC, unseen") in text
    # Shaded while it was seen open, 03:30 to 03:45: 15 min is 2.3 units of 672 for 72 h (to 04:15, 7).
    (svg,) = charts(html)
    [width] = [float(r.get("width", "0")) for r in svg.findall(f"{SVG}rect[@class='incident']")]
    assert width < 4, width


def test_the_summary_of_a_replay_gives_an_unseen_end_from_the_quiet_buckets_before_the_gap(store: Store) -> None:
    # The outage as above, no alerts: the summary's resolved column gave 22:15, when miner scored again.
    pipe = warmed_pipeline(CONFIG, store)
    start = T0 + timedelta(hours=3)
    sleep = start + timedelta(hours=1, minutes=15)
    pipe.ingest(outage_reports("Foonet", start, start + timedelta(minutes=45)), sleep)
    pipe.classify_pending(sleep)
    assert pipe.detect(sleep).opened == [("Foonet", start + timedelta(minutes=30))]
    assert [at for _, at in pipe.detect(T0 + timedelta(hours=28)).resolved] == [T0 + timedelta(hours=22, minutes=15)]
    lines: list[str] = []
    print_summary(store, parse_config(CONFIG), lines.append)
    [row] = [line for line in "\n".join(lines).splitlines() if line.startswith(" 1  Foonet")]
    assert "2026-02-02 03:30  end not seen: 2026-02-02 03:45 to 21:45 " in row and "22:15" not in row, lines

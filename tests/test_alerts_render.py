"""How alerts and digests look: the charts, the MIME message, the text part and the bounds on their size."""

from __future__ import annotations

import email
import email.policy
import unicodedata
from dataclasses import replace
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from test_alerts_rules import reopen
from test_alerts_support import BUCKET, T0, open_incident, resolve, settings

from miner.alerts import FileSenders, dispatch, plan_notifications
from miner.alerts.charts import incident_figure
from miner.alerts.content import IncidentView, incident_view
from miner.alerts.render import render_alert, render_digest
from miner.alerts.settings import RouteSettings
from miner.store import Store
from miner.timeutil import iso

RED = "#c62828"


def _bars(view: IncidentView, as_of: datetime) -> list[tuple[datetime, timedelta, str]]:
    """(bucket start, bar width, colour) of each bar of the incident's chart."""
    from matplotlib.colors import to_hex
    from matplotlib.container import BarContainer
    from matplotlib.dates import num2date

    ax: Any = incident_figure(view, as_of).axes[0]
    [bars] = [c for c in ax.containers if isinstance(c, BarContainer)]
    return [(num2date(b.get_x()), timedelta(days=b.get_width()), to_hex(b.get_facecolor())) for b in bars]


def test_chart_draws_the_bucket_that_opened_the_incident_as_part_of_it(store: Store) -> None:
    # The spike starts at T0 - 5 min; the detector knew at the end of that bucket, T0, which is opened_at.
    iid = open_incident(store, "WhatsApp", T0)
    resolve(store, iid, T0 + timedelta(minutes=40))
    view = incident_view(store, settings(), iid, T0 + timedelta(hours=2))
    assert view is not None
    red = [start for start, _, colour in _bars(view, T0 + timedelta(hours=2)) if colour == RED]
    # From the opening bucket to the resolving one, which ends at resolved_at; not the bucket after it.
    assert red == [T0 - BUCKET + i * BUCKET for i in range(9)]


def test_chart_draws_the_time_between_a_resolve_and_the_reopening_as_no_part_of_the_incident(store: Store) -> None:
    # Open at 12:00, resolved at 12:40, back at 13:00 and open since: the 12:40-12:50 buckets in between (counted
    # quiet, so the detector resolved it) were drawn red as if the outage had gone on through them.
    iid = open_incident(store, "WhatsApp", T0)
    resolve(store, iid, T0 + timedelta(minutes=40))
    reopen(store, iid, T0 + timedelta(minutes=60))
    as_of = T0 + timedelta(minutes=80)
    view = incident_view(store, settings(), iid, as_of)
    assert view is not None and view.status == "open"
    red = [start for start, _, colour in _bars(view, as_of) if colour == RED]
    # The first spell's buckets up to the one ending at the resolve, then from the one ending at the re-opening to
    # the last one ended by as_of (the 13:20 one begins at it: nothing of it was known then).
    first = [T0 - BUCKET + i * BUCKET for i in range(9)]
    again = [T0 + timedelta(minutes=55) + i * BUCKET for i in range(5)]
    assert red == first + again


def test_chart_bars_are_one_bucket_wide_across_a_gap_and_for_a_single_bucket(store: Store) -> None:
    iid = open_incident(store, "WhatsApp", T0)
    # The service was not running for two hours early in the chart's window: those buckets were never stored.
    with store.database.transaction() as conn:
        conn.execute("DELETE FROM buckets WHERE bucket_start > ? AND bucket_start < ?",
                     ((T0 - timedelta(hours=3)).isoformat(), (T0 - timedelta(hours=1)).isoformat()))
    view = incident_view(store, settings(), iid, T0 + timedelta(hours=1))
    assert view is not None
    bars = _bars(view, T0 + timedelta(hours=1))
    assert bars[1][0] - bars[0][0] > timedelta(hours=1) and {width for _, width, _ in bars} == {BUCKET}

    # A store holding one hourly bucket: the bar covers that hour, up to the opening at its end.
    hourly = open_incident(store, "Airtel", T0, posts=False, series=False)
    store.save_detector_step("Airtel", T0, "{}", [(T0 - timedelta(hours=1), 6.0, 1.0, 3.0, 5.0)], T0)
    view = incident_view(store, settings(), hourly, T0 + timedelta(minutes=10))
    assert view is not None
    [(start, width, colour)] = _bars(view, T0 + timedelta(minutes=10))
    assert (start, width, colour) == (T0 - timedelta(hours=1), timedelta(hours=1), RED)


def _y_labels(store: Store, iid: int, as_of: datetime) -> tuple[list[str], str]:
    view = incident_view(store, settings(), iid, as_of)
    assert view is not None
    fig = incident_figure(view, as_of)
    fig.canvas.draw()
    ax = fig.axes[0]
    return [t.get_text() for t in ax.get_yticklabels()], ax.yaxis.get_offset_text().get_text()


def test_chart_counts_are_whole_numbers_and_huge_ones_stay_short_labels(store: Store) -> None:
    iid = open_incident(store, "WhatsApp", T0)
    with store.database.transaction() as conn:
        conn.execute("UPDATE buckets SET complaints = 0, baseline = 0, upper = 0, threshold = 0")
    labels, offset = _y_labels(store, iid, T0 + timedelta(hours=1))
    assert labels[:2] == ["0", "1"] and offset == ""  # not 0.0, 0.2, ... 1.2 for a chart of zeros
    assert not any("." in label for label in labels)

    with store.database.transaction() as conn:
        conn.execute("UPDATE buckets SET complaints = 2500000000, baseline = 1000, upper = 5000 "
                     "WHERE bucket_start = ?", ((T0 - BUCKET).isoformat(),))
    labels, offset = _y_labels(store, iid, T0 + timedelta(hours=1))
    # No "1e9" multiplier drawn over the legend; each label says its own value.
    assert offset == "" and labels[:2] == ["0", "600M"] and "2.4G" in labels and all(len(s) <= 5 for s in labels)


def test_chart_time_axis_is_in_utc_and_says_so(store: Store) -> None:
    import matplotlib

    iid = open_incident(store, "WhatsApp", T0)
    as_of = T0 + timedelta(hours=1)
    view = incident_view(store, settings(), iid, as_of)
    assert view is not None
    # A matplotlibrc with another zone (the host's) must not shift the hours the email gives in UTC.
    with matplotlib.rc_context({"timezone": "Asia/Tokyo"}):
        fig = incident_figure(view, as_of)
        fig.canvas.draw()
        ax: Any = fig.axes[0]
        hours = [t.get_text() for t in ax.get_xticklabels() if ":" in t.get_text()]
    assert "12:00" in hours and "21:00" not in hours  # T0 is 12:00 UTC, 21:00 in Tokyo
    assert any(t.get_text() == "times in UTC" for t in ax.texts)
    # Without buckets there is no time axis to show (it used to count hours of 1 January 1970).
    empty = incident_figure(replace(view, series=[]), as_of)
    empty.canvas.draw()
    assert [t.get_text() for t in empty.axes[0].get_xticklabels()] == []


def test_samples_show_each_text_once(store: Store) -> None:
    from test_alerts_support import seed_posts

    copies = ["@MTNUG network down again"] * 4 + ["@mtnug   NETWORK down again"]
    seed_posts(store, "MTN", T0 - BUCKET, [*copies, "no data since noon", "calls fail in Kampala", "still down"])
    iid = open_incident(store, "MTN", T0, posts=False)
    view = incident_view(store, settings(max_samples=3), iid, T0 + timedelta(minutes=10))
    assert view is not None
    # The copies score highest; they used to fill every sample slot.
    texts = [p.text for p in view.samples]
    assert texts == ["@MTNUG network down again", "no data since noon", "calls fail in Kampala"]


def test_samples_show_other_texts_however_many_copies_outscore_them(store: Store) -> None:
    from test_alerts_support import seed_posts

    # A retweet storm: more copies of one complaint, all scoring above the rest, than the rows read per sample.
    seed_posts(store, "MTN", T0 - BUCKET, ["RT @x: MTN network down again"] * 20
               + ["no data since noon", "calls fail in Kampala", "still down"])
    iid = open_incident(store, "MTN", T0, posts=False)
    view = incident_view(store, settings(max_samples=3), iid, T0 + timedelta(minutes=30))
    assert view is not None
    texts = [p.text for p in view.samples]
    assert texts == ["RT @x: MTN network down again", "no data since noon", "calls fail in Kampala"]


def _storm(store: Store, n: int) -> list[int]:
    """``n`` open incidents at T0, service Svc000 with the highest z-score down to the last with the lowest."""
    return [store.open_incident(f"Svc{i:03d}", T0, {"peak_complaints": 30, "peak_score": 100.0 - i, "baseline": 2.0,
                                                    "total_complaints": 95}, {}) for i in range(n)]


def test_digest_and_alert_of_a_storm_show_the_most_important_and_say_how_many_they_leave_out(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from miner.alerts.content import MAX_INCIDENTS
    from miner.alerts.render import MAX_CHARTS

    # The cut at MAX_INCIDENTS alone: fifty cards pass the HTML's own bound (test_alerts_mail_clients).
    monkeypatch.setattr("miner.alerts.render.MAX_HTML_BYTES", 10_000_000)
    n = MAX_INCIDENTS + 7
    ids = _storm(store, n)
    route = RouteSettings(name="oncall", email=("oncall@example.org",))
    cfg = settings(routes=(route,), webhooks=())
    digest = render_digest(store, cfg, T0 + timedelta(minutes=5), route)
    alert = render_alert(store, cfg, route, "alert", [{"incident_id": i, "kind": "open"} for i in reversed(ids)],
                         message_id="<m@example.org>", now=T0 + timedelta(minutes=5))
    assert f"{n} open, 0 resolved" in digest.subject  # the headline counts them all
    for r in (digest, alert):
        assert len(r.message.as_bytes()) < 1_000_000 and len(r.images) == MAX_CHARTS
        assert f"Svc{MAX_INCIDENTS - 1:03d}" in r.text and f"Svc{MAX_INCIDENTS:03d}" not in r.text  # lowest z left out
        assert f"Svc{MAX_INCIDENTS:03d}" not in r.html
        said = f"shows the {MAX_INCIDENTS} most important of {n} incidents"
        assert said in r.text and said in r.html and "7 more are left out" in r.text.replace("\n", " ")
        assert f"Charts are attached for the first {MAX_CHARTS} incidents only" in r.html


def test_text_part_fits_a_terminal_with_wide_characters(store: Store) -> None:
    from test_alerts_support import failing_source, seed_posts

    def columns(line: str) -> int:  # as a terminal counts them: CJK and emoji take two
        return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in line)

    cjk, emoji = "東京で圏外。電話もデータも使えない" * 8, "down again 😡📵 " * 12
    seed_posts(store, "WhatsApp", T0 - BUCKET, ["x" * 10_000, cjk, emoji, "plain words " * 40])
    iid = open_incident(store, "WhatsApp", T0, posts=False)
    many = {"connectivity": 40, "messaging": 30, "app": 20, "login": 10, "calls": 9, "website": 8}
    store.update_incident(iid, T0, {"symptoms": many})
    failing_source(store, T0)
    route = RouteSettings(name="oncall", email=("oncall@example.org",))
    d = render_digest(store, settings(routes=(route,), webhooks=(), subject_prefix="[障害]"), T0 + BUCKET, route)
    lines = d.text.splitlines()
    # Only a link may be wider than 78 columns: it is never cut, or it would not open.
    assert [line for line in lines if columns(line) > 78 and not line.strip().startswith("https://")] == []
    assert lines[1] == "=" * columns(lines[0])  # the underline is as wide as the title on screen
    text = "".join(line.strip() for line in lines)
    assert cjk[:100] in text and "down again 😡📵" in d.text
    symptoms = [line for line in lines if line.startswith("  Symptoms:")]
    assert len(symptoms) == 1 and lines[lines.index(symptoms[0]) + 1].strip().startswith("login 10 (9%)")  # items whole


class _Styles(HTMLParser):
    """The inline styles of the elements around each piece of text that contains ``needle``."""

    def __init__(self, needle: str) -> None:
        super().__init__()
        self.needle = needle
        self.stack: list[str] = []
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ("br", "img", "meta", "hr"):
            self.stack.append(dict(attrs).get("style") or "")

    def handle_endtag(self, tag: str) -> None:
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        if self.needle in data:
            self.found.append(";".join(self.stack))


def test_html_breaks_long_words_instead_of_widening_the_layout(store: Store) -> None:
    from test_alerts_support import seed_posts

    # A link pasted into a post is one long word: without a break rule the table grows past 640 px (and the screen).
    link = "https://downdetector.example/status/whatsapp/?utm_source=share&utm_campaign=" + "x" * 80
    seed_posts(store, "WhatsApp", T0 - BUCKET, [f"is it down? {link}"])
    open_incident(store, "WhatsApp", T0, posts=False)
    d = render_digest(store, settings(), T0 + BUCKET, "oncall")
    parser = _Styles("utm_campaign=xxx")
    parser.feed(d.html)
    assert parser.found and all("overflow-wrap:anywhere" in styles for styles in parser.found)


def test_charts_are_inline_images_not_attachments(store: Store) -> None:
    open_incident(store, "WhatsApp", T0)
    d = render_digest(store, settings(), T0 + BUCKET, "oncall")
    parsed = email.message_from_bytes(bytes(d.message), policy=email.policy.default)
    [image] = [p for p in parsed.walk() if p.get_content_type() == "image/png"]
    assert image.get_content_disposition() == "inline" and not image.is_attachment()
    assert f'src="cid:{str(image["Content-ID"]).strip("<>")}"' in d.html


def test_times_given_in_another_zone_are_shown_in_utc(store: Store) -> None:
    from zoneinfo import ZoneInfo

    open_incident(store, "WhatsApp", T0)
    berlin = (T0 + timedelta(minutes=50)).astimezone(ZoneInfo("Europe/Berlin"))  # 13:50 on the wall in Berlin
    d = render_digest(store, settings(), berlin, "oncall")
    assert "Digest 2026-11-27 12:50 UTC" in d.subject and "since 2026-11-26 12:50 UTC" in d.text
    assert "13:50" not in d.subject + d.text + d.html and d.message["Date"] == "Fri, 27 Nov 2026 13:50:00 +0100"


def test_non_ascii_text_is_sent_seven_bit_clean(store: Store) -> None:
    from test_alerts_support import seed_posts

    # Short lines with an accent or emoji went out as raw 8-bit, which smtplib sends without BODY=8BITMIME.
    seed_posts(store, "WhatsApp", T0 - BUCKET, ["WhatsApp en panne au café 😡", "Ватсап не работает"])
    open_incident(store, "WhatsApp", T0, posts=False)
    route = RouteSettings(name="oncall", email=("oncall@example.org",))
    d = render_digest(store, settings(routes=(route,), webhooks=(), subject_prefix="[障害]"), T0 + BUCKET, route)
    raw = bytes(d.message)
    assert raw.isascii()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    text, html = (parsed.get_body((kind,)).get_content() for kind in ("plain", "html"))  # type: ignore[union-attr]
    assert all("au café 😡" in part and "Ватсап не работает" in part for part in (text, html))
    assert str(parsed["Subject"]).startswith("[障害] Digest")


def test_chart_content_ids_are_message_ids_unique_to_each_message(store: Store) -> None:
    # They were "<chart-1>" in every message about incident 1: no id-right, and the same for a chart that changed.
    open_incident(store, "WhatsApp", T0)
    content_ids = []
    for as_of in (T0 + BUCKET, T0 + 2 * BUCKET):
        d = render_digest(store, settings(), as_of, "oncall")
        parsed = email.message_from_bytes(bytes(d.message), policy=email.policy.default)
        [image] = [p for p in parsed.walk() if p.get_content_type() == "image/png"]
        value = str(image["Content-ID"])
        assert email.policy.default.header_factory("Message-ID", value).defects == ()  # type: ignore[attr-defined]
        assert f'src="cid:{value.strip("<>")}"' in d.html
        content_ids.append(value)
    assert content_ids[0] != content_ids[1]


def test_ids_and_the_unsubscribe_link_are_written_whole_however_long(store: Store, tmp_path: Path) -> None:
    # Longer than a 78-column line they were RFC 2047-encoded (In-Reply-To: =?utf-8?q?=3Cminer...), which mail
    # clients do not decode there: the resolve notice did not thread, the chart did not show, unsubscribing failed.
    url = "https://lists.example.org/unsubscribe?token=" + "ab" * 32
    route = RouteSettings(name="oncall", email=("oncall@example.org",), list_unsubscribe=url)
    cfg = settings(routes=(route,), webhooks=(), group_wait=0.0,
                   from_addr="miner <miner@alert-notifications.production.example.com>")
    iid = open_incident(store, "WhatsApp", T0)
    plan_notifications(store, cfg, T0)
    files = FileSenders(tmp_path / "sent")
    assert dispatch(store, cfg, T0 + timedelta(minutes=1), worker_id="w", senders=files.senders()).sent == 1
    resolve(store, iid, T0 + timedelta(minutes=30))
    plan_notifications(store, cfg, T0 + timedelta(minutes=30))
    assert dispatch(store, cfg, T0 + timedelta(minutes=31), worker_id="w", senders=files.senders()).sent == 1
    alert, notice = (path.read_bytes() for path in files.files())
    digest = bytes(render_digest(store, cfg, T0 + timedelta(minutes=20), route).message)

    def header(raw: bytes, name: str) -> str:  # as written, unfolded
        text = raw.decode("ascii").split("\n\n")[0] if name != "Content-ID" else raw.decode("ascii")
        [line] = [ln for ln in text.replace("\n ", " ").splitlines() if ln.startswith(f"{name}:")]
        return line.removeprefix(f"{name}:").strip()

    opened = header(alert, "Message-ID")
    assert len(opened) > 78 and header(notice, "In-Reply-To") == header(notice, "References") == opened
    for raw in (alert, digest):
        content_id = header(raw, "Content-ID")
        assert content_id.startswith("<chart-1.") and content_id.endswith(".production.example.com>")
    assert header(digest, "List-Unsubscribe") == f"<{url}>"
    assert all(len(line) <= 998 for raw in (alert, notice, digest) for line in raw.splitlines())


def test_a_failing_source_shows_when_it_was_last_ok_as_every_other_time(store: Store) -> None:
    from test_alerts_support import failing_source

    failing_source(store, T0)
    store.database.execute("UPDATE sources SET last_ok_at = ? WHERE name = 'reddit-ug'", (iso(T0 - BUCKET),))
    route = RouteSettings(name="oncall", email=("oncall@example.org",))
    d = render_digest(store, settings(routes=(route,), webhooks=()), T0 + BUCKET, route)
    shown = f"last ok {T0 - BUCKET:%Y-%m-%d %H:%M} UTC"
    assert shown in " ".join(d.text.split()) and shown in d.html  # the text part had the raw ISO form


def test_a_failing_sources_count_of_failures_is_in_the_singular_for_one(store: Store) -> None:
    # The digest said "1 failure(s)" whatever the count.
    from test_alerts_support import failing_source

    route = RouteSettings(name="oncall", email=("oncall@example.org",))
    failing_source(store, T0)
    for said in ("1 failure, last ok", "2 failures, last ok"):
        d = render_digest(store, settings(routes=(route,), webhooks=()), T0 + BUCKET, route)
        assert said in " ".join(d.text.split()) and said in d.html
        store.record_poll_failure("reddit-ug", "HTTP 429 too many requests", T0, T0 + timedelta(minutes=5))


def test_only_plain_http_links_reach_an_href_the_text_part_or_a_webhook(store: Store) -> None:
    # A feed's post or status-page URL is anyone's: a javascript:, data: or vbscript: link, quotes that would end
    # the href, a U+2028 that broke the text part's line inside the URL (showing what read as a second link), and
    # a user name before an @ that makes https://status.example.com@evil.example/ read as the status page.
    from test_alerts_support import seed_posts

    from miner.alerts.webhooks import json_payload
    from miner.config import SourceConfig
    from miner.records import FetchResult, OfficialIncident

    bad = ["javascript:alert(1)", " JaVaScRiPt:alert(1)", "data:text/html,<script>alert(1)</script>",
           "vbscript:msgbox(1)", 'https://x.example/"onmouseover="alert(1)', "https://x.example/a\nb",
           "https://evil.example/\u2028https://status.example.com/incidents/1",
           "https://evil.example/\u2029x", "https://x.example/\ue000", "https://status.example.com@evil.example/",
           "https://user:pw@evil.example/", "//evil.example/x", "https:evil.example"]
    texts = [f"WhatsApp down, post {i}" for i in range(len(bad))]
    seed_posts(store, "WhatsApp", T0 - BUCKET, texts)
    with store.database.transaction() as conn:  # seed_posts gives every other post a good URL: make them all bad
        for i, url in enumerate(bad):
            conn.execute("UPDATE posts SET url = ? WHERE text = ?", (url, texts[i]))
    store.sync_sources([SourceConfig(name="status:wa", type="statuspage", url="https://status.example.com")])
    inc = OfficialIncident(source="status:wa", external_id="abc", service="WhatsApp", title="Messages delayed",
                           status="investigating", started_at=T0, updated_at=T0,
                           url="https://status.example.com@evil.example/incidents/abc")
    store.save_fetch("status:wa", FetchResult(incidents=[inc]), T0, T0 + timedelta(minutes=5))
    iid = open_incident(store, "WhatsApp", T0, posts=False)
    cfg = settings(max_samples=len(bad))
    digest = render_digest(store, cfg, T0 + timedelta(minutes=10), "oncall", message_id="<d@example.org>")

    hrefs: list[str] = []

    class Links(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            hrefs.extend(v or "" for k, v in attrs if k in ("href", "src"))

    Links().feed(digest.html)
    assert hrefs and all(h.startswith("cid:chart-") for h in hrefs), hrefs
    assert "evil.example" not in digest.text and "evil.example" not in digest.html
    assert "Messages delayed" in digest.text and "post 12" in digest.text  # the posts and the title stay, unlinked
    view = incident_view(store, cfg, iid, T0 + timedelta(minutes=10))
    assert view is not None and view.official is not None and view.official.url is None
    payload = json_payload("alert", [view], route="oncall", message_id="<a@example.org>", now=T0, reminders=set())
    assert {s["url"] for s in payload["incidents"][0]["samples"]} == {None}


def test_a_resolve_notice_leaves_out_an_incident_open_again_when_it_goes_out(store: Store) -> None:
    cfg = settings()
    back, over = open_incident(store, "WhatsApp", T0), open_incident(store, "Airtel", T0, posts=False, series=False)
    for iid in (back, over):
        resolve(store, iid, T0 + timedelta(minutes=40))
    store.update_incident(back, T0 + timedelta(minutes=50), {"status": "open", "resolved_at": None}, kind="update",
                          details={"reason": "reopened"})
    items = [{"incident_id": i, "kind": "resolve"} for i in (back, over)]
    notice = render_alert(store, cfg, cfg.routes[0], "resolved", items, message_id="<n@example.org>",
                          now=T0 + timedelta(hours=1))
    assert [v.service for v in notice.incidents] == ["Airtel"]
    assert notice.subject.startswith("[miner] RESOLVED: Airtel") and "WhatsApp" not in notice.text + notice.html


def test_a_provider_incident_without_a_start_of_its_own_says_when_it_was_first_seen(store: Store) -> None:
    from miner.config import SourceConfig
    from miner.records import FetchResult, OfficialIncident

    store.sync_sources([SourceConfig(name="status:wa", type="status_feed", url="https://status.example.com/feed")])
    seen = T0 + timedelta(minutes=5)
    inc = OfficialIncident(source="status:wa", external_id="abc", service="WhatsApp", title="Messages delayed",
                           status="investigating", started_at=seen, updated_at=seen, undated=True)
    store.save_fetch("status:wa", FetchResult(incidents=[inc]), seen, seen + timedelta(minutes=5))
    open_incident(store, "WhatsApp", T0)
    digest = render_digest(store, settings(), T0 + timedelta(minutes=10), "oncall", message_id="<d@example.org>")
    shown = f"first seen {seen:%Y-%m-%d %H:%M} UTC"
    assert shown in " ".join(digest.text.split()) and shown in digest.html
    assert "posted" not in digest.text

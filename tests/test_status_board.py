"""The status board (/, /status, /services/NAME) on a real 127.0.0.1 server, reading a real SQLite store on a fixed
clock, as the read API's tests do: each page's content, hostile names made inert, the headers, the SVG charts, the
errors, HEAD, and no post's text or author anywhere."""

from __future__ import annotations

import base64
import hashlib
import re
import socket
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote, urljoin

import httpx
import pytest
from test_read_api import BUCKET, NOW, SECRET, failing_reads, fill, post, served, serving, write_config

from miner.config import load_config
from miner.detect import step
from miner.read_api import ReadApi
from miner.records import FetchResult, OfficialIncident, Prediction
from miner.status_board import INDEX_HOURS, REFRESH, Bucket, _describe, _render, _sparkline
from miner.store import Store
from miner.timeutil import iso, parse_iso

HOSTILE = """<script>alert("name")</script> O'Neil & <b>Co</b>"""
HOSTILE_PROVIDER = '"><img src=x onerror=alert(1)>'
HOSTILE_TITLE = "<img src=x onerror=alert('title')>"
SVG = "{http://www.w3.org/2000/svg}"
# 24 h of 15-minute buckets, from the one holding 12:07:30 the day before to the one in progress: 96 + 1.
DAY_BUCKETS = 97
# Tags the pages may hold: nothing that runs, loads or embeds anything.
TAGS = {"html", "head", "meta", "title", "style", "body", "header", "main", "footer", "nav", "h1", "h2", "p", "a",
        "span", "ul", "li", "time", "details", "summary", "div", "table", "thead", "tbody", "tr", "th", "td", "svg",
        "line", "polyline", "rect", "text"}


def write_hostile_config(tmp_path: Path) -> Path:
    cfg = write_config(tmp_path)
    name, provider = (value.replace("\\", "\\\\").replace('"', '\\"') for value in (HOSTILE, HOSTILE_PROVIDER))
    cfg.write_text(cfg.read_text(encoding="utf-8") + f'\n[[services]]\nname = "{name}"\nprovider = "{provider}"\n'
                   f'\n[[sources]]\nname = "status:evil"\ntype = "statuspage"\nurl = "http://127.0.0.1:9/evil"\n'
                   f'services = ["{name}"]\n',
                   encoding="utf-8")
    return cfg


def fill_hostile(store: Store) -> None:
    """An open incident of the hostile service, linked to its provider's incident of hostile title and link."""
    store.save_fetch("status:evil", FetchResult(incidents=[
        OfficialIncident("status:evil", "x", HOSTILE, HOSTILE_TITLE, "investigating", NOW - timedelta(hours=2),
                         NOW - timedelta(hours=1), impact="<i>major</i>", url="javascript:alert(1)")]), NOW, NOW)
    store.open_incident(HOSTILE, NOW - timedelta(hours=1), {
        "peak_complaints": 1, "official_incident_id": store.official_incident_id("status:evil", "x"),
        "symptoms": {"<svg onload=alert(1)>": 1}}, {})


@dataclass
class Board:
    base: str
    store: Store


@pytest.fixture
def board(tmp_path: Path) -> Iterator[Board]:
    with served(tmp_path, write_hostile_config(tmp_path), fill_hostile, board=True) as api:
        yield Board(api.base, api.store)


class Parsed(HTMLParser):
    """Every tag and attribute of a page, and its text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def words(self, between: str = "") -> str:
        """The page's text with its runs of white space as one space; ``between`` text nodes (" " in a table)."""
        return " ".join(between.join(self.text).split())

    def hrefs(self) -> list[str]:
        return [str(attrs["href"]) for tag, attrs in self.tags if tag == "a"]


def page(board: Board, path: str, status: int = 200) -> tuple[str, httpx.Headers, Parsed]:
    reply = httpx.get(board.base + path, timeout=10)
    assert reply.status_code == status, reply.text
    assert SECRET not in reply.text
    parsed = Parsed(reply.text)
    # Inert whatever the data: nothing that runs or loads, no event handler, no link but ours and http(s) ones.
    assert {tag for tag, _ in parsed.tags} <= TAGS, {tag for tag, _ in parsed.tags} - TAGS
    assert not [name for _, attrs in parsed.tags for name in attrs if name.startswith("on")]
    assert all(re.match(r"(\.\.?/|[?]|services/|https?://|[A-Za-z%])", h) and not h.lower().startswith(
        "javascript:") for h in parsed.hrefs()), parsed.hrefs()
    return reply.text, reply.headers, parsed


def charts(html: str) -> list[ET.Element]:
    """Each inline <svg> of the page, parsed as the XML it must be."""
    return [ET.fromstring(svg) for svg in re.findall(r"<svg\b.*?</svg>", html, re.S)]


def points(svg: ET.Element, css: str) -> list[tuple[float, float]]:
    line = svg.find(f"{SVG}polyline[@class='{css}']")
    assert line is not None
    return [(float(x), float(y)) for x, y in (p.split(",") for p in line.get("points", "").split())]


def test_the_headers_lock_the_page_down(board: Board) -> None:
    html, headers, _ = page(board, "/")
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Cache-Control"] == "no-store" and headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer" and headers["X-Frame-Options"] == "DENY"
    policy = dict(d.strip().split(" ", 1) for d in headers["Content-Security-Policy"].split(";"))
    assert (policy["default-src"], policy["frame-ancestors"], policy["base-uri"]) == ("'none'", "'none'", "'none'")
    assert "script-src" not in policy and "img-src" not in policy  # default-src 'none': no script, no image
    # The one style block, by its hash: a style smuggled in anywhere else would not apply.
    styles = re.findall(r"<style>(.*?)</style>", html, re.S)
    assert len(styles) == 1
    digest = base64.b64encode(hashlib.sha256(styles[0].encode("utf-8")).digest()).decode("ascii")
    assert policy["style-src"] == f"'sha256-{digest}'"
    assert ' style="' not in html  # an inline style attribute would be blocked
    assert '<meta http-equiv="refresh" content="60">' in html
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html


def test_the_board_lists_every_service_with_its_state(board: Board) -> None:
    html, _, parsed = page(board, "/")
    assert "<title>2 incidents – Service status</title>" in html
    text = parsed.words()
    assert ("2 of 4 services with an incident open, 2 with no data yet (no incident can open there yet: an outage "
            "cannot be told), as of 2026-11-27 12:07 UTC.") in text
    assert [h for h in parsed.hrefs() if h.startswith("services/")] == [
        "services/WhatsApp", "services/Instagram", "services/MTN%20Uganda", "services/" + quote(HOSTILE, safe="")]
    whatsapp, instagram, mtn, _ = html.split('<li class="card ')[1:]
    assert whatsapp.startswith("incident")
    assert '<time datetime="2026-11-27T12:00:00+00:00">2026-11-27 12:00 UTC</time> (7 min)' in whatsapp
    assert ('<a href="https://status.example.com/incidents/abc" rel="noopener noreferrer">Messages delayed</a>\n'
            "(investigating, impact major)") in whatsapp
    assert "4 complaints in the last hour" in whatsapp and "usual 0.457 per 15 min (z-score 6.12)" in whatsapp
    # Never scored: "no baseline yet" beside an OK badge said "no outage" where the truth is "cannot tell".
    assert instagram.startswith("no_data") and '<span class="badge nodata">No data</span>' in instagram
    assert "no baseline yet" in instagram and '<span class="badge">OK</span>' not in instagram
    assert "Provider's status page" not in instagram + mtn  # the provider's resolved and planned ones are not shown
    assert page(board, "/status")[0] == html


def test_each_sparkline_is_valid_svg_with_a_point_per_bucket_and_its_numbers_in_words(board: Board) -> None:
    html, _, _ = page(board, "/")
    svgs = charts(html)
    assert len(svgs) == 4
    for svg in svgs:
        assert svg.get("role") == "img" and svg.get("viewBox") == "0 0 240 48"
        title = svg.find(f"{SVG}title")
        assert title is not None and title.text == svg.get("aria-label")
        assert len(points(svg, "complaints")) == DAY_BUCKETS
    whatsapp = svgs[0]
    assert whatsapp.get("aria-label") == (
        "WhatsApp: complaints per 15-minute bucket over the last 24 h, 97 buckets from 2026-11-26 12:00 UTC: "
        "4 complaints in all, at most 2 in a bucket (2026-11-27 11:45 UTC), 1 so far in the bucket in progress; "
        "usual 0.457 per bucket")
    ys = [y for _, y in points(whatsapp, "complaints")]
    # 11:15 one complaint, 11:45 two (the top), 12:00 one; every other bucket, with a row or none, is zero.
    assert ys[-2] == min(ys) and ys[-1] == ys[-4] < ys[-3] and len(set(ys[:-4])) == 1 and max(ys) == ys[-3] == ys[0]
    assert whatsapp.find(f"{SVG}line[@class='baseline']") is not None
    assert svgs[1].get("aria-label", "").endswith("no complaints, 0 so far in the bucket in progress")


def test_a_hostile_name_provider_and_status_entry_render_inert(board: Board) -> None:
    for path in ("/", "/services/" + quote(HOSTILE, safe="")):
        html, _, parsed = page(board, path)  # checks no tag, handler or javascript: link came of them
        for raw in (HOSTILE, HOSTILE_PROVIDER, HOSTILE_TITLE, "<svg onload", "<i>major"):
            assert raw not in html
        text = "".join(parsed.text)
        assert HOSTILE in text and HOSTILE_TITLE in text  # shown as text, escaped
        assert "javascript:" not in " ".join(parsed.hrefs())  # its status link is not followed
        for svg in charts(html):  # still valid XML
            assert svg.find(f"{SVG}title") is not None
    html = page(board, "/services/" + quote(HOSTILE, safe=""))[0]
    assert "<h1>&lt;script&gt;alert(&#34;name&#34;)&lt;/script&gt; O&#39;Neil &amp; &lt;b&gt;Co&lt;/b&gt; " in html
    assert charts(html)[0].get("aria-label", "").startswith(HOSTILE + ": posts and complaints")


def test_a_service_page_charts_posts_and_complaints_and_lists_its_incidents(board: Board) -> None:
    html, _, parsed = page(board, "/services/WhatsApp?hours=3")
    assert "<title>WhatsApp: incident – Service status</title>" in html
    text = parsed.words(" ")
    assert "4 complaints and 4 posts in the last hour" in text
    (svg,) = charts(html)
    assert svg.get("viewBox") == "0 0 720 240"
    assert svg.get("aria-label") == (
        "WhatsApp: posts and complaints per 15-minute bucket, 13 buckets from 2026-11-27 09:00 UTC to "
        "2026-11-27 12:07 UTC: 5 posts, 4 complaints in all, at most 2 in a bucket (2026-11-27 11:45 UTC); "
        "1 incident shown shaded")
    posts, complaints = points(svg, "posts"), points(svg, "complaints")
    assert len(posts) == len(complaints) == 13  # 09:00 to 12:00
    assert [x for x, _ in posts] == [x for x, _ in complaints] and posts[0][0] < posts[-1][0]
    assert posts[4][1] < complaints[4][1]  # 10:00: a post that is no complaint
    assert len(svg.findall(f"{SVG}rect[@class='incident']")) == 1
    # The numbers as a table too, the buckets with posts, newest first.
    rows = re.findall(r"<tr><td><time [^>]*>([^<]+)</time></td>"
                      r"<td class=\"num\">(\d+)</td><td class=\"num\">(\d+)</td></tr>", html)
    assert rows == [("2026-11-27 12:00 UTC", "1", "1"), ("2026-11-27 11:45 UTC", "2", "2"),
                    ("2026-11-27 11:15 UTC", "1", "1"), ("2026-11-27 10:00 UTC", "1", "0")]
    assert "Incidents since 2026-11-20 12:07 UTC" in text
    assert "open 7 min 2 2 messaging 2 Messages delayed (investigating)" in text
    assert '<a href="?hours=24">24 h</a>' in html and '<a href="../">' in html

    html = page(board, "/services/WhatsApp")[0]
    assert [len(points(charts(html)[0], css)) for css in ("posts", "complaints")] == [DAY_BUCKETS] * 2
    assert '<a href="?hours=24" aria-current="page">24 h</a>' in html


@pytest.mark.parametrize("name", ["WhatsApp", "MTN Uganda", HOSTILE])
def test_a_service_page_links_its_own_series_as_json(board: Board, name: str) -> None:
    # Its "Also as JSON" linked /api/v1/services, every service's state, not the numbers the page charts; the
    # name percent-encoded whole, its "/" too, as the series endpoint reads it (docs/api.md).
    url = f"{board.base}/services/{quote(name, safe='')}?hours=3"
    parsed = page(board, url[len(board.base):])[2]
    (href,) = [h for h in parsed.hrefs() if "api/v1/" in h]
    assert href == f"../api/v1/services/{quote(name, safe='')}/series?hours=3"
    reply = httpx.get(urljoin(url, href), timeout=10)
    assert reply.status_code == 200, reply.text
    assert (reply.json()["service"], reply.json()["hours"]) == (name, 3)
    assert f"Also as JSON: /api/v1/services/{quote(name, safe='')}/series." in parsed.words()
    # The index's is every service's state.
    assert [h for h in page(board, "/")[2].hrefs() if "api/v1/" in h] == ["./api/v1/services"]


def test_incidents_reach_back_as_far_as_the_chart_and_a_week_at_least(board: Board) -> None:
    text = page(board, "/services/MTN%20Uganda")[2].words(" ")
    assert "Incidents since 2026-11-20 12:07 UTC" in text
    assert "2026-11-26 12:07 UTC 2026-11-26 14:07 UTC 2 h 00 min 4 9 calls 9 –" in text
    assert "2026-11-17" not in text  # 10 days ago
    html, _, parsed = page(board, "/services/MTN%20Uganda?hours=360")
    text = parsed.words(" ")
    assert "Incidents since 2026-11-12 12:00 UTC" in text and "2026-11-17 12:07 UTC 2026-11-17 14:07 UTC" in text
    (svg,) = charts(html)
    assert len(svg.findall(f"{SVG}rect[@class='incident']")) == 2
    assert svg.get("aria-label", "").endswith("; 2 incidents shown shaded")
    # Listed, yesterday's incident is before a 3 h chart: not drawn, and not said to be.
    html, _, parsed = page(board, "/services/MTN%20Uganda?hours=3")
    assert "2026-11-26 12:07 UTC 2026-11-26 14:07 UTC" in parsed.words(" ")
    (svg,) = charts(html)
    assert not svg.findall(f"{SVG}rect[@class='incident']")
    assert svg.get("aria-label", "").endswith("; 0 incidents shown shaded")


@pytest.mark.parametrize(("path", "message", "near"), [
    ("/services/whatsap", "No service named “whatsap”.", "WhatsApp"),
    ("/services/mtn%20uganda", "No service named “mtn uganda”.", "MTN Uganda"),
    ("/services/%3Cscript%3Ealert(1)%3C%2Fscript%3E", "No service named “<script>alert(1)</script>”.", None),
    ("/services/" + "x" * 200, "No service named “" + "x" * 80 + "…”.", None),
    # A link's bidi override and controls are shown, not obeyed: "\u202e" reversed the rest of the line.
    ("/services/%E2%80%AEcod.exe%1B%5B2J%0D", "No service named “\\u202ecod.exe\\x1b[2J\\x0d”.", None),
])
def test_an_unknown_service_is_a_404_page_with_a_guess(board: Board, path: str, message: str, near: str | None
                                                      ) -> None:
    html, headers, parsed = page(board, path, 404)
    assert headers["Content-Type"] == "text/html; charset=utf-8" and "Content-Security-Policy" in headers
    assert message in parsed.words()
    assert "<script>" not in html
    if near:
        assert f'Did you mean <a href="{quote(near, safe="")}">{near}</a>?' in html
    else:
        assert "Did you mean" not in html


@pytest.mark.parametrize(("path", "message"), [
    # 2016 buckets of 15 minutes (MAX_CHART_BUCKETS), fewer than the 960 h bucket rows are kept
    ("/services/WhatsApp?hours=0", "hours: must be a whole number from 1 to 504 (got '0')"),
    ("/services/WhatsApp?hours=505", "hours: must be a whole number from 1 to 504 (got '505')"),
    ("/services/WhatsApp?hours=1&hours=2", "hours: given 2 times; give it once"),
    ("/services/WhatsApp?hours=%FF", "hours: not percent-encoded UTF-8 (got '%FF')"),
    # Named among the parameters the page reads, not a link's tracker tag that it leaves out
    ("/services/WhatsApp?utm_source=%FF&hours=%FE", "hours: not percent-encoded UTF-8 (got '%FE')"),
])
def test_a_bad_parameter_is_a_400_page(board: Board, path: str, message: str) -> None:
    assert message in page(board, path, 400)[2].words()


def test_a_service_page_charts_a_bounded_number_of_buckets(tmp_path: Path) -> None:
    # The defaults: 5-minute buckets, bucket rows kept 400 days. ?hours=9600 charted 115,201 buckets (and listed as
    # many), an 11 MB page and seconds of CPU for one GET; a week's 2016 buckets at most now.
    cfg = write_config(tmp_path)
    cfg.write_text(cfg.read_text(encoding="utf-8").replace("bucket_retention_days = 40\n", "").replace(
        "bucket_minutes = 15", "bucket_minutes = 5"), encoding="utf-8")
    config = load_config(cfg)
    store = Store.open(tmp_path / "miner.sqlite")
    read = ReadApi(config, lambda: store, lambda: None, lambda: NOW)
    with closing(store), serving(read, board=True) as base:
        board = Board(base, store)
        html = page(board, "/services/WhatsApp?hours=168")[0]
        assert len(points(charts(html)[0], "complaints")) == 2017  # from the one holding now - 168 h: 2016 + 1
        assert '<a href="?hours=168" aria-current="page">168 h</a>' in html
        assert "hours: must be a whole number from 1 to 168 (got '169')" in page(
            board, "/services/WhatsApp?hours=169", 400)[2].words()
        assert "hours: must be a whole number from 1 to 168 (got '9600')" in page(
            board, "/services/WhatsApp?hours=9600", 400)[2].words()
        # The API's series goes further, up to 10,080 buckets (35 days of 5-minute ones), not the 400 days kept.
        series = httpx.get(board.base + "/api/v1/services/WhatsApp/series?hours=840", timeout=10)
        assert series.status_code == 200 and series.json()["hours"] == 840
        refused = httpx.get(board.base + "/api/v1/services/WhatsApp/series?hours=841", timeout=10)
        assert refused.status_code == 400
        assert refused.json()["error"] == "hours: must be a whole number from 1 to 840 (got '841')"


def test_one_service_and_one_bucket_are_counted_in_the_singular(tmp_path: Path) -> None:
    # A board watching one service said "No incident open: all 1 services OK" on every load, and a chart of one
    # bucket (?hours=1 with day-wide buckets) "1 buckets from" to screen readers.
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "miner.sqlite"}"\n\n[detector]\nbucket_minutes = 1440\n\n'
                   '[[services]]\nname = "Solo"\n', encoding="utf-8")
    store = Store.open(tmp_path / "miner.sqlite")
    read = ReadApi(load_config(cfg), lambda: store, lambda: None, lambda: NOW)
    with closing(store), serving(read, board=True) as base:
        board = Board(base, store)
        assert ("No incident open: 1 service with no data yet (no incident can open there yet: an outage cannot be "
                "told), as of 2026-11-27 12:07 UTC.") in page(board, "/")[2].words()
        day = NOW.replace(hour=0, minute=0, second=0) - timedelta(days=1)
        state, _ = step(load_config(cfg).detector, None, day, 0)  # one day-wide bucket: past the 12 h warm-up
        store.save_detector_step("Solo", day, state.to_json(), [], NOW)
        assert "No incident open: 1 service OK, as of 2026-11-27 12:07 UTC." in page(board, "/")[2].words()
        (chart,) = charts(page(board, "/services/Solo?hours=1")[0])
        assert chart.get("aria-label", "").startswith(
            "Solo: posts and complaints per 1440-minute bucket, 1 bucket from 2026-11-27 00:00 UTC to ")
        store.open_incident("Solo", NOW - timedelta(hours=1), {"peak_complaints": 1}, {})
        reply = httpx.get(base + "/", timeout=10)  # server.cache_seconds is not set here: read again
        assert "1 of 1 service with an incident open, as of 2026-11-27 12:07 UTC." in Parsed(reply.text).words()


def test_the_index_reads_every_services_sparkline_at_once_as_each_ones_series_gives_it(tmp_path: Path) -> None:
    # The index read each service's series on its own: at 330 services, 330 statements and 0.67 s a page.
    cfg = write_hostile_config(tmp_path)
    cfg.write_text(cfg.read_text(encoding="utf-8") + '\n[[services]]\nname = "Quiet"\n', encoding="utf-8")
    config = load_config(cfg)
    store = Store.open(tmp_path / "miner.sqlite")
    fill(store)
    fill_hostile(store)
    # Each service its own complaints: Instagram 1 at 12:15 yesterday and 2 at 09:00, one before the sparkline;
    # MTN Uganda 3 at 06:30; Nokia, no longer configured, 5 at 11:45. Quiet and the hostile one have no bucket rows.
    day = NOW - timedelta(hours=24)
    at = [("Instagram", day + timedelta(minutes=10)), ("Instagram", NOW - timedelta(hours=3, minutes=2)),
          ("Instagram", NOW - timedelta(hours=3, minutes=1)), ("Instagram", NOW - timedelta(hours=30))]
    at += [("MTN Uganda", NOW.replace(hour=6, minute=40 + i)) for i in range(3)]
    at += [("Nokia", NOW.replace(hour=11, minute=46 + i)) for i in range(5)]
    store.insert_posts([post(100 + n, service, t) for n, (service, t) in enumerate(at)], NOW)
    store.save_classifications([(p.id, Prediction(0.9, True, "calls")) for p in store.posts_to_classify(100)],
                               "test", NOW)
    store.refresh_buckets(NOW - timedelta(hours=31), NOW, BUCKET)
    reader = Store.open(tmp_path / "miner.sqlite")
    read = ReadApi(config, lambda: reader, lambda: None, lambda: NOW)
    statements: list[str] = []
    try:
        with serving(read, board=True) as base:
            reader.database.conn.set_trace_callback(statements.append)  # with their values bound
            html = page(Board(base, store), "/")[0]
            reader.database.conn.set_trace_callback(None)
        # The page as one read of each service's series rendered it, byte for byte.
        assert html == read.read(lambda s: per_service_index(read, s))
    finally:
        reader.database.conn.set_trace_callback(None)
        reader.close()
        store.close()
    labels = [svg.get("aria-label", "").split(": ", 1)[1].split(" from 2026-11-26 12:00 UTC: ")[1]
              for svg in charts(html)]
    assert labels == [
        "4 complaints in all, at most 2 in a bucket (2026-11-27 11:45 UTC), 1 so far in the bucket in progress; "
        "usual 0.457 per bucket",
        "3 complaints in all, at most 2 in a bucket (2026-11-27 09:00 UTC), 0 so far in the bucket in progress",
        "3 complaints in all, at most 3 in a bucket (2026-11-27 06:30 UTC), 0 so far in the bucket in progress",
        "no complaints, 0 so far in the bucket in progress",
        "no complaints, 0 so far in the bucket in progress"]
    # The sparklines' buckets in one statement, not one per service.
    window = [s for s in statements if "FROM buckets" in s and "bucket_start >= '2026-11-26T12:00:00+00:00'" in s]
    assert len(window) == 1, window


def per_service_index(read: ReadApi, store: Store) -> str:
    """The index as it was drawn from the series of each service, as /api/v1/services/NAME/series answers it."""
    services = read.services(store, {})
    now = parse_iso(services["now"])
    rows = []
    for state in services["services"]:
        one = read.series(state["service"], store, {"hours": str(INDEX_HOURS)})
        start, current = read.window(parse_iso(one["now"]), one["hours"])
        counted = {parse_iso(b["start"]): b for b in one["buckets"]}
        grid = [Bucket(at, counted[at]["posts"] if at in counted else 0,
                       counted[at]["complaints"] if at in counted else 0)
                for at in (start + i * BUCKET for i in range((current - start) // BUCKET + 1))]
        rows.append({**_describe(state, now, {}), "href": "services/" + quote(state["service"], safe=""),
                     "spark": _sparkline(state["service"], grid, one, state["baseline"])})
    return _render("index.html", root="./", refresh=REFRESH, toggle="?refresh=off", now=services["now"], rows=rows,
                   incidents=sum(s["health"] == "incident" for s in services["services"]),
                   warming=sum(s["health"] == "warming_up" for s in services["services"]),
                   no_data=sum(s["health"] == "no_data" for s in services["services"]),
                   bucket_minutes=services["bucket_minutes"])


def test_a_page_leaves_out_parameters_it_does_not_take(board: Board) -> None:
    # People follow links with a tracker's tags; the API, for scripts, refuses them instead.
    assert page(board, "/?utm_source=chat", 200)[2].words() == page(board, "/", 200)[2].words()
    assert page(board, "/?%FF=%FE", 200)[2].words() == page(board, "/", 200)[2].words()  # not even UTF-8
    assert page(board, "/services/WhatsApp?hours=3&fbclid=x", 200)[2].words() == page(
        board, "/services/WhatsApp?hours=3", 200)[2].words()


@pytest.mark.parametrize("path", ["/services/", "/services", "/services/WhatsApp/series", "/status/", "/index.html"])
def test_other_paths_are_the_endpoints_json_404_naming_the_pages(board: Board, path: str) -> None:
    reply = httpx.get(board.base + path, timeout=10)
    assert reply.status_code == 404
    assert reply.json()["endpoints"][-3:] == ["/", "/status", "/services/NAME"]


def test_head_answers_like_get_without_a_body(board: Board) -> None:
    for path in ("/", "/services/WhatsApp", "/services/Nokia"):
        got, head = httpx.get(board.base + path, timeout=10), httpx.head(board.base + path, timeout=10)
        assert head.status_code == got.status_code and head.content == b""
        # As sent: both gzipped (httpx takes gzip), the GET's body unpacked by httpx.
        assert head.headers["Content-Length"] == got.headers["Content-Length"] == str(got.num_bytes_downloaded)
        assert head.headers["Content-Security-Policy"] == got.headers["Content-Security-Policy"]


@pytest.mark.parametrize(("method", "path"), [("POST", "/"), ("PUT", "/status"), ("DELETE", "/services/WhatsApp")])
def test_the_board_is_read_only(board: Board, method: str, path: str) -> None:
    reply = httpx.request(method, board.base + path, content=b"x", timeout=10)
    assert reply.status_code == 405 and reply.headers["Allow"] == "GET, HEAD"
    assert reply.json()["error"] == f"{method} is not allowed: the status board is read-only (GET or HEAD)"


def test_a_store_that_fails_is_a_503_page_that_retries(tmp_path: Path) -> None:
    read, dropped = failing_reads(tmp_path)
    with serving(read, board=True) as base:
        for path in ("/", "/services/WhatsApp"):
            reply = httpx.get(base + path, timeout=10)
            assert reply.status_code == 503 and reply.headers["Content-Type"] == "text/html; charset=utf-8"
            assert "cannot read the store right now; this page tries again every 60 s." in reply.text
            assert '<meta http-equiv="refresh" content="60">' in reply.text
            assert "disk I/O" not in reply.text
        assert dropped == [True, True]
        # An unknown service needs no read: still its 404.
        assert httpx.get(base + "/services/Nokia", timeout=10).status_code == 404


def test_the_service_serves_the_board(tmp_path: Path) -> None:
    from miner.service import JobSpec, Service, ServiceOptions

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    store = Store.open(tmp_path / "miner.sqlite")
    fill(store)
    service = Service(load_config(write_config(tmp_path)), tmp_path / "miner.sqlite",
                      ServiceOptions(jobs=(JobSpec("retention", 3600.0),), http=True, http_port=port,
                                     clock=lambda: NOW))
    service.start()
    try:
        reply = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert reply.status_code == 200 and "Content-Security-Policy" in reply.headers
        assert "1 of 3 services with an incident open" in reply.text
    finally:
        service.stop()
        store.close()



DAY = NOW.replace(hour=0, minute=0, second=0)  # 2026-11-27 00:00


def incident(store: Store, opened: datetime, *changes: tuple[datetime, str, dict[str, str]]) -> None:
    """An incident of Instagram opened at ``opened``, then each (when, resolve or update, its event's details)."""
    iid = store.open_incident("Instagram", opened, {"peak_complaints": 3, "total_complaints": 5}, {})
    for at, kind, details in changes:
        fields = ({"status": "resolved", "resolved_at": at} if kind == "resolve"
                  else {"status": "open", "resolved_at": None})
        store.update_incident(iid, at, fields, kind, details)


def fill_endings(store: Store) -> None:
    """Instagram: an incident resolved after a gap (open at 03:30 the day before, miner not scoring from 04:00 to
    22:30, resolved at 22:45 with the first quiet buckets after it), and one miner closed itself (its service left
    feeds.toml)."""
    day_before = DAY - timedelta(days=1)
    gap = {"unscored_from": iso(day_before.replace(hour=4)), "unscored_to": iso(day_before.replace(hour=22, minute=30))}
    incident(store, day_before.replace(hour=3, minute=30), (day_before.replace(hour=22, minute=45), "resolve", gap))
    incident(store, DAY - timedelta(hours=38), (DAY - timedelta(hours=37), "resolve", {"reason": "unwatched"}))


def test_an_incident_not_seen_to_end_says_so_as_its_alerts_do(tmp_path: Path) -> None:
    with served(tmp_path, write_config(tmp_path), fill_endings, board=True) as api:
        html, _, parsed = page(Board(api.base, api.store), "/services/Instagram?hours=72")
    text = parsed.words(" ")
    # Its end unseen: not "19 h 15 min" (the downtime), but between the bounds of miner's downtime, and why.
    assert ("2026-11-26 03:30 UTC end not seen some time from 2026-11-26 04:00 UTC to 2026-11-26 22:30 UTC "
            "30 min to 19 h 00 min 3 5 – – Resolved after a gap: miner was not scoring from 2026-11-26 04:00 to "
            "22:30 UTC: the outage ended at some time in it, unseen") in text
    assert "19 h 15 min" not in text
    assert ("2026-11-25 10:00 UTC closed, no longer tracked 2026-11-25 11:00 UTC 1 h 00 min 3 5 – – Closed, not "
            "seen to end: the service was removed from feeds.toml, so miner stopped watching it") in text
    (svg,) = charts(html)
    assert svg.get("aria-label", "").endswith("; 2 incidents shown shaded")
    # Shaded while it was seen open: to 04:00, not over miner's downtime (30 min is 4.7 units of 672 for 72 h).
    widths = sorted(float(r.get("width", "0")) for r in svg.findall(f"{SVG}rect[@class='incident']"))
    assert len(widths) == 2 and widths[-1] < 10, widths


def fill_reopenings(store: Store) -> None:
    """Instagram: an incident that resolved, came back and resolved again, and one open that resolved and came
    back."""
    opened = DAY - timedelta(hours=34)
    incident(store, opened, (opened + timedelta(hours=1), "resolve", {}),
             (opened + timedelta(minutes=90), "update", {"reason": "reopened"}),
             (opened + timedelta(hours=2), "resolve", {}))
    incident(store, DAY.replace(hour=9), (DAY.replace(hour=10), "resolve", {}),
             (DAY.replace(hour=11), "update", {"reason": "reopened"}))


def test_an_incident_that_came_back_says_when_as_its_alerts_do(tmp_path: Path) -> None:
    with served(tmp_path, write_config(tmp_path), fill_reopenings, board=True) as api:
        board = Board(api.base, api.store)
        html, _, parsed = page(board, "/services/Instagram?hours=72")
        index = page(board, "/")[2].words(" ")
    text = parsed.words(" ")
    # Open again: since its first opening, and when it came back, as the alert about the re-opening says.
    came_back = "re-opened 2026-11-27 11:00 UTC, 1 h 00 min after it resolved at 10:00 UTC"
    assert f"Incident since 2026-11-27 09:00 UTC (3 h 07 min); {came_back}" in text
    assert f"Incident since 2026-11-27 09:00 UTC (3 h 07 min); {came_back}" in index
    assert f"2026-11-27 09:00 UTC open 3 h 07 min 3 5 – – R{came_back[1:]}" in text
    assert ("2026-11-25 14:00 UTC 2026-11-25 16:00 UTC 2 h 00 min 3 5 – – Re-opened 2026-11-25 15:30 UTC, "
            "30 min after it resolved at 15:00 UTC") in text
    (svg,) = charts(html)
    assert svg.get("aria-label", "").endswith("; 2 incidents shown shaded")
    # Shaded while open, not while quiet between a resolve and its re-opening: each rect is at most the 1 h 07 min
    # since the open one came back (10.4 units of 672 for 72 h), where 09:00 to now was 28.
    widths = sorted(float(r.get("width", "0")) for r in svg.findall(f"{SVG}rect[@class='incident']"))
    assert len(widths) == 4 and widths[-1] < 11, widths


def test_a_service_page_reads_its_incidents_re_openings_once(tmp_path: Path) -> None:
    # The incidents' answer read them for its reopened_at, and the page again for its notes and shading: every
    # resolve and update of its 20 incidents, twice, 3/4 of the page's time where each had re-opened 100 times.
    config = load_config(write_config(tmp_path))
    store = Store.open(tmp_path / "miner.sqlite")
    fill(store)
    fill_reopenings(store)
    reader = Store.open(tmp_path / "miner.sqlite")
    statements: list[str] = []
    try:
        with serving(ReadApi(config, lambda: reader, lambda: None, lambda: NOW), board=True) as base:
            reader.database.conn.set_trace_callback(statements.append)
            text = page(Board(base, store), "/services/Instagram?hours=72")[2].words(" ")
            reader.database.conn.set_trace_callback(None)
    finally:
        reader.database.conn.set_trace_callback(None)
        reader.close()
        store.close()
    # What it shows of them is as before: the open incident's re-opening, and the listed ones'.
    came_back = "re-opened 2026-11-27 11:00 UTC, 1 h 00 min after it resolved at 10:00 UTC"
    assert f"Incident since 2026-11-27 09:00 UTC (3 h 07 min); {came_back}" in text
    assert f"2026-11-27 09:00 UTC open 3 h 07 min 3 5 – – R{came_back[1:]}" in text
    assert "Re-opened 2026-11-25 15:30 UTC, 30 min after it resolved at 15:00 UTC" in text
    reads = [s for s in statements if "FROM incident_events" in s and "'update'" in s]
    assert len(reads) == 1, reads

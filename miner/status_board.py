"""The status board: read-only HTML pages for people on the service's HTTP endpoint (docs/api.md#status-board).

``GET /`` (or ``/status``) lists every configured service with its state and a sparkline of its complaints over the
last day; ``GET /services/NAME`` shows one service's posts and complaints over ``?hours=`` and its incidents.
Everything shown is what the read API answers (read_api.py), read in one turn on its connection, so the pages hold
aggregates only, as the API does: no post's text or author. The index's sparklines are the same bucket counts as
the API's series, read for every service in one statement (Store.bucket_counts_of).

Every value goes through Jinja2's autoescape (a service's name from feeds.toml too), and the name a 404 quotes from a
link's path, and a silence's or maintenance window's comment in a service's "Alerts muted" note (board_render.quoted),
have their controls and bidi overrides written \\u202e (one reversed the words after it). The charts are
inline SVG; a page loads nothing (no script, image, font or style sheet), as its Content-Security-Policy enforces.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlencode

from miner.alerts.content import gap_duration, gap_text, reopen_text
from miner.board_render import REFRESH, series_path
from miner.board_render import STYLE as _STYLE
from miner.board_render import clip as _clip
from miner.board_render import render as _render
from miner.board_render import when as _when
from miner.query_fields import BadRequest
from miner.read_api import DEFAULT_SINCE, ReadApi, Unavailable, parse_query
from miner.settings import closest
from miner.store.incidents import UnscoredGap
from miner.timeutil import counted, duration_text, iso, parse_iso
from miner.urls import escape_controls

if TYPE_CHECKING:
    from miner.store import Store

PAGES = ("/", "/status", "/services/NAME")
INDEX_HOURS = 24  # the sparklines' span
HOUR_CHOICES = (6, 24, 72, 168)
MAX_INCIDENTS = 20
# The most buckets a service page charts (and lists): a week of the default 5-minute buckets. Its ?hours= went up to
# the hours bucket rows are kept, 400 days by default: 115,201 buckets on a 720-unit-wide chart, an 11 MB page and
# 3.7 s of the service's CPU for one GET anyone could repeat, 1 s for a service with no posts.
MAX_CHART_BUCKETS = 2016
_SERVICES = "/services/"

_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode("utf-8")).digest()).decode("ascii")
# Sent with every page besides the endpoint's X-Content-Type-Options: nosniff and Cache-Control (http_cache).
HEADERS = {
    "Content-Security-Policy": f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; base-uri 'none'; "
                               "form-action 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",  # frame-ancestors, for browsers that predate it
}

Page = tuple[int, str]
Counts = Mapping[str, Mapping[str, tuple[int, int]]]  # Store.bucket_counts_of
Reopenings = Mapping[int, list[tuple[datetime | None, datetime]]]  # Store.reopenings_of


def is_page(path: str) -> bool:
    """Whether ``path`` (without its query) is one of the board's."""
    return path in ("/", "/status") or (path.startswith(_SERVICES) and len(path) > len(_SERVICES)
                                        and "/" not in path[len(_SERVICES):])


def _takes(path: str) -> tuple[str, ...]:
    """The parameters the page at ``path`` reads; it leaves out any other."""
    return ("refresh",) if path in ("/", "/status") else ("hours", "refresh")


def _refresh(params: Mapping[str, str]) -> int | None:
    """Seconds between the page's reloads, None with ``?refresh=off``: a reload every minute starts a screen reader
    over from the top and takes the keyboard's place, so a reader must be able to stop it (WCAG 2.2.1)."""
    value = params.get("refresh")
    if value is None:
        return REFRESH
    if value.strip().lower() == "off":
        return None
    raise BadRequest(f"refresh: must be off, or left out to reload every {REFRESH} s (got {value[:40]!r})")


def _links(refresh: int | None, here: str) -> dict[str, str]:
    """What a page's links to the board carry (``keep``, ?refresh=off once stopped) and its link that stops or
    restarts its reloads (``toggle``); ``here``: the page's own query but for refresh."""
    off = "refresh=off"
    if refresh is None:
        return {"keep": "?" + off, "toggle": "?" + here if here else "./"}
    return {"keep": "", "toggle": "?" + (f"{here}&{off}" if here else off)}


def kept_query(path: str, query: str) -> str:
    """What of ``query`` the answer for ``path`` depends on, and so is kept under (http_cache): for a page, the
    parameters it reads, as read; any other path's, or a query a page refuses (a 400, never kept), as it is.

    A page leaves out the parameters it does not take, but kept under the whole query string, each link that carried
    one of its own was a read of the store: Facebook adds an ``fbclid`` different for every visitor, so the crowd
    that opens the board from a post when a large service goes down, the crowd the kept pages are for, was a read
    apiece, 8 at most at once and the rest answered 503; so was any request with ``?x=`` and a number of its own."""
    if not is_page(path):
        return query
    try:
        return urlencode(sorted(parse_query(query, _takes(path), others=True).items()))
    except BadRequest:
        return query


def starting_page(path: str, phase: str, refresh: int) -> str:
    """The page at ``path`` while the service starts (store not open yet), doing what ``phase`` says."""
    return _render("error.html", root="./" if path in ("/", "/status") else "../", refresh=refresh,
                   title="Starting", message=f"The service is starting ({phase}); this page tries again every "
                                             f"{refresh} s.")


class StatusBoard:
    """The pages, read through ``api`` (its connection, its turn, its 503s)."""

    def __init__(self, api: ReadApi) -> None:
        self._api = api

    @property
    def max_hours(self) -> int:
        """The most ``?hours=`` a service page takes: MAX_CHART_BUCKETS, and no more than bucket rows are kept."""
        return max(1, min(self._api.max_hours, MAX_CHART_BUCKETS * self._api.bucket_minutes // 60))

    def page(self, path: str, query: str) -> Page | None:
        """(status, HTML) of a GET of ``path``, None for a path that is not the board's (a 404 for the caller)."""
        if not is_page(path):
            return None
        if path in ("/", "/status"):
            root = "./"
            render: Callable[[dict[str, str]], str] = self._index
        else:
            name = unquote(path[len(_SERVICES):])
            root = "../"
            if name not in self._api.names:
                return 404, self._unknown(name)
            render = partial(self._service, name)
        try:
            params = parse_query(query, _takes(path), others=True)
            _refresh(params)  # checked before the store is read
            return 200, render(params)
        except BadRequest as exc:
            return exc.status, _render("error.html", root=root, refresh=None, title="Bad request", message=str(exc))
        except Unavailable as exc:
            return 503, _render("error.html", root=root, refresh=REFRESH, title="Unavailable",
                                message=f"{exc}; this page tries again every {REFRESH} s.")

    # GET / -----------------------------------------------------------------------------------------------

    def _index(self, params: dict[str, str]) -> str:
        hours = min(INDEX_HOURS, self._api.max_hours)
        spark = {"hours": hours, "bucket_minutes": self._api.bucket_minutes}  # what _sparkline says of the series

        # Every service's buckets in one read: a series read per service (its rows made dicts, their times parsed
        # twice) made the page of 330 services 0.67 s, 0.29 s now (bench/README.md, scale_bench.py --reads).
        def reads(store: Store) -> tuple[dict[str, Any], list[tuple[datetime, str]], Counts, Reopenings]:
            services = self._api.services(store, {})
            starts = self._starts(services["now"], hours)
            reopened = store.reopenings_of([s["incident"]["id"] for s in services["services"] if s["incident"]],
                                           parse_iso(services["now"]))
            return services, starts, store.bucket_counts_of(
                self._api.names, starts[0][0], starts[-1][0] + timedelta(minutes=self._api.bucket_minutes)), reopened

        services, starts, counts, reopened = self._api.read(reads)
        now = parse_iso(services["now"])
        refresh = _refresh(params)
        links = _links(refresh, "")
        rows = []
        for state in services["services"]:
            grid = _grid(starts, counts[state["service"]])
            rows.append({**_describe(state, now, reopened),
                         "href": "services/" + quote(state["service"], safe="") + links["keep"],
                         "spark": _sparkline(state["service"], grid, spark, state["baseline"])})
        return _render("index.html", root="./", refresh=refresh, **links, now=services["now"], rows=rows,
                       incidents=sum(s["health"] == "incident" for s in services["services"]),
                       warming=sum(s["health"] == "warming_up" for s in services["services"]),
                       no_data=sum(s["health"] == "no_data" for s in services["services"]),
                       bucket_minutes=services["bucket_minutes"])

    # GET /services/NAME ----------------------------------------------------------------------------------

    def _service(self, name: str, params: dict[str, str]) -> str:
        def reads(store: Store) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], Reopenings]:
            series = self._api.series(name, store, params, max_hours=self.max_hours)  # checks ?hours=
            now = parse_iso(series["now"])
            since = min(self._api.window(now, series["hours"])[0], now - DEFAULT_SINCE)
            state = self._api.state(store, name, now)
            # The open incident's re-openings in the same read: it is listed (the latest opened) but in odd data.
            incidents, reopened = self._api.incidents_reopened(
                store, {"service": name, "since": since.isoformat(), "limit": str(MAX_INCIDENTS)},
                [state["incident"]["id"]] if state["incident"] else [])
            return series, state, incidents, reopened

        series, state, incidents, reopened = self._api.read(reads)
        now = parse_iso(series["now"])
        hours = series["hours"]
        grid = _grid(self._starts(series["now"], hours), {b["start"]: (b["posts"], b["complaints"])
                                                          for b in series["buckets"]})
        listed = [_listed(i, now, reopened.get(i["id"], [])) for i in incidents["incidents"]]
        refresh = _refresh(params)
        return _render("service.html", root="../", refresh=refresh, **_links(refresh, f"hours={hours}"),
                       json_path=series_path(name), json_query=f"?hours={hours}", now=series["now"], hours=hours,
                       hour_choices=[h for h in HOUR_CHOICES if h <= self.max_hours],
                       state=_describe(state, now, reopened), chart=_chart(name, grid, series, listed, now),
                       numbers=[b for b in reversed(grid) if b.posts or b.complaints], incidents=listed,
                       since=incidents["since"], truncated=incidents["truncated"],
                       bucket_minutes=series["bucket_minutes"])

    def _unknown(self, name: str) -> str:
        near = closest(name, self._api.names)
        return _render("error.html", root="../", refresh=None, title="No such service",
                       message=f"No service named “{_clip(escape_controls(name))}”.", near=near,
                       near_href=quote(near, safe="") if near else None)

    def _starts(self, now: str, hours: int) -> list[tuple[datetime, str]]:
        """The start of each bucket of a series of ``hours`` to ``now``, oldest first, and as the store writes it."""
        start, current = self._api.window(parse_iso(now), hours)
        step = timedelta(minutes=self._api.bucket_minutes)
        return [(start + i * step, iso(start + i * step)) for i in range((current - start) // step + 1)]


def _grid(starts: list[tuple[datetime, str]], counts: Mapping[str, tuple[int, int]]) -> list[Bucket]:
    """Every bucket on the grid, oldest first: one with no row counted nothing (docs/api.md). ``counts``: (posts,
    complaints) by the bucket's start as the store writes it (iso), which the read API answers too."""
    return [Bucket(at, *counts.get(key, (0, 0))) for at, key in starts]


@dataclass(frozen=True)
class Bucket:
    start: datetime
    posts: int
    complaints: int


@dataclass(frozen=True)
class Line:
    css: str
    points: str


@dataclass(frozen=True)
class Shape:
    """A rect (an incident's span) or a line (an axis, the baseline), and a text label, all in viewBox units."""

    kind: str
    css: str
    x: float
    y: float
    x2: float = 0.0
    y2: float = 0.0
    text: str = ""
    anchor: str = "start"


@dataclass(frozen=True)
class Chart:
    css: str
    width: int
    height: int
    label: str  # the numbers, for the <title> and aria-label
    lines: tuple[Line, ...]
    shapes: tuple[Shape, ...] = ()


def _scale(values: list[int], left: float, top: float, width: float, height: float, most: float) -> str:
    """``values`` as the points of a polyline, one per bucket, spread evenly over the box."""
    step = width / (len(values) - 1) if len(values) > 1 else 0.0
    return " ".join(f"{left + (i * step if len(values) > 1 else width / 2):.1f},{top + height - v / most * height:.1f}"
                    for i, v in enumerate(values))


def _sparkline(name: str, grid: list[Bucket], series: dict[str, Any], baseline: float | None) -> Chart:
    width, height, pad = 240, 48, 3.0
    values = [b.complaints for b in grid]
    most = max([*values, baseline or 0, 1])
    shapes = []
    if baseline is not None:
        y = pad + (height - 2 * pad) * (1 - max(baseline, 0.0) / most)
        shapes.append(Shape("line", "baseline", 0, y, width, y))
    label = (f"{name}: complaints per {series['bucket_minutes']}-minute bucket over the last {series['hours']} h, "
             f"{counted(len(grid), 'bucket')} from {_when(grid[0].start)}: {_peak(grid)}, {grid[-1].complaints} so far "
             "in the bucket in progress" + (f"; usual {baseline:g} per bucket" if baseline is not None else ""))
    return Chart("spark", width, height, label,
                 (Line("complaints", _scale(values, 0, pad, width, height - 2 * pad, most)),), tuple(shapes))


def _chart(name: str, grid: list[Bucket], series: dict[str, Any], incidents: list[dict[str, Any]],
           now: datetime) -> Chart:
    width, height, left, right, top, bottom = 720, 240, 40, 8, 10, 26
    box_w, box_h = width - left - right, height - top - bottom
    posts, complaints = [b.posts for b in grid], [b.complaints for b in grid]
    most = max([*posts, *complaints, 1])
    first, last = grid[0].start, grid[-1].start
    span = (last - first).total_seconds() or 1.0

    def x_of(at: datetime) -> float:
        return left + min(max((at - first).total_seconds() / span, 0.0), 1.0) * box_w

    shapes = [Shape("line", "axis", left, top + box_h, left + box_w, top + box_h),
              Shape("line", "grid", left, top, left + box_w, top),
              Shape("text", "tick", left - 4, top + 4, text=str(most), anchor="end"),
              Shape("text", "tick", left - 4, top + box_h + 4, text="0", anchor="end"),
              Shape("text", "tick", left, height - 6, text=_when(first)),
              Shape("text", "tick", left + box_w, height - 6, text=_when(last), anchor="end")]
    shaded = 0
    for incident in incidents:  # our incidents' spans, under the lines
        drawn = [(opened, ended) for opened, ended in incident["spans"] if ended >= first and opened <= now]
        for opened, ended in drawn:
            x = x_of(opened)
            shapes.insert(0, Shape("rect", "incident", x, top, max(x_of(ended) - x, 2.0), box_h))
        shaded += bool(drawn)
    # The incidents drawn, not those listed: the list reaches back a week at least, past a chart of a few hours.
    label = (f"{name}: posts and complaints per {series['bucket_minutes']}-minute bucket, "
             f"{counted(len(grid), 'bucket')} from {_when(first)} to {_when(now)}: {counted(sum(posts), 'post')}, "
             f"{_peak(grid)}; "
             f"{counted(shaded, 'incident')} shown shaded")
    return Chart("chart", width, height, label,
                 (Line("posts", _scale(posts, left, top, box_w, box_h, most)),
                  Line("complaints", _scale(complaints, left, top, box_w, box_h, most))), tuple(shapes))


def _peak(grid: list[Bucket]) -> str:
    peak = max(grid, key=lambda b: b.complaints)  # the earliest of equals
    if not peak.complaints:
        return "no complaints"
    return (f"{counted(sum(b.complaints for b in grid), 'complaint')} in all, at most {peak.complaints} in a bucket "
            f"({_when(peak.start)})")


def _gap(incident: Mapping[str, Any]) -> UnscoredGap | None:
    """An incident's resolved_after_gap (of /api/v1/incidents, or a service's recently_resolved) as an UnscoredGap."""
    after = incident["resolved_after_gap"]
    if not (after and incident["resolved_at"]):
        return None
    start = parse_iso(after["from"])
    ended_from = after.get("ended_from")  # one an older miner's API gave without it: the gap's start
    return UnscoredGap(start, parse_iso(after["to"]), parse_iso(ended_from) if ended_from else start)


def _listed(incident: dict[str, Any], now: datetime, reopenings: list[tuple[datetime | None, datetime]]
            ) -> dict[str, Any]:
    """An incident of /api/v1/incidents as the service page lists and charts it, saying of its end and re-openings
    what its alerts say (miner.alerts.content): one miner closed itself was not seen to end, and one resolved after
    miner's own downtime (longer than detector.max_fill_hours) ended at some time from its ended_from to the gap's
    end, unseen: its resolved_at is when miner scored again, and resolved minus opened ("19 h 15 min" for a
    30-minute outage) no duration of it."""
    opened = parse_iso(incident["opened_at"])
    resolved = parse_iso(incident["resolved_at"]) if incident["resolved_at"] else None
    gap = _gap(incident)
    notes = []
    if gap:
        notes.append(("Resolved after a gap:", gap_text(gap)))
    if incident["closed_untracked"] and resolved:
        notes.append(("Closed, not seen to end:", incident["closed_untracked"]))
    if reopenings:
        notes.append(("Re-opened", reopen_text(reopenings[-1][1], reopenings[-1][0])))
    # Shaded while open: not between a resolve and the re-opening after it (quiet), nor in a gap it ended in, unseen.
    cuts = [(r, at) for r, at in reopenings if r is not None]
    ends = [gap.ended_from if gap else resolved or now]
    spans = [(start, end) for start, end in zip([opened, *(at for _, at in cuts)], [*(r for r, _ in cuts), *ends],
                                                 strict=True) if end >= start]
    lasted = gap_duration(opened, gap) if gap else duration_text(((resolved or now) - opened).total_seconds())
    # Its end came unseen at some time from ended_from to the gap's end.
    return {**incident, "ended_from": iso(gap.ended_from) if gap else None, "ended_by": iso(gap.end) if gap else None,
            "lasted": lasted, "notes": notes, "spans": spans,
            "official_link": incident["official"]["url"] if incident["official"] else None}


def _describe(state: dict[str, Any], now: datetime, reopenings: Reopenings) -> dict[str, Any]:
    """A service's entry of /api/v1/services, and what the page says about it besides: an open incident that came
    back after a resolve says when, as its alert does."""
    incident = state["incident"]
    last = reopenings.get(incident["id"], [])[-1:] if incident else []
    done = state["recently_resolved"]
    gap = _gap(done) if done else None
    return {"s": state,
            "open_for": duration_text((now - parse_iso(incident["opened_at"])).total_seconds()) if incident else None,
            "reopened": reopen_text(last[0][1], last[0][0]) if last else None,
            "resolved_lasted": None if not done else gap_duration(parse_iso(done["opened_at"]), gap) if gap
            else duration_text((parse_iso(done["resolved_at"]) - parse_iso(done["opened_at"])).total_seconds()),
            "resolved_gap": gap,
            "official_link": state["official"]["url"] if state["official"] else None}

"""One small PNG per incident: complaints per bucket against the detector's baseline and alert threshold.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no global backend state), so it works on machines
without a display. :func:`incident_chart` draws on one long-lived thread of its own, whichever thread asks.
"""

from __future__ import annotations

import io
import itertools
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from miner.timeutil import parse_iso

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from miner.alerts.content import IncidentView

_RED = "#c62828"
_GREEN = "#2e7d32"
_BLUE = "#1f4e79"
_BAND = "#90a4ae"
_GREY = "#546e7a"
_PROVIDER = "#6a1b9a"  # the status page's marks, dotted


# matplotlib keeps each thread's fonts open in a cache keyed by thread id (2 font files, DejaVuSans and
# LastResortHE), and the cache outlives the thread: the alert job's thread is a new one after every reload, so the
# service held 2 more fds per reload, up to the cache's 64 entries. Drawing every chart on this one thread keeps
# one thread's fonts open, however many threads ask. It is made on first use and lives as long as the process.
_renderer: ThreadPoolExecutor | None = None
_renderer_lock = threading.Lock()


def _chart_thread() -> ThreadPoolExecutor:
    global _renderer
    with _renderer_lock:
        if _renderer is None:
            _renderer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="miner-charts")
        return _renderer


def incident_chart(view: IncidentView, as_of: datetime) -> bytes:
    """PNG bytes (about 640x200 px) of the incident's complaint series, opening and official start marked. Drawn on
    the charts' own thread (see ``_renderer``); a failure there is raised here."""
    return _chart_thread().submit(_png, view, as_of).result()


def _png(view: IncidentView, as_of: datetime) -> bytes:
    buf = io.BytesIO()
    incident_figure(view, as_of).savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def in_incident(bucket_start: datetime, width: timedelta, view: IncidentView) -> bool:
    """Whether the bucket is one of the incident's: opened_at and resolved_at are the ends of the buckets that
    opened and resolved it (the moments the detector knew), so the bucket ending at opened_at is the first. Those
    after a resolve that a re-opening ended, up to the one ending at the re-opening, are not: they were quiet. One
    resolved after a gap in scoring (view.unscored) ends at the earliest its end may have come (the gap's start, or
    the first quiet bucket scored before it that the resolve counted), as on the status board: it ended at some time
    from then, unseen, and the buckets after (posts collected late are counted in the gap's) up to resolved_at were
    no part of what was seen."""
    end = bucket_start + width
    if any(resolved < end < reopened for resolved, reopened in view.gaps):
        return False
    last = view.unscored.ended_from if view.unscored is not None else view.resolved_at
    return view.opened_at <= end and (last is None or end <= last)


def _thresholds(rows: list[dict[str, Any]]) -> list[float]:
    """Each bucket's count from which the detector took it for anomalous, as it stored it (BucketScore.threshold:
    z_open, min_count and min_ratio; an incident opens once persist_k of persist_n are), NaN where it stored none: in
    its warm-up, where no count is anomalous, and in buckets scored before miner stored it. The band went to
    ``upper`` (z_open alone): a quiet service's bars rose above it with fewer complaints than min_count, never
    anomalous, as if the detector had missed an outage."""
    return [math.nan if r.get("threshold") is None else float(r["threshold"]) for r in rows]


def _steps(times: list[datetime], limits: list[float], width: timedelta) -> tuple[list[datetime], list[float]]:
    """The thresholds as a step line over the bars, each level from a bucket's start to its end, as the detector
    tests each bucket's count against its own: a run of buckets ends at its last one's end, then NaN (a gap) up to the
    next bucket with a threshold. Drawn from bucket start to bucket start, the last bar had none, and a run's level
    went on across the hours the service was not scored."""
    xs: list[datetime] = []
    ys: list[float] = []
    for i, (start, limit) in enumerate(zip(times, limits, strict=True)):
        if math.isnan(limit):
            continue
        xs.append(start)
        ys.append(limit)
        end = start + width
        if i + 1 == len(times) or times[i + 1] != end or math.isnan(limits[i + 1]):
            xs += [end, end]
            ys += [limit, math.nan]
    return xs, ys


def _count_label(value: float, _pos: object = None) -> str:
    """``950``, ``12k``, ``1.5M``: a tick label short enough for the chart's left margin."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.0f}"


def _bucket_width(times: list[datetime], view: IncidentView) -> timedelta:
    """The detector's bucket width, read off the series: its smallest step (buckets are missing where the service
    was not running, so the first step can be hours); with one bucket, the opening is most likely its end."""
    steps = [b - a for a, b in itertools.pairwise(times) if b > a]
    if steps:
        return min(steps)
    if timedelta(0) < view.opened_at - times[0] <= timedelta(days=1):
        return view.opened_at - times[0]
    return timedelta(minutes=5)


def incident_figure(view: IncidentView, as_of: datetime) -> Figure:
    """The chart of :func:`incident_chart` as a matplotlib Figure on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    rows = [r for r in view.series if parse_iso(r["bucket_start"]) <= as_of]
    times = [parse_iso(r["bucket_start"]) for r in rows]
    counts = [float(r["complaints"] or 0) for r in rows]
    fig = Figure(figsize=(6.4, 2.0), dpi=100)
    FigureCanvasAgg(fig)
    ax: Any = fig.add_axes(  # Any: matplotlib's stubs reject datetimes it handles at runtime
        (0.085, 0.16, 0.895, 0.70))
    if times:
        width = _bucket_width(times, view)
        limits = _thresholds(rows)
        if any(not math.isnan(v) for v in limits):
            edges, tops = _steps(times, limits, width)
            ax.fill_between(edges, 0.0, tops, step="post", color=_BAND, alpha=0.25, linewidth=0)
            ax.step(edges, tops, where="post", color=_GREY, linewidth=0.8, label="alert threshold")
        based = [(t, float(r["baseline"])) for t, r in zip(times, rows, strict=True) if r["baseline"] is not None]
        if based:
            bt, base = zip(*based, strict=True)
            ax.plot(bt, base, color=_BAND, linewidth=1.0, linestyle="--", label="baseline")
        colors = [_RED if in_incident(t, width, view) else _BLUE for t in times]
        ax.bar(times, counts, width=width, align="edge", color=colors, linewidth=0, label="complaints")
        top = max([*counts, *(v for v in limits if not math.isnan(v)), 1.0]) * 1.2  # headroom for the labels
        ax.set_ylim(0, top)
        marks = [(view.opened_at, "opened", _RED)]
        if view.unscored is not None:
            # Its end came unseen, from ended_from: resolved_at is only when miner scored again, hours after, maybe.
            # The gap is hatched and ended_from marked, as the status board says "end not seen" and marks no end.
            ax.axvspan(view.unscored.start, view.unscored.end, facecolor="none", edgecolor="#cfd8dc", hatch="///",
                       linewidth=0, zorder=0, label="not scored")
            marks.append((view.unscored.ended_from, "end not seen", _GREY))
        elif view.resolved_at is not None:
            marks.append((view.resolved_at, "resolved", _GREEN))
        if view.official is not None:
            # When the status page said so, and the start the provider gives the impact where it dates it otherwise.
            said = [(view.official.posted_at, "status page")]
            if view.official.started_apart:
                said.append((view.official.started_at, "provider's start"))
            marks += [(parse_iso(at), label, _PROVIDER) for at, label in said if times[0] <= parse_iso(at) <= as_of]
        for i, (at, label, color) in enumerate(sorted(marks)):
            ax.axvline(at, color=color, linewidth=1.1, linestyle=":" if color == _PROVIDER else "-")
            ax.annotate(label, (at, 0.97 - 0.09 * i), xycoords=("data", "axes fraction"), xytext=(-3, 0),
                        textcoords="offset points", fontsize=7, color=color, ha="right", va="top",
                        bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8})
        ax.set_xlim(times[0], times[-1] + width)
        # Above the plot, so it never hides the bars or the opened/resolved labels.
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), fontsize=7, frameon=False, ncol=4, borderaxespad=0.2)
        # The emails give every time in UTC; so does the axis, whatever a matplotlibrc says, and it says so.
        locator = AutoDateLocator(tz=UTC, minticks=3, maxticks=9)  # type: ignore[no-untyped-call]
        ax.xaxis.set_major_locator(locator)
        # Concise labels switch from hours to days by themselves when an incident lasted days.
        ax.xaxis.set_major_formatter(ConciseDateFormatter(  # type: ignore[no-untyped-call]
            locator, tz=UTC, show_offset=False))
        ax.annotate("times in UTC", (1.0, 1.0), xycoords="axes fraction", xytext=(0, 2), textcoords="offset points",
                    fontsize=7, color="#607d8b", ha="right", va="bottom")
    else:
        ax.text(0.5, 0.5, "no bucket data yet", ha="center", va="center", transform=ax.transAxes, fontsize=9)
        ax.set_xticks([])  # not an hour axis of 1 January 1970
    ax.tick_params(labelsize=7, length=2)
    ax.set_ylabel("complaints", fontsize=7)
    # Counts are whole posts; matplotlib would label a quiet chart 0.2, 0.4 and a huge one "1e6" above the axis,
    # under the legend. Short labels fit the narrow margin.
    ax.yaxis.set_major_locator(MaxNLocator(nbins=5, integer=True, min_n_ticks=2))
    ax.yaxis.set_major_formatter(FuncFormatter(_count_label))
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(axis="y", color="#e0e0e0", linewidth=0.5)
    ax.set_axisbelow(True)
    return fig

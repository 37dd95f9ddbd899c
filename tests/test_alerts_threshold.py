"""The alert chart's band ends at the count the detector needs to take a bucket for anomalous (z_open, min_count and
min_ratio together), as the detector stored it: a quiet service's buckets above ``upper`` but under min_count sit
under it. Run through the real pipeline over user reports, into a real SQLite store, out to a real SMTP server."""

from __future__ import annotations

import math
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from smtp_server import SmtpServer, smtp_server  # noqa: F401  (fixture)
from streams import T0 as STREAM_T0
from streams import outage_reports, warmed_pipeline
from test_alerts_support import BUCKET, T0, open_incident, settings

from miner.alerts import dispatch, plan_notifications
from miner.alerts.charts import incident_figure
from miner.alerts.content import IncidentView, incident_view
from miner.alerts.settings import RouteSettings, SmtpSettings
from miner.records import Post
from miner.store import Store
from miner.store.migrations import MIGRATIONS, apply_migrations
from miner.timeutil import iso

CONFIG = '[[services]]\nname = "Foonet"\n[detector]\nbucket_minutes = 15\nwarmup_hours = 2\n'
WIDTH = timedelta(minutes=15)
START = STREAM_T0 + timedelta(hours=3)  # warmed_pipeline's detector has scored up to here, on no complaints


def _drawn(view: IncidentView, as_of: datetime) -> dict[datetime, float]:
    """The chart's "alert threshold" line: its level at each bar's start (NaN where it draws none)."""
    from matplotlib.container import BarContainer
    from matplotlib.dates import num2date

    ax: Any = incident_figure(view, as_of).axes[0]
    [line] = [ln for ln in ax.get_lines() if ln.get_label() == "alert threshold"]
    [bars] = [c for c in ax.containers if isinstance(c, BarContainer)]
    levels: dict[datetime, float] = {}
    for x, y in zip(line.get_xdata(), line.get_ydata(), strict=True):
        levels.setdefault(x, float(y))  # a run's end holds its level, then NaN: the first is the bar's
    return {num2date(b.get_x()): levels.get(num2date(b.get_x()), math.nan) for b in bars}


def _four_people(bucket: datetime) -> list[Post]:
    """Four complaints in the bucket: above upper on a service that had none, under min_count (5)."""
    return [Post("reports", f"{bucket.timestamp()}-{who}", "Foonet is down", bucket + timedelta(minutes=2 + who),
                 author_hash=f"{who:016x}", services=("Foonet",)) for who in range(4)]


def test_a_quiet_services_buckets_under_min_count_are_drawn_under_the_threshold(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    pipe = warmed_pipeline(CONFIG, store)
    quiet = [START, START + WIDTH]
    pipe.ingest([p for b in quiet for p in _four_people(b)], START + 2 * WIDTH)
    pipe.classify_pending(START + 2 * WIDTH)
    assert not pipe.detect(START + 2 * WIDTH).opened  # four complaints are no outage here
    outage = START + 2 * WIDTH
    now = outage + 2 * WIDTH
    pipe.ingest(outage_reports("Foonet", outage, now), now)
    pipe.classify_pending(now)
    assert pipe.detect(now).opened
    stored = {r["bucket_start"]: r for r in store.series("Foonet", START - timedelta(hours=3), now)}
    for b in quiet:
        row = stored[b.isoformat(timespec="seconds")]
        # What the chart drew its band to before: 4 complaints rose above it, as if the detector had missed them.
        assert row["complaints"] == 4 and row["upper"] < 4 < row["threshold"]

    view = incident_view(store, settings(), 1, now)
    assert view is not None
    drawn = _drawn(view, now)
    counts = {datetime.fromisoformat(r["bucket_start"]): r["complaints"] for r in view.series}
    assert [b for b, level in drawn.items() if counts[b] >= level] == [outage, outage + WIDTH]
    assert all(counts[b] < drawn[b] == 5 for b in quiet)  # min_count's 5, not upper's 3.1 to 3.5
    # Each bar's level is the one the detector stored; the buckets of the warm-up, where no count was anomalous,
    # have none, and the chart draws none over them.
    kept = {datetime.fromisoformat(r["bucket_start"]): r["threshold"] for r in view.series}
    warming = [b for b in drawn if kept[b] is None]
    assert warming and all(b < STREAM_T0 + timedelta(hours=2) for b in warming)
    assert all(math.isnan(drawn[b]) if kept[b] is None else drawn[b] == kept[b] for b in drawn)

    # The mail says the same in its two parts, and the chart's alt text names what it draws.
    route = RouteSettings(name="oncall", email=("oncall@example.org",))
    smtp = SmtpSettings(host="127.0.0.1", port=smtp_server.port, security="none", timeout=5)
    cfg = settings(routes=(route,), webhooks=(), smtp=smtp, group_wait=0.0)
    plan_notifications(store, cfg, now)
    assert dispatch(store, cfg, now, worker_id="w").sent == 1
    msg = smtp_server.inbox.messages[-1]
    text = " ".join(msg.get_body(("plain",)).get_content().split())
    html = " ".join(msg.get_body(("html",)).get_content().split())
    assert "Complaints rose above the alert threshold." in text
    assert "Complaints rose above the alert threshold." in html
    assert "expected range" not in text and "expected range" not in html
    assert 'alt="Complaints per bucket for Foonet against the baseline and the alert threshold"' in html
    assert any(part.get_content_type() == "image/png" for part in msg.walk())


def test_buckets_scored_before_the_store_kept_thresholds_get_no_band(tmp_path: Path) -> None:
    # Their upper alone is no threshold: a band drawn to it would say again what the fix takes back. Nor is one
    # worked out at the upgrade from the settings of the day, which may not be those they were scored with.
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path, isolation_level=None) as conn:
        apply_migrations(conn, [m for m in MIGRATIONS if m.id < "0034"])
        conn.executemany("INSERT INTO buckets (service, bucket_start, posts, complaints, score, baseline, upper) "
                         "VALUES ('WhatsApp', ?, 4, 4, 0.5, 0.2, 3.7)",
                         [(iso(T0 - timedelta(hours=2) + i * BUCKET),) for i in range(24)])
    conn.close()
    store = Store.open(path)
    try:
        iid = open_incident(store, "WhatsApp", T0, posts=False, series=False)
        view = incident_view(store, settings(), iid, T0 + BUCKET)
        assert view is not None and len(view.series) == 24
        assert {r["threshold"] for r in view.series} == {None}
        ax: Any = incident_figure(view, T0 + BUCKET).axes[0]
        assert [ln.get_label() for ln in ax.get_lines() if not ln.get_label().startswith("_")] == ["baseline"]
        assert len(ax.collections) == 0  # no band
    finally:
        store.close()

"""Test data for the alert tests, written through the Store's own methods into a real SQLite file.

No tests live here; the alert test modules import these builders.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from miner.alerts import dispatch
from miner.alerts.settings import AlertSettings, RouteSettings, WebhookSettings
from miner.records import OfficialIncident, Post, Prediction
from miner.store import Store

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
BUCKET = timedelta(minutes=5)
EVIL = "<script>alert(1)</script> WhatsApp down \x1b[31mred\x07 \u202eevil\u202c again"

TEXTS = [
    "WhatsApp is down for me, messages stuck on one tick since 12:40",
    "is whatsapp down? can't send anything in Kampala",
    EVIL,
    "WhatsApp web won't connect, phone says connecting...",
    "whatsapp calls dropping every minute, anyone else?",
    "Can't log in to WhatsApp, verification code never arrives",
]


def store_text(store: Store) -> str:
    """Every value of every table, as one text: to look for what must never be stored."""
    names = [r["name"] for r in store.database.rows("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return "\n".join(json.dumps(store.database.rows(f'SELECT * FROM "{name}"'), default=str) for name in names)


def settings(**overrides: object) -> AlertSettings:
    route = RouteSettings(name="oncall", email=("oncall@example.org",), webhooks=("hook",), digest="0 * * * *")
    base: dict[str, object] = {
        "from_addr": "miner <miner@example.org>",
        "routes": (route,),
        "webhooks": (WebhookSettings(name="hook", url_env="MINER_TEST_HOOK"),),
        "group_wait": 30.0,
        "retry_base": 10.0,
        "retry_max": 60.0,
        "lease_seconds": 60.0,
    }
    base.update(overrides)
    return AlertSettings(**base)  # type: ignore[arg-type]


def seed_series(store: Store, service: str, start: datetime, end: datetime, spike_at: datetime) -> None:
    """Buckets with a baseline band and a spike, as the detector would have stored them."""
    steps = []
    t = start
    while t < end:
        spike = spike_at <= t < spike_at + timedelta(minutes=45)
        steps.append((t, 9.0 if spike else 0.5, 2.0, 5.0, 5.0))
        t += BUCKET
    store.save_detector_step(service, end, "{}", steps, end)
    # Counts come from classified posts in the service; the chart only needs their numbers, set directly here.
    counts = {b: (30 if spike_at <= b < spike_at + timedelta(minutes=45) else 2) for b, *_ in steps}
    with store.database.transaction() as conn:
        for b, complaints in counts.items():
            conn.execute("UPDATE buckets SET posts = ?, complaints = ? WHERE service = ? AND bucket_start = ?",
                         (complaints + 3, complaints, service, b.isoformat(timespec="seconds")))


def seed_posts(store: Store, service: str, at: datetime, texts: list[str] = TEXTS) -> None:
    posts = [Post(source="mastodon:social", external_id=f"{service}-{at.timestamp()}-{i}", text=text,
                  created_at=at + timedelta(minutes=i), url=f"https://social.example/@x/{i}" if i % 2 == 0 else None,
                  services=(service,)) for i, text in enumerate(texts)]
    store.insert_posts(posts, at)
    todo = store.posts_to_classify(1000)
    symptoms = ["messaging", "connectivity", "general", "website", "calls", "login"]
    store.save_classifications([(p.id, Prediction(0.9 - 0.01 * i, True, symptoms[i % len(symptoms)]))
                                for i, p in enumerate(todo)], "test-model", at)


def open_incident(store: Store, service: str, at: datetime, *, posts: bool = True, series: bool = True) -> int:
    if series:
        seed_series(store, service, at - timedelta(hours=6), at + timedelta(hours=2), at - BUCKET)
    if posts:
        seed_posts(store, service, at - BUCKET)
    return store.open_incident(
        service, at,
        {"peak_complaints": 30, "peak_score": 8.4, "baseline": 2.0, "total_complaints": 95,
         "symptoms": {"messaging": 50, "connectivity": 30, "login": 15}},
        {"z": 8.4, "bucket": at.isoformat(), "detector_extra": [1, 2]},
    )


def add_official(store: Store, service: str, started: datetime, status: str = "investigating") -> None:
    from miner.config import SourceConfig
    from miner.records import FetchResult

    store.sync_sources([SourceConfig(name="status:wa", type="statuspage", url="https://status.example.com")])
    inc = OfficialIncident(source="status:wa", external_id="abc", service=service,
                           title="Some users are unable to send messages", status=status,
                           started_at=started, updated_at=started, impact="major",
                           url="https://status.example.com/incidents/abc")
    store.save_fetch("status:wa", FetchResult(incidents=[inc]), started, started + timedelta(minutes=5))


def resolve(store: Store, incident_id: int, at: datetime) -> None:
    store.update_incident(incident_id, at, {"status": "resolved", "resolved_at": at}, kind="resolve",
                          details={"quiet_minutes": 60})


def failing_source(store: Store, at: datetime) -> None:
    from miner.config import SourceConfig

    store.sync_sources([SourceConfig(name="reddit-ug", type="reddit", query="airtel")])
    store.record_poll_failure("reddit-ug", "HTTP 429 <too many> requests\x00", at, at + timedelta(minutes=5))


def dispatch_in_two_threads(path: Path, cfg: AlertSettings, times: Sequence[datetime], rounds: int) -> None:
    """Two dispatchers, each on its own connection to the store at ``path``, started together at each of
    ``times`` and dispatching ``rounds`` times there: a race for the same due messages. Re-raises what failed."""
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def worker(name: str) -> None:
        store = Store.open(path)
        try:
            for now in times:
                start.wait()
                for _ in range(rounds):
                    dispatch(store, cfg, now, worker_id=name)
        except BaseException as exc:
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]

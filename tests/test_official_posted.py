"""A provider's incident has two times: when it says the impact began (started_at, which it may backdate) and when
it posted it (posted_at). Our lead is measured to the post."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fakeserver import FakeServer, Reply
from streams import ReportsOnly, outage_reports
from test_alerts_support import settings

from miner.alerts.render import render_alert
from miner.alerts.webhooks import json_payload
from miner.collectors import Poller
from miner.config import parse_config
from miner.pipeline import Pipeline
from miner.read_api import ReadApi
from miner.records import SourceState
from miner.store import Store
from miner.store.migrations import MIGRATIONS, apply_migrations
from miner.timeutil import parse_iso

# The statuspage fixture's "Incident with Actions" (p3k9d2m1x8qz), backdated: posted at 14:00 (its created_at and its
# first update's times, 14:01:12 in the fixture), its impact dated from 12:30 (its started_at, 14:01:12 there).
# Nothing else of the recorded shape is changed.
POSTED = datetime(2026, 11, 27, 14, 0, tzinfo=UTC)
IMPACT = datetime(2026, 11, 27, 12, 30, tzinfo=UTC)
CONFIG = """
[[services]]
name = "Foonet"

[detector]
bucket_minutes = 15
warmup_hours = 1
"""


def _backdated(server: FakeServer) -> bytes:
    answer = json.loads(server.fixture_bytes("statuspage/incidents.json"))
    actions = answer["incidents"][0]
    assert (actions["id"], actions["created_at"], actions["started_at"]) == (
        "p3k9d2m1x8qz", "2026-11-27T14:01:12.000Z", "2026-11-27T14:01:12.000Z")
    actions["created_at"] = "2026-11-27T14:00:00.000Z"
    actions["started_at"] = "2026-11-27T12:30:00.000Z"
    first = actions["incident_updates"][-1]
    for key in ("created_at", "updated_at", "display_at"):
        first[key] = "2026-11-27T14:00:00.000Z"
    return json.dumps(answer).encode()


def test_the_lead_on_a_backdated_provider_incident_is_measured_to_its_post(
        store: Store, server: FakeServer) -> None:
    # Complaints from 12:30; miner opens at 13:00 or so. The provider posts at 14:00 an incident it dates from 12:30:
    # miner was first, by an hour or more, where the lead to its start said it was 30 minutes behind the provider.
    server.serve("/api/v2/incidents.json", Reply(200, _backdated(server), content_type="application/json"))
    config = parse_config(CONFIG + f'[[sources]]\nname = "foo"\ntype = "statuspage"\nurl = "{server.url}"\n'
                          'services = ["Foonet"]\n')
    [source] = config.sources
    pipe = Pipeline(config, store, ReportsOnly())  # type: ignore[arg-type]
    for hours in range(4):
        pipe.detect(IMPACT - timedelta(hours=4 - hours))
    opened_by = IMPACT + timedelta(minutes=30)
    pipe.ingest(outage_reports("Foonet", IMPACT, opened_by), opened_by)
    pipe.classify_pending(opened_by)
    assert pipe.detect(opened_by).opened
    polled = POSTED + timedelta(minutes=25)  # after its 14:20 update
    with Poller.from_config(config) as poller:
        store.save_fetch(source.name, poller.poll(source, SourceState()), polled, polled)
    now = polled + timedelta(minutes=5)
    pipe.ingest(outage_reports("Foonet", opened_by, now), now)
    pipe.classify_pending(now)
    pipe.detect(now)

    [row] = store.incidents()
    official = store.official_incident_id("foo", "p3k9d2m1x8qz")
    assert official is not None and row["official_incident_id"] == official
    opened = parse_iso(row["opened_at"])
    assert IMPACT < opened < POSTED
    assert row["lead_time_minutes"] == (POSTED - opened) / timedelta(minutes=1) > 0  # we were first
    stored = store.official_incidents_by_id([official])[official]
    assert (stored["started_at"], stored["posted_at"]) == ("2026-11-27T12:30:00+00:00", "2026-11-27T14:00:00+00:00")

    cfg = settings()
    alert = render_alert(store, cfg, cfg.routes[0], "alert", [{"incident_id": row["id"], "kind": "open"}],
                         message_id="<lead@example.org>", now=now)
    lead = f"{round(row['lead_time_minutes'])} min" if row["lead_time_minutes"] < 60 else "1 h "
    for body in (" ".join(alert.text.split()), " ".join(alert.html.split())):
        # The post, and the provider's own start beside it; the lead ahead of the post.
        assert "posted 2026-11-27 14:00 UTC, impact from 2026-11-27 12:30 UTC" in body, body
        assert "before the provider posted it on its status page" in body and "after the provider" not in body
        assert lead in body
    [payload] = json_payload("alert", alert.incidents, route="oncall", message_id="m", now=now,
                             reminders=set())["incidents"]
    assert payload["lead_time_minutes"] == row["lead_time_minutes"]
    assert (payload["official"]["started_at"], payload["official"]["posted_at"]) == (
        "2026-11-27T12:30:00+00:00", "2026-11-27T14:00:00+00:00")
    answer = ReadApi(config, lambda: store, lambda: None, lambda: now).answer("/api/v1/incidents", "")
    assert answer is not None and answer[0] == 200
    [listed] = answer[1]["incidents"]
    assert listed["lead_time_minutes"] == row["lead_time_minutes"]
    assert (listed["official"]["started_at"], listed["official"]["posted_at"]) == (
        "2026-11-27T12:30:00+00:00", "2026-11-27T14:00:00+00:00")


def test_incidents_stored_before_the_upgrade_take_their_start_for_their_post(tmp_path: Path) -> None:
    # Migration 0038 on a store whose incidents have no post time yet: their start is what their lead was measured to.
    conn = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    apply_migrations(conn, [m for m in MIGRATIONS if m.id != "0038_official_posted"])
    conn.execute("INSERT INTO official_incidents (source, external_id, service, title, status, started_at, "
                 "updated_at, first_seen_at) VALUES ('s', 'x', 'Foonet', 't', 'resolved', "
                 "'2026-11-27T12:30:00+00:00', '2026-11-27T13:00:00+00:00', '2026-11-27T12:31:00+00:00')")
    assert apply_migrations(conn) == ["0038_official_posted"]
    assert conn.execute("SELECT posted_at FROM official_incidents").fetchone() == ("2026-11-27T12:30:00+00:00",)
    conn.close()

"""A provider's incident has two times: when it says the impact began (started_at, which it may backdate) and when
it posted it (posted_at). Our lead is measured to the post; a page watched two ways stores the same times whichever
source was polled first."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fakeserver import FakeServer, Reply
from streams import ReportsOnly, outage_reports
from test_alerts_support import settings

from miner.alerts.render import render_alert
from miner.alerts.webhooks import json_payload
from miner.collectors import CollectSettings, Poller
from miner.config import SourceConfig, parse_config
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


# The real Sauce Labs history feed (tests/fixtures/collectors/README.md) and its page's incidents.json, written in the
# fixture's shape for the feed's "2020-November-13 Service Incident" (1pjjyslhl9t7): the JSON fixture's first incident
# with the feed's page url and incident id, resolved, and these times: posted (created_at) at 06:53:30 PST, within
# the minute of its first update's stamp in the feed ("Nov 13, 06:53 PST", no seconds); its impact dated from 05:30 PST
# (started_at); its last update (updated_at) the feed entry's <updated> (07:10:42 PST), so that neither source's
# update is newer than the other's, the case where the first polled won.
SAUCE_PAGE = "https://status.us-west-1.saucelabs.com"
SAUCE_POSTED = "2020-11-13T14:53:00+00:00"
SAUCE_IMPACT = "2020-11-13T13:30:00+00:00"


def _sauce_json(server: FakeServer) -> bytes:
    answer = json.loads(server.fixture_bytes("statuspage/incidents.json"))
    answer["page"]["url"] = SAUCE_PAGE
    answer["incidents"] = answer["incidents"][:1]
    incident: dict[str, Any] = answer["incidents"][0]
    incident.update(id="1pjjyslhl9t7", status="resolved", created_at="2020-11-13T14:53:30.000Z",
                    started_at="2020-11-13T13:30:00.000Z", updated_at="2020-11-13T15:10:42.000Z",
                    resolved_at="2020-11-13T15:10:00.000Z")
    return json.dumps(answer).encode()


def _sauce_sources(server: FakeServer) -> tuple[SourceConfig, SourceConfig]:
    server.serve("/api/v2/incidents.json", Reply(200, _sauce_json(server), content_type="application/json"))
    server.serve_fixture("/history.atom", "status/saucelabs_us-west-1_history.atom",
                         content_type="application/atom+xml")
    return (SourceConfig("status:Sauce Labs", "statuspage", url=server.url, services=("Sauce Labs",)),
            SourceConfig("sauce-feed", "status_feed", url=f"{server.url}/history.atom", services=("Sauce Labs",)))


@pytest.mark.parametrize("feed_first", [False, True], ids=["json-then-feed", "feed-then-json"])
def test_a_page_watched_two_ways_keeps_the_providers_start_and_first_post_whichever_is_polled_first(
        server: FakeServer, store: Store, feed_first: bool) -> None:
    json_source, feed_source = _sauce_sources(server)
    order = (feed_source, json_source) if feed_first else (json_source, feed_source)
    now = datetime(2020, 11, 16, tzinfo=UTC)
    with Poller(CollectSettings(), hash_key=b"k") as poller:
        for source in (*order, *order):  # polled again: nothing moves
            store.save_fetch(source.name, poller.poll(source), now, now)
    [row] = [r for r in store.official_incidents("Sauce Labs", datetime(2020, 11, 1, tzinfo=UTC))
             if r["url"] == f"{SAUCE_PAGE}/incidents/1pjjyslhl9t7"]
    # The impact's start is the JSON's (the feed has only its updates); the post, the earlier of the two's.
    assert row["started_at"] == SAUCE_IMPACT
    assert row["posted_at"] == SAUCE_POSTED
    assert (row["status"], row["resolved_at"]) == ("resolved", "2020-11-13T15:10:00+00:00")
    [record] = [r for r in store.official_incident_records("Sauce Labs", datetime(2020, 11, 1, tzinfo=UTC))
                if r.external_id == row["external_id"]]
    assert (record.started_at, record.posted) == (parse_iso(SAUCE_IMPACT), parse_iso(SAUCE_POSTED))


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

"""A page watched two ways whose feed lags its JSON: `miner collect --once` of both against a real local server serving
the recorded Sauce Labs history feed and the statuspage JSON fixture, then the store's row. The feed's entries here
are undated, so the store dates what they say at the poll that read it; that poll time says when miner saw it, not
when the provider wrote it, so it is not newer than the JSON's dated update."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fakeserver import FakeServer, Reply

from miner.cli import main
from miner.collectors import CollectSettings, Poller
from miner.config import SourceConfig
from miner.store import Store

PAGE = "https://status.us-west-1.saucelabs.com"
CODE = "1pjjyslhl9t7"  # the feed's "2020-November-13 Service Incident"
RESOLVED = "2020-11-13T15:10:00+00:00"


def _json(server: FakeServer, status: str) -> bytes:
    """The statuspage fixture in the shape the page's JSON has for the feed's incident: its first incident with the
    page's url and the incident's id, its times the feed entry's (posted 06:53 PST, resolved 07:10); ``status``:
    as it read when resolved, else at its first update."""
    answer = json.loads(server.fixture_bytes("statuspage/incidents.json"))
    answer["page"]["url"] = PAGE
    answer["incidents"] = answer["incidents"][:1]
    incident: dict[str, Any] = answer["incidents"][0]
    resolved = status == "resolved"
    incident.update(id=CODE, status=status, created_at="2020-11-13T14:53:30.000Z",
                    started_at="2020-11-13T14:53:30.000Z",
                    updated_at="2020-11-13T15:10:42.000Z" if resolved else "2020-11-13T14:53:30.000Z",
                    resolved_at="2020-11-13T15:10:00.000Z" if resolved else None)
    return json.dumps(answer).encode()


def _feed(server: FakeServer, listed: bool) -> bytes:
    """The real feed, its entries without dates (a feed that gives none); ``listed``: with the incident's entry as it
    read before its "Monitoring" and "Resolved" updates (lagging the JSON), else without it (not in the feed yet)."""
    real = server.fixture_bytes("status/saucelabs_us-west-1_history.atom")
    undated = re.sub(rb"\s*<(published|updated)>[^<]*</\1>", b"", real.split(b"<entry>", 1)[1])
    head = real.split(b"<entry>", 1)[0]
    entries = [b"<entry>" + e for e in undated.split(b"<entry>")]
    [mine] = [n for n, e in enumerate(entries) if f"/incidents/{CODE}".encode() in e]
    if listed:
        entries[mine] = re.sub(rb"&lt;p&gt;&lt;small&gt;Nov &lt;var data-var='date'&gt;13.*?(?=&lt;p&gt;&lt;small&gt;"
                               rb"Nov &lt;var data-var='date'&gt;13&lt;/var&gt;, &lt;var data-var='time'&gt;06:53)",
                               b"", entries[mine], count=1, flags=re.S)
        assert b"Resolved" not in entries[mine] and b"Investigating" in entries[mine]
    else:
        del entries[mine]
    return head + b"".join(entries)


def _collect(tmp_path: Path, server: FakeServer, status: str, feed: bytes) -> dict[str, Any]:
    """Serve the JSON (``status``) and ``feed``, collect both sources once, and return the incident's row."""
    server.serve("/api/v2/incidents.json", Reply(200, _json(server, status), content_type="application/json"))
    server.serve("/history.atom", Reply(200, feed, content_type="application/atom+xml"))
    cfg = tmp_path / "miner.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "m.sqlite"}"\n\n[[services]]\nname = "Sauce Labs"\n\n'
                   f'[[sources]]\nname = "sauce-json"\ntype = "statuspage"\nurl = "{server.url}"\n'
                   'services = ["Sauce Labs"]\n\n'
                   f'[[sources]]\nname = "sauce-feed"\ntype = "status_feed"\nurl = "{server.url}/history.atom"\n'
                   'services = ["Sauce Labs"]\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["--config", str(cfg), "collect", "--once", "--all"])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(tmp_path / "m.sqlite") as conn:
        conn.row_factory = sqlite3.Row
        [row] = conn.execute("SELECT * FROM official_incidents WHERE url = ?", (f"{PAGE}/incidents/{CODE}",))
        return dict(row)


def test_a_lagging_undated_feed_does_not_reopen_the_incident_its_json_resolved(tmp_path: Path,
                                                                               server: FakeServer) -> None:
    # The JSON says resolved (07:10 PST); the feed, not listing it yet, then listing it undated as it read before its
    # resolution ("Investigating"). Its poll time made it newer than the JSON's dated resolution: the row went back to
    # investigating, open, and the JSON's next poll (still resolved at 07:10) did not bring it back, so a resolved
    # incident was open again in alerts, digests, the board and the API until the feed caught up.
    row = _collect(tmp_path, server, "resolved", _feed(server, listed=False))
    assert (row["source"], row["status"], row["resolved_at"]) == ("sauce-json", "resolved", RESOLVED)
    for _ in range(2):
        row = _collect(tmp_path, server, "resolved", _feed(server, listed=True))
        assert (row["status"], row["resolved_at"], row["updated_at"]) == ("resolved", RESOLVED,
                                                                         "2020-11-13T15:10:42+00:00")


def test_a_lagging_undated_feed_does_not_take_back_the_status_its_dated_json_moved_on_to(
        tmp_path: Path, server: FakeServer) -> None:
    # The JSON says identified (dated); the feed's entry, undated, still "Investigating": the poll time made it newer.
    row = _collect(tmp_path, server, "identified", _feed(server, listed=False))
    assert (row["status"], row["updated_at"]) == ("identified", "2020-11-13T14:53:30+00:00")
    row = _collect(tmp_path, server, "identified", _feed(server, listed=True))
    assert (row["status"], row["updated_at"], row["resolved_at"]) == ("identified", "2020-11-13T14:53:30+00:00", None)
    # The feed reading resolved while the JSON lags resolves it (a resolution stands), as of that feed poll.
    resolved = _feed(server, listed=True).replace(b"&lt;strong&gt;Investigating", b"&lt;strong&gt;Resolved", 1)
    row = _collect(tmp_path, server, "identified", resolved)
    assert row["status"] == "resolved" and row["resolved_at"] is not None
    assert row["resolved_at"] == row["updated_at"] > "2026"


def _polls(server: FakeServer, store: Store, json_status: str, polls: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """Poll the feed (lagging, undated) and the JSON (``json_status``) in the order and at the times (UTC, Nov 13
    2020) of ``polls`` and return the incident's row."""
    feed = SourceConfig("sauce-feed", "status_feed", url=f"{server.url}/history.atom", services=("Sauce Labs",))
    page = SourceConfig("sauce-json", "statuspage", url=server.url, services=("Sauce Labs",))
    store.sync_sources([feed, page])
    server.serve("/api/v2/incidents.json", Reply(200, _json(server, json_status), content_type="application/json"))
    server.serve("/history.atom", Reply(200, _feed(server, listed=True), content_type="application/atom+xml"))
    with Poller(CollectSettings(), hash_key=b"k") as poller:
        for name, at in polls:
            source = feed if name == "feed" else page
            when = datetime.fromisoformat(f"2020-11-13T{at}:00+00:00")
            poller.ctx.now = lambda when=when: when
            store.save_fetch(source.name, poller.poll(source, store.source_state(source.name)), when, when)
    [row] = [r for r in store.official_incidents("Sauce Labs", datetime(2020, 1, 1, tzinfo=UTC))
             if r["url"] == f"{PAGE}/incidents/{CODE}"]
    return row


def test_the_jsons_dated_resolve_wins_over_a_lagging_undated_feed_stored_first(server: FakeServer,
                                                                              store: Store) -> None:
    # The feed's entry first read (undated, "Investigating") at 15:12, after the JSON's resolve (15:10): the JSON's
    # update, dated before that poll, was not newer, and the incident stayed open until the feed caught up.
    row = _polls(server, store, "resolved", (("feed", "15:12"), ("json", "15:13"), ("feed", "15:14")))
    assert (row["source"], row["status"], row["resolved_at"], row["updated_at"], row["started_at"]) == (
        "sauce-feed", "resolved", RESOLVED, "2020-11-13T15:10:42+00:00", "2020-11-13T14:53:30+00:00")


def test_a_lagging_undated_feed_stored_first_does_not_take_back_the_jsons_status(server: FakeServer,
                                                                                 store: Store) -> None:
    # The JSON says identified (dated 14:53), the feed's entry, read first at 14:55, still "Investigating".
    row = _polls(server, store, "identified", (("feed", "14:55"), ("json", "14:56"), ("feed", "14:57")))
    assert (row["status"], row["updated_at"], row["resolved_at"]) == ("identified", "2020-11-13T14:53:30+00:00", None)


def test_a_lagging_undated_feed_does_not_reopen_its_own_incident_the_json_resolved(server: FakeServer,
                                                                                  store: Store) -> None:
    # The feed stored the incident first (undated, "Investigating", read at 14:55), the JSON's resolve (15:10) went
    # into the feed's row, and the feed's next poll, its entry unchanged, took it back to investigating.
    row = _polls(server, store, "resolved", (("feed", "14:55"), ("json", "15:12"), ("feed", "15:13")))
    assert (row["source"], row["status"], row["resolved_at"], row["updated_at"]) == (
        "sauce-feed", "resolved", RESOLVED, "2020-11-13T15:10:42+00:00")


def _reopened(server: FakeServer) -> bytes:
    """The JSON after the provider reopened the resolved incident: investigating again, dated 15:20."""
    answer = json.loads(_json(server, "resolved"))
    answer["incidents"][0].update(status="investigating", updated_at="2020-11-13T15:20:00.000Z", resolved_at=None)
    return json.dumps(answer).encode()


@pytest.mark.parametrize("feed_first", [False, True])
def test_a_lagging_undated_feed_does_not_resolve_again_what_the_jsons_dated_update_reopened(
        server: FakeServer, store: Store, feed_first: bool) -> None:
    # The JSON resolved the incident (15:10) and reopened it (15:20); the feed, lagging, still reads resolved at its
    # poll at 15:22. That poll time made its undated "resolved" newer than the reopen: the row was resolved again,
    # and the JSON's next polls (15:20, older than 15:22) never reopened it, the incident hidden while it went on.
    feed = SourceConfig("sauce-feed", "status_feed", url=f"{server.url}/history.atom", services=("Sauce Labs",))
    page = SourceConfig("sauce-json", "statuspage", url=server.url, services=("Sauce Labs",))
    store.sync_sources([feed, page])
    lagging = _feed(server, listed=True)
    resolved = lagging.replace(b"&lt;strong&gt;Investigating", b"&lt;strong&gt;Resolved", 1)
    steps = [("json", "15:11", _json(server, "resolved")), ("feed", "15:12", resolved),
             ("json", "15:21", _reopened(server)), ("feed", "15:22", resolved), ("json", "15:23", _reopened(server))]
    if feed_first:  # the feed's row, stored first (still investigating), the JSON's updates going into it
        steps.insert(0, ("feed", "14:55", lagging))
    with Poller(CollectSettings(), hash_key=b"k") as poller:
        for name, at, body in steps:
            path, kind = ("/history.atom", "atom+xml") if name == "feed" else ("/api/v2/incidents.json", "json")
            server.serve(path, Reply(200, body, content_type=f"application/{kind}"))
            source = feed if name == "feed" else page
            when = datetime.fromisoformat(f"2020-11-13T{at}:00+00:00")
            poller.ctx.now = lambda when=when: when
            store.save_fetch(source.name, poller.poll(source, store.source_state(source.name)), when, when)
    [row] = [r for r in store.official_incidents("Sauce Labs", datetime(2020, 1, 1, tzinfo=UTC))
             if r["url"] == f"{PAGE}/incidents/{CODE}"]
    assert (row["source"], row["status"], row["resolved_at"], row["updated_at"]) == (
        "sauce-feed" if feed_first else "sauce-json", "investigating", None, "2020-11-13T15:20:00+00:00")


def test_an_undated_feed_watched_alone_reopens_its_incident_when_its_entry_does(server: FakeServer,
                                                                                store: Store) -> None:
    # No JSON watched: the feed's own entry read resolved, then investigating again (the provider reopened it). No
    # other source's resolution for it to lag: kept resolved, the incident was hidden while it went on.
    feed = SourceConfig("sauce-feed", "status_feed", url=f"{server.url}/history.atom", services=("Sauce Labs",))
    store.sync_sources([feed])
    investigating = _feed(server, listed=True)
    resolved = investigating.replace(b"&lt;strong&gt;Investigating", b"&lt;strong&gt;Resolved", 1)
    with Poller(CollectSettings(), hash_key=b"k") as poller:
        for at, body in (("14:55", investigating), ("15:12", resolved), ("15:22", investigating)):
            server.serve("/history.atom", Reply(200, body, content_type="application/atom+xml"))
            when = datetime.fromisoformat(f"2020-11-13T{at}:00+00:00")
            poller.ctx.now = lambda when=when: when
            store.save_fetch(feed.name, poller.poll(feed, store.source_state(feed.name)), when, when)
    [row] = [r for r in store.official_incidents("Sauce Labs", datetime(2020, 1, 1, tzinfo=UTC))
             if r["url"] == f"{PAGE}/incidents/{CODE}"]
    assert (row["status"], row["resolved_at"], row["updated_at"]) == (
        "investigating", None, "2020-11-13T15:22:00+00:00")

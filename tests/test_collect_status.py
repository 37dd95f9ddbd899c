"""Official status pages: one page watched two ways, and other providers' feeds read from real captures."""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fakeserver import FakeServer, Recorded, Reply

from miner.collectors import CollectSettings, Poller
from miner.config import SourceConfig
from miner.errors import SourceError
from miner.records import FetchResult, SourceState
from miner.store import Store

NOW = datetime(2026, 11, 27, 16, 0, tzinfo=UTC)
SINCE = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def poller() -> Iterator[Poller]:
    with Poller(CollectSettings(), hash_key=b"k") as p:
        yield p


# The page's history.atom in the shape of the real GitHub feed: entry ids are Statuspage's internal numbers
# ("tag:www.githubstatus.com,2005:Incident/21156994"), the link is the incident's page, /incidents/<its JSON id>.
def _entry(number: int, code: str, title: str, published: str, updated: str, updates: list[tuple[str, str, str]]
           ) -> str:
    content = "".join(f"&lt;p&gt;&lt;small&gt;{stamp} UTC&lt;/small&gt;&lt;br&gt;"
                      f"&lt;strong&gt;{label}&lt;/strong&gt; - {text}&lt;/p&gt;" for stamp, label, text in updates)
    return (f"<entry><id>tag:www.githubstatus.com,2005:Incident/{number}</id><published>{published}</published>"
            f"<updated>{updated}</updated><link rel=\"alternate\" type=\"text/html\" "
            f"href=\"https://www.githubstatus.com/incidents/{code}\"/><title>{title}</title>"
            f"<content type=\"html\">{content}</content></entry>")


HISTORY_ATOM = ('<?xml version="1.0" encoding="UTF-8"?><feed xml:lang="en-US" xmlns="http://www.w3.org/2005/Atom">'
                "<id>tag:www.githubstatus.com,2005:/history</id><title>GitHub Status - Incident History</title>"
                "<updated>2026-11-27T15:00:00Z</updated>"
                + _entry(27000003, "p3k9d2m1x8qz", "Incident with Actions", "2026-11-27T15:00:00Z",
                         "2026-11-27T15:00:00Z",
                         [("Nov 27, 15:00", "Resolved", "This incident has been resolved."),
                          ("Nov 27, 14:20", "Investigating", "Actions runs are queued longer than usual."),
                          ("Nov 27, 14:01", "Investigating", "We are investigating reports of degraded performance.")])
                + _entry(27000002, "7t2lq0v9c4hn", "Disruption with some GitHub services", "2026-11-25T10:02:30Z",
                         "2026-11-25T10:02:30Z",
                         [("Nov 25, 10:02", "Resolved", "This incident has been resolved."),
                          ("Nov 25, 09:10", "Investigating", "We are investigating reports of degraded performance.")])
                + _entry(27000004, "k8m2n4p6q8r1", "Incident with Pages", "2026-11-27T15:30:00Z",
                         "2026-11-27T15:30:00Z",
                         [("Nov 27, 15:30", "Investigating", "We are investigating reports of degraded availability.")])
                + "</feed>")


def _sources(server: FakeServer) -> tuple[SourceConfig, SourceConfig]:
    # What `services.status_page = "https://www.githubstatus.com"` adds, and a status_feed of the same page.
    incidents = json.loads(server.fixture_bytes("statuspage/incidents.json"))
    assert incidents["page"]["url"] == "https://www.githubstatus.com"
    server.serve_fixture("/api/v2/incidents.json", "statuspage/incidents.json")
    server.serve("/history.atom", Reply(200, HISTORY_ATOM.encode(), content_type="application/atom+xml"))
    return (SourceConfig("status:GitHub", "statuspage", url=server.url, services=("GitHub",)),
            SourceConfig("github-feed", "status_feed", url=f"{server.url}/history.atom", services=("GitHub",)))


@pytest.mark.parametrize("feed_first", [False, True], ids=["json-then-feed", "feed-then-json"])
def test_a_statuspage_watched_as_json_and_as_its_feed_stores_each_incident_once(
        server: FakeServer, poller: Poller, store: Store, feed_first: bool) -> None:
    json_source, feed_source = _sources(server)
    order = (feed_source, json_source) if feed_first else (json_source, feed_source)
    for source in (*order, *order):  # twice: a re-poll of either stores nothing twice either
        store.save_fetch(source.name, poller.poll(source), NOW, NOW)
    rows = {r["url"]: r for r in store.official_incidents("GitHub", SINCE)}
    # The JSON's three incidents and the feed's new one, each once.
    assert sorted(rows) == [f"https://www.githubstatus.com/incidents/{code}" for code in (
        "7t2lq0v9c4hn", "k8m2n4p6q8r1", "p3k9d2m1x8qz", "w9c8x7z6y5v4")]
    assert len(store.official_incident_records("GitHub", SINCE)) == 4
    # The feed's update (resolved at 15:00) is newer than the JSON's (investigating, 14:20): it wins, and the
    # JSON's impact and components stay.
    actions = rows["https://www.githubstatus.com/incidents/p3k9d2m1x8qz"]
    assert (actions["status"], actions["resolved_at"], actions["updated_at"]) == (
        "resolved", "2026-11-27T15:00:00+00:00", "2026-11-27T15:00:00+00:00")
    assert (actions["impact"], json.loads(actions["components"])) == ("major", ["Actions"])
    pages = rows["https://www.githubstatus.com/incidents/k8m2n4p6q8r1"]
    assert (pages["source"], pages["status"]) == ("github-feed", "investigating")


def test_the_same_incident_code_on_another_page_or_service_is_another_incident(
        server: FakeServer, poller: Poller, store: Store) -> None:
    json_source, feed_source = _sources(server)
    store.save_fetch(json_source.name, poller.poll(json_source), NOW, NOW)
    other_page = HISTORY_ATOM.replace("https://www.githubstatus.com/", "https://status.example.org/")
    server.serve("/history.atom", Reply(200, other_page.encode(), content_type="application/atom+xml"))
    store.save_fetch(feed_source.name, poller.poll(feed_source), NOW, NOW)
    assert len(store.official_incidents("GitHub", SINCE)) == 3 + 3
    # The page's own feed, for a source of another service: kept apart too.
    server.serve("/history.atom", Reply(200, HISTORY_ATOM.encode(), content_type="application/atom+xml"))
    elsewhere = SourceConfig("gh-other", "status_feed", url=feed_source.url, services=("GitHub Enterprise",))
    assert store.save_fetch(elsewhere.name, poller.poll(elsewhere), NOW, NOW).incidents_new == 3


# Other providers' feeds, from real captures (tests/fixtures/collectors/README.md says where each comes from).

AWS_RSS = "status/aws_all.rss"
AWS_SINCE = datetime(2021, 12, 1, tzinfo=UTC)
AWS_TITLE = "Service is operating normally: [RESOLVED] Internet Connectivity"


def _aws_rows(server: FakeServer, poller: Poller, store: Store, body: bytes) -> list[dict[str, Any]]:
    server.serve("/rss/all.rss", Reply(200, body, content_type="application/rss+xml"))
    source = SourceConfig("aws", "status_feed", url=f"{server.url}/rss/all.rss", services=("AWS",))
    store.sync_sources([source])
    result = poller.poll(source, store.source_state(source.name))
    assert not result.warnings
    store.save_fetch(source.name, result, NOW, NOW)
    return store.official_incidents("AWS", AWS_SINCE)


def test_aws_health_dashboard_updates_of_one_event_are_one_incident(server: FakeServer, poller: Poller,
                                                                     store: Store) -> None:
    # AWS posts each update of an event as an item of its own, titled by the service's state, dated in PST, with
    # no update labels in the text; its guid is the service and region and the update's time in epoch seconds.
    # The capture's two items (resolved at 08:10 PST, a summary at 12:16 PST) are one event, stored once.
    real = server.fixture_bytes(AWS_RSS)
    first, second = re.findall(rb"<item>.*?</item>", real, flags=re.S)
    assert b"08:10:17 PST" in second
    # The poll before the summary was posted saw the resolution only.
    [row] = _aws_rows(server, poller, store, real.replace(first, b""))
    assert (row["status"], row["started_at"], row["resolved_at"]) == (
        "resolved", "2021-12-15T16:10:17+00:00", "2021-12-15T16:10:17+00:00")
    [row] = _aws_rows(server, poller, store, real)
    assert row["external_id"] == "http://status.aws.amazon.com/#internetconnectivity-us-gov-west-1_1639584617"
    assert (row["title"], row["status"], row["url"]) == (AWS_TITLE, "resolved", "http://status.aws.amazon.com/")
    # Started at its first update, resolved then (not at the summary), updated by the summary; PST is UTC-8, as the
    # guids' epoch seconds say.
    assert (row["started_at"], row["resolved_at"], row["updated_at"]) == (
        "2021-12-15T16:10:17+00:00", "2021-12-15T16:10:17+00:00", "2021-12-15T20:16:32+00:00")
    assert datetime.fromisoformat(row["updated_at"]).timestamp() == 1639599392


def test_an_aws_event_whose_first_update_left_the_feed_stays_one_incident(server: FakeServer, poller: Poller,
                                                                         store: Store) -> None:
    # The feed lists the latest items only. When a new update pushes an event's first one out, the earliest
    # update left would name the event: it was stored a second time, under that update's guid.
    real = server.fixture_bytes(AWS_RSS)
    summary, resolution = re.findall(rb"<item>.*?</item>", real, flags=re.S)
    [row] = _aws_rows(server, poller, store, real)
    assert row["external_id"].endswith("_1639584617")
    later = summary.replace(b"12:16:32 PST", b"15:00:00 PST").replace(b"_1639599392", b"_1639609200")
    [row] = _aws_rows(server, poller, store, real.replace(resolution, b"").replace(summary, later + summary))
    assert row["external_id"].endswith("_1639584617")
    assert (row["started_at"], row["resolved_at"], row["updated_at"]) == (
        "2021-12-15T16:10:17+00:00", "2021-12-15T16:10:17+00:00", "2021-12-15T23:00:00+00:00")
    # Once that update has gone too, the remembered event still names the updates left.
    [row] = _aws_rows(server, poller, store, real.replace(resolution, b"").replace(summary, later))
    assert row["external_id"].endswith("_1639584617") and row["started_at"] == "2021-12-15T16:10:17+00:00"


def test_an_aws_event_out_of_the_feed_for_a_poll_is_remembered_for_its_next_update(
    server: FakeServer, poller: Poller, store: Store
) -> None:
    # In a busy outage, other services' updates push all of an event's out of the feed for a poll; its next update,
    # within a day, continues the event. Forgotten at that poll, the event was stored again under the new update.
    real = server.fixture_bytes(AWS_RSS)
    summary, resolution = re.findall(rb"<item>.*?</item>", real, flags=re.S)
    _aws_rows(server, poller, store, real)
    other = summary.replace(b"internetconnectivity-us-gov-west-1", b"ec2-us-east-1").replace(
        b"Internet Connectivity", b"Amazon EC2")
    _aws_rows(server, poller, store, real.replace(resolution, b"").replace(summary, other))
    later = summary.replace(b"12:16:32 PST", b"15:00:00 PST").replace(b"_1639599392", b"_1639609200")
    rows = _aws_rows(server, poller, store, real.replace(resolution, b"").replace(summary, later + other))
    connectivity = [r for r in rows if "internetconnectivity" in r["external_id"]]
    assert [r["external_id"].rpartition("_")[2] for r in connectivity] == ["1639584617"]
    assert connectivity[0]["updated_at"] == "2021-12-15T23:00:00+00:00"


@pytest.mark.parametrize("cursor", ["t3_abc", '{"aws_events": [["x", 1]]}', "[1]", '{"aws_events": [[1, 2, 3, 4, 5]]}',
                                    '{"aws_events": [["k", "i", "0001-01-01T00:00:00+05:00", "x", null]]}'])
def test_a_status_feed_cursor_of_another_kind_starts_afresh(server: FakeServer, poller: Poller, cursor: str) -> None:
    # A source whose type changed, or a cursor a later miner wrote: the poll goes on without remembered events.
    server.serve("/rss/all.rss", Reply(200, server.fixture_bytes(AWS_RSS), content_type="application/rss+xml"))
    source = SourceConfig("aws", "status_feed", url=f"{server.url}/rss/all.rss", services=("AWS",))
    [event] = poller.poll(source, SourceState(cursor=cursor)).incidents
    assert event.external_id.endswith("_1639584617")


def test_aws_updates_of_a_service_days_apart_are_two_events(server: FakeServer, poller: Poller,
                                                             store: Store) -> None:
    real = server.fixture_bytes(AWS_RSS)
    later = real.replace(b"Wed, 15 Dec 2021 12:16:32 PST", b"Sat, 18 Dec 2021 12:16:32 PST").replace(
        b"_1639599392", b"_1639858592")
    rows = _aws_rows(server, poller, store, later)
    assert [(r["external_id"].rpartition("_")[2], r["started_at"]) for r in rows] == [
        ("1639584617", "2021-12-15T16:10:17+00:00"), ("1639858592", "2021-12-18T20:16:32+00:00")]


# A provider's incident that gives no time of its own: a feed entry without pubDate or updated, a Statuspage incident
# without started_at and created_at. Dated by the poll that first read it, that start must not move with later polls.
UNDATED_RSS = ('<?xml version="1.0"?><rss version="2.0"><channel><title>Example status</title>'
               "<item><guid>inc-1</guid><title>Login failures</title><link>https://status.example.com/i/1</link>"
               "<description>Investigating - We are looking into failed logins.</description></item>"
               "</channel></rss>")
UNDATED_JSON = json.dumps({"page": {"url": "https://status.example.com"}, "incidents": [
    {"id": "abc123", "name": "Login failures", "status": "investigating", "impact": "major"}]})


@pytest.mark.parametrize("kind", ["status_feed", "statuspage"])
def test_an_undated_official_incident_keeps_the_time_it_was_first_seen(server: FakeServer, poller: Poller,
                                                                       store: Store, kind: str) -> None:
    if kind == "status_feed":
        path = "/feed.rss"
        server.serve(path, Reply(200, UNDATED_RSS.encode(), content_type="application/rss+xml"))
        source = SourceConfig("example", "status_feed", url=f"{server.url}{path}", services=("Example",))
    else:
        path = "/api/v2/incidents.json"
        server.serve(path, Reply(200, UNDATED_JSON.encode(), content_type="application/json"))
        source = SourceConfig("example", "statuspage", url=server.url, services=("Example",))
    store.sync_sources([source])
    for minutes in (0, 10, 20):
        now = NOW + timedelta(minutes=minutes)
        poller.ctx.now = lambda now=now: now  # type: ignore[misc]
        store.save_fetch(source.name, poller.poll(source, store.source_state(source.name)), now, now)
    [row] = store.official_incidents("Example", SINCE)
    # Its start is when miner first saw it, the same time as first_seen_at, which says so in the data; nor did the
    # polls that read it again, saying nothing new and giving no update time, date an update of it.
    assert row["started_at"] == row["first_seen_at"] == row["updated_at"] == NOW.isoformat()
    [record] = store.official_incident_records("Example", SINCE)
    assert record.started_at == NOW
    # Its resolution is taken, by the poll that first reads it, and kept as well.
    body = UNDATED_RSS.replace("Investigating -", "Resolved -") if kind == "status_feed" else UNDATED_JSON.replace(
        '"investigating"', '"resolved", "resolved_at": "2026-11-27T16:25:00Z"')
    server.serve(path, Reply(200, body.encode()))
    for minutes in (30, 40):
        now = NOW + timedelta(minutes=minutes)
        poller.ctx.now = lambda now=now: now  # type: ignore[misc]
        store.save_fetch(source.name, poller.poll(source, store.source_state(source.name)), now, now)
    [row] = store.official_incidents("Example", SINCE)
    assert (row["status"], row["started_at"], row["resolved_at"]) == (
        "resolved", NOW.isoformat(), (NOW + timedelta(minutes=30 if kind == "status_feed" else 25)).isoformat())


def test_an_undated_incidents_start_an_earlier_miner_moved_goes_back_to_when_it_was_first_seen(
        server: FakeServer, poller: Poller, store: Store) -> None:
    server.serve("/feed.rss", Reply(200, UNDATED_RSS.encode(), content_type="application/rss+xml"))
    source = SourceConfig("example", "status_feed", url=f"{server.url}/feed.rss", services=("Example",))
    store.sync_sources([source])
    [inc] = poller.poll(source).incidents
    # As miner 0.1.0 stored it: dated by each poll, the last one an hour after the first.
    for minutes in (0, 60):
        at = NOW + timedelta(minutes=minutes)
        old = replace(inc, started_at=at, updated_at=at, undated=False)
        store.save_fetch(source.name, FetchResult(incidents=[old], state=SourceState()), at, at)
    later = NOW + timedelta(minutes=70)
    poller.ctx.now = lambda: later
    store.save_fetch(source.name, poller.poll(source, store.source_state(source.name)), later, later)
    [row] = store.official_incidents("Example", SINCE)
    assert row["started_at"] == row["first_seen_at"] == NOW.isoformat()


def test_a_key_in_a_status_feed_items_link_is_not_stored(server: FakeServer, poller: Poller, store: Store) -> None:
    # A private status feed's items link back with its key (?token=...): official_incidents.url kept it, and the
    # status board and alerts link to it.
    body = UNDATED_RSS.replace("https://status.example.com/i/1", "https://status.example.com/i/1?token=T0K3N")
    server.serve("/feed.rss", Reply(200, body.encode(), content_type="application/rss+xml"))
    source = SourceConfig("example", "status_feed", url=f"{server.url}/feed.rss", services=("Example",))
    store.sync_sources([source])
    poller.ctx.now = lambda: NOW  # type: ignore[method-assign]
    store.save_fetch(source.name, poller.poll(source, store.source_state(source.name)), NOW, NOW)
    [row] = store.official_incidents("Example", SINCE)
    assert row["url"] == "https://status.example.com/i/1?token=[redacted]"


# A body cut short inside an entry with its HTTP framing intact (its Content-Length the cut's: a proxy, or a feed
# generator that stopped mid-write): feedparser's loose reading keeps the entry as far as it got. Sauce Labs' real
# feed cut at half its bytes ends inside the link of incident 4789058; the forum's inside a topic's text.
@pytest.mark.parametrize("kind", ["status_feed", "rss"])
def test_an_entry_cut_off_at_the_end_of_a_truncated_feed_is_left_for_the_next_poll(
        server: FakeServer, poller: Poller, store: Store, kind: str) -> None:
    if kind == "status_feed":
        fixture, ctype = "status/saucelabs_us-west-1_history.atom", "application/atom+xml"
        real = server.fixture_bytes(fixture)
        cut = real[:len(real) // 2]
        assert cut.endswith(b'<link rel="alternate" type=') and b"Incident/4789058</id>" in cut
    else:
        fixture, ctype = "rss/forum_latest.rss", "application/rss+xml"
        real = server.fixture_bytes(fixture)
        cut = real[:real.index(b"Moving house") + 20]
    server.serve("/feed", Reply(200, cut, content_type=ctype))
    source = SourceConfig("feed", kind, url=f"{server.url}/feed", services=("Sauce Labs",) if kind == "status_feed"
                          else ())
    store.sync_sources([source])
    result = poller.poll(source)
    assert any("left out its last, cut off before its end" in w for w in result.warnings)
    store.save_fetch(source.name, result, NOW, NOW)
    server.serve("/feed", Reply(200, real, content_type=ctype))
    later = NOW + timedelta(minutes=5)
    store.save_fetch(source.name, poller.poll(source, store.source_state(source.name)), later, later)
    if kind == "status_feed":
        rows = store.official_incidents("Sauce Labs", datetime(2020, 1, 1, tzinfo=UTC))
        [row] = [r for r in rows if r["external_id"].endswith("Incident/4789058")]
        # Stored from the cut feed, it was "(untitled incident)", status unknown, with no link, and the whole
        # feed's same dates never mended it.
        assert (row["title"], row["status"], row["started_at"], row["resolved_at"], row["url"]) == (
            "2020-August-05 Service Incident", "resolved", "2020-08-05T19:16:00+00:00", "2020-08-06T15:29:00+00:00",
            "https://status.us-west-1.saucelabs.com/incidents/j6r32qwdwl0k")
        assert len(rows) == 25
    else:
        # The cut topic was stored by its first words and dated at its fetch, and again whole by the next poll.
        rows = store.database.rows("SELECT external_id, text, created_at FROM posts WHERE text LIKE 'Which mesh%'")
        assert [(r["external_id"], r["created_at"]) for r in rows] == [
            ("forum.example.net-topic-8809", "2026-11-26T19:02:55+00:00")]
        assert rows[0]["text"].endswith("any recommendations?")
        # A feed that ends as a feed does, its last entry's end tag missing (a generator's slip), keeps that entry.
        last = real.rindex(b"</item>")
        server.serve("/slip", Reply(200, real[:last] + real[last + 7:], content_type=ctype))
        slip = poller.poll(SourceConfig("slip", "rss", url=f"{server.url}/slip"))
        assert len(slip.posts) == 3 and "left out" not in slip.warnings[0]


@pytest.mark.parametrize("kind", ["status_feed", "rss"])
def test_the_validators_of_a_feed_cut_short_are_not_kept(
        server: FakeServer, poller: Poller, store: Store, kind: str) -> None:
    # A cache that holds the cut copy under the feed's ETag, and answers the next poll's If-None-Match with a 304
    # until the feed changes, though it has since fetched the whole of it: the entry left out was left unread.
    fixture, ctype = (("status/saucelabs_us-west-1_history.atom", "application/atom+xml") if kind == "status_feed"
                      else ("rss/forum_latest.rss", "application/rss+xml"))
    real = server.fixture_bytes(fixture)
    cached = [real[:len(real) // 2] if kind == "status_feed" else real[:real.index(b"Moving house") + 20]]

    def cache(request: Recorded) -> Reply:
        if request.headers.get("if-none-match") == '"v1"':
            return Reply(304)
        return Reply(200, cached[0], headers={"ETag": '"v1"', "Last-Modified": "Fri, 27 Nov 2026 15:00:00 GMT"},
                     content_type=ctype)

    server.serve("/feed", cache)
    source = SourceConfig("feed", kind, url=f"{server.url}/feed", services=("Sauce Labs",) if kind == "status_feed"
                          else ())
    store.sync_sources([source])
    result = poller.poll(source)
    assert any("left out its last, cut off before its end" in w for w in result.warnings)
    store.save_fetch(source.name, result, NOW, NOW)
    assert (store.source_state(source.name).etag, store.source_state(source.name).last_modified) == (None, None)
    cached[0] = real
    later = NOW + timedelta(minutes=5)
    again = poller.poll(source, store.source_state(source.name))
    assert not again.not_modified
    store.save_fetch(source.name, again, later, later)
    assert store.source_state(source.name).etag == '"v1"'  # the whole feed's are kept
    if kind == "status_feed":
        rows = store.official_incidents("Sauce Labs", datetime(2020, 1, 1, tzinfo=UTC))
        [row] = [r for r in rows if r["external_id"].endswith("Incident/4789058")]
        assert (row["title"], row["status"]) == ("2020-August-05 Service Incident", "resolved")
    else:
        rows = store.database.rows("SELECT text FROM posts WHERE text LIKE 'Which mesh%'")
        assert [r["text"][-20:] for r in rows] == ["any recommendations?"]


def test_a_gzipped_feed_cut_short_fails_its_poll_for_the_next_to_retry(
        server: FakeServer, poller: Poller, store: Store) -> None:
    # A cache's copy of the gzipped feed cut off mid-stream, its Content-Length that of the cut (no transport error):
    # zlib inflated what came, and the poll was a success with every incident after the cut missing.
    real = server.fixture_bytes("status/saucelabs_us-west-1_history.atom")
    packed = gzip.compress(real)

    def serve(body: bytes, etag: str) -> None:
        server.serve("/feed", Reply(200, body, headers={"Content-Encoding": "gzip", "ETag": etag},
                                    content_type="application/atom+xml"))

    source = SourceConfig("feed", "status_feed", url=f"{server.url}/feed", services=("Sauce Labs",))
    store.sync_sources([source])
    serve(packed, '"v1"')
    store.save_fetch(source.name, poller.poll(source), NOW, NOW)
    serve(packed[:len(packed) // 2], '"v2"')
    with pytest.raises(SourceError, match=r"cannot decode response from 127\.0\.0\.1: gzip body cut short") as caught:
        poller.poll(source, store.source_state(source.name))
    assert not caught.value.permanent
    later = NOW + timedelta(minutes=5)
    store.record_poll_failure(source.name, str(caught.value), later, later)
    assert store.source_state(source.name) == SourceState(etag='"v1"')  # kept, as after a network error
    serve(packed, '"v2"')
    result = poller.poll(source, store.source_state(source.name))
    assert not result.not_modified and len(result.incidents) == 25


@pytest.mark.parametrize("kind", ["statuspage", "status_feed"])
def test_a_huge_incident_title_is_stored_cut(server: FakeServer, poller: Poller, store: Store, kind: str) -> None:
    # A status page is someone else's text: one answering a title of 1.5 MB (in its 5 MB body limit) had it stored
    # whole, and the board and the read API served it on every read of the service.
    huge = "Degraded " + "x" * 1_500_000
    if kind == "status_feed":
        source = SourceConfig("example", "status_feed", url=f"{server.url}/feed.rss", services=("Example",))
        server.serve("/feed.rss", Reply(200, UNDATED_RSS.replace("Login failures", huge).encode(),
                                        content_type="application/rss+xml"))
    else:
        source = SourceConfig("example", "statuspage", url=server.url, services=("Example",))
        incidents = json.loads(UNDATED_JSON)
        incidents["incidents"][0].update(name=huge, components=[{"name": huge}], impact=huge)
        server.serve("/api/v2/incidents.json", Reply(200, json.dumps(incidents).encode(),
                                                     content_type="application/json"))
    store.save_fetch(source.name, poller.poll(source), NOW, NOW)
    [row] = store.official_incidents("Example", SINCE)
    assert row["title"].startswith("Degraded xxx") and row["title"].endswith("…") and len(row["title"]) == 500
    assert all(len(name) <= 500 for name in json.loads(row["components"]))
    assert len(row["impact"] or "") <= 30

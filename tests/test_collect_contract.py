"""One contract for every source type, against a real HTTP server on 127.0.0.1 (tests/fakeserver.py):
normalised fields, stable ids, incremental second polls, clear errors for every fault, isolation."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from fakeserver import FakeServer, Recorded, Reply

from miner.collectors import CollectSettings, Poller
from miner.collectors.base import PollContext
from miner.collectors.poller import PollOutcome
from miner.config import ServiceConfig, SourceConfig
from miner.errors import SourceError
from miner.records import FetchResult, OfficialIncident, Post, SourceState
from miner.timeutil import utcnow

SERVICES = (
    ServiceConfig("WhatsApp"), ServiceConfig("Discord"), ServiceConfig("Cloudflare"), ServiceConfig("Signal"),
    ServiceConfig("Instagram"), ServiceConfig("Outlook", ("Microsoft 365", "Exchange Online")),
    ServiceConfig("GitHub", ("GitHub Actions",)), ServiceConfig("Telekom"), ServiceConfig("Slack"),
    ServiceConfig("Vodafone"), ServiceConfig("Sauce Labs", ("Sauce Connect", "saucelabs")),
)
ENV = {"RID": "client-id-123", "RSECRET": "s3cret", "BSKY_ID": "outage-miner.bsky.social", "BSKY_PW": "app-pw"}
SLOW_TIMEOUT = 0.5


@dataclass
class Case:
    id: str
    make: Callable[[str], SourceConfig]
    routes: dict[str, str]  # path -> fixture (healthy)
    main: str  # the path faults are injected on
    handles: tuple[str, ...]  # raw author handles in the fixture, never to be kept
    incidents: bool = False
    feed: bool = False  # XML feed (else JSON API)
    cursor_param: str | None = None  # query parameter the second poll must carry
    lookback: bool = False  # the second poll reads the items near its cursor again (a late one may be among them)
    expect_service: str | None = None
    post_routes: dict[str, str] = field(default_factory=dict)  # auth endpoints (not faulted)


CASES = [
    Case("rss", lambda b: SourceConfig("forum", "rss", url=f"{b}/latest.rss"),
         {"/latest.rss": "rss/forum_latest.rss"}, "/latest.rss", ("ben_in_leeds", "meshcurious", "dee.r"),
         feed=True),
    Case("reddit-rss", lambda b: SourceConfig("reddit-wa", "reddit", url=b, query="whatsapp down"),
         {"/search.rss": "reddit/search.rss"}, "/search.rss", ("tomasz_pl", "Lunar_Otter", "quietgarden"),
         feed=True, expect_service="WhatsApp"),
    Case("reddit-oauth",
         lambda b: SourceConfig("reddit-api", "reddit", url=b, query="outlook down",
                                env={"client_id": "RID", "client_secret": "RSECRET"}),
         {"/search.json": "reddit/search.json"}, "/search.json", ("ann_k_92", "grumpy_admin"),
         expect_service="Outlook", post_routes={"/api/v1/access_token": "reddit/token.json"}, lookback=True),
    Case("hackernews", lambda b: SourceConfig("hn", "hackernews", url=b, query="outage"),
         {"/api/v1/search_by_date": "hackernews/search_by_date.json"}, "/api/v1/search_by_date",
         ("kvnhn", "opsgrl", "dang_fan", "throwaway_sre"), cursor_param="numericFilters",
         expect_service="Cloudflare", lookback=True),
    Case("discourse-latest", lambda b: SourceConfig("forum-latest", "discourse", url=b),
         {"/latest.json": "discourse/latest.json"}, "/latest.json", ("jkowalski", "maria.lopes", "forum_admin")),
    Case("discourse-search", lambda b: SourceConfig("forum-search", "discourse", url=b, query="sync"),
         {"/search.json": "discourse/search.json"}, "/search.json", ("jkowalski", "maria.lopes", "forum_admin")),
    Case("lemmy", lambda b: SourceConfig("lemmy", "lemmy", url=b, query="discord"),
         {"/api/v3/search": "lemmy/search.json"}, "/api/v3/search", ("sparrowhawk", "nightowl", "newsbot"),
         expect_service="Discord", lookback=True),
    Case("mastodon", lambda b: SourceConfig("masto", "mastodon", url=b, query="#outage"),
         {"/api/v1/timelines/tag/outage": "mastodon/tag_timeline.json"}, "/api/v1/timelines/tag/outage",
         ("ferriswheel", "kaffeetasse", "sre_notes"), cursor_param="since_id", expect_service="Signal",
         lookback=True),
    Case("bluesky",
         lambda b: SourceConfig("bsky", "bluesky", url=b, query="down",
                                env={"identifier": "BSKY_ID", "password": "BSKY_PW"}),
         {"/xrpc/app.bsky.feed.searchPosts": "bluesky/search_posts.json"}, "/xrpc/app.bsky.feed.searchPosts",
         ("netwatcher", "sam-ops", "leilani"), cursor_param="since", expect_service="Instagram",
         # A session renewed when a test moves the clock past its JWT's lifetime answers as a login does.
         post_routes={"/xrpc/com.atproto.server.createSession": "bluesky/create_session.json",
                      "/xrpc/com.atproto.server.refreshSession": "bluesky/create_session.json"}),
    Case("statuspage", lambda b: SourceConfig("gh-status", "statuspage", url=b, services=("GitHub",)),
         {"/api/v2/incidents.json": "statuspage/incidents.json"}, "/api/v2/incidents.json", (), incidents=True),
    Case("status_feed-atom",
         lambda b: SourceConfig("sauce", "status_feed", url=f"{b}/history.atom", services=("Sauce Labs",)),
         {"/history.atom": "status/saucelabs_us-west-1_history.atom"}, "/history.atom", (), incidents=True,
         feed=True),
    Case("status_feed-rss", lambda b: SourceConfig("parse", "status_feed", url=f"{b}/history.rss"),
         {"/history.rss": "status/parse_status_history.rss"}, "/history.rss", (), incidents=True, feed=True),
]
SETTINGS = CollectSettings(max_body_bytes=65_536, max_redirects=3, connect_timeout=2.0, max_workers=4)


@pytest.fixture
def poller() -> Iterator[Poller]:
    with Poller(SETTINGS, SERVICES, hash_key=b"test-key", environ=ENV) as p:
        yield p


def setup(server: FakeServer, case: Case) -> SourceConfig:
    for path, fixture in {**case.routes, **case.post_routes}.items():
        server.serve_fixture(path, fixture)
    return case.make(server.url)


def items(result: FetchResult) -> list[Post | OfficialIncident]:
    return list(result.incidents) + list(result.posts)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_poll_returns_normalised_records(server: FakeServer, poller: Poller, case: Case) -> None:
    source = setup(server, case)
    result = poller.poll(source, SourceState())
    assert not result.not_modified
    if case.incidents:
        assert result.incidents and not result.posts
        for inc in result.incidents:
            assert inc.source == source.name and inc.external_id and inc.title
            assert inc.status in {"investigating", "identified", "monitoring", "resolved", "postmortem",
                                  "scheduled", "completed", "unknown"}
            assert inc.started_at.utcoffset() == timedelta(0) and inc.updated_at >= inc.started_at
            assert (inc.resolved_at is not None) == (inc.status in ("resolved", "postmortem", "completed"))
            assert inc.service == (source.services[0] if source.services else None)
            assert "<" not in inc.title
        return
    assert result.posts and not result.incidents
    for post in result.posts:
        assert post.source == source.name and post.external_id
        assert post.text == post.text.strip() and "  " not in post.text
        assert not re.search(r"<[a-z/!]|&(amp|quot|lt|gt|#\d+|#x[0-9a-f]+);", post.text, re.IGNORECASE), post.text
        assert "submitted by" not in post.text and "alert(1)" not in post.text
        assert post.created_at.tzinfo is not None and post.created_at.utcoffset() == timedelta(0)
        assert post.author_hash is None or re.fullmatch(r"[0-9a-f]{16}", post.author_hash)
        for handle in case.handles:
            for value in (post.text, post.external_id, post.author_hash or ""):
                assert handle.lower() not in value.lower(), (handle, value)
    assert any(p.author_hash for p in result.posts)
    if case.expect_service:
        assert any(case.expect_service in p.services for p in result.posts)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_external_ids_are_unique_and_stable(server: FakeServer, poller: Poller, case: Case) -> None:
    source = setup(server, case)
    first = poller.poll(source, SourceState())
    second = poller.poll(source, SourceState())  # no remembered state: a full re-read
    ids = [i.external_id for i in items(first)]
    assert len(ids) == len(set(ids))
    assert ids == [i.external_id for i in items(second)]
    assert items(first) == items(second)  # same content, same hashes


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_second_poll_is_incremental(server: FakeServer, poller: Poller, case: Case) -> None:
    source = setup(server, case)
    first = poller.poll(source, SourceState())
    again = poller.poll(source, first.state)
    last = server.requests_to(case.main)[-1]
    if first.state.etag or first.state.last_modified:
        assert last.headers.get("if-none-match") == first.state.etag
        assert again.not_modified and again.state == first.state and not items(again)
    else:
        assert first.state.cursor
        if case.lookback:  # nothing new: what is read again is stored once (test_collect_paging)
            assert {i.external_id for i in items(again)} <= {i.external_id for i in items(first)}
        else:
            assert not items(again)
        assert again.state.cursor == first.state.cursor
        if case.cursor_param:
            assert case.cursor_param in last.query


# Time-ordered cursors, read back as times; and one stored by an earlier version from a post dated 2100.
CURSOR_TIMES: dict[str, Callable[[str], datetime]] = {
    "hackernews": lambda c: datetime.fromtimestamp(int(c), UTC),
    "reddit-oauth": lambda c: datetime.fromtimestamp(float(c), UTC),
    "lemmy": datetime.fromisoformat,
    "bluesky": datetime.fromisoformat,
    "mastodon": lambda c: datetime.fromtimestamp((int(c) >> 16) / 1000, UTC),
}
YEAR_2100 = datetime(2100, 1, 1, tzinfo=UTC)
FUTURE_CURSORS = {
    "hackernews": f"{YEAR_2100.timestamp():.0f}", "reddit-oauth": f"{YEAR_2100.timestamp():.0f}",
    "lemmy": YEAR_2100.isoformat(), "bluesky": YEAR_2100.isoformat(),
    "mastodon": str(int(YEAR_2100.timestamp() * 1000) << 16),
}


@pytest.mark.parametrize("case", [c for c in CASES if c.id in CURSOR_TIMES], ids=lambda c: c.id)
def test_cursor_never_runs_ahead_of_the_clock(server: FakeServer, poller: Poller, case: Case) -> None:
    """Posts dated after the clock (here every recorded post, the clock set to 2001) are kept, but the cursor
    stays at or before now: one post dated 2100 must not hide every later post."""
    source = setup(server, case)
    clock = datetime(2001, 1, 1, tzinfo=UTC)
    poller.ctx.now = lambda: clock
    first = poller.poll(source, SourceState())
    assert first.posts
    assert first.state.cursor is None or CURSOR_TIMES[case.id](first.state.cursor) <= clock
    poller.ctx.now = lambda: datetime.now(UTC)
    again = poller.poll(source, first.state)
    assert [p.external_id for p in again.posts] == [p.external_id for p in first.posts]
    healed = poller.poll(source, SourceState(cursor=FUTURE_CURSORS[case.id]))
    assert [p.external_id for p in healed.posts] == [p.external_id for p in first.posts]


@pytest.mark.parametrize("body", [b"{}", b'{"error": "moved"}', b"null", b"[]"], ids=["empty", "other", "null", "list"])
@pytest.mark.parametrize("case", [c for c in CASES if not c.feed], ids=lambda c: c.id)
def test_json_of_another_shape_fails_the_source(server: FakeServer, poller: Poller, case: Case, body: bytes) -> None:
    """Valid JSON that is not this API's answer is an error: a healthy "0 new posts" would hide the fault."""
    source = setup(server, case)
    if case.id == "mastodon" and body == b"[]":
        return  # an empty timeline is a real answer
    server.serve(case.main, Reply(200, body, content_type="application/json"))
    with pytest.raises(SourceError, match=r"^(unexpected|expected) (JSON|a JSON object) from "):
        poller.poll(source, SourceState())


def _fault_cases() -> list[tuple[Case, str]]:
    kinds = ["500", "429", "503", "slow", "malformed", "huge", "huge_declared", "redirect_loop", "wrong_type",
             "truncated"]
    out = [(c, k) for c in CASES for k in kinds]
    out += [(c, k) for c in CASES if not c.feed for k in ("truncated_json", "deep_json", "long_number_json")]
    return out


@pytest.mark.parametrize(("case", "kind"), _fault_cases(), ids=lambda v: v if isinstance(v, str) else v.id)
def test_fault_gives_a_clear_source_error(server: FakeServer, poller: Poller, case: Case, kind: str) -> None:
    source = setup(server, case)
    source = SourceConfig(**{**source.__dict__, "timeout": SLOW_TIMEOUT if kind == "slow" else 30.0})
    fixture = case.routes[case.main]
    retry = format_datetime(datetime.now(UTC) + timedelta(seconds=600), usegmt=True) if kind == "503" else "120"
    server_kind = ("malformed_xml" if case.feed else "malformed_json") if kind == "malformed" else kind
    server.fault(case.main, server_kind, fixture=fixture, delay=10.0, retry_after=retry)
    with pytest.raises(SourceError) as info:
        poller.poll(source, SourceState())
    message, err = str(info.value), info.value
    expected = {
        "500": r"^HTTP 500 from 127\.0\.0\.1$",
        "429": r"^HTTP 429 from 127\.0\.0\.1 \(retry after 120 s\)$",
        "503": r"^HTTP 503 from 127\.0\.0\.1 \(retry after \d+ s\)$",
        "slow": rf"^timed out after {SLOW_TIMEOUT:g} s reading http://127\.0\.0\.1:\d+/",
        "malformed": r"^malformed feed from http://" if case.feed else r"^invalid JSON from http://",
        "huge": r"^body larger than 65536 bytes from http://127\.0\.0\.1",
        "huge_declared": r"^body larger than 65536 bytes from http://127\.0\.0\.1",
        "redirect_loop": r"^too many redirects \(more than 3\) from http://127\.0\.0\.1",
        "wrong_type": r"^expected a feed from .*an HTML page" if case.feed else r"^expected JSON from .*text/html",
        "truncated": r"^truncated or broken response from 127\.0\.0\.1",
        "truncated_json": r"^invalid JSON from .*\(truncated body\?\)$",
        "deep_json": r"^invalid JSON from http://127\.0\.0\.1:\d+/\S*: nested too deeply$",
        "long_number_json": r"^invalid JSON from http://127\.0\.0\.1:\d+/\S*: a number of more than \d+ digits$",
    }[kind]
    assert re.search(expected, message), message
    assert "\n" not in message
    if kind == "429":
        assert err.retry_after == 120
    elif kind == "503":
        assert err.retry_after is not None and 590 <= err.retry_after <= 600
    else:
        assert err.retry_after is None
    assert not err.permanent



def polled(poller: Poller, jobs: list[tuple[SourceConfig, SourceState | None]],
           stop: threading.Event | None = None) -> list[PollOutcome]:
    """The outcomes of ``jobs`` polled through the poller's pool as a collect run polls them, in the order of
    ``jobs``: the sources a stop left without one have none."""
    poller.pool.start(jobs, utcnow(), time.monotonic())
    done = {landed.flight.source.name: landed.outcome for landed in poller.pool.landed(None, stop)}
    return [done[s.name] for s, _ in jobs if s.name in done]


def test_polls_isolate_failures(server: FakeServer) -> None:
    healthy = [setup(server, c) for c in CASES if c.id in ("rss", "hackernews", "statuspage")]
    server.fault("/broken.rss", "500")
    server.fault("/slow.rss", "slow", fixture="rss/forum_latest.rss", delay=10.0)
    broken = SourceConfig("broken", "rss", url=f"{server.url}/broken.rss")
    slow = SourceConfig("slow", "rss", url=f"{server.url}/slow.rss", timeout=SLOW_TIMEOUT)
    buggy = SourceConfig("buggy", "lemmy", url=f"{server.url}/nothing", query="x")

    class Exploding:  # a collector with a bug: must cost its own source one round, nothing more
        def poll(self, source: SourceConfig, state: SourceState, ctx: PollContext) -> FetchResult:
            raise KeyError("boom")

    with Poller(SETTINGS, SERVICES, hash_key=b"k", environ=ENV) as poller:
        poller.collectors["lemmy"] = Exploding()
        jobs = [(broken, None), *[(s, None) for s in healthy], (slow, None), (buggy, SourceState())]
        outcomes = polled(poller, jobs)
    assert [o.source for o in outcomes] == [s.name for s, _ in jobs]
    by_name = {o.source: o for o in outcomes}
    for source in healthy:
        outcome = by_name[source.name]
        assert outcome.ok and outcome.result is not None and items(outcome.result)
    assert by_name["broken"].error is not None and str(by_name["broken"].error) == "HTTP 500 from 127.0.0.1"
    assert by_name["slow"].error is not None and "timed out" in str(by_name["slow"].error)
    assert by_name["buggy"].error is not None
    assert str(by_name["buggy"].error).startswith("internal error in the lemmy collector: KeyError")


@pytest.mark.parametrize("limit", [1, 2])
def test_polls_respect_per_host_concurrency(server: FakeServer, limit: int) -> None:
    lock = threading.Lock()
    state = {"now": 0, "max": 0}
    body = server.fixture_bytes("rss/forum_latest.rss")

    def counting(request: Recorded) -> Reply:
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.1)
        with lock:
            state["now"] -= 1
        return Reply(200, body, content_type="application/rss+xml")

    server.serve("/feed.rss", counting)
    sources = [SourceConfig(f"s{i}", "rss", url=f"{server.url}/feed.rss?n={i}") for i in range(6)]
    settings = CollectSettings(per_host_concurrency=limit, max_workers=6)
    with Poller(settings, SERVICES, hash_key=b"k") as poller:
        outcomes = polled(poller, [(s, None) for s in sources])
    assert all(o.ok for o in outcomes)
    assert 1 <= state["max"] <= limit


def test_a_stop_starts_no_poll_waiting_for_its_host_and_gives_up_the_one_in_flight(server: FakeServer) -> None:
    stop = threading.Event()
    release = threading.Event()
    answered = threading.Event()
    body = server.fixture_bytes("rss/forum_latest.rss")

    def hang(request: Recorded) -> Reply:  # answers once the test lets it (the source's timeout, at the latest)
        stop.set()
        release.wait(60)
        answered.set()
        return Reply(200, body, content_type="application/rss+xml")

    server.serve("/hang.rss", hang)
    server.serve_fixture("/next.rss", "rss/forum_latest.rss")
    sources = [SourceConfig("hang", "rss", url=f"{server.url}/hang.rss", timeout=60),
               SourceConfig("next", "rss", url=f"{server.url}/next.rss")]
    before = set(threading.enumerate())
    # Two workers, one request at a time to the host: "next" waits for "hang" to free the host.
    with Poller(CollectSettings(per_host_concurrency=1, max_workers=2), SERVICES, hash_key=b"k") as poller:
        poller.stop_grace = 0.2
        started = time.monotonic()
        outcomes = polled(poller, [(s, None) for s in sources], stop)
        took = time.monotonic() - started
        # The pool's workers, one held by "hang", live as long as the poller.
        workers = [t for t in threading.enumerate() if t not in before and t.name.startswith("miner-collect-")]
        release.set()  # the host is free: the other worker starts "next" now, were it still asked for
        assert answered.wait(60)
    for t in workers:  # each ends at the poller's close: "next" has been asked for by then, or never is
        t.join(60)
    assert workers and not any(t.is_alive() for t in workers)
    assert outcomes == []
    assert took < 15  # the 0.2 s grace (on a loaded runner, a few s), not the hanging server's 60 s
    assert not server.requests_to("/next.rss")

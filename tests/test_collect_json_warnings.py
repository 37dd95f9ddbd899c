"""What the JSON API collectors meet below their own code (a body's bytes that are not UTF-8) reaches the source's
last_warning, as a feed's warnings do: real polls of a 127.0.0.1 server through the collect stage, into a real
SQLite store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from fakeserver import FakeServer, Reply
from test_collect_contract import CASES, ENV, SERVICES, SETTINGS, Case

from miner.collectors import Poller
from miner.config import Config
from miner.pipeline import Pipeline
from miner.store import Store
from miner.store.sources import current_warning
from miner.timeutil import iso

AT = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)  # after the fixtures' items: none is dated in the future
CUT = "é".encode()[:1]  # a character cut after its first byte: one byte sequence that is not UTF-8
# Where in each JSON case's main fixture a kept item's text starts (every JSON case of the contract tests): the
# bad byte goes first in it.
IN_TEXT = {
    "reddit-oauth": b'"title": "', "hackernews": b'"title": "', "discourse-latest": b'"title": "Sync',
    "discourse-search": b'"blurb": "', "lemmy": b'"content": "', "mastodon": b'"content": "', "bluesky": b'"text": "',
    "statuspage": b'"name": "Incident',
}
JSON_CASES = [c for c in CASES if not c.feed]


def _cut(server: FakeServer, fixture: str, needle: bytes, times: int = 1) -> bytes:
    """The fixture with the cut character put after the opening quote of ``times`` string values ``needle`` ends in."""
    body = server.fixture_bytes(fixture)
    assert body.count(needle) >= times, (fixture, needle)
    head, quote, word = needle.rpartition(b'"')
    return body.replace(needle, head + quote + CUT + word, times)


@contextmanager
def _collecting(server: FakeServer, store: Store, case: Case) -> Iterator[tuple[str, Callable[[datetime], None]]]:
    """The case's source (its logins answered) in a config of its own, and a collect round of it at a given time."""
    for path, fixture in case.post_routes.items():
        server.serve_fixture(path, fixture)
    source = case.make(server.url)
    config = Config(services=SERVICES, sources=(source,), collect=SETTINGS)
    pipe = Pipeline(config, store)
    with Poller(config.collect, config.services, hash_key=b"k", environ=ENV) as poller:
        def collect(at: datetime) -> None:
            poller.ctx.now = lambda: at
            (report,) = pipe.collect(at, poller, due_only=False)
            assert report.error is None, report.error

        yield source.name, collect


def _texts_with_replacement(store: Store) -> int:
    posts = store.database.one("SELECT count(*) AS n FROM posts WHERE text LIKE ?", ("%\ufffd%",)) or {}
    incidents = store.database.one("SELECT count(*) AS n FROM official_incidents WHERE title LIKE ?",
                                   ("%\ufffd%",)) or {}
    return int(posts["n"]) + int(incidents["n"])


@pytest.mark.parametrize("case", JSON_CASES, ids=lambda c: c.id)
def test_a_json_bodys_bytes_that_are_not_utf8_are_the_sources_warning_until_a_clean_poll(
        server: FakeServer, store: Store, case: Case) -> None:
    # Only logged, they never reached last_warning: `miner status` never said the source sends broken text.
    [(path, fixture)] = case.routes.items()
    with _collecting(server, store, case) as (name, collect):
        server.serve(path, Reply(200, _cut(server, fixture, IN_TEXT[case.id]), content_type="application/json"))
        collect(AT)
        assert _texts_with_replacement(store) == 1  # the item is kept, its bad byte read as U+FFFD
        assert current_warning(store.source_row(name) or {}) == (
            f"JSON from {server.url}{path} holds 1 byte sequence that is not UTF-8; each read as U+FFFD", AT)
        server.serve_fixture(path, fixture, validators=False)
        collect(AT + timedelta(minutes=10))
    row = store.source_row(name) or {}
    assert current_warning(row) is None and row["warning_cleared_at"] == iso(AT + timedelta(minutes=10))


def test_bad_bytes_in_every_response_of_a_poll_are_one_line_with_their_count(
        server: FakeServer, store: Store, caplog: pytest.LogCaptureFixture) -> None:
    # A login's answer and a listing's, two texts of the listing: one line, not one per response or item.
    [case] = [c for c in CASES if c.id == "reddit-oauth"]
    with _collecting(server, store, case) as (name, collect):
        server.serve("/api/v1/access_token", Reply(200, _cut(server, "reddit/token.json", b'"scope": "'),
                                                   content_type="application/json"))
        server.serve("/search.json", Reply(200, _cut(server, "reddit/search.json", b'"title": "', times=2),
                                           content_type="application/json"))
        collect(AT)
    line = (f"JSON from {server.url}/api/v1/access_token (and 1 other URL) holds 3 byte sequences that are not "
            "UTF-8 in 2 responses; each read as U+FFFD")
    assert (store.source_row(name) or {})["last_warning"] == line
    # Logged once, naming the source: it was once a response, without it.
    assert [r.getMessage() for r in caplog.records if "UTF-8" in r.getMessage()] == [f"source {name}: {line}"]


# A Statuspage's warned before (test_collect_units.test_a_statuspage_moved_for_good_tells_the_operator).
@pytest.mark.parametrize("case", [c for c in JSON_CASES if c.id != "statuspage"], ids=lambda c: c.id)
def test_a_json_api_moved_for_good_is_the_sources_warning_until_it_answers_where_it_is(
        server: FakeServer, store: Store, case: Case) -> None:
    # Only a feed's and a Statuspage's permanent redirect was a warning: every other JSON API's was followed at every
    # poll without a word, not even logged, until the old URL stopped redirecting and the source failed for no reason
    # shown.
    [(path, fixture)] = case.routes.items()
    moved = Case(case.id, lambda b: case.make(f"{b}/old"), case.routes, case.main, case.handles,
                 post_routes={f"/old{p}": f for p, f in case.post_routes.items()})  # a login is not redirected
    with _collecting(server, store, moved) as (name, collect):
        server.serve(f"/old{path}",
                     lambda req: Reply(301, headers={"Location": f"{path}?{urlencode(req.query, doseq=True)}"}))
        server.serve_fixture(path, fixture, validators=False)
        collect(AT)
        warned = current_warning(store.source_row(name) or {})
        assert warned == (f"{server.url}/old{path} has moved for good (HTTP 301) to {server.url}{path}: update the "
                          "source's url", AT)
        collect(AT + timedelta(minutes=10))  # a poll with a cursor, of more pages where the API has them: one line
        assert current_warning(store.source_row(name) or {}) == (warned[0], AT + timedelta(minutes=10))
        server.serve_fixture(f"/old{path}", fixture, validators=False)
        collect(AT + timedelta(minutes=20))
    assert current_warning(store.source_row(name) or {}) is None


# A field of one item in each JSON case's main fixture that the collector cannot do without (its id, or the time it
# pages by): renamed, as an API that changed it would send it.
NEEDED = {
    "reddit-oauth": b'"created_utc": 1795788475', "hackernews": b'"objectID": "42210001"',
    "discourse-latest": b'"id": 4821,', "discourse-search": b'"id": 30211,', "lemmy": b'"id": 118822,',
    "mastodon": b'"id": "113551234567890123"', "bluesky": b'"uri": "at://did:plc:z72i7hdynmk6r22z27h6tvur/',
    "statuspage": b'"id": "p3k9d2m1x8qz"',
}


@pytest.mark.parametrize("case", JSON_CASES, ids=lambda c: c.id)
def test_an_item_a_json_api_lists_without_its_id_or_time_is_the_sources_warning_until_a_clean_poll(
        server: FakeServer, store: Store, case: Case) -> None:
    # Skipped without a word: an API that renamed or retyped such a field was a source in good health finding nothing.
    [(path, fixture)] = case.routes.items()
    body = server.fixture_bytes(fixture)
    assert body.count(NEEDED[case.id]) == 1
    with _collecting(server, store, case) as (name, collect):
        server.serve(path, Reply(200, body.replace(NEEDED[case.id], b'"renamed' + NEEDED[case.id][1:]),
                                 content_type="application/json"))
        collect(AT)
        assert current_warning(store.source_row(name) or {}) == (
            f"{server.url}{path} listed 1 item without a usable id or time; skipped", AT)
        server.serve_fixture(path, fixture, validators=False)
        collect(AT + timedelta(minutes=10))
    assert current_warning(store.source_row(name) or {}) is None

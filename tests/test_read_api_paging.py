"""Paging through /api/v1/incidents (docs/api.md#paging) on a real 127.0.0.1 server over a real SQLite store: every
incident once, in order, with incidents opened between pages; ``until=`` for a range; the kept answers; the index
the pages are read by."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from sqlplan import query_plan
from test_http_cache import cached
from test_read_api import NOW, Api, get, served, serving, write_config

from miner.read_api import ReadApi
from miner.store import Store

# Opening times of the incidents added to fill()'s three: three share one, as a detector run opening several
# services' incidents in one bucket gives them; ids then order them.
TIE = NOW - timedelta(days=3)
OPENED = [NOW - timedelta(days=8), TIE, NOW - timedelta(days=6, hours=5), TIE, NOW - timedelta(hours=30), TIE,
          NOW - timedelta(days=2, hours=1), NOW - timedelta(days=9), NOW - timedelta(hours=2)]


def open_incident(store: Store, service: str, opened: datetime, resolved: bool = True) -> int:
    ident = store.open_incident(service, opened, {"peak_complaints": 3, "total_complaints": 3}, {})
    if resolved:
        store.update_incident(ident, opened + timedelta(hours=1),
                              {"status": "resolved", "resolved_at": opened + timedelta(hours=1)}, kind="resolve")
    return ident


def more(store: Store) -> None:
    for n, opened in enumerate(OPENED):
        open_incident(store, ("WhatsApp", "Instagram", "MTN Uganda")[n % 3], opened)


@pytest.fixture
def many(tmp_path: Path) -> Iterator[Api]:
    """fill()'s three incidents and OPENED's nine: twelve, over ten days."""
    with served(tmp_path, write_config(tmp_path), more) as api:
        yield api


def newest_first(store: Store) -> list[int]:
    return [r["id"] for r in store.incidents_newest_first(status=None, service=None, since=None, limit=100)]


def follow(api: Api, path: str, between: Any = None) -> tuple[list[int], list[dict[str, Any]]]:
    """The ids of every page from ``path`` on, following each page's ``next`` (checked against its Link header) as
    a client resolves it against the page's URL, calling ``between`` before each next page; and the pages."""
    ids: list[int] = []
    pages: list[dict[str, Any]] = []
    url = api.base + path
    while True:
        reply = httpx.get(url, timeout=10)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        pages.append(body)
        ids += [i["id"] for i in body["incidents"]]
        assert body["truncated"] == (body["next"] is not None)
        if body["next"] is None:
            assert "link" not in reply.headers
            return ids, pages
        assert reply.headers["link"] == f'<{body["next"]}>; rel="next"'
        assert reply.links["next"]["url"] == body["next"]
        if between is not None:
            between(len(pages))
        url = urljoin(url, body["next"])


def test_paging_gives_every_incident_once_in_order(many: Api) -> None:
    expected = newest_first(many.store)
    assert len(expected) == 12
    ids, pages = follow(many, "/api/v1/incidents?since=2026&limit=5")
    assert ids == expected
    assert [len(p["incidents"]) for p in pages] == [5, 5, 2]
    # The ties on one opening time come highest id first, and a page boundary falls between two of them.
    tied = [i["id"] for p in pages for i in p["incidents"] if i["opened_at"] == TIE.isoformat()]
    assert len(tied) == 3 and tied == sorted(tied, reverse=True)
    assert pages[0]["cursor"] is None and all(p["cursor"] for p in pages[1:])
    assert all(p["limit"] == 5 and p["since"] == "2026-01-01T00:00:00+00:00" and p["until"] is None for p in pages)


def test_incidents_opened_between_pages_shift_no_later_page(many: Api) -> None:
    # An offset would have shown the last of a page again on the next for each incident opened meanwhile.
    expected = newest_first(many.store)
    assert expected == [1, 12, 3, 8, 10, 9, 7, 5, 6, 4, 11, 2]  # 9, 7, 5 opened at TIE
    late: list[int] = []

    def opening(page: int) -> None:
        open_incident(many.store, "Instagram", NOW - timedelta(minutes=page), resolved=False)  # the latest opened
        if page == 3:  # ended at 9, within the tie
            # Opened at the tie's time, with the highest id: it comes before 9, on a page read already.
            open_incident(many.store, "WhatsApp", TIE)
            # Stored late with an earlier opening time (a replay): it comes after 11 (the 18th at 12:07:30).
            late.append(open_incident(many.store, "WhatsApp", NOW - timedelta(days=9, hours=6)))

    ids, pages = follow(many, "/api/v1/incidents?since=2026&limit=2", opening)
    assert [[i["id"] for i in p["incidents"]] for p in pages] == [[1, 12], [3, 8], [10, 9], [7, 5], [6, 4],
                                                                   [11, late[0]], [2]]
    assert ids == [*expected[:-1], *late, expected[-1]]
    assert len(newest_first(many.store)) == 12 + 6 + 2  # opened after each page but the last, and the two


def test_the_default_week_is_paged_as_it_was_when_the_first_page_was_read(many: Api) -> None:
    # next carries since as applied: a page read a minute later is of the same week, not of the week to then.
    _, pages = follow(many, "/api/v1/incidents?limit=3")
    week = (NOW - timedelta(days=7)).isoformat()
    assert {p["since"] for p in pages} == {week}
    assert all(parse_qs(urlsplit(p["next"]).query)["since"] == [week] for p in pages[:-1])
    ids = [i["id"] for p in pages for i in p["incidents"]]
    assert ids == [i for i in newest_first(many.store) if i in ids] and len(ids) == 9  # all but days 8, 9, 10


def test_a_client_that_does_not_page_gets_the_answer_it_got(many: Api) -> None:
    status, body, headers = get(many, "/api/v1/incidents?status=resolved&limit=100")
    assert status == 200
    assert list(body)[:8] == ["version", "now", "status", "service", "since", "limit", "incidents", "truncated"]
    assert (body["truncated"], body["until"], body["cursor"], body["next"]) == (False, None, None, None)
    assert "link" not in headers


@pytest.mark.parametrize(("query", "since", "until", "opened"), [
    # Opened before until, and open at some time since since: [since, until) overlaps the incident.
    ("since=2026-11-20&until=2026-11-25", "2026-11-20T00:00:00+00:00", "2026-11-25T00:00:00+00:00",
     [*["2026-11-24T12:07:30"] * 3, "2026-11-21T07:07:30"]),
    ("since=2026-11&until=2026-11-18T13:00Z", "2026-11-01T00:00:00+00:00", "2026-11-18T13:00:00+00:00",
     ["2026-11-18T12:07:30", "2026-11-17T12:07:30"]),
    ("since=2026&until=2026-11-19", "2026-01-01T00:00:00+00:00", "2026-11-19T00:00:00+00:00",
     ["2026-11-18T12:07:30", "2026-11-17T12:07:30"]),
    # Without since, the week to until: the incident opened at 12:07:30 on the 18th resolved an hour after.
    ("until=2026-11-25T12:07:30%2B00:00", "2026-11-18T12:07:30+00:00", "2026-11-25T12:07:30+00:00",
     ["2026-11-25T11:07:30", *["2026-11-24T12:07:30"] * 3, "2026-11-21T07:07:30", "2026-11-19T12:07:30",
      "2026-11-18T12:07:30"]),
    ("since=2025&until=2026", "2025-01-01T00:00:00+00:00", "2026-01-01T00:00:00+00:00", []),
    # An until in the first week there is: the week to it from the first time (its week before raised: a 500).
    ("until=0001-01-02", "0001-01-01T00:00:00+00:00", "0001-01-02T00:00:00+00:00", []),
    ("since=2025&until=2027", "2025-01-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00", [
        "2026-11-27T12:00:00", "2026-11-27T10:07:30", "2026-11-26T12:07:30", "2026-11-26T06:07:30",
        "2026-11-25T11:07:30", "2026-11-24T12:07:30", "2026-11-24T12:07:30", "2026-11-24T12:07:30",
        "2026-11-21T07:07:30", "2026-11-19T12:07:30", "2026-11-18T12:07:30", "2026-11-17T12:07:30"]),
])
def test_until_reads_a_range(many: Api, query: str, since: str, until: str, opened: list[str]) -> None:
    status, body, _ = get(many, f"/api/v1/incidents?{query}")
    assert status == 200, body
    assert (body["since"], body["until"]) == (since, until)
    assert [i["opened_at"] for i in body["incidents"]] == [f"{o}+00:00" for o in opened]


def test_a_range_is_paged_within_it(many: Api) -> None:
    ids, pages = follow(many, "/api/v1/incidents?since=2026-11-18&until=2026-11-27&limit=2")
    assert len(pages) == 5
    assert all(p["until"] == "2026-11-27T00:00:00+00:00" for p in pages)
    inside = [r["id"] for r in many.store.incidents_newest_first(status=None, service=None, since=None, limit=100)
              if (r["resolved_at"] or "9") >= "2026-11-18" and r["opened_at"] < "2026-11-27"]
    assert ids == inside and len(ids) == 9


@pytest.mark.parametrize(("query", "error"), [
    ("until=yesterday", "until: not an ISO 8601 time (got 'yesterday'); give one such as 2026-11-27T12:00:00Z, "
                        "2026-11-27, 2026-11 or 2026 (a time without an offset is UTC)"),
    ("until=0001-01-01T00:00:00%2B05:00", "until: '0001-01-01T00:00:00+05:00' is out of range"),
    ("since=2026&until=2026", "until: 2026-01-01T00:00:00+00:00 is not after since (2026-01-01T00:00:00+00:00)"),
    ("until=0001-01-01", "until: 0001-01-01T00:00:00+00:00 is not after since (0001-01-01T00:00:00+00:00)"),
    ("since=2026-11-20&until=2026-11-19", "until: 2026-11-19T00:00:00+00:00 is not after since"),
    ("cursor=abc", "cursor: not one this API gave (got 'abc'); follow a page's next as it is"),
    ("cursor=MjAyNi0xMS0yN1QxMjowMDowMCswMDowMA", "cursor: not one this API gave"),  # a time without its id
    ("cursor=eWVzdGVyZGF5fDE", "cursor: not one this API gave"),  # "yesterday|1"
    ("cursor=%E2%82%AC", "cursor: not one this API gave"),
    ("cursor=", "cursor: not one this API gave"),
    ("cursor=a&cursor=b", "cursor: given 2 times; give it once"),
])
def test_a_bad_until_or_cursor_is_a_400_naming_it(many: Api, query: str, error: str) -> None:
    status, body, headers = get(many, f"/api/v1/incidents?{query}")
    assert status == 400 and body["error"].startswith(error), body
    assert headers["cache-control"] == "no-store" and "link" not in headers


def test_each_page_is_kept_under_its_own_query_with_its_link(tmp_path: Path) -> None:
    # http_cache keeps answers under the path and query: a page's cursor is its own key, and the Link header is kept
    # with the body it was read with.
    with cached(tmp_path, seconds=60) as served_api:
        first = httpx.get(served_api.base + "/api/v1/incidents?since=2026&limit=1", timeout=10)
        open_incident(served_api.store, "Instagram", NOW - timedelta(minutes=1), resolved=False)
        again = httpx.get(served_api.base + "/api/v1/incidents?since=2026&limit=1", timeout=10)
        assert again.headers["age"] and again.json() == first.json()  # kept: the new incident shows within 60 s
        assert again.headers["link"] == first.headers["link"] == f'<{first.json()["next"]}>; rel="next"'
        reads = len(served_api.reads)
        second = httpx.get(urljoin(str(first.url), first.json()["next"]), timeout=10)
        assert len(served_api.reads) == reads + 1  # read, not the first page kept
        ids = [i["id"] for i in first.json()["incidents"] + second.json()["incidents"]]
        assert ids == newest_first(served_api.store)[1:3]  # [0]: the one opened since the first page was read


def plan(read: ReadApi, reader: Store, query: str) -> str:
    """The query plan of the store's read of incidents for the /api/v1/incidents answer to ``query``."""
    statements: list[str] = []
    reader.database.conn.set_trace_callback(statements.append)
    answer = read.answer("/api/v1/incidents", query)
    reader.database.conn.set_trace_callback(None)
    assert answer is not None and answer[0] == 200, answer
    sql = next(s for s in statements if "ORDER BY opened_at DESC" in s)
    return " | ".join(query_plan(reader.database.conn, sql))


def next_query(read: ReadApi, query: str) -> str:
    first = read.answer("/api/v1/incidents", query)
    assert first is not None and first[1]["next"]
    return str(first[1]["next"])[1:]


def test_a_page_is_read_by_the_index_of_opening_times(tmp_path: Path) -> None:
    # Without it each page was a scan and sort of every incident (bench/paging_bench.py: 0.05-0.27 s of 100,000).
    with served(tmp_path, write_config(tmp_path), more) as api:
        reader = Store.open(tmp_path / "miner.sqlite")
        try:
            read = ReadApi(api.config, lambda: reader, lambda: None, lambda: NOW)
            found = plan(read, reader, next_query(read, "since=2026&limit=2"))
            assert found == "SEARCH incidents USING INDEX incidents_opened (opened_at<?)", found
        finally:
            reader.close()


def test_a_page_of_one_service_is_read_in_order_by_its_index(tmp_path: Path) -> None:
    # Before migration 0035 every page of ?service= sorted all the service's incidents (USE TEMP B-TREE FOR ORDER BY:
    # 36-90 ms for a page of 1000 of one service's 20,000, bench/paging_bench.py); with ?status= the index by status
    # is read, or a page of the one open read all the service's incidents.
    with served(tmp_path, write_config(tmp_path), more) as api:
        reader = Store.open(tmp_path / "miner.sqlite")
        try:
            read = ReadApi(api.config, lambda: reader, lambda: None, lambda: NOW)
            by_service = "SEARCH incidents USING INDEX incidents_service_opened (service=?"
            by_status = "SEARCH incidents USING INDEX incidents_service_status (service=? AND status=?"
            expected = {"service=WhatsApp&since=2026&limit=1": f"{by_service})",
                        next_query(read, "service=WhatsApp&since=2026&limit=1"): f"{by_service} AND opened_at<?)",
                        "service=WhatsApp&until=2026-12-01": f"{by_service} AND opened_at<?)",
                        "service=WhatsApp&status=open": f"{by_status})",
                        next_query(read, "service=WhatsApp&status=resolved&since=2026&limit=1"):
                            f"{by_status} AND opened_at<?)"}
            assert {query: plan(read, reader, query) for query in expected} == expected
        finally:
            reader.close()


@pytest.mark.parametrize(("query", "since", "until", "opened"), [
    # JavaScript's toISOString() always sends milliseconds. The three opened at 12:07:30 resolved at 13:07:30: a
    # millisecond after that, they had ended; a millisecond after 12:07:30, they had opened.
    ("since=2026-11-24T13:07:30.123Z&until=2026-11-25", "2026-11-24T13:07:30.123+00:00", "2026-11-25T00:00:00+00:00",
     []),
    ("since=2026-11-24T13:07:29.999Z&until=2026-11-25", "2026-11-24T13:07:29.999+00:00", "2026-11-25T00:00:00+00:00",
     ["2026-11-24T12:07:30"] * 3),
    ("since=2026-11-24&until=2026-11-24T12:07:30.001Z", "2026-11-24T00:00:00+00:00", "2026-11-24T12:07:30.001+00:00",
     ["2026-11-24T12:07:30"] * 3),
    ("since=2026-11-24&until=2026-11-24T12:07:30.000001Z", "2026-11-24T00:00:00+00:00",
     "2026-11-24T12:07:30.000001+00:00", ["2026-11-24T12:07:30"] * 3),
    ("since=2026-11-24&until=2026-11-24T12:07:30.000Z", "2026-11-24T00:00:00+00:00", "2026-11-24T12:07:30+00:00",
     []),
])
def test_fractional_seconds_bound_exactly(many: Api, query: str, since: str, until: str, opened: list[str]) -> None:
    status, body, _ = get(many, f"/api/v1/incidents?{query}")
    assert status == 200, body
    assert (body["since"], body["until"]) == (since, until)
    assert [i["opened_at"] for i in body["incidents"]] == [f"{o}+00:00" for o in opened]


def test_a_fractional_since_is_carried_to_the_next_page(many: Api) -> None:
    # The next page is read with the since given, not that second: a page read at 13:07:30 took in the three.
    ids, pages = follow(many, "/api/v1/incidents?since=2026-11-24T13:07:30.5Z&until=2026-11-27&limit=1")
    assert len(pages) == 3 and all(p["since"] == "2026-11-24T13:07:30.500+00:00" for p in pages)
    assert ids == [r["id"] for r in many.store.incidents_newest_first(status=None, service=None, since=None, limit=100)
                   if (r["resolved_at"] or "9") > "2026-11-24T13:07:30+00:00" and r["opened_at"] < "2026-11-27"]


def test_the_default_since_is_the_week_to_the_second_now_is_given_to(tmp_path: Path) -> None:
    # The service's clock has microseconds; the answer gives now to the second, and the default since, a week
    # before it, to the second too: not ".250000" more than the now it says it is a week before.
    with served(tmp_path, write_config(tmp_path), more) as api:
        reader = Store.open(tmp_path / "miner.sqlite")
        try:
            read = ReadApi(api.config, lambda: reader, lambda: None, lambda: NOW + timedelta(milliseconds=250))
            with serving(read) as base:
                body = httpx.get(base + "/api/v1/incidents?limit=1", timeout=10).json()
        finally:
            reader.close()
    assert (body["now"], body["since"]) == ("2026-11-27T12:07:30+00:00", "2026-11-20T12:07:30+00:00")
    assert parse_qs(urlsplit(body["next"]).query)["since"] == ["2026-11-20T12:07:30+00:00"]


def more_open(store: Store) -> None:
    """more()'s incidents, and two open at TIE besides fill()'s one open."""
    more(store)
    for service in ("Instagram", "MTN Uganda"):
        open_incident(store, service, TIE, resolved=False)


def test_the_open_incidents_of_every_service_are_read_by_the_index_of_open_ones(tmp_path: Path) -> None:
    # Before migration 0037 ?status=open (what on-call dashboards poll) walked the index of opening times over every
    # incident, reading each one's row for its status, for the few open: 26-30 ms per 100,000 (bench/paging_bench.py).
    with served(tmp_path, write_config(tmp_path), more_open) as api:
        reader = Store.open(tmp_path / "miner.sqlite")
        try:
            read = ReadApi(api.config, lambda: reader, lambda: None, lambda: NOW)
            by_open = "USING INDEX incidents_open"
            expected = {"status=open": f"SCAN incidents {by_open}",
                        "status=open&since=2026&limit=1": f"SCAN incidents {by_open}",
                        next_query(read, "status=open&since=2026&limit=1"): f"SEARCH incidents {by_open} (opened_at<?)",
                        "status=open&until=2026-11-20": f"SEARCH incidents {by_open} (opened_at<?)"}
            assert {query: plan(read, reader, query) for query in expected} == expected
        finally:
            reader.close()
        # In the same order, each once, a page at a time as before.
        opened = [r["id"] for r in api.store.incidents_newest_first(status=None, service=None, since=None, limit=100)
                  if r["status"] == "open"]
        assert len(opened) == 3
        assert follow(api, "/api/v1/incidents?status=open&since=2026&limit=1")[0] == opened

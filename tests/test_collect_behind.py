"""A poll that stops before it has read everything new since the last one (the page cap, a rate limit, a failed
later page), where the next polls read the rest: the result says so (FetchResult.behind), the store keeps it on the
source's row (sources.behind), and the detector waits for those polls, detector.settle_minutes at most. Real
collectors against a 127.0.0.1 server that pages the way the API does, on a real SQLite store."""

from __future__ import annotations

import copy
import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fakeserver import FakeServer, Recorded, Reply

from miner.classify import Classifier
from miner.collectors import Poller
from miner.collectors.paging import Backlog, join_cursor
from miner.config import SourceConfig, parse_config
from miner.pipeline import Pipeline
from miner.records import FetchResult, SourceState
from miner.store import Store
from miner.store.migrations import MIGRATIONS, apply_migrations
from miner.timeutil import floor_time, iso

WIDTH = timedelta(minutes=5)


def json_reply(body: object) -> Reply:
    return Reply(200, json.dumps(body).encode(), content_type="application/json")


class RecordedMastodon:
    """A tag timeline paged as Mastodon pages it (app/models/concerns/paginable.rb: a page is newest first, at most
    40; max_id pages back, since_id answers the newest after it, min_id the oldest), its statuses the recorded
    payload's first one (a Signal complaint) under snowflake ids of the times they are given."""

    def __init__(self, server: FakeServer) -> None:
        self.template: dict[str, Any] = json.loads(server.fixture_bytes("mastodon/tag_timeline.json"))[0]
        self.ids: list[int] = []
        server.serve("/api/v1/timelines/tag/outage", self.reply)

    def add(self, when: datetime) -> None:
        self.ids.append((int(when.timestamp() * 1000) << 16) + len(self.ids))

    def status(self, ident: int) -> dict[str, Any]:
        status = copy.deepcopy(self.template)
        created = datetime.fromtimestamp((ident >> 16) / 1000, UTC)
        status.update(id=str(ident), created_at=created.isoformat().replace("+00:00", "Z"),
                      uri=f"https://mastodon.social/users/ferriswheel/statuses/{ident}",
                      url=f"https://mastodon.social/@ferriswheel/{ident}")
        status["account"]["url"] = f"https://mastodon.social/@user{ident % 100_000}"  # each its own author
        return status

    def reply(self, request: Recorded) -> Reply:
        limit = min(int(request.param("limit") or 20), 40)
        max_id, since_id, min_id = (int(request.param(k) or 0) or None for k in ("max_id", "since_id", "min_id"))
        chosen = [i for i in sorted(self.ids) if (max_id is None or i < max_id)
                  and (since_id is None or i > since_id) and (min_id is None or i > min_id)]
        page = chosen[:limit] if min_id is not None else chosen[-limit:]
        return json_reply([self.status(i) for i in reversed(page)])


def ticker(config_text: str, store: Store, classifier: Classifier, service: str,
           burst: datetime) -> tuple[Poller, Callable[[datetime], tuple[int, datetime]]]:
    """A poller, and a tick at ``now``: poll, classify and detect; the posts counted in the bucket of ``burst`` and
    the last bucket the detector scored."""
    config = parse_config(config_text)
    pipe = Pipeline(config, store, classifier)
    poller = Poller(config.collect, config.services, hash_key=b"k")

    def tick(now: datetime) -> tuple[int, datetime]:
        poller.ctx.now = lambda: now
        pipe.collect(now, poller, due_only=False)
        pipe.classify_pending(now)
        pipe.detect(now)
        saved = store.detector_state(service)
        assert saved is not None
        return sum(b["posts"] for b in store.series(service, burst, burst + WIDTH)), saved.last_bucket

    return poller, tick


def test_a_bucket_waits_for_a_mastodon_poll_the_page_cap_cut_short(server: FakeServer, store: Store,
                                                                   classifier: Classifier) -> None:
    # A burst of 150 statuses past the page cap (3 pages: the newest, then 2 forward from the cursor) is read over
    # two polls, the oldest 80 and the newest 40 first: the cursor shows nothing of the 30 between, so the bucket
    # that had just ended was scored after the first poll, on 120 of its 150 posts.
    api = RecordedMastodon(server)
    base = floor_time(datetime.now(UTC), WIDTH) - timedelta(hours=1)
    burst = base + WIDTH
    api.add(base - timedelta(seconds=60))
    poller, tick = ticker(f'[[services]]\nname = "Signal"\n\n[[sources]]\nname = "masto"\ntype = "mastodon"\n'
                          f'url = "{server.url}"\nquery = "#outage"\n\n[collect]\nmax_pages = 3\n\n'
                          '[detector]\nbucket_minutes = 5\n', store, classifier, "Signal", burst)
    with poller:
        tick(base + timedelta(minutes=1))
        for i in range(150):
            api.add(burst + timedelta(seconds=i))  # one a second
        polls = [tick(burst + timedelta(minutes=m)) for m in (6, 11)]
    # 120 after the bucket's end: it waits; the rest with the next poll: scored, with the bucket after it.
    assert polls == [(120, base - WIDTH), (150, burst + WIDTH)]


class RecordedLemmy:
    """Lemmy's search (type_=All, sort=New): posts and comments two lists, newest first, page=N the Nth `limit` of
    each; its posts the recorded payload's first one (a Discord complaint) published at the times given, no
    comments. ``fail_page``: the page answered 429 instead, once."""

    def __init__(self, server: FakeServer) -> None:
        self.template: dict[str, Any] = json.loads(server.fixture_bytes("lemmy/search.json"))["posts"][0]
        self.published: list[datetime] = []
        self.fail_page: int | None = None
        server.serve("/api/v3/search", self.reply)

    def view(self, n: int) -> dict[str, Any]:
        view = copy.deepcopy(self.template)
        view["post"].update(id=n + 1, published=self.published[n].isoformat().replace("+00:00", "Z"),
                            ap_id=f"https://lemmy.world/post/{n + 1}")
        view["creator"]["actor_id"] = f"https://lemmy.world/u/user{n}"  # each its own author
        return view

    def reply(self, request: Recorded) -> Reply:
        limit, page = int(request.param("limit") or 10), int(request.param("page") or 1)
        if page == self.fail_page:
            self.fail_page = None
            return Reply(429, b"", headers={"Retry-After": "60"})
        newest_first = sorted(range(len(self.published)), key=lambda n: self.published[n], reverse=True)
        return json_reply({"type_": "All", "communities": [], "users": [], "comments": [],
                           "posts": [self.view(n) for n in newest_first[(page - 1) * limit:page * limit]]})


def test_a_bucket_waits_for_a_lemmy_poll_a_rate_limit_cut_short(server: FakeServer, store: Store,
                                                                classifier: Classifier) -> None:
    # Lemmy pages by offset only: a 429 on a later page keeps the cursor where it was, and the next poll reads down
    # to it again. The poll that got the 429 had polled after the bucket's end with its newest page only.
    api = RecordedLemmy(server)
    base = floor_time(datetime.now(UTC), WIDTH) - timedelta(hours=1)
    burst = base + WIDTH
    api.published.append(base - timedelta(seconds=60))
    poller, tick = ticker(f'[[services]]\nname = "Discord"\n\n[[sources]]\nname = "lemmy"\ntype = "lemmy"\n'
                          f'url = "{server.url}"\nquery = "discord"\n\n[detector]\nbucket_minutes = 5\n',
                          store, classifier, "Discord", burst)
    with poller:
        tick(base + timedelta(minutes=1))
        api.published += [burst + timedelta(seconds=i) for i in range(120)]
        api.fail_page = 2
        polls = [tick(burst + timedelta(minutes=m)) for m in (6, 11)]
    assert polls == [(50, base - WIDTH), (120, burst + WIDTH)]


def test_the_store_keeps_whether_the_last_poll_is_behind_until_one_reads_everything(store: Store) -> None:
    source = SourceConfig("masto", "mastodon", url="https://mastodon.example", query="#outage")
    store.sync_sources([source])
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    def behind() -> int:
        row = store.source_row("masto")
        assert row is not None
        return int(row["behind"])

    store.save_fetch("masto", FetchResult(state=SourceState(cursor="7"), behind=True), now, now)
    assert behind() == 1
    store.save_fetch("masto", FetchResult(state=SourceState(cursor="9")), now, now)
    assert behind() == 0
    store.save_fetch("masto", FetchResult(state=SourceState(cursor="11"), behind=True), now, now)
    # The cursor is the old endpoint's, and so is what its poll left unread: nothing of it is waited for.
    assert store.sync_sources([SourceConfig("masto", "mastodon", url="https://other.example", query="#outage")])
    assert behind() == 0


def test_the_upgrade_marks_the_sources_whose_cursor_keeps_windows_left_unread(tmp_path: Path) -> None:
    # Before sources.behind, the detector read a poll cut short from the windows its cursor kept (Hacker News,
    # Reddit, Bluesky): a source stored mid-burst keeps being waited for across the upgrade, and no other is.
    path = tmp_path / "old.sqlite"
    cursors = {"hn": join_cursor("1700000000", [Backlog("1699999000", "1699999500")]),
               "hn_done": "1700000000", "feed": "2026-12-01T12:00:00+00:00", "forum": "post:512",
               "aws": json.dumps({"events": []}), "odd": "{not json", "empty": join_cursor("5", []), "new": None}
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        apply_migrations(conn, MIGRATIONS[:12])  # the schema before sources.behind
        conn.executemany("INSERT INTO sources (name, type, cursor, last_ok_at) VALUES (?, 'x', ?, ?)",
                         [(name, cursor, iso(datetime(2026, 12, 1, tzinfo=UTC))) for name, cursor in cursors.items()])
    conn.close()
    store = Store.open(path)
    assert {r["name"]: r["behind"] for r in store.source_rows()} == {name: int(name == "hn") for name in cursors}
    assert {r["name"]: r["cursor"] for r in store.source_rows()} == cursors
    store.close()


def test_a_store_of_release_0_1_0_upgrades_with_no_source_behind(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        apply_migrations(conn, MIGRATIONS[:2])  # the schema of miner 0.1.0
        conn.execute("INSERT INTO sources (name, type, url, cursor, polls) "
                     "VALUES ('hn', 'hackernews', 'https://hn.algolia.com', '1700000000', 4)")
    conn.close()
    store = Store.open(path)
    assert [(r["name"], r["cursor"], r["polls"], r["behind"]) for r in store.source_rows()] == [
        ("hn", "1700000000", 4, 0)]
    store.close()

"""Posts parsed per second by the collectors (parse + normalise + match), and parsed+stored per second.

    PYTHONPATH=. .venv/bin/python bench/collect_bench.py [--seconds 5] [--store]

Two workloads, both through the real collector code (Poller.poll: response checks, feedparser or JSON,
HTML stripping, author hashing, service matching) with the HTTP layer replaced by an in-memory httpx
transport, so that loopback networking is not what is measured:

* ``fixtures``: every recorded payload in tests/fixtures/collectors (9 source types), round-robin;
* ``big-rss``: one 2,399-entry RSS feed built from the real labelled posts in /work/shared/data/labels.

With ``--store`` (needs miner.store.Store) the same parsed results are also saved with
``Store.save_fetch`` into a real SQLite file; external ids and links get a per-round suffix, and dates move back
a second per round, so every round inserts new rows instead of hitting the dedupe path (a feed's entry listed again
under a new id is found by its link, text and date: a new id alone is not a new post).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import describe  # noqa: E402

from miner.collectors import CollectSettings, Poller  # noqa: E402
from miner.config import ServiceConfig, SourceConfig  # noqa: E402
from miner.records import FetchResult, SourceState  # noqa: E402

FIX = ROOT / "tests" / "fixtures" / "collectors"
LABELS = Path(os.environ.get("MINER_SHARED_DATA", "/work/shared/data")) / "labels" / "train.jsonl"
SERVICES = [ServiceConfig(n, a) for n, a in [
    ("WhatsApp", ("WA",)), ("Instagram", ()), ("Facebook", ("FB",)), ("X", ("Twitter",)), ("Discord", ()),
    ("Slack", ()), ("GitHub", ()), ("Cloudflare", ()), ("AWS", ("Amazon Web Services",)), ("Outlook", ()),
    ("Signal", ()), ("Telekom", ()), ("Vodafone", ()), ("MTN", ()), ("Airtel", ()), ("Netflix", ()),
    ("PlayStation Network", ("PSN",)), ("Xbox Live", ("Xbox",)), ("Spotify", ()), ("Google", ()),
]]
ENV = {"ID": "x", "SECRET": "y"}
B = "http://bench.local"

# (source, {path: fixture}) pairs: every recorded payload, through its own collector.
SOURCES: list[tuple[SourceConfig, dict[str, str]]] = [
    (SourceConfig("forum", "rss", url=f"{B}/latest.rss"), {"/latest.rss": "rss/forum_latest.rss"}),
    (SourceConfig("reddit", "reddit", url=B, query="whatsapp down"), {"/search.rss": "reddit/search.rss"}),
    (SourceConfig("reddit-api", "reddit", url=B, query="outlook", env={"client_id": "ID", "client_secret": "SECRET"}),
     {"/api/v1/access_token": "reddit/token.json", "/search.json": "reddit/search.json"}),
    (SourceConfig("hn", "hackernews", url=B, query="outage"),
     {"/api/v1/search_by_date": "hackernews/search_by_date.json"}),
    (SourceConfig("disc", "discourse", url=B), {"/latest.json": "discourse/latest.json"}),
    (SourceConfig("lemmy", "lemmy", url=B, query="discord"), {"/api/v3/search": "lemmy/search.json"}),
    (SourceConfig("masto", "mastodon", url=B, query="outage"),
     {"/api/v1/timelines/tag/outage": "mastodon/tag_timeline.json"}),
    (SourceConfig("bsky", "bluesky", url=B, query="down", env={"identifier": "ID", "password": "SECRET"}),
     {"/xrpc/com.atproto.server.createSession": "bluesky/create_session.json",
      "/xrpc/app.bsky.feed.searchPosts": "bluesky/search_posts.json"}),
    (SourceConfig("gh", "statuspage", url=B), {"/api/v2/incidents.json": "statuspage/incidents.json"}),
    (SourceConfig("sauce", "status_feed", url=f"{B}/history.atom"),
     {"/history.atom": "status/saucelabs_us-west-1_history.atom"}),
    (SourceConfig("parse", "status_feed", url=f"{B}/history.rss"), {"/history.rss": "status/parse_status_history.rss"}),
]


def big_rss() -> bytes:
    """An RSS feed of every labelled real post (texts from public datasets, see shared/data/README.md)."""
    start = datetime(2026, 11, 27, tzinfo=UTC)
    items = []
    with LABELS.open(encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            row = json.loads(line)
            when = format_datetime(start - timedelta(minutes=i), usegmt=True)
            body = escape("<p>" + row["text"] + "</p>")
            items.append(f"<item><title>{escape(row['text'][:80])}</title><description>{body}</description>"
                         f"<guid>{escape(row['id'])}</guid><pubDate>{when}</pubDate>"
                         f"<author>user{i % 97}@example.org</author></item>")
    return ('<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>bench</title>'
            + "".join(items) + "</channel></rss>").encode()


def transport(routes: dict[str, tuple[bytes, str]]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        body, ctype = routes[request.url.path]
        return httpx.Response(200, content=body, headers={"Content-Type": ctype})

    return httpx.MockTransport(handle)


def ctype(name: str) -> str:
    return "application/json" if name.endswith(".json") else "application/rss+xml"


def run(label: str, poll: Callable[[], list[tuple[str, FetchResult]]], seconds: float,
        save: Callable[[str, FetchResult, int], None] | None) -> None:
    items = rounds = 0
    parse_time = store_time = 0.0
    while parse_time + store_time < seconds:
        t0 = time.perf_counter()
        results = poll()
        t1 = time.perf_counter()
        if save is not None:
            for name, result in results:
                save(name, result, rounds)
        t2 = time.perf_counter()
        parse_time += t1 - t0
        store_time += t2 - t1
        items += sum(len(r.posts) + len(r.incidents) for _, r in results)
        rounds += 1
    line = f"{label:10s} {items:8d} items in {rounds:5d} rounds: {items / parse_time:9.0f} parsed/s"
    if save is not None:
        line += f", {items / (parse_time + store_time):8.0f} parsed+stored/s"
    print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="time per workload")
    parser.add_argument("--store", action="store_true", help="also save into a real SQLite store")
    args = parser.parse_args()
    print(f"machine: {describe()}")

    routes = {p: ((FIX / f).read_bytes(), ctype(f)) for _, paths in SOURCES for p, f in paths.items()}
    routes["/big.rss"] = (big_rss(), "application/rss+xml")
    # Every entry read, as the numbers in docs/collectors.md were measured (by default a poll reads the newest 500).
    big = SourceConfig("big", "rss", url=f"{B}/big.rss", max_entries=10_000)
    settings = CollectSettings(max_body_bytes=50_000_000)
    poller = Poller(settings, SERVICES, hash_key=b"bench", environ=ENV)
    poller.ctx.client = httpx.Client(transport=transport(routes))

    save = None
    tmp = tempfile.TemporaryDirectory()
    if args.store:
        try:
            from miner.store import Store
        except ImportError:
            print("miner.store is not available: parse-only numbers")
        else:
            store = Store.open(Path(tmp.name) / "bench.sqlite")
            store.sync_sources([s for s, _ in SOURCES] + [big])
            now = datetime.now(UTC)

            def save(name: str, result: FetchResult, round_no: int) -> None:
                result = replace(
                    result,
                    posts=[replace(p, external_id=f"{p.external_id}#{round_no}",
                                   url=p.url and f"{p.url}#{round_no}",
                                   created_at=p.created_at - timedelta(seconds=round_no)) for p in result.posts],
                    incidents=[replace(i, external_id=f"{i.external_id}#{round_no}") for i in result.incidents],
                )
                stats = store.save_fetch(name, result, now, now + timedelta(minutes=5))
                if stats.posts_seen:
                    # The numbers would be of the dedupe path, much cheaper than storing a post.
                    sys.exit(f"{name}: {stats.posts_seen} of round {round_no}'s posts were found stored already")
    else:
        print("parse-only (pass --store to also measure saving into SQLite)")

    run("fixtures", lambda: [(s.name, poller.poll(s, SourceState())) for s, _ in SOURCES], args.seconds, save)
    run("big-rss", lambda: [(big.name, poller.poll(big, SourceState()))], args.seconds, save)
    poller.close()
    tmp.cleanup()


if __name__ == "__main__":
    main()

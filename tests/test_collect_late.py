"""Posts a search indexed late: kept from the page that reaches the cursor, and counted as late when stored.

A real loopback server answers Reddit's OAuth API with the recorded search listing (tests/fixtures/collectors/reddit),
its posts moved to recent times; the store is a real SQLite file.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fakeserver import FakeServer, Recorded, Reply

from miner.cli import main
from miner.collect_stage import late_text
from miner.collectors import Poller
from miner.collectors.normalise import hash_author
from miner.config import Config, SourceConfig, parse_config
from miner.pipeline import Pipeline
from miner.records import FetchResult, Post, SourceState
from miner.service import JobSpec, Service, ServiceOptions
from miner.store import Store
from miner.timeutil import iso

NOW = datetime.now(UTC).replace(microsecond=0)
ENVIRON = {"RID": "id", "RSECRET": "secret"}


class RecordedSearch:
    """/search.json answering the recorded listing, newest first, without the posts not indexed yet (``hidden``).
    Its newest post is moved to ``newest``; the others keep their distance to it (16 min 45 s and 2 h 07 min 55 s)."""

    def __init__(self, server: FakeServer, newest: datetime) -> None:
        data = json.loads(server.fixture_bytes("reddit/search.json"))
        self.children: list[dict[str, Any]] = data["data"]["children"]
        shift = int(newest.timestamp()) - max(c["data"]["created_utc"] for c in self.children)
        for child in self.children:
            child["data"]["created_utc"] += shift
        self.hidden: set[str] = set()
        server.serve_fixture("/api/v1/access_token", "reddit/token.json")
        server.serve("/search.json", self.reply)

    def created(self, name: str) -> int:
        return int(next(c["data"]["created_utc"] for c in self.children if c["data"]["name"] == name))

    def add(self, name: str, created: datetime, title: str) -> None:
        """A post shaped as the recorded one before it."""
        child = copy.deepcopy(self.children[0])
        child["data"].update(name=name, id=name[3:], created_utc=float(int(created.timestamp())), title=title,
                             permalink=f"/r/Outlook/comments/{name[3:]}/x/")
        self.children.append(child)

    def reply(self, request: Recorded) -> Reply:
        listed = sorted((c for c in self.children if c["data"]["name"] not in self.hidden),
                        key=lambda c: c["data"]["created_utc"], reverse=True)
        body = {"kind": "Listing", "data": {"after": None, "dist": len(listed), "children": listed}}
        return Reply(200, json.dumps(body).encode(), content_type="application/json")


def reddit_config(server: FakeServer, extra: str = "") -> Config:
    return parse_config(f'[[services]]\nname = "Outlook"\n\n[[sources]]\nname = "reddit"\ntype = "reddit"\n'
                        f'url = "{server.url}"\nquery = "outlook down"\ninterval = 60\n'
                        'env = { client_id = "RID", client_secret = "RSECRET" }\n' + extra)


def test_a_post_the_search_indexed_hours_late_on_the_page_reaching_the_cursor_is_stored_and_counted_late(
        server: FakeServer, store: Store) -> None:
    api = RecordedSearch(server, NOW - timedelta(hours=1))
    api.hidden = {"t3_1h0zz9a"}  # two hours older than the newest: not in the index yet at the first poll
    config = reddit_config(server)
    pipe = Pipeline(config, store)
    with Poller(config.collect, config.services, hash_key=b"k", environ=ENVIRON) as poller:
        [first] = pipe.collect(NOW, poller)
        api.hidden = set()  # indexed now, 2 h 07 min 55 s below the cursor: far past any look-back
        api.add("t3_1h1new1", NOW + timedelta(minutes=1), "Outlook down again?")
        [second] = pipe.collect(NOW + timedelta(minutes=2), poller)
        [third] = pipe.collect(NOW + timedelta(minutes=4), poller)
    late_by = api.created("t3_1h10abc") - api.created("t3_1h0zz9a")
    assert late_by == 7675
    assert (first.stored, first.posts_late) == (2, 0)
    # The late post and the new one stored; the two the first poll stored were sent again and not stored again.
    assert (second.stored, second.duplicates, second.posts_late, second.late_by_s) == (2, 2, 1, late_by)
    assert (third.stored, third.duplicates, third.posts_late) == (0, 4, 0)  # the late one is known now
    rows = store.database.rows("SELECT external_id, count(*) AS n FROM posts GROUP BY external_id")
    assert {r["external_id"]: r["n"] for r in rows} == {"t3_1h10abc": 1, "t3_1h0zzq1": 1, "t3_1h0zz9a": 1,
                                                         "t3_1h1new1": 1}
    source = store.source_row("reddit")
    assert source is not None and source["posts_stored"] == 4 and source["polls"] == 3
    matched = store.database.rows("SELECT p.external_id FROM post_services s JOIN posts p ON p.id = s.post_id")
    assert sorted(r["external_id"] for r in matched) == ["t3_1h10abc", "t3_1h1new1"]  # those naming Outlook, once
    # Each post waits for one verdict, and is counted in its bucket once it has it.
    assert len(store.posts_to_classify(100)) == 4


def test_the_service_says_once_a_round_how_many_posts_arrived_late(server: FakeServer, tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    api = RecordedSearch(server, NOW - timedelta(hours=1))
    api.hidden = {"t3_1h0zz9a"}
    config = reddit_config(server)
    service = Service(config, tmp_path / "miner.sqlite", ServiceOptions(jobs=(JobSpec("collect", 3600.0),),
                                                                          http=False))
    service._poller = Poller(config.collect, config.services, hash_key=b"k", environ=ENVIRON)
    try:
        service.job_collect(NOW)
        api.hidden = set()
        caplog.clear()  # the first round's line too, where an earlier test left the service's logger at INFO
        with caplog.at_level(logging.INFO, logger="miner.service"):
            service.job_collect(NOW + timedelta(minutes=2))
            service.job_collect(NOW + timedelta(minutes=4))  # nothing new
    finally:
        service.stop()
    line, quiet = [r for r in caplog.records if r.getMessage().startswith("collected from")]
    assert line.getMessage() == ("collected from 1 source: 1 new post, 0 errors (reddit: 1 post arrived late, up "
                                 "to 2 h 07 min)")
    assert [s["source"] for s in line.sources] == ["reddit"]  # type: ignore[attr-defined]
    # A poll that brought nothing is counted in the line, not listed in its JSON: 189 sources' entries at every
    # run were 90 MB of log a day.
    assert quiet.getMessage() == "collected from 1 source: 0 new posts, 0 errors"
    assert quiet.sources == []  # type: ignore[attr-defined]
    metrics = service.metrics.render().splitlines()
    assert 'miner_posts_late_total{source="reddit"} 1' in metrics
    assert 'miner_source_late_seconds{source="reddit"} 7675' in metrics


def test_the_page_reaching_an_old_cursor_brings_back_no_post_older_than_the_store_keeps(
        server: FakeServer, store: Store) -> None:
    config = reddit_config(server, "\n[store]\nretention_days = 7\n")
    # Six days ago: the first poll reads the recorded posts and one from eight days ago; the source is idle since.
    polled = NOW - timedelta(days=6)
    api = RecordedSearch(server, polled - timedelta(hours=1))
    api.add("t3_1gold01", NOW - timedelta(days=8), "Outlook down?")
    api.hidden = {"t3_1h0zz9a"}
    pipe = Pipeline(config, store)
    with Poller(config.collect, config.services, hash_key=b"k", environ=ENVIRON) as poller:
        pipe.collect(polled, poller)
        assert store.prune_posts(NOW - timedelta(days=7)) == 1  # the retention job
        api.hidden = set()
        api.add("t3_1h1new1", NOW - timedelta(minutes=1), "Outlook down again?")
        [report] = pipe.collect(NOW, poller)
    kept = {r["external_id"] for r in store.database.rows("SELECT external_id FROM posts")}
    # The post indexed late, within the days kept, is stored; the pruned one, on the same page, is not stored again.
    assert kept == {"t3_1h10abc", "t3_1h0zzq1", "t3_1h0zz9a", "t3_1h1new1"}
    assert (report.stored, report.duplicates, report.too_old, report.posts_late) == (2, 2, 1, 1)


def test_a_sources_first_poll_after_its_url_changed_counts_no_post_late(store: Store) -> None:
    feed = SourceConfig("feed", "rss", url="https://forum.example.net/latest.rss")
    known = Post("feed", "topic-1", "Outlook down?", NOW - timedelta(hours=1))
    store.sync_sources([feed])
    store.save_fetch("feed", FetchResult(posts=[known], state=SourceState(cursor=iso(known.created_at))), NOW, NOW)
    # Another feed under the same name: it starts afresh, and may list a post the old one had beside older ones.
    store.sync_sources([replace(feed, url="https://forum.example.net/c/outages.rss")])
    older = Post("feed", "topic-0", "Outlook down for anyone else?", NOW - timedelta(hours=5))
    first = store.save_fetch("feed", FetchResult(posts=[known, older], state=SourceState(cursor=iso(known.created_at))),
                             NOW, NOW)
    assert (first.posts_new, first.posts_late) == (1, 0)
    late = Post("feed", "topic-2", "Outlook login broken", NOW - timedelta(hours=2))
    second = store.save_fetch("feed", FetchResult(posts=[known, older, late], state=SourceState(cursor="x")), NOW,
                              NOW)
    assert (second.posts_new, second.posts_late, second.late_by_s) == (1, 1, 3600.0)


def forum_rss(*items: tuple[str, str, datetime]) -> Reply:
    body = "".join(f"<item><guid>{guid}</guid><title>{text}</title><pubDate>{format_datetime(at)}</pubDate></item>"
                   for guid, text, at in items)
    return Reply(200, f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{body}</channel></rss>'
                 .encode(), content_type="application/rss+xml")


def test_a_post_a_feed_dates_ahead_of_the_clock_makes_no_later_post_late(server: FakeServer, store: Store) -> None:
    # A pinned item dated next year is dated by our clock at each poll (make_post): it was the newest post the store
    # had, so each poll's new post, published since the last, counted as late behind the poll's own time.
    config = parse_config(f'[[services]]\nname = "MTN"\n\n[[sources]]\nname = "forum"\ntype = "rss"\n'
                          f'url = "{server.url}/forum.rss"\n')
    pinned = ("pinned", "MTN maintenance in the new year", NOW + timedelta(days=365))
    old = ("topic-1", "MTN down?", NOW - timedelta(hours=1))
    server.serve("/forum.rss", forum_rss(pinned, old))
    pipe = Pipeline(config, store)
    later = NOW + timedelta(minutes=10)
    with Poller(config.collect, config.services, hash_key=b"k") as poller:
        poller.ctx.now = lambda: NOW
        [first] = pipe.collect(NOW, poller, due_only=False)
        server.serve("/forum.rss", forum_rss(pinned, ("topic-2", "MTN down again", NOW + timedelta(minutes=5)), old))
        poller.ctx.now = lambda: later
        [second] = pipe.collect(later, poller, due_only=False)
        # Published before the last polls and listed only now: late behind topic-2, the newest the store had.
        server.serve("/forum.rss", forum_rss(pinned, ("topic-2", "MTN down again", NOW + timedelta(minutes=5)),
                                             old, ("topic-0", "MTN outage", NOW - timedelta(hours=2))))
        poller.ctx.now = lambda: later + timedelta(minutes=10)
        [third] = pipe.collect(later + timedelta(minutes=10), poller, due_only=False)
    assert (first.stored, second.stored, third.stored) == (2, 1, 1)
    assert (second.posts_late, third.posts_late, third.late_by_s) == (0, 1, 2 * 3600 + 5 * 60)


def test_a_post_a_feed_dates_by_its_last_edit_makes_no_post_published_before_the_edit_late(
        server: FakeServer, store: Store) -> None:
    # An Atom entry dated by its <updated> alone came again dated by its edit: the store had it dated when first
    # read, but the poll's own date of it was the mark, so a post published after the last poll, before the edit,
    # counted as late.
    def atom(*entries: tuple[str, str, datetime]) -> Reply:
        body = "".join(f"<entry><id>{ident}</id><title>{text}</title><updated>{iso(at)}</updated></entry>"
                       for ident, text, at in entries)
        return Reply(200, f'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>{body}'
                     '</feed>'.encode(), content_type="application/atom+xml")

    config = parse_config(f'[[services]]\nname = "MTN"\n\n[[sources]]\nname = "forum"\ntype = "rss"\n'
                          f'url = "{server.url}/forum.atom"\n')
    server.serve("/forum.atom", atom(("topic-1", "MTN down?", NOW - timedelta(hours=1))))
    pipe = Pipeline(config, store)
    later = NOW + timedelta(minutes=10)
    with Poller(config.collect, config.services, hash_key=b"k") as poller:
        poller.ctx.now = lambda: NOW
        pipe.collect(NOW, poller, due_only=False)
        server.serve("/forum.atom", atom(("topic-1", "MTN down? (edited: yes)", NOW + timedelta(minutes=8)),
                                         ("topic-2", "MTN down again", NOW + timedelta(minutes=2))))
        poller.ctx.now = lambda: later
        [second] = pipe.collect(later, poller, due_only=False)
    assert (second.stored, second.duplicates, second.posts_late) == (1, 1, 0)
    rows = store.database.rows("SELECT created_at FROM posts ORDER BY id")  # topic-1 keeps its first date
    assert [r["created_at"] for r in rows] == [iso(NOW - timedelta(hours=1)), iso(NOW + timedelta(minutes=2))]


def test_a_status_a_feed_lists_twice_in_one_poll_makes_no_other_post_late(server: FakeServer, store: Store) -> None:
    # The second listing of a status new in the same poll was read as a post the store had before, the mark of
    # lateness: every new post of the poll dated before it counted as late.
    config = parse_config(f'[[services]]\nname = "MTN"\n\n[[sources]]\nname = "forum"\ntype = "rss"\n'
                          f'url = "{server.url}/forum.rss"\n')
    old = ("topic-1", "MTN down?", NOW - timedelta(hours=1))
    server.serve("/forum.rss", forum_rss(old))
    pipe = Pipeline(config, store)
    with Poller(config.collect, config.services, hash_key=b"k") as poller:
        pipe.collect(NOW, poller, due_only=False)
        again = ("topic-3", "MTN down again", NOW + timedelta(minutes=2))
        server.serve("/forum.rss", forum_rss(again, ("topic-2", "MTN calls fail", NOW + timedelta(minutes=1)), again,
                                             old))
        [second] = pipe.collect(NOW + timedelta(minutes=3), poller, due_only=False)
    assert (second.stored, second.duplicates, second.posts_late) == (2, 2, 0)


def mastodon_status(when: datetime, text: str, author: str, host: str = "mastodon.example",
                    boosts: dict[str, Any] | None = None) -> dict[str, Any]:
    """A status as a tag timeline lists it; a boost's id is dated by the boost, its ``reblog`` the boosted status."""
    ident = str(int(when.timestamp() * 1000) << 16)
    return {"id": ident, "created_at": iso(when).replace("+00:00", "Z"), "content": "" if boosts else f"<p>{text}</p>",
            "uri": f"https://{host}/users/{author}/statuses/{ident}", "url": f"https://{host}/@{author}/{ident}",
            "spoiler_text": "", "language": "en", "account": {"acct": author, "url": f"https://{host}/@{author}"},
            "reblog": boosts}


def test_a_boost_of_an_old_status_is_stored_once_as_written_and_not_counted_late(server: FakeServer,
                                                                                 store: Store) -> None:
    config = parse_config(f'[[services]]\nname = "Signal"\n\n[[sources]]\nname = "masto"\ntype = "mastodon"\n'
                          f'url = "{server.url}"\nquery = "#outage"\ninterval = 60\n')
    path = "/api/v1/timelines/tag/outage"
    known = mastodon_status(NOW - timedelta(minutes=5), "Signal is down #outage", "ann")
    server.serve(path, Reply(200, json.dumps([known]).encode(), content_type="application/json"))
    pipe = Pipeline(config, store)
    old = mastodon_status(NOW - timedelta(hours=3), "Signal down since this morning #outage", "bob")
    new = mastodon_status(NOW + timedelta(seconds=40), "Signal messages stuck #outage", "cat")
    # Newest first: a fresh boost of a three-hour-old status, a new status and its boost, the status the store has.
    timeline = [mastodon_status(NOW + timedelta(seconds=50), "", "dan", "other.example", boosts=new), new,
                mastodon_status(NOW + timedelta(seconds=30), "", "eve", "other.example", boosts=old), known]
    with Poller(config.collect, config.services, hash_key=b"k") as poller:
        pipe.collect(NOW, poller)
        server.serve(path, Reply(200, json.dumps(timeline).encode(), content_type="application/json"))
        [second] = pipe.collect(NOW + timedelta(minutes=1), poller)
        [third] = pipe.collect(NOW + timedelta(minutes=2), poller)
    rows = store.database.rows("SELECT external_id, created_at FROM posts ORDER BY created_at")
    assert [(r["external_id"], r["created_at"]) for r in rows] == [
        (f"mastodon.example/{old['id']}", iso(NOW - timedelta(hours=3))),
        (f"mastodon.example/{known['id']}", iso(NOW - timedelta(minutes=5))),
        (f"mastodon.example/{new['id']}", iso(NOW + timedelta(seconds=40)))]
    # Boosted, not delivered late: no "2 h 55 min late" for a source whose margin is an hour.
    assert (second.stored, second.duplicates, second.posts_late) == (2, 1, 0)
    assert (third.stored, third.duplicates, third.posts_late) == (0, 3, 0)


def test_a_reddit_crosspost_is_read_as_the_post_it_shares_stored_once_and_not_counted_late(
        server: FakeServer, store: Store) -> None:
    # A crosspost shares someone's post in another subreddit: like a boost, no report of the crossposter's own. Read
    # as itself, each crosspost of an hours-old "Outlook down?" was one more complainer now.
    api = RecordedSearch(server, NOW - timedelta(minutes=5))
    config = reddit_config(server)
    pipe = Pipeline(config, store)
    with Poller(config.collect, config.services, hash_key=b"k", environ=ENVIRON) as poller:
        [first] = pipe.collect(NOW, poller)
        known = copy.deepcopy(next(c["data"] for c in api.children if c["data"]["name"] == "t3_1h10abc"))
        old = copy.deepcopy(known)
        old.update(name="t3_1h0old1", id="1h0old1", author="dora_it", title="Outlook down since 8 for anyone?",
                   created_utc=float(int((NOW - timedelta(hours=3)).timestamp())), subreddit="sysadmin")
        for n, (author, shared, after) in enumerate((("eli_m", old, 30), ("gus_r", known, 40), ("fay_k", old, 50))):
            api.add(f"t3_1h1xp0{n}", NOW + timedelta(seconds=after), shared["title"])
            api.children[-1]["data"].update(author=author, selftext="", selftext_html=None, is_self=False,
                                            crosspost_parent=shared["name"], crosspost_parent_list=[shared])
        [second] = pipe.collect(NOW + timedelta(minutes=1), poller)
    rows = store.database.rows("SELECT external_id, created_at, author_hash FROM posts ORDER BY created_at")
    assert [r["external_id"] for r in rows] == ["t3_1h0old1", "t3_1h0zz9a", "t3_1h0zzq1", "t3_1h10abc"]
    assert rows[0]["created_at"] == iso(datetime.fromtimestamp(old["created_utc"], UTC))
    assert rows[0]["author_hash"] == hash_author("dora_it", b"k", "reddit")
    assert first.stored == 3
    # Shared, not indexed late: no "2 h 55 min late" for the three-hour-old post.
    assert (second.stored, second.posts_late) == (1, 0)


def test_a_reddit_source_given_credentials_counts_no_post_of_its_first_api_read_late(
        server: FakeServer, store: Store) -> None:
    # The anonymous feed's cursor is no API cursor: the first API read reads a page, further back than the feed's
    # newest few, and the posts only it reaches counted as late behind those the feed had stored.
    api = RecordedSearch(server, NOW - timedelta(minutes=30))
    listed = sorted(api.children, key=lambda c: c["data"]["created_utc"], reverse=True)[:2]
    entries = "".join(f'<entry><id>{c["data"]["name"]}</id><title>{c["data"]["title"]}</title>'
                      f'<published>{iso(datetime.fromtimestamp(c["data"]["created_utc"], UTC))}</published></entry>'
                      for c in listed)
    server.serve("/search.rss", Reply(200, f'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom">'
                                           f'<title>t</title>{entries}</feed>'.encode(),
                                      content_type="application/atom+xml"))
    anonymous = parse_config(f'[[services]]\nname = "Outlook"\n\n[[sources]]\nname = "reddit"\ntype = "reddit"\n'
                             f'url = "{server.url}"\nquery = "outlook down"\n')
    with Poller(anonymous.collect, anonymous.services, hash_key=b"k") as poller:
        [first] = Pipeline(anonymous, store).collect(NOW, poller)
    config = reddit_config(server)
    with Poller(config.collect, config.services, hash_key=b"k", environ=ENVIRON) as poller:
        [second] = Pipeline(config, store).collect(NOW + timedelta(minutes=2), poller, due_only=False)
        api.add("t3_1h0zz8z", NOW - timedelta(hours=3), "Outlook down since this morning")  # indexed late
        [third] = Pipeline(config, store).collect(NOW + timedelta(minutes=4), poller, due_only=False)
    assert (first.stored, second.stored, second.duplicates, second.posts_late) == (2, 1, 2, 0)
    assert (third.stored, third.posts_late) == (1, 1)


def test_miner_collect_says_how_many_posts_arrived_late(server: FakeServer, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    api = RecordedSearch(server, NOW - timedelta(hours=1))
    api.hidden = {"t3_1h0zz9a"}
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "m.sqlite"}"\n\n[[sources]]\nname = "reddit"\ntype = "reddit"\n'
                   f'url = "{server.url}"\nquery = "outlook down"\n'
                   'env = { client_id = "RID", client_secret = "RSECRET" }\n')
    for name, value in ENVIRON.items():
        monkeypatch.setenv(name, value)
    first = CliRunner().invoke(main, ["--config", str(cfg), "collect", "--once"])
    api.hidden = set()
    second = CliRunner().invoke(main, ["--config", str(cfg), "collect", "--once", "--all"])
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    [line] = [ln for ln in second.output.splitlines() if ln.startswith("reddit")]
    assert line.endswith("ok, 1 post arrived late, up to 2 h 07 min")


@pytest.mark.parametrize(("posts", "seconds", "text"), [
    (1, 0.4, "1 post arrived late, up to 0 s"), (2, 59.4, "2 posts arrived late, up to 59 s"),
    (2, 59.7, "2 posts arrived late, up to 1 min"), (3, 7675, "3 posts arrived late, up to 2 h 07 min")])
def test_how_late_is_said_in_seconds_then_minutes(posts: int, seconds: float, text: str) -> None:
    assert late_text(posts, seconds) == text

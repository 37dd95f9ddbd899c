"""What of a feed URL from the environment (url_env) is taken for its key in its items' links and ids: against a
127.0.0.1 server and a real store, the key leaves every stored link, and the words of the URL (a subreddit, a user
name, a forum's path) stay, so the links in alerts still open."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from fakeserver import FakeServer, Reply

from miner.collectors import CollectSettings, Poller
from miner.config import ServiceConfig, SourceConfig
from miner.records import FetchResult
from miner.store import Store
from miner.urls import secret_parts

FEED_KEY = "4f3c9a0b7e12d5c68a9f0e1b2c3d4e5f60718293"  # a private Reddit feed's ?feed= key: 40 hex digits


def _polled(server: FakeServer, source: SourceConfig, path: str) -> FetchResult:
    with Poller(CollectSettings(connect_timeout=2.0), [ServiceConfig("GitHub")], hash_key=b"k",
                environ={"FEED_URL": server.url + path}) as poller:
        outcome = poller.poll_isolated(source)
    assert outcome.result is not None
    return outcome.result


def test_the_words_of_a_private_reddit_feed_url_stay_in_its_items_links_and_its_key_does_not(
        server: FakeServer, store: Store) -> None:
    # https://www.reddit.com/r/sysadmin/.rss?feed=<key>&user=<name>: every path segment and query value of 8
    # characters or more was taken for the key, so "sysadmin" was [redacted] in every item's stored link and id.
    thread = f"{server.url}/r/sysadmin/comments/1h2k3j/github_is_down"
    atom = (f'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>r/sysadmin</title><id>f</id>'
            f"<updated>2026-12-06T10:00:00Z</updated>"
            f"<entry><title>GitHub is down</title><id>{thread}/</id><link href='{thread}/'/>"
            f"<updated>2026-12-06T10:00:00Z</updated><content>pushes fail for everyone</content></entry>"
            f"<entry><title>GitHub login fails</title><id>t3_1h2k3k</id>"
            f"<link href='{thread}/?context=3&amp;feed={FEED_KEY}'/>"
            f"<updated>2026-12-06T10:05:00Z</updated><content>SSO errors</content></entry></feed>").encode()
    path = "/r/sysadmin/.rss"
    server.serve(path, Reply(200, atom, content_type="application/atom+xml"))
    source = SourceConfig("reddit-private", "rss", url_env="FEED_URL")
    store.sync_sources([source])
    result = _polled(server, source, f"{path}?feed={FEED_KEY}&user=sysadmin_jane")
    now = datetime.now(UTC)
    assert store.save_fetch(source.name, result, now, now).posts_new == 2
    rows = store.database.rows("SELECT external_id, url FROM posts ORDER BY id")
    stored = json.dumps([list(r) for r in rows])
    assert FEED_KEY not in stored
    assert [r["url"] for r in rows] == [f"{thread}/", f"{thread}/?context=3&feed=[redacted]"]
    assert rows[0]["external_id"] == f"{thread}/"  # an id without the key is kept as written


def test_a_link_stored_with_the_key_before_is_rewritten_by_the_same_rule(server: FakeServer, store: Store) -> None:
    # What a miner before the url_env scrub stored: the item's link and id, the path key and all. The first poll
    # rewrites them to the forms it gives the item, so the item is known, and the words of the link stay.
    token = "9b2e7c1d-4a5f-4e3b-8c6d-0f1e2a3b4c5d"
    link = f"{server.url}/sysadmin/feeds/{token}/incidents/42"
    rss = (f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
           f"<item><title>GitHub is down</title><link>{link}</link></item></channel></rss>").encode()
    path = f"/sysadmin/feeds/{token}/rss"
    server.serve(path, Reply(200, rss, content_type="application/rss+xml"))
    source = SourceConfig("private", "rss", url_env="FEED_URL")
    store.sync_sources([source])
    then = "2026-12-01T00:00:00+00:00"
    store.database.execute("INSERT INTO posts (source, external_id, text, url, created_at, fetched_at) VALUES "
                           "(?, ?, 'GitHub is down', ?, ?, ?)", ("private", link, link, then, then))
    result = _polled(server, source, path)
    now = datetime.now(UTC)
    assert store.save_fetch(source.name, result, now, now).posts_new == 0
    [row] = store.database.rows("SELECT external_id, url FROM posts")
    assert row["url"] == f"{server.url}/sysadmin/feeds/[redacted]/incidents/42"
    assert row["external_id"] == result.posts[0].external_id and token not in row["external_id"]


@pytest.mark.parametrize(("url", "secret", "kept"), [
    ("https://www.reddit.com/r/sysadmin/.rss?feed=4f3c9a0b7e12d5c68a9f0e1b2c3d4e5f60718293&user=jane_doe",
     "4f3c9a0b7e12d5c68a9f0e1b2c3d4e5f60718293", ["sysadmin", "jane_doe"]),
    ("https://github.com/acme/platform-infrastructure/commits/main.atom?token=ABCDEFGH2IJKLMNOP3QRSTUV4W",
     "ABCDEFGH2IJKLMNOP3QRSTUV4W", ["platform-infrastructure", "main.atom"]),
    ("https://forum.example.org/u/operations/activity.rss?api_key=s3cr3tv4lu3&api_username=operations",
     "s3cr3tv4lu3", ["operations", "activity.rss"]),
    ("https://calendar.google.com/calendar/ical/ops%40example.com/private-0123456789abcdef0123456789abcdef/basic.ics",
     "private-0123456789abcdef0123456789abcdef", ["calendar", "ops%40example.com", "basic.ics"]),
    ("https://status.example.com/feeds/9b2e7c1d-4a5f-4e3b-8c6d-0f1e2a3b4c5d/rss",
     "9b2e7c1d-4a5f-4e3b-8c6d-0f1e2a3b4c5d", ["feeds"]),
    ("https://tracker.example.net/rss/download/aGVsbG8gd29ybGQhIHRoaXMgaXM",
     "aGVsbG8gd29ybGQhIHRoaXMgaXM", ["download"]),
    ("https://acme.atlassian.net/activity?streams=key+IS+OPS&os_authType=basic&os_password=correcthorse",
     "correcthorse", ["activity", "key+IS+OPS"]),
    ("https://mastodon.example/@opsteam2024.rss", None, ["@opsteam2024.rss"]),
    ("https://windows10-status.example.com/windows10-status/announcements", None, ["windows10-status",
                                                                                   "announcements"]),
])
def test_secret_parts_takes_keys_and_leaves_words(url: str, secret: str | None, kept: list[str]) -> None:
    found = secret_parts(url)
    assert (secret in found) if secret else not found, found
    assert not [word for word in kept if word in found], found


def test_a_statuspage_from_the_environment_links_its_incidents_without_its_key(server: FakeServer,
                                                                               store: Store) -> None:
    # A page behind a proxy whose path holds the key answers with its page.url (and shortlinks) under that path:
    # the incident's link, made of page.url, went into the store as it was, and from there into the read API,
    # the board and the alerts, as a feed's and every JSON API's item links no longer do.
    token = "f81d4fae-7dec-11d0-a765-00a0c91e6bf6"
    base = f"{server.url}/pages/{token}"
    body = {"page": {"id": "p", "name": "GitHub", "url": base},
            "incidents": [{"id": "p3k9d2m1x8qz", "name": "Incident with Actions", "status": "investigating",
                           "started_at": "2026-12-06T10:00:00Z", "updated_at": "2026-12-06T10:05:00Z"},
                          {"id": "w9c8x7z6y5v4", "name": "Incident with Pages", "status": "resolved",
                           "started_at": "2026-12-06T08:00:00Z", "updated_at": "2026-12-06T09:00:00Z",
                           "resolved_at": "2026-12-06T09:00:00Z", "shortlink": f"{base}/s/abc?api_key={token}"}]}
    server.serve(f"/pages/{token}/api/v2/incidents.json",
                 Reply(200, json.dumps(body).encode(), content_type="application/json"))
    page = SourceConfig("gh-status", "statuspage", url_env="FEED_URL", services=("GitHub",))
    store.sync_sources([page])
    result = _polled(server, page, f"/pages/{token}")
    # Without a page.url, an incident's link is its shortlink, which may lie under the key as well.
    body["page"] = {"id": "p", "name": "GitHub"}
    server.serve(f"/pages/{token}/api/v2/incidents.json",
                 Reply(200, json.dumps(body).encode(), content_type="application/json"))
    no_page = _polled(server, page, f"/pages/{token}")
    now = datetime.now(UTC)
    store.save_fetch(page.name, result, now, now)
    links = [i.url for i in result.incidents] + [i.url for i in no_page.incidents]
    assert links == [f"{server.url}/pages/[redacted]/incidents/p3k9d2m1x8qz",
                     f"{server.url}/pages/[redacted]/incidents/w9c8x7z6y5v4",
                     None, f"{server.url}/pages/[redacted]/s/abc?api_key=[redacted]"]
    stored = json.dumps([list(r) for r in store.database.rows("SELECT * FROM official_incidents")])
    assert token not in stored

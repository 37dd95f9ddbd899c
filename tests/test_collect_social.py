"""What social and forum items become as posts: authors, automated accounts, placeholders of removed items."""

from __future__ import annotations

import copy
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fakeserver import FakeServer, Recorded, Reply

from miner.collectors import CollectSettings, Poller
from miner.collectors.mastodon import status_external_id
from miner.collectors.normalise import html_to_text, join_title_body
from miner.config import ServiceConfig, SourceConfig
from miner.errors import SourceError
from miner.records import SourceState
from miner.store import Store
from miner.store.migrations import MIGRATIONS, apply_migrations
from miner.timeutil import iso

TAG_PATH = "/api/v1/timelines/tag/outage"


@pytest.fixture
def poller() -> Iterator[Poller]:
    env = {"RID": "id", "RSECRET": "secret", "BID": "me.bsky.social", "BPW": "pw"}
    with Poller(CollectSettings(), [ServiceConfig("Signal")], hash_key=b"k", environ=env) as p:
        yield p


def _serve_json(server: FakeServer, path: str, data: Any) -> None:
    server.serve(path, Reply(200, json.dumps(data).encode(), content_type="application/json"))


def _timeline(server: FakeServer) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(server.fixture_bytes("mastodon/tag_timeline.json"))
    return data


def _masto(server: FakeServer, prefix: str = "") -> SourceConfig:
    return SourceConfig(f"masto{prefix}", "mastodon", url=server.url + prefix, query="#outage")


def test_a_mastodon_author_read_from_two_instances_is_one_author(server: FakeServer, poller: Poller) -> None:
    home = _timeline(server)[0]
    assert "@" not in home["account"]["acct"]  # local on the instance that answers: "ferriswheel"
    # The same status as another instance shows it: its own local id, the author's acct with their domain.
    elsewhere = copy.deepcopy(home)
    elsewhere["id"] = "113551234999999999"
    elsewhere["account"]["id"] = "110000000000000042"
    elsewhere["account"]["acct"] = "ferriswheel@mastodon.social"
    _serve_json(server, "/social" + TAG_PATH, [home])
    _serve_json(server, "/fosstodon" + TAG_PATH, [elsewhere])
    [a] = poller.poll(_masto(server, "/social")).posts
    [b] = poller.poll(_masto(server, "/fosstodon")).posts
    assert a.external_id == b.external_id
    assert a.author_hash is not None and a.author_hash == b.author_hash


def test_a_mastodon_reply_keeps_no_handle_of_a_person_but_the_services(server: FakeServer, poller: Poller) -> None:
    status = _timeline(server)[0]
    # As Mastodon renders a reply's mentions: an h-card link around "@" and the user name.
    mention = '<span class="h-card"><a href="https://{0}/@{1}" class="u-url mention">@<span>{1}</span></a></span>'
    status["content"] = (f"<p>{mention.format('chaos.social', 'kaffeetasse')} "
                         f"{mention.format('mastodon.social', 'SignalSupport')} no messages since 9 here either, "
                         "and u/grumpy_admin on reddit says the same</p>")
    _serve_json(server, TAG_PATH, [status])
    [post] = poller.poll(_masto(server)).posts
    assert post.text == ("@[user] @SignalSupport no messages since 9 here either, and u/[user] on reddit says the "
                         "same")
    assert post.services == ("Signal",)


def test_statuses_federated_from_lemmy_and_mbin_with_one_number_are_apart(server: FakeServer, poller: Poller,
                                                                         store: Store) -> None:
    # Lemmy and Mbin number posts, comments and microblog posts each on their own: one server's post 5 and comment 5
    # are two statuses on Mastodon, whose ids must differ.
    template = _timeline(server)[0]
    uris = ["https://lemmy.world/comment/12345", "https://lemmy.world/post/12345",
            "https://kbin.social/m/tech/p/77", "https://kbin.social/m/tech/t/77",
            "https://kbin.social/m/tech/t/77/-/comment/9", "https://kbin.social/m/tech/p/77/-/reply/9"]
    statuses = []
    for n, uri in enumerate(uris):
        status = copy.deepcopy(template)
        status.update(id=str(int(template["id"]) - n), uri=uri, url=uri, reblog=None,
                      content=f"<p>Signal is down here, {n}</p>")
        statuses.append(status)
    _serve_json(server, TAG_PATH, statuses)
    source = _masto(server)
    result = poller.poll(source)
    assert [p.external_id for p in result.posts] == [
        "lemmy.world/comment/12345", "lemmy.world/12345", "kbin.social/p/77", "kbin.social/77",
        "kbin.social/comment/9", "kbin.social/reply/9"]
    store.sync_sources([source])
    now = datetime.now(UTC)
    assert store.save_fetch(source.name, result, now, now).posts_new == len(uris)
    # Mastodon's own ids, and any id that is no number, are host/<id> as ever.
    home = template["uri"]
    assert status_external_id(home, "1") == f"mastodon.social/{home.rsplit('/', 1)[-1]}"
    assert status_external_id("https://misskey.io/notes/9abcdef", "1") == "misskey.io/9abcdef"
    assert status_external_id("https://pixelfed.social/p/someone/650595293594582993", "1") == \
        "pixelfed.social/650595293594582993"


def test_a_federated_status_stored_before_its_kind_was_in_its_id_is_not_stored_again(
        server: FakeServer, poller: Poller, tmp_path: Path) -> None:
    # Each poll reads the hour below its cursor again: a Lemmy comment the release before stored as lemmy.world/12345
    # came back as lemmy.world/comment/12345 at the first poll after the upgrade, and was stored and counted twice.
    status = copy.deepcopy(_timeline(server)[0])
    status.update(uri="https://lemmy.world/comment/12345", url="https://lemmy.world/comment/12345", reblog=None,
                  content="<p>Signal is down here</p>")
    _serve_json(server, TAG_PATH, [status])
    source = _masto(server)
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        apply_migrations(conn, MIGRATIONS[:20])  # the schema before federated statuses had their kind in their id
        conn.execute("INSERT INTO sources (name, type, url) VALUES (?, 'mastodon', ?)", (source.name, source.url))
        conn.execute("INSERT INTO posts (source, external_id, text, url, created_at, fetched_at) "
                     "VALUES (?, ?, ?, ?, ?, ?)", (source.name, "lemmy.world/12345", "Signal is down here",
                                                   status["url"], status["created_at"], iso(datetime.now(UTC))))
    conn.close()
    store = Store.open(path)
    now = datetime.now(UTC)
    result = poller.poll(source)
    assert [p.external_id for p in result.posts] == ["lemmy.world/comment/12345"]
    assert (store.save_fetch(source.name, result, now, now).posts_new, _posts(store)) == (0, 1)
    # Post 12345 of that server, which the comment's old id stood for, is a post of its own.
    post = copy.deepcopy(status)
    post.update(id=str(int(status["id"]) + 1), uri="https://lemmy.world/post/12345", url="https://lemmy.world/post/12345")
    _serve_json(server, TAG_PATH, [post, status])
    assert (store.save_fetch(source.name, poller.poll(source), now, now).posts_new, _posts(store)) == (1, 2)
    store.close()


def test_a_mastodon_account_without_a_profile_url_is_named_with_the_instance(
    server: FakeServer, poller: Poller
) -> None:
    home = _timeline(server)[0]
    del home["account"]["url"]
    elsewhere = copy.deepcopy(home)
    elsewhere["account"]["acct"] = "ferriswheel@127.0.0.1"
    _serve_json(server, "/a" + TAG_PATH, [home])
    _serve_json(server, "/b" + TAG_PATH, [elsewhere])
    [a] = poller.poll(_masto(server, "/a")).posts
    [b] = poller.poll(_masto(server, "/b")).posts
    assert a.author_hash is not None and a.author_hash == b.author_hash



@pytest.mark.parametrize("status", [422, 401])
def test_a_mastodon_tag_timeline_shown_to_logged_in_users_only_needs_action(server: FakeServer, poller: Poller,
                                                                            status: int) -> None:
    # Mastodon 4.5 lets an instance show its hashtag timelines to logged-in users only, answering an anonymous request
    # 422 (an older one with its timeline preview off too; one in limited-federation mode, 401 for its whole API).
    # The 422 was a passing failure, retried for good and never listed as needing someone to act; the 401 sent the
    # operator after credentials that a mastodon source does not take.
    server.serve(TAG_PATH, Reply(status, b'{"error":"This method requires an authenticated user"}',
                                 content_type="application/json"))
    with pytest.raises(SourceError) as refused:
        poller.poll(_masto(server))
    assert str(refused.value) == (f"HTTP {status} from 127.0.0.1 (this instance shows its hashtag timelines to "
                                  "logged-in users only, and miner reads them anonymously: watch the tag on another "
                                  "instance)")
    assert refused.value.permanent and refused.value.calls_for_action(1)


def test_mastodon_statuses_of_bot_accounts_are_not_posts(server: FakeServer, poller: Poller) -> None:
    statuses = _timeline(server)
    statuses[0]["account"]["bot"] = True  # the newest: a relay posting "#outage" headlines
    _serve_json(server, TAG_PATH, statuses)
    result = poller.poll(_masto(server))
    ids = [p.external_id for p in result.posts]
    assert len(ids) == len(statuses) - 1 and "mastodon.social/113551234567890123" not in ids
    assert result.state.cursor == statuses[0]["id"]  # read past, not read again


def test_a_bot_boosting_a_person_counts_the_person(server: FakeServer, poller: Poller) -> None:
    person = _timeline(server)[0]
    boost = {"id": "113551234600000000", "created_at": "2026-11-27T14:10:00.000Z", "uri": "x", "content": "",
             "spoiler_text": "", "account": {"acct": "relay", "url": "https://bots.example/@relay", "bot": True},
             "reblog": person}
    _serve_json(server, TAG_PATH, [boost])
    [post] = poller.poll(_masto(server)).posts
    assert post.external_id == "mastodon.social/113551234567890123" and post.text.startswith("Signal messages")


def test_lemmy_items_of_bot_accounts_are_not_posts(server: FakeServer, poller: Poller) -> None:
    source = SourceConfig("lemmy", "lemmy", url=server.url, query="discord")
    data = json.loads(server.fixture_bytes("lemmy/search.json"))
    _serve_json(server, "/api/v3/search", data)
    people = [p.external_id for p in poller.poll(source).posts]
    data["posts"][0]["creator"]["bot_account"] = True
    _serve_json(server, "/api/v3/search", data)
    bot = data["posts"][0]["post"]["ap_id"]
    assert bot in people and [p.external_id for p in poller.poll(source).posts] == [i for i in people if i != bot]


def test_lemmys_rate_limit_answered_as_a_400_is_a_passing_failure_not_one_that_needs_action(
        server: FakeServer, poller: Poller) -> None:
    # Lemmy 0.18 and 0.19 answer every error but a wrong login or a missing object as a 400, its rate limit too
    # (60 searches in 10 min an address by default): read as a bad request, the source was failed for good, polled
    # hourly and listed as needing someone to act, for a limit that passes in minutes.
    source = SourceConfig("lemmy", "lemmy", url=server.url, query="discord")
    server.serve("/api/v3/search", Reply(400, b'{"error":"rate_limit_error"}', content_type="application/json"))
    with pytest.raises(SourceError) as limited:
        poller.poll(source)
    assert str(limited.value) == "HTTP 400 from 127.0.0.1 (Lemmy's rate limit: rate_limit_error)"
    assert not limited.value.permanent and not limited.value.calls_for_action(1)
    # Any other refusal is still the request's fault.
    server.serve("/api/v3/search", Reply(400, b'{"error":"couldnt_find_community"}', content_type="application/json"))
    with pytest.raises(SourceError) as refused:
        poller.poll(source)
    assert str(refused.value) == "HTTP 400 from 127.0.0.1 (Lemmy's error: couldnt_find_community)"
    assert refused.value.permanent
    # A 400 naming no error, or one of which nothing can be shown, says only its status.
    for body in (b'{"error": ""}', b'{"error": 42}', b"<html>Bad Request</html>", rb'{"error": "\u202e\n"}'):
        server.serve("/api/v3/search", Reply(400, body, content_type="application/json"))
        with pytest.raises(SourceError) as bare:
            poller.poll(source)
        assert str(bare.value) == "HTTP 400 from 127.0.0.1" and bare.value.permanent
    # A later page limited ends the paging, as a 429 does, the pages before it kept.
    data = json.loads(server.fixture_bytes("lemmy/search.json"))
    full = {"posts": data["posts"][:1] * 50, "comments": []}
    for n, view in enumerate(full["posts"]):
        view = full["posts"][n] = copy.deepcopy(view)
        view["post"].update(id=n + 1, ap_id=f"https://lemmy.world/post/{n + 1}", published="2026-11-27T14:02:00Z")

    def pages(request: Recorded) -> Reply:
        if request.param("page") == "1":
            return Reply(200, json.dumps(full).encode(), content_type="application/json")
        return Reply(400, b'{"error":"rate_limit_error"}', content_type="application/json")

    server.serve("/api/v3/search", pages)
    result = poller.poll(source, SourceState(cursor="2026-11-27T10:00:00+00:00"))
    assert len(result.posts) == 50 and result.behind
    assert result.warnings == ["page 2 failed (HTTP 400 from 127.0.0.1 (Lemmy's rate limit: rate_limit_error)); "
                               "kept the 1 page before it"]


@pytest.mark.parametrize(("error", "shown"), [
    ("instance_is_private", "instance_is_private"),
    # The server's text: no line break (a forged log line), escape or markup reaches the message, nor all of a long one.
    ("couldnt_find_community\r\nERROR forged line \x1b[31m<b>red</b>\u202e", "couldnt_find_community ERROR forged "
                                                                            "line [31m b red b"),
    ("x" * 5000, "x" * 63 + "…"),
])
def test_lemmys_other_refusals_name_the_error_lemmy_gave(server: FakeServer, poller: Poller, error: str,
                                                         shown: str) -> None:
    # Lemmy answers every error but two as a 400 naming it: "HTTP 400 from host" alone left the operator guessing.
    source = SourceConfig("lemmy", "lemmy", url=server.url, query="discord")
    server.serve("/api/v3/search", Reply(400, json.dumps({"error": error}).encode(), content_type="application/json"))
    with pytest.raises(SourceError) as refused:
        poller.poll(source)
    assert str(refused.value) == f"HTTP 400 from 127.0.0.1 (Lemmy's error: {shown})" and refused.value.permanent


def test_a_lemmy_error_quoting_the_key_of_a_url_env_source_shows_it_redacted(server: FakeServer) -> None:
    key = "9f3c2a7b1e4d6f8a0c5b"
    source = SourceConfig("lemmy", "lemmy", url_env="MINER_TEST_LEMMY", query="discord")
    body = json.dumps({"error": f"unknown_key_{key}"}).encode()
    server.serve(f"/{key}/api/v3/search", Reply(400, body, content_type="application/json"))
    with Poller(CollectSettings(), [ServiceConfig("Signal")], hash_key=b"k",
                environ={"MINER_TEST_LEMMY": f"{server.url}/{key}"}) as poller, pytest.raises(SourceError) as refused:
        poller.poll(source)
    assert str(refused.value) == "HTTP 400 from 127.0.0.1 (Lemmy's error: unknown_key_[redacted])"


@pytest.mark.parametrize(("query", "path"), [(None, "/latest.json"), ("sync", "/search.json")])
def test_a_discourse_forum_shown_to_logged_in_users_only_says_so(server: FakeServer, poller: Poller, query: str | None,
                                                                path: str) -> None:
    # A forum with login_required answers an anonymous request for its JSON 403 not_logged_in. "Check the source's
    # credentials" sent the operator after credentials a discourse source does not take; its feeds take a key.
    source = SourceConfig("forum", "discourse", url=server.url, query=query)
    body = b'{"errors":["You need to be logged in to do that."],"error_type":"not_logged_in"}'
    server.serve(path, Reply(403, body, content_type="application/json"))
    with pytest.raises(SourceError) as refused:
        poller.poll(source)
    assert str(refused.value) == ("HTTP 403 from 127.0.0.1 (the forum shows itself to logged-in users only, and miner "
                                  "reads it anonymously: watch its /latest.rss as an rss source, its URL with an "
                                  "api_key and api_username given by url_env)")
    assert refused.value.permanent
    # Another 403 (a firewall's, a block) is as before.
    server.serve(path, Reply(403, b"<html>Forbidden</html>", content_type="text/html"))
    with pytest.raises(SourceError) as blocked:
        poller.poll(source)
    assert str(blocked.value) == "HTTP 403 from 127.0.0.1 (check the source's credentials and URL)"
    assert blocked.value.permanent


def test_discourse_topics_opened_by_its_automation_accounts_are_not_posts(server: FakeServer, poller: Poller) -> None:
    data = json.loads(server.fixture_bytes("discourse/latest.json"))
    data["users"].append({"id": -1, "username": "system", "name": "system",
                          "avatar_template": "/images/discourse-logo-sketch-small.png", "admin": True,
                          "moderator": True, "trust_level": 4})
    # Discourse's system user opens the welcome and policy topics, and posts moderator notices as topics; ids
    # below 1 are its built-in automation accounts (system -1, discobot -2, AI personas further down).
    notice = copy.deepcopy(data["topic_list"]["topics"][1])
    notice.update(id=4822, title="Service status: sync is down for everyone", slug="service-status",
                  excerpt="Automated notice: the sync service is unavailable; we are investigating.",
                  created_at="2026-11-27T14:30:00.000Z", last_poster_username="system",
                  posters=[{"extras": "latest single", "description": "Original Poster, Most Recent Poster",
                            "user_id": -1, "primary_group_id": None}])
    data["topic_list"]["topics"].insert(1, notice)
    _serve_json(server, "/latest.json", data)
    result = poller.poll(SourceConfig("forum", "discourse", url=server.url))
    assert [p.external_id for p in result.posts] == ["topic:4821", "topic:4819"]
    assert result.state.cursor == "topic:4822"  # read past, not read again


def test_discourse_search_hits_by_its_automation_accounts_are_not_posts(server: FakeServer, poller: Poller) -> None:
    # Search hits name their author by username only (no user id, no post type): Discourse's own `system` and
    # `discobot` are the accounts known by name.
    data = json.loads(server.fixture_bytes("discourse/search.json"))
    hit = copy.deepcopy(data["posts"][1])
    hit.update(id=30230, name="system", username="system", post_number=8,
               avatar_template="/images/discourse-logo-sketch-small.png", created_at="2026-11-27T16:20:05.000Z",
               blurb="This topic was automatically closed 2 hours after the last reply. Sync down? Post anew.")
    bot = copy.deepcopy(data["posts"][1])
    bot.update(id=30231, name="Discobot", username="discobot", post_number=9,
               created_at="2026-11-27T16:25:05.000Z", blurb="Hi! Sync is down? Try @discobot display help.")
    data["posts"][:0] = [bot, hit]
    data["grouped_search_result"]["post_ids"][:0] = [30231, 30230]
    _serve_json(server, "/search.json", data)
    result = poller.poll(SourceConfig("forum", "discourse", url=server.url, query="sync"))
    assert [p.external_id for p in result.posts] == ["post:30211", "post:30219", "post:29950"]
    assert result.state.cursor == "post:30231"  # read past, not read again


@pytest.mark.parametrize("placeholder", ["[removed]", "[deleted]"])
def test_a_reddit_post_removed_or_deleted_keeps_its_title_without_the_placeholder(
    server: FakeServer, poller: Poller, placeholder: str
) -> None:
    server.serve_fixture("/api/v1/access_token", "reddit/token.json")
    data = json.loads(server.fixture_bytes("reddit/search.json"))
    item = data["data"]["children"][0]["data"]
    # As the API answers with raw_json=1: the placeholder is the body, in markdown and in HTML.
    item["selftext"] = placeholder
    item["selftext_html"] = f'<!-- SC_OFF --><div class="md"><p>{placeholder}</p>\n</div><!-- SC_ON -->'
    _serve_json(server, "/search.json", data)
    source = SourceConfig("r", "reddit", url=server.url, query="outlook",
                          env={"client_id": "RID", "client_secret": "RSECRET"})
    post = next(p for p in poller.poll(source).posts if p.external_id == item["name"])
    assert post.text == item["title"]


@pytest.mark.parametrize(("html", "text"), [
    ("<p>latency p99 &lt;x ms? no: timeouts</p>", "latency p99 <x ms? no: timeouts"),
    ("if rtt<threshold then alert", "if rtt<threshold then alert"),
    ("<p>&lt;!-- not a comment</p>", "<!-- not a comment"),
    ("&lt;p&gt;double &amp;amp; escaped&lt;/p&gt;", "double & escaped"),
    ("x &lt;y", "x <y"),
])
def test_a_less_than_sign_that_is_no_tag_is_text(html: str, text: str) -> None:
    assert html_to_text(html) == text


def test_a_status_with_an_escaped_less_than_sign_does_not_fail_the_poll(server: FakeServer, poller: Poller) -> None:
    statuses = _timeline(server)
    statuses[0]["content"] = "<p>Signal: messages take &lt;forever to send, calls drop</p>"
    _serve_json(server, TAG_PATH, statuses)
    outcome = poller.poll_isolated(_masto(server))
    assert outcome.error is None and outcome.result is not None
    assert outcome.result.posts[0].text == "Signal: messages take <forever to send, calls drop"


@pytest.mark.parametrize(("html", "text"), [
    ("down<br>again", "down again"),
    ("<p>down</p><p>again</p>", "down again"),
    ('Service down<img src="https://forum.example/emoji/rage.png" alt=":rage:">Update: fixed',
     "Service down Update: fixed"),
    ('<p>outage<video src="a.mp4"></video>since 9</p>', "outage since 9"),
    ("per<wbr>missions", "permissions"),  # an optional line break inside a word
    ('<p><span class="h-card"><a href="https://x.example/@bob" class="u-url mention">@<span>bob</span></a></span> '
     'is <a href="https://x.example/tags/Signal" class="mention hashtag">#<span>Signal</span></a> down?</p>',
     "@bob is #Signal down?"),
])
def test_markup_between_words_keeps_them_apart(html: str, text: str) -> None:
    assert html_to_text(html) == text


@pytest.mark.parametrize(("title", "body", "text"), [
    ("Teams down", "Teams downloads fail since noon", "Teams down. Teams downloads fail since noon"),
    ("Is Slack down?", "Is Slack down? Nothing loads", "Is Slack down? Nothing loads"),
    ("Outage", "Outage in EU since 9", "Outage in EU since 9"),
    ("Is Slack do…", "Is Slack down for anyone else", "Is Slack down for anyone else"),  # a title cut short
])
def test_a_title_is_left_out_only_when_the_body_repeats_it_word_for_word(title: str, body: str, text: str) -> None:
    assert join_title_body(title, body, 500) == text


def _rss_entry(ident: str, author: str, title: str, body: str) -> str:
    """One entry of Reddit's search RSS, escaped as Reddit sends it."""
    user = author.removeprefix("/u/")
    html = (f'<!-- SC_OFF --><div class="md"><p>{body}</p> </div><!-- SC_ON --> &#32; submitted by &#32; '
            f'<a href="https://www.reddit.com/user/{user}"> {author} </a> <br/> <span><a href="'
            f'https://www.reddit.com/r/whatsapp/comments/{ident}/x/">[link]</a></span>')
    escaped = html.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    return (f"<entry><author><name>{author}</name></author><content type=\"html\">{escaped}</content>"
            f"<id>t3_{ident}</id><link href=\"https://www.reddit.com/r/whatsapp/comments/{ident}/x/\" />"
            f"<updated>2026-11-27T13:12:40+00:00</updated><published>2026-11-27T13:12:40+00:00</published>"
            f"<title>{title}</title></entry>")


def test_reddit_rss_posts_deleted_or_removed_keep_their_title_and_no_shared_author(
    server: FakeServer, poller: Poller
) -> None:
    feed = ('<?xml version="1.0" encoding="UTF-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
            "<title>reddit.com: search results - whatsapp down</title>"
            + _rss_entry("1h10aaa", "/u/[deleted]", "Is WhatsApp down?", "[deleted]")
            + _rss_entry("1h10bbb", "/u/[deleted]", "WhatsApp not sending", "[deleted]")
            + _rss_entry("1h10ccc", "/u/tomasz_pl", "WhatsApp web down", "[removed]")
            + "</feed>")
    server.serve("/search.rss", Reply(200, feed.encode(), content_type="application/atom+xml"))
    posts = poller.poll(SourceConfig("r", "reddit", url=server.url, query="whatsapp down")).posts
    assert [p.text for p in posts] == ["Is WhatsApp down?", "WhatsApp not sending", "WhatsApp web down"]
    # Two people who deleted their accounts are two complainers (an unknown author counts each post), not one.
    assert [p.author_hash is None for p in posts] == [True, True, False]


@pytest.mark.parametrize(("query", "feed_path", "api_path"), [
    ("outlook down", "/search.rss", "/search.json"), ("r/sysadmin", "/r/sysadmin/new/.rss", "/r/sysadmin/new.json")])
def test_reddits_feed_and_api_give_a_post_the_same_id(server: FakeServer, poller: Poller, query: str,
                                                      feed_path: str, api_path: str) -> None:
    # The feed's <id>, a relative "t3_...", came out resolved against the feed's URL: a source read by the feed and
    # then by the API (its credentials set later) stored every post twice, and counted it twice.
    server.serve_fixture("/api/v1/access_token", "reddit/token.json")
    data = json.loads(server.fixture_bytes("reddit/search.json"))
    _serve_json(server, api_path, data)
    listed = [c["data"] for c in data["data"]["children"]]
    feed = ('<?xml version="1.0" encoding="UTF-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
            "<title>reddit.com: search results - outlook down</title>"
            + "".join(_rss_entry(p["id"], f"/u/{p['author']}", p["title"], "Outlook is down") for p in listed)
            + "</feed>")
    server.serve(feed_path, Reply(200, feed.encode(), content_type="application/atom+xml"))
    anonymous = poller.poll(SourceConfig("r", "reddit", url=server.url, query=query)).posts
    api = poller.poll(SourceConfig("r", "reddit", url=server.url, query=query,
                                   env={"client_id": "RID", "client_secret": "RSECRET"})).posts
    assert [p.external_id for p in anonymous] == [p.external_id for p in api] == [p["name"] for p in listed]
    # A feed of Reddit's read as any other feed names them so too, by their permalinks (collectors/canonical.py): an
    # rss source of it beside a reddit source stored each post under a second id.
    plain = poller.poll(SourceConfig("f", "rss", url=f"{server.url}{feed_path}")).posts
    assert [p.external_id for p in plain] == [p["name"] for p in listed]
    assert [p.author_hash for p in plain] == [p.author_hash for p in api]


def test_a_reddit_feed_entry_without_a_fullname_is_told_by_its_permalink(server: FakeServer, poller: Poller) -> None:
    post = _rss_entry("1h10aaa", "/u/tomasz_pl", "Is WhatsApp down?", "Nothing loads")
    comment = (_rss_entry("1h10aaa", "/u/ann_k", "Re: Is WhatsApp down?", "here too")
               .replace("<id>t3_1h10aaa</id>", "<id>t1_m4x9q2z</id>").replace("/x/", "/x/m4x9q2z/"))
    feed = ('<?xml version="1.0" encoding="UTF-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
            "<title>Is WhatsApp down? : whatsapp</title>" + post.replace("<id>t3_1h10aaa</id>", "") + comment
            + "</feed>")
    server.serve("/r/whatsapp/comments/1h10aaa/.rss", Reply(200, feed.encode(), content_type="application/atom+xml"))
    url = f"{server.url}/r/whatsapp/comments/1h10aaa/.rss"
    posts = poller.poll(SourceConfig("r", "reddit", url=url)).posts
    # A comment is no post the API lists: it keeps its id as the feed gives it.
    assert [p.external_id for p in posts] == ["t3_1h10aaa", f"{server.url}/r/whatsapp/comments/1h10aaa/t1_m4x9q2z"]


def test_reddit_posts_by_automoderator_are_not_posts(server: FakeServer, poller: Poller) -> None:
    # AutoModerator posts the megathreads a subreddit's moderators schedule ("Outage megathread"): no user's report.
    server.serve_fixture("/api/v1/access_token", "reddit/token.json")
    data = json.loads(server.fixture_bytes("reddit/search.json"))
    thread = copy.deepcopy(data["data"]["children"][1])
    thread["data"].update(author="AutoModerator", author_fullname="t2_6l4z3", name="t3_1h11mod", id="1h11mod",
                          title="Weekly outage megathread: is Outlook down? Post here",
                          selftext="Post your Outlook outage reports in this thread.", selftext_html=None,
                          created=1795789000, created_utc=1795789000, stickied=True, distinguished="moderator",
                          permalink="/r/sysadmin/comments/1h11mod/weekly_outage_megathread/")
    data["data"]["children"].insert(0, thread)
    _serve_json(server, "/search.json", data)
    result = poller.poll(SourceConfig("r", "reddit", url=server.url, query="outlook",
                                      env={"client_id": "RID", "client_secret": "RSECRET"}))
    assert [p.external_id for p in result.posts] == [c["data"]["name"] for c in data["data"]["children"][1:]]
    assert result.state.cursor == "1795789000"  # read past, not read again
    feed = ('<?xml version="1.0" encoding="UTF-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
            "<title>reddit.com: search results - whatsapp down</title>"
            + _rss_entry("1h10mod", "/u/AutoModerator", "WhatsApp down? Megathread", "Post outage reports here")
            + _rss_entry("1h10ccc", "/u/tomasz_pl", "WhatsApp web down", "Nothing loads")
            + "</feed>")
    server.serve("/search.rss", Reply(200, feed.encode(), content_type="application/atom+xml"))
    posts = poller.poll(SourceConfig("r", "reddit", url=server.url, query="whatsapp down")).posts
    assert [p.text for p in posts] == ["WhatsApp web down. Nothing loads"]


@pytest.mark.parametrize(("html", "text"), [
    ("<p>curl says &lt;Connection refused&gt; for slack</p>", "curl says <Connection refused> for slack"),
    ("<p>the page shows &lt;h1&gt;502 Bad Gateway&lt;/h1&gt;</p>", "the page shows <h1>502 Bad Gateway</h1>"),
    ("&lt;p&gt;a feed that escapes its HTML twice&lt;/p&gt;", "a feed that escapes its HTML twice"),
])
def test_what_the_poster_wrote_in_angle_brackets_is_kept(html: str, text: str) -> None:
    assert html_to_text(html) == text



def _bsky(server: FakeServer, poller: Poller, data: dict[str, Any]) -> list[str]:
    server.serve_fixture("/xrpc/com.atproto.server.createSession", "bluesky/create_session.json")
    _serve_json(server, "/xrpc/app.bsky.feed.searchPosts", data)
    source = SourceConfig("bsky", "bluesky", url=server.url, query="down", env={"identifier": "BID", "password": "BPW"})
    return [p.external_id for p in poller.poll(source).posts]


def test_bluesky_posts_of_accounts_marked_automated_by_their_owner_are_not_posts(
    server: FakeServer, poller: Poller
) -> None:
    data = json.loads(server.fixture_bytes("bluesky/search_posts.json"))
    people = _bsky(server, poller, data)
    bot, labelled = data["posts"][0]["author"], data["posts"][1]["author"]
    bot["labels"] = [{"src": bot["did"], "uri": f"at://{bot['did']}/app.bsky.actor.profile/self", "val": "bot",
                      "cts": "2024-01-01T00:00:00.000Z"}]
    # The same label from a labeler is its opinion of the account, not the account's own word.
    labelled["labels"] = [{"src": "did:plc:somelabeler", "uri": labelled["did"], "val": "bot",
                           "cts": "2024-01-01T00:00:00.000Z"}]
    assert _bsky(server, poller, data) == [i for i in people if i != data["posts"][0]["uri"]]


def test_a_reddit_posts_link_names_neither_its_author_nor_its_titles_words(server: FakeServer, poller: Poller) -> None:
    # The permalink stored as the post's url named its author for a post on a user's profile ("/r/u_<name>/"), which
    # is otherwise kept only hashed, and held its title's slug, with the phone number the text had as "[number]".
    server.serve_fixture("/api/v1/access_token", "reddit/token.json")
    data = json.loads(server.fixture_bytes("reddit/search.json"))
    item = data["data"]["children"][0]["data"]
    item.update(author="ann_k", subreddit="u_ann_k", title="Outlook down, call me on 0722 123 456",
                permalink=f"/r/u_ann_k/comments/{item['id']}/outlook_down_call_me_on_0722_123_456/")
    _serve_json(server, "/search.json", data)
    api = poller.poll(SourceConfig("r", "reddit", url=server.url, query="outlook",
                                   env={"client_id": "RID", "client_secret": "RSECRET"})).posts
    entry = _rss_entry(item["id"], "/u/ann_k", item["title"], "Nothing loads").replace(
        "/r/whatsapp/comments/", "/r/u_ann_k/comments/").replace("/x/", "/outlook_down_call_me_on_0722_123_456/")
    feed = ('<?xml version="1.0" encoding="UTF-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
            "<title>reddit.com: search results - outlook</title>" + entry + "</feed>")
    server.serve("/search.rss", Reply(200, feed.encode(), content_type="application/atom+xml"))
    anonymous = poller.poll(SourceConfig("r", "reddit", url=server.url, query="outlook")).posts
    # Reddit's short link of the post, which takes a reader to it as the permalink does.
    assert api[0].url == anonymous[0].url == f"https://www.reddit.com/comments/{item['id']}/"
    assert "[number]" in api[0].text and "[number]" in anonymous[0].text


def test_a_discourse_posts_link_holds_no_words_of_its_title(server: FakeServer, poller: Poller) -> None:
    # The topic's slug, its title's words, went into the post's url: a phone number the text has as "[number]" too.
    slug = "sync-down-call-me-on-0722-123-456"
    search = json.loads(server.fixture_bytes("discourse/search.json"))
    for topic in search["topics"]:
        topic.update(title="Sync down, call me on 0722 123 456", slug=slug)
    _serve_json(server, "/search.json", search)
    latest = json.loads(server.fixture_bytes("discourse/latest.json"))
    for topic in latest["topic_list"]["topics"]:
        topic.update(title="Sync down, call me on 0722 123 456", slug=slug)
    _serve_json(server, "/latest.json", latest)
    posts = [*poller.poll(SourceConfig("forum", "discourse", url=server.url, query="sync")).posts,
             *poller.poll(SourceConfig("forum", "discourse", url=server.url)).posts]
    assert posts and all("0722" not in str(p.url) and "0722" not in p.text for p in posts)
    hit = next(p for p in posts if p.external_id == "post:30211")
    assert hit.url == f"{server.url}/t/-/4821/1"


def _posts(store: Store) -> int:
    return int(store.database.one("SELECT count(*) AS n FROM posts")["n"])

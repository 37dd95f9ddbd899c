"""Normalisation, scheduling, Retry-After, status parsing, feeds quirks, and the OAuth/session flows."""

from __future__ import annotations

import base64
import functools
import gzip
import itertools
import json
import logging
import random
import re
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from fakeserver import FIXTURES, FakeServer, Recorded, Reply
from ports import reserved_port

from miner.collectors import CollectSettings, Poller, next_poll_at
from miner.collectors.http import Response, fetch, make_client, read_json
from miner.collectors.matching import ServiceMatcher
from miner.collectors.normalise import (
    APP_SALT,
    hash_author,
    hash_key_from_env,
    html_to_text,
    join_title_body,
    parse_time,
    redact_contacts,
)
from miner.collectors.status_feed import incident_status, update_stamps
from miner.config import ServiceConfig, SourceConfig, parse_config
from miner.errors import SourceError
from miner.records import Post, SourceState
from miner.settings import SettingsError, build
from miner.store import Store
from miner.timeutil import MAX_RETRY_AFTER, parse_iso, parse_retry_after

NOW = datetime(2026, 11, 27, 14, 0, tzinfo=UTC)


@pytest.fixture
def poller() -> Iterator[Poller]:
    env = {"RID": "id", "RSECRET": "secret", "BID": "me.bsky.social", "BPW": "pw"}
    with Poller(CollectSettings(), [ServiceConfig("Telekom")], hash_key=b"k", environ=env) as p:
        yield p


# Normalisation -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("html", "text"), [
    ("<p>Login&nbsp;fails &amp; <b>503</b></p><p>again</p>", "Login fails & 503 again"),
    ("a<br>b<br/>c", "a b c"),
    ("&lt;p&gt;double &amp;amp; escaped&lt;/p&gt;", "double & escaped"),
    ("x<script>alert('hi')</script><style>p{}</style>y", "x y"),
    ("plain\n\ttext   here", "plain text here"),
    ("<p>café &#x2F; caf&eacute;</p>", "café / café"),
    ("half an emoji \ud83d, then a whole one \U0001f600", "half an emoji , then a whole one \U0001f600"),
    ("", ""),
    # A "<![" opening no marked section Python knows raised AssertionError (see the next test).
    ("parser chokes on <![ x", "parser chokes on <![ x"), ("see <![here]> ok", "see <![here]> ok"),
    ("<p>a</p><![1]><b>c</b>", "a <![1]>c"), ("&lt;![ x", "<![ x"), ("<![CDATA[x]]>y", "y"),
    # A "<" no ">" ends before the next "<" opens no tag: "<y and <b>" was read as one, and the text in it lost.
    ("x<y and <b>z</b>", "x<y and z"), ("5<6<7 <b>bold</b>", "5<6<7 bold"),
])
def test_html_to_text(html: str, text: str) -> None:
    assert html_to_text(html) == text


def test_unpaired_surrogate_escapes_in_json_become_replacement_characters() -> None:
    body = b'{"id": "a\\ud83d", "urls": ["\\udc00x"], "\\ud800k": 1, "ok": "\\ud83d\\ude00", "n": [1, null]}'
    resp = Response("http://127.0.0.1/x.json", 200, {"content-type": "application/json"}, body)
    assert read_json(resp) == {"id": "a\ufffd", "urls": ["\ufffdx"], "\ufffdk": 1, "ok": "\U0001f600", "n": [1, None]}


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_json_in_utf16_or_utf32_is_told_as_such(encoding: str) -> None:
    # Read as UTF-8 with its bad bytes as U+FFFD, it was "Expecting value at line 1 column 1", which hid why.
    resp = Response("http://127.0.0.1/x.json", 200, {"content-type": "application/json"},
                    '{"title": "Störung"}'.encode(encoding))
    with pytest.raises(SourceError, match=r"^invalid JSON from http://127\.0\.0\.1/x\.json: not UTF-8 text \(UTF-16 or "
                                          r"UTF-32\)$"):
        read_json(resp)


def test_a_bad_byte_in_one_hit_of_a_json_api_costs_no_other_hit(server: FakeServer, poller: Poller,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    # A title cut mid-character: read strictly, the poll failed whole ("not UTF-8 text"), at every poll for as long
    # as the hit stayed in the search's window.
    body = server.fixture_bytes("hackernews/search_by_date.json")
    title = b"Cloudflare outage: 5xx errors on many sites"
    assert title in body
    server.serve("/api/v1/search_by_date", Reply(200, body.replace(title, "Cloudflare outage é".encode()[:-1], 1),
                                                 content_type="application/json"))
    healthy = json.loads(body)["hits"]
    posts = poller.poll(SourceConfig("hn", "hackernews", url=server.url, query="outage")).posts
    assert len(posts) == len([h for h in healthy if h.get("title") or h.get("comment_text")]) > 1
    assert "Cloudflare outage \ufffd" in {p.text for p in posts}
    # Logged once a poll, naming the source (once a response, without it, before the poll's notes were logged).
    assert [r.getMessage() for r in caplog.records if "UTF-8" in r.getMessage()] == [
        f"source hn: JSON from {server.url}/api/v1/search_by_date holds 1 byte sequence that is not UTF-8; each "
        "read as U+FFFD"]


@pytest.mark.parametrize("opener", ["<a\n", "<a b=\"", "<a/"])
def test_html_to_text_reads_a_text_of_many_unclosed_tags_once(monkeypatch: pytest.MonkeyPatch, opener: str) -> None:
    # Python's HTMLParser read on from each "<" that no ">" ends to the end of the text: 13,000 "<a" each on a line
    # (40 KB, a post's text as a feed escapes it once) took 13 s with the GIL held. Counted here as the characters
    # its start-tag pattern matched.
    import html.parser
    if not hasattr(html.parser, "locatestarttagend_tolerant"):
        pytest.skip("this Python's HTMLParser reads start tags otherwise")
    read = [0]
    pattern = html.parser.locatestarttagend_tolerant

    class Counted:
        def match(self, text: str, pos: int = 0) -> re.Match[str] | None:
            found = pattern.match(text, pos)
            read[0] += found.end() - pos if found else 0
            return found

    monkeypatch.setattr(html.parser, "locatestarttagend_tolerant", Counted())
    text = opener * 2_000 + "Telekom down " * 100
    assert html_to_text(text).endswith("Telekom down")
    assert read[0] <= len(text)


@pytest.mark.parametrize(("opener", "end"), [("<![CDATA[ >", "_markedsectionclose"),
                                             ("<![if >", "_msmarkedsectionclose"), ("]><!--", "_commentclose")])
def test_html_to_text_reads_a_text_of_many_unended_comments_or_sections_once(monkeypatch: pytest.MonkeyPatch,
                                                                             opener: str, end: str) -> None:
    # Python's HTMLParser looked for the end of each comment or marked section in all that followed it: 40,000
    # "<![CDATA[ >" (320 KB) took 1.4 s. Counted here as the characters its search for an end read.
    import _markupbase
    if not hasattr(_markupbase, end):
        pytest.skip("this Python's HTMLParser reads marked sections otherwise")
    read = [0]
    pattern = getattr(_markupbase, end)

    class Counted:
        def search(self, text: str, pos: int = 0) -> re.Match[str] | None:
            found = pattern.search(text, pos)
            read[0] += (found.end() if found else len(text)) - pos
            return found

    monkeypatch.setattr(_markupbase, end, Counted())
    text = opener * 2_000 + "Telekom down " * 100
    assert html_to_text(text).endswith("Telekom down")
    assert read[0] <= len(text)


def test_an_entry_quoting_a_marked_section_python_does_not_know_costs_no_other_entry(server: FakeServer,
                                                                                     poller: Poller) -> None:
    # Python's HTMLParser raised AssertionError on "<![ x": the poll failed whole as an internal error of the
    # collector, every poll while the entry stayed in the feed.
    body = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
            b"<item><title>Telekom down</title><guid>1</guid><description>No internet since 9</description></item>"
            b"<item><title>Telekom XML</title><guid>2</guid><description>its parser chokes on &lt;![ x</description>"
            b"</item></channel></rss>")
    server.serve("/f.rss", Reply(200, body, content_type="application/rss+xml"))
    posts = poller.poll(SourceConfig("f", "rss", url=f"{server.url}/f.rss")).posts
    assert [p.text for p in posts] == ["Telekom down. No internet since 9", "Telekom XML. its parser chokes on <![ x"]


def test_surrogate_character_references_in_a_feed_keep_every_entry(server: FakeServer, poller: Poller) -> None:
    # An emoji written as two references to UTF-16 halves, and half a pair on its own (in a guid too): not XML,
    # and feedparser raised UnicodeEncodeError on them, losing the whole feed every poll.
    rss = (b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
           b"<item><title>WhatsApp down &#55357;&#56832; again</title><guid>tag:x,2026:a&#xD83D;</guid></item>"
           b"<item><title>Still no messages &#xd83d;</title><guid>tag:x,2026:b</guid></item></channel></rss>")
    server.serve("/f.rss", Reply(200, rss, content_type="application/rss+xml"))
    posts = poller.poll(SourceConfig("f", "rss", url=f"{server.url}/f.rss")).posts
    assert [(p.text, p.external_id) for p in posts] == [
        ("WhatsApp down \U0001f600 again", "tag:x,2026:a\ufffd"), ("Still no messages \ufffd", "tag:x,2026:b")]


def _spoil_side_fields(data: dict[str, Any]) -> None:
    """Numbers and lists where the APIs send lists and ids: each raised TypeError, failing the source."""
    for hit in data.get("hits", []):
        hit["_tags"] = 5
    data["users"] = 5
    for topic in data.get("topic_list", {}).get("topics", []):
        topic["posters"] = 5
    for item in data.get("topics", []):
        item["id"] = [item["id"]]
    for incident in data.get("incidents", []):
        incident["components"] = 7


@pytest.mark.parametrize(("path", "fixture", "make"), [
    ("/api/v1/search_by_date", "hackernews/search_by_date.json", lambda u: SourceConfig("hn", "hackernews", url=u,
                                                                                       query="outage")),
    ("/latest.json", "discourse/latest.json", lambda u: SourceConfig("d", "discourse", url=u)),
    ("/search.json", "discourse/search.json", lambda u: SourceConfig("d", "discourse", url=u, query="sync")),
    ("/api/v2/incidents.json", "statuspage/incidents.json", lambda u: SourceConfig("s", "statuspage", url=u)),
], ids=["hackernews", "discourse-latest", "discourse-search", "statuspage"])
def test_odd_side_fields_are_skipped_not_fatal(
    server: FakeServer, poller: Poller, path: str, fixture: str, make: Callable[[str], SourceConfig]
) -> None:
    source = make(server.url)
    server.serve_fixture(path, fixture)
    expected = poller.poll(source)
    data = json.loads(server.fixture_bytes(fixture))
    _spoil_side_fields(data)
    server.serve(path, Reply(200, json.dumps(data).encode(), content_type="application/json"))
    got = poller.poll(source)
    assert len(got.posts) + len(got.incidents) == len(expected.posts) + len(expected.incidents) > 0


def test_reddit_item_without_a_string_name_is_skipped(server: FakeServer, poller: Poller) -> None:
    server.serve_fixture("/api/v1/access_token", "reddit/token.json")
    data = json.loads(server.fixture_bytes("reddit/search.json"))
    children = data["data"]["children"]
    children[0]["data"]["name"] = 5  # was stored with external_id "", colliding with every other such item
    server.serve("/search.json", Reply(200, json.dumps(data).encode(), content_type="application/json"))
    source = SourceConfig("r", "reddit", url=server.url, query="outlook",
                          env={"client_id": "RID", "client_secret": "RSECRET"})
    posts = poller.poll(source).posts
    assert len(posts) == len(children) - 1 and all(p.external_id for p in posts)


@pytest.mark.parametrize(("encoding", "encode"), [
    ("gzip", gzip.compress),
    # Each coding of a list is stepped: httpx inflated the outer layer's 64 KB read, then all of what it held.
    ("gzip, gzip", lambda b: gzip.compress(gzip.compress(b, 9), 9)),
    ("deflate, gzip", lambda b: gzip.compress(zlib.compress(b, 9), 9)),
], ids=["gzip", "gzip-twice", "deflate-then-gzip"])
def test_gzip_bomb_is_refused_without_inflating_it(server: FakeServer, encoding: str,
                                                   encode: Callable[[bytes], bytes]) -> None:
    # 50 MB of zeros in 50 KB of gzip: httpx inflated each network read whole before the size cap could see it.
    server.serve("/bomb", Reply(200, encode(bytes(50_000_000)), headers={"Content-Encoding": encoding},
                                content_type="application/json"))
    settings = CollectSettings(max_body_bytes=1_000_000)
    with make_client(settings) as client:
        tracemalloc.start()
        try:
            with pytest.raises(SourceError, match="body larger than 1000000 bytes"):
                fetch(client, settings, f"{server.url}/bomb", timeout=10.0, now=lambda: NOW)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 8_000_000, peak


def test_bytes_after_the_end_of_a_gzip_body_are_not_read(server: FakeServer) -> None:
    # zlib keeps what follows the end of the stream, each read appended to a copy of all before: neither the size cap
    # (which counts inflated bytes) nor the read loop's deadline check (reached only with output) saw them, and 100 MB
    # of them took 100 s of CPU and as much memory.
    junk = (b"x" * 65_536 for _ in range(4_000))
    server.serve("/tail", Reply(200, itertools.chain([gzip.compress(b'{"ok": 1}')], junk),
                                headers={"Content-Encoding": "gzip"}, content_type="application/json"))
    settings = CollectSettings(max_body_bytes=1_000_000)
    started = time.monotonic()
    with make_client(settings) as client:
        assert fetch(client, settings, f"{server.url}/tail", timeout=30.0, now=lambda: NOW).body == b'{"ok": 1}'
    assert time.monotonic() - started < 20  # the 256 MB after the end would take minutes; a loaded runner, seconds


def test_a_body_compressed_more_times_than_any_server_does_is_refused(server: FakeServer, poller: Poller) -> None:
    # Each coding listed was a decompressor inside the next: a feed gzipped 1,000 times (30 KB) raised RecursionError,
    # an internal error of the collector with a traceback of 1,000 lines logged at every poll.
    body = b'<rss version="2.0"><channel><title>x</title><item><title>Telekom down</title></item></channel></rss>'
    for _ in range(1_000):
        body = gzip.compress(body, mtime=0)
    server.serve("/deep.rss", Reply(200, body, headers={"Content-Encoding": ", ".join(["gzip"] * 1_000)},
                                    content_type="application/rss+xml"))
    outcome = poller.poll_isolated(SourceConfig("deep", "rss", url=f"{server.url}/deep.rss"))
    assert str(outcome.error) == ("cannot decode response from 127.0.0.1: Content-Encoding lists 1000 compressions; "
                                  "no more than 5 are read")


@pytest.mark.parametrize(("encoding", "encode"), [
    ("gzip", gzip.compress), ("deflate", zlib.compress), ("deflate", lambda b: zlib.compress(b, wbits=-15)),
    ("gzip, gzip", lambda b: gzip.compress(gzip.compress(b))), ("identity, deflate, gzip",
                                                                 lambda b: gzip.compress(zlib.compress(b))),
    ("gzip, " * 4 + "gzip", lambda b: functools.reduce(lambda z, _: gzip.compress(z), range(5), b)),
], ids=["gzip", "deflate-zlib", "deflate-raw", "gzip-twice", "deflate-then-gzip", "gzip-5-times"])
def test_compressed_bodies_are_decoded(server: FakeServer, encoding: str, encode: Callable[[bytes], bytes]) -> None:
    body = b"".join(b"line %d of a feed\n" % i for i in range(20_000))
    server.serve("/c", Reply(200, encode(body), headers={"Content-Encoding": encoding}, content_type="text/plain"))
    settings = CollectSettings()
    with make_client(settings) as client:
        assert fetch(client, settings, f"{server.url}/c", timeout=10.0, now=lambda: NOW).body == body


@pytest.mark.parametrize(("text", "kept"), [
    ("Mail me at jane.doe@example.com or call +44 7700 900123", "Mail me at [email] or call [number]"),
    ("@Safaricom_Care activate M-Shwari on this number.0703963851", "@Safaricom_Care activate M-Shwari on this "
                                                                   "number.[number]"),
    ("case ID: 2230311591, meter 544-005-065-87", "case ID: [number], meter [number]"),
    ("carol@mastodon.social says @WhatsApp is down", "[email] says @WhatsApp is down"),
    # Written with a full-width at sign or full stop, to keep it from harvesters but not from readers.
    ("LINE落ちた？連絡は jane.doe＠example.co.jp まで", "LINE落ちた？連絡は [email] まで"),
    ("mail jane﹫example.org or bob@example．org", "mail [email] or [email]"),
    # What an outage report says stays: times, dates, error codes, short numbers, handles.
    ("down since 2024-11-27 14:00, error 503, 5G gone, 555-1234, @VodafoneIN #down",
     "down since 2024-11-27 14:00, error 503, 5G gone, 555-1234, @VodafoneIN #down"),
])
def test_contact_details_are_redacted_from_post_text(text: str, kept: str) -> None:
    assert redact_contacts(text) == kept


@pytest.mark.parametrize(("html", "kept"), [
    # Invisible in what is shown, a soft hyphen or word joiner inside a number or address hid it from the placeholders.
    ("call 0171&shy;234&shy;5678 now", "call [number] now"),
    ("call 0171\u2060234\u20605678 now", "call [number] now"),
    ("ring 0171\u180e2345678 now", "ring [number] now"),
    ("mail ja&shy;ne.doe@exam&shy;ple.org now", "mail [email] now"),
])
def test_invisible_characters_hide_no_contact_detail(html: str, kept: str) -> None:
    assert redact_contacts(html_to_text(html)) == kept


@pytest.mark.parametrize(("text", "kept"), [
    # A reply's people and Reddit's users go; a watched service's handles stay, with or without support words.
    ("@kaffeetasse @SignalSupport same here since 9", "@[user] @SignalSupport same here since 9"),
    ("u/grumpy_admin and /u/Lunar_Otter said so too", "u/[user] and /u/[user] said so too"),
    ("see https://www.reddit.com/user/tomasz_pl/ and https://mastodon.social/@ferriswheel/1135",
     "see https://www.reddit.com/user/[user]/ and https://mastodon.social/@[user]/1135"),
    # A person's page linked on a site miner reads: Bluesky's (by handle or DID), Lemmy's and Discourse's /u/, HN's.
    ("see https://bsky.app/profile/leilani.bsky.social/post/3lbx7 and bsky.app/profile/did:plc:z72i7hdynmk6r22z27h6",
     "see https://bsky.app/profile/[user]/post/3lbx7 and bsky.app/profile/[user]"),
    ("https://lemmy.world/u/sparrowhawk@feddit.de and https://forum.example.net/u/jkowalski/summary: down too",
     "https://lemmy.world/u/[user] and https://forum.example.net/u/[user]/summary: down too"),
    ("as https://news.ycombinator.com/user?id=kvnhn says", "as https://news.ycombinator.com/user?id=[user] says"),
    # The service's own page is no person's; "/u/" after no host, or before a single character, is no user page.
    ("https://bsky.app/profile/signal.org, forum.example.net/u/SignalSupport, 90 km/u/h, example.com/u/1",
     "https://bsky.app/profile/signal.org, forum.example.net/u/SignalSupport, 90 km/u/h, example.com/u/1"),
    # A Bluesky handle is a domain: a service's name as one of its labels does not make it the service's.
    ("@leilani.bsky.social is #SignalDown for you? @signal.org says no.", "@[user] is #SignalDown for you? "
                                                                         "@signal.org says no."),
    # No handles: a time, an address left (no dot in its domain), a version, word pairs with a slash.
    ("call @ 10, @10, root@localhost, npm i x@latest, the user/admin split, km/u/h",
     "call @ 10, @10, root@localhost, npm i x@latest, the user/admin split, km/u/h"),
])
def test_the_handles_of_people_are_left_out_of_post_text(text: str, kept: str) -> None:
    assert ServiceMatcher([ServiceConfig("Signal")]).redact_people(text) == kept


@pytest.mark.parametrize(("text", "kept"), [
    # A person's handle that holds a service's name as a word of its own (Bluesky's allow "-") is still a person's.
    ("@signal-fan.bsky.social and @jane-signal: down?", "@[user] and @[user]: down?"),
    ("u/jane-signal and reddit.com/user/signal-ops/ too", "u/[user] and reddit.com/user/[user]/ too"),
    # The service's own, whole: kept.
    ("@SignalSupport @AskSignal u/signal @signal.org", "@SignalSupport @AskSignal u/signal @signal.org"),
])
def test_a_handle_holding_a_service_name_inside_is_a_persons(text: str, kept: str) -> None:
    assert ServiceMatcher([ServiceConfig("Signal")]).redact_people(text) == kept


@pytest.mark.parametrize(("text", "kept"), [
    # As a Japanese or Chinese keyboard writes the at sign: a handle all the same, as an e-mail address is one.
    ("Signal落ちた？ ＠tanaka_taro さんも", "Signal落ちた？ @[user] さんも"),
    ("﹫li_wei 也挂了, ＠SignalSupport 没回", "@[user] 也挂了, ＠SignalSupport 没回"),
])
def test_a_handle_written_with_a_full_width_at_sign_is_left_out(text: str, kept: str) -> None:
    assert ServiceMatcher([ServiceConfig("Signal")]).redact_people(text) == kept


def test_stored_post_text_carries_no_contact_details(server: FakeServer, poller: Poller) -> None:
    rss = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item><title>Telekom down</title>'
           b"<description>no internet since 9, call me on 0171 234 5678 or bob@example.de</description>"
           b"<guid>tag:x,2026:1</guid></item></channel></rss>")
    server.serve("/f.rss", Reply(200, rss, content_type="application/rss+xml"))
    [post] = poller.poll(SourceConfig("f", "rss", url=f"{server.url}/f.rss")).posts
    assert post.text == "Telekom down. no internet since 9, call me on [number] or [email]"


def test_a_phone_number_written_with_a_slash_or_its_area_code_in_brackets_is_left_out(server: FakeServer,
                                                                                       poller: Poller) -> None:
    # "0171/2345678" (as German numbers are written) was stored whole, and "(030) 1234 5678" kept its "(".
    rss = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item><title>Telekom down</title>'
           b"<description>call 0171/2345678 or (030) 1234 5678 or 0171 / 234 56 78, since 27/11/2024 14:00"
           b"</description><guid>tag:x,2026:1</guid></item></channel></rss>")
    server.serve("/f.rss", Reply(200, rss, content_type="application/rss+xml"))
    [post] = poller.poll(SourceConfig("f", "rss", url=f"{server.url}/f.rss")).posts
    assert post.text == "Telekom down. call [number] or [number] or [number], since 27/11/2024 14:00"


@pytest.mark.parametrize("cut_at", range(200, 246))
def test_a_contact_detail_the_text_limit_cuts_into_leaves_nothing_of_itself(server: FakeServer, cut_at: int) -> None:
    # Cut before it was redacted, "jane.doe@exampl…" or "0171 234 5…" was no address or number, and was stored.
    body = "x" * 190 + " mail jane.doe@example.org or call 0171 234 567 890 now"
    rss = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item><title></title><description>'
           + body.encode() + b"</description><guid>tag:x,2026:1</guid></item></channel></rss>")
    server.serve("/f.rss", Reply(200, rss, content_type="application/rss+xml"))
    with Poller(CollectSettings(max_text_chars=cut_at)) as poller:
        [post] = poller.poll(SourceConfig("f", "rss", url=f"{server.url}/f.rss")).posts
    assert len(post.text) <= cut_at and not re.search(r"jan|\d{3}", post.text)


def test_join_title_body() -> None:
    assert join_title_body("Is X down", "Can't load", 100) == "Is X down. Can't load"
    assert join_title_body("Is X down?", "Can't load", 100) == "Is X down? Can't load"
    assert join_title_body("Outage", "Outage in EU since 9", 100) == "Outage in EU since 9"
    assert join_title_body("", "body", 100) == "body"
    assert join_title_body("t", "", 100) == "t"
    long = join_title_body("t", "word " * 100, 50)
    assert len(long) == 50 and long.endswith("…")


@pytest.mark.parametrize(("value", "expected"), [
    (1_700_000_000, datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
    ("2026-11-27T14:02:11Z", datetime(2026, 11, 27, 14, 2, 11, tzinfo=UTC)),
    ("2026-11-27T15:02:11+01:00", datetime(2026, 11, 27, 14, 2, 11, tzinfo=UTC)),
    ("2026-11-27T14:02:11.204411", datetime(2026, 11, 27, 14, 2, 11, 204411, tzinfo=UTC)),
    (time.gmtime(0), datetime(1970, 1, 1, tzinfo=UTC)),
    ("yesterday", None), (None, None), ("", None), (True, None),
    ("0001-01-01T00:00:00+01:00", None), ("9999-12-31T23:59:59-01:00", None),
])
def test_parse_time(value: object, expected: datetime | None) -> None:
    assert parse_time(value) == expected


def test_a_plain_user_name_is_one_author_only_within_its_site() -> None:
    from miner.collectors.base import PollContext, make_post

    def author(source: SourceConfig, name: str) -> str | None:
        with httpx.Client() as client:
            post = make_post(source, PollContext(client, CollectSettings(), b"k"), external_id="1",
                             title="down", body_html="", created_at=None, author=name)
        assert post is not None
        return post.author_hash

    reddit_api = SourceConfig("r", "reddit", query="sysadmin")
    reddit_feed = SourceConfig("rf", "rss", url="https://www.reddit.com/r/sysadmin/new/.rss")
    hn = SourceConfig("hn", "hackernews", url="https://hn.algolia.com")
    forum_a = SourceConfig("a", "discourse", url="https://forum.a.example")
    forum_b = SourceConfig("b", "discourse", url="https://forum.b.example")
    # Two people called mike on Reddit and on Hacker News, or on two forums, are two complainers, not one.
    assert len({author(reddit_api, "mike"), author(hn, "mike"), author(forum_a, "mike"),
                author(forum_b, "mike")}) == 4
    assert author(forum_a, "Mike") == author(forum_a, "@mike")
    # Names that are the same from everywhere keep one hash whichever source reads them.
    mastodon = [SourceConfig(n, "mastodon", url=u, query="outage") for n, u in
                (("m1", "https://mastodon.social"), ("m2", "https://fosstodon.org"))]
    assert author(mastodon[0], "https://mastodon.social/@mike") == author(mastodon[1], "https://mastodon.social/@mike")
    assert author(reddit_feed, "/u/mike") == author(reddit_api, "mike") != author(hn, "mike")


def test_author_hash_is_keyed_normalised_and_never_the_handle(caplog: pytest.LogCaptureFixture) -> None:
    h = hash_author("/u/Lunar_Otter", b"k")
    assert h is not None and len(h) == 16 and "lunar" not in h
    assert h == hash_author("lunar_otter", b"k") == hash_author("@Lunar_Otter", b"k")
    assert h != hash_author("lunar_otter", b"other")
    assert hash_author("", b"k") is None and hash_author(None, b"k") is None
    assert hash_key_from_env("MINER_HASH_KEY", {"MINER_HASH_KEY": "s3cret"}) == b"s3cret"
    assert not caplog.records
    assert hash_key_from_env("MINER_HASH_KEY", {"MINER_HASH_KEY": ""}) == APP_SALT
    assert hash_key_from_env("MINER_HASH_KEY", {}) == APP_SALT
    # The fallback salt is public: the operator is told, since anyone can then match a known handle.
    assert [r.levelname for r in caplog.records] == ["WARNING"] * 2
    assert "MINER_HASH_KEY is not set" in caplog.records[0].getMessage()


# Scheduling ----------------------------------------------------------------------------------------------

class FixedRng:
    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


SRC = SourceConfig("s", "rss", url="https://example.com/feed", interval=60)
SETTINGS = CollectSettings(backoff_base=60.0, backoff_max=3600.0, backoff_jitter=0.25)


def test_next_poll_on_success_is_the_interval() -> None:
    assert next_poll_at(SRC, NOW, 0, None, SETTINGS, random.Random(1)) == NOW + timedelta(seconds=60)
    assert next_poll_at(SRC, NOW, 0, 600.0, SETTINGS, random.Random(1)) == NOW + timedelta(seconds=600)


def test_backoff_doubles_is_capped_and_jittered() -> None:
    no_jitter = FixedRng(0.0)
    delays = [(next_poll_at(SRC, NOW, n, None, SETTINGS, no_jitter) - NOW).total_seconds() for n in range(1, 9)]
    assert delays == [60, 120, 240, 480, 960, 1920, 3600, 3600]
    most_jitter = FixedRng(1.0)
    assert (next_poll_at(SRC, NOW, 3, None, SETTINGS, most_jitter) - NOW).total_seconds() == 180
    rng = random.Random(7)
    for _ in range(200):
        seconds = (next_poll_at(SRC, NOW, 4, None, SETTINGS, rng) - NOW).total_seconds()
        assert 360 <= seconds <= 480
    assert (next_poll_at(SRC, NOW, 10**6, None, SETTINGS, no_jitter) - NOW).total_seconds() == 3600


def test_backoff_never_before_retry_after_or_interval() -> None:
    slow = SourceConfig("s", "rss", url="https://example.com/feed", interval=900)
    assert next_poll_at(slow, NOW, 1, None, SETTINGS, FixedRng(0.0)) == NOW + timedelta(seconds=900)
    assert next_poll_at(SRC, NOW, 1, 7200.0, SETTINGS, FixedRng(0.0)) == NOW + timedelta(seconds=7200)
    assert next_poll_at(SRC, NOW, 1, None, SETTINGS, FixedRng(0.0), permanent=True) == NOW + timedelta(hours=1)


def test_parse_retry_after() -> None:
    assert parse_retry_after("120", NOW) == 120.0
    assert parse_retry_after(format_datetime(NOW + timedelta(minutes=5), usegmt=True), NOW) == 300.0
    assert parse_retry_after(format_datetime(NOW - timedelta(minutes=5), usegmt=True), NOW) == 0.0
    assert parse_retry_after("soon", NOW) is None and parse_retry_after(None, NOW) is None
    # A delay no timedelta can hold, or a date centuries away, must not park the source (or crash the round).
    assert parse_retry_after("9" * 20, NOW) == MAX_RETRY_AFTER
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", NOW) == MAX_RETRY_AFTER


@pytest.mark.parametrize("status", ["429", "503"])
def test_a_retry_after_date_is_read_against_the_poll_clock(server: FakeServer, poller: Poller, status: str) -> None:
    # The collectors read an HTTP-date Retry-After against the wall clock, not the poll's: with the poll's clock
    # years from the real one, the wait came out as a day (the cap) or nothing.
    clock = datetime(2031, 3, 4, 5, 6, tzinfo=UTC)
    poller.ctx.now = lambda: clock
    server.fault("/f.rss", status, retry_after=format_datetime(clock + timedelta(minutes=10), usegmt=True))
    with pytest.raises(SourceError) as info:
        poller.poll(SourceConfig("f", "rss", url=f"{server.url}/f.rss"))
    assert info.value.retry_after == 600.0


def test_a_retry_after_sent_twice_is_read() -> None:
    # httpx joins a header sent twice with ", " ("120, 120"; an HTTP-date has a comma of its own): the longest wait
    # of the values read is taken.
    at = format_datetime(NOW + timedelta(minutes=5), usegmt=True)
    assert parse_retry_after("120, 120", NOW) == 120.0
    assert parse_retry_after("60,120", NOW) == 120.0
    assert parse_retry_after(f"{at}, {at}", NOW) == 300.0
    assert parse_retry_after(f"120, {at}", NOW) == 300.0
    assert parse_retry_after(f"soon, {at}", NOW) == 300.0
    assert parse_retry_after("soon, later", NOW) is None and parse_retry_after(", ,", NOW) is None


@pytest.mark.parametrize("status", [429, 503])
def test_a_retry_after_header_sent_twice_is_honoured(server: FakeServer, poller: Poller, status: int) -> None:
    # A proxy and the application behind it both say it: "Retry-After: 120" twice came to the parser as
    # "120, 120", read as no Retry-After, and the source fell back to its generic backoff.
    server.serve("/f.rss", Reply(status, b"slow down", headers={"Retry-After": ["120", "120"]},
                                 content_type="text/plain"))
    with pytest.raises(SourceError) as info:
        poller.poll(SourceConfig("f", "rss", url=f"{server.url}/f.rss"))
    assert info.value.retry_after == 120.0 and "(retry after 120 s)" in str(info.value)


def test_validators_and_rate_limits_sent_twice_are_read_as_one(server: FakeServer, poller: Poller) -> None:
    # ETag, Last-Modified and the rate-limit headers each hold one value: sent twice, httpx joined them, and the
    # joined text was sent back (If-Modified-Since: two dates, which no server reads, so the feed was fetched whole at
    # every poll) or read as no limit at all.
    etag, modified = '"v1"', "Fri, 27 Nov 2026 13:00:00 GMT"
    feed = FIXTURES / "status" / "saucelabs_us-west-1_history.atom"

    def conditional(request: Recorded) -> Reply:
        if request.headers.get("if-modified-since") == modified:
            return Reply(304)
        return Reply(200, feed.read_bytes(), content_type="application/atom+xml",
                     headers={"ETag": [etag, etag], "Last-Modified": [modified, modified]})

    server.serve("/feed.atom", conditional)
    source = SourceConfig("f", "status_feed", url=f"{server.url}/feed.atom")
    first = poller.poll(source)
    assert (first.state.etag, first.state.last_modified) == (etag, modified)
    assert poller.poll(source, first.state).not_modified
    limited = {"X-RateLimit-Remaining": ["0", "0"], "X-RateLimit-Reset": ["30", "30"]}
    server.serve("/r.rss", Reply(429, b"slow down", headers=limited, content_type="text/plain"))
    with pytest.raises(SourceError) as info:
        poller.poll(SourceConfig("r", "rss", url=f"{server.url}/r.rss"))
    assert info.value.retry_after == 30.0


def test_collect_settings_validation() -> None:
    assert build(CollectSettings, {"max_body_bytes": 2048}).max_body_bytes == 2048
    with pytest.raises(SettingsError) as info:
        build(CollectSettings, {"backoff_jitter": 1.5})
    assert info.value.key == "backoff_jitter"
    with pytest.raises(SettingsError):
        build(CollectSettings, {"max_body_bytes": 10})
    with pytest.raises(SettingsError) as info:
        build(CollectSettings, {"max_pages": 0})
    assert info.value.key == "max_pages"


# Status parsing and feed quirks ----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "status"), [
    ("Jan 1, 09:09 PST Resolved - We have restored service. Jan 1 Investigating - looking", "resolved"),
    ("Nov 13 Monitoring - A fix is in. Nov 13 Investigating - The dashboard is down.", "monitoring"),
    ("Update - still down. Identified - a bad deploy", "identified"),
    ("In progress - Scheduled maintenance is under way.", "scheduled"),
    ("Verifying - Checking the work. In progress - Scheduled maintenance is under way.", "scheduled"),
    ("Completed - The maintenance window has completed. In progress - Under way.", "completed"),
    ("Postmortem - # Summary ...", "postmortem"),
    ("Nothing with a label here; we resolved nothing", "unknown"),
])
def test_incident_status(text: str, status: str) -> None:
    assert incident_status(text) == status


def test_status_feed_incidents(server: FakeServer, poller: Poller) -> None:
    server.serve_fixture("/history.atom", "status/saucelabs_us-west-1_history.atom")
    source = SourceConfig("sauce", "status_feed", url=f"{server.url}/history.atom")
    incidents = {i.external_id.rpartition("/")[2]: i for i in poller.poll(source).incidents}
    first = incidents["5566864"]
    assert first.title == "2020-Nov-14 Service Incident" and first.status == "resolved"
    assert first.external_id == "tag:status.us-west-1.saucelabs.com,2005:Incident/5566864"
    # Started at its oldest update ("Nov 14, 13:51 PST Monitoring"), not at its entry's date (its latest update).
    assert first.started_at == datetime(2020, 11, 14, 21, 51, tzinfo=UTC)
    assert first.resolved_at == datetime(2020, 11, 14, 22, 7, tzinfo=UTC)
    assert first.updated_at == datetime(2020, 11, 14, 22, 7, 39, tzinfo=UTC)
    assert first.url == "https://status.us-west-1.saucelabs.com/incidents/08fk1fzrw8p8"
    # Resolved on Jul 21 at 07:40 PDT; the entry's updated date is an edit in October.
    july = incidents["4672249"]
    assert july.started_at == datetime(2020, 7, 21, 12, 37, tzinfo=UTC)  # "Jul 21, 05:37 PDT Investigating"
    assert july.resolved_at == datetime(2020, 7, 21, 14, 40, tzinfo=UTC)
    assert july.updated_at == datetime(2020, 10, 6, 21, 7, 22, tzinfo=UTC)
    # Planned work is labelled as such, from when it was under way (not announced, on Oct 16) until completed.
    maintenance = incidents["5345139"]
    assert maintenance.title == "Sauce Labs Planned Maintenance" and maintenance.status == "completed"
    assert maintenance.started_at == datetime(2020, 10, 24, 17, 0, tzinfo=UTC)  # "Oct 24, 10:00 PDT In progress"
    assert maintenance.resolved_at == datetime(2020, 10, 24, 17, 59, tzinfo=UTC)
    assert sum(i.status == "completed" for i in incidents.values()) == 6


def test_a_postmortem_added_to_a_status_rss_entry_is_stored(server: FakeServer, poller: Poller, store: Store) -> None:
    # The real feed, and the same feed before the postmortem of Dec 26 was posted: the entry's pubDate is its
    # resolution (Dec 24) in both, so only the update stamps say that the incident changed.
    real = (FIXTURES / "status" / "parse_status_history.rss").read_bytes()
    before = re.sub(rb"&lt;p&gt;&lt;small&gt;Dec 26, 10:22 PST.*?(?=&lt;p&gt;&lt;small&gt;Dec 24, 11:21 PST)", b"",
                    real, count=1, flags=re.S)
    assert len(before) < len(real)
    source = SourceConfig("parse", "status_feed", url=f"{server.url}/history.rss", services=("Parse",))
    since = datetime(2013, 1, 1, tzinfo=UTC)
    for body, status in ((before, "resolved"), (real, "postmortem")):
        server.serve("/history.rss", Reply(200, body, content_type="application/rss+xml"))
        store.save_fetch(source.name, poller.poll(source), NOW, NOW)
        [row] = [r for r in store.official_incidents("Parse", since) if r["external_id"].endswith("p9hy357zjvb3")]
        assert row["status"] == status
    assert row["updated_at"] == "2013-12-26T18:22:00+00:00" and row["resolved_at"] == "2013-12-24T19:21:00+00:00"
    assert len(store.official_incidents("Parse", since)) == 17


@pytest.mark.parametrize(("text", "reference", "expected"), [
    # Across New Year: the older update is in the year before the entry's (local) date.
    ("Jan 1, 00:20 PST Resolved - Fixed. Dec 31, 23:50 PST Investigating - Looking.", "2014-01-01T00:20:00-08:00",
     [("resolved", datetime(2014, 1, 1, 8, 20, tzinfo=UTC)),
      ("investigating", datetime(2014, 1, 1, 7, 50, tzinfo=UTC))]),
    # An entry dated in UTC: the abbreviation says the zone; a 12-hour clock; "Update" is dated too.
    ("Mar 3, 1:05 PM CET Update - Still on it. Mar 3, 10:00 AM CET Identified - Found.", "2024-03-03T12:05:00Z",
     [("update", datetime(2024, 3, 3, 12, 5, tzinfo=UTC)), ("identified", datetime(2024, 3, 3, 9, 0, tzinfo=UTC))]),
    ("Resolved - no stamp here. Between 03:26am PST on Nov 3rd and later.", "2024-03-03T12:05:00Z", []),
    # A postmortem posted days after an RSS entry dated by its resolution, across New Year.
    ("Jan 6, 10:22 PST Postmortem - Summary. Dec 30, 11:21 PST Resolved - Fixed.", "2013-12-30T11:21:00-08:00",
     [("postmortem", datetime(2014, 1, 6, 18, 22, tzinfo=UTC)), ("resolved", datetime(2013, 12, 30, 19, 21,
                                                                                      tzinfo=UTC))]),
])
def test_update_stamps(text: str, reference: str, expected: list[tuple[str, datetime]]) -> None:
    assert update_stamps(text, datetime.fromisoformat(reference)) == expected


def test_status_feed_update_stamps_are_read_in_the_zone_of_the_entry_date(server: FakeServer, poller: Poller) -> None:
    # This 2013 feed labels summer updates "PST" while dating the entries -0700: its wall times are the entry's.
    server.serve_fixture("/history.rss", "status/parse_status_history.rss")
    source = SourceConfig("parse", "status_feed", url=f"{server.url}/history.rss")
    incidents = {i.url.rpartition("/")[2]: i for i in poller.poll(source).incidents if i.url}
    cors = incidents["hp2xf2v7f8g8"]  # Oct 21 15:34 Investigating ... 16:27 Resolved, dated 16:27:30 -0700
    assert (cors.started_at, cors.resolved_at) == (datetime(2013, 10, 21, 22, 34, tzinfo=UTC),
                                                   datetime(2013, 10, 21, 23, 27, tzinfo=UTC))
    # Resolved on Dec 24, a postmortem on Dec 26 after it: still resolved on Dec 24.
    latency = incidents["p9hy357zjvb3"]
    assert latency.status == "postmortem"
    assert (latency.started_at, latency.resolved_at) == (datetime(2013, 12, 24, 16, 58, tzinfo=UTC),
                                                         datetime(2013, 12, 24, 19, 21, tzinfo=UTC))


def test_statuspage_incident_fields(server: FakeServer, poller: Poller) -> None:
    server.serve_fixture("/api/v2/incidents.json", "statuspage/incidents.json")
    source = SourceConfig("gh", "statuspage", url=server.url + "/", services=("Telekom",))
    active, resolved, postmortem = poller.poll(source).incidents
    assert (active.status, active.impact, active.components, active.resolved_at) == (
        "investigating", "major", ("Actions",), None)
    assert active.url == "https://www.githubstatus.com/incidents/p3k9d2m1x8qz" and active.service == "Telekom"
    assert resolved.status == "resolved" and resolved.components == ("Git Operations", "Webhooks")
    assert resolved.resolved_at == datetime(2025 + 1, 11, 25, 10, 2, 30, tzinfo=UTC)
    assert postmortem.status == "postmortem" and postmortem.impact == "critical"


def test_statuspage_summary_json_lists_only_unresolved(server: FakeServer, poller: Poller) -> None:
    server.serve_fixture("/api/v2/summary.json", "statuspage/summary.json")
    source = SourceConfig("gh", "statuspage", url=f"{server.url}/api/v2/summary.json")
    (only,) = poller.poll(source).incidents
    assert only.external_id == "p3k9d2m1x8qz" and only.status == "investigating" and only.service is None
    server.fault("/api/v2/summary.json", "wrong_type")
    with pytest.raises(SourceError, match="expected JSON from"):
        poller.poll(source)
    server.serve("/api/v2/summary.json", Reply(200, b'{"page": {}}', content_type="application/json"))
    with pytest.raises(SourceError, match="no 'incidents'"):
        poller.poll(source)


def test_an_incident_that_leaves_summary_json_is_stored_resolved(server: FakeServer, poller: Poller,
                                                                  store: Store) -> None:
    # summary.json lists open incidents only: once resolved, the incident is simply no longer there.
    source = SourceConfig("gh", "statuspage", url=f"{server.url}/api/v2/summary.json", services=("GitHub",))
    open_now = (FIXTURES / "statuspage" / "summary.json").read_bytes()
    gone = json.dumps({**json.loads(open_now), "incidents": []}).encode()
    since = datetime(2026, 11, 1, tzinfo=UTC)
    server.serve("/api/v2/summary.json", Reply(200, open_now, content_type="application/json"))
    store.save_fetch(source.name, poller.poll(source), NOW, NOW)
    [row] = store.official_incidents("GitHub", since)
    assert (row["status"], row["resolved_at"]) == ("investigating", None)
    server.serve("/api/v2/summary.json", Reply(200, gone, content_type="application/json"))
    later = NOW + timedelta(minutes=5)
    assert store.save_fetch(source.name, poller.poll(source), later, later).incidents_updated == 1
    [row] = store.official_incidents("GitHub", since)
    assert (row["status"], row["resolved_at"]) == ("resolved", "2026-11-27T14:05:00+00:00")
    # Listed again with a newer update (reopened): open again.
    reopened = json.loads(open_now)
    reopened["incidents"][0]["updated_at"] = "2026-11-27T14:30:00.000Z"
    server.serve("/api/v2/summary.json", Reply(200, json.dumps(reopened).encode(), content_type="application/json"))
    store.save_fetch(source.name, poller.poll(source), later, later)
    [row] = store.official_incidents("GitHub", since)
    assert (row["status"], row["resolved_at"]) == ("investigating", None)
    # incidents.json lists only the latest incidents: one that drops off it is not taken for resolved.
    server.serve_fixture("/api/v2/incidents.json", "statuspage/incidents.json")
    listing = SourceConfig("gh2", "statuspage", url=server.url, services=("GitHub",))
    store.save_fetch(listing.name, poller.poll(listing), later, later)
    server.serve("/api/v2/incidents.json", Reply(200, b'{"incidents": []}', content_type="application/json"))
    store.save_fetch(listing.name, poller.poll(listing), later, later)
    # (Its open incident is summary.json's, of the same page: kept once, in gh's row.)
    assert sorted((r["source"], r["status"]) for r in store.official_incidents("GitHub", since)) == [
        ("gh", "investigating"), ("gh2", "postmortem"), ("gh2", "resolved")]


def test_wrong_declared_encoding_is_a_warning_not_an_error(server: FakeServer, poller: Poller,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    server.serve_fixture("/news.rss", "rss/wrong_encoding.rss", content_type="application/rss+xml")
    caplog.set_level(logging.DEBUG, logger="miner")
    outcome = poller.poll_isolated(SourceConfig("news", "rss", url=f"{server.url}/news.rss"))
    assert outcome.result is not None
    result = outcome.result
    assert len(result.posts) == 2 and "CharacterEncodingOverride" in result.warnings[0]
    # Logged once per poll, as a warning, not again by the poller.
    logged = [r for r in caplog.records if "is not clean" in r.getMessage()]
    assert [r.levelno for r in logged] == [logging.WARNING]
    assert result.posts[0].text.startswith("Störung bei Telekom: Tausende ohne Internet. Seit dem Morgen")
    assert result.posts[0].services == ("Telekom",)


@pytest.mark.parametrize("ctype", ["text/xml", "text/rss+xml", "text/xml; format=rss"])
def test_a_feed_served_as_text_xml_without_a_charset_is_read_by_its_declaration_without_a_warning(
        server: FakeServer, poller: Poller, ctype: str) -> None:
    # As nginx serves any .xml file. RFC 7303 reads such a body by its XML declaration (else as UTF-8); feedparser
    # keeps RFC 3023's us-ascii, and every poll of a UTF-8 feed warned that it was "not clean", a warning that
    # stood in `miner status` for a feed read right.
    server.serve_fixture("/latest.rss", "rss/forum_latest.rss", content_type=ctype)
    source = SourceConfig("forum", "rss", url=f"{server.url}/latest.rss")
    result = poller.poll(source)
    assert result.warnings == []
    assert [p.text[:36] for p in result.posts] == [
        "Fibre down in Leeds since 07:00 - re", "Which mesh Wi-Fi works best with a 9",
        'Email (IMAP) not syncing on phones –']
    # One in another encoding, so declared, is read so too.
    latin = server.fixture_bytes("rss/wrong_encoding.rss").decode().replace("–", "-").replace(
        '"us-ascii"', '"iso-8859-1"').encode("latin-1")
    server.serve("/news.rss", Reply(200, latin, content_type=ctype))
    news = poller.poll(SourceConfig("news", "rss", url=f"{server.url}/news.rss"))
    assert news.warnings == [] and news.posts[0].text.startswith("Störung bei Telekom")
    # A feed whose own declaration is wrong, or that a charset says is another encoding, still warns.
    server.serve_fixture("/wrong.rss", "rss/wrong_encoding.rss", content_type=ctype)
    assert "CharacterEncodingOverride" in poller.poll(SourceConfig("w", "rss", url=f"{server.url}/wrong.rss")
                                                      ).warnings[0]
    server.serve("/news.rss", Reply(200, latin, content_type=f"{ctype}; charset=utf-8"))
    assert "CharacterEncodingOverride" in poller.poll(SourceConfig("n", "rss", url=f"{server.url}/news.rss")
                                                      ).warnings[0]


def _feed_of(titles: list[str], encoding: str = "utf-8") -> bytes:
    items = "".join(f"<item><title>{t}</title><link>https://news.example.de/{n}</link><guid>n{n}</guid>"
                    f"<pubDate>Fri, 27 Nov 2026 09:1{n}:00 +0100</pubDate></item>" for n, t in enumerate(titles))
    return (f'<?xml version="1.0" encoding="{encoding}"?><rss version="2.0"><channel><title>News</title>{items}'
            "</channel></rss>").encode(encoding)


@pytest.mark.parametrize("ctype", ["application/rss+xml", "application/rss+xml; charset=utf-8"])
def test_a_stray_bad_byte_in_a_utf8_feed_costs_no_other_entry_its_text(server: FakeServer, ctype: str) -> None:
    # A server cutting a text mid-character: feedparser read the whole feed again as windows-1252 (or iso-8859-2),
    # and every entry's accents, Cyrillic and emoji became mojibake that matched no service.
    body = _feed_of(["Störung bei Telekom: Tausende ohne Internet", "Сбербанк не работает 😡", "Telekom cut XX"])
    server.serve("/news.rss", Reply(200, body.replace(b"XX", "Stö".encode()[:-1]), content_type=ctype))
    with Poller(CollectSettings(), [ServiceConfig("Telekom"), ServiceConfig("Сбербанк")], hash_key=b"k") as poller:
        result = poller.poll(SourceConfig("news", "rss", url=f"{server.url}/news.rss"))
    assert [(p.text, p.services) for p in result.posts] == [
        ("Störung bei Telekom: Tausende ohne Internet", ("Telekom",)), ("Сбербанк не работает 😡", ("Сбербанк",)),
        ("Telekom cut St\ufffd", ("Telekom",))]
    assert result.warnings == [
        f"feed {server.url}/news.rss holds 1 byte sequence that is not UTF-8 in its UTF-8 text; each read as "
        "U+FFFD"]


@pytest.mark.parametrize(("body", "title"), [
    # windows-1252 under a declaration of UTF-8: no multi-byte sequence reads, and feedparser's fallback is right.
    (_feed_of(["Störung bei Telekom"], "utf-8").replace("ö".encode(), "ö".encode("cp1252")), "Störung bei Telekom"),
    # What the feed says it is, it is read as.
    (_feed_of(["Störung bei Telekom ö"], "iso-8859-1"), "Störung bei Telekom ö"),
])
def test_a_feed_in_another_encoding_is_read_in_it(server: FakeServer, poller: Poller, body: bytes,
                                                  title: str) -> None:
    server.serve("/news.rss", Reply(200, body, content_type="application/rss+xml"))
    [post] = poller.poll(SourceConfig("news", "rss", url=f"{server.url}/news.rss")).posts
    assert post.text == title


@pytest.mark.parametrize("attributes", [100, 101])
def test_a_feed_element_with_more_attributes_than_any_feed_has_is_refused(server: FakeServer, poller: Poller,
                                                                          attributes: int) -> None:
    # Python's SAX reader takes time in the square of an element's attributes, the GIL held: 20,000 took 3.6 s, and
    # 400,000 in a 5 MB feed would hold the poll, and every other thread, some 25 minutes.
    crowded = " ".join(f'data-{n}="{n}"' for n in range(attributes))
    body = (f'<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/"><channel><title>News</title><item>'
            f"<title {crowded}>Telekom down</title><guid>a</guid></item></channel></rss>").encode()
    server.serve("/news.rss", Reply(200, body, content_type="application/rss+xml"))
    outcome = poller.poll_isolated(SourceConfig("news", "rss", url=f"{server.url}/news.rss"))
    if attributes <= 100:
        assert outcome.result is not None and [p.text for p in outcome.result.posts] == ["Telekom down"]
    else:
        assert str(outcome.error) == (f"malformed feed from {server.url}/news.rss: an element with more than 100 "
                                      "attributes, which no feed has (its parse would take minutes)")


def test_requests_carry_user_agent_gzip_and_last_modified(server: FakeServer) -> None:
    settings = CollectSettings(user_agent="miner-test/1.0 (ops@example.org)")
    server.serve_fixture("/f.rss", "rss/forum_latest.rss")
    with Poller(settings, hash_key=b"k") as poller:
        source = SourceConfig("f", "rss", url=f"{server.url}/f.rss")
        first = poller.poll(source)
        again = poller.poll(source, SourceState(last_modified=first.state.last_modified))
    sent = server.requests_to("/f.rss")
    assert sent[0].headers["user-agent"] == "miner-test/1.0 (ops@example.org)"
    assert "gzip" in sent[0].headers["accept-encoding"] and len(first.posts) == 3
    assert "if-none-match" not in sent[1].headers and again.not_modified


def test_a_validator_that_cannot_be_sent_back_is_not(server: FakeServer, poller: Poller) -> None:
    # A server's ETag in Latin-1 (bytes HTTP allows in a field value, but no client sends): sending it back in
    # If-None-Match failed every later poll of the source with an error instead of fetching the feed.
    body = server.fixture_bytes("rss/forum_latest.rss")
    server.serve("/f.rss", lambda request: Reply(200, body, headers={"ETag": 'W/"caf\u00e9"'},
                                                 content_type="application/rss+xml"))
    source = SourceConfig("f", "rss", url=f"{server.url}/f.rss")
    first = poller.poll(source)
    again = poller.poll(source, first.state)
    assert len(first.posts) == len(again.posts) == 3
    assert "if-none-match" not in server.requests_to("/f.rss")[1].headers


@pytest.mark.parametrize(("kind", "fragment"), [("not_found", "HTTP 404"), ("unauthorized", "HTTP 401")])
def test_client_errors_are_permanent(server: FakeServer, poller: Poller, kind: str, fragment: str) -> None:
    server.fault("/gone", kind)
    with pytest.raises(SourceError) as info:
        poller.poll(SourceConfig("g", "hackernews", url=f"{server.url}/gone", query="x"))
    assert info.value.permanent
    with pytest.raises(SourceError) as info:
        poller.poll(SourceConfig("g", "rss", url=f"{server.url}/gone"))
    assert str(info.value).startswith(fragment) and info.value.permanent


def test_gone_for_good_is_permanent_and_says_so_for_apis_too(server: FakeServer, poller: Poller) -> None:
    server.serve("/api/v1/search_by_date", Reply(410, b'{"error": "gone"}', content_type="application/json"))
    with pytest.raises(SourceError) as info:
        poller.poll(SourceConfig("hn", "hackernews", url=server.url, query="x"))
    assert str(info.value).startswith("HTTP 410 from 127.0.0.1 (gone for good: remove the source from feeds.toml")
    assert info.value.permanent and info.value.retry_after is None


def test_connection_refused_is_a_clear_error(poller: Poller) -> None:
    with FakeServer() as gone:
        url = gone.url
    with pytest.raises(SourceError) as info:
        poller.poll(SourceConfig("dead", "rss", url=f"{url}/feed"))
    assert str(info.value).startswith("connection refused by 127.0.0.1:")


def test_poller_from_config_uses_the_hash_key_env() -> None:
    config = parse_config('[store]\nhash_key_env = "MY_KEY"\n[[services]]\nname = "Slack"\n')
    with Poller.from_config(config, environ={"MY_KEY": "abc"}) as poller:
        assert poller.ctx.hash_key == b"abc"
        assert poller.matcher.match("slack is down") == ("Slack",)


# Reddit OAuth and Bluesky sessions -------------------------------------------------------------------------

def test_reddit_token_is_cached_and_renewed_when_refused(server: FakeServer, poller: Poller) -> None:
    server.serve_fixture("/api/v1/access_token", "reddit/token.json")
    server.serve_fixture("/search.json", "reddit/search.json", validators=False)
    source = SourceConfig("r", "reddit", url=server.url, query="outlook",
                          env={"client_id": "RID", "client_secret": "RSECRET"})
    poller.poll(source)
    poller.poll(source)
    token_requests = server.requests_to("/api/v1/access_token")
    assert len(token_requests) == 1
    expected_auth = "Basic " + base64.b64encode(b"id:secret").decode()
    assert token_requests[0].method == "POST" and token_requests[0].headers["authorization"] == expected_auth
    assert token_requests[0].body == b"grant_type=client_credentials"
    search = server.requests_to("/search.json")[0]
    assert search.headers["authorization"].startswith("bearer ") and search.param("sort") == "new"
    calls = {"n": 0}
    listing = server.fixture_reply("reddit/search.json", validators=False)

    def revoked_once(request: Recorded) -> Reply:
        calls["n"] += 1
        return Reply(401, b'{"message": "Unauthorized", "error": 401}') if calls["n"] == 1 else listing(request)

    server.serve("/search.json", revoked_once)
    assert len(poller.poll(source).posts) == 3
    assert len(server.requests_to("/api/v1/access_token")) == 2


@pytest.mark.parametrize("expires_in", ["1e300", "1e400", "NaN", "-Infinity", "10" * 20, "-3600", "0", "true",
                                        '"soon"', "null"])
def test_a_reddit_token_whose_lifetime_is_no_sane_number_is_used_until_refused(server: FakeServer, poller: Poller,
                                                                               expires_in: str) -> None:
    # timedelta refused 1e300 and NaN with a bare OverflowError or ValueError (the poll failed as an internal error),
    # and a lifetime already over (or `true`, one second) made every request log in again.
    token = json.loads(server.fixture_bytes("reddit/token.json"))["access_token"]
    server.serve("/api/v1/access_token", Reply(200, f'{{"access_token": "{token}", "expires_in": {expires_in}}}'
                                                    .encode(), content_type="application/json"))
    server.serve_fixture("/search.json", "reddit/search.json", validators=False)
    source = SourceConfig("r", "reddit", url=server.url, query="outlook",
                          env={"client_id": "RID", "client_secret": "RSECRET"})
    assert len(poller.poll(source).posts) == 3
    assert len(poller.poll(source).posts) == 3
    assert len(server.requests_to("/api/v1/access_token")) == 1


@pytest.mark.parametrize(("expires_in", "lifetime"), [('"3600"', 3600), ("86400.5", 86400.5)])
def test_a_reddit_tokens_lifetime_is_read_as_a_number_or_as_digits(server: FakeServer, poller: Poller,
                                                                    expires_in: str, lifetime: float) -> None:
    server.serve("/api/v1/access_token", Reply(200, f'{{"access_token": "t", "expires_in": {expires_in}}}'.encode(),
                                               content_type="application/json"))
    server.serve_fixture("/search.json", "reddit/search.json", validators=False)
    source = SourceConfig("r", "reddit", url=server.url, query="outlook",
                          env={"client_id": "RID", "client_secret": "RSECRET"})
    poller.ctx.now = lambda: NOW
    poller.poll(source)
    cached = poller.collectors["reddit"].tokens.get("r")  # type: ignore[attr-defined]
    assert cached is not None and cached.expires_at == NOW + timedelta(seconds=lifetime)


def test_reddit_missing_credentials_is_permanent(server: FakeServer, poller: Poller) -> None:
    source = SourceConfig("r", "reddit", url=server.url, query="outlook",
                          env={"client_id": "NOT_SET", "client_secret": "RSECRET"})
    with pytest.raises(SourceError) as info:
        poller.poll(source)
    assert str(info.value) == "environment variable NOT_SET (env.client_id) is not set" and info.value.permanent


def _jwt(exp: datetime) -> str:
    def enc(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{enc({'alg': 'ES256K'})}.{enc({'exp': int(exp.timestamp())})}.c2ln"


def _session(access_exp: datetime) -> Reply:
    body = {"accessJwt": _jwt(access_exp), "refreshJwt": _jwt(access_exp + timedelta(days=60)), "did": "did:x"}
    return Reply(200, json.dumps(body).encode(), content_type="application/json")


BSKY = "/xrpc/app.bsky.feed.searchPosts"


def test_bluesky_refreshes_an_expired_access_token(server: FakeServer, poller: Poller) -> None:
    login_at = datetime.now(UTC)
    server.serve("/xrpc/com.atproto.server.createSession", _session(login_at + timedelta(hours=2)))
    server.serve("/xrpc/com.atproto.server.refreshSession", _session(login_at + timedelta(hours=5)))
    server.serve_fixture(BSKY, "bluesky/search_posts.json", validators=False)
    source = SourceConfig("b", "bluesky", url=server.url, query="down",
                          env={"identifier": "BID", "password": "BPW"})
    first = poller.poll(source)
    assert len(first.posts) == 3 and first.state.cursor == "2026-11-27T14:12:04.120000+00:00"
    login = server.requests_to("/xrpc/com.atproto.server.createSession")
    assert len(login) == 1 and json.loads(login[0].body) == {"identifier": "me.bsky.social", "password": "pw"}
    assert server.requests_to(BSKY)[0].headers["authorization"].startswith("Bearer ")
    poller.poll(source, first.state)  # the cached session is still fresh: no new login, no refresh
    assert len(server.requests_to("/xrpc/com.atproto.server.createSession")) == 1
    assert not server.requests_to("/xrpc/com.atproto.server.refreshSession")
    since = datetime.fromisoformat(first.state.cursor) - timedelta(seconds=60)  # a margin for late posts
    assert server.requests_to(BSKY)[-1].param("since") == since.isoformat()
    poller.ctx.now = lambda: login_at + timedelta(hours=3)  # the access JWT's exp has passed
    poller.poll(source, first.state)
    refresh = server.requests_to("/xrpc/com.atproto.server.refreshSession")
    assert len(refresh) == 1 and refresh[0].headers["authorization"].startswith("Bearer ")
    assert len(server.requests_to("/xrpc/com.atproto.server.createSession")) == 1


def test_bluesky_expired_token_error_triggers_one_refresh(server: FakeServer, poller: Poller) -> None:
    server.serve("/xrpc/com.atproto.server.createSession", _session(datetime.now(UTC) + timedelta(hours=2)))
    server.serve("/xrpc/com.atproto.server.refreshSession", _session(datetime.now(UTC) + timedelta(hours=2)))
    search = server.fixture_reply("bluesky/search_posts.json", validators=False)
    expired = Reply(400, b'{"error":"ExpiredToken","message":"Token has expired"}', content_type="application/json")
    calls = {"n": 0}

    def once_expired(request: Recorded) -> Reply:
        calls["n"] += 1
        return expired if calls["n"] == 1 else search(request)

    server.serve(BSKY, once_expired)
    source = SourceConfig("b", "bluesky", url=server.url, query="down",
                          env={"identifier": "BID", "password": "BPW"})
    assert len(poller.poll(source).posts) == 3
    assert len(server.requests_to("/xrpc/com.atproto.server.refreshSession")) == 1
    server.serve(BSKY, expired)  # still refused after renewing: an error, not a loop
    with pytest.raises(SourceError) as info:
        poller.poll(source)
    assert str(info.value) == "HTTP 400 from 127.0.0.1"


def _skewed_session(issued: datetime) -> Reply:
    def enc(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    def jwt(lifetime: timedelta) -> str:
        claims = {"iat": int(issued.timestamp()), "exp": int((issued + lifetime).timestamp())}
        return f"{enc({'alg': 'ES256K'})}.{enc(claims)}.c2ln"

    body = {"accessJwt": jwt(timedelta(hours=2)), "refreshJwt": jwt(timedelta(days=60)), "did": "did:x"}
    return Reply(200, json.dumps(body).encode(), content_type="application/json")


def test_bluesky_with_a_clock_ahead_of_the_servers_does_not_renew_the_session_on_every_request(
    server: FakeServer, poller: Poller
) -> None:
    # Our clock runs 3 hours ahead: every JWT the server signs has an `exp` already in our past.
    server_now = datetime.now(UTC)
    server.serve("/xrpc/com.atproto.server.createSession", _skewed_session(server_now))
    server.serve("/xrpc/com.atproto.server.refreshSession", _skewed_session(server_now))
    server.serve_fixture(BSKY, "bluesky/search_posts.json", validators=False)
    source = SourceConfig("b", "bluesky", url=server.url, query="down",
                          env={"identifier": "BID", "password": "BPW"})
    poller.ctx.now = lambda: server_now + timedelta(hours=3)
    state = poller.poll(source).state
    for _ in range(3):
        poller.poll(source, state)
    assert len(server.requests_to("/xrpc/com.atproto.server.createSession")) == 1
    assert not server.requests_to("/xrpc/com.atproto.server.refreshSession")
    # The token's own lifetime (exp - iat) still runs out on our clock, and is renewed then.
    poller.ctx.now = lambda: server_now + timedelta(hours=5)
    poller.poll(source, state)
    assert len(server.requests_to("/xrpc/com.atproto.server.refreshSession")) == 1


def test_bluesky_bad_app_password_is_permanent(server: FakeServer, poller: Poller) -> None:
    server.serve("/xrpc/com.atproto.server.createSession",
                 Reply(401, b'{"error":"AuthenticationRequired","message":"Invalid identifier or password"}',
                       content_type="application/json"))
    source = SourceConfig("b", "bluesky", url=server.url, query="down",
                          env={"identifier": "BID", "password": "BPW"})
    with pytest.raises(SourceError) as info:
        poller.poll(source)
    assert str(info.value).startswith("bluesky login refused (AuthenticationRequired)")
    assert info.value.permanent


def test_a_login_is_not_sent_on_to_where_a_redirect_points(server: FakeServer, poller: Poller) -> None:
    # A 307 keeps the method and body, and httpx drops only the Authorization header on the way to another host.
    with FakeServer() as elsewhere:
        elsewhere.serve("/xrpc/com.atproto.server.createSession", _session(datetime.now(UTC) + timedelta(hours=2)))
        server.serve("/xrpc/com.atproto.server.createSession",
                     Reply(307, headers={"Location": elsewhere.url + "/xrpc/com.atproto.server.createSession"}))
        source = SourceConfig("b", "bluesky", url=server.url, query="down",
                              env={"identifier": "BID", "password": "BPW"})
        with pytest.raises(SourceError) as info:
            poller.poll(source)
        assert not elsewhere.requests  # the app password went nowhere else
        assert str(info.value) == ("HTTP 307 from 127.0.0.1 (a login is not sent on to a redirect; it points to "
                                   f"{elsewhere.url}/xrpc/com.atproto.server.createSession)")


def test_slow_drip_body_hits_the_total_deadline(server: FakeServer, poller: Poller) -> None:
    def drip() -> Iterator[bytes]:
        yield b'<?xml version="1.0"?><rss version="2.0"><channel>'
        for _ in range(20):
            time.sleep(0.15)  # each gap is under the read timeout; the whole body is not
            yield b"<item><title>x</title></item>"

    server.serve("/drip.rss", lambda request: Reply(200, drip(), content_type="application/rss+xml"))
    with pytest.raises(SourceError) as info:
        poller.poll(SourceConfig("drip", "rss", url=f"{server.url}/drip.rss", timeout=0.5))
    assert str(info.value).startswith("timed out after 0.5 s reading http://127.0.0.1")


# Each drips for a minute: a poll that hangs on until the drip ends is far past the bound its test checks, however
# slow the machine.
def _header_drip() -> Iterator[bytes]:
    yield b"HTTP/1.1 200 OK\r\n"
    for i in range(600):
        time.sleep(0.1)  # each gap is under the read timeout; the headers never end
        yield b"X-Drip-%d: 1\r\n" % i


def _gzip_name_drip() -> Iterator[bytes]:
    yield b"\x1f\x8b\x08\x08\0\0\0\0\0\xff"  # a gzip header with a file name, which the server never ends
    for _ in range(600):
        time.sleep(0.1)
        yield b"a"


@pytest.mark.parametrize("reply", [
    Reply(raw=_header_drip()),
    Reply(200, _gzip_name_drip(), headers={"Content-Encoding": "gzip"}, content_type="application/rss+xml"),
], ids=["headers", "gzip-file-name"])
def test_a_drip_that_yields_no_body_byte_hits_the_total_deadline(server: FakeServer, poller: Poller,
                                                                 reply: Reply) -> None:
    # The body loop checks the deadline per decoded chunk: these never reached it, and the poll (and its collect
    # round) hung for as long as the server kept dripping.
    server.serve("/drip.rss", reply)
    started = time.monotonic()
    with pytest.raises(SourceError) as info:
        poller.poll(SourceConfig("drip", "rss", url=f"{server.url}/drip.rss", timeout=0.5))
    assert str(info.value) == f"timed out after 0.5 s reading {server.url}/drip.rss"
    assert time.monotonic() - started < 15  # the 0.5 s, with room for a loaded runner; not the minute's drip


def test_gzip_bomb_is_capped_on_decoded_size(server: FakeServer) -> None:
    bomb = gzip.compress(b"<rss>" + b" " * 10_000_000)
    server.serve("/bomb.rss", Reply(200, bomb, headers={"Content-Encoding": "gzip"},
                                    content_type="application/rss+xml"))
    small = Poller(CollectSettings(max_body_bytes=65_536), hash_key=b"k")
    with small, pytest.raises(SourceError) as info:
        small.poll(SourceConfig("bomb", "rss", url=f"{server.url}/bomb.rss"))
    assert len(bomb) < 65_536 and str(info.value).startswith("body larger than 65536 bytes")


def test_reddit_without_credentials_in_the_environment_falls_back_to_rss(server: FakeServer) -> None:
    server.serve_fixture("/search.rss", "reddit/search.rss")
    source = SourceConfig("r", "reddit", url=server.url, query="whatsapp down",
                          env={"client_id": "REDDIT_CLIENT_ID", "client_secret": "REDDIT_CLIENT_SECRET"})
    with Poller(CollectSettings(), hash_key=b"k", environ={}) as anonymous:
        result = anonymous.poll(source)
    assert len(result.posts) == 3 and not server.requests_to("/api/v1/access_token")
    assert result.warnings == ["REDDIT_CLIENT_ID is not set: polled the anonymous RSS feed instead of the API"]
    assert server.requests_to("/search.rss")[0].param("q") == "whatsapp down"


AWS_STYLE = b"""<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Amazon Web Services</title>
<item><title>Service is operating normally: [RESOLVED] Increased API Error Rates</title>
<link>https://status.aws.amazon.com/</link><pubDate>Fri, 27 Nov 2026 10:41:00 PST</pubDate>
<guid isPermaLink="false">https://status.aws.amazon.com/#ec2-us-east-1_1764268860</guid>
<description>Between 9:30 AM and 10:35 AM PST we saw increased API error rates in US-EAST-1.</description></item>
<item><title>Informational message: Increased Launch Latencies</title><link>https://status.aws.amazon.com/</link>
<pubDate>Fri, 27 Nov 2026 09:50:00 PST</pubDate><guid isPermaLink="false">ec2-us-east-1_1764265800</guid>
<description>We are investigating increased launch latencies; we expect this to be resolved soon.</description></item>
</channel></rss>"""


def test_status_feed_without_update_labels(server: FakeServer, poller: Poller) -> None:
    server.serve("/all.rss", Reply(200, AWS_STYLE, content_type="application/rss+xml"))
    done, ongoing = poller.poll(SourceConfig("aws", "status_feed", url=f"{server.url}/all.rss")).incidents
    assert done.status == "resolved" and done.resolved_at == datetime(2026, 11, 27, 18, 41, tzinfo=UTC)
    assert ongoing.status == "unknown" and ongoing.resolved_at is None  # "to be resolved soon" is not a label


def test_future_dated_posts_are_clamped_to_now(server: FakeServer, poller: Poller) -> None:
    feed = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
            b"<item><title>Telekom down</title><guid>a</guid><pubDate>Sat, 01 Jan 2099 00:00:00 GMT</pubDate></item>"
            b"<item><title>Telekom ok</title><guid>b</guid><pubDate>Fri, 27 Nov 2026 13:55:00 GMT</pubDate></item>"
            b"</channel></rss>")
    server.serve("/f.rss", Reply(200, feed, content_type="application/rss+xml"))
    poller.ctx.now = lambda: NOW
    future, past = poller.poll(SourceConfig("f", "rss", url=f"{server.url}/f.rss")).posts
    assert future.created_at == NOW and past.created_at == NOW - timedelta(minutes=5)


def test_a_pub_date_without_a_zone_is_read_as_utc_not_dropped(server: FakeServer, poller: Poller) -> None:
    # feedparser gives up on an RFC 822 date with a weekday and no zone; each entry was dated at its fetch, and a
    # feed's whole backlog counted in the bucket of its first poll.
    feed = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
            b"<item><title>Telekom down</title><guid>a</guid><pubDate>Fri, 27 Nov 2026 13:40:00</pubDate></item>"
            b"<item><title>Telekom slow</title><guid>b</guid><pubDate>Fri, 27 Nov 2026 09:05</pubDate></item>"
            b"<item><title>Telekom ok</title><guid>c</guid><pubDate>Fri, 27 Nov 2026 08:00:00 +0530</pubDate></item>"
            b"<item><title>Telekom what</title><guid>d</guid><pubDate>sometime</pubDate></item>"
            b"</channel></rss>")
    server.serve("/f.rss", Reply(200, feed, content_type="application/rss+xml"))
    poller.ctx.now = lambda: NOW
    posts = poller.poll(SourceConfig("f", "rss", url=f"{server.url}/f.rss")).posts
    assert [p.created_at for p in posts] == [datetime(2026, 11, 27, 13, 40, tzinfo=UTC),
                                             datetime(2026, 11, 27, 9, 5, tzinfo=UTC),
                                             datetime(2026, 11, 27, 2, 30, tzinfo=UTC), NOW]


def _dated(server: FakeServer, poller: Poller, dates: list[str]) -> list[Post]:
    """The posts of an RSS feed whose items have ``dates`` as their pubDates, polled at NOW."""
    items = "".join(f"<item><title>Telekom down {i}</title><guid>g{i}</guid><pubDate>{d}</pubDate></item>"
                    for i, d in enumerate(dates))
    feed = f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{items}</channel></rss>'.encode()
    server.serve("/f.rss", Reply(200, feed, content_type="application/rss+xml"))
    poller.ctx.now = lambda: NOW
    return poller.poll(SourceConfig("f", "rss", url=f"{server.url}/f.rss")).posts


def test_a_pub_date_in_a_named_zone_feedparser_does_not_know_is_read_in_that_zone(
        server: FakeServer, poller: Poller) -> None:
    # feedparser reads any zone name but GMT/UTC and the North American ones as UTC: CEST came out two hours late,
    # AEDT eleven (ahead of the clock, so dated at the fetch).
    dates = ["Fri, 27 Nov 2026 13:40:00 CEST", "Fri, 27 Nov 2026 23:40 AEDT", "27 Nov 2026 13:40:00 nzdt",
             "2026-11-27T13:40:00 JST", "Fri, 27 Nov 2026 08:40:00 EST", "Fri, 27 Nov 2026 13:40:00 +0200",
             "Fri, 27 Nov 2026 13:40:00 IST"]
    posts = _dated(server, poller, dates)
    at = [datetime(2026, 11, 27, h, m, tzinfo=UTC) for h, m in ((11, 40), (12, 40), (0, 40), (4, 40), (13, 40),
                                                                (11, 40), (13, 40))]
    assert [p.created_at for p in posts] == at  # IST names three zones: read as UTC, as feedparser does


def test_a_pub_date_on_the_twelve_hour_clock_is_read_with_its_am_or_pm(server: FakeServer, poller: Poller) -> None:
    # feedparser read "1:40 PM EST" as 01:40 UTC, the PM taken for an unknown zone and the EST dropped: a post of
    # the afternoon dated 17 hours early, in a bucket of the night before.
    dates = ["Fri, 27 Nov 2026 8:40 AM EST", "Fri, 27 Nov 2026 1:40 PM CET", "Fri, 27 Nov 2026 12:40:05 pm",
             "Fri, 27 Nov 2026 12:10 AM -0500", "Fri, 27 Nov 2026 1:05 p.m. +0000"]
    posts = _dated(server, poller, dates)
    assert [p.created_at.strftime("%H:%M:%S") for p in posts] == [
        "13:40:00", "12:40:00", "12:40:05", "05:10:00", "13:05:00"]


def test_an_iso_pub_date_on_the_twelve_hour_clock_keeps_its_date(server: FakeServer, poller: Poller) -> None:
    # feedparser reads "2026-11-27 1:40 PM" (as 01:40), so the entry had a date; read with its PM, the text was only
    # tried as RFC 822, which it is not, and the entry was dated at its fetch (counted in the poll's bucket).
    dates = ["2026-11-27 1:40 PM", "2026-11-27T01:40:05 PM", "2026-11-27 8:40 AM EST"]
    posts = _dated(server, poller, dates)
    assert [(p.created_at.strftime("%Y-%m-%d %H:%M:%S"), p.undated) for p in posts] == [
        ("2026-11-27 13:40:00", None), ("2026-11-27 13:40:05", None), ("2026-11-27 13:40:00", None)]


def test_jobs_are_started_round_robin_across_hosts() -> None:
    from miner.collectors.poller import interleave_hosts

    def src(name: str, host: str) -> tuple[SourceConfig, SourceState | None]:
        return SourceConfig(name, "rss", url=f"https://{host}/feed"), None

    jobs = [src("a1", "a.example"), src("a2", "a.example"), src("a3", "a.example"), src("b1", "b.example"),
            src("c1", "c.example"), src("b2", "b.example")]
    assert interleave_hosts(jobs) == [0, 3, 4, 1, 5, 2]
    assert interleave_hosts([]) == []


RSS_ONE = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
           b"<item><title>x down</title><guid>a</guid></item></channel></rss>")


@pytest.mark.parametrize(("hops", "moved"), [
    ([301], "/hop1"),
    ([308, 302], "/hop1"),  # moved for good to a URL that itself redirects for now: point the source at the former
    ([301, 308], "/hop2"),
    ([302], None),  # temporary: the source's url is still the one to ask
    ([302, 301], None),
], ids=["301", "308-then-302", "301-then-308", "302", "302-then-301"])
def test_a_feed_moved_for_good_tells_the_operator(server: FakeServer, poller: Poller, hops: list[int],
                                                  moved: str | None) -> None:
    # A permanent redirect was followed on every poll without a word: the operator never learned the new URL, and
    # the source failed for no visible reason once the old one stopped redirecting (a domain given up).
    for i, status in enumerate(hops):
        server.serve(f"/hop{i}", Reply(status, headers={"Location": f"/hop{i + 1}"}))
    server.serve(f"/hop{len(hops)}", Reply(200, RSS_ONE, content_type="application/rss+xml"))
    result = poller.poll(SourceConfig("f", "rss", url=f"{server.url}/hop0"))
    assert len(result.posts) == 1
    expected = [f"{server.url}/hop0 has moved for good (HTTP {hops[0]}) to {server.url}{moved}: update the source's "
                "url"] if moved else []
    assert result.warnings == expected


def test_a_statuspage_moved_for_good_tells_the_operator(server: FakeServer, poller: Poller) -> None:
    server.serve("/old/api/v2/incidents.json", Reply(301, headers={"Location": "/new/api/v2/incidents.json"}))
    server.serve_fixture("/new/api/v2/incidents.json", "statuspage/incidents.json")
    result = poller.poll(SourceConfig("s", "statuspage", url=f"{server.url}/old", services=("GitHub",)))
    assert result.incidents and result.warnings == [
        f"{server.url}/old/api/v2/incidents.json has moved for good (HTTP 301) to {server.url}/new/api/v2/"
        "incidents.json: update the source's url"]


@pytest.mark.parametrize(("location", "shown"), [
    ("ftp://files.example.org/feed.rss?key=K", "ftp://files.example.org/feed.rss"),
    ("file:///etc/passwd", "file://127.0.0.1/etc/passwd"),  # relative to the server: httpx gives it its host
])
def test_a_redirect_to_another_scheme_names_where_it_points(server: FakeServer, poller: Poller, location: str,
                                                             shown: str) -> None:
    # Reported as "bad URL <the source's url>", a URL that is fine: the operator checked feeds.toml for nothing.
    server.serve("/f.rss", Reply(301, headers={"Location": location}))
    with pytest.raises(SourceError) as info:
        poller.poll(SourceConfig("f", "rss", url=f"{server.url}/f.rss"))
    scheme = location.partition(":")[0]
    assert str(info.value) == (f"{server.url}/f.rss redirects to {shown}, which is not an http(s) URL: Request URL "
                               f"has an unsupported protocol '{scheme}://'.")
    assert info.value.permanent


@pytest.mark.parametrize("location", ["javascript:alert(1)", "mailto:feeds@example.org", "data:text/html,hi",
                                      "http:login"])
def test_a_redirect_to_a_location_without_a_host_is_not_called_a_bad_url(server: FakeServer, poller: Poller,
                                                                          location: str) -> None:
    # httpx refuses such a Location as it builds the redirect, before a request names it: "bad URL <the source's
    # url>", and needing someone to act, sent the operator to check a url that is fine.
    server.serve("/f.rss", Reply(302, headers={"Location": location}))
    with pytest.raises(SourceError) as info:
        poller.poll(SourceConfig("f", "rss", url=f"{server.url}/f.rss"))
    assert str(info.value) == (f"{server.url}/f.rss redirects to a Location that is not an http(s) URL: For "
                               "absolute URLs, path must be empty or begin with '/'")
    assert info.value.permanent
    # The source's own url, when httpx cannot read it, still is.
    with pytest.raises(SourceError, match=r"^bad URL http://127\.0\.0\.1:b:c/f\.rss: Invalid port: 'b:c'$"):
        poller.poll(SourceConfig("f", "rss", url="http://127.0.0.1:b:c/f.rss"))


def test_a_failure_after_a_redirect_names_where_it_happened(server: FakeServer, poller: Poller) -> None:
    # A redirect to a host that is down (or slow) was reported as the source's own host being down.
    # A port nothing listens on, held so that no server takes it meanwhile (ports.reserve).
    with reserved_port() as closed, FakeServer() as elsewhere:
        elsewhere.serve("/slow.rss", Reply(200, RSS_ONE, delay=30.0))  # far past the 3 s, however late it fires
        server.serve("/down.rss", Reply(302, headers={"Location": f"http://127.0.0.1:{closed}/feed.rss"}))
        server.serve("/slow.rss", Reply(301, headers={"Location": f"{elsewhere.url}/slow.rss?k=1"}))
        with pytest.raises(SourceError) as info:
            poller.poll(SourceConfig("down", "rss", url=f"{server.url}/down.rss", timeout=30))
        assert str(info.value).startswith(f"connection refused by 127.0.0.1:{closed} (redirected from "
                                          f"{server.url}/down.rss): ")
        # 3 s, not 0.5 s: the first hop's answer comes within it however loaded the machine, so the time runs
        # out at the second.
        with pytest.raises(SourceError) as info:
            poller.poll(SourceConfig("slow", "rss", url=f"{server.url}/slow.rss", timeout=3))
        assert str(info.value) == (f"timed out after 3 s reading {elsewhere.url}/slow.rss (redirected from "
                                   f"{server.url}/slow.rss)")


@pytest.mark.parametrize("path", ["/feed.rss", "/flux-ü.rss", "/a|b.rss"])
def test_a_failure_at_the_sources_own_host_is_not_called_a_redirect(poller: Poller, path: str) -> None:
    # The URL as written was compared with the one httpx sent, host lower-cased and path percent-encoded: a source
    # whose host is written in capitals, or whose path holds such a character, read as redirected from itself.
    with reserved_port() as closed, pytest.raises(SourceError) as info:
        poller.poll(SourceConfig("f", "rss", url=f"http://LOCALHOST:{closed}{path}", timeout=30))
    assert str(info.value).startswith("connection refused by ") and "redirected" not in str(info.value)


@pytest.mark.parametrize(("source", "reply"), [
    (SourceConfig("f", "rss", url="/e"), Reply(200, b"", content_type="application/rss+xml")),
    (SourceConfig("f", "rss", url="/e"), Reply(200, b" \r\n", content_type="application/rss+xml")),
    (SourceConfig("s", "statuspage", url="/e/api/v2/incidents.json"), Reply(204)),
], ids=["rss-200", "rss-blank", "statuspage-204"])
def test_an_empty_answer_says_so(server: FakeServer, poller: Poller, source: SourceConfig, reply: Reply) -> None:
    # Reported as "not an RSS/Atom feed" or "invalid JSON ... (truncated body?)", which sent the operator to check
    # the URL; a CDN or cache that lost the body is the server's problem.
    assert source.url is not None
    server.serve(source.url, reply)
    with pytest.raises(SourceError) as info:
        poller.poll(replace(source, url=server.url + source.url))
    assert str(info.value) == f"empty response (HTTP {reply.status}, no body) from {server.url}{source.url}"


@pytest.mark.parametrize(("encoding", "error"), [
    ("br", "cannot decode response from 127.0.0.1: Content-Encoding 'br', which miner does not ask for (gzip or "
           "deflate)"),
    ("gzip, zstd", "cannot decode response from 127.0.0.1: Content-Encoding 'zstd', which miner does not ask for "
                   "(gzip or deflate)"),
    ("UTF-8", None),  # a server's mistake that names no compression: the body is read as it is, as browsers do
])
def test_a_compression_not_asked_for_is_named(server: FakeServer, poller: Poller, encoding: str,
                                              error: str | None) -> None:
    # Its bytes were parsed as the body ("malformed feed: not well-formed"), or, with brotli or zstandard importable,
    # inflated by httpx a whole network read at a time, past the bound on a bomb.
    server.serve("/f.rss", Reply(200, RSS_ONE, headers={"Content-Encoding": encoding},
                                 content_type="application/rss+xml"))
    source = SourceConfig("f", "rss", url=f"{server.url}/f.rss")
    if error is None:
        assert len(poller.poll(source).posts) == 1
        return
    with pytest.raises(SourceError) as info:
        poller.poll(source)
    assert str(info.value) == error


@pytest.mark.parametrize("content_type", ["application/json", None])
def test_a_json_api_answering_a_page_says_so(server: FakeServer, poller: Poller, content_type: str | None) -> None:
    # A captive portal or proxy error page without a type, or labelled JSON, was "invalid JSON: Expecting value at
    # line 1 column 1": nothing said a page came instead.
    server.serve("/api/v1/search_by_date", Reply(200, b"\n<!DOCTYPE html><html><title>Sign in to Wi-Fi</title></html>",
                                                 content_type=content_type))
    with pytest.raises(SourceError) as info:
        poller.poll(SourceConfig("hn", "hackernews", url=server.url, query="down"))
    assert str(info.value) == (f"expected JSON from {server.url}/api/v1/search_by_date, got an HTML or XML page "
                               f"({content_type or 'no content type'})")


def test_a_cloudflare_challenge_is_named(server: FakeServer, poller: Poller) -> None:
    # A 403 "Just a moment..." page said "check the source's credentials and URL" of a feed that needs none.
    server.serve("/f.rss", Reply(403, b"<!DOCTYPE html><html><title>Just a moment...</title></html>",
                                 headers={"cf-mitigated": "challenge", "Server": "cloudflare"},
                                 content_type="text/html"))
    with pytest.raises(SourceError) as info:
        poller.poll(SourceConfig("f", "rss", url=f"{server.url}/f.rss"))
    assert str(info.value) == ("HTTP 403 from 127.0.0.1 (a Cloudflare bot challenge: the site lets no automated client "
                               "through; ask its owner to allow miner's User-Agent, or find another URL for the feed)")
    assert info.value.permanent


@pytest.mark.parametrize("text", ["2026-11-27T12:00:00+01:00\x00", "2026-11-27T12:00:00\x00", "2026-11-27\x00"])
def test_a_time_with_a_nul_is_not_a_time(text: str) -> None:
    # Python 3.11's fromisoformat reads a NUL after the time as the string's end; a cursor, replay line or query
    # holding one is not a time.
    with pytest.raises(ValueError):
        parse_iso(text)

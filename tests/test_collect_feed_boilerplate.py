"""What a site's feed writes beside a post's words (who submitted it, where, its points and comments) is not stored as
the post's text, and the author it names is not stored at all: `miner collect --once` of `rss` sources against a real
local server serving the recorded feeds, then the store's rows."""

from __future__ import annotations

import html
import re
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakeserver import FakeServer, Reply
from test_collect_cross_source import read_as_bsky_app

from miner.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "collectors"
# Words of the sites' boilerplate, which no post of these feeds says itself.
BOILERPLATE = re.compile(r"submitted by|points|comments|Article URL|Comments URL|\[link\]|\bpost\.", re.IGNORECASE)


def _fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def _collect(tmp_path: Path, server: FakeServer, feeds: dict[str, tuple[str, str]],
             source: str = 'type = "rss"\nurl = "{url}{path}"') -> dict[str, tuple[str, str]]:
    """Serve each feed (path: body, content type), poll a source of each (`rss` of its URL) once, and return the
    stored posts: external_id -> (text, url)."""
    sources = ""
    for n, (path, (body, kind)) in enumerate(feeds.items()):
        server.serve(path, Reply(200, body.encode("utf-8"), content_type=kind))
        sources += f'\n[[sources]]\nname = "feed{n}"\n{source.format(url=server.url, path=path)}\n'
    cfg = tmp_path / "miner.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "m.sqlite"}"\n\n[[services]]\nname = "Discord"\n{sources}',
                   encoding="utf-8")
    result = CliRunner().invoke(main, ["--config", str(cfg), "collect", "--once", "--all"])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(tmp_path / "m.sqlite") as conn:
        return {ident: (text, url) for ident, text, url in
                conn.execute("SELECT external_id, text, url FROM posts").fetchall()}


LEMMY_OWN_WORDS = (
    '<item><title>Support ticket</title><link>https://isp.example/status</link><description><![CDATA['
    'submitted by <a href="https://lemmy.world/u/daybird">daybird</a> to '
    '<a href="https://lemmy.world/c/outages">outages</a><br>2 points | '
    '<a href="https://lemmy.world/post/2291002">0 comments</a><br>'
    '<a href="https://isp.example/status">https://isp.example/status</a>'
    '<p>My ticket was submitted by <a href="https://isp.example/">the ISP portal</a> to support at 9.</p>\n'
    ']]></description><guid>https://lemmy.world/post/2291002</guid><pubDate>Fri, 27 Nov 2026 14:03:00 +0000</pubDate>'
    '<dc:creator>https://lemmy.world/u/daybird</dc:creator></item>')
# A feed that is no Lemmy's, whose post opens with words like Lemmy's line: the author it names is not the entry's.
FORUM_LOOKALIKE = (
    '<?xml version="1.0" encoding="utf-8"?><rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">'
    '<channel><title>Forum</title><link>https://forum.example.net/</link><item><title>Form fixed</title>'
    '<link>https://forum.example.net/t/form/1</link><description><![CDATA['
    'submitted by <a href="https://forum.example.net/u/ann">ann</a> to '
    '<a href="https://forum.example.net/c/help">help</a><br>3 points | '
    '<a href="https://forum.example.net/post/1">4 comments</a>]]></description>'
    '<guid>https://forum.example.net/t/form/1</guid><pubDate>Fri, 27 Nov 2026 14:03:00 +0000</pubDate>'
    '<dc:creator>bob</dc:creator></item></channel></rss>')


def test_lemmy_feed_text_has_no_submitter_community_or_counts(tmp_path: Path, server: FakeServer) -> None:
    # Lemmy's community feed opens each description with "submitted by <name> to <community> 31 points | 14
    # comments": the name is the author's, kept otherwise only hashed, and the community ("outages") read as text.
    feed = _fixture("lemmy/community_technology.xml").replace("</channel>", LEMMY_OWN_WORDS + "</channel>")
    posts = _collect(tmp_path, server, {"/c/technology.xml": (feed, "application/rss+xml"),
                                        "/forum.rss": (FORUM_LOOKALIKE, "application/rss+xml")})
    discord = posts["https://lemmy.world/post/2291001"][0]
    assert discord == ("Is Discord down? Can't connect since ~14:00 UTC, app stuck on \"Connecting\". "
                       "Anyone else in the EU?")
    ticket = posts["https://lemmy.world/post/2291002"][0]
    assert "daybird" not in ticket and "outages" not in ticket and "points" not in ticket
    # The poster's own "submitted by ... to" stays. A link post's link, which the line gives, is its stored url (the
    # entry's link), as the lemmy type has it.
    assert posts["https://lemmy.world/post/2291002"] == (
        "Support ticket. My ticket was submitted by the ISP portal to support at 9.", "https://isp.example/status")
    # Only Lemmy's own line, naming the entry's own author, is Lemmy's.
    forum = next(text for text, url in posts.values() if url == "https://forum.example.net/t/form/1")
    assert forum == "Form fixed. submitted by ann to help 3 points | 4 comments"


HN_COMMENT = (
    '<item><title><![CDATA[New comment by quietfox in "Cloudflare outage: 5xx errors on many sites"]]></title>'
    '<description><![CDATA[\n<p>Same here from Frankfurt, every site behind it returns 522.</p>\n]]></description>'
    '<pubDate>Fri, 27 Nov 2026 14:05:00 +0000</pubDate><link>https://news.ycombinator.com/item?id=42210050</link>'
    '<dc:creator>quietfox</dc:creator><comments>https://news.ycombinator.com/item?id=42210050</comments>'
    '<guid isPermaLink="false">https://news.ycombinator.com/item?id=42210050</guid></item>')


def test_hacker_news_feed_text_is_the_story_or_comment_alone(tmp_path: Path, server: FakeServer) -> None:
    # hnrss.org adds "Article URL: ... Comments URL: ... Points: 88 # Comments: 41" to every story, and titles a
    # comment "New comment by <name> in ..."; Hacker News' own feed's description is a "Comments" link.
    hnrss = _fixture("hackernews/hnrss_newest.rss").replace("</channel>", HN_COMMENT + "</channel>")
    posts = _collect(tmp_path, server, {"/newest.rss": (hnrss, "application/rss+xml"),
                                        "/rss": (_fixture("hackernews/front_page.rss"), "application/rss+xml")})
    texts = {ident: text for ident, (text, _url) in posts.items()}
    # The hackernews type's text of each: a link story's title, an Ask HN's title and text, a comment's words.
    assert texts == {
        "42210001": "Cloudflare outage: 5xx errors on many sites",
        "42209876": ("Ask HN: How do you structure on-call for a 4-person team? Looking for advice on how small "
                     "teams run on-call without burning out. We have 4 engineers & a pager."),
        "42210050": "Same here from Frankfurt, every site behind it returns 522.",
    }


_PROFILE_POST = "https://www.reddit.com/r/u_quietgarden/comments/1h10zzz/no_line/"
# A post on its author's profile (r/u_<name>), whose own words say "submitted by", as Reddit's search feed gives it.
REDDIT_OWN_WORDS = (
    '<entry><author><name>/u/quietgarden</name></author>'
    '<category term="u_quietgarden" label="r/u_quietgarden"/><content type="html">'
    + html.escape('<!-- SC_OFF --><div class="md"><p>Form submitted by <a href="https://isp.example/">the ISP</a> '
                  'twice, still no line.</p> </div><!-- SC_ON --> &#32; submitted by &#32; '
                  '<a href="https://www.reddit.com/user/quietgarden"> /u/quietgarden </a> <br/> '
                  f'<span><a href="{_PROFILE_POST}">[link]</a></span> &#32; '
                  f'<span><a href="{_PROFILE_POST}">[comments]</a></span>')
    + f'</content><id>t3_1h10zzz</id><link href="{_PROFILE_POST}" /><updated>2026-11-27T13:20:00+00:00</updated>'
    '<published>2026-11-27T13:20:00+00:00</published><title>No line</title></entry>')


@pytest.mark.parametrize("source", ['type = "rss"\nurl = "{url}{path}"',
                                    'type = "reddit"\nurl = "{url}"\nquery = "whatsapp down"'], ids=["rss", "reddit"])
def test_a_reddit_feed_stores_the_posts_words_and_short_links(tmp_path: Path, server: FakeServer, source: str) -> None:
    # Read as plain rss, Reddit's "submitted by /u/<name> [link] [comments]" was stored as text (its name as
    # u/[user]), and a post on a user's profile was stored with its permalink, /r/u_<name>/...: the name the store
    # keeps only hashed. The reddit type took the trailer from the first "submitted by <a" on: the poster's own too.
    feed = _fixture("reddit/search.rss").replace("</feed>", REDDIT_OWN_WORDS + "</feed>")
    posts = _collect(tmp_path, server, {"/search.rss": (feed, "application/atom+xml")}, source)
    assert posts["t3_1h10k2q"] == ("Is WhatsApp down right now? Messages stuck on one tick since about 14:00 CET, "
                                   "web.whatsapp.com won't load either. Is it just me?",
                                   "https://www.reddit.com/comments/1h10k2q/")
    assert posts["t3_1h0yyb3"][0] == "How to check if WhatsApp is down (and what to do instead)"
    # The poster's own "submitted by" stays; the link is the one the reddit type stores, naming no one.
    assert posts["t3_1h10zzz"] == ("No line. Form submitted by the ISP twice, still no line.",
                                   "https://www.reddit.com/comments/1h10zzz/")
    assert not any(BOILERPLATE.search(text) for ident, (text, _url) in posts.items() if ident != "t3_1h10zzz")
    assert not any("quietgarden" in url or "u_" in url for _text, url in posts.values())


@pytest.mark.parametrize("bsky_app", [True, False])
def test_a_bluesky_profile_feed_stores_no_handle_title_nor_handle_link(
        tmp_path: Path, server: FakeServer, monkeypatch: pytest.MonkeyPatch, bsky_app: bool) -> None:
    # bsky.app titles each post "@<handle> post" and links it by handle; the bluesky type's link names the DID. Read
    # from another host (a copy of bsky.app's feed), whose guids name no author, the post's id still names its DID.
    base = read_as_bsky_app(server, monkeypatch) if bsky_app else "{url}"
    posts = _collect(tmp_path, server, {"/profile/netwatcher.bsky.social/rss": (
        _fixture("bluesky/profile.rss"), "application/rss+xml")}, f'type = "rss"\nurl = "{base}{{path}}"')
    ((text, url),) = posts.values()
    assert text == ("Instagram feed won't load & DMs fail with \"couldn't refresh feed\" — anyone else? <3 to the "
                    "on-call folks #instagramdown")
    assert url == "https://bsky.app/profile/did:plc:z72i7hdynmk6r22z27h6tvur/post/3lbx7kq2abc2x"


def test_discourse_feed_text_has_no_counts_read_link_nor_author(tmp_path: Path, server: FakeServer) -> None:
    # Discourse's latest.rss ends each post with "7 posts - 4 participants" and "Read full topic" (older versions
    # "Posts: 7", "Participants: 4", and "<name> wrote:" before it); a topic's feed with "@<handle> wrote:" and
    # "Read full topic". The name is the author's, kept otherwise only hashed.
    posts = _collect(tmp_path, server, {"/latest.rss": (_fixture("rss/forum_latest.rss"), "application/rss+xml"),
                                        "/old/latest.rss": (_fixture("discourse/latest.rss"), "application/rss+xml"),
                                        "/t/4821.rss": (_fixture("discourse/topic.rss"), "application/rss+xml")})
    texts = {ident: text for ident, (text, _url) in posts.items()}
    assert texts["forum.example.net-topic-8812"] == (
        'Fibre down in Leeds since 07:00 - red LOS light. Router shows a red LOS light and the helpline says "no '
        'known issues". Neighbours on the same street are also offline.')
    # The older feed's bare guid, after that feed's host (collectors/rss.py, _feed_scoped).
    assert texts[f"{server.url.partition('://')[2]}#topic-4819"] == (
        "Feature request: dark mode for the web dashboard. Would love a dark theme for the dashboard, the white page "
        "at night is painful.")
    assert texts["community.example.com-post-4821-3"].endswith(
        '(503)". Same here since 13:50, Android and web both say 503. Status page still green.')
    # The post's own words like the boilerplate stay.
    assert texts["community.example.com-post-4821-1"].endswith(
        '7 posts in the queue, 4 participants in our team are stuck. I wrote: "Read full topic" on our wiki when it '
        'started.')
    stored = " ".join(texts.values())
    assert stored.count("Read full topic") == 1 and stored.count("wrote:") == 1
    for boilerplate in ("Posts:", "Participants:", "posts - ", "Kowalski", "Lopes", "@[user]"):
        assert boilerplate not in stored


def test_a_reddit_comment_feed_stores_the_comments_words(tmp_path: Path, server: FakeServer) -> None:
    # Reddit's comment feed titles each comment "/u/<name> on <the post's title>": the title is the post's, not the
    # comment's words, and was read by classification and matching as them.
    posts = _collect(tmp_path, server, {"/r/whatsapp/comments/.rss": (_fixture("reddit/comments.rss"),
                                                                       "application/atom+xml")})
    texts = sorted(text for text, _url in posts.values())
    # A comment's own "/u/<name> on <title>" words stay (its name redacted, as every u/name).
    assert texts == ["/u/[user] on the team says it is back",
                     "Same in Madrid, one grey tick only, web won't load."]

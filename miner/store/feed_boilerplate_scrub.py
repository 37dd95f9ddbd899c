"""Migration 0033's Python part: the posts an `rss` source stored with its site's boilerplate in their text, and a
link that names their author, before `miner.collectors.feed_boilerplate` took them out.

Each such row's text and link become what a poll stores now, from what the stored text kept of the boilerplate (the HTML
gone, so told by its words and the row's id): Lemmy's "submitted by <name> to <community> 31 points | 14 comments" (and
a link post's URL after it, the row's own url), where the name is the author's, kept as written; hnrss.org's "Article
URL: ... Comments URL: ... Points: 88 # Comments: 41" and its comment's title "New comment by <name> in "<story>"", the
name as written; Hacker News' own feed's "Comments"; Reddit's "submitted by u/[user] [link] [comments]" (its name a
placeholder already) and its comment's title "/u/[user] on <post's title>", bsky.app's "@[user] post", and Discourse's
"7 posts - 4 participants Read full topic" (older: "Posts: 7 Participants: 4 Read full topic") and the "<name> wrote:"
before the post (its display name, or "@[user]" in a topic's feed). A Reddit permalink becomes the short link (a post on
a user's profile, /r/u_<name>/..., named them), a Bluesky link by handle the link by the DID of the row's at:// id. A
poll only reads the newest entries of a feed, so the rows of posts no longer listed were never cleaned by it: hence a
migration, not a clean-up at each source's next poll (as `link_scrub` is for a url_env key, which only the config
knows). Only posts of sources of type `rss` are read: the reddit type stored neither, and the other types read APIs. A
text cut at max_text_chars inside the boilerplate is left as it is (a title near that long)."""

from __future__ import annotations

import re
import sqlite3

from miner.site_ids import BLUESKY_POST, REDDIT_COMMENT
from miner.store.link_scrub import SCRUB_BATCH

# The boilerplate as stored, with the space or the title's ". " before it (`normalise.join_title_body`).
_LEMMY = re.compile(r"(?:\A| )submitted by \S+ to \S+ -?\d+ points \| \d+ comments(?: (?P<link>\S+))?(?= |\Z)")
_LEMMY_ID = re.compile(r"\Ahttps?://[^/?#]+/post/\d+\Z")
_HNRSS_TAIL = re.compile(r"(?:\A| )Comments URL: https://news\.ycombinator\.com/item\?id=(?P<id>\d+) Points: -?\d+ "
                         r"# Comments: \d+\Z")
_HNRSS_ARTICLE = re.compile(r"(?:\A| )Article URL: \S+\Z")
_HNRSS_COMMENT = re.compile(r'\ANew comment by \S+ in "(?P<story>.*?)"(?:\. (?P<words>.+))?\Z', re.DOTALL)
# After the title's ". " (or its own full stop, question mark...: `join_title_body`), as the text's whole body.
_HN_COMMENTS = re.compile(r"(?<=[.!?:…]) Comments\Z")
_REDDIT_TAIL = re.compile(r"(?:\A| )submitted by /?u/\S+ \[link\] \[comments\]\Z")
_REDDIT_PERMALINK = re.compile(r"\Ahttps?://(?:[\w-]+\.)?reddit\.com/r/[^/?#]+/comments/(?P<id>[a-z0-9]+)(?:[/?#].*)?\Z")
_BSKY_HANDLE_LINK = re.compile(r"\Ahttps://bsky\.app/profile/(?!did:)[^/?#]+/post/[^/?#]+\Z")
_BSKY_TITLE = re.compile(r"\A@\S+ post\. (?=.)")
# Discourse's guids (`feed_boilerplate`): a topic's in a list feed, a post's in a topic's feed.
_DISCOURSE_ID = re.compile(r"\A(?:[^\s/]+-)?(?:topic-\d+|(?P<post>post-\d+-\d+))\Z")
_DISCOURSE_TAIL = re.compile(r"(?:\A| )(?:\d+ posts? - \d+ participants? |(?P<old>Posts: \d+ Participants: \d+ ))?"
                             r"Read full topic\Z")
# "<name> wrote:" after the title's ". " (its own "?"...): the name is all since the title's end, at most a few words.
_DISCOURSE_WROTE = re.compile(r"(?:\A|(?<=[.!?:…] ))(?P<name>[^ ]+(?: [^ ]+){0,3}) wrote: ")
# The title, up to its join with the comment's words (the first sentence's end: a title with one of its own keeps
# the rest of it, and the comment all its words).
_REDDIT_COMMENT_TITLE = re.compile(r"\A/u/\S+ on .*?[.!?:…] (?=.)", re.DOTALL)
# The rows that may hold one: an rss source's, of one of the sites' ids (LIKE is case-blind; the functions tell).
_MAY_HOLD = ("source IN (SELECT name FROM sources WHERE type = 'rss') AND (external_id LIKE 'http%/post/%' "
             "OR external_id GLOB '[0-9]*' OR external_id LIKE 't3\\_%' ESCAPE '\\' OR external_id LIKE 'at://%' "
             "OR external_id GLOB '*topic-[0-9]*' OR external_id GLOB '*post-[0-9]*' OR external_id GLOB '*t1_*')")


_BREAK = re.compile(r"[.!?:…] ")


def _cut(text: str, start: int, end: int, opens: bool = True) -> str:
    """``text`` without ``text[start:end]``, the boilerplate and the space before it. Where nothing follows, the
    title's ". " before it (`join_title_body`) goes too: where the boilerplate ``opens`` the body, or, at its end, where
    nothing before it reads as the title and a body (no sentence ends in it: a guess, of one full stop)."""
    head, rest = text[:start], text[end:]
    if rest:
        return head + rest if head else rest.lstrip()
    title = opens or not _BREAK.search(head)
    return head[:-1] if title and head.endswith(".") and not head.endswith("..") else head


def stored_text(external_id: str, text: str, url: str | None) -> str:
    """The text of a post stored by an `rss` source before, as a poll stores it now."""
    if _LEMMY_ID.match(external_id):
        if (m := _LEMMY.search(text)) is None:
            return text
        link = m.group("link")
        end = m.end() if link is None or link == url else m.start("link") - 1
        return _cut(text, m.start(), end)
    if external_id.isdigit():
        if (comment := _HNRSS_COMMENT.match(text)) is not None:
            # A comment's words alone, as the hackernews type stores them; with none, its story without the name.
            return comment.group("words") or f'New comment in "{comment.group("story")}"'
        if (tail := _HNRSS_TAIL.search(text)) is not None and tail.group("id") == external_id:
            text = _cut(text, tail.start(), tail.end(), opens=False)
            article = _HNRSS_ARTICLE.search(text)
            return _cut(text, article.start(), article.end()) if article else text
        if (comments := _HN_COMMENTS.search(text)) is not None and comments.start() > 0:
            return _cut(text, comments.start(), comments.end())
        return text
    if external_id.startswith("t3_"):
        tail = _REDDIT_TAIL.search(text)
        return _cut(text, tail.start(), tail.end(), opens=False) if tail and tail.start() > 0 else text
    if BLUESKY_POST.match(external_id) and url and _BSKY_HANDLE_LINK.match(url):
        return _BSKY_TITLE.sub("", text)
    if REDDIT_COMMENT.search(external_id):
        return _REDDIT_COMMENT_TITLE.sub("", text)
    if ident := _DISCOURSE_ID.match(external_id):
        return _discourse(text, bool(ident.group("post")))
    return text


def _discourse(text: str, topic_feed: bool) -> str:
    if (tail := _DISCOURSE_TAIL.search(text)) is None or tail.start() == 0:
        return text
    text = _cut(text, tail.start(), tail.end(), opens=False)
    # Only where the template wrote one: a topic feed's "@[user] wrote:", an older list feed's (whose counts read
    # "Posts:") by name. A post's own "I wrote:" after the newer counts stays.
    wrote = _DISCOURSE_WROTE.search(text)
    if wrote and (wrote.group("name") == "@[user]" if topic_feed else tail.group("old") is not None):
        return _cut(text, wrote.start(), wrote.end())
    return text


def stored_url(external_id: str, url: str | None) -> str | None:
    """The link of a post stored by an `rss` source before, as a poll stores it now."""
    if url is None:
        return None
    if external_id.startswith("t3_") and (m := _REDDIT_PERMALINK.match(url)) and m.group("id") == external_id[3:]:
        return f"https://www.reddit.com/comments/{m.group('id')}/"
    if (post := BLUESKY_POST.match(external_id)) and _BSKY_HANDLE_LINK.match(url):
        return f"https://bsky.app/profile/{post.group('did')}/post/{post.group('rkey')}"
    return url


def scrub_feed_boilerplate(conn: sqlite3.Connection) -> None:
    # As the link migrations (link_scrub.rewrite_column): by rowid, 1,000 of the rows that may hold one at a time,
    # each rewritten only where it changed, in the migration's one transaction.
    last = -(2 ** 63)
    while True:
        rows = conn.execute(f"SELECT rowid, external_id, text, url FROM posts WHERE rowid > ? AND {_MAY_HOLD} "
                            "ORDER BY rowid LIMIT ?", (last, SCRUB_BATCH)).fetchall()
        if not rows:
            return
        changed = []
        for rowid, ident, text, url in rows:
            new = (stored_text(ident, text, url), stored_url(ident, url))
            if new != (text, url):
                changed.append((*new, rowid))
        conn.executemany("UPDATE posts SET text = ?, url = ? WHERE rowid = ?", changed)
        last = rows[-1][0]

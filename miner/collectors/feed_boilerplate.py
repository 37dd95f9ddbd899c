"""What a site's feed writes into an entry beside the post's own words, taken out before the text is stored.

Several sites' feeds add a line of their own to each entry: who submitted it and where (Reddit's "submitted by
/u/name [link] [comments]", Lemmy's "submitted by <name> to <community> 31 points | 14 comments"), hnrss.org's
"Article URL: ... Comments URL: ... Points: 88 # Comments: 41", Hacker News' "Comments" link, hnrss's comment title
"New comment by <name> in ...", bsky.app's "@<handle> post", Reddit's comment title "/u/<name> on <post's title>"
and Discourse's "7 posts - 4 participants" and "Read full topic" (and its older "<name> wrote:"). It is no word of
the poster's: stored, it named the author whom the store keeps only as a hash (Lemmy's name, hnrss's, a Bluesky
handle, Discourse's), and classification and service matching read it as the post's (a community named "outages",
the word "comments"). Each is recognised by the site the entry is of (its link or guid, `miner.collectors.canonical`;
Discourse's and Reddit's comments here, by their guids) and by the exact shape the site writes, at the place it
writes it: a post that says "submitted by" in its own words keeps them.

A post's link is stored as the site's own source type stores it: Reddit's short link (a permalink of a post on a
user's profile, /r/u_<name>/..., names them) and Bluesky's by DID (bsky.app's feed links by handle).
"""

from __future__ import annotations

import html
import re
from typing import Any, NamedTuple

from miner.collectors.bluesky import post_url
from miner.collectors.canonical import SiteIdentity
from miner.collectors.feeds import entry_author, entry_id
from miner.site_ids import BLUESKY_POST, REDDIT_COMMENT

WWW_REDDIT = "https://www.reddit.com"
# Reddit's trailer, after the post's own HTML (which ends with "<!-- SC_ON -->"), or all a link post's body is.
REDDIT_TRAILER = re.compile(r"(?:\A|(?<=<!-- SC_ON -->))(?:&#32;|\s)*submitted\s+by(?:&#32;|\s)*<a\b.*\Z", re.DOTALL)
_BR = r"<br\s*/?>"
# Lemmy's line (crates/routes/src/feeds.rs), which opens every post's description: the author by actor id (the
# entry's dc:creator, checked), the community, the score and comment count, and a link post's URL after a <br> (the
# entry's link, stored as its url: the lemmy type's text has no link either).
_LEMMY_HEAD = re.compile(
    r'\Asubmitted by <a href="(?P<actor>[^"<>]+)">[^<>]*</a> to <a href="[^"<>]+/c/[^"<>]+">[^<>]*</a>'
    rf'{_BR}-?\d+ points \| <a href="[^"<>]+/post/\d+">\d+ comments</a>(?:{_BR}<a href="[^"<>]*">[^<>]*</a>)?')
_HN_ITEM = r'<a href="https://news\.ycombinator\.com/item\?id=\d+">'
# hnrss.org's (algolia.go): a link story's "Article URL" first, and after any story's text a rule, then its item.
_HNRSS_ARTICLE = re.compile(r'\A\s*<p>Article URL: <a href="[^"<>]*">[^<>]*</a></p>')
# Matched from the last "<p>Comments URL: " only: a search for "\s*<p>..." from every place took time squared in a
# run of blanks.
_HNRSS_TAIL = re.compile(rf"<p>Comments URL: {_HN_ITEM}[^<>]*</a></p>\s*<p>Points: -?\d+</p>\s*"
                         r"<p># Comments: \d+</p>\s*\Z")
_HNRSS_RULE = re.compile(r"<hr\s*/?>\Z")
_HNRSS_COMMENT = re.compile(r'\ANew comment by (?P<name>\S+) in "(?P<story>.*)"\Z', re.DOTALL)
# Hacker News' own feed: its item's comments link, the whole description.
_HN_COMMENTS = re.compile(rf"\A\s*{_HN_ITEM}Comments</a>\s*\Z")
_BSKY_LINK = re.compile(r"\Ahttps://bsky\.app/profile/(?P<handle>[^/?#]+)/post/[^/?#]+\Z")
# Reddit's comment feeds (/r/<sub>/comments/.rss, a post's .rss): an entry's id is the comment's fullname (relative,
# resolved against the feed's URL), its title "/u/<name> on <the post's title>", its author "/u/<name>".
_REDDIT_COMMENT_TITLE = re.compile(r"\A/u/(?P<name>[\w-]+) on ", re.IGNORECASE)
# A Discourse topic's page (the entry's link): /t/<slug>/<id>, a post's /t/<slug>/<id>/<n> (topic feeds), under the
# forum's subfolder if any; the `discourse` type names a topic by the same id ("topic:<id>").
_DISCOURSE_LINK = re.compile(r"\Ahttps?://[^/?#]+(?:/[^?#]*)?/t/[^/?#]+/(?P<topic>\d+)(?:/\d+)?\Z")
# Its guid (not a permalink): "<host>-topic-<id>" (list.rss.erb), "topic-<id>" in older versions, and a topic feed's
# "<host>-post-<id>-<n>" (topics/show.rss.erb).
_DISCOURSE_GUID = re.compile(r"\A(?:[^\s/]+-)?(?:topic-(?P<topic>\d+)|post-(?P<post_topic>\d+)-\d+)\Z")
# What Discourse's templates write after the post (its HTML, cooked): the counts (rss_num_posts and
# rss_num_participants, "7 posts - 4 participants"; older versions "Posts: 7" and "Participants: 4", num_posts and
# num_participants) and a "Read full topic" link to the entry's link; older versions, before, "<name> wrote:" linking
# the author's profile (author_wrote) and the post in a <blockquote>.
_DISCOURSE_READ = re.compile(r'<p><a href="(?P<link>[^"<>]+)">Read full topic</a></p>\s*\Z')
# Searched for before the link only, from a "<p>" each (no search from each of a run of blanks).
_DISCOURSE_COUNTS = re.compile(r"(?:<p><small>\d+ posts? - \d+ participants?</small></p>|"
                               r"<p>Posts: \d+</p>\s*<p>Participants: \d+</p>)\s*\Z")
_DISCOURSE_HEAD = re.compile(r'\A\s*<p><a href="[^"<>]+/u(?:sers)?/[^"<>/]+">[^<>]*</a> wrote:</p>\s*<blockquote>')
_DISCOURSE_QUOTE_END = re.compile(r"</blockquote>\s*\Z")


class EntryText(NamedTuple):
    title: str
    body: str
    url: str | None


def reddit_post_link(fullname: str) -> str | None:
    """Reddit's short link of the post ``fullname`` (t3_...), which takes a reader to it as its permalink does. The
    permalink names its author for a post on a user's profile (``/r/u_<name>/``), kept otherwise only hashed, and
    holds its title's words, with the contact details the stored text has as placeholders."""
    return f"{WWW_REDDIT}/comments/{fullname[3:]}/" if fullname.startswith("t3_") and fullname[3:].isalnum() else None


def without_reddit_trailer(html: str) -> str:
    """An entry body of Reddit's feed without the "submitted by /u/<name> [link] [comments]" Reddit adds."""
    return REDDIT_TRAILER.sub("", html) if "submitted" in html else html


def feed_entry_text(entry: Any, site: SiteIdentity | None, title: str, body: str, url: str | None) -> EntryText:
    """``title``, ``body`` (HTML) and ``url`` of a feed ``entry`` without what its site's feed adds (see the module):
    ``site``, the post's identity at its site where the entry says (`canonical.site_identity`)."""
    if site is not None and site.external_id.startswith("t3_"):  # Reddit's, whoever serves the feed
        return EntryText(title, without_reddit_trailer(body), reddit_post_link(site.external_id) or url)
    if site is not None and site.author_space == "hackernews":
        return _hacker_news(entry, title, body, url)
    if site is not None and (post := BLUESKY_POST.match(site.external_id)):
        # By the DID of the post's id, not the entry's author: only bsky.app's own feed names one (canonical), and a
        # copy of its feed elsewhere writes its title as well. The link is the one the id names, by its DID.
        link = _BSKY_LINK.match(url or "")
        if link and title == f"@{link.group('handle')} post":
            return EntryText("", body, post_url(site.external_id, post.group("did")) or url)
        return EntryText(title, body, url)
    if REDDIT_COMMENT.search(entry_id(entry)):
        return _reddit_comment(entry, title, body, url)
    if _discourse_topic(entry) is not None:
        return EntryText(title, _discourse_body(body, url), url)
    if body.startswith("submitted by ") and (head := _LEMMY_HEAD.match(body)) \
            and head.group("actor") == entry_author(entry):
        return EntryText(title, body[head.end():], url)
    return EntryText(title, body, url)


def lemmy_creator(entry: Any, body: str) -> str | None:
    """The actor id of the post's creator as a Lemmy instance's feed writes it, in its line opening the entry's body
    (`_LEMMY_HEAD`) and as the entry's author alike; None for an entry of no such shape."""
    author = entry_author(entry)
    if author and body.startswith("submitted by ") and (head := _LEMMY_HEAD.match(body)) \
            and head.group("actor") == author:
        return author
    return None


def _reddit_comment(entry: Any, title: str, body: str, url: str | None) -> EntryText:
    # The title is the post's, the author's name before it: a comment's words are its body, as for Hacker News'.
    head = _REDDIT_COMMENT_TITLE.match(title)
    author = (entry_author(entry) or "").removeprefix("/u/").removeprefix("u/")
    if head and head.group("name").lower() == author.lower():
        return EntryText("", body, url)
    return EntryText(title, body, url)


def _discourse_topic(entry: Any) -> str | None:
    """The topic id of a Discourse feed's entry: its link a topic's (or post's) page and its guid Discourse's of the
    same topic; None for any other entry."""
    link = _DISCOURSE_LINK.match(str(entry.get("link") or ""))
    guid = _DISCOURSE_GUID.match(str(entry.get("id") or entry.get("guid") or ""))
    if link is None or guid is None or link.group("topic") != (guid.group("topic") or guid.group("post_topic")):
        return None
    return link.group("topic")


def _discourse_body(body: str, url: str | None) -> str:
    # Only where the "Read full topic" link is the entry's own: a post quoting such a link keeps it. The older
    # "<name> wrote:" names the author (a handle, a display name), kept otherwise only hashed.
    start = body.rfind('<p><a href="')
    read = _DISCOURSE_READ.match(body, start) if start >= 0 else None
    if read is None or html.unescape(read.group("link")) != url:
        return body
    body = body[:start].rstrip()
    if counts := _DISCOURSE_COUNTS.search(body):
        body = body[:counts.start()]
    if (head := _DISCOURSE_HEAD.match(body)) and (end := _DISCOURSE_QUOTE_END.search(body, head.end())):
        body = body[head.end():end.start()]
    return body.strip()


def _hacker_news(entry: Any, title: str, body: str, url: str | None) -> EntryText:
    # A comment's title names its author and the story: the comment's words are its body, as the `hackernews`
    # type stores a comment.
    comment = _HNRSS_COMMENT.match(title)
    if comment and comment.group("name") == entry_author(entry):
        title = ""
    if _HN_COMMENTS.match(body):
        return EntryText(title, "", url)
    start = body.rfind("<p>Comments URL: ")
    if start >= 0 and _HNRSS_TAIL.match(body, start):
        head = body[:start].rstrip()
        head = head[:rule.start()] if (rule := _HNRSS_RULE.search(head, max(0, len(head) - 8))) else head
        body = _HNRSS_ARTICLE.sub("", head)
    return EntryText(title, body, url)

"""The ids sites give their posts, as miner stores them: one shape read by the collectors (a feed entry's guid,
`miner.collectors.canonical` and `feed_boilerplate`) and by the migration that cleans the rows they stored before
(`miner.store.feed_boilerplate_scrub`), so that the migration recognises exactly the ids a poll writes; and by the
store where it ties a post one source read by one id to the same post another read by another (a Pleroma status's
page, `miner.store.notice_pages`)."""

from __future__ import annotations

import re

# A Bluesky post's at:// URI: the id the API gives, and the guid of bsky.app's profile feed. Its DID is the author
# (of a feed's entry, where bsky.app's own feed gives it: BLUESKY_WEB_HOST).
BLUESKY_POST = re.compile(r"\Aat://(?P<did>did:[a-z0-9]+:[^/?#]+)/app\.bsky\.feed\.post/(?P<rkey>[^/?#]+)\Z")
# The host of Bluesky's web app, whose profile feed (/profile/<handle or DID>/rss) lists that account's own posts only
# (bluesky-social/social-app, bskyweb/cmd/bskyweb/rss.go WebProfileRSS: the author feed, less others' posts), each by
# its at:// URI as guid: the one feed whose at:// guids name their author.
BLUESKY_WEB_HOST = "bsky.app"
# A Reddit comment's fullname, a comments feed's entry id (relative, resolved against the feed's URL).
REDDIT_COMMENT = re.compile(r"(?:\A|/)t1_[a-z0-9]+\Z")
# A Pleroma or Akkoma status's web page, https://host/notice/<id>: the `url` their Mastodon API gives a status of their
# own server, <id> being that API's status id (Pleroma's MastodonAPI.StatusView, its router's /notice/:id). Nothing in
# it names the note's ActivityPub id, https://host/objects/<uuid>, which the `mastodon` source stores the status by
# (the uri every server gives it): a feed entry linking the page is stored by NOTICE_ID, and the store finds the
# status another source stored with that page as its url (miner.store.notice_pages).
PLEROMA_NOTICE = re.compile(r"\Ahttps?://(?P<host>[^/?#@]+)/notice/(?P<id>[0-9A-Za-z]+)/?\Z")
# The id a post is stored by whose page that is: host/notice/<id>, the host in lower case.
NOTICE_ID = re.compile(r"\A(?P<host>[^/?#@]+)/notice/(?P<id>[0-9A-Za-z]+)\Z")


def notice_id(url: str) -> str | None:
    """The id (``host/notice/<id>``) of the Pleroma or Akkoma status whose page ``url`` is; None for another URL."""
    match = PLEROMA_NOTICE.match(url)
    return f"{match.group('host').lower()}/notice/{match.group('id')}" if match else None


def notice_pages(ident: str) -> tuple[str, ...]:
    """The page URLs (https and http) of the status stored by ``ident`` (a `notice_id`); none for another id."""
    return (f"https://{ident}", f"http://{ident}") if NOTICE_ID.match(ident) else ()

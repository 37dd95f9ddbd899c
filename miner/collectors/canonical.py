"""The identity a post has at its site, read from a feed entry of it: the id and author an API source of that site
gives the same post.

A post read by two sources is stored once per source and counted once: a bucket counts authors, not rows (see
`miner.store.signals`). That holds where both name it and its author alike, as two Mastodon instances do (one
``host/id``, one profile URL). A feed of the same posts named them its own way: a Mastodon tag feed's entry by its
link and no author, an hnrss.org entry by its item URL and its author as a user of hnrss.org, a subreddit's by the
feed URL before the fullname, a Bluesky profile feed's by the at:// URI the API gives but with no author. The
feed's row was a second complainer beside the API source's, in every bucket the post counted in. An entry is given
its site's identity where its link or guid says which post it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from miner.collectors.base import named_everywhere
from miner.collectors.fedi_feed import FeedServer
from miner.collectors.feeds import entry_author, entry_id
from miner.collectors.mastodon import status_external_id
from miner.site_ids import BLUESKY_POST, BLUESKY_WEB_HOST, notice_id

# A Mastodon status as its web page (the RSS link and guid, the API's ``url``): https://host/@name/<id>; a remote
# status keeps its own server's. The author's profile is that URL's first part, the account ``url`` the API gives.
_MASTODON_STATUS = re.compile(r"^(?P<profile>https?://[^/?#@]+/@[^/?#@]+)/(?P<id>\d+)/?$")
# Older Mastodon gave the ActivityPub URI as the guid: https://host/users/name/statuses/<id>; GoToSocial's URIs read
# the same with a ULID for the id.
_MASTODON_URI = re.compile(
    r"^(?P<base>https?://[^/?#@]+)/users/(?P<name>[^/?#@]+)/statuses/(?P<id>\d+|[0-9A-HJKMNP-TV-Z]{26})/?$")
# A GoToSocial status's web page, the url a Mastodon server gives it: https://host/@name/statuses/<ULID>, the profile
# https://host/@name (superseriousbusiness/gotosocial internal/uris/uri.go, GenerateURIsForAccount).
_GOTOSOCIAL_STATUS = re.compile(r"^(?P<profile>https?://[^/?#@]+/@[^/?#@]+)/statuses/(?P<id>[0-9A-HJKMNP-TV-Z]{26})/?$")
# A Misskey note (and its forks' that render notes and actors alike), https://host/notes/<id>, written by the actor
# https://host/users/<id>, whose profile is https://host/@<preferredUsername> (misskey-dev/misskey
# ApRendererService.renderNote, renderPerson), the account url a `mastodon` source names the author by.
_MISSKEY_NOTE = re.compile(r"^(?P<base>https?://[^/?#@]+)/notes/[0-9A-Za-z]+/?$")
_MISSKEY_ACTOR = re.compile(r"^(?P<base>https?://[^/?#@]+)/users/[0-9A-Za-z]+/?$")
_USERNAME = re.compile(r"^[0-9A-Za-z_]+$")  # Misskey's usernames (its validateUsername)
# A Pixelfed post, https://host/p/<name>/<id> (its url and its ActivityPub id), its author's profile https://host/<name>
# (pixelfed/pixelfed app/Status.php url(), app/Profile.php url()). Read only in a feed Mastodon made: elsewhere the
# path may be anything.
_PIXELFED_POST = re.compile(r"^(?P<base>https?://[^/?#@]+)/p/(?P<name>[^/?#@]+)/(?P<id>\d+)/?$")
# The other remote statuses a Mastodon-made feed links, each as `_remote_status` says: Misskey's /notes/<id>,
# Pleroma's /objects/<uuid>, Friendica's /display/<guid>, a Lemmy post's /post/<n> and a Lemmy comment's
# /comment/<n> (numbered apart from the posts: mastodon._NUMBERED_KINDS). Only these: a remote object's url may be any
# page (an older Lemmy gave a link post's link as the Page's url), whose last part names no status.
_REMOTE_STATUS = re.compile(
    r"^https?://[^/?#@]+/(?:(?:notes|objects|display|post)/[0-9A-Za-z-]+|comment/\d+)/?$")
# A Pleroma or Akkoma status by its ActivityPub id, https://host/objects/<UUID v4> (ActivityPub.Utils
# generate_object_id), the guid (and link) their own feeds give a local status (Pleroma's Feed.FeedView activity_link)
# and the uri their Mastodon API gives it. The UUID is that object's alone, so in any feed it names that status. Its
# url there, /notice/<id>, names its activity by a database id that nothing in a feed entry ties to the UUID: an entry
# linking it is stored by it (site_ids.notice_id), and the store ties it to the status by that url.
_PLEROMA_OBJECT = re.compile(
    r"^https?://[^/?#@]+/objects/[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}/?$")
# A Hacker News item (hnrss.org's guid and comments link; HN's own feed's comments link).
_HN_ITEM = re.compile(r"^https?://news\.ycombinator\.com/item\?id=(\d+)$")
# A feed entry's <id> is the post's fullname, relative, so feedparser resolves it against the feed's URL
# ("https://www.reddit.com/r/<sub>/new/t3_..."); the API gives the bare fullname. Both store the fullname, or a
# source read both ways (its credentials set or unset later) stores each post twice. Without one, the permalink.
_REDDIT_FULLNAME = re.compile(r"(?:^|/)(t3_[a-z0-9]+)$")
_REDDIT_PERMALINK = re.compile(r"^https?://[^/?#]+/r/[^/?#]+/comments/([a-z0-9]+)(?:/[^/?#]*)?/?$")


@dataclass(frozen=True)
class SiteIdentity:
    """A feed entry's post as its site's API source names it. ``author_space``: where ``author`` is unique (see
    base.author_space), None for the feed source's own."""

    external_id: str
    author: str | None
    author_space: str | None = None


def reddit_post_id(entry: Any) -> str | None:
    """The fullname (``t3_...``) of the Reddit post a feed entry is, as the API names it; None for an entry that is
    no post (a comment, of a comments feed)."""
    if match := _REDDIT_FULLNAME.search(entry_id(entry)):
        return match.group(1)
    if match := _REDDIT_PERMALINK.match(str(entry.get("link") or "")):
        return f"t3_{match.group(1)}"
    return None


# The "[link]" of Reddit's trailer (feed_boilerplate.REDDIT_TRAILER): the post's url, which for a crosspost is the
# permalink of the post it shares (the API's url beside its crosspost_parent).
_REDDIT_LINK = re.compile(r'<span><a href="(?P<href>[^"]+)">\[link\]</a></span>')


def reddit_shared_post(html: str, fullname: str) -> str | None:
    """The fullname of another Reddit post that the Reddit feed entry ``fullname``, of body ``html``, links as its
    "[link]": a crosspost's (Reddit's feed marks no crosspost otherwise), or a link post's to a Reddit thread; None
    for a post of its own."""
    for match in _REDDIT_LINK.finditer(html):
        href = match.group("href").replace("&amp;", "&")
        permalink = _REDDIT_PERMALINK.match(href)
        if permalink and _reddit_host(urlsplit(href).hostname or "") and f"t3_{permalink.group(1)}" != fullname:
            return f"t3_{permalink.group(1)}"
    return None


def _reddit_host(host: str) -> bool:
    return host == "reddit.com" or host.endswith(".reddit.com")


def mastodon_uri_identity(uri: str, actor_id: str | None = None) -> SiteIdentity | None:
    """A Mastodon or GoToSocial status by its ActivityPub URI (https://host/users/<name>/statuses/<id>) as a `mastodon`
    source names it, host/<id>, and its author, the profile URL https://host/@<name> (the account's url); None for
    another URI. ``actor_id``: the actor a server says wrote it (a Lemmy post's creator), which must be the URI's own,
    https://host/users/<name>: a post of another actor claiming the URI as its id is not that status, nor that
    person's (named so, it was counted as their complaint, one complainer with their real one)."""
    if not (match := _MASTODON_URI.match(uri)):
        return None
    base, name = match.group("base"), match.group("name")
    if actor_id is not None and _actor_key(actor_id) != _actor_key(f"{base}/users/{name}"):
        return None
    return SiteIdentity(status_external_id(uri, ""), f"{base}/@{name}", "")


def _actor_key(actor_id: str) -> tuple[str, str]:
    """An actor id as one compares: its host in any case, its path as written."""
    try:
        parts = urlsplit(actor_id.strip())
        return ((parts.hostname or "") + (f":{parts.port}" if parts.port else ""), parts.path.rstrip("/"))
    except ValueError:  # a broken IPv6 bracket or port: no actor's
        return ("", actor_id)


def misskey_note_identity(ap_id: str, actor_id: str, username: str) -> SiteIdentity | None:
    """A Misskey note by its ActivityPub id, written by ``actor_id`` of that server whose preferredUsername is
    ``username`` (as Lemmy shows a Misskey user's note in a community), as a `mastodon` source names it: host/<id>, and
    its author by the actor's profile URL https://host/@<username> (the actor's ``url``; its id names the user by a
    database id). None for another object, or an actor of another server."""
    note, actor = _MISSKEY_NOTE.match(ap_id), _MISSKEY_ACTOR.match(actor_id)
    if not note or not actor or note.group("base").lower() != actor.group("base").lower() or \
            not _USERNAME.match(username):
        return None
    return SiteIdentity(status_external_id(ap_id, ""), f"{actor.group('base')}/@{username}", "")


def feed_author_url(feed: Any) -> str:
    """The URL a feed names its own author by (an RSS <managingEditor> or Atom <author> with a <uri>), or ""."""
    return str((feed.get("author_detail") or {}).get("href") or "")


def _remote_status(url: str, feed_host: str) -> SiteIdentity | None:
    """A status of a Mastodon-made (or Pleroma-made) feed from a server of other software, as the ``mastodon`` source
    names it.

    Mastodon's feed links a remote status by the ``url`` its server gave it, or by its ActivityPub URI where it gave
    none (mastodon/mastodon app/lib/activitypub/activity/create.rb: ``url: @status_parser.url || @status_parser.uri``);
    the API source names it by its URI (mastodon.status_external_id: host/<last part>). The two end alike for
    Misskey and its forks (https://host/notes/<id>, no url: misskey-dev/misskey ApRendererService.renderNote),
    Pleroma and Akkoma (https://host/objects/<uuid>, no url: Pleroma's CommonAPI.ActivityDraft object/1), Friendica
    (https://host/display/<guid> beside the URI https://host/objects/<guid>: friendica src/Model/Item.php newURI),
    Lemmy's posts (https://host/post/<n>; current Lemmy gives a link post's link as an attachment, not its url) and
    comments (https://host/comment/<n>: its Note has no url, LemmyNet/lemmy crates/apub/src/protocol/objects/note.rs),
    and Pixelfed (url and id https://host/p/<name>/<id>). A status whose url does not end as its URI does keeps the
    feed's id: an older Lemmy's link post by its link (page.rs gave the link as the Page's url), and Pleroma's
    /notice/<id>, which names the Create activity by its database id, not the note's /objects/<uuid> (Pleroma finds
    one from the other in its database only: ActivityPubController route_aliases). Only Pixelfed's URL names the
    author, and only one of the feed's own host is taken for it (`_own_host`); the others' rows get the author
    another source stored the status with (store.posts._shared_author)."""
    if match := _PIXELFED_POST.match(url):
        author = f"{match.group('base')}/{match.group('name')}" if _own_host(url, feed_host) else None
        return SiteIdentity(status_external_id(url, ""), author, "" if author else None)
    return SiteIdentity(status_external_id(url, ""), None) if _REMOTE_STATUS.match(url) else None


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


def _own_host(url: str, feed_host: str) -> bool:
    """Whether ``url`` is of the host the feed was read from (``feed_host``, the source url's), which names its own
    statuses and their authors. A status's url elsewhere is whatever the server that sent it claimed, or whatever the
    feed's writer linked: nothing vouches that it is that host's status, nor by whom."""
    return bool(feed_host) and _host(url) == feed_host.lower()


# A Lemmy post's page at the instance whose feed lists it, by the instance's own number for it: the guid (and comments
# link) of each entry of a Lemmy feed (LemmyNet/lemmy crates/routes/src/feeds.rs, create_post_items).
_LEMMY_POST = re.compile(r"^https?://[^/?#@]+/post/\d+/?$")


def vouched_author(entry: Any, author: str | None, feed_host: str, lemmy_actor: str | None) -> bool:
    """Whether the feed read from ``feed_host`` vouches for the author its ``entry`` names by a profile or actor URL or
    a DID (`base.named_everywhere`), so that it is that person wherever their posts are read.

    A feed writes whatever it likes as an entry's author: a blog's or a planet's <author>, dc:creator or Atom <author>
    could read ``did:plc:victim`` or ``https://b.example/@victim``, and was counted as that person's complaint (one
    with their real one of the bucket), so that any feed could make anyone a complainer. Its host vouches for its own
    users' profiles only (`_own_host`); for no DID (bsky.app's feed names its posts' author by the at:// guid alone:
    `site_identity`). A Lemmy instance's feed (``lemmy_actor``: the creator its entry's line and author name alike,
    feed_boilerplate.lemmy_creator) names the creators of posts of its own (the guid its /post/<n>) by their actor
    ids, of any instance: Lemmy takes a post from another instance only signed by its creator, so the instance
    vouches for them as its API does for a `lemmy` source. An author it does not vouch for is the feed's: hashed
    within the feed's own author space (base.author_space), where one person's entries still count once and two
    people's twice."""
    if not named_everywhere(author) or author is None:
        return False
    if _own_host(author, feed_host):
        return True
    guid = str(entry.get("id") or entry.get("guid") or "")
    return lemmy_actor == author and bool(_LEMMY_POST.match(guid)) and _own_host(guid, feed_host)


def _status_identity(url: str) -> SiteIdentity | None:
    """A Mastodon or GoToSocial status by its web page or its ActivityPub URI, and its author, as a `mastodon` source
    names them; None for another URL."""
    if match := _MASTODON_STATUS.match(url) or _GOTOSOCIAL_STATUS.match(url):
        # The profile URL is the author as the API names them (account.url), the same from every instance.
        return SiteIdentity(status_external_id(url, ""), match.group("profile"), "")
    return mastodon_uri_identity(url)


def site_identity(entry: Any, reddit: bool, server: FeedServer = "", feed_author: str = "",
                  feed_host: str = "") -> SiteIdentity | None:
    """The identity of the post a feed entry is at its site, where its guid or link (unless the link is what the
    entry shares) says; None otherwise (the entry keeps the feed's own). ``reddit``: the feed is Reddit's, whose
    entries' ids are fullnames. ``server``: the software that made it (`fedi_feed.feed_server`), Mastodon or Pleroma
    and its forks, whose entries are statuses of any server software. ``feed_author``: the URL the feed names its own
    author by (`feed_author_url`).
    ``feed_host``: the host the feed was read from (its source's url's), the one whose statuses' URLs name their
    authors (`_own_host`), and bsky.app the only one whose Bluesky posts' at:// guids do."""
    guid = str(entry.get("id") or entry.get("guid") or "")
    link = str(entry.get("link") or "")
    comments = str(entry.get("comments") or "")
    if comments and comments != link:
        # A link aggregator's entry (Lemmy's community feed, Lobsters') gives its own page as its comments link and the
        # page it shares as its link: a status, a Reddit thread or an item linked so is another post, by someone else.
        # Named as that one, it was counted as that one's author, and two such entries of one feed were one post.
        link = ""
    for url in (guid, comments, link):
        if match := _HN_ITEM.match(url):
            return SiteIdentity(match.group(1), entry_author(entry), "hackernews")
    # A Pleroma-made feed gives each status's ActivityPub id as its guid (the Atom <id>; its RSS the same as the link),
    # the uri the API source names it by, and as the link the url its server claimed for it (Feed.FeedView
    # activity_link: external_url, else the id): the guid first. A Mastodon-made feed gives the url, else the uri, as
    # both.
    urls = (guid, link) if server == "pleroma" else (link, guid)
    for url in urls:
        if status := _status_identity(url):
            if _own_host(url, feed_host):
                return status
            if server:
                # Another server's status as a Mastodon (or Pleroma) server lists it, by the url (or id) that server
                # claimed: its id, which the status has if the claim is true, but no author. Any server could claim
                # another's status, and its author (/@victim/<id> of b.example, dated at the second of victim's real
                # one): named so, the entry was counted as that person's complaint and gave that author to the other
                # rows of the post (store.posts._share_author), where another claim could put its own account in a
                # real complainer's place. The row takes the author another source stored the status with
                # (_shared_author), as a remote status of other software does (`_remote_status`): a true claim is one
                # complainer still, a false one is no one's.
                return SiteIdentity(status.external_id, None)
            # In a feed of no such server, a status of another host is one the entry links: a link blog's or
            # planet's post sharing it, its own writer's (named as that status and its author, the writer, a real
            # complainer, was merged into the status's), or a claim nothing vouches for. The entry keeps the feed's
            # own identity.
            continue
        if ident := notice_id(url):
            # A Pleroma or Akkoma status's page, which names neither the status's ActivityPub id nor its author: the
            # row is given the author of the `mastodon` source's row with that page as its url (store/notice_pages.py).
            # An author the entry names by URL (an actor id) is one from every source. One named by a handle is a user
            # of the feed's host, kept where no `mastodon` source stored the page (without it, one person's entries
            # of a bucket counted once each), and given up for that source's author where one did: kept as the
            # feed's own id and author, each status read by both was two complainers.
            # An actor id of another host than the feed's, or of a page of another host, is what the entry claims:
            # counted as that person's, it made them a complainer (or one with their real one) from a feed of
            # somewhere else. The row takes the `mastodon` source's author instead, as one naming none does.
            author = entry_author(entry)
            if named_everywhere(author) and not (_own_host(url, feed_host) and _own_host(author or "", feed_host)):
                author = None
            return SiteIdentity(ident, author, "" if named_everywhere(author) else None)
    if _PLEROMA_OBJECT.match(guid):
        # By its guid only: a link aggregator's entry (Lemmy's link post) links the status it shares, and is another
        # post. Its RSS names no author: the row takes the profile another source stored the status with
        # (store.posts._shared_author), as a remote status of a Mastodon-made feed does. Its Atom's author may give
        # the actor's id (<uri>), the profile URL a `mastodon` source names the author by: of the status's server only,
        # and that the server the feed was read from (a feed of any other host could name a status of pleroma.example
        # and its actor, and its entry was counted as that person's complaint).
        # An account's feed (/users/<name>/feed.rss, .atom) names the actor once, for the feed (RSS: <managingEditor>
        # with a <uri>; Atom: the feed's <author>), and lists that actor's own statuses only (Pleroma's
        # Feed.UserController reads the actor's Create activities): without it, the feed alone counted one person's
        # statuses of a bucket once each.
        actor = str((entry.get("author_detail") or {}).get("href") or "") or feed_author
        same_server = actor.startswith(("https://", "http://")) and urlsplit(actor).netloc == urlsplit(guid).netloc \
            and _own_host(guid, feed_host)
        return SiteIdentity(status_external_id(guid, ""), actor if same_server else None, "" if same_server else None)
    # After a Pleroma or Akkoma status by its own id (above), which a Pleroma-made feed gives its own statuses, and
    # whose author its account feed names.
    if server and (remote := _remote_status(urls[0] or urls[1], feed_host)):
        return remote
    if match := BLUESKY_POST.match(guid):
        # bsky.app's profile feed names the author by handle only, and lists no one else's posts: the DID in the URI
        # is theirs. A feed of any other host could give anyone's post URI (or a made-up one of their DID) as a
        # guid: named as its author, that person was made a complainer (or one with their real post of the bucket)
        # by a feed of somewhere else, as by a Mastodon status's URL of another host (`_own_host`). The row keeps the
        # post's id, one post with the `bluesky` source's row of it, and takes the author that source stored it with
        # (store.posts._shared_author).
        if feed_host.lower() == BLUESKY_WEB_HOST:
            return SiteIdentity(guid, match.group("did"), "")
        return SiteIdentity(guid, None)
    # A Reddit post's permalink names it wherever the feed comes from (Reddit's own, a bridge's), as does a Reddit
    # feed's entry id; its author is a Reddit user name.
    permalink = _REDDIT_PERMALINK.match(link)
    if permalink and _reddit_host(urlsplit(link).hostname or ""):
        return SiteIdentity(f"t3_{permalink.group(1)}", entry_author(entry), "reddit")
    if reddit and (fullname := reddit_post_id(entry)):
        return SiteIdentity(fullname, entry_author(entry))
    return None

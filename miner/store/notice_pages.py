"""A Pleroma or Akkoma status read by its page, https://host/notice/<id> (miner.site_ids.PLEROMA_NOTICE), and by
another source by its ActivityPub id: one post, one author.

A `mastodon` source reading a Pleroma server's own timeline stores a status by its uri (host/<uuid>) with its page as
its url; a feed entry that links the page is stored by the page (host/notice/<id>), and names no author, or names one
by a handle of the feed's host. The two ids differ, so store.posts._SAME_POST never found the one for the other, and the
entry counted as a complainer of its own beside the author the timeline read. The page ties them: it is the url the
timeline's row has. An entry naming its author by a handle (a user of the feed's host, hashed apart from the profile
URL the timeline names them by) gives it up for the timeline's: one status at one second is one author. Only a
`mastodon` source's row is looked up by it: its url is the status's own page, where a link aggregator's row (a Lemmy
link post, a Hacker News story) has the page it shares as its url, and is another post."""

from __future__ import annotations

import sqlite3
from urllib.parse import urlsplit

from miner.records import Post
from miner.site_ids import notice_id, notice_pages
from miner.timeutil import iso

# A `mastodon` source's row of the status whose page a post links, stored at its second (as _SAME_POST): looked up per
# source through posts_source_url (source, url). Only a status of the page's own server (its row's id, host/<id> made
# of its ActivityPub id, is of that host): a status's url is whatever the server that sent it says, and one of
# evil.example claiming another server's page, at the second of the status there, took over its author.
_BY_PAGE = ("source IN (SELECT name FROM sources WHERE name != ? AND type = 'mastodon') "
            "AND url IN (?, ?) AND +created_at = ? AND undated IS NULL AND substr(external_id, 1, length(?)) = ?")


def _of_server(ident: str) -> str:
    """What the id of a `mastodon` source's row (collectors.mastodon.status_external_id: the ActivityPub id's host,
    without its port, then "/") of a status of the server whose page ``ident`` (a `notice_id`) names begins with."""
    return f"{urlsplit('//' + ident.partition('/')[0]).hostname or ''}/"


def named_by_page(post: Post) -> bool:
    """Whether ``post`` is stored by a status's page (`notice_id`): its author is the `mastodon` source's row's, where
    one has that page, whatever author its own source named."""
    return bool(notice_pages(post.external_id))


def page_author(conn: sqlite3.Connection, post: Post) -> str | None:
    """The author a `mastodon` source stored the status with whose page ``post`` (stored by `notice_id`) is."""
    pages = notice_pages(post.external_id)
    if not pages or post.undated is not None:
        return None
    server = _of_server(post.external_id)
    row = conn.execute(f"SELECT author_hash FROM posts WHERE {_BY_PAGE} AND author_hash IS NOT NULL ORDER BY id "
                       "LIMIT 1", (post.source, *pages, iso(post.created_at), server, server)).fetchone()
    return str(row[0]) if row is not None else None


def share_by_page(conn: sqlite3.Connection, post: Post) -> None:
    """Give the author of ``post``, where a `mastodon` source stored it with its page as its url, to the rows other
    sources stored it by that page (`notice_id`): without one, or with the handle a feed named its author by."""
    ident = notice_id(post.url or "") if post.author_hash and post.undated is None else None
    if ident is None or not post.external_id.startswith(_of_server(ident)) or conn.execute(
            "SELECT 1 FROM sources WHERE name = ? AND type = 'mastodon'", (post.source,)).fetchone() is None:
        return
    conn.execute("UPDATE posts SET author_hash = ? WHERE source IN (SELECT name FROM sources WHERE name != ?) "
                 "AND external_id = ? AND +created_at = ? AND undated IS NULL AND author_hash IS NOT ?",
                 (post.author_hash, post.source, ident, iso(post.created_at), post.author_hash))

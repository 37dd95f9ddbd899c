"""A post a source lists again under another id than the one the store has it under: a feed that gives its entries
new ids at each fetch (told by link, text and date), and an entry stored under its feed's id before miner read its
site's identity."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from miner.records import Post
from miner.timeutil import iso


def relisted(conn: sqlite3.Connection, post: Post, listed: Sequence[str] = ()) -> str | None:
    """The id of the post stored from ``post``'s source that ``post`` is, listed again under another id; None for
    none. Some feeds give an entry a new id at every fetch (a CMS that puts a timestamp or a session in the guid), or
    another scheme of ids (a switch from RSS to Atom): by id alone every entry listed was stored again, and counted
    again as new complaints, a false outage signal. As feed readers do, the link tells, with the text and the date:
    the replies of a thread's feed (AWS's items too) all link to it, and are distinct posts, as are entries of one
    day that link to a site's home page. An entry dated at its fetch (none given), or one a post dated at its fetch
    is, is told by its link and text, one without a link by its text and date; one with neither by its id only.
    The author must match too (none: none). A post whose id is among ``listed``
    (the poll's ids) is not re-listed: its entry is still in the feed, so this one is another (two replies of one
    minute, one text said by two people)."""
    if post.url is None and post.undated is not None:
        return None
    if post.url is None:
        match, args = "url IS NULL AND created_at = ? AND text = ?", [iso(post.created_at), post.text]
    elif post.undated is None:
        # Two dated posts by their text and date: replies of one text at two times are two posts, and so are two
        # entries of one day (a feed dated by the day) linking to one page.
        match, args = ("url = ? AND text = ? AND (undated IS NOT NULL OR created_at = ?)",
                       [post.url, post.text, iso(post.created_at)])
    else:
        match, args = "url = ? AND text = ?", [post.url, post.text]
    row = conn.execute(
        f"SELECT external_id FROM posts WHERE source = ? AND {match} AND author_hash IS ? "
        "AND external_id NOT IN (SELECT value FROM json_each(?)) ORDER BY id LIMIT 1",
        (post.source, *args, post.author_hash, json.dumps(list(listed)))).fetchone()
    return str(row[0]) if row is not None else None


def under_feed_id(conn: sqlite3.Connection, post: Post) -> str | None:
    """``post.feed_id`` where the store has ``post`` under it and not under its site's id (Post.feed_id): stored
    before miner read a feed entry's site identity (collectors/canonical.py), the entries still in the feed came back
    under new ids, with authors the rows had not, and were stored and counted again."""
    rows = conn.execute("SELECT external_id FROM posts WHERE source = ? AND external_id IN (?, ?)",
                        (post.source, post.external_id, post.feed_id)).fetchall()
    return post.feed_id if [r[0] for r in rows] == [post.feed_id] else None

"""A post that shares another the store has, read by a feed that does not say it shares it: that post again.

Reddit's feeds do not mark a crosspost: its entry is its poster's, under its own fullname, dated when it was
crossposted, and its "[link]" is the permalink of the post it shares (collectors/canonical.py, reddit_shared_post). The
API reads a crosspost as the post it shares (collectors/reddit.py), so the same "Outlook down?" read by a subreddit's
feed and the API, or by the feeds of the two subreddits it was posted and crossposted to, was two complainers. A link
post to a Reddit thread looks the same in the feed, and is its poster's own post: a crosspost keeps the title of the
post it shares, and that is what tells them apart. Only where the store has that post already: dated and written by
someone the feed does not name, it cannot be stored as that post from the crosspost's entry alone."""

from __future__ import annotations

import sqlite3

from miner.records import Post

# A row of the shared post (any source's, its id being its site's: looked up per source through the posts' unique
# index on (source, external_id), not by a scan of every post), whose text is the sharing post's words (its title:
# a crosspost has no body of its own) or begins with them as a title (collectors.normalise.join_title_body: "title.
# body", or "title body" after a title ending in a stop).
_SHARED = ("source IN (SELECT name FROM sources) AND external_id = :shares AND undated IS NULL "
           "AND (text = :text OR substr(text, 1, length(:text) + 1) IN (:text || ' ', :text || '.'))")


def shares_stored(conn: sqlite3.Connection, post: Post) -> bool:
    """Whether ``post`` shares (Post.shares) a post the store has, under its title: it is that post again."""
    if post.shares is None or post.undated is not None:
        return False
    row = conn.execute(f"SELECT 1 FROM posts WHERE {_SHARED} LIMIT 1",
                       {"shares": post.shares, "text": post.text}).fetchone()
    return row is not None

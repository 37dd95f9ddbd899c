"""A post that shares another the store has, read by a feed that does not say it shares it: that post again.

Reddit's feeds do not mark a crosspost: its entry is its poster's, under its own fullname, dated when it was
crossposted, and its "[link]" is the permalink of the post it shares (collectors/canonical.py, reddit_shared_post). The
API reads a crosspost as the post it shares (collectors/reddit.py), so the same "Outlook down?" read by a subreddit's
feed and the API, or by the feeds of the two subreddits it was posted and crossposted to, was two complainers. A link
post to a Reddit thread looks the same in the feed, and is its poster's own post: a crosspost keeps the title of the
post it shares, and that is what tells them apart. Only where the store has that post already: dated and written by
someone the feed does not name, it cannot be stored as that post from the crosspost's entry alone. So it is stored as
itself, with the post it shares (posts.shares), and when that post is stored after it (a poll later, or the other
subreddit's feed of the same round answering later), the row goes (drop_copies): it was never more than a copy, and
both counted as complainers."""

from __future__ import annotations

import sqlite3

from miner.records import Post

# The post a stored post shares (Post.shares), kept where the store had it not yet, and looked up when it comes.
SHARES_SQL = """
ALTER TABLE posts ADD COLUMN shares TEXT;
CREATE INDEX posts_shares ON posts (shares) WHERE shares IS NOT NULL;
"""

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


# The rows that share the post just stored (:id, its site's id) under its title, as _SHARED reads it the other way:
# their words are its text, or its text begins with them as a title. By the partial index on shares (the IS NOT NULL
# lets SQLite before 3.33 see that it applies), not a scan of every post.
_COPIES = ("shares = :id AND shares IS NOT NULL AND id != :row AND undated IS NULL "
           "AND (text = :text OR substr(:text, 1, length(text) + 1) IN (text || ' ', text || '.'))")


def drop_copies(conn: sqlite3.Connection, post: Post, row: int) -> list[str]:
    """Delete the posts stored before ``post`` (stored now, as row ``row``) that share it under its title, copies of
    it (see shares_stored); returns their created_at, whose buckets counted them and are to be recounted. Their
    verdicts and services go with them (ON DELETE CASCADE); an incident citing one as a sample cites ``row``, the
    post it shared, instead."""
    if post.undated is not None:
        return []
    copies = conn.execute(f"SELECT id, created_at FROM posts WHERE {_COPIES}",
                          {"id": post.external_id, "row": row, "text": post.text}).fetchall()
    for copy_id, _at in copies:
        # CASE, not AND: json_each raises on a sample_post_ids that is not JSON (edited by hand), whatever the order.
        conn.execute(
            "UPDATE incidents SET sample_post_ids = (SELECT json_group_array(CASE WHEN value = :copy THEN :row "
            "ELSE value END) FROM json_each(sample_post_ids)) WHERE EXISTS (SELECT 1 FROM json_each(CASE WHEN "
            "json_valid(sample_post_ids) THEN sample_post_ids ELSE '[]' END) WHERE value = :copy)",
            {"copy": copy_id, "row": row})
        conn.execute("DELETE FROM posts WHERE id = ?", (copy_id,))
    return [str(at) for _id, at in copies]

"""The ids sites give their posts, as miner stores them: one shape read by the collectors (a feed entry's guid,
`miner.collectors.canonical` and `feed_boilerplate`) and by the migration that cleans the rows they stored before
(`miner.store.feed_boilerplate_scrub`), so that the migration recognises exactly the ids a poll writes."""

from __future__ import annotations

import re

# A Bluesky post's at:// URI: the id the API gives, and the guid of bsky.app's profile feed. Its DID is the author.
BLUESKY_POST = re.compile(r"\Aat://(?P<did>did:[a-z0-9]+:[^/?#]+)/app\.bsky\.feed\.post/(?P<rkey>[^/?#]+)\Z")
# A Reddit comment's fullname, a comments feed's entry id (relative, resolved against the feed's URL).
REDDIT_COMMENT = re.compile(r"(?:\A|/)t1_[a-z0-9]+\Z")

"""Which fediverse server software made a feed: what tells how far its entries' links and authors are to be taken
(collectors/canonical.py, site_identity).

A Mastodon server's tag feed, and a Pleroma server's or its forks' (Akkoma, Rebased), lists the statuses of every
server that carry the tag, each remote one by what its own server claimed for it.
"""

from __future__ import annotations

from typing import Any, Literal

# The software that made a feed of statuses, as `feed_server` tells it; "" for any other feed.
FeedServer = Literal["mastodon", "pleroma", ""]

# An ActivityStreams 1.0 note, posted: the object type and verb each entry of a Pleroma-made Atom feed carries, and
# each item of Rebased's account RSS (lib/pleroma/web/templates/feed/feed/_tag_activity.atom.eex, _activity.rss.eex
# of Pleroma and of soapbox-pub/rebased). Their Atom feeds name no generator, nor do Akkoma's (its tag.atom.eex, which
# renders the same _tag_activity.atom partial; that partial of Akkoma's own was not found to read).
_AS_NOTE = "http://activitystrea.ms/schema/1.0/note"
_AS_POST = "http://activitystrea.ms/schema/1.0/post"


# The RSS generators of Pleroma and its forks: Pleroma.Application.named_version(), the project's name in its mix.exs
# and its version: "Pleroma" (Rebased's too), "Akkoma" (AkkomaGang/akkoma mix.exs).
_PLEROMA_GENERATORS = ("Pleroma ", "Akkoma ")


def feed_server(feed: Any, entry: Any) -> FeedServer:
    """"mastodon" for an entry of a feed a Mastodon server made (its generator "Mastodon v4.3.2"); "pleroma" for one
    of Pleroma or a fork of it: Pleroma's RSS names "Pleroma <version>" as its generator (tag.rss.eex:
    Pleroma.Application.named_version), Akkoma's "Akkoma <version>" (`_PLEROMA_GENERATORS`), and its Atom entries,
    and its forks', are ActivityStreams notes posted (`_AS_NOTE`); "" for any other. Each entry of either is a
    status, a remote one listed by what its own server claimed."""
    generator = str(feed.get("generator") or "")
    if generator.startswith("Mastodon"):
        return "mastodon"
    if generator.startswith(_PLEROMA_GENERATORS) or (str(entry.get("activity_object-type") or "") == _AS_NOTE
                                            and str(entry.get("activity_verb") or "") == _AS_POST):
        return "pleroma"
    return ""

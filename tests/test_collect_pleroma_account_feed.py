"""A Pleroma or Akkoma account's feed, which names its actor once for the feed: each of its statuses is that actor's.
`miner collect --once` against a real local server, then the store's own count of a bucket's complainers (as
tests/test_collect_cross_source.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakeserver import FakeServer
from test_collect_cross_source import MASTODON, _collect, _complaints, _config, _posts, serve_as_pleroma


@pytest.mark.parametrize("with_timeline", [False, True])
def test_a_pleroma_account_feed_names_its_statuses_by_the_actor_it_names_once_for_the_feed(
        tmp_path: Path, server: FakeServer, with_timeline: bool) -> None:
    # Pleroma's account feed names the actor in the channel (<managingEditor> with a <uri>) and in no item: each of
    # quill's two statuses of the bucket was a complainer of its own (its row id), as was, beside the timeline, the
    # second one the timeline does not list. The actor is the profile URL the timeline names quill by. Read from
    # quill's own server, the one the feed names him of.
    serve_as_pleroma(server, "/api/v1/timelines/tag/outage", "mastodon/pleroma_tag_timeline.json", "application/json")
    serve_as_pleroma(server, "/users/quill/feed.rss", "mastodon/pleroma_user_quill.rss", "application/rss+xml")
    feed = '[[sources]]\nname = "quill-feed"\ntype = "rss"\nurl = "{url}/users/quill/feed.rss"\nservices = ["Signal"]\n'
    api = "[[sources]]" + MASTODON.split("[[sources]]")[1] if with_timeline else ""
    _collect(_config(tmp_path, ["Signal", "Vodafone"], (api + feed).format(url=server.url)))
    found = _posts(tmp_path / "m.sqlite")
    assert {ident for ident, _author in found["quill-feed"]} == {
        "127.0.0.1/5f7c1a2e-8d3b-4e6f-9a0c-1b2d3e4f5a6b", "127.0.0.1/9d2e6b10-3f4a-4c8e-b1d7-5e6f7a8b9c0d"}
    [quill] = {author for _ident, author in found["quill-feed"]}
    assert quill is not None
    if with_timeline:
        assert ("127.0.0.1/5f7c1a2e-8d3b-4e6f-9a0c-1b2d3e4f5a6b", quill) in found["masto"]
    # quill once; and marten, whose status the timeline read.
    assert _complaints(tmp_path / "m.sqlite") == (2 if with_timeline else 1)

"""A Pleroma (or Akkoma) server's tag feed lists other servers' statuses by their ActivityPub ids: each is the status a
`mastodon` source reads, one post and one complainer. `miner collect --once` against a real local server, then the
store's own count of a bucket's complainers (as tests/test_collect_cross_source.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakeserver import FakeServer, Reply
from test_collect_cross_source import _collect, _complaints, _config, _posts

SOURCES = """
[[sources]]
name = "masto"
type = "mastodon"
url = "{url}"
query = "#outage"
services = ["Signal"]

[[sources]]
name = "pleroma-feed"
type = "rss"
url = "{url}/tags/outage.{ext}"
services = ["Signal"]
"""


@pytest.mark.parametrize("feed_first", [False, True])
@pytest.mark.parametrize(("fixture", "ext", "kind"), [
    # Pleroma's RSS: generator "Pleroma <version>", guid and link the status's id (Feed.FeedView activity_link).
    ("mastodon/pleroma_tag_remote.rss", "rss", "application/rss+xml"),
    # Akkoma's (and Rebased's) Atom: no generator; each entry an ActivityStreams note, <id> the status's id, its
    # alternate link the url its server claimed, its author the remote actor.
    ("mastodon/akkoma_tag_remote.atom", "atom", "application/atom+xml"),
])
def test_a_pleroma_servers_tag_feed_names_other_servers_statuses_as_the_timeline_does(
        tmp_path: Path, server: FakeServer, fixture: str, ext: str, kind: str, feed_first: bool) -> None:
    # GoToSocial's, Pixelfed's, Misskey's, Friendica's and Lemmy's statuses kept the feed's identity (the id URL as the
    # guid): beside the timeline's row of each, a second post and a second complainer. Only Mastodon-made feeds were
    # read as listing other servers' statuses.
    server.serve_fixture("/api/v1/timelines/tag/outage", "mastodon/tag_timeline_remote.json", "application/json")
    server.serve_fixture(f"/tags/outage.{ext}", fixture, kind)
    sources = SOURCES.format(url=server.url, ext=ext)
    if feed_first:
        _collect(_config(tmp_path, ["Signal"], "[[sources]]" + sources.split("[[sources]]")[2]))
    _collect(_config(tmp_path, ["Signal"], sources))
    found = _posts(tmp_path / "m.sqlite")
    assert len(found["masto"]) == 6 and None not in {author for _ident, author in found["masto"]}
    # Each status by the id and the author the timeline gives it (the author another source stored it with: the
    # feed's own names none of another server's).
    assert found["pleroma-feed"] == found["masto"]
    # Six people of six servers, not twelve.
    assert _complaints(tmp_path / "m.sqlite") == 6


def test_an_akkoma_servers_tag_rss_names_other_servers_statuses_as_the_timeline_does(
        tmp_path: Path, server: FakeServer) -> None:
    # Akkoma's RSS is Pleroma's template, its generator Pleroma.Application.named_version(): "Akkoma <version>" (its
    # mix.exs names the project Akkoma). Read as no fediverse server's, its remote statuses kept the feed's identity.
    rss = server.fixture_bytes("mastodon/pleroma_tag_remote.rss")
    assert b"<generator>Pleroma 2.7.0</generator>" in rss
    server.serve("/tags/outage.rss", Reply(200, rss.replace(b"<generator>Pleroma 2.7.0</generator>",
                                                             b"<generator>Akkoma 3.10.3</generator>"),
                                           content_type="application/rss+xml"))
    server.serve_fixture("/api/v1/timelines/tag/outage", "mastodon/tag_timeline_remote.json", "application/json")
    _collect(_config(tmp_path, ["Signal"], SOURCES.format(url=server.url, ext="rss")))
    found = _posts(tmp_path / "m.sqlite")
    assert len(found["masto"]) == 6
    assert found["pleroma-feed"] == found["masto"]
    assert _complaints(tmp_path / "m.sqlite") == 6

"""A Mastodon user's status in a Lemmy community, read by a `lemmy` source (by its ActivityPub id, its creator by the
actor id) and by a `mastodon` source (host/<id>, the profile URL): one post of one author. `miner collect --once`
against a real local server, then the store's own count of a bucket's complainers (as
tests/test_collect_cross_source.py)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from fakeserver import FakeServer, Reply
from test_collect_cross_source import MASTODON, _collect, _complaints, _config, _posts

LEMMY = """
[[sources]]
name = "lemmy"
type = "lemmy"
url = "{url}/lemmy"
query = "signal"
services = ["Signal"]
"""


def _search(server: FakeServer) -> dict[str, Any]:
    """Lemmy's search answer (the view of `lemmy/search.json`'s first post) holding the first status of
    `mastodon/tag_timeline.json` as Lemmy shows a Mastodon user's status in a community: a post of another instance
    whose ap_id is the status's URI and whose creator is the actor (actor_id https://host/users/<name>), published
    when the status was; and a post of that second by a Lemmy user, in like words."""
    data = json.loads(server.fixture_bytes("lemmy/search.json"))
    status = json.loads(server.fixture_bytes("mastodon/tag_timeline.json"))[0]
    native = data["posts"][0]
    federated = copy.deepcopy(native)
    federated["post"].update(id=2291300, name="Signal messages stuck on one grey tick", body=status["content"],
                             ap_id=status["uri"], local=False, published=status["created_at"].replace(".000Z",
                                                                                                      ".000000Z"))
    federated["creator"].update(id=90412, name="ferriswheel", actor_id="https://mastodon.social/users/ferriswheel",
                                local=False, instance_id=57)
    native["post"].update(name="Signal messages stuck for me too", body="One grey tick since 14:00, calls fail too.",
                          published=federated["post"]["published"])
    return {"type_": "All", "comments": [], "posts": [federated, native]}


def test_a_mastodon_status_in_a_lemmy_community_is_the_post_and_author_the_timeline_reads(
        tmp_path: Path, server: FakeServer) -> None:
    # Stored by its ap_id, its creator by the actor id (https://mastodon.social/users/ferriswheel), the status the
    # timeline reads by host/<id> and the profile URL (https://mastodon.social/@ferriswheel) was a second post of a
    # second author. The Lemmy user's post of that second, in like words, stays a post of its own.
    server.serve_fixture("/api/v1/timelines/tag/outage", "mastodon/tag_timeline.json", "application/json")
    server.serve("/lemmy/api/v3/search", Reply(200, json.dumps(_search(server)).encode(),
                                               content_type="application/json"))
    timeline_only = "[[sources]]" + MASTODON.split("[[sources]]")[1]
    _collect(_config(tmp_path, ["Signal", "Vodafone"], (timeline_only + LEMMY).format(url=server.url)))
    found = _posts(tmp_path / "m.sqlite")
    timeline = dict(found["masto"])
    lemmy = dict(found["lemmy"])
    assert set(lemmy) == {"https://lemmy.world/post/2291001", "mastodon.social/113551234567890123"}
    assert lemmy["mastodon.social/113551234567890123"] == timeline["mastodon.social/113551234567890123"]
    assert lemmy["https://lemmy.world/post/2291001"] not in timeline.values()
    # ferriswheel's Signal status, kaffeetasse's Vodafone one, and the Lemmy user's post.
    assert _complaints(tmp_path / "m.sqlite") == 3


def _misskey_search(server: FakeServer) -> dict[str, Any]:
    """As `_search`, of the Misskey user's status of `mastodon/tag_timeline_remote.json` (hoshi's note,
    https://misskey.io/notes/9z8y7x6w5v): Lemmy names its creator by the actor id Misskey gives, https://misskey.io/
    users/<the user's database id> (ApRendererService.renderPerson's id; the id here is invented), and by its
    preferredUsername, the username; the profile URL the timeline names hoshi by, https://misskey.io/@hoshi, is
    nowhere in the view."""
    data = json.loads(server.fixture_bytes("lemmy/search.json"))
    note = next(s for s in json.loads(server.fixture_bytes("mastodon/tag_timeline_remote.json"))
                if "/notes/" in s["uri"])
    native = data["posts"][0]
    federated = copy.deepcopy(native)
    federated["post"].update(id=2291301, name="Signal down?", body=note["content"], ap_id=note["uri"], local=False,
                             published=note["created_at"].replace("Z", "000Z"))
    federated["creator"].update(id=90413, name="hoshi", display_name="Hoshi",
                                actor_id="https://misskey.io/users/9t2k4h1m0c", local=False, instance_id=58)
    native["post"].update(name="Signal messages stuck for me too", body="One grey tick since 14:00, calls fail too.",
                          published=federated["post"]["published"])
    return {"type_": "All", "comments": [], "posts": [federated, native]}


def test_a_misskey_users_note_in_a_lemmy_community_is_the_post_and_author_the_timeline_reads(
        tmp_path: Path, server: FakeServer) -> None:
    # Stored by its ap_id and its creator by the actor id (https://misskey.io/users/<database id>), the note the
    # timeline reads by host/<id> and the profile URL (https://misskey.io/@hoshi) was a second post of a second author.
    server.serve_fixture("/api/v1/timelines/tag/outage", "mastodon/tag_timeline_remote.json", "application/json")
    server.serve("/lemmy/api/v3/search", Reply(200, json.dumps(_misskey_search(server)).encode(),
                                               content_type="application/json"))
    timeline_only = "[[sources]]" + MASTODON.split("[[sources]]")[1]
    _collect(_config(tmp_path, ["Signal", "Vodafone"], (timeline_only + LEMMY).format(url=server.url)))
    found = _posts(tmp_path / "m.sqlite")
    timeline = dict(found["masto"])
    lemmy = dict(found["lemmy"])
    assert set(lemmy) == {"https://lemmy.world/post/2291001", "misskey.io/9z8y7x6w5v"}
    assert lemmy["misskey.io/9z8y7x6w5v"] == timeline["misskey.io/9z8y7x6w5v"]
    assert lemmy["https://lemmy.world/post/2291001"] not in timeline.values()
    # The timeline's six people, and the Lemmy user's post.
    assert _complaints(tmp_path / "m.sqlite") == 7


"""IPv6 hosts in brackets in a post's text: a login before one and a key in a link to one are stored without them,
a scheme or not, and the classifier reads such a link as "http" and its host, without the login."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from test_text_links import rewritten_by

from miner.classify.tokenize import clean
from miner.collectors.normalise import post_text
from miner.text_links import public_text_links

NOW = datetime.now(UTC).replace(microsecond=0)
R = "[redacted]"

# What a poster writes, and what the store keeps of it.
IPV6 = [
    ("router admin:hunter2@[2001:db8::1]:8080/setup won't load", "router [2001:db8::1]:8080/setup won't load"),
    ("psql postgres:s3cret@[::1] fails, (ops:pa$$w0rd!@[fe80::1%25eth0]:22) too",
     "psql [::1] fails, ([fe80::1%25eth0]:22) too"),
    ("dev [::1]:3000/reset?token=abc123 loops, [2001:db8::1]/login?password=hunter2.",
     f"dev [::1]:3000/reset?token={R} loops, [2001:db8::1]/login?password={R}."),
    ("mapped u:p4ss@[::ffff:192.0.2.1]/x", "mapped [::ffff:192.0.2.1]/x"),
]

# Kept to the character: brackets that hold no IPv6 host, an address's "@" before one (the contacts'), no key.
KEPT = ["see [::1] and [dead:beef], [a:b]/x?token=1, [email]/x?token=1, 3:1@[::1], email:bob@[::1]",
        "http://[::1]:8080/x and [2001:db8::1]/status, RT @[user]: 10:30 [number]"]


@pytest.mark.parametrize(("written", "stored"), IPV6)
def test_a_login_or_key_by_an_ipv6_host_is_not_stored(written: str, stored: str) -> None:
    assert public_text_links(written) == stored
    assert public_text_links(stored) == stored  # stored again as it is (a migrated text, a replay)
    assert post_text("x", written, 1000) == f"x. {stored}"


def test_brackets_without_an_ipv6_host_or_a_credential_are_kept_beside_one() -> None:
    written, stored = IPV6[0]
    for text in KEPT:
        assert public_text_links(f"{text} {written}") == f"{text} {stored}"
        assert public_text_links(f"{written} {text}") == f"{stored} {text}"
    # Made to be slow (brackets, ":" and "@" over and over): each is read whole, in a few milliseconds.
    for hostile in ("[" + "1:" * 4999, "a:b@[" * 2000, "[::1" * 2500, "a:@[::1]x" * 1100, "[:" * 4999 + "]/"):
        assert len(public_text_links(f"{hostile} {written}")) >= len(hostile) + len(stored)


def test_the_classifier_reads_a_link_as_its_host_without_the_login() -> None:
    # Raw input (`miner classify`) keeps a link's login; the posts the model was trained on were stored without it.
    assert clean("down http://user:pw@[2001:db8::1]:8080/x and https://ops:hunter2@Grafana.example.com/d/1") == (
        "down http [2001:db8::1]:8080 and http grafana.example.com")
    assert clean("http://[::1]/x http://[2001:DB8::1]") == "http [::1] http [2001:db8::1]"


def test_a_store_from_before_keeps_no_login_or_key_by_an_ipv6_host(tmp_path: Path) -> None:
    # Texts stored before, as the collectors kept them then (the links with a scheme already without theirs): the
    # upgrade rewrites those, a batch at a time, and leaves every other text as it was.
    path = tmp_path / "old.sqlite"
    # Its e-mail addresses with an address literal are 0031_email_literals' (store/email_scrub.py), run after it.
    literals = {KEPT[0]: KEPT[0].replace("1@[::1]", "[email]").replace("bob@[::1]", "[email]")}
    kept = rewritten_by(path, "0028_ipv6_text_links", {**dict(IPV6), **literals},
                        [*KEPT[1:], "Note: [email] at 10:30, 11:00 [number]"])
    for secret in (b"hunter2", b"s3cret", b"pa$$w0rd", b"abc123", b"p4ss", b"postgres:"):
        assert secret not in kept

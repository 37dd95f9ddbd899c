"""An e-mail address whose domain is an address literal in brackets (``bob@[192.0.2.1]``, ``bob@[::1]``) is stored as
"[email]", as one with a domain name is, and nothing else in brackets after an "@" is taken for one."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from miner.collectors.matching import ServiceMatcher
from miner.collectors.normalise import post_text, redact_contacts
from miner.config import ServiceConfig

_POSTS = Path(__file__).resolve().parents[1] / "miner" / "data" / "sentitel-2019.jsonl.gz"


@pytest.mark.parametrize(("text", "kept"), [
    ("mail bob@[192.0.2.1] or bob@[::1]", "mail [email] or [email]"),
    ("RFC 5321's form: ann@[IPv6:2001:db8::1], and ann@[ipv6:2001:DB8::2].", "RFC 5321's form: [email], and [email]."),
    # Its digits were taken for a long number, and the name before them kept: "ops@[[number]]".
    ("write ops@[10.100.200.123] (the relay)", "write [email] (the relay)"),
    ("連絡は jane＠[192.0.2.7] まで", "連絡は [email] まで"),
])
def test_an_address_literal_is_an_email_address(text: str, kept: str) -> None:
    assert redact_contacts(text) == kept


@pytest.mark.parametrize("text", [
    # No IP address in the brackets: a footnote, a word, a placeholder a text already holds, a version.
    "see x@[1] and y@[cafe]", "v@[1.2.3] and w@[::g]", "said @[user] and u/[user]", "ping @[email] [number]",
    "x@[] or @[::1] alone",
])
def test_brackets_holding_no_address_stay(text: str) -> None:
    assert redact_contacts(text) == text


def test_real_posts_lose_an_address_literal_and_nothing_else() -> None:
    with gzip.open(_POSTS, "rt", encoding="utf-8") as fh:
        texts = [json.loads(line)["text"] for line in fh]
    assert len(texts) > 5_000
    for text in texts:
        stored = post_text("", text, 10_000, plain=True)
        assert post_text("", f"{text} mail bob@[192.0.2.1] or bob@[2001:db8::1]", 10_000, plain=True) == (
            f"{stored} mail [email] or [email]")


def test_handles_are_still_placeholders_next_to_an_address_literal() -> None:
    matcher = ServiceMatcher([ServiceConfig("Signal")])
    text = matcher.redact_people(post_text("", "@jane @SignalSupport down? mail ops@[192.0.2.1]", 500, plain=True))
    assert text == "@[user] @SignalSupport down? mail [email]"
    assert matcher.redact_people(text) == text

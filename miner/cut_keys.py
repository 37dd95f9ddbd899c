"""The start of a `url_env` source's key that a post's text, cut short inside the key, ends with.

`miner.redaction.redact` takes a key out whole, as written or percent-encoded. A text cut inside one keeps what came
before the cut ("feed moved to https://x.example/feeds/0123abcd…"), which matches it no more: a text its source cut
(a feed's summary, a forum's excerpt, ending "…", "..." or "[…]"), or one the store cut at max_text_chars before it
took the source's key out of texts, which the source's next poll cleans (`miner.store.link_scrub.
scrub_source_secrets`: the key is in the environment only). That start becomes ``[redacted]`` too, the cut's mark
kept after it: at the text's end only, where a cut is, and from CUT_KEY_LEAST characters of the key.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from miner.redaction import REDACTED, cut_start_length
from miner.urls import PIECES, token_like

# The least of a key's characters taken for its start. Fewer tell little of a key (8 characters or more, 12 for one
# that reads as a token: `secret_parts`) and are what a text ends with by chance ("...since 20" before a key that
# begins "20ab"); 4 is where the messages' redaction starts taking out a credential they quote
# (collectors.base.without_credentials, alerts.send_failures): shorter, it would garble the words.
CUT_KEY_LEAST = 4
# What a cut puts after a text: the store's "…" (normalise.cut), a source's "...", or "[…]" and "[...]" (WordPress).
_MARKS = ("[…]", "[...]", "…", "...")


@lru_cache(maxsize=64)  # a source's few keys, asked of at each text
def least_start(secret: str) -> int:
    """How many of ``secret``'s characters a start of it holds at least to be taken for it: CUT_KEY_LEAST of its
    first piece that reads as a token. A key is also taken whole with the words before that piece (a host label's
    "feed-<token>", a path segment's "rss-<token>.xml": `secret_parts`), and a text ending "...our feed" or "rss-"
    ends with no key."""
    at = 0
    for piece in PIECES.split(secret):  # each separator one character
        if token_like(piece):
            return at + CUT_KEY_LEAST
        at += len(piece) + 1
    return CUT_KEY_LEAST  # a key-named parameter's value: a key as a whole


def redact_cut_key(text: str, secrets: Sequence[str]) -> str:
    """``text`` (taken through `redact` with ``secrets`` first) with the start of one of ``secrets`` it ends with,
    before a cut's mark, as ``[redacted]``."""
    if not secrets:
        return text
    body = text.rstrip()
    for mark in _MARKS:
        if body.endswith(mark):
            body = body[:-len(mark)].rstrip()
            break
    if cut := cut_start_length(body, secrets, least_start):
        return f"{body[:len(body) - cut]}{REDACTED}{text[len(body):]}"
    return text

"""Text -> padded token-id arrays with the `tokenizers` library, shared by training and serving.

Training and serving go through this one function so that the ONNX model sees exactly the inputs it was
trained on (same lower-casing, truncation and padding).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from tokenizers import Tokenizer

from miner.errors import ModelError

MAX_CHARS = 4000  # tokenising a 10k-character post costs time and the tail is truncated anyway
# Whitespace is folded before the cap, so only this much raw text is read: a post of 5,000 blanks and then
# "whatsapp is down" must keep its words (truncation to max_length word pieces keeps far fewer characters).
_RAW_CHARS = 16 * MAX_CHARS
# A link is 10-30 word pieces of hash and path that say nothing about an outage; "http" and the host name keep
# what does (that there was a link, and to which site: photo and check-in links are rarely reports). On a
# stream of shared posts this cut tokens per post by a fifth (models/MODEL_CARD.md).
_URL = re.compile(r"(?:https?://(?:www\.)?|www\.)([^\s/?#]*)\S*", re.IGNORECASE)
# Names what clean() does. A model is trained and served on the same cleaning: build.py makes it part of the
# model version and checkpoint key, model.json records it, and loading a model cleaned otherwise warns.
TEXT_PREP = "links-as-http-host"


def load_tokenizer(path: Path, max_length: int) -> Tokenizer:
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises its own plain Exception for unreadable JSON
        raise ModelError(f"{path}: cannot load tokenizer ({exc})") from exc
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    return tok


def _link(match: re.Match[str]) -> str:
    # The host without the login before it ("http://admin:pw@[2001:db8::1]:8080/x" is "http [2001:db8::1]:8080"): a
    # user name and password are no site, and a stored post's link keeps none (miner.text_links), so a model trained
    # on stored posts saw "http host" where `miner classify` read raw input's login as word pieces.
    return f"http {match.group(1).rpartition('@')[2].lower()}"


def clean(text: str) -> str:
    """Links -> "http host", fold whitespace, cap length; an empty post becomes one space ([CLS] [SEP] still).

    Unpaired surrogates (JSON escapes of half an emoji) are dropped: the tokenizer refuses them.
    """
    text = text[:_RAW_CHARS]
    if not text.isascii():
        text = text.encode("utf-8", "ignore").decode("utf-8")
    text = " ".join(_URL.sub(_link, text).split())[:MAX_CHARS]
    return text or " "


def token_ids(tok: Tokenizer, texts: Sequence[str]) -> list[list[int]]:
    return [list(e.ids) for e in tok.encode_batch([clean(t) for t in texts])]


def pad(seqs: Sequence[Sequence[int]]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Return (input_ids, attention_mask), padded to the longest sequence of this batch."""
    width = max(len(s) for s in seqs)
    ids = np.zeros((len(seqs), width), dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return ids, mask


def encode(tok: Tokenizer, texts: Sequence[str]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    return pad(token_ids(tok, texts))


def token_lengths(tok: Tokenizer, texts: Sequence[str]) -> list[int]:
    return [len(s) for s in token_ids(tok, texts)]

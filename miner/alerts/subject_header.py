"""The Subject header of miner's emails, folded by miner: on the ``Subject:`` line, between words only.

Python's folder moves a whole value that fits a line of its own but not beside ``Subject: `` to the next line
(``Subject:\\r\\n [miner] Digest ...``): unfolding keeps that space, so Python's parser, and clients that do as RFC 5322
says, read the subject with a leading space. Words with non-ASCII characters are RFC 2047 encoded-words, a run of
them (with the spaces between them, which whitespace between encoded-words does not carry) cut into encoded-words
of at most 75 characters at character boundaries.
"""

from __future__ import annotations

import base64
import email.policy
from email.headerregistry import BaseHeader, UnstructuredHeader
from typing import Any

MAX_LINE = 78  # RFC 5322's "SHOULD": a word longer than a line stays whole, up to its 998
MAX_WORD = 75  # RFC 2047: the longest encoded-word
_Q_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")


def _q(text: str) -> str:
    """RFC 2047 Q encoding: the characters 5(3) allows anywhere an encoded-word may stand, the rest as =XX."""
    return "".join(ch if ch in _Q_SAFE else "_" if ch == " " else "".join(f"={b:02X}" for b in ch.encode())
                   for ch in text)


def _b(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


def _encoded_words(text: str, room: int) -> list[str]:
    """``text`` as encoded-words, the first of at most ``room`` characters if it can hold one, the others of at
    most MAX_WORD; Q or B, whichever is shorter for the whole text, as Python's own folder chooses."""
    code, encode = ("q", _q) if len(_q(text)) <= len(_b(text)) else ("b", _b)

    def word(part: str) -> str:
        return f"=?utf-8?{code}?{encode(part)}?="

    words: list[str] = []
    start, limit = 0, room
    for end in range(1, len(text) + 1):
        if len(word(text[start:end])) > limit and end - 1 > start:
            words.append(word(text[start:end - 1]))
            start, limit = end - 1, MAX_WORD
    words.append(word(text[start:]))
    return words


def _plain(word: str) -> bool:
    """A word that may go as written: ASCII and not one a reader would take for an encoded-word."""
    return word.isascii() and "=?" not in word


class SubjectHeader(UnstructuredHeader, BaseHeader):
    """Subject, folded so that it reads back exactly as written (see the module's docstring)."""

    @classmethod
    def parse(cls, value: str, kwds: dict[str, Any]) -> None:
        super().parse(value, kwds)
        # As set, not decoded: Python reads "=?utf-8?q?x?=" in a value it is given as an encoded-word (a service
        # named so would be sent as "x"). A header parsed from a message reaches here unfolded too, and would keep
        # its encoded-words: miner only builds messages with this class, it never parses one with it.
        kwds["decoded"] = value

    def fold(self, *, policy: email.policy.Policy) -> str:
        value = str(self)
        words = value.split(" ")
        # Python's folder for what this one does not expect: other whitespace, runs of spaces (clean_text leaves
        # neither), a value with no words.
        if not value or "" in words or any(ch.isspace() and ch != " " for ch in value):
            return super().fold(policy=policy)
        atoms: list[tuple[str, bool]] = []  # (text, plain): a run of words to encode is one atom
        i = 0
        while i < len(words):
            if _plain(words[i]):
                atoms.append((words[i], True))
                i += 1
                continue
            j = i
            while j < len(words) and not _plain(words[j]):
                j += 1
            atoms.append((" ".join(words[i:j]), False))  # encoded below, as the line it starts on allows
            i = j
        lines = [f"{self.name}:"]
        for text, plain in atoms:
            if plain:
                pieces = [text]
            else:
                room = MAX_LINE - len(lines[-1]) - 1
                pieces = _encoded_words(text, room if room >= 20 else MAX_WORD)
            for piece in pieces:
                # Every piece on the Subject: line until one does not fit; a fold only ever at a space.
                if (len(lines) == 1 and lines[0] == f"{self.name}:") or len(lines[-1]) + 1 + len(piece) <= MAX_LINE:
                    lines[-1] += f" {piece}"
                else:
                    lines.append(f" {piece}")
        return policy.linesep.join(lines) + policy.linesep

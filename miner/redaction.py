"""Every form a secret travels in, for the messages that must not show it: as written, and percent-encoded.

A token, password or webhook URL reaches a message in the words of a server or client quoting what it was sent: a
server echoing the request line or the body it refused, httpx's error quoting a line it could not read. What was
sent was often percent-encoded on the way (a query value, a form field, a path segment: ``/`` as ``%2F`` or
``%2f``, ``+`` as ``%2B``, a space as ``%20`` or ``+``, ``é`` as ``%C3%A9``), so taking out the secret as written
left it readable in such a message. And a text cut short (the first bytes of an error answer) may end with the
first part of a secret, which no longer matches it whole.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterable
from functools import lru_cache

REDACTED = "[redacted]"


class AnyCase(str):
    """A secret that is the same in any letter case, which `redact` and `without_cut_secret` take out so: a key
    written as a label of a host name (DNS reads ``AB12CD34EF56GH78.hooks.example`` and ``ab12cd34ef56gh78.hooks.
    example`` as one host, so any case of it reaches the hook). Any other secret (a path's or query's token, a
    password) is matched as written: a server tells ``aB`` from ``Ab`` there, and they are two keys."""

    __slots__ = ()

# Characters no encoder percent-encodes (RFC 3986's unreserved): matched as written only, which keeps the pattern of
# a long token as short as the token.
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _escapes(char: str) -> list[str]:
    """``char``'s UTF-8 bytes as ``%XX`` each, one per byte, each hex digit either case."""
    return [f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass")]


def _char_pattern(char: str) -> str:
    if char in _UNRESERVED:
        return re.escape(char)
    escaped = "".join(re.escape(e[0]) + "".join(f"[{d.upper()}{d.lower()}]" if d.isalpha() else d for d in e[1:])
                      for e in _escapes(char))
    forms = [re.escape(char), escaped] + ([r"\+"] if char == " " else [])  # a form's or query's space
    return f"(?:{'|'.join(forms)})"


# Keyed by each secret and whether it is AnyCase: an AnyCase equals the str of its characters, and a pattern made for
# one would have been given to the other.
@lru_cache(maxsize=64)
def _pattern(secrets: tuple[tuple[str, bool], ...]) -> re.Pattern[str] | None:
    # The longest first: where one secret holds another (a URL and its path), the whole goes as one.
    ordered = sorted(set(secrets), key=lambda secret: len(secret[0]), reverse=True)
    if not ordered:
        return None
    forms = ("".join(_char_pattern(c) for c in secret) for secret, _ in ordered)
    return re.compile("|".join(f"(?i:{form})" if any_case else form
                               for form, (_, any_case) in zip(forms, ordered, strict=True)))


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each of ``secrets`` as ``[redacted]``, as written and percent-encoded (any of its characters,
    either case of hex, ``+`` for a space), an `AnyCase` one in any letter case."""
    pattern = _pattern(tuple((s, isinstance(s, AnyCase)) for s in secrets if s))
    return text if pattern is None else pattern.sub(REDACTED, text)


def _start_covered(tail: str, secret: str) -> int:
    """How many characters of ``secret`` all of ``tail`` is the start of, in one of its forms, ending as a percent
    escape may be cut (``%``, ``%2``: that character not counted); 0 where it is no start of it."""
    at = 0
    any_case = isinstance(secret, AnyCase)
    for count, char in enumerate(secret):
        if at == len(tail):
            return count
        if tail[at] == char or (char == " " and tail[at] == "+") or (any_case and tail[at].lower() == char.lower()):
            at += 1
            continue
        escaped = "".join(_escapes(char))
        got = tail[at:at + len(escaped)]
        if tail[at] != "%" or got.upper() != escaped[:len(got)]:
            return 0
        at += len(got)
        if len(got) < len(escaped):  # the tail's end: the cut split the escape
            return count
    # The whole secret and more: redact() takes that whole one out, and what follows it is other text.
    return len(secret) if at == len(tail) else 0


# Keyed as _pattern is: an AnyCase equals the str of its characters. A store's post texts ask it of a source's few
# keys at each text (miner.cut_keys).
@lru_cache(maxsize=64)
def _start_of(secret: str, any_case: bool) -> tuple[int, re.Pattern[str]]:
    """The length of ``secret``'s longest form (each character that may be, escaped) and a pattern of its first
    character in any of its forms."""
    most = sum(1 if c in _UNRESERVED else 3 * len(c.encode("utf-8", "surrogatepass")) for c in secret)
    return most, re.compile(_char_pattern(secret[0]), re.IGNORECASE if any_case else 0)


def cut_start_length(text: str, secrets: Iterable[str], least: Callable[[str], int] = lambda _secret: 1) -> int:
    """The length of the longest end of ``text`` that is the start of one of ``secrets`` (in one of its forms), of
    ``least(secret)`` of its characters or more; 0 where none is."""
    longest = 0
    for secret in {s for s in secrets if s}:
        most, first = _start_of(secret, isinstance(secret, AnyCase))
        most = min(len(text), most)
        need = max(1, least(secret))
        for start in (m.start() for m in first.finditer(text[len(text) - most:])):
            tail = text[len(text) - most + start:]
            if len(tail) <= longest:
                break
            # The first found is the longest; one that is no start, or covers too little of the secret, may be
            # followed by a shorter one that does (the secret's first character again inside it).
            if _start_covered(tail, secret) >= need:
                longest = len(tail)
                break
    return longest


def without_cut_secret(text: str, secrets: Iterable[str]) -> str:
    """``text``, cut from a longer one, without the start of a secret it ends with: the rest of that secret, past the
    cut, was never read, so no redaction could match it whole."""
    return text[:len(text) - cut_start_length(text, secrets)]


def cut_text(head: bytes, cut: bool) -> str:
    """``head`` (the first bytes of an answer; ``cut``: there was more) as text: a character whose bytes the cut split
    is left out, not read as U+FFFD, which would hide the start of a secret ending there from without_cut_secret."""
    if not cut:
        return head.decode("utf-8", "replace")
    return codecs.getincrementaldecoder("utf-8")("replace").decode(head, final=False)

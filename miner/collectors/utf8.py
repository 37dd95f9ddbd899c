"""Bodies meant to be UTF-8 that hold a few bytes that are not (a feed's or an API's text cut mid-character by a
server, or one item pasted in another encoding), and JSON strings holding half a UTF-16 surrogate pair, which no
UTF-8 can carry.

One such byte must not cost the rest of the body. Read strictly, it failed a JSON poll whole ("not UTF-8 text"),
at every poll for as long as the item stayed listed; feedparser, meeting it, read the whole feed again as
windows-1252 or iso-8859-2, so every other entry's accented letters, Cyrillic or emoji became mojibake that
matched no service's name. The bad bytes are read as U+FFFD instead, as a browser's decoder reads them.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from miner.collectors.normalise import SURROGATE
from miner.collectors.poll_notes import not_utf8, note

log = logging.getLogger(__name__)
_REPLACEMENT = "\ufffd".encode()
# The encoding an XML declaration names; an XML document without one is UTF-8 (or UTF-16, with its byte-order mark).
_XML_ENCODING = re.compile(rb"""\A(?:\xef\xbb\xbf)?\s*<\?xml[^>]*?\sencoding\s*=\s*["']([A-Za-z0-9._:\-]+)["']""")
_CHARSET = re.compile(r";\s*charset\s*=\s*\"?([A-Za-z0-9._:\-]+)", re.I)
# Names under which a feed says it is UTF-8, or ASCII, which UTF-8 extends (a feed declared us-ascii holding UTF-8
# is read as UTF-8 by feedparser, and is common).
_UTF8_NAMES = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})


def decode_lenient(body: bytes) -> tuple[str, int]:
    """``body`` as UTF-8 text (a leading byte-order mark dropped), and how many bad byte sequences in it were read
    as U+FFFD."""
    try:
        return body.decode("utf-8-sig"), 0
    except UnicodeDecodeError:
        text = body.decode("utf-8-sig", errors="replace")
        return text, text.count("\ufffd") - body.count(_REPLACEMENT)


def json_text(body: bytes, where: str) -> str:
    """An API's JSON ``body`` as text, its bad byte sequences read as U+FFFD and noted for the poll's warnings, or
    logged outside a poll (``where``: its URL as messages show it). Not read so, the poll failed whole, every poll
    while the item holding them stayed listed."""
    text, bad = decode_lenient(body)
    if bad and not note("not_utf8", where, bad):
        log.warning("JSON from %s holds %s; each read as U+FFFD", where, not_utf8(bad))
    return text


def mend_feed(body: bytes, content_type: str = "") -> tuple[bytes, int]:
    """``body`` with its bad byte sequences replaced by U+FFFD (and how many) when it is a UTF-8 feed holding some:
    it says it is UTF-8 (or ASCII, or names no encoding) in its XML declaration and ``content_type``, and holds
    more characters UTF-8 reads well than bytes it cannot. A feed all of whose other bytes are ASCII is left as it
    is, as one that names another encoding: windows-1252 written under a wrong or no declaration, which
    feedparser's fallback reads right, has no valid multi-byte sequence."""
    declared = [m.group(1).decode("ascii").lower() for m in [_XML_ENCODING.match(body[:1024])] if m]
    declared += [m.group(1).lower() for m in [_CHARSET.search(content_type)] if m]
    if any(name not in _UTF8_NAMES for name in declared) or body.startswith((b"\xff\xfe", b"\xfe\xff")):
        return body, 0
    text, bad = decode_lenient(body)
    if not bad:
        return body, 0
    # Characters past ASCII that were read, less the U+FFFD the replacement wrote.
    well_read = len(text) - len(text.encode("ascii", "ignore")) - text.count("\ufffd")
    if well_read <= bad:
        return body, 0
    return text.encode("utf-8"), bad


def without_surrogates(value: Any) -> Any:
    """``value`` with every unpaired UTF-16 surrogate (an escape such as "\\ud83d" without its other half, from
    text cut mid-emoji) replaced by U+FFFD: SQLite cannot store one, and a post id, URL or cursor holding one
    would make storing the poll fail, every round."""
    if isinstance(value, str):
        return value if value.isascii() else SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [without_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {without_surrogates(k): without_surrogates(v) for k, v in value.items()}
    return value

"""RSS/Atom parsing shared by the `rss`, `reddit` (anonymous) and `status_feed` types.

httpx fetches (so timeouts, size caps and conditional GET are ours); feedparser only parses the bytes.
Survivable ``bozo`` problems (a wrong declared encoding) are logged and kept as warnings, as are the bytes that are
not UTF-8 in a UTF-8 feed, read as U+FFFD (`miner.collectors.utf8`); a body with no entries that is not a feed at
all is a SourceError.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import feedparser

from miner.collectors.base import PollContext
from miner.collectors.http import Response, empty_body, fetch
from miner.collectors.normalise import parse_time, stable_id
from miner.collectors.poll_notes import not_utf8
from miner.collectors.utf8 import mend_feed
from miner.collectors.validators import conditional_headers
from miner.config import SourceConfig
from miner.errors import BadContent
from miner.records import SourceState
from miner.urls import shown_url

log = logging.getLogger(__name__)

FEED_ACCEPT = "application/atom+xml, application/rss+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
_SURVIVABLE = (feedparser.CharacterEncodingOverride, feedparser.NonXMLContentType)
# Headers describing the transfer, not the document: httpx has already decoded the body, so feedparser
# must not try to gunzip it again.
_TRANSFER_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})
_CUT_SHORT = "_cut_short"  # a key of our own, set on `parse_feed_ends`'s result: see `whole_feed`


_NCR = re.compile(rb"&#(?:[xX]([0-9a-fA-F]{1,8})|([0-9]{1,10}));")


def _ncr_value(match: re.Match[bytes]) -> int:
    hexa, dec = match.groups()
    return int(hexa, 16) if hexa else int(dec)


def fix_surrogate_refs(body: bytes) -> bytes:
    """Character references to UTF-16 surrogates (`&#55357;&#56832;`: an emoji as a JSON escape would write
    it, common in hand-built feeds) are not XML, and feedparser fails on them with an internal
    UnicodeEncodeError that loses every entry. A high/low pair becomes the character it encodes, half a pair
    U+FFFD."""
    if b"&#" not in body:
        return body
    out, pos = bytearray(), 0
    matches = list(_NCR.finditer(body))
    i = 0
    while i < len(matches):
        match, value = matches[i], _ncr_value(matches[i])
        i += 1
        if not 0xD800 <= value <= 0xDFFF:
            continue
        out += body[pos:match.start()]
        pos = match.end()
        low = matches[i] if i < len(matches) and matches[i].start() == match.end() else None
        if value < 0xDC00 and low is not None and 0xDC00 <= _ncr_value(low) <= 0xDFFF:
            out += b"&#x%X;" % (0x10000 + ((value - 0xD800) << 10) + (_ncr_value(low) - 0xDC00))
            pos = low.end()
            i += 1
        else:
            out += b"&#xFFFD;"
    return bytes(out + body[pos:])


# Python's SAX reader finds each attribute of an element by a walk over all of them (AttributesNSImpl.getValueByQName,
# which feedparser calls for each), so an element's parse takes time in the square of its attributes: 20,000 took
# 3.6 s, and one of 400,000 in a 5 MB feed would hold a poll's thread, and the GIL with it, some 25 minutes. No feed's
# element has a tenth of this many.
MAX_ATTRIBUTES = 100
_CROWDED_TAG = re.compile(
    rb"<[A-Za-z_][^\s<>/]*(?:\s+[^\s<>=/]+\s*=\s*(?:\"[^\"<]*\"|'[^'<]*')){%d}" % (MAX_ATTRIBUTES + 1))


def fetch_feed(source: SourceConfig, state: SourceState, ctx: PollContext, url: str) -> Response:
    return fetch(
        ctx.client, ctx.settings, url, timeout=source.timeout, now=ctx.now, secret_url=source.secret_url,
        headers={"Accept": FEED_ACCEPT, **conditional_headers(state)},
    )


# What tells a feed's entries in its bytes: an RSS <item> or Atom <entry> tag (with a namespace prefix or none), and
# the start of a CDATA section or comment, inside which a tag is no tag. An attribute value holds no "<" (XML), so
# no match reads past the next tag.
_ENTRY_TAG = re.compile(
    rb"<!\[CDATA\[|<!--|<(/?)(?:[A-Za-z_][\w.\-]*:)?(?:item|entry)(?=[\s/>])(?:[^<>/\"']|\"[^<\"]*\"|'[^<']*')*(/?)>",
    re.I,
)


def _entry_spans(body: bytes) -> tuple[list[tuple[int, int]], int, bool]:
    """The spans of ``body``'s whole top-level entries, how deep in entries its bytes end (or a CDATA section or
    comment left open, where the scan stops), and whether one was left open."""
    spans: list[tuple[int, int]] = []
    depth, start, pos = 0, 0, 0
    while (match := _ENTRY_TAG.search(body, pos)) is not None:
        pos = match.end()
        closing, empty = match.group(1), match.group(2)
        if closing is None:  # a CDATA section or comment: on past its end
            end = body.find(b"]]>" if match.group().startswith(b"<![") else b"-->", pos)
            if end < 0:
                return spans, depth, True
            pos = end + 3
        elif empty:  # an <item/> with nothing in it
            continue
        elif not closing:
            if depth == 0:
                start = match.start()
            depth += 1
        elif depth > 0:
            depth -= 1
            if depth == 0:
                spans.append((start, match.end()))
    return spans, depth, False


# The end tag of an RSS, Atom or RSS 1.0 (RDF) document, and what may follow it.
_FEED_END = re.compile(rb"</(?:[A-Za-z_][\w.\-]*:)?(?:rss|feed|rdf)\s*>\s*(?:<!--.*?-->\s*)*\Z", re.I | re.S)


def cut_entries(body: bytes, ends: int) -> tuple[bytes, int]:
    """``body`` with the entries between its first and last ``ends`` entries left out, and how many those were.

    feedparser's time is in proportion to the entries (5 MB of 90,000 small ones took 15 s of CPU): cut so, it
    parses at most ``2 * ends`` of them, whichever way the feed orders them (newest first, or oldest first as some
    forums do). A body whose entries cannot be told from its bytes (UTF-16, tags out of balance, a CDATA section or
    comment left open) is left whole.
    """
    spans, depth, left_open = _entry_spans(body)
    if left_open or depth != 0 or len(spans) <= 2 * ends:
        return body, 0
    return body[:spans[ends - 1][1]] + body[spans[-ends][0]:], len(spans) - 2 * ends


def parse_feed(resp: Response, source_name: str) -> tuple[Any, list[str]]:
    """feedparser's result and the survivable warnings; raises SourceError when the body is not a feed."""
    parsed, warnings, _unread = parse_feed_ends(resp, source_name, None)
    return parsed, warnings


def parse_feed_ends(resp: Response, source_name: str, ends: int | None) -> tuple[Any, list[str], int]:
    """As `parse_feed`, of a feed with more than ``2 * ends`` entries cut to its first and last ``ends`` (see
    `cut_entries`); the third value is how many entries were cut out unread. A cut body that feedparser cannot
    read cleanly into the entries kept (a tag inside an entry's text taken for one) is parsed whole instead."""
    where = resp.where
    if not resp.body.strip():
        raise empty_body(resp)
    head = resp.body[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if "json" in resp.content_type or head.startswith((b"{", b"[")):
        raise BadContent(f"expected a feed from {where}, got {resp.content_type or 'JSON'}")
    if head.startswith((b"<!doctype html", b"<html")):
        raise BadContent(f"expected a feed from {where}, got an HTML page ({resp.content_type or 'no type'})")
    headers = {k: v for k, v in resp.headers.items() if k not in _TRANSFER_HEADERS}
    if _xml_text_without_charset(resp):
        # RFC 7303 reads such a body by its XML declaration (else as UTF-8), as application/xml; feedparser keeps
        # RFC 3023's us-ascii, so a UTF-8 feed served as nginx serves any .xml file warned at every poll that it
        # was "not clean", a warning that stood in `miner status` for a feed read right.
        headers["content-type"] = "application/xml"
    # The base relative entry links and guids are resolved against: without the URL's user:password and query,
    # which may hold the feed's key and would be copied into every post's url and id (a link "#c2" keeps the query).
    # A url from the environment keeps no path either, and the server's Content-Location (its own URL, with the
    # key) does not replace it.
    if resp.secret_url:
        headers["content-location"] = shown_url(resp.url, secret=True, link=True)
    else:
        headers.setdefault("content-location", where)
    if _CROWDED_TAG.search(resp.body):
        raise BadContent(f"malformed feed from {where}: an element with more than {MAX_ATTRIBUTES} attributes, which "
                         "no feed has (its parse would take minutes)")
    whole, bad = mend_feed(resp.body, resp.headers.get("content-type", ""))
    body, unread = cut_entries(whole, ends) if ends else (whole, 0)
    parsed = _feedparse(body, headers)
    # A feed not well-formed itself (an undefined entity such as &nbsp;, common) is as unclean cut as whole: while
    # the cut body still reads as the 2 * ends entries kept, the cut broke nothing, and parsing the whole feed (the
    # loose parser, slower still: 9 s for 3 MB) would cost all the cut saves, and more.
    if unread and parsed.get("bozo") and not isinstance(parsed.get("bozo_exception"), _SURVIVABLE) \
            and len(parsed.get("entries") or []) != 2 * (ends or 0):
        log.info("%s: feed %s cut to its first and last %d entries is not clean; parsing it whole", source_name,
                 where, ends)
        parsed, unread, body = _feedparse(whole, headers), 0, whole
    entries = parsed.get("entries") or []
    # A body that ends inside an entry (cut short with its HTTP framing intact: a proxy or a feed generator that
    # stopped mid-write) gives feedparser's loose reading that entry as far as it got, its title, text or link lost:
    # stored, a post with part of its text dated at its fetch, or an "(untitled incident)" whose status is unknown,
    # which later polls, listing it whole under its id, never mended. Left out, the first poll given it whole reads it.
    # A feed that ends as a feed does, an entry's end tag missing, is a generator's slip: its entries are whole.
    cut_short = bool(parsed.get("bozo")) and bool(entries) and not _FEED_END.search(body[-256:]) \
        and _entry_spans(body)[1] > 0
    if cut_short:
        entries = parsed["entries"] = entries[:-1]
    parsed[_CUT_SHORT] = cut_short
    warnings = [resp.moved] if resp.moved else []
    if resp.moved:
        log.warning("%s: %s", source_name, resp.moved)
    if bad:
        warnings.append(f"feed {where} holds {not_utf8(bad)} in its UTF-8 text; each read as U+FFFD")
        log.warning("%s: %s", source_name, warnings[-1])
    if parsed.get("bozo"):
        exc = parsed.get("bozo_exception")
        detail = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, _SURVIVABLE) or entries:
            message = f"feed {where} is not clean ({detail}); kept {len(entries)} entries" + (
                ", left out its last, cut off before its end" if cut_short else "")
            log.warning("%s: %s", source_name, message)
            warnings.append(message)
        else:
            raise BadContent(f"malformed feed from {where}: {detail}")
    if not entries and not parsed.get("version"):
        raise BadContent(f"not an RSS/Atom feed: {where} ({resp.content_type or 'no content type'})")
    return parsed, warnings, unread


def whole_feed(parsed: Any) -> bool:
    """Whether `parse_feed_ends` found the body whole, not cut short inside an entry: the validators of a cut one are
    not to be kept (`miner.collectors.validators.state_after`), so that the next poll asks for it whole."""
    return not parsed.get(_CUT_SHORT)


_CHARSET = re.compile(r";\s*charset\s*=", re.I)


def _xml_text_without_charset(resp: Response) -> bool:
    ctype = resp.content_type
    return (ctype in ("text/xml", "text/xml-external-parsed-entity") or (
        ctype.startswith("text/") and ctype.endswith("+xml"))) and not _CHARSET.search(resp.headers["content-type"])


def _feedparse(body: bytes, headers: dict[str, str]) -> Any:
    # We never render entry HTML, only reduce it to text (dropping scripts), so feedparser's HTML
    # sanitiser and link rewriting are pure cost: they took over half the parse time.
    return feedparser.parse(fix_surrogate_refs(body), response_headers=headers, sanitize_html=False,
                            resolve_relative_uris=False)


def _raw(entry: Any, key: str) -> Any:
    # dict.get bypasses FeedParserDict's deprecated updated->published fallback (and its warning).
    return dict.get(entry, key) if isinstance(entry, dict) else None


def entry_time(entry: Any) -> datetime | None:
    for key in ("published", "updated", "created"):
        if (when := _date(entry, key)) is not None:
            return when
    return None


def entry_updated(entry: Any) -> datetime | None:
    return _date(entry, "updated") or _date(entry, "published")


def entry_published(entry: Any) -> datetime | None:
    """When the entry was first published (or created), never its last update: None for one dated by that only."""
    return _date(entry, "published") or _date(entry, "created")


# Time-zone abbreviations, in hours east of UTC. feedparser knows GMT/UTC and the North American ones only and
# reads every other name as UTC: "13:40 CEST" came out two hours late, "13:40 AEDT" eleven (later than our clock,
# so dated at its fetch). These are the common ones that name one offset; ambiguous ones stay out and read as UTC,
# as feedparser reads them: IST (India +5:30, Israel +2, Ireland +1) as UTC, CST (US Central or China) and AST
# (Atlantic or Arabia) as the North American zones.
# BST is British Summer Time, as in RFC 822 dates of British sites (Bangladesh writes +06).
ZONE_HOURS: dict[str, float] = {
    "UT": 0, "UTC": 0, "GMT": 0, "Z": 0, "WET": 0, "WEST": 1, "BST": 1, "CET": 1, "MET": 1, "CEST": 2, "MEST": 2,
    "SAST": 2, "EET": 2, "EEST": 3, "MSK": 3, "HST": -10, "AKST": -9, "AKDT": -8, "PST": -8, "PDT": -7, "MST": -7,
    "MDT": -6, "CDT": -5, "EST": -5, "EDT": -4, "ADT": -3, "NST": -3.5, "NDT": -2.5, "BRT": -3, "PKT": 5, "WIB": 7,
    "ICT": 7, "SGT": 8, "HKT": 8, "AWST": 8, "PHT": 8, "JST": 9, "KST": 9, "ACST": 9.5, "ACDT": 10.5, "AEST": 10,
    "AEDT": 11, "NZST": 12, "NZDT": 13,
}
_ZONE_NAME = re.compile(r"\s([A-Za-z]{1,5})\s*$")


def _named_zone(text: str) -> datetime | None:
    """The date in ``text`` when it ends in a zone abbreviation of ZONE_HOURS, read at that zone's offset (RFC 822,
    or ISO 8601 with the name after the time); None for anything else, which is left to feedparser."""
    match = _ZONE_NAME.search(text)
    hours = ZONE_HOURS.get(match.group(1).upper()) if match else None
    if match is None or hours is None:
        return None
    head, minutes = text[:match.start()].strip(), round(hours * 60)
    offset = f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    try:
        when = parsedate_to_datetime(f"{head} {offset}")
    except (TypeError, ValueError, IndexError, OverflowError):
        try:
            when = datetime.fromisoformat(head + offset)
        except ValueError:
            return None
    try:
        return when.astimezone(UTC) if when.tzinfo is not None else None
    except OverflowError:
        return None


# Not after a digit: the hour of ISO 8601's "2026-11-27T01:40:05 PM" follows its "T".
_TWELVE_HOUR = re.compile(r"(?<![0-9])(\d{1,2})(:\d{2}(?::\d{2})?)\s*([AaPp])\.?[Mm]\.?(?=\s|$)")


def _twelve_hour(text: str) -> str | None:
    """``text`` with a 12-hour time ("2:30 PM EST", which some feeds write) on the 24-hour clock; None for text
    without one. feedparser and email.utils read "2:30 PM" as 02:30 and the PM as an unknown zone: a post of the
    afternoon was dated 12 hours early (17 with its EST dropped too), counted in a bucket of the night before."""
    match = _TWELVE_HOUR.search(text)
    if match is None or not 1 <= int(match[1]) <= 12:
        return None
    hour = int(match[1]) % 12 + (12 if match[3] in "Pp" else 0)
    return f"{text[:match.start()]}{hour:02d}{match[2]}{text[match.end():]}"


def _date(entry: Any, key: str) -> datetime | None:
    """The entry's ``key`` date: read here when it names its zone by an abbreviation of ZONE_HOURS, else
    feedparser's ``*_parsed`` (a UTC struct_time), else the text as RFC 822; a 12-hour time is read here always.

    feedparser reads "29 Mar 2026 02:30:00" (no zone: UTC) but gives up on "Sun, 29 Mar 2026 02:30:00", the form
    of a pubDate whose writer left the zone out; the entry was then dated when it was fetched, and a feed's whole
    backlog counted in the bucket of its first poll. Its text without a zone is taken as UTC, as feedparser does.
    """
    text = _raw(entry, key)
    twelve = _twelve_hour(text) if isinstance(text, str) else None
    if twelve is not None:
        text = twelve  # feedparser's reading of it dropped the AM or PM
    if isinstance(text, str) and (named := _named_zone(text)) is not None:
        return named
    parsed = _raw(entry, f"{key}_parsed") if twelve is None else None
    if parsed:
        return parse_time(parsed)
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        # A 12-hour time in an ISO 8601 date ("2026-11-27 1:40 PM"), which feedparser read (as 01:40) where RFC 822
        # does not: left undated, it was counted in the bucket of its fetch.
        if twelve is None:
            return None
        try:
            when = datetime.fromisoformat(text.strip())
        except ValueError:
            return None
    try:
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except OverflowError:  # its offset moves it past what a datetime holds
        return None


def entry_id(entry: Any) -> str:
    """The entry's guid/id, else its link, else a hash of its title and date: stable across polls."""
    value = entry.get("id") or entry.get("guid") or entry.get("link")
    if value:
        return str(value)
    return stable_id(entry.get("title", ""), entry.get("published", ""), entry.get("summary", "")[:200])


def entry_body(entry: Any) -> str:
    """The richest body the entry has: full content when present, else the summary."""
    contents = entry.get("content") or []
    best = max((str(c.get("value", "")) for c in contents), key=len, default="")
    summary = str(entry.get("summary", "") or "")
    return best if len(best) >= len(summary) else summary


def entry_author(entry: Any) -> str | None:
    detail = entry.get("author_detail") or {}
    value = detail.get("name") or entry.get("author")
    return str(value) if value else None


def entry_lang(entry: Any, feed: Any) -> str | None:
    for holder in (entry.get("title_detail") or {}, entry.get("summary_detail") or {}, feed):
        lang = holder.get("language")
        if lang:
            return str(lang)
    return None

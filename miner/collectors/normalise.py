"""Turning untrusted source items into plain, comparable fields: text, times, ids and author hashes."""

from __future__ import annotations

import calendar
import hashlib
import hmac
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from html.parser import HTMLParser

from miner.cut_keys import redact_cut_key
from miner.email_addresses import AT, redact_emails
from miner.env_names import shown_name
from miner.joiners import cut_end, keep_joining
from miner.redaction import redact
from miner.text_links import public_text_links

log = logging.getLogger(__name__)

# Used only when the operator set no key: hashes stay unlinkable to handles by a casual reader, but anyone
# with this source can brute-force them, hence the env var in [store].hash_key_env.
APP_SALT = b"miner/author-hash/v1"
AUTHOR_HASH_HEX = 16

_BLOCK_TAGS = frozenset({
    "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption", "footer",
    "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section",
    "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
    # Not blocks, but what they show stands between the words around them: "down<img ...>again" is two words.
    "figure", "img", "video", "audio", "iframe",
})
_SKIP_TAGS = frozenset({"script", "style", "template", "noscript"})
_SPACE = re.compile(r"\s+")
# C0/C1 controls and invisible direction/format marks that only confuse matching and display, and hid a number or
# e-mail address they stood inside ("0171<soft hyphen>234...") from the contact placeholders, though it showed whole.
# Tag characters (U+E0001, U+E0020-E007F) spell ASCII that no reader sees but a program reading the text does (a
# subdivision flag loses its region with them: "🏴" is left); the interlinear annotation marks (U+FFF9-FFFB) and the
# deprecated format characters (U+206A-206F) show nothing either, and U+061C is the Arabic script's bidi mark, as
# U+200E and U+200F are the others'. Alert text drops them all too. Whitespace controls are folded by _SPACE instead.
# ZWJ and ZWNJ (U+200D, U+200C) are read by `miner.joiners.keep_joining`: kept where they join an emoji sequence or
# letters of a script that writes them (Persian's "می‌خواهم"), dropped elsewhere. Unpaired UTF-16 surrogates (JSON
# escapes of half an emoji such as "\ud83d", from truncated posts) carry no character and cannot be encoded as UTF-8:
# SQLite refuses them.
_CONTROL = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\xad\u061c\u180e\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064"
    "\u2066-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff\U000e0001\U000e0020-\U000e007f]"
)
_TAGGISH = re.compile(r"<[A-Za-z/!]")
# A "<" with no ">" after it before the next "<" opens no tag that ends, but Python's HTMLParser reads on from each
# such one to the end of the text before it takes it as text: 13,000 "<a" each on a line (40 KB, a post's text as a
# feed escapes it once) took 13 s, the GIL held, and a 5 MB entry would take days. Each is read as the text it is
# ("&lt;"): what is lost is a tag whose quoted attribute holds a "<" (title="a<b", which HTML writers escape).
_UNCLOSED = re.compile(r"<(?=[^<>]*<)")
SURROGATE = re.compile("[\ud800-\udfff]")  # in a Python str, always unpaired (see _CONTROL)
# So a comment or marked section ("<!--", "<![CDATA[", "<![if"): the parser looks for its end ("-->", "]]>", "]>") in
# all that follows each one that has none, before it takes the "<" as text; 40,000 "<![CDATA[ >" (320 KB) took 1.4 s,
# 13,000 "]><!--" (80 KB) 1.4 s, and 5 MB would take an hour.
_OPENED = re.compile(r"<!(?:--|\[([a-zA-Z][-_.a-zA-Z0-9]*)?)")
_COMMENT_END = re.compile(r"--\s*>")
_ENDS = {**dict.fromkeys(("temp", "cdata", "ignore", "include", "rcdata"), re.compile(r"]\s*]\s*>")),
         **dict.fromkeys(("if", "else", "endif"), re.compile(r"]\s*>")), "--": _COMMENT_END}


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skip += 1
            self.parts.append(" ")
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)

    def parse_marked_section(self, i: int, report: bool = True) -> int:
        # Python's HTMLParser raises AssertionError at a "<![" opening no marked section it knows ("<![ x", "<![1]>",
        # "<![here]>"): a post quoting one failed its poll whole as an internal error, every poll while listed. What
        # the poster wrote is kept, as a "<" that opens no tag is.
        try:
            return super().parse_marked_section(i, report)
        except AssertionError:
            self.handle_data(self.rawdata[i:i + 3])
            return i + 3


def html_to_text(value: str | None) -> str:
    """Plain text from an HTML fragment (or plain text): tags dropped, entities decoded, whitespace folded."""
    if not value:
        return ""
    if "<" not in value and "&" not in value:
        return fold(value)
    text = _strip_tags(value)
    # Double-escaped feeds (e.g. "&lt;p&gt;") decode to markup on the first pass. Only a body with no markup of
    # its own is one: in real HTML an escaped "&lt;Connection refused&gt;" is what the poster wrote, not a tag to
    # drop. And once only: a "<" that is no tag ("if x<y") comes through a pass as it went in, and passing it
    # again and again recursed until Python gave up, failing every poll of a source whose answer held such a post.
    if _TAGGISH.search(text) and not _TAGGISH.search(value):
        text = _strip_tags(text)
    return fold(text)


def _unended_as_text(value: str) -> str:
    """``value`` with the "<" of each comment or marked section that nothing after it ends written "&lt;" (see
    _OPENED)."""
    if "<!" not in value:
        return value
    last = {end: max((m.start() for m in end.finditer(value)), default=-1) for end in set(_ENDS.values())}

    def opened(match: re.Match[str]) -> str:
        kind = "--" if match.group().startswith("<!--") else (match.group(1) or "").lower()
        end = _ENDS.get(kind)
        # The parser looks for the end from the fourth character on ("<!--->" is no comment), as for a section.
        return match.group() if end is None or last[end] >= match.start() + 4 - (kind != "--") \
            else "&lt;" + match.group()[1:]

    return _OPENED.sub(opened, value)


def _strip_tags(value: str) -> str:
    parser = _TextExtractor()
    parser.feed(_unended_as_text(_UNCLOSED.sub("&lt;", value)))
    parser.close()
    return "".join(parser.parts)


def drop_control(text: str) -> str:
    """Drop control and invisible format characters and unpaired surrogates, and joiners that join nothing
    (`miner.joiners`); whitespace stays as it is."""
    return keep_joining(_CONTROL.sub("", text))


def fold(text: str) -> str:
    """Collapse whitespace (including NBSP and newlines) and drop control characters."""
    return _SPACE.sub(" ", drop_control(text)).strip()


def join_title_body(title: str, body: str, limit: int | None = None) -> str:
    """One text from a title and a body: the title once, then the body, cut at ``limit`` characters (see `cut`)."""
    title, body = fold(title), fold(body)
    if not title:
        text = body
    elif not body or _repeats(title, body):
        text = body or title
    elif title[-1] in ".!?:…":
        text = f"{title} {body}"
    else:
        text = f"{title}. {body}"
    return text if limit is None else cut(text, limit)


def post_text(title: str, body: str, limit: int, *, plain: bool = False, secrets: Sequence[str] = ()) -> str:
    """A post's text as the store keeps it, from an item's title and body (HTML, or plain text when ``plain``: a "<"
    in it is a character): joined, ``secrets`` (`miner.urls.secret_parts` of a `url_env` source's URL, which its
    links and ids are kept without) as ``[redacted]``, contact details replaced, the links in it without a
    credential (`miner.text_links`), cut at ``limit``. Every stored post's text is made so, a polled item's, a
    replayed one's."""
    body = fold(body) if plain else html_to_text(body)
    text = join_title_body(html_to_text(title), body)
    # The source's own key first, whole: a text linking "https://<key>.hooks.example/" or quoting the feed's URL kept
    # it, since public_text_links reads no host label and keeps a value too short or too wordy to read as a token;
    # after it, a piece of the key it took out would leave the rest unmatched. Only a url_env source pays for it.
    # The start of one at the text's end goes too: the item's text may come cut by its source (a summary, an
    # excerpt), inside the key (`miner.cut_keys`). The store's own cut comes after, and cuts no key.
    if secrets:
        text = redact_cut_key(redact(text, secrets), secrets)
    # Contacts and credentials go before the text is cut: cut inside, "jane.doe@gmail…" or "0722 123 4…" is no
    # address or number the placeholders know, and what the cut left of it was stored. Links go first: a link's
    # "user:password@host" read as an e-mail address kept the user name and lost the host.
    return cut(redact_contacts(public_text_links(text)), limit)


def lang_code(lang: object) -> str | None:
    """A post's language as stored: the primary subtag of a language tag, lower-cased ("pt-BR" is "pt")."""
    return str(lang).split("-")[0].lower()[:8] if lang else None


# The most characters of a provider's incident title (and of a component's name) stored: a status page answering a
# 5 MB title had it stored whole and served on each read of the board and the API, where titles run to about 100.
OFFICIAL_TEXT_CHARS = 500


def cut(text: str, limit: int) -> str:
    """``text`` cut at ``limit`` characters, its end marked with "…"."""
    return text if len(text) <= limit else cut_end(text[: limit - 1]) + "…"


def _repeats(title: str, body: str) -> bool:
    """Whether ``body`` opens with ``title`` (a forum's body often repeats it), word for word: "Teams down" is not
    repeated by "Teams downloads fail", whose title is the complaint. A title cut short ("Is Slack do…") may end
    inside a word."""
    stem = title.rstrip(".…")
    if body[:len(stem)].lower() != stem.lower():
        return False
    return len(body) == len(stem) or not body[len(stem)].isalnum() or title.endswith(("…", "..."))


def parse_time(value: object) -> datetime | None:
    """A UTC-aware datetime from epoch seconds, an ISO 8601 string (naive means UTC), or a struct_time."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(float(value), tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    # A time past the years 1-9999 in UTC ("0001-01-01T00:00:00+01:00") is no time: an OverflowError here stopped
    # the source's whole poll as an internal error.
    try:
        if isinstance(value, time.struct_time):
            return datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
        if isinstance(value, str):
            text = value.strip()
            if text.endswith(("Z", "z")):
                text = text[:-1] + "+00:00"
            parsed = datetime.fromisoformat(text)
            if parsed.tzinfo is None:
                return parsed.replace(tzinfo=UTC)
            return parsed.astimezone(UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return None


def hash_key_from_env(env_name: str | None, environ: Mapping[str, str] | None = None) -> bytes:
    """The author-hash key: the value of ``env_name`` when set and non-empty, else the fixed app salt."""
    env = os.environ if environ is None else environ
    value = env.get(env_name, "") if env_name else ""
    if not value:
        # Logged at every start: a hash_key_env that reads as the key itself (pasted in place of a name) is not named.
        name = shown_name(env_name) if env_name else "the author-hash key"
        log.warning("%s is not set: author hashes use a fixed public salt, so a known handle can be matched to "
                    "its hash; set it to a long random secret", name)
    return value.encode("utf-8") if value else APP_SALT


def hash_author(handle: str | None, key: bytes, space: str = "") -> str | None:
    """HMAC-SHA256 of a normalised handle, truncated hex. The raw handle is never returned or kept.

    ``space`` names where the handle is unique (see base.author_space): "mike" on Reddit and "mike" on Hacker News
    are two people, and must not count as one complainer."""
    if not handle:
        return None
    normalised = handle.strip().lstrip("@").lower()
    if normalised.startswith("/u/"):
        normalised = normalised[3:]
    elif normalised.startswith("u/"):
        normalised = normalised[2:]
    # Reddit's stand-in for an account deleted since: no one author, or every such post would count as one.
    if not normalised or normalised in ("[deleted]", "[removed]"):
        return None
    return keyed_hash(key, f"{space}\x00{normalised}" if space else normalised)


def keyed_hash(key: bytes, text: str) -> str:
    """The author hash of ``text`` under ``key``: HMAC-SHA256, truncated hex (an author's, or a reporter's)."""
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()[:AUTHOR_HASH_HEX]


# Contact details in post text ("mail me at jane@x.org", "call 0722 000 000", "account 21245063 9") say
# nothing about an outage and are personal data of the poster or of others: stored text carries a placeholder.
# Digit runs count from 9 digits, so times, dates ("2024-11-27") and short codes ("error 503") are kept. E-mail
# addresses by `miner.email_addresses`' rule, which migration 0031 rewrote the texts stored before with.
# Parts are written apart by a space, ".", "-" or "/" ("0171/2345678", "0171 / 234 56 78"), an area code in brackets.
_NUMBER = re.compile(r"(?<![\w+(])(?:\+?\d|\(\d)(?:(?: ?/ ?|[ .-])?\(?\d\)?){8,18}(?![\w])")
_DATE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}")  # "2024-11-27 14" is a time


def _number(match: re.Match[str]) -> str:
    return match.group() if _DATE.search(match.group()) else "[number]"


def redact_contacts(text: str) -> str:
    """``text`` with e-mail addresses as "[email]" and phone-, account- and case-length numbers as "[number]"."""
    return _NUMBER.sub(_number, redact_emails(text))


# Handles in post text: whom a post answers or names ("@bob same here", a Mastodon reply's leading "@alice", Reddit's
# "u/name") says nothing about an outage, and is a person's identity where the author's own is only kept hashed.
# A service's handle (@AWSSupport, @github.com) is no person's, and matching reads it: the caller's ``keep`` says
# which. "@10", "me@host" and a handle's closing full stop are not taken for handles. A full-width or small at sign
# makes one too ("＠jane", as a Japanese or Chinese keyboard writes it), as it makes an e-mail address (AT).
_MENTION = re.compile(rf"(?<![\w{AT}.+-])[{AT}](?!\d+\b)\w(?:[\w.-]*\w)?")
# A user's page on Reddit: "u/name" or "/u/name" as a word, "reddit.com/u/name" and "reddit.com/user/name" in a link.
_REDDIT_USER = re.compile(r"(?:(?<![\w/-])/?u|(?<=reddit\.com/)(?:u|user))/[\w-]{3,20}(?![\w-])", re.IGNORECASE)
# A person's page in a link to a site miner reads: Bluesky's profile (by handle, a domain, or by DID), a Lemmy,
# Discourse or kbin user page (/u/name, Lemmy's name@instance too) and Hacker News' user?id=.
# A host is read from a token's start only: from every position of a long dotted token it took 150 ms a text.
_PROFILE = re.compile(r"(?P<page>bsky\.app/profile/|(?<![\w.-])(?:[\w-]++\.)++[a-z]{2,}(?::\d+)?/u/"
                      r"|ycombinator\.com/user\?id=)"
                      r"(?P<name>\w[\w.:-]*\w(?:@[\w.-]*\w)?)", re.IGNORECASE)


def redact_mentions(text: str, keep: Callable[[str], bool] = lambda _handle: False) -> str:
    """``text`` with @handles as "@[user]", Reddit's u/name as "u/[user]" and a profile link's name as "[user]"
    (``bsky.app/profile/[user]``, ``/u/[user]``), but those ``keep`` is true of.

    ``keep`` gets the handle as written ("@WhatsAppSupport", "u/name"), a domain handle (Bluesky's
    "@alice.bsky.social") up to its first dot: "bsky" in it does not make alice a service."""
    def mention(match: re.Match[str]) -> str:
        return match.group() if keep("@" + match.group()[1:].split(".", 1)[0]) else "@[user]"

    def reddit_user(match: re.Match[str]) -> str:
        found = match.group()
        return found if keep(found) else found[:found.rindex("/") + 1] + "[user]"

    def profile(match: re.Match[str]) -> str:
        name = match.group("name")
        return match.group() if keep("@" + name.split(".", 1)[0]) else match.group("page") + "[user]"

    if any(at in text for at in AT):
        text = _MENTION.sub(mention, text)
    return _PROFILE.sub(profile, _REDDIT_USER.sub(reddit_user, text)) if "/" in text else text


def stable_id(*parts: object) -> str:
    """A short stable id for items that carry none of their own (derived from their content)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).hexdigest()
    return f"h:{digest[:24]}"

"""Making untrusted text (post bodies, URLs, source errors) safe to put in mail, HTML and chat messages, and stored
figures safe to compute with (`safe_number`).

Escaping for HTML is Jinja's autoescape; this module removes what escaping cannot: control and bidi-override
characters (which can hide or reorder text; joiners but where they join something, see `miner.joiners`), unbounded
length, and links that are not plain http(s).
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit

from miner.joiners import JOINERS, cut_end, keep_joining

_SPACE = re.compile(r"\s+")


def clean_text(value: object, limit: int = 280) -> str:
    """One line of printable text of at most ``limit`` characters (an ellipsis marks a cut)."""
    text = "" if value is None else str(value)
    # Cc: control characters (\x00-\x1f, DEL, C1); Cf: format characters, including bidi overrides (U+202E), but ZWJ
    # and ZWNJ where they join something: a family emoji showed as three people, Persian and Indic words misspelled.
    kept = "".join(" " if ch in "\t\n\r\x0b\x0c" else ch for ch in text
                   if ch in "\t\n\r\x0b\x0c" or ch in JOINERS
                   or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn"))
    kept = _SPACE.sub(" ", keep_joining(kept)).strip()
    if len(kept) > limit:
        kept = cut_end(kept[: max(limit - 1, 0)]) + "…"
    return kept


def columns(text: str) -> int:
    """Terminal columns ``text`` takes: East Asian wide and full-width characters (CJK, most emoji) take two,
    combining marks none."""
    return sum(0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
               for ch in text)


def wrap_columns(text: str, first: str = "", rest: str = "", width: int = 78, items: str | None = None) -> str:
    """``text`` broken at spaces into lines of at most ``width`` columns, the first led by ``first``, the others by
    ``rest``. A word wider than a line (CJK has no spaces) is cut where the line is full; a URL never is.
    ``items``: the separator of a list (``", "``) whose items are kept whole, as the words are."""
    lines: list[str] = []
    line, used, empty = first, columns(first), True

    def new_line() -> None:
        nonlocal line, used, empty
        lines.append(line.rstrip())
        line, used, empty = rest, columns(rest), True

    if items is None:
        words = text.split()
    else:
        parts = [part.strip() for part in text.split(items)]
        words = [part + items.rstrip() for part in parts[:-1]] + parts[-1:]
    for word in words:
        size = columns(word)
        if used + (0 if empty else 1) + size > width and not empty:
            new_line()
        if not empty:
            line, used = line + " ", used + 1
        if used + size <= width or "://" in word:
            line, used, empty = line + word, used + size, False
            continue
        for ch in word:
            size = columns(ch)
            if used + size > width and not empty:
                new_line()
            line, used, empty = line + ch, used + size, False
    lines.append(line.rstrip())
    return "\n".join(lines)


# Not in a link we show: controls and bidi overrides (Cc, Cf), every space and line or paragraph separator (the text
# part breaks lines at U+2028, showing "https://evil.example/" and, on the next line, what reads as a second link),
# and private-use, unassigned and surrogate code points (invisible or shown as anything).
_NOT_IN_URL = frozenset(("Cc", "Cf", "Zs", "Zl", "Zp", "Co", "Cn", "Cs"))


def safe_url(value: object, limit: int = 500) -> str | None:
    """``value`` when it is a plain http(s) URL without spaces, control characters or a user name, else None."""
    if not isinstance(value, str) or len(value) > limit:
        return None
    url = value.strip()
    if not url or any(unicodedata.category(ch) in _NOT_IN_URL for ch in url) or '"' in url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    # https://status.example.com@evil.example/ goes to evil.example, and in the text part reads as the status page.
    if "@" in parts.netloc:
        return None
    return url


def safe_number(value: object, default: float = 0.0) -> float:
    """A figure read from a stored row as a float: ``default`` where it is missing, null or not a number (a row
    edited by hand, a JSON field of an older miner)."""
    try:
        return float(value) if value is not None else default  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default


def idna_address(address: str) -> str:
    """``address`` with an internationalized domain in its ASCII (IDNA) form, which every mail server and reader takes;
    unchanged when its domain is ASCII or has no IDNA form."""
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii():
        return address
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        return address


def slack_escape(text: str) -> str:
    """Slack mrkdwn treats &, < and > as control characters (links, @channel); escape them."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# Apps that take Slack's format read more than <!channel>: Mattermost and Rocket.Chat notify a whole channel for a
# bare @channel, @all or @here (and a user for @name), Discord's Slack endpoint for @everyone, and they render
# Markdown links and images, so a post could ping everyone or show a link whose text lies. A zero-width space after
# the @ and between ] and ( reads the same and makes neither.
_MENTION = re.compile(r"@(?=\w)")
_MD_LINK = re.compile(r"\](?=\()")


def slack_text(text: str) -> str:
    """Untrusted text for a Slack-format message: escaped, with mentions and Markdown links defused."""
    return _MD_LINK.sub("]\u200b", _MENTION.sub("@\u200b", slack_escape(text)))


def slack_url(url: str) -> str:
    """A URL for Slack's ``<url|text>``: a ``|`` in it would end the URL there and make the rest the link text."""
    return slack_escape(url).replace("|", "%7C")


# Microsoft Teams renders an Adaptive Card TextBlock's text as a Markdown subset (bold, italic, lists, [text](url)
# links; markdown-it in some clients adds code spans, strikethrough and autolinks) and decodes HTML entities. Backslash
# escapes cannot be relied on: clients process them differently (AdaptiveCards#5758, msteams-docs#5793; iOS showed
# \* as such until Teams-AdaptiveCards-Mobile#83), so markup characters are replaced or split by invisible ones.
# Look-alikes for the emphasis and code-span characters: no emphasis rule of any renderer reads them.
_TEAMS_LOOKALIKE = str.maketrans({"*": "\u2217", "_": "\u02cd", "`": "\u02cb"})
# A zero-width space after & (no entity: &#8238; would bring back the bidi override clean_text removed), < (no
# autolink, no <at> mention tag) and ~ (no ~~strikethrough~~), and between ] and ( (no link or image).
_TEAMS_SPLIT = re.compile(r"[&<~]|\](?=\()")
# What opens a list, heading or quote at the start of a text (each TextBlock's text starts a line).
_TEAMS_LINE_START = re.compile(r"\s*(?:[-+#>]|\d+[.)])")


def teams_text(text: str) -> str:
    """Untrusted text for a Teams Adaptive Card TextBlock: no Markdown in it renders as a link, formatting, list or
    mention, and it reads the same (``*`` and ``_`` become the look-alikes ``∗`` and ``ˍ``)."""
    text = _TEAMS_SPLIT.sub(lambda m: m.group() + "\u200b", text.translate(_TEAMS_LOOKALIKE))
    return "\u200b" + text if _TEAMS_LINE_START.match(text) else text

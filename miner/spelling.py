"""One spelling for what reads the same, shared by service matching and the config check of its terms.

The config refuses a term that two services share; it must read terms exactly as matching does, or two terms
that look different to it ("what's app", "what’s app") would still be one to matching, which counts a post naming
it for one of the services only.
"""

from __future__ import annotations

import re
import unicodedata

# Invisible format characters (soft hyphen, zero-width space and joiners, bidi marks): "Whats\u00adApp" is WhatsApp.
_FORMAT = re.compile("[\u00ad\u0600-\u0605\u061c\u06dd\u070f\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064"
                     "\u2066-\u206f\ufeff\ufff9-\ufffb\U000e0001\U000e0020-\U000e007f]")
_APOSTROPHE = re.compile("[\u2018\u2019\u02bc\u2032]")  # "McDonald’s" from a phone keyboard is "McDonald's"
# NFKC would turn these into letters glued to the name before them ("WhatsApp™" -> "WhatsAppTM").
_MARKS = re.compile("[\u2120-\u2122]")
_SEP = re.compile(r"[\s\-_]+")


def normalise(text: str) -> str:
    """NFKC (full-width "ＷｈａｔｓＡｐｐ", styled "𝗪𝗵𝗮𝘁𝘀𝗔𝗽𝗽" and a decomposed "Te\u0301le\u0301com" become plain
    letters), no invisible format characters, one apostrophe."""
    if text.isascii():
        return text
    text = _MARKS.sub(" ", _APOSTROPHE.sub("'", _FORMAT.sub("", text)))
    return unicodedata.normalize("NFKC", text)


def term_key(term: str) -> str:
    """A service name or alias as matching reads it: "#WhatsApp", "whats app" and "Whats-App" are one term."""
    return _SEP.sub("", normalise(term).strip().lstrip("#@")).casefold()

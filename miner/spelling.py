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
_SEP = re.compile(r"[\s\-_'&]+")  # and apostrophes and "&", which matching takes as optional
# Latin, Greek and Cyrillic letters without their accents: posts drop them ("Telefonica caida", "MOVISTAR"; Greek
# capitals are written without tonos) or add them where the configured name has none. Only these scripts: a kana's
# voicing mark or a Hangul syllable's parts are letters of their own. An accent left uncomposed is dropped with it.
_ACCENTS = {
    cp: base
    for block in ((0xC0, 0x250), (0x370, 0x530), (0x1E00, 0x2000))
    for cp in range(*block)
    if len(d := unicodedata.normalize("NFD", chr(cp))) > 1 and all(unicodedata.combining(c) for c in d[1:])
    and (base := d[0]) < "\u0530"
} | dict.fromkeys(range(0x300, 0x370))
# Arabic and Hebrew vowel points (and the Arabic stretching tatweel) are written or not at will: "زَين" is "زين".
_ACCENTS |= dict.fromkeys([*range(0x591, 0x5BE), 0x5BF, 0x5C1, 0x5C2, 0x5C4, 0x5C5, 0x5C7, 0x640, *range(0x64B, 0x660),
                           0x670])
# "ß" in capitals is "SS", and Swiss German never writes it: "STRASSE" and "Strasse" are "Straße" in another case.
_ACCENTS |= {ord("ß"): "ss", ord("ẞ"): "SS"}
# re's IGNORECASE took these for "i"; lower() alone would not (and "İ".lower() is two characters).
_FOLD = str.maketrans({"İ": "i", "ı": "i"})


def normalise(text: str) -> str:
    """NFKC (full-width "ＷｈａｔｓＡｐｐ" and styled "𝗪𝗵𝗮𝘁𝘀𝗔𝗽𝗽" become plain letters), no accents ("Télécom",
    decomposed "Te\u0301le\u0301com" and "Telecom" are one), no invisible format characters, one apostrophe."""
    if text.isascii():
        return text
    text = _MARKS.sub(" ", _APOSTROPHE.sub("'", _FORMAT.sub("", text)))
    return unicodedata.normalize("NFKC", text).translate(_ACCENTS)


def term_key(term: str) -> str:
    """A service name or alias as matching reads it: "#WhatsApp", "what's app" and "Whats-App" are one term."""
    return lower(_SEP.sub("", normalise(term).strip().lstrip("#@")))


def lower(text: str) -> str:
    """``text`` in lower case, one character for one, so positions agree with ``text``."""
    return text.translate(_FOLD).lower()

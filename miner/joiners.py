"""Zero-width joiners in untrusted text: kept where they join something, dropped where they only hide a word.

ZWJ (U+200D) holds emoji sequences together ("👨‍👩‍👧" is one family; without it, three people) and asks Indic
scripts for a half form or a conjunct ("क्‍ष", Sinhala's "ශ්‍රී"). ZWNJ (U+200C) is part of Persian, Urdu, Kurdish
and Indic spelling: "می‌خواهم" ("I want") without it is misspelled, its prefix run into the verb. Elsewhere they show
nothing and only split a word for whatever reads it: "What\\u200cs\\u200dApp" is WhatsApp to a reader and no word to
a search or the classifier. Both the stored post text (`miner.collectors.normalise`) and alert text
(`miner.alerts.text`) keep them so; service matching drops them all (`miner.spelling`).
"""

from __future__ import annotations

import re
import unicodedata

ZWNJ = "\u200c"
ZWJ = "\u200d"
JOINERS = ZWNJ + ZWJ
_RUN = re.compile("[\u200c\u200d]+")
# Scripts that write joiners between letters: Arabic (Persian, Urdu, Pashto, Kurdish, their presentation forms),
# Syriac, Thaana, N'Ko, Mongolian, and the Brahmic scripts of India and Sri Lanka (Devanagari to Sinhala, Vedic
# signs, Devanagari Extended, and the historic and minority ones of the Brahmi block range: Kaithi, Sharada, Grantha).
# Latin is not one of them: a joiner between "What" and "sApp" joins nothing.
_JOINING_SCRIPT = re.compile("[\u0600-\u08ff\u0900-\u0dff\u1800-\u18af\u1cd0-\u1cff\ua8e0-\ua8ff\ufb50-\ufdff"
                             "\ufe70-\ufefe\U00011000-\U00011fff]")
_VS16 = "\ufe0f"  # asks for the emoji form of the character before it ("❤️" in "❤️‍🔥")
_SKIN_TONES = range(0x1F3FB, 0x1F400)  # Fitzpatrick modifiers: "👩🏽‍💻" joins after the tone


def _script_letter(ch: str) -> bool:
    """Whether ``ch`` is a letter or a mark (a vowel sign, a virama) of a script that writes joiners."""
    return bool(ch) and unicodedata.category(ch)[0] in "LM" and _JOINING_SCRIPT.match(ch) is not None


def _emoji_end(ch: str) -> bool:
    """Whether ``ch`` can end the emoji before a ZWJ: a pictograph (So), VS16 or a skin tone."""
    return bool(ch) and (ch == _VS16 or ord(ch) in _SKIN_TONES or unicodedata.category(ch) == "So")


def _emoji_start(ch: str) -> bool:
    """Whether ``ch`` can start the emoji after a ZWJ: a pictograph (So), or the one arrow of the math symbols (Sm)
    that a sequence joins, "↔" of "🙂‍↔️" (head shaking)."""
    return bool(ch) and (ch == "\u2194" or unicodedata.category(ch) == "So")


def _kept(match: re.Match[str]) -> str:
    run, text = match.group(), match.string
    if len(run) > 1:
        return ""  # no spelling or sequence writes two: a run only hides
    before = text[match.start() - 1] if match.start() else ""
    after = text[match.end()] if match.end() < len(text) else ""
    if _script_letter(before) and _script_letter(after):
        return run
    if run == ZWJ:
        if _emoji_end(before) and _emoji_start(after):
            return run
        # After a virama a ZWJ ends a word too: Malayalam's chillu ("അവന്‍", he) and Bengali's khanda ta ("হঠাত্‍")
        # as written before Unicode gave them letters of their own, still common.
        if _script_letter(before) and unicodedata.combining(before) == 9:
            return run
    return ""


def keep_joining(text: str) -> str:
    """``text`` with each ZWJ and ZWNJ dropped but where it joins something: a ZWNJ or ZWJ alone between two letters
    (or marks) of a script that writes them, a ZWJ between two emoji of a sequence or after a virama. A run of them,
    one at a word's edge or next to a letter of another script (Latin) goes."""
    return _RUN.sub(_kept, text) if ZWNJ in text or ZWJ in text else text


def cut_end(text: str) -> str:
    """``text`` without the spaces and joiners a cut left at its end (half an emoji sequence, a word's ZWNJ)."""
    return text.rstrip().rstrip(JOINERS).rstrip()


def stray_joiner(text: str) -> str | None:
    """The first ZWJ or ZWNJ in ``text`` that joins nothing (see `keep_joining`), as ``U+XXXX``, or None."""
    joined = keep_joining(text)
    if joined == text:
        return None
    at = next((i for i, (ch, kept) in enumerate(zip(text, joined, strict=False)) if ch != kept), len(joined))
    return f"U+{ord(text[at]):04X}"


def without_joiners(text: str) -> str:
    """``text`` without any ZWJ or ZWNJ."""
    return text.replace(ZWNJ, "").replace(ZWJ, "")

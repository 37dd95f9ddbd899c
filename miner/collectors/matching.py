"""Which configured services a post talks about: names, aliases, hashtags and @handles, on word boundaries.

Matching is case-insensitive except for very short terms ("X", "O2"), which must match their configured
case: otherwise every "x" in "2 x 4" would be a post about X. A service named by a common word ("Three",
"Signal") can ask for the same with ``match_case``. Word boundaries keep "AWS" out of "laws".
A hashtag or handle also matches with a common outage suffix or support prefix, or two suffixes: #WhatsAppDown,
#isinstagramdown, @AWSSupport, @BTCare, @AskPlayStation, @AOLSupportHelp, #FacebookAppDown; in other languages too
(#WhatsAppCaído, #TelekomStörung, #PanneSFR, #ВКупал), and with a year after the suffix (#FacebookDown2021).
Links (https://..., www....) are not mentions.
"""

from __future__ import annotations

import functools
import re
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from miner.collectors.normalise import redact_mentions
from miner.config import ServiceConfig
from miner.spelling import lower, normalise

SHORT_TERM = 2  # terms this long or shorter are matched case-sensitively
# Besides English, the affixes of outage tags in other languages, as Downdetector-style traffic writes them:
# #PanneSFR, #SeCayóWhatsApp, #CaiuInstagram, #GangguanIndihome, #СбойВК.
_TAG_PREFIXES = ("is", "ask", "team", "panne", "secayó", "caída", "caiu", "gangguan", "сбой")
# Not "news": @SkyNews, @NBCNews and @FoxNews are news desks, whose tags in a post are no report about Sky (the ISP).
_TAG_SUFFIXES = (
    "down", "isdown", "outage", "outages", "status", "support", "help", "helps", "app", "offline", "fail",
    "fails", "failure", "error", "errors", "issue", "issues", "problem", "problems", "crash", "broken",
    "notworking", "dead", "care", "cares",
    # Spanish, Portuguese, German, Dutch, French, Italian, Turkish, Indonesian, Russian: #WhatsAppCaído,
    # #InstagramCaiu, #instagramfora, #TelekomStörung, #KPNStoring, #FreePanne, #WhatsAppNonFunziona,
    # #whatsappçöktü, #TelkomselGangguan, #ВКупал. Not "hs" (French "hors service"): two letters end too many tags.
    "caído", "caída", "nofunciona", "caiu", "fora", "foradoar", "störung", "ausfall", "storing", "panne",
    "enpanne", "nonfunziona", "guasto", "çöktü", "çöktümü", "gangguan", "упал", "лежит", "сбой", "неработает",
)
# Tags that read as a service and a suffix but are ordinary German words: "Signalstörung" is a railway's signal
# fault and "Signalausfall" a lost signal, not the messenger; "Totalausfall" is a total failure of anything.
_ORDINARY_TAGS = frozenset(("signalstorung", "signalausfall", "totalausfall"))
# "fora" (Portuguese "out", as in "fora do ar") is a word of its own and the end of others: after a short name it
# makes words ("metafora", metaphor, is no Meta outage) and names ("#Skyfora"), so it follows only longer terms.
_WEAK_SUFFIX, _WEAK_SUFFIX_AFTER = "fora", 5
# Affixes in the spelling posts are compared in: "störung" is "storung", "сбой" "сбои".
_PREFIXES = tuple(lower(normalise(prefix)) for prefix in _TAG_PREFIXES)
_SUFFIXES = tuple(lower(normalise(suffix)) for suffix in _TAG_SUFFIXES)
# A year after a tag's suffix: #FacebookDown2021. Not after the bare name: "#Facebook2021" may be a look back.
_YEAR = r"(?:19|20)[0-9]{2}"
_ENDS_IN_YEAR = re.compile(rf"[^\W\d_]_?{_YEAR}$")
# What may stand between the words of a term in a post, and a term's apostrophes, which are optional: hashtags and
# handles have none (@McDonalds, #DominosDown) and posts often leave them out ("mcdonalds", "whats app"). Nor
# have they an "&", which a tag leaves out (@ATT, @ATTCares for "AT&T") but a post's plain words keep.
_PLAIN_SEP = re.compile(r"[\s\-_'&]+")
_TAG_SEP = re.compile(r"[\-_'&]+")
# A link names a site, not a service the post is about: shared photos ("Power's out! https://instagram.com/p/..")
# and project links ("github.com/..") would count as reports about Instagram and GitHub. So does a host with a path
# but no scheme: tweets carry their photos as "pic.twitter.com/AbC", often glued to the word before ("shockerpic.
# twitter.com/.."). A bare domain ("is instagram.com down?") still counts.
# Such a host ends in a common or a country's domain, but not in a file's extension: "Next.js/Vercel down?" names
# Vercel. (A scheme is short: an unbounded one made every hyphenated word of a long post a new scan to its end. A
# host starts only where a run of host characters does, so the runs a long post is made of are each read once.)
# That run is ASCII, and a dot ends it only after a host character: a tweet's "…" before its photo (three dots
# after NFKC: "what I can do…pic.twitter.com/gPWK4G") and a word in Japanese glued to it ("素晴らしいpic.twitter.com/
# 9JV") left the link standing, a post about Twitter. "_" glues it to a handle: "@Jolli_Beanpic.twitter.com/74B".
_LINK_START = r"(?<![a-z0-9_-])(?<![a-z0-9_-]\.)"
_TLD = (r"(?:com|net|org|info|biz|edu|gov|app|dev|page|link|live|site|online|store|shop|tech|xyz"
        r"|(?!(?:js|ts|py|rb|md|cs)/)[a-z]{2})")
_URL = re.compile(rf"{_LINK_START}(?:[a-z][a-z0-9+.-]{{0,31}}://|www\.)\S+"
                  rf"|{_LINK_START}(?:[a-z0-9_-]+\.)+{_TLD}/\S*", re.IGNORECASE)
# Scripts written without spaces between words (Thai, Lao, Myanmar, Khmer, Hangul, kana, CJK ideographs): a
# name there is glued to the words around it ("LINEが落ちた", "微信又挂了", "카카오톡이 안 돼요"), so only a
# letter or digit of a script with spaces (_B) or a mark on one ends a word. "AWS" stays out of "laws".
_UNSPACED = ("\u0e00-\u0eff\u1000-\u109f\u1100-\u11ff\u1780-\u17ff\u3040-\u30ff\u3130-\u318f\u3400-\u4dbf"
             "\u4e00-\u9fff\ua960-\ua97f\uac00-\ud7ff\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f")
_B = f"[^\\W{_UNSPACED}]"
_U = f"[{_UNSPACED}]"
_PLURAL = re.compile(f"[^\\W\\d_{_UNSPACED}]")  # a term ending in such a letter takes an "s"


@functools.cache
def _mark() -> str:
    """A combining vowel sign or other mark, which re's \\w leaves out: a mark is part of the letter before it
    ("की" is one letter), so "जियो" (Jio) is no word of its own in "कीजियो" (do!). Only the BMP's, and not the
    variation selectors of emoji ("❤️WhatsApp"): a class with characters beyond it made matching eight times slower.
    Built on first use, as reading the Unicode table takes some milliseconds."""
    marks = "".join(re.escape(chr(cp)) for cp in range(0x300, 0x10000)
                    if unicodedata.category(chr(cp)) in ("Mn", "Mc") and not 0xFE00 <= cp <= 0xFE0F
                    and not re.match(_U, chr(cp)))
    return f"[{marks}]"


# A tag's reading tries only the few suffixes that end in its last letter: trying all of them twice, for a second
# suffix, made reading a tag 40 % slower.
_SUFFIXES_BY_LAST = {last: tuple(s for s in _SUFFIXES if s[-1] == last) for last in {s[-1] for s in _SUFFIXES}}


def _unsuffixed(low: str, end: int) -> list[int]:
    """Where ``low[:end]`` ends once one suffix is taken off it, for each suffix it ends in."""
    return [end - len(suffix) for suffix in _SUFFIXES_BY_LAST.get(low[end - 1:end], ()) if low.endswith(suffix, 0, end)]


@dataclass(frozen=True)
class _Term:
    service: str
    rank: int  # position in the longest-first order: at one spot in a post the lowest rank wins


def _words(term: str) -> list[str]:
    """The term's words: a "-" or "_" in it parts them as a space does, so that they may be left out as between
    words ("T-Mobile" is "TMobile", @TMobileHelp and #tmobileoutage; "airtel_presence" is "AirtelPresence"), as
    the config's check of terms takes them to be."""
    return [word for word in re.split(r"[\s\-_]+", normalise(term).strip().lstrip("#@")) if word]


def _escape(word: str) -> str:
    """``word`` as a pattern whose apostrophes may be left out."""
    return re.escape(word).replace("'", "'?")


def _key(words: Sequence[str]) -> str:
    """What a term and every way of writing it in a post have in common: the words without separators,
    apostrophes or "&"."""
    return _TAG_SEP.sub("", "".join(words))


def _buckets(items: Iterable[tuple[str, str]]) -> str:
    """An alternation of (first character, rest of the pattern) pairs, grouped by first character.

    re tries the alternatives of a group one by one; one that starts with a literal it skips at once when the
    literal differs. Grouping by first character keeps the alternatives tried at each word start to a few,
    where a flat alternation of 1,000 terms made matching quadratic in the number of services.
    """
    groups: dict[str, list[str]] = {}
    for first, rest in items:
        groups.setdefault(first, []).append(rest)
    return "|".join(f"{re.escape(first)}(?:{'|'.join(rests)})" for first, rests in groups.items())


class _Scan:
    """One compiled scan over a post for a set of terms, and the table that tells which term a match is."""

    def __init__(self, terms: Sequence[tuple[list[str], _Term]], exact_case: bool = False) -> None:
        plain: list[tuple[str, str]] = []
        tag: list[tuple[str, str]] = []
        self.table: dict[str, _Term] = {}
        for words, term in terms:
            first = words[0][0]
            rest = _escape(words[0][1:]) + "".join(r"[\s\-_]*" + _escape(w) for w in words[1:])
            # "Airtels network", "whatsapps servers": a possessive without its apostrophe, or a plural.
            plural = not exact_case and _PLURAL.match(words[-1][-1])
            if len(words) == 1 and len(words[0]) == 1:
                # A letter hyphened to a word is a prefix or a label, not the name: X-ray, X-Box, X-mas, Gen-X.
                rest = r"(?<![^\W_]-.)(?!-[^\W_])"
            plain.append((first, rest + "s?" if plural else rest))
            tag_rest = _escape(words[0][1:]) + "".join("[_-]?" + _escape(w) for w in words[1:])
            tag.append((first, tag_rest.replace(re.escape("&"), "")))
            self.table.setdefault(_key(words), term)  # terms arrive longest first: an equal key keeps the first
        prefixes = "|".join(_PREFIXES)
        suffixes = "|".join(_SUFFIXES)
        if exact_case:  # only the term keeps its case: "#EEDown", "@XSupport" and "@AskEE" are EE and X
            prefixes, suffixes = f"(?i:{prefixes})", f"(?i:{suffixes})"
        # A word boundary, unless the character on the term's side is of a script without spaces. The start test
        # comes first, for the whole alternation: inside a word it fails at once.
        # (Two lookarounds for a letter or a mark: one of an alternation of the two was a third slower.)
        after_word, before_word = f"(?<!{_B})(?<!{_mark()})", f"(?!{_B})(?!{_mark()})"
        start = f"(?:{after_word}|(?={_U}))" if any(re.match(_U, first) for first, _ in plain) else after_word
        self.pattern = re.compile(
            rf"{start}(?:(?<![#@])(?:{_buckets(plain)})"
            rf"|[#@](?:{prefixes})?_?(?:{_buckets(tag)})(?:(?:_?(?:{suffixes})){{1,2}}(?:_?{_YEAR})?)?)"
            rf"(?:(?<={_U})|{before_word})"
        )

    def find(self, text: str) -> Iterable[tuple[int, int, _Term]]:
        for m in self.pattern.finditer(text):
            span = m.group()
            term = self._tag(span) if span[0] in "#@" else self._plain(_PLAIN_SEP.sub("", span))
            if term is not None:
                yield m.start(), m.end(), term

    def _plain(self, key: str) -> _Term | None:
        term = self.table.get(key)
        return term if term is not None or key[-1:] not in "sS" else self.table.get(key[:-1])

    def _tag(self, span: str) -> _Term | None:
        """The term inside a hashtag or handle: of every prefix/term/suffixes reading of it, the highest ranked."""
        body = _TAG_SEP.sub("", span[1:])
        low = body.lower()
        if low in _ORDINARY_TAGS:
            return None
        once = _unsuffixed(low, len(body))
        if _ENDS_IN_YEAR.search(low):  # the year only after a suffix: no reading ends where the year starts
            once += _unsuffixed(low, len(body) - 4)
        ends = [len(body), *once, *(end for first in once for end in _unsuffixed(low, first))]
        best: _Term | None = None
        for prefix in ("", *_PREFIXES):
            if not low.startswith(prefix):
                continue
            for end in ends:
                if end > len(prefix) and (end - len(prefix) >= _WEAK_SUFFIX_AFTER or not low.startswith(
                        _WEAK_SUFFIX, end) or low.startswith(_WEAK_SUFFIX + "doar", end)):
                    term = self.table.get(body[len(prefix):end])
                    if term is not None and (best is None or term.rank < best.rank):
                        best = term
        return best


class _Compiled:
    """Scans for one set of services: long terms over the lowercased post; short ones, and those of services
    with ``match_case``, in their own case."""

    def __init__(self, services: Sequence[ServiceConfig]) -> None:
        terms = [(term, svc.name, svc.match_case) for svc in services for term in (svc.name, *svc.aliases)]
        # Longer terms first, so "Google Cloud" wins over "Google" at the same position.
        terms.sort(key=lambda t: -len(t[0]))
        long: list[tuple[list[str], _Term]] = []
        short: list[tuple[list[str], _Term]] = []
        for rank, (text, service, match_case) in enumerate(terms):
            words = _words(text)
            if not words:
                continue
            if match_case or len("".join(words)) <= SHORT_TERM:
                short.append((words, _Term(service, rank)))
            else:
                long.append(([lower(w) for w in words], _Term(service, rank)))
        self.long = _Scan(long) if long else None
        self.short = _Scan(short, exact_case=True) if short else None

    def whole(self, tag: str) -> bool:
        """Whether one term's match is all of ``tag`` (a handle), not a word inside it."""
        text = normalise(tag)
        scans = ((self.long, lower(text)), (self.short, text))
        return any((0, len(seen)) == found[:2] for scan, seen in scans if scan is not None for found in scan.find(seen))

    def match(self, text: str) -> tuple[str, ...]:
        text = _URL.sub(" ", normalise(text))
        found: list[tuple[int, int, _Term]] = []
        if self.long is not None:
            found.extend(self.long.find(lower(text)))
        if self.short is not None:
            found.extend(self.short.find(text))
        # Where matches of the two scans overlap, the one starting first (then the longer) stands, as when
        # one alternation of all terms read the post left to right.
        found.sort(key=lambda f: (f[0], -f[1]))
        services: dict[str, None] = {}
        end = 0
        for start, stop, term in found:
            if start >= end:
                services.setdefault(term.service, None)
                end = stop
        return tuple(services)


class ServiceMatcher:
    """A compiled matcher over services' names and aliases; ``match`` returns service names."""

    def __init__(self, services: Iterable[ServiceConfig]) -> None:
        self.services = tuple(services)
        self._by_lower = {s.name.lower(): s for s in self.services}
        self._lock = threading.Lock()
        self._compiled: dict[tuple[str, ...], _Compiled] = {}

    def _scans(self, names: tuple[str, ...]) -> _Compiled:
        with self._lock:
            cached = self._compiled.get(names)
            if cached is not None:
                return cached
        chosen = [self._by_lower[n] for n in names if n in self._by_lower] if names else list(self.services)
        compiled = _Compiled(chosen)
        with self._lock:
            self._compiled[names] = compiled
        return compiled

    def match(self, text: str, only: Sequence[str] = ()) -> tuple[str, ...]:
        """Services mentioned in ``text`` in order of first mention; ``only`` restricts to those names."""
        if not text:
            return ()
        return self._scans(tuple(sorted(n.lower() for n in only))).match(text)

    def redact_people(self, text: str) -> str:
        """``text`` with people's @handles and Reddit u/names as placeholders (see normalise.redact_mentions). A
        handle that matching reads as any configured service's (@WhatsAppSupport) is kept: it is no person's."""
        return redact_mentions(text, self.service_handle)

    def service_handle(self, handle: str) -> bool:
        """Whether all of ``handle`` ("@WhatsAppSupport", Reddit's "u/name") reads as a configured service's handle.
        A service's name as a word inside one is not enough: matching reads "@whatsapp-fan" (a Bluesky handle may hold
        a "-") and "u/jane-mtn" as WhatsApp and MTN, and kept them, a person's handle, in the stored text."""
        return self._scans(()).whole("@" + handle.rpartition("/")[2].lstrip("@"))

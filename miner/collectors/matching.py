"""Which configured services a post talks about: names, aliases, hashtags and @handles, on word boundaries.

Matching is case-insensitive except for very short terms ("X", "O2"), which must match their configured
case: otherwise every "x" in "2 x 4" would be a post about X. Word boundaries keep "AWS" out of "laws".
A hashtag or handle also matches with a common outage suffix or support prefix: #WhatsAppDown,
#isinstagramdown, @AWSSupport, @AskPlayStation.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Sequence

from miner.config import ServiceConfig

SHORT_TERM = 2  # terms this long or shorter are matched case-sensitively
_TAG_PREFIXES = ("is", "ask", "team")
_TAG_SUFFIXES = (
    "down", "isdown", "outage", "outages", "status", "support", "help", "helps", "app", "offline", "fail",
    "fails", "failure", "error", "errors", "issue", "issues", "problem", "problems", "crash", "broken",
    "notworking", "dead", "cares", "news",
)


def _term_pattern(term: str) -> str | None:
    """Regex for one name/alias: as words, or inside a #hashtag/@handle with an optional affix."""
    words = term.strip().lstrip("#@").split()
    if not words:
        return None
    plain = r"[\s\-_]*".join(re.escape(w) for w in words) if len(words) > 1 else re.escape(words[0])
    tag_core = "[_-]?".join(re.escape(w) for w in words)
    prefixes = "|".join(_TAG_PREFIXES)
    suffixes = "|".join(_TAG_SUFFIXES)
    tag = rf"[#@](?:{prefixes})?_?{tag_core}(?:_?(?:{suffixes}))?"
    # The shared (?<!\w) is factored out in front of the whole alternation by ServiceMatcher.
    body = rf"(?<![#@]){plain}(?!\w)|{tag}(?!\w)"
    if len("".join(words)) <= SHORT_TERM:
        return rf"(?-i:{body})"
    return body


class ServiceMatcher:
    """A compiled matcher over services' names and aliases; ``match`` returns service names."""

    def __init__(self, services: Iterable[ServiceConfig]) -> None:
        self.services = tuple(services)
        self._by_lower = {s.name.lower(): s for s in self.services}
        self._lock = threading.Lock()
        self._compiled: dict[tuple[str, ...], tuple[re.Pattern[str] | None, list[str]]] = {}

    def _pattern(self, names: tuple[str, ...]) -> tuple[re.Pattern[str] | None, list[str]]:
        with self._lock:
            cached = self._compiled.get(names)
            if cached is not None:
                return cached
        chosen = [self._by_lower[n] for n in names if n in self._by_lower] if names else list(self.services)
        terms: list[tuple[str, str]] = []
        for svc in chosen:
            for term in (svc.name, *svc.aliases):
                terms.append((term, svc.name))
        # Longer terms first, so "Google Cloud" wins over "Google" at the same position.
        terms.sort(key=lambda t: -len(t[0]))
        groups: list[str] = []
        parts: list[str] = []
        for term, service in terms:
            pattern = _term_pattern(term)
            if pattern is not None:
                parts.append(f"(?P<g{len(groups)}>{pattern})")
                groups.append(service)
        # One lookbehind in front of the alternation: inside a word it fails at once, instead of every
        # alternative being tried at every character.
        compiled = re.compile(r"(?<!\w)(?:" + "|".join(parts) + ")", re.IGNORECASE) if parts else None
        with self._lock:
            self._compiled[names] = (compiled, groups)
        return compiled, groups

    def match(self, text: str, only: Sequence[str] = ()) -> tuple[str, ...]:
        """Services mentioned in ``text`` in order of first mention; ``only`` restricts to those names."""
        compiled, groups = self._pattern(tuple(sorted(n.lower() for n in only)))
        if compiled is None or not text:
            return ()
        found: dict[str, None] = {}
        for m in compiled.finditer(text):
            if m.lastgroup is not None:
                found.setdefault(groups[int(m.lastgroup[1:])], None)
        return tuple(found)

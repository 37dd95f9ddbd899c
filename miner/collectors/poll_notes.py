"""Survivable problems met below a collector, where no `FetchResult` is at hand: a JSON body's bytes that are not
UTF-8, or its URL's permanent redirect, read by `miner.collectors.http.read_json` for every page and login of a poll
of any of the seven JSON collectors; items an API listed without the id or time a collector needs, skipped on the
page that listed them; a compressed body that came without its trailer (`miner.collectors.trailer`), for any source.

The bad bytes were only logged, and the others not even that, so the source's ``last_warning`` (`miner status`,
/metrics, the digest) never said that the source sends broken text, or has moved, or answers in a shape its collector
no longer reads, as a feed's own warnings do. They are noted on the poll's thread while `Poller.poll` runs
the collector (`noting`), counted by kind, and added to the poll's warnings there, and logged, one line per kind
however many pages or items met it: one shared way, rather than each collector carrying them out of its pages.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from miner.timeutil import counted

NoteKind = Literal["not_utf8", "moved", "malformed", "no_trailer"]

# The notes of the poll running on this thread (None outside one). A thread-local, as `deadline.py`'s deadline is:
# the pool runs polls on many threads at once, each from its collector's call to its return.
_current = threading.local()


@dataclass
class _Tally:
    where: str  # the first URL (as messages show it), or moved-for-good message, that gave this kind in the poll
    count: int = 0  # what the kind counts (bad byte sequences, items)
    times: int = 0  # responses or items that gave it
    others: set[str] = field(default_factory=set)  # other URLs that gave it


def not_utf8(count: int) -> str:
    """``count`` bad byte sequences, as the log lines and warnings about them say it: "1 byte sequence that is not
    UTF-8", "3 byte sequences that are not UTF-8"."""
    return f"{counted(count, 'byte sequence')} that {'is' if count == 1 else 'are'} not UTF-8"


def _not_utf8(t: _Tally) -> str:
    # The log line's and the feed warning's words, so that one grep finds both.
    return (f"JSON from {t.where}{_and_others(t)} holds {not_utf8(t.count)}"
            f"{f' in {t.times} responses' if t.times > 1 else ''}; each read as U+FFFD")


def _moved(t: _Tally) -> str:
    # Every page of a paged API is one URL to messages (they show no query): a poll of them is one message.
    return t.where + _and_others(t, " moved too")


def _malformed(t: _Tally) -> str:
    # Skipped, they were not even logged: an API that changed a field's type or name was a source in good health that
    # found nothing new.
    return f"{t.where}{_and_others(t)} listed {counted(t.count, 'item')} without a usable id or time; skipped"


def no_trailer(what: str) -> str:
    """The warning for ``what`` ("gzip body from URL") that came without its trailer, its compressed data whole
    (`miner.collectors.trailer`): the log line's and the poll warning's words."""
    return (f"{what} came without its trailer (the checksum that ends it; its compressed data ended whole): read, "
            "but its ETag and Last-Modified not kept, so that the next poll fetches it whole")


def _no_trailer(t: _Tally) -> str:
    return no_trailer(t.where + _and_others(t))


def _and_others(t: _Tally, what: str = "") -> str:
    return f" (and {len(t.others)} other URL{'s' if len(t.others) > 1 else ''}{what})" if t.others else ""


# A warning's words per kind: short, with the URL as messages show it and counts, never a body or an item's text.
_MESSAGES: dict[NoteKind, Callable[[_Tally], str]] = {
    "not_utf8": _not_utf8,
    "moved": _moved,  # `where` is `miner.collectors.http.moved_warning`'s message
    "malformed": _malformed,
    "no_trailer": _no_trailer,  # `where` is "gzip body from URL"
}


class PollNotes:
    """The survivable problems one poll met, by kind."""

    def __init__(self) -> None:
        self._tallies: dict[NoteKind, _Tally] = {}

    def add(self, kind: NoteKind, where: str, count: int) -> None:
        tally = self._tallies.setdefault(kind, _Tally(where))
        tally.count += count
        tally.times += 1
        if where != tally.where:
            tally.others.add(where)

    def warnings(self) -> list[str]:
        """One line per kind, in the order the kinds were first met."""
        return [_MESSAGES[kind](tally) for kind, tally in self._tallies.items()]


@contextlib.contextmanager
def noting() -> Iterator[PollNotes]:
    """Collect what `note` is told on this thread until the block ends (one poll)."""
    before = getattr(_current, "notes", None)
    notes = _current.notes = PollNotes()
    try:
        yield notes
    finally:
        _current.notes = before


def note(kind: NoteKind, where: str, count: int = 1) -> bool:
    """Tell the poll running on this thread of a survivable problem of ``kind`` at ``where`` (a URL as messages show
    it). False outside a poll (a body read by itself), where the caller is to log it: in a poll, `Poller.poll` logs
    the poll's line of each kind once, naming the source."""
    notes: PollNotes | None = getattr(_current, "notes", None)
    if notes is None:
        return False
    notes.add(kind, where, count)
    return True

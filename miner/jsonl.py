"""The lines of a JSON Lines input as miner reads them (`miner classify`, `miner replay`): bytes, at most so long."""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from typing import IO, Protocol

# The longest line of a JSONL input miner reads (`miner classify`, `miner replay`), its newline not counted: no post
# comes near it (the model reads a text's first 64,000 characters at most, 768 KB as JSON even if each is escaped as
# a surrogate pair; real posts' lines are under 2 KB). A longer one is read past, never held whole. Parsing a line
# costs about 3.6 times its size in memory for a long text, but up to 45 times for nested arrays and objects: at
# 64 MiB, a line of `[{},{},...]` took a `miner classify` run to 1.85 GB, one of `[[[[]]]],...` to 3.15 GB, enough
# to kill it mid-file; at 16 MiB the latter took a run to 1.12 GB mid-file, the model loaded (0.41 GB without such
# a line), until json_refused refused such a line unparsed. Counting brackets alone was no bound: scalars in one
# array cost up to 15 times their size (`["ab","ab",...]`), and a text may hold brackets: json_refused counts the
# strings, and the brackets and separators outside them.
MAX_LINE_BYTES = 16 << 20

# A post is one flat object: a line's JSON nested deeper, or holding more values, than these is refused before it is
# parsed (json_refused). The values, not the depth, are what parsing costs: a line of `[[[[]]]],...` is 5 deep, and
# 16 MiB of it took `miner classify` from 0.13 GB to 0.80 GB (2-core Xeon), where a line nested 8 million deep was
# refused by json's own recursion limit at about 1,000 levels (0.19 GB). The depth is bounded below that limit all the
# same, so that the refusal does not depend on how deep the reader's own stack is. 100,000 values (each container, key
# and separated value counted once, as its "[", "{", ":" or "," outside strings) parse in about 10 MB; a post's line
# holds tens, an API's whole object a few hundred. A text's own brackets and commas (inside its string) count for
# nothing.
MAX_JSON_DEPTH = 256
MAX_JSON_VALUES = 100_000
# A JSON string, or one not closed before the line ends (read to its end: each '"' of a line starts at most one
# string read, so a line of '"\\"\\"...' is read once, not once from each '"'); no part of it is read back.
_STRING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]++")


def json_refused(line: str) -> str | None:
    """Why the JSON of ``line`` is refused unparsed: nested deeper than MAX_JSON_DEPTH, or more than MAX_JSON_VALUES
    values; else None. A line of fewer "[", "{", ":" and "," than MAX_JSON_DEPTH (every post's) is not read again."""
    if line.count("[") + line.count("{") + line.count(":") + line.count(",") <= MAX_JSON_DEPTH:
        return None
    too_many = f"JSON of more than {MAX_JSON_VALUES:,} values: a post is one flat object"
    # Each string is a key or a value, and two '"' not after a "\\" (or fewer) make one: so many are too many, read no
    # further: taking the strings out of 16 MiB of `["ab","ab",...]` first took the run to 0.23 GB, this 0.19 GB.
    if (line.count('"') - line.count('\\"')) // 2 > MAX_JSON_VALUES:
        return too_many
    outside = _STRING.sub("", line)
    opened = outside.count("[") + outside.count("{")
    if opened + outside.count(":") + outside.count(",") > MAX_JSON_VALUES:
        return too_many
    brackets = _NOT_BRACKET.sub("", outside)
    # Each "[" or "{" closed, or the line is no JSON, which json.loads says (its containers are no more than counted).
    if opened > MAX_JSON_DEPTH and len(brackets) == 2 * opened:
        depth = 0
        for bracket in brackets:
            depth += 1 if bracket in "[{" else -1
            if depth > MAX_JSON_DEPTH:
                return f"JSON nested deeper than {MAX_JSON_DEPTH} levels: a post is one flat object"
    return None


class LineSource(Protocol):
    def readline(self, size: int, /) -> bytes: ...


def lines(fh: IO[bytes] | gzip.GzipFile | LineSource, limit: int) -> Iterator[bytes | None]:
    """The lines of ``fh``, None for one longer than ``limit`` bytes (read past as the next is asked for, never held
    whole); the newline is no part of a line's length."""
    # Byte lines end at b"\n" only: a text stream's universal newlines would split a line at a stray "\r".
    while line := fh.readline(limit + 1):
        # A line of just ``limit`` bytes was refused where it had its newline, and read as a file's last line.
        if len(line) <= limit or line.endswith(b"\n"):
            yield line
            continue
        while not line.endswith(b"\n") and (line := fh.readline(1 << 20)):
            pass
        yield None

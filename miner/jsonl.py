"""The lines of a JSON Lines input as miner reads them (`miner classify`, `miner replay`): bytes, at most so long."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from typing import IO

# The longest line of a JSONL input miner reads (`miner classify`, `miner replay`), its newline not counted: no post
# comes near it (the model reads a text's first 64,000 characters at most, 768 KB as JSON even if each is escaped as
# a surrogate pair; real posts' lines are under 2 KB). A longer one is read past, never held whole. Parsing a line
# costs about 3.6 times its size in memory for a long text, but up to 45 times for nested arrays and objects: at
# 64 MiB, a line of `[{},{},...]` took a `miner classify` run to 1.85 GB, one of `[[[[]]]],...` to 3.15 GB, enough
# to kill it mid-file; at 16 MiB the latter takes a run to 1.12 GB mid-file, the model loaded (0.41 GB without such
# a line; a 4 MiB limit would keep it to 0.59 GB). Counting brackets before parsing was no bound: scalars in one
# array cost up to 15 times their size (`["ab","ab",...]`), and a text may hold brackets.
MAX_LINE_BYTES = 16 << 20


def lines(fh: IO[bytes] | gzip.GzipFile, limit: int) -> Iterator[bytes | None]:
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

"""The lines of a JSON Lines input as miner reads them (`miner classify`, `miner replay`): bytes, at most so long."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from typing import IO

# The longest line of a JSONL input miner reads (`miner classify`, `miner replay`): no post is that long (the model
# reads its first 64,000 characters at most), and parsing one costs about 3.6 times its size in memory (a 1 GB line,
# 3.6 GB), enough to kill a run mid-file. A longer one is read past, never held whole.
MAX_LINE_BYTES = 64 << 20


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

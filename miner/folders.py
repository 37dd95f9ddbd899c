"""The folders a file goes in, where a file stands in the way of one of them."""

from __future__ import annotations

from pathlib import Path


def file_in_the_way(folder: Path) -> Path | None:
    """The file that stands where ``folder``, or a folder above it, should be, or None.

    Making ``folder`` then fails with "File exists" (or "Not a directory"), which named no file and read as if the
    store or backup being written were there already: `--db notes.txt/miner.sqlite` said "[Errno 17] File exists:
    'notes.txt'"."""
    for part in (folder, *folder.parents):
        if part.exists():
            return None if part.is_dir() else part
    return None

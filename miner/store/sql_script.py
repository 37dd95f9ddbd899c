"""An SQL script's statements, one at a time: a migration's are run each on its own inside the migration's
transaction (sqlite3's executescript would commit it first)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator


def statements(script: str) -> Iterator[str]:
    """The statements of an SQL script, split where SQLite itself sees one end (trigger bodies stay whole)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""
    if pending.strip():
        yield pending

"""EXPLAIN QUERY PLAN steps worded as SQLite 3.36 and later word them, on whichever SQLite the suite runs."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from typing import Any

# Before 3.36 a step named the table, and its alias after it: "SEARCH TABLE posts AS p USING INDEX ..." for
# "SEARCH p USING INDEX ...", "SCAN TABLE buckets ..." for "SCAN buckets ...".
_OLD_STEP = re.compile(r"^(SEARCH|SCAN) TABLE (\w+)(?: AS (\w+))?")


def query_plan(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[str]:
    """The detail of each step of ``sql``'s query plan."""
    return [_OLD_STEP.sub(lambda m: f"{m[1]} {m[3] or m[2]}", row[3])
            for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]

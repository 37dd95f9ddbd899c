"""A list of values bound to a statement as one parameter.

SQLite before 3.32 refuses a statement with more than 999 bound variables (`too many SQL variables`), and builds
that raise SQLITE_MAX_VARIABLE_NUMBER are not the rule: the library of RHEL 8 or Ubuntu 20.04's Python keeps the
default. An ``IN (?, ?, ...)`` with a mark per value failed there once a read listed 1,000 incidents or a
classify batch held more than 999 posts. A JSON array bound once and read back with json_each has no such limit
at any length, and SQLite builds the same ephemeral index from it for the IN.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

# The IN operand that reads the values of one parameter bound to ``json_list(values)``.
IN_LIST = "IN (SELECT value FROM json_each(?))"


def json_list(values: Iterable[str | int]) -> str:
    """``values`` as the JSON array IN_LIST's parameter takes."""
    return json.dumps(list(values))

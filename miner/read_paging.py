"""Keyset paging of the read API's incidents (docs/api.md#paging): the cursor a page ends at, and the link to the next.

A page ends at its last incident's (opened_at, id); the next is the incidents after it in the same order, latest
opened first. Not an offset: an incident opened while a client pages, which comes first, shifts no later page, and
the next page is a seek on the store's index of opening times (migration 0032; of one service's, of a status or
any, 0035; of the open ones of every service, 0037), as fast deep in a year as at its start. The cursor is opaque to
clients (base64url of ``opened_at|id``, the opening time as stored, so that it compares with the column as the column
compares with itself); ``next`` carries every parameter as applied, the default ``since`` as the time it was, so that
a page read later covers the same incidents.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from miner.timeutil import parse_iso

CURSOR = "cursor"
_SEPARATOR = "|"


class BadCursor(ValueError):
    """A cursor that no page of this API gave."""


def cursor_of(row: Mapping[str, Any]) -> str:
    """The cursor after ``row``, an incident as the store gives it."""
    raw = f"{row['opened_at']}{_SEPARATOR}{int(row['id'])}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def read_cursor(text: str) -> tuple[str, int]:
    """The stored (opened_at, id) that ``text`` ends a page at; BadCursor for anything a page did not give."""
    value = text.strip()
    if not value or len(value) > 200 or not value.isascii():
        raise BadCursor(text)
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise BadCursor(text) from None
    opened_at, separator, ident = raw.rpartition(_SEPARATOR)
    if not separator or not (ident.isascii() and ident.isdigit() and len(ident) <= 18):
        raise BadCursor(text)
    try:
        parse_iso(opened_at)
    except (ValueError, OverflowError):
        raise BadCursor(text) from None
    return opened_at, int(ident)


def next_link(applied: Mapping[str, str | None], cursor: str) -> str:
    """The next page's URL relative to this page's: its query string alone (``?status=all&...``), which resolves
    to the same path (RFC 3986 5.2.2), under whatever prefix a reverse proxy serves the API at."""
    return "?" + urlencode([*((k, v) for k, v in applied.items() if v is not None), (CURSOR, cursor)])


def link_headers(body: Mapping[str, Any]) -> dict[str, str]:
    """The headers an API answer's body calls for: an RFC 8288 ``Link`` to its ``next`` page, if it has one."""
    following = body.get("next")
    return {"Link": f'<{following}>; rel="next"'} if isinstance(following, str) else {}

"""What is wrong with a query string that the read API or the status board could not parse, for a 400 that names
the parameter: "the query string is not valid" left a dashboard's author to guess which of its parameters it was.
BadRequest, the 400 itself, is here so that the modules reading parameters for the API raise it too."""

from __future__ import annotations

from urllib.parse import unquote, unquote_to_bytes

MAX_FIELDS = 20
_FIX = "; percent-encode the text's UTF-8 bytes"


class BadRequest(Exception):
    """A 400 (or, for a name in the path, 404) with its message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def refused(query: str, among: tuple[str, ...] | None = None) -> str:
    """Why parse_qs (strict UTF-8, at most MAX_FIELDS fields) refused ``query``: too many parameters, as it checks
    first, or the first parameter whose name or value is not percent-encoded UTF-8, named (of those ``among``, where
    a page leaves the others out)."""
    fields = 1 + query.count("&") if query else 0  # as parse_qs counts them, empty ones too
    if fields > MAX_FIELDS:
        return f"the query string has {fields} parameters; at most {MAX_FIELDS} are taken"
    for field in query.split("&"):
        name, _, value = field.partition("=")
        shown = unquote(name.replace("+", " "), errors="replace")
        # What was given is quoted cut, as the other errors quote it.
        if among is None and not _decodes(name):
            return f"a parameter's name is not percent-encoded UTF-8 (got {name[:40]!r}){_FIX}"
        if (among is None or shown in among) and not _decodes(value):
            return f"{shown[:40]}: not percent-encoded UTF-8 (got {value[:40]!r}){_FIX}"
    return "the query string is not valid (percent-encoded UTF-8)"


def _decodes(text: str) -> bool:
    try:
        unquote_to_bytes(text.replace("+", " ")).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True

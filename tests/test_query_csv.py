"""`miner query --format csv` and spreadsheets: each row of the store is one row of the file, whatever its text."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner

from miner.cli import main
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

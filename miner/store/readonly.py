"""Read-only SQL for `miner query` (a statement that would write refused before it runs, rows read as the caller
takes them), and a missing or empty (0-byte) store file refused rather than made a store."""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from miner.errors import MinerError, StoreError
from miner.store.db import (
    connect_readonly,
    describe_sqlite_error,
    empty_store_message,
    sqlite_error_cause,
    translate_errors,
)

# Actions a read-only query may take; anything else is refused before it runs.
_READ_ACTIONS = {
    sqlite3.SQLITE_SELECT,
    sqlite3.SQLITE_READ,
    sqlite3.SQLITE_FUNCTION,
    sqlite3.SQLITE_RECURSIVE,
}
_ACTION_NAMES = {
    sqlite3.SQLITE_DELETE: "DELETE",
    sqlite3.SQLITE_INSERT: "INSERT",
    sqlite3.SQLITE_UPDATE: "UPDATE",
    sqlite3.SQLITE_DROP_TABLE: "DROP TABLE",
    sqlite3.SQLITE_CREATE_TABLE: "CREATE TABLE",
    sqlite3.SQLITE_ALTER_TABLE: "ALTER TABLE",
    sqlite3.SQLITE_PRAGMA: "PRAGMA",
    sqlite3.SQLITE_ATTACH: "ATTACH",
    sqlite3.SQLITE_TRANSACTION: "a transaction statement",
    sqlite3.SQLITE_SAVEPOINT: "a transaction statement",
}

# PRAGMAs that only describe or check the store, for an analyst finding their way (`PRAGMA table_info(posts)`, or
# `pragma_table_info('posts')` in a SELECT) or an operator checking it (`PRAGMA quick_check`): their argument names
# a table or an index, or caps the errors listed, never a value to set.
_DESCRIBING_PRAGMAS = {"table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo",
                       "foreign_key_list", "database_list", "collation_list", "function_list", "module_list",
                       "pragma_list", "compile_options", "quick_check", "integrity_check", "foreign_key_check"}
# And those that read a setting of the store file when given no value: `PRAGMA user_version = 5` sets one, and
# `PRAGMA journal_mode = DELETE` would turn WAL off.
_READING_PRAGMAS = {"user_version", "schema_version", "page_count", "page_size", "freelist_count", "journal_mode",
                    "auto_vacuum", "application_id", "encoding"}

# DDL reaches the authorizer first as a write to the schema table (CREATE as an INSERT, DROP as a DELETE), so
# naming the action would call `CREATE TABLE` an INSERT; such refusals name the statement's own keywords instead, as
# do those of an action not named above (REINDEX, DETACH, CREATE TRIGGER: it read "action 27").
_SCHEMA_TABLES = {"sqlite_master", "sqlite_schema", "sqlite_temp_master", "sqlite_temp_schema"}
_SCHEMA_OBJECTS = {"TABLE", "INDEX", "VIEW", "TRIGGER"}
_COMMENT = re.compile(r"--[^\n]*|/\*.*?(?:\*/|$)", re.DOTALL)

# A pragma function (`pragma_journal_mode()`) reads its pragma: an argument names the database to read it of (or the
# table a describing one describes), never a value. `pragma_journal_mode('delete')`, meant to set one, failed as
# SQLite's "unknown database 'delete'", told as "store <path>: ..." as if the store file were damaged.
_PRAGMA_CALL = re.compile(r"\bpragma_(\w+)\s*\(([^()]*)\)", re.IGNORECASE)
_PRAGMA_ARGUMENT_ERRORS = re.compile(r"unknown database '(.*)'|too many arguments on pragma_(\w+)\(\)")


def _pragma_setting(sql: str, msg: str) -> str | None:
    """Where ``msg`` is SQLite's error for a call of a setting's pragma function with an argument in ``sql`` (as if
    to set it), the refusal naming that call; None otherwise."""
    if (error := _PRAGMA_ARGUMENT_ERRORS.match(msg)) is None:
        return None
    for call in _PRAGMA_CALL.finditer(_COMMENT.sub(" ", sql)):
        name, argument = call[1].lower(), call[2].strip()
        if name in _DESCRIBING_PRAGMAS or not argument:
            continue
        if (error[2] or "").lower() == name or (error[1] is not None and error[1] in argument):
            return (f"refused: `miner query` runs read-only SQL and sets no pragma: {call[0]} only reads {name}, "
                    "and the argument of a pragma function names a database or a table, never a value to set "
                    f"({msg}); pragma_{call[1]}() reads the store's")
    return None


def _statement_kind(sql: str) -> str:
    """The leading keywords of ``sql``: ``CREATE TABLE``, ``CREATE UNIQUE INDEX``, ``DROP VIEW``, ``VACUUM``..."""
    words = re.findall(r"[A-Za-z_]+", _COMMENT.sub(" ", sql))[:5]
    if not words:
        return "a schema change"
    kind = [words[0].upper()]
    if kind[0] in ("CREATE", "DROP", "ALTER"):
        for word in words[1:]:
            kind.append(word.upper())
            if word.upper() in _SCHEMA_OBJECTS:
                break
        else:
            kind = kind[:2]
    return " ".join(kind)


def _one_semicolon(sql: str) -> str:
    """``sql`` ending in one semicolon where it ends in several (blanks between): Python's sqlite3 takes the empty
    statements after the first for a second statement."""
    body = sql.rstrip("; \t\n\r\f\v")
    return body + ";" if ";" in sql[len(body):] else sql


class QueryRefused(MinerError):
    """A statement given to `miner query` would write or change the database."""


def require_store(path: str | Path) -> None:
    """Refuse a store file that does not exist: commands other than those that fill a store must not create an
    empty one (a typo in --db would otherwise show or change an empty store, and leave a file and folders behind).
    Nor one of 0 bytes (a `touch`, a copy that failed), which SQLite reads as a new database: `prune`, `silence
    add` and `outbox send` made a store of it, succeeding on nothing, and `backup` copied it as a 4 KB "backup"."""
    if not Path(path).exists():
        raise StoreError(f"store {path} does not exist (`miner collect --once` creates it; "
                         "`miner demo` writes its own, demo-out/miner.sqlite)")
    if _size(path) != 0:  # None: one that cannot be read says so when it is opened
        return
    message = empty_store_message(path)
    # The main file of a WAL store holds its header from the first commit on: a -wal beside an empty one is a
    # store's without its main file (a copy cut short), which SQLite deletes when it opens the file.
    if wal := _size(f"{path}-wal"):
        message += (f"; {path}-wal ({wal:,} bytes) beside it cannot be read without the store's main file, and "
                    "SQLite deletes it when it opens the empty file: keep a copy of it")
    raise StoreError(message)


def _size(path: str | Path) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def _no_op() -> int:
    return 0


def run_readonly(path: str, sql: str, params: dict[str, Any] | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run one read-only statement on a fresh read-only connection. Writes are refused with a clear error."""
    with stream_readonly(path, sql, params) as (columns, rows):
        return columns, list(rows)


@contextlib.contextmanager
def stream_readonly(path: str, sql: str, params: dict[str, Any] | None = None,
                    ) -> Iterator[tuple[list[str], Iterator[tuple[Any, ...]]]]:
    """As :func:`run_readonly`, but the rows are read as the caller iterates (within the block): an export of every
    post (`miner query --format csv`) held them all in memory at once, 3 GB per million posts, before writing
    the first one."""
    require_store(path)
    refused: list[str] = []

    def authorizer(action: int, arg1: str | None, arg2: str | None, *_args: Any) -> int:
        if action in _READ_ACTIONS:
            return sqlite3.SQLITE_OK
        pragma = str(arg1).lower() if action == sqlite3.SQLITE_PRAGMA else ""
        if pragma in _DESCRIBING_PRAGMAS or (pragma in _READING_PRAGMAS and arg2 is None):
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_UPDATE and str(arg1).lower() in _SCHEMA_TABLES:
            # What a table-valued function (json_each, json_tree, dbstat) is authorized as when it is set up: it
            # writes nothing, and was refused as a write "(SELECT)". An UPDATE of the schema table itself is refused
            # by SQLite (writable_schema is a PRAGMA), and DDL is refused by an action of its own.
            return sqlite3.SQLITE_OK
        schema_write = action in (sqlite3.SQLITE_INSERT, sqlite3.SQLITE_DELETE, sqlite3.SQLITE_UPDATE) and (
            str(arg1).lower() in _SCHEMA_TABLES)
        vacuum = action == sqlite3.SQLITE_ATTACH and not arg1  # VACUUM attaches a nameless temporary copy
        own_words = schema_write or vacuum or action not in _ACTION_NAMES
        name = _statement_kind(sql) if own_words else _ACTION_NAMES[action]
        refused.append(name)
        return sqlite3.SQLITE_DENY

    def failure(exc: sqlite3.Warning | sqlite3.DatabaseError) -> MinerError:
        # More than one statement: Python 3.11 raises ProgrammingError where 3.10 raised Warning, and a parameter
        # the SQL names but -p does not bind is one too; each was a "store <path>: ..." error, as if the file failed.
        if isinstance(exc, sqlite3.Warning) or "one statement at a time" in str(exc):
            return QueryRefused(f"run one statement at a time ({exc})")
        if isinstance(exc, sqlite3.ProgrammingError):
            return MinerError(f"SQL error: {exc} (bind each :NAME with -p NAME=VALUE)")
        if refused:
            return QueryRefused(
                f"refused: `miner query` runs read-only SQL, and this statement would write ({refused[0]})")
        msg = str(exc)
        if msg == "not authorized":  # what load_extension() says with loading off (Python's default), not the file
            return QueryRefused(f"refused: `miner query` loads no SQLite extension ({msg})")
        if "syntax error" in msg or "no such" in msg or "incomplete input" in msg:
            return MinerError(f"SQL error: {msg}")
        if setting := _pragma_setting(sql, msg):
            return QueryRefused(setting)
        # The store's own failures (damaged, read-only, full, locked, not to be opened) have causes of their own;
        # any other is the SQL's ("wrong number of arguments to function abs()"), not the file's.
        if sqlite_error_cause(exc) != "other":
            return StoreError(describe_sqlite_error(path, exc))
        return MinerError(f"SQL error: {msg}")

    def rows(cur: sqlite3.Cursor) -> Iterator[tuple[Any, ...]]:
        while True:
            try:
                batch = cur.fetchmany(500)
            except sqlite3.DatabaseError as exc:
                raise failure(exc) from None
            if not batch:
                return
            yield from batch

    with translate_errors(str(path)):  # as every read-only command opens it: a full disk, a read-only folder
        conn = connect_readonly(str(path))
    try:
        conn.set_authorizer(authorizer)
        # A Python call every so many steps of SQLite's VM: signal handlers run only between Python bytecodes, so
        # without it Ctrl-C did nothing until a long statement ended. One that raises (the CLI's, for SIGINT and
        # SIGTERM) makes the callback fail, which aborts the statement with "interrupted".
        conn.set_progress_handler(_no_op, 10_000)
        try:
            cur = conn.execute(_one_semicolon(sql), params or {})
        except (sqlite3.Warning, sqlite3.DatabaseError) as exc:
            raise failure(exc) from None
        yield [d[0] for d in cur.description or ()], rows(cur)
    finally:
        conn.close()

"""Telling a miner store from a SQLite database another program wrote, before anything is written to it."""

from __future__ import annotations

import sqlite3

from miner.errors import StoreError


def user_tables(conn: sqlite3.Connection) -> list[str]:
    """The names of the database's tables, SQLite's own left out."""
    return [row[0] for row in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name")]


def refuse_foreign(conn: sqlite3.Connection) -> None:
    """Refuse a SQLite database that another program wrote (a --db typo naming some other file, say).

    Every miner store records its migrations in ``schema_migrations`` from its first one on, which creates its tables
    in the same transaction. Migrated anyway, such a database was switched to WAL and given miner's twenty tables
    beside its own, or failed half-way with "table posts already exists". An empty database is a new store.
    """
    tables = user_tables(conn)
    if not tables:
        return
    if "schema_migrations" in tables:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(schema_migrations)")}
        if {"id", "applied_at"} <= columns and (
                tables == ["schema_migrations"] or conn.execute("SELECT 1 FROM schema_migrations").fetchone()):
            return
    shown = ", ".join(tables[:5]) + (f" and {len(tables) - 5} more" if len(tables) > 5 else "")
    raise StoreError(f"is a SQLite database of something else, not a miner store (its tables: {shown}); it was left "
                     "as it is: point --db or store.path at a miner store, or at a new file to start one")

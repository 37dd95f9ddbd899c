"""Migration 0021's Python part (migrations.MASTODON_FEDERATED_KINDS, which says why): each status federated from
Lemmy, PieFed or Mbin that a mastodon source stored as ``host/5`` is given the id the collector makes for it now,
``host/comment/5`` (collectors/mastodon.py, status_external_id), read from the link stored with it."""

from __future__ import annotations

import sqlite3
from urllib.parse import urlsplit

_FEDERATED_KINDS = frozenset({"comment", "reply", "p"})  # as mastodon._NUMBERED_KINDS


def federated_kind_ids(conn: sqlite3.Connection) -> None:
    """Rewrite the ids; UPDATE OR IGNORE, as in 0010, leaves one whose new id the source has already."""
    rows = conn.execute(
        "SELECT rowid, external_id, url FROM posts WHERE source IN (SELECT name FROM sources WHERE type = 'mastodon') "
        "AND (instr(url, '/comment/') OR instr(url, '/reply/') OR instr(url, '/p/'))").fetchall()
    conn.executemany("UPDATE OR IGNORE posts SET external_id = ? WHERE rowid = ?",
                     [(new, rowid) for rowid, old, url in rows if (new := _federated_kind_id(old, url)) is not None])


def _federated_kind_id(old: str, url: str) -> str | None:
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return None
    *_, kind, last = ["", "", *parts.path.rstrip("/").split("/")]
    if kind in _FEDERATED_KINDS and last.isdigit() and old == f"{host}/{last}":
        return f"{host}/{kind}/{last}"
    return None

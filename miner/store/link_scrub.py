"""Migration 0017's Python part: the links and link-made ids stored before they were kept without a credential.

A feed item's link, an id made of one and a source's url were stored as written (a source's url without the values
of fewer key names): a private feed's ``?passkey=`` stayed in the store, and the first poll after the upgrade found
none of the entries it listed under the ids it computes now, so it stored each a second time (a new complaint), and
a source whose stored url changed had its poll state reset. Each column is rewritten with the very functions the
collectors and `SourceConfig.stored_url` use, so the forms match.
"""

from __future__ import annotations

import sqlite3

from miner.urls import link_id, public_url, stored_link

# What a link needs to hold for `stored_link` to change it: a query, a user name, or an IPv6 bracket it may fail to
# read. The rest (most rows of a large store) is never read into Python, and of the rows read only those that change
# are kept (each list is built, reading its cursor to the end, before its UPDATE runs).
_MAY_CHANGE = "(instr({0}, '?') OR instr({0}, '@') OR instr({0}, '['))"


def _source_url(url: str) -> str:
    # A stored url is the configured one through an older public_url, which left out less: through this one it is
    # what sync_sources now compares it with. One it cannot read was refused by the config, so never stored.
    try:
        return public_url(url)
    except ValueError:
        return url


def scrub_stored_links(conn: sqlite3.Connection) -> None:
    rows = conn.execute(f"SELECT name, url FROM sources WHERE url IS NOT NULL AND {_MAY_CHANGE.format('url')}")
    conn.executemany("UPDATE sources SET url = ? WHERE name = ?",
                     [(new, name) for name, url in rows if (new := _source_url(url)) != url])
    rows = conn.execute(f"SELECT id, url FROM posts WHERE url IS NOT NULL AND {_MAY_CHANGE.format('url')}")
    conn.executemany("UPDATE posts SET url = ? WHERE id = ?",
                     [(link, ident) for ident, url in rows if (link := stored_link(url)) != url])
    rows = conn.execute("SELECT id, external_id FROM posts WHERE source != 'reports' AND external_id LIKE 'http%://%' "
                        f"AND {_MAY_CHANGE.format('external_id')}")
    # OR IGNORE: a post the source stored under the new id already keeps it, and the old row its own.
    conn.executemany("UPDATE OR IGNORE posts SET external_id = ? WHERE id = ?",
                     [(new, ident) for ident, old in rows if (new := link_id(old)) != old])
    rows = conn.execute(f"SELECT id, url FROM official_incidents WHERE url IS NOT NULL AND {_MAY_CHANGE.format('url')}")
    conn.executemany("UPDATE official_incidents SET url = ? WHERE id = ?",
                     [(page, ident) for ident, url in rows if (page := stored_link(url)) != url])

"""Migrations 0017's, 0022's, 0025's, 0026's, 0027's, 0028's and 0030's Python parts: the links, link-made ids and
post texts stored before their links were kept without a credential.

A feed item's link, an id made of one and a source's url were stored as written (a source's url without the values
of fewer key names): a private feed's ``?passkey=`` stayed in the store, and the first poll after the upgrade found
none of the entries it listed under the ids it computes now, so it stored each a second time (a new complaint), and
a source whose stored url changed had its poll state reset. Each column is rewritten with the very functions the
collectors and `SourceConfig.stored_url` use, so the forms match. A post's text kept the links written in it as
written (a ``?token=``, a password-reset link, a ``user:password@``) until `miner.text_links` took those out, and
the links pasted without a scheme ("app.example.com/reset?token=...") until it read those too (0025), and the login
written before one ("admin:hunter2@192.168.1.1/setup", "psql postgres:s3cret@localhost") until it read that (0026).
The user name of a login whose password and host the contact rule took for an e-mail address stayed before its
placeholder ("admin:[email]") until `miner.text_links.without_email_logins` took it too (0027), and a login before an
IPv6 host in brackets, or a key in a link to one, both without a scheme ("admin:pw@[2001:db8::1]:8080/setup",
"[::1]:3000/reset?token=..."), stayed as written until `miner.text_links` read such a host (0028). A source whose URL
is in the environment kept a key in its host's label in its items' links and ids (0030).
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING

from miner.cut_keys import least_start, redact_cut_key
from miner.redaction import AnyCase, redact
from miner.store.sql_lists import IN_LIST, json_list
from miner.text_links import public_text_links, without_email_logins
from miner.urls import REDACTED, holds_token_host, link_id, public_url, stored_link, without_emails

if TYPE_CHECKING:
    from collections.abc import Sequence

    from miner.store.db import Database

# What a link needs to hold for `stored_link` to change it: a query, a user name, or an IPv6 bracket it may fail to
# read. The rest (most rows of a large store) is never read into Python.
_MAY_CHANGE = "(instr({0}, '?') OR instr({0}, '@') OR instr({0}, '['))"
# What a text needs to hold for `public_text_links` to change it: a link (LIKE is case-blind, as the link's "www." is).
_MAY_HOLD_LINK = "(instr(text, '://') OR text LIKE '%www.%')"
# What a text needs to hold for the `public_text_links` of 0025 to change what 0022's left: a link without a scheme
# (a host's dot, then a "/", "?" or "#"), or one with a path (a curly quote after it, a segment percent-encoded).
_MAY_HOLD_BARE_LINK = "(instr(text, '.') AND (instr(text, '/') OR instr(text, '?') OR instr(text, '#')))"
# What a text needs to hold for the `public_text_links` of 0026 to change what 0025's left: a login before a host
# without a scheme ("admin:pa$$w0rd!@db.example.com/prod", "psql postgres:s3cret@localhost", nothing after the host
# there): a ":" (not a scheme's "://") before an "@". A ":" and an "@" anywhere were 17 % of the real texts (a link
# and a mention), read for nothing; this is 1.3 % (1 % with a "/", "?" or "#" too, which left out a login before a
# host with nothing after it).
_MAY_HOLD_BARE_LOGIN = "(instr(text, '@') AND replace(text, '://', '') GLOB '*:*@*')"
# What a text needs to hold for `without_email_logins` to change it: a ":" before an "[email]" (GLOB's "[[]" is a
# "["). Most texts hold no "[email]", and are never read into Python.
_MAY_HOLD_EMAIL_LOGIN = "(instr(text, '[email]') AND text GLOB '*:*[[]email]*')"

# Rows read into Python at a time, by rowid, each batch's changes written before the next is read: all the changed
# rows of a column were kept for one UPDATE, about 230 bytes a row (66 MB of Python objects, 72 MB more RSS, for
# 300,000 posts whose links carry a ?passkey=; 550 MB at 2.5 M); a batch is 0.5 MB at most. The batches still make
# one transaction: the migration runner's (migrations.apply_migrations), committed with the migration's record or
# rolled back whole, so an upgrade stopped part-way (a kill, a full disk) leaves no link changed.
SCRUB_BATCH = 1000

# The hash link_id puts after a link it changed.
_LINK_HASH = re.compile(r"[0-9a-f]{16}")
# Characters no encoder percent-encodes (RFC 3986's unreserved), as miner.redaction reads them.
_UNESCAPED = re.compile(r"[A-Za-z0-9._~-]+")


def _source_url(url: str) -> str:
    # A stored url is the configured one through an older public_url, which left out less: through this one it is
    # what sync_sources now compares it with. One it cannot read was refused by the config, so never stored.
    try:
        return public_url(url)
    except ValueError:
        return url


def rewrite_column(conn: sqlite3.Connection, table: str, column: str, where: str, update: str,
             new_form: Callable[[str], str | None], may_change: str | None = None) -> None:
    """Set ``column`` of the rows of ``table`` matching ``where`` to ``new_form`` of it, where that differs. Only the
    rows ``may_change`` is true of (a link's: `_MAY_CHANGE`) are read into Python."""
    last = -(2 ** 63)  # below every rowid but the least one allowed, which only a row inserted with it has
    while True:
        # fetchall: the batch is read to its end before the table it reads is written. A row past ``last`` is not
        # written yet, so each batch reads the rows as the store had them, as one read of them all did.
        rows = conn.execute(f"SELECT rowid, {column} FROM {table} WHERE rowid > ? AND {where} "
                            f"AND {may_change or _MAY_CHANGE.format(column)} ORDER BY rowid LIMIT ?",
                            (last, SCRUB_BATCH)).fetchall()
        if not rows:
            return
        conn.executemany(f"{update} {table} SET {column} = ? WHERE rowid = ?",
                         [(new, rowid) for rowid, old in rows if (new := new_form(old)) != old])
        last = rows[-1][0]


def scrub_stored_links(conn: sqlite3.Connection) -> None:
    rewrite_column(conn, "sources", "url", "url IS NOT NULL", "UPDATE", _source_url)
    rewrite_column(conn, "posts", "url", "url IS NOT NULL", "UPDATE", stored_link)
    # OR IGNORE: a post the source stored under the new id already keeps it, and the old row its own (the first by
    # rowid of two old ids that make one new id gets it).
    rewrite_column(conn, "posts", "external_id", "source != 'reports' AND external_id LIKE 'http%://%'",
                   "UPDATE OR IGNORE", link_id)
    rewrite_column(conn, "official_incidents", "url", "url IS NOT NULL", "UPDATE", stored_link)


def scrub_text_links(conn: sqlite3.Connection) -> None:
    # A text cut at max_text_chars before may grow past it by a few characters ("?token=ab" to "?token=[redacted]"):
    # the limit is the config's, which a migration does not read, and nothing relies on a stored text's length.
    rewrite_column(conn, "posts", "text", "1", "UPDATE", public_text_links, _MAY_HOLD_LINK)


def scrub_bare_text_links(conn: sqlite3.Connection) -> None:
    # As scrub_text_links, by the same function: a text 0022 rewrote is rewritten again only where a link it did not
    # read (or read otherwise) holds a credential.
    rewrite_column(conn, "posts", "text", "1", "UPDATE", public_text_links, _MAY_HOLD_BARE_LINK)


def scrub_bare_text_logins(conn: sqlite3.Connection) -> None:
    # As scrub_bare_text_links: a text 0025 rewrote is rewritten again only where a login before a host without a
    # scheme is left in it.
    rewrite_column(conn, "posts", "text", "1", "UPDATE", public_text_links, _MAY_HOLD_BARE_LOGIN)


def scrub_email_logins(conn: sqlite3.Connection) -> None:
    # As scrub_bare_text_logins: only the texts where a ":" comes before an "[email]" are read, and those holding a
    # login's user name before one rewritten.
    rewrite_column(conn, "posts", "text", "1", "UPDATE", without_email_logins, _MAY_HOLD_EMAIL_LOGIN)
# What a text needs to hold for the `public_text_links` of 0028 to change what 0027's left: an IPv6 host in
# brackets, a "[" before two ":" and a "]" (a placeholder's "[email]" or "[redacted]" before a time's ":" too, which is
# read for nothing).
_MAY_HOLD_IPV6 = "(instr(text, '[') AND text GLOB '*[[]*:*:*]*')"


def scrub_ipv6_text_links(conn: sqlite3.Connection) -> None:
    # As scrub_bare_text_logins: a text is rewritten again only where a login before an IPv6 host, or a key in a link
    # to one without a scheme, is left in it.
    rewrite_column(conn, "posts", "text", "1", "UPDATE", public_text_links, _MAY_HOLD_IPV6)


def scrub_source_secrets(database: Database, source: str, secrets: Sequence[str], batch: int = SCRUB_BATCH) -> None:
    """Take ``secrets`` (`miner.urls.secret_parts` of the source's URL from the environment) out of the links,
    link-made ids, post texts and incident titles ``source`` stored before its items' were kept without them: the key
    of a private feed whose items link under it (``/feeds/<token>/items/1``) stayed in the store, and, under the ids
    computed now, every entry still listed would have been stored a second time. No migration can do it: the key is in
    the environment only.

    The source's rows are read in the order of the index on (source, column), ``batch`` of those holding a secret
    at a time, each batch read outside any transaction and its changes written in a transaction of its own. Paged
    by rowid, each batch read all the source's rows and sorted them (750,000 posts of the source took minutes, the
    write lock held throughout, as the poll's one transaction); a poll of a source that stored none with its key
    still reads the source's index once, and writes nothing. A batch that failed leaves the rest to the source's next
    poll, which scrubs again: the rows written before stay written."""
    if not secrets:
        return

    def link(old: str) -> str | None:
        return stored_link(old, secrets)

    def ident(old: str) -> str | None:
        return _secretless_id(old, secrets)

    def text(old: str) -> str | None:
        return redact(old, secrets)

    def cut_text(old: str) -> str | None:
        # And the start of one a text cut short ends with (miner.cut_keys): stored before, cut at max_text_chars
        # with the key still in it, or cut so by the source.
        return redact_cut_key(redact(old, secrets), secrets)

    # What each secret, in any of its forms (as written, percent-encoded in either case of hex), holds as written:
    # its longest run of characters no encoder escapes. A link holding "%2f" where the secret has "/" was passed by.
    # An AnyCase one (a host label's key) in any case: lower(), which folds ASCII only, as the key's run is.
    found_by = sorted({(max(_UNESCAPED.findall(secret), key=len, default=secret), isinstance(secret, AnyCase))
                       for secret in secrets})
    columns: list[tuple[str, str, str, Callable[[str], str | None]]] = [
        ("posts", "url", "UPDATE", link),
        # OR IGNORE, as in scrub_stored_links: a row the source stored under the new id already keeps it.
        ("posts", "external_id", "UPDATE OR IGNORE", ident),
        ("official_incidents", "url", "UPDATE", link),
        ("official_incidents", "external_id", "UPDATE OR IGNORE", ident)]
    runs = [run.lower() if any_case else run for run, any_case in found_by]
    for table, column, update, new_form in columns:
        held = _held(column, found_by)
        # (column, rowid): a url is not unique (a thread's replies link to it). A row rewritten moves in the index,
        # and one past the cursor is read again, holding no secret any more (or one new_form leaves as it is).
        after: tuple[str, int] = ("", -(2 ** 63))
        while rows := database.rows(
                f"SELECT {column} AS old, rowid AS id FROM {table} WHERE source = ? AND {column} IS NOT NULL "
                f"AND ({column}, rowid) > (?, ?) AND ({held}) ORDER BY {column}, rowid LIMIT ?",
                (source, *after, *runs, batch)):
            if changes := [(new, r["id"]) for r in rows if (new := new_form(r["old"])) != r["old"]]:
                with database.transaction() as conn:
                    conn.executemany(f"{update} {table} SET {column} = ? WHERE rowid = ?", changes)
            after = (rows[-1]["old"], rows[-1]["id"])
    # What its items' texts and its incidents' titles quoted of the key (a link to "https://<key>.hooks.example/", the
    # feed's own URL), kept until normalise.post_text took it out. No index holds them, so the rows holding a secret
    # are found in one read of all the source's rows (their rowids only), then read and written ``batch`` at a time:
    # paged as the links are, each batch read all the source's rows again, and one whose every text quoted its key
    # read them a thousand times over. 100,000 posts of the source: 0.14 s more, 1 s where every text held the key.
    # A post's text is also read where it may end with the start of a key, cut (`_starts_held`): one holding a
    # key whole holds its start too. The store cuts no incident's title.
    starts = _starts_held(secrets)
    for table, column, cleaned, by in (("posts", "text", cut_text, starts),
                                       ("official_incidents", "title", text, found_by)):
        held = _held(column, by) if by is not None else "1"
        ids = [r["id"] for r in database.rows(
            f"SELECT rowid AS id FROM {table} WHERE source = ? AND ({held})",
            (source, *(run.lower() if any_case else run for run, any_case in by or ())))]
        for start in range(0, len(ids), batch):
            rows = database.rows(f"SELECT {column} AS old, rowid AS id FROM {table} WHERE rowid {IN_LIST}",
                                 (json_list(ids[start:start + batch]),))
            if changes := [(new, r["id"]) for r in rows if (new := cleaned(r["old"])) != r["old"]]:
                with database.transaction() as conn:
                    conn.executemany(f"UPDATE {table} SET {column} = ? WHERE rowid = ?", changes)


def _held(column: str, found_by: Sequence[tuple[str, bool]]) -> str:
    """Whether ``column`` holds one of the runs ``found_by`` (an AnyCase one's in any case), as SQL, a parameter for
    each."""
    return " OR ".join(f"instr(lower({column}), ?)" if any_case else f"instr({column}, ?)" for _, any_case in found_by)


def _starts_held(secrets: Sequence[str]) -> list[tuple[str, bool]] | None:
    """What a text holds as written where it holds the start of one of ``secrets`` that `redact_cut_key` takes (its
    first `least_start` characters or more), for `_held`: the longest run of characters no encoder escapes in each
    such start (an AnyCase one's in any case), those holding another's left out. None where one holds no such run:
    every text is read. Looked for in the whole text, not its end (a substr() of each text took longer than
    reading the few more texts it passes by)."""
    runs = set()
    for secret in secrets:
        run = max(_UNESCAPED.findall(secret[:least_start(secret)]), key=len, default="")
        if not run:
            return None
        any_case = isinstance(secret, AnyCase)
        runs.add((run.lower() if any_case else run, any_case))
    return sorted((run, any_case) for run, any_case in runs
                  if not any(other != run and other in run and other_case == any_case for other, other_case in runs))


def _secretless_id(old: str, secrets: Sequence[str] = (), token_hosts: bool | None = None) -> str | None:
    """``old`` (an id stored before) as `link_id` gives it now, without ``secrets`` (and, ``token_hosts``, a label of
    its host that reads as a key)."""
    # One made of a link already (link_id: without a ?passkey= and the like, a hash of the whole link after "#")
    # keeps its hash, of the link as the feed gives it, key and all: link_id now gives it so. Taken for a new
    # link, it took a second hash, of the id, that no poll gives: each entry was found again by its link only.
    shown, mark, digest = old.rpartition("#")
    if mark and _LINK_HASH.fullmatch(digest) and REDACTED in shown and shown.startswith(("http://", "https://")):
        return f"{stored_link(shown, secrets, token_hosts=token_hosts) or REDACTED}#{digest}"
    return link_id(old, secrets, token_hosts=token_hosts)


# The sources whose url is in the environment (url_env), stored as "$NAME" (SourceConfig.stored_url). The "+" keeps
# SQLite off the index on the source, by which each batch read all the sources' rows and sorted them by rowid (9.8 s,
# not 3.9 s, for 150,000 of them on two shared cores).
_FROM_ENV = "+source IN (SELECT name FROM sources WHERE url LIKE '$%')"


def scrub_token_hosts(conn: sqlite3.Connection) -> None:
    """Migration 0030's part: the links and link-made ids of the sources whose url is in the environment, without a
    label of their host that reads as a key (``https://<token>.feeds.example/items/1``, ``feed-<token>.example``).
    `secret_parts` left the host out, and its label was kept in each link and id; the key is in the environment
    only, so a label that reads as one (`miner.urls.token_like`) is taken for it, as `stored_link` and `link_id`
    take it now for such a source, so that a poll finds each row under the id it gives the item."""
    def link(old: str) -> str | None:
        return stored_link(old, token_hosts=True) if holds_token_host(old) else old

    def ident(old: str) -> str | None:
        return _secretless_id(old, token_hosts=True) if holds_token_host(old) else old

    for table in ("posts", "official_incidents"):
        rewrite_column(conn, table, "url", f"{_FROM_ENV} AND url IS NOT NULL", "UPDATE", link, "1")
        # OR IGNORE, as in scrub_stored_links: a row the source stored under the new id already keeps it.
        rewrite_column(conn, table, "external_id", f"{_FROM_ENV} AND external_id LIKE 'http%://%'",
                       "UPDATE OR IGNORE", ident, "1")


# What a link or id needs to hold for `without_emails` to change it.
_MAY_HOLD_EMAIL = "(instr({0}, '@') OR instr({0}, '%40'))"


def _emailless_id(old: str) -> str:
    """``old`` (an id stored before) as `link_id` gives it now, without an e-mail address."""
    if (shown := without_emails(old)) == old:
        return old
    # One link_id changed already (a key taken out) keeps its hash, of the item's id as the source gives it.
    kept, mark, digest = old.rpartition("#")
    if mark and _LINK_HASH.fullmatch(digest) and REDACTED in kept:
        return f"{without_emails(kept)}#{digest}"
    return f"{shown}#{hashlib.sha256(old.encode()).hexdigest()[:16]}"


def scrub_link_emails(conn: sqlite3.Connection) -> None:
    """Migration 0036's part: the links and ids that held a poster's e-mail address (a mailing-list archive's
    ``?from=``, a Message-ID or ``mailto:`` guid), rewritten as stored_link and link_id give them now, so that a poll
    finds each row under the id it gives the item."""
    for table in ("posts", "official_incidents"):
        rewrite_column(conn, table, "url", "url IS NOT NULL", "UPDATE", without_emails, _MAY_HOLD_EMAIL.format("url"))
        # OR IGNORE, as in scrub_stored_links: a row the source stored under the new id already keeps it.
        rewrite_column(conn, table, "external_id", "1", "UPDATE OR IGNORE", _emailless_id,
                       _MAY_HOLD_EMAIL.format("external_id"))

"""Migration 0031_email_literals: the e-mail addresses with an address literal in brackets that post texts stored
before kept (as written, with the number rule's placeholder in the brackets, or cut short inside them) become
"[email]", as a text is stored now, and nothing else in brackets after an at sign is touched. Each store is a real
SQLite file made at the schema before 0031, then opened (upgraded) as `miner run` opens it."""

from __future__ import annotations

import gzip
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from test_text_links import rewritten_by, upgraded_with_texts

from miner.collectors.matching import ServiceMatcher
from miner.collectors.normalise import post_text
from miner.config import ServiceConfig
from miner.store.email_scrub import scrub_email_literals, stored_email_text
from miner.timeutil import iso

NOW = datetime.now(UTC).replace(microsecond=0)
MIGRATION = "0031_email_literals"
_POSTS = Path(__file__).resolve().parents[1] / "miner" / "data" / "sentitel-2019.jsonl.gz"
CUT_AT = "x " * 1990  # what came before a cut at max_text_chars (4000)

# As texts were stored before the contact rule read an address literal, and as the upgrade leaves them.
CHANGED = {
    "mail bob@[192.0.2.1] or bob@[::1]": "mail [email] or [email]",
    "RFC form: ann@[IPv6:2001:db8::1], and ann@[ipv6:2001:DB8::2].": "RFC form: [email], and [email].",
    # Nine digits or more in the brackets were a long number: the name before the placeholder was kept.
    "write ops@[[number]] (the relay), or ops@[::ffff:[number]]": "write [email] (the relay), or [email]",
    "連絡は jane＠[192.0.2.7] か jane＠[[number]] まで": "連絡は [email] か [email] まで",
    # A login's user name glued before one goes with it, as with an address of a domain name.
    "ssh admin:hunter2@[192.0.2.1] fails": "ssh [email] fails",
    # Cut at max_text_chars inside one (the contact rule came before the cut, and took nothing out).
    f"{CUT_AT}ops@[10.100.2…": f"{CUT_AT}[email]…",
    f"{CUT_AT}ops@[[numb…": f"{CUT_AT}[email]…",
    f"{CUT_AT}ops@[IPv6:2001:db8…": f"{CUT_AT}[email]…",
}
# Kept to the character: no IP address in the brackets, a handle's placeholder, brackets after an "@" with a space
# before it, a literal closed before a cut, a cut elsewhere.
KEPT = ["see x@[1] and y@[cafe], v@[1.2.3]", "@[user] said @[user]: down (@[user]) since 10:30 [number]",
        "ping @[email] [number] and u/[user]", f"{CUT_AT}x@[1]…", f"{CUT_AT}mail [email] at 10:…",
        "[email] wrote: x@[] and @[::1] alone"]


def test_a_store_from_before_keeps_no_address_literal(tmp_path: Path) -> None:
    # Over two batches and one more row: each text rewritten as CHANGED says, the rest left as they were.
    data = rewritten_by(tmp_path / "old.sqlite", MIGRATION, CHANGED, KEPT)
    for leak in (b"bob@", b"ann@", b"ops@", b"jane\xef\xbc\xa0", b"admin:", b"hunter2", b"192.0.2.1", b"2001:db8"):
        assert leak not in data


def test_the_rewrite_is_the_same_again(tmp_path: Path) -> None:
    # Idempotent: a text it gave is given again as it is, and the migration run again (a second store's worth of
    # the same rows) changes no row.
    for text in [*CHANGED.values(), *KEPT]:
        assert stored_email_text(text) == text
    path = tmp_path / "old.sqlite"
    store = upgraded_with_texts(path, MIGRATION, [*CHANGED, *KEPT], iso(NOW))
    assert [r["text"] for r in store.database.rows("SELECT text FROM posts ORDER BY id")] == [
        *CHANGED.values(), *KEPT]
    store.close()
    with sqlite3.connect(path, isolation_level=None) as conn:
        before = conn.total_changes
        conn.execute("BEGIN")
        scrub_email_literals(conn)
        conn.execute("COMMIT")
        assert conn.total_changes == before
    conn.close()


def test_real_posts_stored_before_are_as_stored_now(tmp_path: Path) -> None:
    # Real posts as a poll stored them before, half of them replies (a handle's placeholder, "@[user]", which holds
    # no address), two in three with an address literal after them: the upgrade leaves each as a poll stores it now,
    # and the others as they were.
    matcher = ServiceMatcher([ServiceConfig("Signal")])
    with gzip.open(_POSTS, "rt", encoding="utf-8") as fh:
        written = [("@jane_doe " if n % 2 else "") + json.loads(line)["text"]
                   for n, line in zip(range(1500), fh, strict=False)]

    def stored(text: str) -> str:
        return matcher.redact_people(post_text("", text, 10_000, plain=True))

    literal = " mail bob@[192.0.2.1] or bob@[::1]"
    before = [stored(text) + (literal if n % 3 else "") for n, text in enumerate(written)]
    now = [stored(text + (literal if n % 3 else "")) for n, text in enumerate(written)]
    assert sum(text.startswith("@[user] ") for text in before) == 750
    assert sum(a != b for a, b in zip(before, now, strict=True)) == 1000
    store = upgraded_with_texts(tmp_path / "old.sqlite", MIGRATION, before, iso(NOW))
    assert [r["text"] for r in store.database.rows("SELECT text FROM posts ORDER BY id")] == now
    store.close()

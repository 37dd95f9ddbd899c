"""Migration 0031's Python part: the e-mail addresses with an address literal in brackets (``bob@[192.0.2.1]``,
``bob@[IPv6:2001:db8::1]``, ``bob@[::1]``) in the post texts stored before the contact rule read them.

Such an address was stored as written, or, where its brackets held 9 digits or more, with the number rule's
placeholder in them and the name before it kept ("ops@[[number]]" of "ops@[10.100.200.123]"); and a text cut at
max_text_chars inside one kept its start ("ops@[10.100.2…"), the cut coming after the contact rule, which had taken
nothing out. Each becomes "[email]", with the rule new texts are stored by (`miner.email_addresses.redact_emails`,
which also takes a login's user name glued before one: "admin:pw@[192.0.2.1]" is "[email]").

Post texts are kept in posts.text only: an incident keeps its sample posts' ids, and alerts, the digest and the board
read the texts from posts when they show them; an official incident's title is the provider's, which no contact rule
reads (nor did one ever).
"""

from __future__ import annotations

import re
import sqlite3

from miner.email_addresses import AT, redact_emails
from miner.store.link_scrub import rewrite_column
from miner.text_links import EMAIL

# What a text needs to hold to hold such an address: an at sign with a "[" after it and a character before it that
# is not a space (the texts are folded, so no other blank is left), as an address's name is: "@[user]", a handle's
# placeholder, stands after a space or at the text's start, and most texts holding one are not read into Python.
_MAY_HOLD_LITERAL = f"(instr(text, '[') AND text GLOB '*[^ ][{AT}][[]*')"
# The number rule's placeholder in the brackets, alone ("ops@[[number]]") or after an IPv6 address's start
# ("ops@[::ffff:[number]]", its IPv4 part).
_NUMBERED = re.compile(rf"(?<![\w.+-])[\w.+-]+[{AT}]\[(?i:ipv6:)?[0-9A-Fa-f:.]{{0,40}}\[number\]\]")
# A text's cut ("…", which cut() puts at the end) inside the brackets: what is left of the literal, or of its
# placeholder ("ops@[[numb…"), bracket unclosed.
_CUT = re.compile(rf"(?<![\w.+-])[\w.+-]+[{AT}]\[[0-9A-Za-z:.]{{0,45}}(?:\[[a-z]{{0,6}}\]?)?…\Z")


def stored_email_text(text: str) -> str:
    """``text`` (a post's, stored before) with each e-mail address as new texts are stored with it, those whose
    address literal was stored with a number's placeholder in it or cut short too. The same again for a text it
    gave: a placeholder holds no at sign."""
    text = _NUMBERED.sub(EMAIL, text)
    if text.endswith("…"):
        text = _CUT.sub(f"{EMAIL}…", text)
    return redact_emails(text)


def scrub_email_literals(conn: sqlite3.Connection) -> None:
    # As the link migrations (link_scrub.rewrite_column): by rowid, 1,000 of the rows that may hold one at a time,
    # each rewritten only where it changed, in the migration's one transaction. A text cut inside one may grow past
    # max_text_chars by a few characters ("a@[1…" is "[email]…"), as theirs do: nothing relies on its length.
    rewrite_column(conn, "posts", "text", "1", "UPDATE", stored_email_text, _MAY_HOLD_LITERAL)

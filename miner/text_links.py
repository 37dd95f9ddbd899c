"""Links written inside a post's text, as the store keeps them: without what may be a credential.

A post that says "dashboard down https://app.example.com/dash?token=..." or pastes a password-reset, magic-login or
shared-document link, or a ``postgres://user:password@host`` line, carried its poster's secret into the posts table,
and from there into alerts' sample posts (e-mail, webhooks), the status board and `miner query`. Each link in the
text is kept with the rules of an item's own link (`miner.urls.public_url`): its ``user:password@`` goes, the values
of query parameters named like keys become ``[redacted]``, and so do the path segments and values that read as a
token (`miner.urls.token_like`, as `secret_parts` reads a `url_env` URL). The scheme, host and the rest of the path
stay: matching and the classifier (which sees a link as "http host") read no more of a link than that.

A link is often pasted without its scheme: "reset link app.example.com/reset?token=...", "docs.google.com/document/
d/<id>/edit". A host name ending in a known top-level domain (or an IPv4 address, an IPv6 address in brackets, or
localhost) with a path, query or fragment after it is read as one too, kept without a scheme, as written, and without
the login written before it ("admin:hunter2@192.168.1.1/setup"). A host with nothing after it holds no credential but
a login written before it ("psql postgres:s3cret@localhost"): that login goes, the host stays as written, and one
without a login is not read. The classifier reads such a link as written (it shortens only a scheme's or "www."'s).
A login's user name left before an "[email]" (the contact rule's, which took its password and host for an e-mail
address) goes too (`without_email_logins`).
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote, unquote

from miner.urls import PIECES, REDACTED, secret_param, token_like

# A link as written in text: a scheme ("https://", "ftp://", a database's "postgres://", "redis://") or "www.", up
# to a space or what no link holds raw: angle brackets, double quotes (curly ones too: a tweet's closing "”" glued
# to the next word took that word into the link, and "https://pic.twitter.com/0DVs6mGDGd”Putin" read as a token),
# backticks, and CJK and full-width punctuation, which Chinese and Japanese text glues to a link
# ("见https://x/?token=a。谢谢"). Not after a Latin letter, a digit or "_+.-", so "xhttps://" or "abc.www.x" is not
# one (after a CJK character it is: that text writes no space before a link), and no scheme is longer than 20
# characters: each position of a text is tried in bounded time.
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]{0,19}", re.IGNORECASE)
# A link without a scheme ("app.example.com/reset?token=..."): dot-separated labels ending in a top-level domain,
# then an optional port and a "/", "?" or "#". The domain is a common generic one or two letters but a source file's
# extension, as service matching reads a bare link (collectors/matching.py), so that "file.txt", "node.js/", "e.g.",
# "U.S.", "a.m.", "v2.3" or a sentence glued to the next ("down.Now?") is no host. It starts where a run of host
# characters starts, as a scheme does, but also after a dot that ends none ("...pic.twitter.com/x"), and never after
# an "@": an e-mail address's domain is the contacts' (normalise.redact_contacts). Each run is read from its start
# only, its labels each once: a text of 10,000 characters made to be slow reads in milliseconds. The labels are taken
# all at once (possessive), a label's dot only before another label ("db.example.com." ends a sentence): a host short
# of its last labels would end before a dot and a label, where none ends, so none is given back to be tried as the
# top-level domain. After a login, where the names of up to 42 logins end at one "@" ("(a:(a:(a:...@a.a.a...."), each
# read the labels after it back one at a time: a text of 10,000 characters made for it took 58 ms, this 8.5 ms.
_TLD = (r"(?:com|net|org|info|biz|edu|gov|mil|int|app|dev|page|link|live|site|online|store|shop|tech|xyz|cloud"
        r"|(?!(?:js|ts|py|rb|md|cs)\b)[a-z]{2})")
# An IPv6 address in brackets is a host too, as in a URL ("admin:pw@[2001:db8::1]:8080/setup", "[::1]:3000/reset?
# token=..."): the login before one was stored as written (the contact rule reads no "[" as a domain), and so was the
# key in a link to one. Hex digits and at least two ":" (an IPv4 address's dots at its end), a zone ("%25eth0") after.
_IPV6 = r"\[(?=[0-9a-f.]*:[0-9a-f.]*:)[0-9a-f:.]{2,45}(?:%[\w.~-]{1,32})?\]"
_HOST = (r"(?:(?:[a-z0-9][a-z0-9-]*\.(?=[a-z0-9]))++" + _TLD + r"|(?:\d{1,3}\.){3}\d{1,3}|localhost|" + _IPV6
         + r")(?::\d{1,5})?")
_BARE_HOST = _HOST + r"(?=[/?#])"
_LINK_CHARS = "[^\\s<>\"`\u201c\u201d\u3000-\u303f\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65]+"
# Such a link with a login before its host ("admin:hunter2@192.168.1.1/setup", "postgres:pa$$w0rd!@db.example.com:
# 5432/prod"), read from where its user name starts, so that its "user:password@" goes as a scheme link's does: the
# host, after an "@", was read alone, and the login stayed (and redact_contacts, taking "hunter2@192.168.1.1" for an
# e-mail address, left the user name, a password's characters before a "!" or "$", or all of one before
# "localhost"). Only with a ":" after the name: a name alone before an "@" is an e-mail address's ("jane@example.com/
# ?x", the contacts'). The name starts with a letter or "_" ("10:30@example.com/x" is a time) and is no address's
# scheme ("mailto:jane@example.com?subject=x"). The password holds any character but a space or a "/", "?", "#"
# (what ends a host), up to three "@" too (the last one before the host ends it, as a URL parser reads it). It is
# read "@" to "@", each run once (possessive), and a host looked for after four at most: backtracking through any 127
# characters for an "@" took a text of 10,000 made for it ("(a:@a." over and over) 14 ms, this 4 ms.
_BARE_LOGIN = r"(?<![\w@.:%+-])(?!(?:mailto|sips?|xmpp):)(?:[^\W\d][\w.~%+-]{0,63})?:(?:[^\s/?#<>\"`@]{0,127}+@){1,4}"
# And one before such a host with nothing after it ("psql postgres:s3cret@localhost", "login with user:pa$$!@db.
# example.com now", "ftp root:toor@10.0.0.1 fails"): the host is kept as written, the login goes (_LOGIN_ALONE). It
# was read only before a path, and redact_contacts left the password before a host without a dot, or ending in a "!"
# or "$", and the user name always ("root:[email]"). The host ends where no host character follows ("localhost)",
# "10.0.0.1.", "db.example.com:5432,"), so "file.txt", "node.js" or "db.example.community" is none, and "ratio:x@
# file.txt" the contacts'. The host is read once after each "@", a path or not after it: read again for the other
# took a text of 10,000 made for it ("(a:b@1.1.1.1x" over and over) 8.5 ms, this 4.3 ms.
_LINK = re.compile(
    r"(?<![a-z0-9_+.-])(?:[a-z][a-z0-9+.-]{0,19}://|www\.)" + _LINK_CHARS
    + "|" + _BARE_LOGIN + _HOST + r"(?:(?=[/?#])" + _LINK_CHARS + r"|(?P<alone>)(?![a-z0-9_-]|\.[a-z0-9-]))"
    + r"|(?<![a-z0-9_+@-])(?<![a-z0-9_-]\.)" + _BARE_HOST + _LINK_CHARS,
    re.IGNORECASE,
)
# A name that labels an e-mail address ("email:bob@example.com", "to:", "cc:") before a host with nothing after it
# is no user name: the address is the contacts' ("email:[email]"), as it was. Before a path the host is a link's,
# its keys read, whatever the name.
_LOGIN_ALONE = "alone"
_MAIL_LABELS = r"(?:e-?mail|mail|contact|to|from|cc|bcc|reply-to)"
_MAIL_LABEL = re.compile(_MAIL_LABELS + ":", re.IGNORECASE)
# A login's user name (and what of its password the contact rule left) before the "[email]" that rule made of the
# password and host (normalise.redact_contacts): "admin:hunter2@nas.lan", before a host _LINK does not read, was
# stored as "admin:[email]", and so, before 0026, was a login before any host without a scheme, and before 0022 one
# in a link ("ftp://root:[email]/"). A login's user name is the poster's, or someone's, and says nothing about an
# outage. It is read as _BARE_LOGIN reads one (a name starting with a letter or "_", not glued to a word, an address
# or a time: "10:[email]" stays), with a password's characters but a space, "/", "?", "#" or "[" ("Note: [email]"
# stays); a label of the address ("email:[email]", "cc:", "mailto:") is no user name.
_LOGIN_BEFORE_EMAIL = re.compile(
    rf"(?<![\w@.:%+-])(?!(?:mailto|sips?|xmpp|{_MAIL_LABELS}):)[^\W\d][\w.~%+-]{{0,63}}:[^\s/?#<>\"`@\[]{{0,127}}+"
    r"\[email\]", re.IGNORECASE)
EMAIL = "[email]"
# A query value that is a link without a scheme ("?next=app.example.com/reset?token=..."), read as one.
_BARE_VALUE = re.compile(_BARE_HOST, re.IGNORECASE)
# What a text holds where it holds a link, looked for first: most texts hold none, and the whole of _LINK tried at
# each position of a text took 6.9 µs a text of the shared data, this 1.3 µs. A login's ":" and first "@", with no
# more than its password's first run between them, is one too: a host with nothing after it has no other sign. It is
# read at the ":" where "//" is read, so a text's other ":"s cost next to nothing (1.9 µs a text, as before). An IPv6
# host's "]" before a path is one ("[::1]:3000/reset?token=...").
_MAY_HOLD_LINK = re.compile(
    r":(?://|[^\s/?#<>\"`@]{0,127}+@)|www\.|\.(?:[a-z]{2,}|\d{1,3})(?::\d{1,5})?[/?#]|\](?::\d{1,5})?[/?#]"
    r"|localhost", re.IGNORECASE)
# What a sentence puts after a link, which is not part of it: "see https://x/?token=a." keeps its full stop. A
# closing bracket is the link's own where it closes one the link opened (Wikipedia's "/wiki/Foo_(bar)", an IPv6
# host's "[::1]", a "[redacted]" already there).
_TRAILING = frozenset(".,;:!?'*…")
# And the other scripts' sentence punctuation (Arabic's "،" "؛" "؟" "۔", the Devanagari danda "।", Armenian, Ethiopic,
# Myanmar, Khmer, Tibetan stops...) and closing quotes ("»", "”"), which those texts glue to a link as a Latin one
# does its full stop: Unicode's other punctuation and final quotes, past ASCII (whose "#", "%", "&", "@", "/" are a
# link's own).
_MARKS = frozenset({"Po", "Pf"})
_CLOSING = {")": "(", "]": "[", "}": "{"}
# A part of a link holding another link ("?next=https://u:p@host/"): read as a link too, but only so deep, for a text
# of links nested a thousand times must not recurse a thousand times.
_NESTED = 2
# A segment that reads as a token as a whole but holds a word of this many letters is a title's slug
# ("windows-11-23h2-update-kb5031455"), not a key: only its token-like pieces go. A UUID's pieces are hex.
_WORD_LETTERS = 5
# The pieces PIECES splits a word into, split at percent escapes too: their hex digits ("%3A%2F") read as a token's
# letters and digits, and took an escaped link's words ("http%3A%2F%2Fnews.example") for one.
_PIECE = re.compile(r"(?:[^-_.~+:,;=%]|%(?![0-9a-f]{2}))+", re.IGNORECASE)
# Where a query splits into its pairs, the separator kept: "&", and ";" (HTML 4's other one, some servers' only one)
# where a name and "=" follow it. A value cut at every ";" would leave the rest of "sig=abc;def" kept as a word.
# The look-ahead stops at the next ";": each is read once.
_PAIRS = re.compile(r"(&|;(?=[^;&=]*=))")
# Times a value is percent-decoded looking for a link in it: a redirect's parameter holding one encodes it once, a
# redirect of a redirect twice. Each decoding reads the value again, so a text made of a value encoded a thousand
# times must not be decoded a thousand times.
_ESCAPES = 3


def public_text_links(text: str) -> str:
    """``text`` with every link in it as `public_link` keeps it; everything else as it is."""
    if not (found := _MAY_HOLD_LINK.search(text)):
        return text
    # A link holds no space, so none starts before the last space before the first sign of one: the words before it
    # are not read again (a space is in no lookbehind of _LINK).
    start = text.rfind(" ", 0, found.start()) + 1
    return text[:start] + _LINK.sub(_public_match, text[start:])


def without_email_logins(text: str) -> str:
    """``text`` with a login's user name, and what of its password is left, before an "[email]" taken out with it
    (`_LOGIN_BEFORE_EMAIL`): "admin:[email]" is "[email]"."""
    return _LOGIN_BEFORE_EMAIL.sub(EMAIL, text) if EMAIL in text else text


def _public_match(match: re.Match[str], depth: int = 0) -> str:
    found = match.group()
    if match.group(_LOGIN_ALONE) is not None and _MAIL_LABEL.match(found):
        return found
    end = _link_end(found)
    return public_link(found[:end], depth) + found[end:]


def _link_end(found: str) -> int:
    """Where the link ``found`` ends: before trailing punctuation and closing brackets it opened none of."""
    opened = {closer: found.count(opener) - found.count(closer) for closer, opener in _CLOSING.items()}
    end = len(found)
    while end:
        last = found[end - 1]
        if last in _CLOSING and opened[last] < 0:
            opened[last] += 1
        elif last not in _TRAILING and not (last > "\x7f" and unicodedata.category(last) in _MARKS):
            break
        end -= 1
    return end


def public_link(link: str, depth: int = 0) -> str:
    """``link`` (one written in text, whole: scheme, "www." or host to its end) without what may be a credential: its
    user name and password, the values of query (or fragment) parameters named like keys, path segments and values
    that read as a token. It is never refused: a link no URL parser reads (a broken IPv6 bracket) is split as it
    reads."""
    scheme, sep, rest = link.partition("://")
    if not _SCHEME.fullmatch(scheme):  # "www.host/?next=https://u:p@host": its "://" is the next link's
        scheme, sep, rest = "", "", link
    authority_end = next((i for i, ch in enumerate(rest) if ch in "/?#"), len(rest))
    host, tail = rest[:authority_end].rpartition("@")[2], rest[authority_end:]
    tail, hash_mark, fragment = tail.partition("#")
    path, question_mark, query = tail.partition("?")
    return (scheme + sep + host + _public_path(path, depth) + question_mark + _public_pairs(query, depth) + hash_mark
            + _public_fragment(fragment, depth))


def _public_path(path: str, depth: int) -> str:
    """A path, each segment kept or redacted. A segment may be a link percent-encoded, as a redirect's path carries
    one (``/redirect/https%3A%2F%2Fuser%3Apass%40host%2F``): read as `_public_escaped` reads a value, or its
    ``user:password@`` and keys were kept, no "://" written out."""
    return "/".join(_public_escaped(segment, depth) if "%" in segment and depth < _NESTED else _public_word(segment)
                    for segment in path.split("/"))


def _public_fragment(fragment: str, depth: int) -> str:
    """A fragment as the rest of a link: a single-page app's route has a path and a query of its own
    ("#/reset?token=..."), where the whole was read as one pair named "/reset?token"; an OAuth answer's is a query
    ("#access_token=...&token_type=bearer")."""
    path, question_mark, query = fragment.partition("?")
    if not question_mark and "=" in path:
        return _public_pairs(path, depth)
    return _public_path(path, depth) + question_mark + _public_pairs(query, depth)


def _public_pairs(query: str, depth: int) -> str:
    """A query with each pair's value kept or redacted, its separators as written."""
    if not query:
        return query
    pairs = []
    parts = _PAIRS.split(query)
    for pair in parts[::2]:
        name, sep, value = pair.partition("=")
        if sep and value and secret_param(pair):
            pairs.append(f"{name}={REDACTED}")
        elif ("://" in value or _BARE_VALUE.match(value)) and depth < _NESTED:
            pairs.append(name + sep + _LINK.sub(lambda m: _public_match(m, depth + 1), value))
        elif sep and "%" in value and depth < _NESTED:
            pairs.append(name + sep + _public_escaped(value, depth))
        else:
            pairs.append(name + sep + _public_word(value) if sep else _public_word(pair))
    return "".join(pair + separator for pair, separator in zip(pairs, [*parts[1::2], ""], strict=True))


def _public_escaped(value: str, depth: int) -> str:
    """A value that may be a link percent-encoded (``?u=https%3A%2F%2Fuser%3Apass%40host%2F``, as a redirect's
    parameter carries one, or one without a scheme: ``?next=app.example.com%2Freset%3Ftoken%3D...``): its
    ``user:password@`` and keys were kept, as no "://" was written out. Read decoded as a link is; where that takes
    something out, encoded again (its "[redacted]" as written) and kept as `_public_word` keeps it, else kept as
    `_public_word` keeps it (which reads the escapes' hex as no token's letters).

    A link encoded twice or more (a redirect's redirect) that way is redacted whole: `_public_word` reads the escapes
    of escapes ("%253A") as a token's letters and digits, and would redact it when stored again. So is a value still
    encoded after _ESCAPES decodings: whether it holds a login is not read."""
    plain = value
    for layers in range(1, _ESCAPES + 1):
        if (decoded := unquote(plain)) == plain:
            return _public_word(value)
        plain = decoded
        if "://" in plain or _BARE_VALUE.match(plain):
            public = _LINK.sub(lambda m: _public_match(m, depth + 1), plain)
            if public == plain:
                return _public_word(value)
            return _public_word(quote(public, safe="[]")) if layers == 1 else REDACTED
    return REDACTED if unquote(plain) != plain else _public_word(value)


def _public_word(word: str) -> str:
    """A path segment or a value: ``[redacted]`` where it reads as a token, or each piece of it that does."""
    if len(word) < 12:  # token_like's least
        return word
    plain = unquote(word)
    if token_like(plain) and not any(len(p) >= _WORD_LETTERS and p.isalpha() for p in PIECES.split(plain)):
        return REDACTED
    return _PIECE.sub(lambda m: REDACTED if token_like(m.group()) else m.group(), word)

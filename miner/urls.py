"""URL and text checks shared by the config and the collectors: why a URL can never be fetched, and what in one may
be a credential (which the store and every message leave out).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from itertools import pairwise
from urllib.parse import unquote, urlsplit, urlunsplit

from miner.redaction import REDACTED as REDACTED
from miner.redaction import AnyCase, redact


def control_char(text: str) -> str | None:
    """The first control or format character in ``text`` (CR, LF, NUL, a bidi override...) as ``U+XXXX``, or None.

    Such a character in a name or header value can never work: CR/LF splits an email header (or forges one) and
    the line it is printed on, the others are invisible or reorder text.
    """
    found = next((ch for ch in text if unicodedata.category(ch) in ("Cc", "Cf")), None)
    return None if found is None else f"U+{ord(found):04X}"


# What text shown in a terminal or a log must not carry raw: anyone's text (a post, a title, a server's error
# answer) reaches both. C0 and C1 controls hold ESC and the 8-bit CSI, from which a terminal takes colours, cursor
# moves, a cleared screen, OSC 8 links and OSC 52 clipboard writes, and CR/LF forge a line; bidi controls and line
# separators reorder or break the text after them.
_UNSHOWN = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """``text`` with control, bidi and line-separator characters written as ``\\x1b`` or ``\\u202e``."""
    return _UNSHOWN.sub(_escaped, text)


# What json.dumps(ensure_ascii=False) leaves raw of those: it escapes C0 itself (and a raw line break in indented
# JSON is layout, not text).
_UNSHOWN_IN_JSON = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def json_escape_controls(dumped: str) -> str:
    """JSON text (json.dumps with ensure_ascii=False, which leaves C1 controls, DEL, bidi controls and U+2028 raw)
    with those written as ``\\u009b`` escapes too: the same JSON, safe to print. They occur in strings only."""
    return _UNSHOWN_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", dumped)


def url_problem(url: str, *, secret: bool = False) -> str | None:
    """Why ``url`` can never be fetched (not http(s), a stray space or line break, no host, a bad port or port 0), or
    None. ``secret`` (a URL from the environment): the host is named as `shown_host` shows it.

    Such a URL passed `config check` and then failed every poll, as a "bad URL" under the source's name.
    """
    # The space first: " https://..." was told it "must start with http:// or https://", which it seems to.
    if url != url.strip() or control_char(url):
        return "must not contain control characters or start or end with a space (a stray line break?)"
    if not re.match(r"https?://", url):
        return "must start with http:// or https://"
    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a port out of range or not a number
    except ValueError:
        return "is not a valid URL (check the host and the port)"
    if not parts.hostname or any(ch.isspace() for ch in parts.hostname):
        return "has no valid host"
    if port == 0:  # in range, but a connection to it is refused
        return "has port 0, which nothing can be reached at"
    if reason := idna_problem(parts.hostname):
        if secret:  # IDNA's words quote the label they refuse
            return (f"has host {shown_host(parts.hostname)}, which is not a valid internationalised domain name "
                    f"({without_url(reason, url)})")
        return f"has host {parts.hostname}, which is not a valid internationalised domain name ({reason})"
    return None


def idna_problem(host: str) -> str | None:
    """Why ``host`` is not a valid internationalised domain name (IDNA's words), or None: a label in ASCII form
    (``xn--``) that does not decode, or a Unicode name IDNA 2008 cannot encode. httpx raised idna's IDNAError for the
    one at every request (an internal error of the collector, a webhook retried for days) and refused the other."""
    if host.isascii() and "xn--" not in host.lower():
        return None  # no IDNA in it: the common case costs no import of idna's tables
    import idna

    try:
        if host.isascii():
            # Label by label: a label that is no IDNA one (my_host) is not IDNA's to refuse; DNS may know it.
            for label in host.lower().split("."):
                if label.startswith("xn--"):
                    idna.decode(label)
        else:
            idna.encode(host.lower())
    except UnicodeError as exc:  # idna.IDNAError is one
        return f"IDNA: {exc}"
    return None


# Query parameters named like these (the last word of the name: api_key, apiKey, access_token, X-Amz-Signature) hold a
# credential. "keywords" or "q" do not. The compound ones are named one by one (a private tracker's ?passkey=,
# ?rsskey=, ?apitoken=): any word ending in key or token took ?monkey=, ?sortkey=, ?hotkey=, ?issuekey= too, and
# an id made of a link ran two items into one.
_SECRET_WORDS = frozenset({"key", "apikey", "token", "accesstoken", "auth", "secret", "password", "passwd", "pwd",
                           "sig", "signature", "session", "sessionid", "sid", "credential", "credentials", "jwt",
                           "hmac", "pass", "passcode",
                           "passkey", "rsskey", "feedkey", "authkey", "accesskey", "secretkey", "privatekey",
                           "privkey", "sessionkey", "signingkey", "signkey", "userkey", "appkey", "clientkey",
                           "licensekey", "licencekey", "subscriptionkey", "devkey", "developerkey",
                           "apitoken", "authtoken", "sessiontoken", "refreshtoken", "bearertoken", "idtoken",
                           "usertoken", "apptoken", "rsstoken", "feedtoken", "privatetoken", "securitytoken",
                           "csrftoken", "xsrftoken", "oauthtoken",
                           "apisecret", "appsecret", "clientsecret", "consumersecret", "sharedsecret",
                           "webhooksecret", "oauthsecret",
                           "apipassword", "userpassword", "adminpassword",
                           "apisig", "apisignature", "urlsignature"})


def secret_param(pair: str) -> bool:
    """Whether a query's ``name=value`` pair is named like a credential (`_SECRET_WORDS`)."""
    name, sep, _ = pair.partition("=")
    word = re.split(r"[_\-.]|(?<=[a-z0-9])(?=[A-Z])", unquote(name))[-1].lower()
    return bool(sep) and word in _SECRET_WORDS


def credentials_in_url(url: str) -> list[str]:
    """What in ``url`` may be a credential, for a warning: its user name (or user:password), query parameters named
    like keys."""
    parts = urlsplit(url)
    found = ["user name before @"] if "@" in parts.netloc else []
    return found + [f"query parameter {p.partition('=')[0]}" for p in parts.query.split("&") if secret_param(p)]


def shown_url(url: str, *, secret: bool = False, link: bool = False) -> str:
    """``url`` as messages, logs and derived links show it: without its query string (queries can be long, and may
    hold an API key) and user:password. ``secret`` (a URL from the environment, `url_env`): its path goes too,
    replaced by ``/[redacted]``, since a private feed's or a webhook's key is often a path segment
    (``https://host/feeds/<token>/rss``); only a URL with no path beyond ``/`` keeps it. Its host is shown as
    `shown_host` shows it: a key may be a label of it (``https://<token>.hooks.example/``). But not where ``link``
    (what links are built on, a feed's relative links or Discourse's topic links): a "[redacted]" label is no host
    (urlsplit refuses it as an IPv6 bracket); `stored_link` and `link_id` make such a label `REDACTED_LABEL`."""
    try:
        parts = urlsplit(url)
    except ValueError:  # a broken IPv6 bracket (httpx's InvalidURL): it may hold a secret all the same
        return "(an unreadable URL)"
    if not parts.scheme:
        # A relative Location header (or one of "//host") holds a query and a login as a whole URL does.
        if secret:
            return REDACTED
        return (f"//{parts.netloc.rpartition('@')[2]}" if parts.netloc else "") + parts.path
    hostport = parts.netloc.rpartition("@")[2]
    if secret and not link and not hostport.startswith("["):  # an IPv6 address is no key
        name, colon, port = hostport.partition(":")
        hostport = shown_host(name) + colon + port
    origin = f"{parts.scheme}://{hostport}"
    if secret and (parts.path.strip("/") or parts.query or parts.fragment):
        return f"{origin}/{REDACTED}"
    return origin + parts.path


def public_url(url: str) -> str:
    """``url`` without what may be a credential: its ``user:password@`` (or a token as user name) goes, and the values
    of query parameters named like keys become ``[redacted]``. A URL without either comes back as it is."""
    parts = urlsplit(url)
    pairs = parts.query.split("&")
    if "@" not in parts.netloc and not any(secret_param(p) for p in pairs):
        return url
    query = "&".join(f"{p.partition('=')[0]}={REDACTED}" if secret_param(p) else p for p in pairs)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, query, parts.fragment))


# Path segments and query values at least this long are taken out of a server's text quoting the request (see
# without_url). Shorter ones ("v1", "api") cannot hold a usable token, and taking them out would garble the text.
_QUOTED_MIN = 5


def without_url(text: str, url: str, *, secret: bool = True) -> str:
    """``text`` (a server's answer, which may quote the request: an error page, ``Cannot POST /hook?token=...``, the
    status or header line h11 found malformed) without what of ``url`` a message must not show (`url_pieces`), raw,
    percent-decoded and percent-encoded again (`miner.redaction.redact`)."""
    return redact(text, url_pieces(url, secret=secret))


def url_pieces(url: str, *, secret: bool = True) -> set[str]:
    """What of ``url`` a message must not show, as written and percent-decoded. ``secret`` (a webhook's URL, a
    `url_env` source's): the whole URL, its path and query, each path segment and query value of 5 characters or
    more, and each label of its host that `shown_host` does not show (in any letter case: `AnyCase`). Otherwise, as
    `shown_url` leaves them out: its query and each of its values, and its login."""
    parts = urlsplit(url)
    pieces = {url, parts.query, parts.username or "", parts.password or ""}
    pieces.update(pair.partition("=")[2] for pair in parts.query.split("&"))
    labels: set[str] = set()
    if secret:
        pieces |= {parts.path + ("?" + parts.query if parts.query else ""), parts.path, *parts.path.split("/")}
        written = parts.netloc.rpartition("@")[2].partition(":")[0]  # urlsplit's hostname is lower-cased
        # Each in any case: a server's answer may name the host in a case of its own ("Ab12cd34EF56gh78.hooks...."),
        # which the label as written, lower- and upper-cased left. Those three forms stay for without_cut_secret.
        labels = {AnyCase(form) for label in written.split(".") if _token_label(label)
                  for form in (label, label.lower(), label.upper())}
    pieces |= {unquote(p) for p in pieces} | {unquote(p.replace("+", " ")) for p in pieces}
    # A path segment the same as a label's form, added before, would be matched as written only: the label's goes.
    return {p for p in pieces - labels if len(p) >= _QUOTED_MIN} | {p for p in labels if len(p) >= _QUOTED_MIN}


# The shortest part of a URL from the environment taken for its key (see secret_parts): "/feeds/", "rss" and "v1" are
# the words around one, a token or a tracker's passkey is longer (16 to 64 characters).
SECRET_PART_MIN = 8
# Where a path segment or query value splits into pieces: "private-<hex>" (Google Calendar), "rss-<token>.xml".
PIECES = re.compile(r"[-_.~+:,;=]")


def token_like(word: str) -> bool:
    """Whether ``word`` reads as a key rather than a word: hex, a UUID, base64 or base62 switch between letters and
    digits again and again ("4f3c9a0b", "9b2e7c1d-4a5f"), or, of letters only, between cases ("aGVsbGxvV29y");
    a word ("sysadmin", "announcements"), a name with a number ("windows10", "opsteam2024") or a number (an item's)
    does not. Twelve characters at least: a key shorter than that is guessed, and a short part would be taken out of
    every link that holds it by chance."""
    if len(word) < 12:
        return False
    digit_letter = sum(a.isdigit() != b.isdigit() and (a + b).isalnum() for a, b in pairwise(word))
    if digit_letter >= 3:
        return True
    cases = sum(a.islower() and b.isupper() for a, b in pairwise(word))
    return len(word) >= 20 and word.isalpha() and cases >= 4


def _token_label(label: str) -> bool:
    return any(token_like(piece) for piece in (label, *PIECES.split(label)))


def shown_host(host: str) -> str:
    """``host`` (of a URL from the environment) as messages show it: each label that reads as a key, or has a piece
    between ``-`` or ``_`` that does (`token_like`: ``<token>.hooks.example``, ``feed-<token>.example``), as
    ``[redacted]``, as `shown_url` shows a path. The rest stays, to tell which server failed: a host's name is no
    key, nor is an IP address (``2001:db8:1a2b:3c4d::1`` would read as one)."""
    if is_ip(host.strip("[]")):
        return host
    return ".".join(REDACTED if _token_label(label) else label for label in host.split("."))


def secret_parts(url: str) -> tuple[str, ...]:
    """What of a URL from the environment (`url_env`) is taken for its key wherever an item's link or id holds it
    again, as written and percent-decoded, the longest first: the value of each query parameter named like a key
    (`credentials_in_url`) of SECRET_PART_MIN characters or more, each path segment or query value (or a piece of
    one between ``-``, ``_``, ``.``) that reads as a token (`token_like`), and each label of its host that
    `shown_host` does not show (and its pieces that read as one), lower-cased and matched in any letter case
    (`AnyCase`: a host is one in any case, and a link naming ``AB12CD34EF56GH78.hooks.example`` in its query holds
    the key of ``ab12cd34ef56gh78.hooks.example``); the others as written, as a server reads a token. A private
    feed's items link to pages under its key (``/feeds/<uuid>/items/1``, a tracker's ``/download/1/<passkey>``, a host
    ``<token>.feeds.example``), which no parameter name tells. Words are no key: every part of 8 characters took
    "sysadmin" out of each item link of a private Reddit feed (``/r/sysadmin/.rss?feed=<key>&user=<name>``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ()
    pairs = [pair for pair in parts.query.split("&") if pair]
    named = [pair.partition("=")[2] for pair in pairs if secret_param(pair)]
    words = [*parts.path.split("/"), *(pair.partition("=")[2] for pair in pairs)]
    found = {word for raw in named for word in (raw, unquote(raw)) if len(word) >= SECRET_PART_MIN}
    for raw in words:
        for word in (raw, unquote(raw)):
            found.update(piece for piece in (word, *PIECES.split(word)) if token_like(piece))
    host = parts.netloc.rpartition("@")[2].partition(":")[0]  # as written: urlsplit's hostname is lower-cased
    if not host.startswith("["):
        labels = _label_secrets([label for label in host.split(".") if _token_label(label)])
        found = (found - labels) | labels  # a path's word the same as a label's piece is matched in any case too
    return tuple(sorted(found, key=lambda word: (-len(word), word)))


# What a host's label holding a key becomes in a stored link: "[redacted]", as in a path, reads as a broken IPv6
# bracket (urlsplit refuses it), which lost the item's link and gave its id none. One fixed label keeps a link a link,
# and an id made of one stays the same at each poll (link_id's hash, of the link as given, tells items apart). With an
# underscore, which no registry or hosting service takes in a name: "redacted" made "feed-<key>.com" (or "<key>.
# herokuapp.com") a link to a name anyone could register, and a click on a stored link went to them.
REDACTED_LABEL = "_redacted"


def _label_secrets(labels: Sequence[str]) -> set[str]:
    """``labels`` (of a host, each holding a key) and their pieces that read as a token, each matched in any letter
    case (`AnyCase`): what a link's path, query or an id may hold of them again, in its writer's case. Taken as
    written and lower-cased only, ``?next=https://AB12CD34EF56GH78.hooks.example/`` kept the key of the host
    ``ab12cd34ef56gh78.hooks.example``."""
    # Read as written: lower-cased, a key of letters only that switches case ("aGVsbG...") reads as no token.
    return {AnyCase(piece.lower()) for label in labels for piece in (label, *PIECES.split(label))
            if token_like(piece) or piece == label}


def _without(text: str, secrets: Sequence[str], *, token_hosts: bool = False) -> str:
    """``text`` without ``secrets``, as written and percent-encoded (`miner.redaction.redact`). In a link, each label
    of its host that holds one (in any case), or that reads as a token (``token_hosts``), becomes
    `REDACTED_LABEL`, and what of those labels the rest of the link holds again ``[redacted]``."""
    scheme, sep, rest = text.partition("://")
    if not (sep and scheme.lower() in ("http", "https")):
        return redact(text, secrets)
    end = min([at for at in (rest.find(ch) for ch in "/?#") if at >= 0], default=len(rest))
    login, at, hostport = rest[:end].rpartition("@")
    hostport, gone = _without_in_host(hostport, tuple(secrets), token_hosts)
    return f"{scheme}://{redact(login, gone)}{at}{hostport}{redact(rest[end:], gone)}"


# A feed's links share a host or a few: its labels are read once, not at each link (0.02 ms a link, 7 s of 0030's
# 300,000 rows on two shared cores).
@lru_cache(maxsize=256)
def _without_in_host(hostport: str, secrets: tuple[str, ...], token_hosts: bool) -> tuple[str, tuple[str, ...]]:
    """``hostport`` as `_without` leaves it, and what the rest of the link must be without: ``secrets`` and what of
    the labels it took out the rest may hold again."""
    if hostport.startswith("["):  # an IPv6 address is no key
        return hostport, secrets
    host, colon, port = hostport.partition(":")
    held = [secret.lower() for secret in secrets]
    labels = [label for label in host.split(".")
              if any(secret in unquote(label).lower() for secret in held) or (token_hosts and _token_label(label))]
    if not labels:
        return hostport, secrets
    shown = ".".join(REDACTED_LABEL if label in labels else label for label in host.split("."))
    return shown + colon + port, (*secrets, *sorted(_label_secrets(labels)))


def holds_token_host(url: str) -> bool:
    """Whether a label of ``url``'s host reads as a key, which `stored_link` takes out for a source whose url is in
    the environment: read without the rest of stored_link's work, for the links (most) that hold none."""
    return _without(url, (), token_hosts=True) != url


# A poster's e-mail address in a link or an id (a mailing-list archive's ?from=, a Message-ID guid as git send-email
# writes one, a mailto: guid), percent-encoded too: "[email]", as in post text. Not a Mastodon "@name@host" path,
# whose link names the account anyway (docs/schema.md).
_LINK_EMAIL = re.compile(r"(?<![\w.+%@-])[\w.+-]+(?:@|%40)[\w-]+(?:\.[\w-]+)+")


def without_emails(link: str) -> str:
    """``link`` (a stored link or id) with each e-mail address in it as "[email]"."""
    return _LINK_EMAIL.sub("[email]", link) if "@" in link or "%40" in link else link


def stored_link(url: str | None, secrets: Sequence[str] = (), *, token_hosts: bool | None = None) -> str | None:
    """A link someone else wrote (a feed item's, the id made of it) as the store keeps it: without what `public_url`
    leaves out, for a private feed's items link to pages that carry its key again (``dl?id=1&passkey=...``), nor any
    of ``secrets`` (`secret_parts` of the source's URL from the environment), as written or percent-encoded, nor,
    for such a source (``token_hosts``, by default where there are ``secrets``), a label of its host that reads as
    a key (`REDACTED_LABEL`: migration 0030 can tell those without the URL, which is in the environment only), nor
    an e-mail address (`without_emails`). One that cannot be read (a broken IPv6 bracket) may hold a credential all
    the same: None."""
    if not url:
        return None
    try:
        return without_emails(public_url(_without(url, secrets, token_hosts=bool(secrets) if token_hosts is None
                                                  else token_hosts)))
    except ValueError:
        return None


def link_id(external_id: str, secrets: Sequence[str] = (), *, token_hosts: bool | None = None) -> str:
    """An item's id as the store keeps it: one made of a link (a feed item without a guid, a Mastodon uri) without
    what `stored_link` leaves out (any id without ``secrets``), and then, since two links may differ only in a
    redacted value (``dl?id=1&passkey=a``, ``...&passkey=b``), with an unkeyed hash of the whole link after ``#``: it
    tells them apart, cannot give back a key of any length worth keeping secret, and needs no key (migration 0017
    computes it for the ids stored before)."""
    hosts = bool(secrets) if token_hosts is None else token_hosts
    shown: str | None = _without(external_id, secrets, token_hosts=hosts)
    if external_id.startswith(("http://", "https://")):
        shown = stored_link(shown)
    elif shown is not None:  # a guid that is no web link: a Message-ID, a mailto: or tag: URI
        shown = without_emails(shown)
    if shown == external_id:
        return external_id
    return f"{shown or REDACTED}#{hashlib.sha256(external_id.encode()).hexdigest()[:16]}"


def web_link(url: str | None) -> str | None:
    """``url`` if a browser may follow it from our pages and answers: http or https, never ``javascript:``,
    ``data:`` or a scheme-relative ``//host`` (a status page's entry is someone else's text)."""
    if not url:
        return None
    try:
        scheme = urlsplit(url).scheme
    except ValueError:  # a broken IPv6 bracket ("https://[status/..."): it raised out of /api/v1/services and the board
        return None
    return url if scheme.lower() in ("http", "https") else None


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True

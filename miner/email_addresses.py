"""E-mail addresses in post text, as the store keeps them: "[email]".

The rule of `miner.collectors.normalise.redact_contacts` (which numbers ``[number]`` after it), here apart so that the
store's migration 0031 (`miner.store.email_scrub`) rewrites stored texts with the very rule new posts are stored by,
without the store importing a collector.
"""

from __future__ import annotations

import re

from miner.text_links import EMAIL, without_email_logins
from miner.urls import is_ip

# An address with the full-width at sign or full stop (or the small at sign) too: Japanese and Chinese posts write
# one so, to keep it from harvesters but not from readers ("jane＠example.co.jp").
# An address literal in brackets is one too: RFC 5321's "bob@[192.0.2.1]" and "bob@[IPv6:2001:db8::1]", "bob@[::1]"
# as people write it without the tag (the digits of "[10.100.200.123]" were stored as "[number]" and the name kept).
# Taken only where the brackets hold an IP address (`_email`), so that "x@[1]" or a placeholder ("@[user]") stays.
AT = "@\uff20\ufe6b"
_EMAIL = re.compile(rf"(?<![\w.+-])[\w.+-]+[{AT}](?:[\w-]+(?:[.\uff0e][\w-]+)+"
                    r"|\[(?i:ipv6:)?(?P<literal>[0-9A-Fa-f:.]{2,45})\])")


def _email(match: re.Match[str]) -> str:
    literal = match.group("literal")
    return EMAIL if literal is None or is_ip(literal) else match.group()


def redact_emails(text: str) -> str:
    """``text`` with each e-mail address as "[email]", and a login's user name glued before one with it."""
    if not any(at in text for at in AT):
        return text
    # A login's user name before an address made of its password and host goes with them: "root:[email]" kept it.
    return without_email_logins(_EMAIL.sub(_email, text))

"""What an unexpected exception in a collector (a bug) may say of its source, in its error and in the log.

A collector's own errors name a URL by `miner.urls.shown_url`; an exception it did not expect quotes whatever it
was given: the URL from ``url_env`` (a secret as a whole, its key often a path segment or a label of its host), a
credential's value from the environment, a link's ``user:password@`` or ``?token=``, an e-mail address of a page's
link. Its message became the source's ``last_error`` and its traceback the log's, with all of them.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping

from miner.collectors.base import source_secrets
from miner.config import SourceConfig
from miner.email_addresses import redact_emails
from miner.redaction import redact
from miner.text_links import public_text_links

# A credential's value shorter than this is left: "[redacted]" for every "abc" in a traceback hides the bug, and a
# key is longer (the Reddit and Bluesky refusals quote the credential sent from 4 characters too).
_CREDENTIAL_MIN = 4


def _secrets(source: SourceConfig, environ: Mapping[str, str]) -> list[str]:
    """The texts of ``source`` (resolved: its url read from url_env) that no message may quote, the longest first."""
    found = [environ.get(var, "") for var in source.env.values()]
    if source.secret_url and source.url:
        found.append(source.url)
    found = [s for s in found if len(s) >= _CREDENTIAL_MIN]
    return sorted([*found, *source_secrets(source)], key=len, reverse=True)


def public_error_text(text: str, source: SourceConfig, environ: Mapping[str, str]) -> str:
    """``text`` without ``source``'s secrets (`_secrets`), a link's credentials and e-mail addresses."""
    return redact_emails(public_text_links(redact(text, _secrets(source, environ))))


def internal_error(exc: BaseException, source: SourceConfig, environ: Mapping[str, str]) -> tuple[str, str]:
    """The message of a collector's unexpected ``exc`` and its traceback, as `public_error_text` leaves them."""
    message = public_error_text(f"internal error in the {source.type} collector: {type(exc).__name__}: {exc}",
                                source, environ)
    trace = public_error_text("".join(traceback.format_exception(exc)).rstrip("\n"), source, environ)
    return message, trace

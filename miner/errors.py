"""Exceptions that carry a message fit to show a user as one line.

Only :mod:`miner.cli` (one line on stderr) and the HTTP endpoint (:mod:`miner.http_api`, a JSON error body)
turn them into output; every other module raises them.
"""

from __future__ import annotations


class MinerError(Exception):
    """Base for every error the CLI reports as a single clear line."""


class ConfigError(MinerError):
    """A feeds.toml problem, naming the key path and (when known) the line."""

    def __init__(self, message: str, *, path: str = "", key: str = "", line: int | None = None) -> None:
        self.path = path
        self.key = key
        self.line = line
        where = path or "config"
        if line is not None:
            where += f":{line}"
        if key:
            # A quoted key may hold "\n" or "\u001b[31m" (`"a\nb" = 1`): raw, the one-line error broke in two or
            # drove the terminal.
            where += ": " + "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" for ch in key)
        super().__init__(f"{where}: {message}")


class StoreError(MinerError):
    """The SQLite store cannot be opened or written (corrupt, read-only, disk full, locked).

    ``cause`` names the kind of failure in a word, for the service's ``miner_store_error`` metric: ``disk_full``,
    ``read_only``, ``locked``, ``corrupt``, ``cannot_open``, ``lost`` (the file was deleted or replaced) or ``other``.
    ``same_as`` is what tells it from another failure, for the service's log (logged once while it lasts): the
    message, unless a part of it changes at each run (the posts the collect job holds).
    """

    def __init__(self, message: str, *, cause: str = "other", same_as: str | None = None) -> None:
        super().__init__(message)
        self.cause = cause
        self.same_as = message if same_as is None else same_as


class ReportsBusy(StoreError):
    """A user report refused at once, as many being stored or waiting for their turn as may: the report intake logs
    these once a minute, where each refusal of a crowd of reporters was a line of the log."""


# Failed polls in a row, the last of them answered with ``bad_content``, after which the source is taken to need
# someone to act (SourceError.calls_for_action). A maintenance page, a captive portal or a cache's empty answer
# passes within a few polls; at the default interval (300 s) and backoff (60 s doubling, up to a quarter shorter at
# random), the sixth poll comes 33 to 39 minutes after the first.
BAD_CONTENT_POLLS = 6


class SourceError(MinerError):
    """One poll of one source failed. The message becomes the source's ``last_error``.

    ``retry_after`` (seconds) is set when the server asked us to wait (429/503 Retry-After);
    ``permanent`` marks errors retrying cannot fix soon (401/403/404, bad config). ``needs_action``: a TLS failure
    (a certificate not trusted, expired or for another name; no TLS in common): polled on its backoff as any other
    failure, so a fix is picked up, but logged as an error, since it lasts until someone acts (net_errors.py).
    ``bad_content``: a :class:`BadContent`. ``http_status``: the status of the answer the poll failed on, where
    the server answered (kept in the store's poll_failures).
    """

    bad_content = False

    def __init__(self, message: str, *, retry_after: float | None = None, permanent: bool = False,
                 needs_action: bool = False, http_status: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.permanent = permanent
        self.needs_action = needs_action
        self.http_status = http_status

    def calls_for_action(self, failures: int) -> bool:
        """Whether this failure, the ``failures``-th in a row (itself counted), lasts until someone acts: a permanent
        error (a revoked token's 401, a feed's 404 or 410, a setting missing) or a TLS one at once; an answer that is
        not the source's content once the source has failed BAD_CONTENT_POLLS polls in a row. Not a 429, a 5xx, a
        timeout, a refused or reset connection, a DNS failure: those pass by themselves, as the alert channels' do."""
        return self.permanent or self.needs_action or (self.bad_content and failures >= BAD_CONTENT_POLLS)


class BadContent(SourceError):
    """The server answered, but not with what the source's type serves (an HTML page for a feed, JSON without the
    posts, no body at all): a maintenance page or captive portal that passes, or a feed moved or turned off, as only
    its lasting tells (see SourceError.calls_for_action)."""

    bad_content = True


class ModelError(MinerError):
    """The classifier's model files are missing or unreadable."""


class InputError(MinerError):
    """A user-supplied input file is invalid; the message names the line."""


class RateLimited(MinerError):
    """A client's reports beyond its rate (the HTTP endpoint's 429)."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many reports from this client; retry in {int(retry_after) + 1} s")
        self.retry_after = retry_after

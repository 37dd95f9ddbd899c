"""How long a server's rate-limit headers say to wait: read for a page that used the limit up (`paging.Pager`) and
for a 429 that says no Retry-After (`http.status_error`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from miner.collectors.normalise import parse_time
from miner.timeutil import MAX_RETRY_AFTER

# A rate limit said to be used up without a reset time: wait about as long as the usual windows last.
DEFAULT_LIMIT_WAIT = 60.0
_EPOCH_FLOOR = 1_000_000_000  # a reset value above this is a Unix time (Bluesky), below it seconds to wait (Reddit)


def rate_limit_wait(headers: Mapping[str, str], now: datetime) -> float | None:
    """Seconds until the server's rate limit resets when its headers say no request is left, else None.

    Reddit sends ``X-Ratelimit-Remaining`` (a float) and ``X-Ratelimit-Reset`` (seconds), Mastodon
    ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (an ISO 8601 time), Bluesky ``RateLimit-Remaining`` and
    ``RateLimit-Reset`` (a Unix time). ``headers`` keys are lower case.
    """
    raw = headers.get("x-ratelimit-remaining") or headers.get("ratelimit-remaining")
    try:
        remaining = float(raw) if raw is not None else None
    except ValueError:
        return None
    if remaining is None or not remaining < 1:  # nan and a missing header say nothing
        return None
    reset = (headers.get("x-ratelimit-reset") or headers.get("ratelimit-reset") or "").strip()
    wait: float | None
    try:
        value = float(reset)
    except ValueError:
        when = parse_time(reset) if reset else None
        wait = (when - now).total_seconds() if when is not None else None
    else:
        wait = value - now.timestamp() if value > _EPOCH_FLOOR else value
    if wait is None or wait != wait:
        wait = DEFAULT_LIMIT_WAIT
    return min(max(wait, 1.0), MAX_RETRY_AFTER)

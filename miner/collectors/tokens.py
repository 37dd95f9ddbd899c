"""A thread-safe cache of API access tokens per source, so a poll logs in only when a token has expired."""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from miner.collectors.normalise import parse_time

# Renew a little early: a token that expires between our check and the server's is a wasted request.
EXPIRY_MARGIN = timedelta(seconds=60)
# A lifetime longer than this is none a server means (1e300 seconds overflowed timedelta).
MAX_LIFETIME = timedelta(days=366)


@dataclass(frozen=True)
class Token:
    # Not in the repr: a token in a log line, an error message or a debugger's view is as good as a login.
    access: str = field(repr=False)
    expires_at: datetime | None = None  # None: unknown, use until the server refuses it
    refresh: str | None = field(default=None, repr=False)

    def fresh(self, now: datetime) -> bool:
        return self.expires_at is None or now + EXPIRY_MARGIN < self.expires_at


class TokenCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, Token] = {}

    def get(self, key: str) -> Token | None:
        with self._lock:
            return self._tokens.get(key)

    def put(self, key: str, token: Token) -> None:
        with self._lock:
            self._tokens[key] = token

    def drop(self, key: str) -> None:
        with self._lock:
            self._tokens.pop(key, None)


def expiry_after(lifetime: object, now: datetime) -> datetime | None:
    """When a token answered at ``now`` with OAuth's `expires_in` of ``lifetime`` (seconds: a number, or its digits
    as text, as some servers write it) expires. None, to use it until the server refuses it, as a token without a
    lifetime, for any other value: not a number (a boolean neither), none above zero (already expired: every request
    logged in again), NaN or more than MAX_LIFETIME."""
    if isinstance(lifetime, str):
        try:
            lifetime = float(lifetime.strip())
        except ValueError:
            return None
    if isinstance(lifetime, bool) or not isinstance(lifetime, int | float):
        return None
    # Compared before any conversion: an integer too large for a float, and NaN (no comparison holds), are out.
    if not 0 < lifetime <= MAX_LIFETIME.total_seconds():
        return None
    return now + timedelta(seconds=float(lifetime))


def jwt_expiry(token: str, now: datetime) -> datetime | None:
    """When a JWT received at ``now`` expires, read without verifying it (we only use it to renew on time).

    Its lifetime (`exp` less `iat`) is counted from ``now``: `exp` is on the server's clock, and a clock of ours
    ahead of it by more than the lifetime would find every token expired as it arrives, and renew it before every
    request. Without `iat`, an `exp` already past on arrival is such a skew: None, use it until the server refuses it.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(claims, dict):
        return None
    exp, iat = _seconds(claims.get("exp")), _seconds(claims.get("iat"))
    if exp is None:
        return None
    if iat is not None:
        return expiry_after(exp - iat, now)
    expires = parse_time(exp)
    return expires if expires is not None and now < expires else None


def _seconds(claim: object) -> float | None:
    return float(claim) if isinstance(claim, int | float) and not isinstance(claim, bool) else None

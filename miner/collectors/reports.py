"""User reports ("I have a problem with X"): payload validation, a per-client token bucket, and the Post.

The HTTP endpoint (`POST /report`) lives in the service; it calls :func:`validate_report`,
:meth:`RateLimiter.allow`, :meth:`ReporterHashes.author` and :func:`report_post`. ``now`` is passed in.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from miner.collectors.normalise import fold, keyed_hash, redact_contacts
from miner.config import ServiceConfig
from miner.errors import InputError
from miner.records import REPORT_SOURCE, SYMPTOMS, Post
from miner.spelling import term_key
from miner.text_links import public_text_links

MAX_REPORT_TEXT = 500
_ALLOWED_KEYS = frozenset({"service", "symptom", "text"})


@dataclass(frozen=True)
class Report:
    service: str  # the canonical configured service name
    symptom: str | None
    text: str


def validate_report(payload: object, services: Sequence[ServiceConfig]) -> Report:
    """Check a decoded JSON payload; the service may be given by name or alias, spelled as matching reads them."""
    if not isinstance(payload, Mapping):
        raise InputError("report must be a JSON object")
    unknown = sorted(str(k) for k in payload if k not in _ALLOWED_KEYS)
    if unknown:
        raise InputError(f"unknown report field {unknown[0]!r} (allowed: service, symptom, text)")
    raw_service = payload.get("service")
    if not isinstance(raw_service, str) or not raw_service.strip():
        raise InputError("report needs a 'service' string")
    # As matching reads terms, so that a form's "google-cloud" or "Telefonica" is the service a post naming it
    # counts for; the config refuses a term two services share, so there is at most one.
    wanted = term_key(raw_service)
    service = next((s.name for s in services if wanted in {term_key(t) for t in (s.name, *s.aliases)}), None)
    if service is None:
        raise InputError(f"unknown service {raw_service.strip()[:60]!r}")
    symptom = payload.get("symptom")
    if symptom is not None and (not isinstance(symptom, str) or symptom not in SYMPTOMS):
        raise InputError(f"symptom must be one of {', '.join(SYMPTOMS)}")
    text = payload.get("text")
    if text is not None and not isinstance(text, str):
        raise InputError("text must be a string")
    cleaned = fold(text or "")
    if len(cleaned) > MAX_REPORT_TEXT:
        raise InputError(f"text is longer than {MAX_REPORT_TEXT} characters")
    return Report(service=service, symptom=symptom, text=cleaned)


def report_post(report: Report, now: datetime, author_hash: str | None = None) -> Post:
    """The Post a report becomes. The id is random; ``author_hash`` (see :class:`ReporterHashes`) is who counts as
    its complainer: without one, every report counts once."""
    label = f"User report: problem with {report.service}" + (f" ({report.symptom})" if report.symptom else "")
    text = f"{label}. {redact_contacts(public_text_links(report.text))}" if report.text else label
    return Post(
        source=REPORT_SOURCE,
        external_id=f"report:{secrets.token_hex(12)}",
        text=text,
        created_at=now,
        services=(report.service,),
        symptom_hint=report.symptom,
        author_hash=author_hash,
    )


class ReporterHashes:
    """A reporter's author hash: a keyed hash of the client (as the rate limit knows it) under a random key of the
    UTC day, held in memory only and replaced the next day.

    Without one, each report was a complainer of its own, and one client's burst (the rate limit's whole hour at
    once) opened an incident by itself. The key is not `store.hash_key_env`'s: with it (or with the public salt used
    when it is unset) a hash of an address is reversed by trying all 2**32 IPv4 addresses, and a key kept from day
    to day would link a reporter's days. The day is the report's, by the service's clock; a restart draws a new key,
    so a client reporting on both sides of it counts twice in that one bucket (a reload hands it on: see
    :mod:`miner.service_handover`). Not thread-safe: the intake calls it
    under its lock.
    """

    def __init__(self) -> None:
        self._day: date | None = None
        self._key = b""

    def author(self, client: str, now: datetime) -> str:
        day = now.astimezone(UTC).date()
        if day != self._day:
            self._day, self._key = day, secrets.token_bytes(32)
        return keyed_hash(self._key, client)


@dataclass(frozen=True)
class Bucket:
    tokens: float
    updated: float  # seconds, on the caller's clock


def take(bucket: Bucket | None, now: float, rate_per_s: float, capacity: float) -> tuple[bool, Bucket]:
    """One token bucket step: refill for the time elapsed, then try to spend one token."""
    if bucket is None:
        bucket = Bucket(tokens=capacity, updated=now)
    elapsed = max(0.0, now - bucket.updated)
    tokens = min(capacity, bucket.tokens + elapsed * rate_per_s)
    if tokens >= 1.0:
        return True, Bucket(tokens=tokens - 1.0, updated=now)
    return False, Bucket(tokens=tokens, updated=now)


class RateLimiter:
    """Per-client token buckets: ``per_hour`` reports an hour on average, bursts up to ``burst``.

    Full buckets are forgotten so memory stays bounded by the clients seen recently; past ``max_clients``
    the stalest half is dropped (a forgotten client starts with a full bucket, which errs towards accepting).
    """

    def __init__(self, per_hour: int, burst: int | None = None, max_clients: int = 100_000) -> None:
        if per_hour < 1:
            raise ValueError("per_hour must be at least 1")
        self.rate_per_s = per_hour / 3600.0
        self.capacity = float(burst if burst is not None else per_hour)
        self.max_clients = max_clients
        self._buckets: dict[str, Bucket] = {}

    def allow(self, client: str, now: float) -> bool:
        allowed, bucket = take(self._buckets.get(client), now, self.rate_per_s, self.capacity)
        self._buckets[client] = bucket
        if len(self._buckets) > self.max_clients:
            self._prune(now)
        return allowed

    def give_back(self, client: str) -> None:
        """Return the token ``allow`` just spent: the report it let through was not stored (a 503), and a client
        retrying through a store that refused it must not be answered 429 with none of its reports kept."""
        bucket = self._buckets.get(client)
        if bucket is not None:
            self._buckets[client] = Bucket(tokens=min(self.capacity, bucket.tokens + 1.0), updated=bucket.updated)

    def take_over(self, other: RateLimiter) -> None:
        """Go on from ``other``'s buckets (a reload's service before), at this one's rate: a client that spent its
        burst there does not get a new one, and refills at the rate now set, up to the burst now set."""
        self._buckets = other._buckets

    def retry_after(self, client: str, now: float) -> float:
        """Seconds until ``client`` may report again (0 when it may now)."""
        bucket = self._buckets.get(client)
        if bucket is None:
            return 0.0
        tokens = min(self.capacity, bucket.tokens + max(0.0, now - bucket.updated) * self.rate_per_s)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate_per_s

    def _prune(self, now: float) -> None:
        full_after = self.capacity / self.rate_per_s
        self._buckets = {k: b for k, b in self._buckets.items() if now - b.updated < full_after}
        if len(self._buckets) > self.max_clients:
            keep = sorted(self._buckets.items(), key=lambda kv: kv[1].updated)[len(self._buckets) // 2:]
            self._buckets = dict(keep)

    def __len__(self) -> int:
        return len(self._buckets)

"""User reports: payload validation, the Post they become, and the per-client token bucket."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from miner.collectors.reports import (
    MAX_REPORT_TEXT,
    Bucket,
    RateLimiter,
    ReporterHashes,
    report_post,
    take,
    validate_report,
)
from miner.config import ServiceConfig
from miner.errors import InputError

SERVICES = (ServiceConfig("WhatsApp", ("#whatsapp", "WA")), ServiceConfig("Slack"), ServiceConfig("Google Cloud"),
            ServiceConfig("Telefónica"))
NOW = datetime(2026, 11, 27, 14, 0, tzinfo=UTC)


def test_valid_report_by_alias_any_case() -> None:
    report = validate_report({"service": "wa", "symptom": "messaging", "text": "  msgs\n stuck  "}, SERVICES)
    assert (report.service, report.symptom, report.text) == ("WhatsApp", "messaging", "msgs stuck")
    assert validate_report({"service": "#WhatsApp"}, SERVICES).service == "WhatsApp"
    # Spelled as matching reads it: a form's slug, a phone keyboard, an accent left out.
    for spelling in ("google-cloud", "Google_Cloud", "GoogleCloud"):
        assert validate_report({"service": spelling}, SERVICES).service == "Google Cloud"
    assert validate_report({"service": "Telefonica"}, SERVICES).service == "Telefónica"
    assert validate_report({"service": "Whats App"}, SERVICES).service == "WhatsApp"


@pytest.mark.parametrize(("payload", "message"), [
    (["WhatsApp"], "report must be a JSON object"),
    ({}, "report needs a 'service' string"),
    ({"service": "  "}, "report needs a 'service' string"),
    ({"service": 3}, "report needs a 'service' string"),
    ({"service": "Teams"}, "unknown service 'Teams'"),
    ({"service": "Slack", "symptom": "slowness"}, "symptom must be one of connectivity, login"),
    ({"service": "Slack", "text": 5}, "text must be a string"),
    ({"service": "Slack", "text": "x" * (MAX_REPORT_TEXT + 1)}, "text is longer than 500 characters"),
    ({"service": "Slack", "ip": "1.2.3.4"}, "unknown report field 'ip'"),
])
def test_invalid_reports(payload: object, message: str) -> None:
    with pytest.raises(InputError) as info:
        validate_report(payload, SERVICES)
    assert str(info.value).startswith(message)


def test_report_post_keeps_nothing_about_the_reporter_and_carries_the_symptom() -> None:
    report = validate_report({"service": "Slack", "symptom": "login",
                              "text": "SSO loop, mail me at jane.doe@example.com or +44 7700 900123"}, SERVICES)
    post = report_post(report, NOW)
    assert post.source == "reports" and post.services == ("Slack",) and post.symptom_hint == "login"
    assert post.text == "User report: problem with Slack (login). SSO loop, mail me at [email] or [number]"
    assert post.created_at == NOW and post.author_hash is None
    # Every report counts once, even two alike in one instant.
    assert report_post(report, NOW).external_id != post.external_id
    bare = report_post(validate_report({"service": "Slack"}, SERVICES), NOW)
    assert bare.text == "User report: problem with Slack" and bare.symptom_hint is None


def test_a_reporter_hash_is_one_clients_for_one_utc_day() -> None:
    hashes = ReporterHashes()
    first = hashes.author("203.0.113.7", NOW)
    assert len(first) == 16 and int(first, 16) >= 0
    # The day is UTC's, whatever zone the clock's time is given in: at UTC-2, 21:59 and 22:00 of one day.
    west = timezone(timedelta(hours=-2))
    assert hashes.author("203.0.113.7", NOW.replace(hour=23, minute=59).astimezone(west)) == first
    assert hashes.author("203.0.113.8", NOW) != first
    assert hashes.author("203.0.113.7", (NOW + timedelta(hours=10)).astimezone(west)) != first
    assert ReporterHashes().author("203.0.113.7", NOW) != first  # the key is drawn, not derived from the address
    post = report_post(validate_report({"service": "Slack"}, SERVICES), NOW, first)
    assert post.author_hash == first and "203.0.113.7" not in repr(post)


def test_take_is_a_pure_token_bucket() -> None:
    ok, bucket = take(None, 0.0, rate_per_s=1.0, capacity=2.0)
    assert ok and bucket == Bucket(tokens=1.0, updated=0.0)
    ok, bucket = take(bucket, 0.0, 1.0, 2.0)
    assert ok and bucket.tokens == 0.0
    ok, bucket = take(bucket, 0.5, 1.0, 2.0)
    assert not ok and bucket.tokens == 0.5
    ok, bucket = take(bucket, 1.0, 1.0, 2.0)
    assert ok and bucket.tokens == 0.0
    ok, bucket = take(bucket, 100.0, 1.0, 2.0)  # refill is capped at capacity
    assert ok and bucket.tokens == 1.0


def test_rate_limiter_per_client() -> None:
    limiter = RateLimiter(per_hour=3)
    assert [limiter.allow("a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b", 0.0)  # another client has its own bucket
    assert limiter.retry_after("a", 0.0) == pytest.approx(1200.0)
    assert not limiter.allow("a", 1199.0)
    assert limiter.allow("a", 1200.0 + 1199.0)  # 20 minutes buys one report at 3/hour
    assert limiter.retry_after("new", 0.0) == 0.0


def test_rate_limiter_memory_is_bounded() -> None:
    limiter = RateLimiter(per_hour=60, max_clients=100)
    for i in range(1000):
        limiter.allow(f"client-{i}", float(i))  # a client refills fully within a minute
    assert len(limiter) <= 100
    limiter = RateLimiter(per_hour=1, max_clients=10)
    for i in range(50):
        limiter.allow(f"c{i}", 0.0)  # none refilled yet: the stalest half goes
    assert len(limiter) <= 10
    with pytest.raises(ValueError):
        RateLimiter(per_hour=0)

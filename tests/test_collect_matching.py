"""Service matching: names, aliases, hashtags and handles on word boundaries; short aliases; restriction."""

from __future__ import annotations

import pytest

from miner.collectors.matching import ServiceMatcher
from miner.config import ServiceConfig

MATCHER = ServiceMatcher([
    ServiceConfig("WhatsApp", ("WA",)),
    ServiceConfig("X", ("Twitter",)),
    ServiceConfig("AWS", ("Amazon Web Services",)),
    ServiceConfig("Google"),
    ServiceConfig("Google Cloud", ("GCP",)),
    ServiceConfig("PlayStation Network", ("PSN", "PlayStation")),
    ServiceConfig("Instagram", ("@instagram",)),
])


@pytest.mark.parametrize(("text", "expected"), [
    ("is whatsapp down?", ("WhatsApp",)),
    ("WHATSAPP NOT WORKING", ("WhatsApp",)),
    ("#whatsappdown again today", ("WhatsApp",)),
    ("#WhatsAppDown", ("WhatsApp",)),
    ("#whatsapp_down", ("WhatsApp",)),
    ("@WhatsApp please fix", ("WhatsApp",)),
    ("whatsapp's servers are dead", ("WhatsApp",)),
    ("WhatsApp’s status page", ("WhatsApp",)),
    ("AWS us-east-1 is broken", ("AWS",)),
    ("aws console 500s", ("AWS",)),
    ("@AWSSupport any ETA?", ("AWS",)),
    ("Amazon Web Services outage", ("AWS",)),
    ("X is down again", ("X",)),
    ("Twitter timeline won't load", ("X",)),
    ("Google Cloud outage in europe-west1", ("Google Cloud",)),
    ("google search is slow", ("Google",)),
    ("#GoogleCloudDown", ("Google Cloud",)),
    ("gcp?", ("Google Cloud",)),
    ("@AskPlayStation PSN login fails", ("PlayStation Network",)),
    ("#isinstagramdown", ("Instagram",)),
    ("instagram and whatsapp both down", ("Instagram", "WhatsApp")),
])
def test_matches(text: str, expected: tuple[str, ...]) -> None:
    assert MATCHER.match(text) == expected


@pytest.mark.parametrize("text", [
    "new laws passed today",  # "aws" inside a word
    "draws, paws and jaws",
    "2 x 4 timber",  # short alias: case-sensitive
    "the xbox is fine",
    "whatsappening",  # name as a prefix of another word
    "googled it",
    "WAN link flapping",  # "WA" is short: must be a whole word in its case
    "mail@whatsapp.example.com is a fake address",  # handle-ish but inside an address
    "",
])
def test_does_not_match(text: str) -> None:
    assert MATCHER.match(text) == ()


def test_short_alias_matches_in_its_own_case() -> None:
    assert MATCHER.match("WA is down in Lagos") == ("WhatsApp",)
    assert MATCHER.match("wa is down") == ()


def test_restriction_to_source_services() -> None:
    text = "AWS and WhatsApp are both down"
    assert MATCHER.match(text) == ("AWS", "WhatsApp")
    assert MATCHER.match(text, only=("whatsapp",)) == ("WhatsApp",)
    # Restricting to "Google" must still find it when "Google Cloud" would win unrestricted.
    assert MATCHER.match("Google Cloud is down", only=("Google",)) == ("Google",)
    assert MATCHER.match(text, only=("Unknown",)) == ()


def test_no_services_matches_nothing() -> None:
    assert ServiceMatcher([]).match("whatsapp down") == ()

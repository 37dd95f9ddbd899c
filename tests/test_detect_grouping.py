"""Correlated services: openings of one group within the window become one grouped incident."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from miner.config import GroupConfig, ServiceConfig
from miner.detect.grouping import Opening, candidate_groups, correlate
from miner.detect.params import DetectorParams

T0 = datetime(2025, 3, 3, 12, tzinfo=UTC)
P = DetectorParams()
SERVICES = (
    ServiceConfig("WhatsApp", provider="Meta"),
    ServiceConfig("Instagram", provider="Meta"),
    ServiceConfig("Facebook", provider="Meta"),
    ServiceConfig("Gmail", provider="Google"),
    ServiceConfig("Slack"),
    ServiceConfig("Zoom"),
)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_provider_services_opening_together_are_one_incident() -> None:
    openings = [Opening("WhatsApp", at(0)), Opening("instagram", at(7)), Opening("Facebook", at(25)),
                Opening("Gmail", at(3))]
    found = correlate(P, openings, (), SERVICES)
    assert len(found) == 1
    meta = found[0]
    assert meta.group == "Meta" and meta.cause == "Meta platform outage"
    assert meta.services == ("WhatsApp", "instagram", "Facebook")
    assert meta.opened_at == at(0) and meta.last_opened_at == at(25)


def test_openings_outside_the_window_are_not_grouped() -> None:
    openings = [Opening("WhatsApp", at(0)), Opening("Instagram", at(P.group_window_minutes + 1))]
    assert correlate(P, openings, (), SERVICES) == []


def test_configured_groups_and_repeated_openings_of_one_service() -> None:
    groups = (GroupConfig("chat", ("Slack", "Zoom"), cause="shared CDN"),)
    repeated = [Opening("Slack", at(0)), Opening("Slack", at(5))]
    assert correlate(P, repeated, groups, SERVICES) == []  # one service twice is not a correlated outage
    pair = [Opening("Slack", at(0)), Opening("Zoom", at(10))]
    (chat,) = correlate(P, pair, groups, SERVICES)
    assert chat.group == "chat" and chat.cause == "shared CDN" and chat.services == ("Slack", "Zoom")


def test_two_separate_bursts_give_two_group_incidents() -> None:
    openings = [Opening("WhatsApp", at(0)), Opening("Instagram", at(5)),
                Opening("WhatsApp", at(300)), Opening("Facebook", at(310))]
    found = correlate(P, openings, (), SERVICES)
    assert [(g.opened_at, g.services) for g in found] == [
        (at(0), ("WhatsApp", "Instagram")), (at(300), ("WhatsApp", "Facebook"))]


def test_a_configured_group_covering_a_provider_replaces_the_implicit_one() -> None:
    groups = (GroupConfig("Meta family", ("WhatsApp", "Instagram", "Facebook"), cause="Meta backbone"),)
    names = [g.name for g in candidate_groups(groups, SERVICES)]
    assert names == ["Meta family"]  # Google has one service: no implicit group


def test_overlapping_groups_each_opening_goes_to_the_first_group_only() -> None:
    # "Meta chat" sits inside the provider Meta; "Meta media" shares Instagram with it.
    groups = (GroupConfig("Meta chat", ("WhatsApp", "Instagram")), GroupConfig("Meta media", ("Instagram", "Facebook")))
    openings = [Opening("WhatsApp", at(0), 1), Opening("Instagram", at(5), 2), Opening("Facebook", at(10), 3)]
    (chat,) = correlate(P, openings, groups, SERVICES)  # Facebook alone is left: no second group
    assert chat.group == "Meta chat" and chat.services == ("WhatsApp", "Instagram")
    assert [o.incident_id for o in chat.openings] == [1, 2]


def test_openings_left_by_a_configured_group_can_still_group_under_their_provider() -> None:
    services = (*SERVICES, ServiceConfig("Threads", provider="Meta"))
    groups = (GroupConfig("Meta chat", ("WhatsApp", "Instagram"), cause="chat backend"),)
    openings = [Opening("WhatsApp", at(0), 1), Opening("Facebook", at(2), 2), Opening("Instagram", at(5), 3),
                Opening("Threads", at(6), 4)]
    found = correlate(P, openings, groups, services)
    assert [(g.group, g.services, [o.incident_id for o in g.openings]) for g in found] == [
        ("Meta chat", ("WhatsApp", "Instagram"), [1, 3]), ("Meta", ("Facebook", "Threads"), [2, 4])]


def test_a_provider_spelled_in_two_cases_is_one_provider() -> None:
    # Alerts group and silence a provider in any case (AlertSettings.group_key, mutes): "Meta" and "meta" were two
    # providers of one service each here, so their openings together were no grouped incident.
    services = (ServiceConfig("WhatsApp", provider="Meta"), ServiceConfig("Instagram", provider="meta"))
    [meta] = candidate_groups((), services)
    assert (meta.name, meta.services) == ("Meta", ("WhatsApp", "Instagram"))
    (found,) = correlate(P, [Opening("WhatsApp", at(0)), Opening("Instagram", at(5))], (), services)
    assert found.services == ("WhatsApp", "Instagram") and found.cause == "Meta platform outage"

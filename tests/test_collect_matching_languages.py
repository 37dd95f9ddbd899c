"""Service matching of outage hashtags in languages other than English, and ordinary words they must not match.

The shared data's posts (labels, SentiTel, complaints, power) hold no such tag, so the texts are written here
after the tags of Downdetector-style traffic."""

from __future__ import annotations

import pytest

from miner.collectors.matching import ServiceMatcher
from miner.config import ServiceConfig

MATCHER = ServiceMatcher([
    ServiceConfig("WhatsApp"), ServiceConfig("Instagram"), ServiceConfig("Facebook"), ServiceConfig("Telekom"),
    ServiceConfig("SFR"), ServiceConfig("Free", match_case=True), ServiceConfig("KPN"), ServiceConfig("Telkomsel"),
    ServiceConfig("IndiHome"), ServiceConfig("VK", ("ВКонтакте", "ВК")), ServiceConfig("Telegram"),
    ServiceConfig("TIM"), ServiceConfig("Meta"), ServiceConfig("Sky"), ServiceConfig("Signal", match_case=True),
    ServiceConfig("Total"), ServiceConfig("X"),
])


@pytest.mark.parametrize(("text", "service"), [
    # Spanish
    ("#WhatsAppCaido otra vez", "WhatsApp"),
    ("se cayó todo #WhatsAppCaído", "WhatsApp"),
    ("#InstagramCaida", "Instagram"),
    ("#WhatsAppNoFunciona desde las 10", "WhatsApp"),
    ("#SeCayóWhatsApp", "WhatsApp"),
    ("#caidaFacebook", "Facebook"),
    # Portuguese
    ("#instagramfora de novo", "Instagram"),
    ("#InstagramForaDoAr", "Instagram"),
    ("#WhatsAppCaiu", "WhatsApp"),
    ("#CaiuInstagram", "Instagram"),
    # German, Dutch
    ("Seit heute früh kein Netz #TelekomStörung", "Telekom"),
    ("#Telekom_Ausfall", "Telekom"),
    ("#KPNstoring", "KPN"),
    # French
    ("#pannesfr depuis ce matin", "SFR"),
    ("#FreePanne", "Free"),
    ("#FreeEnPanne", "Free"),
    # Italian
    ("#WhatsAppNonFunziona", "WhatsApp"),
    ("#TIMguasto", "TIM"),
    # Turkish
    ("#whatsappçöktü", "WhatsApp"),
    ("#InstagramÇöktüMü", "Instagram"),
    # Indonesian
    ("#TelkomselGangguan", "Telkomsel"),
    ("#gangguanindihome", "IndiHome"),
    # Russian
    ("#ВКупал", "VK"),
    ("#вконтактележит", "VK"),
    ("#СбойВК", "VK"),
    ("#TelegramНеРаботает", "Telegram"),
    # A year after the suffix
    ("#FacebookDown2021", "Facebook"),
    ("#facebook_down_2021", "Facebook"),
    ("#WhatsAppCaido2021", "WhatsApp"),
    ("#XDown2024", "X"),
    # "fora" after a short name only as "fora do ar"
    ("#SkyForaDoAr", "Sky"),
])
def test_outage_tags_in_other_languages(text: str, service: str) -> None:
    assert MATCHER.match(text) == (service,)


@pytest.mark.parametrize(("ordinary", "outage"), [
    ("#metafora", "#instagramfora"),  # Italian, Spanish, Portuguese "metaphor", not Meta "fora" (out)
    ("#Skyfora", "#SkyForaDoAr"),
    ("#Signalstörung auf der S1", "#TelekomStörung"),  # a railway's signal fault, not the messenger
    ("#Signalausfall", "#Telekom_Ausfall"),
    ("#Totalausfall", "#Telekom_Ausfall"),
    ("#Facebook2021", "#FacebookDown2021"),  # a year only after a suffix: the name and a year may be a look back
    ("#FacebookDown1850", "#FacebookDown2021"),
    ("#FacebookDown20211", "#FacebookDown2021"),
])
def test_ordinary_tags_do_not_match(ordinary: str, outage: str) -> None:
    # Each beside the outage tag whose suffix it looks like.
    assert MATCHER.match(outage)
    assert MATCHER.match(ordinary) == ()

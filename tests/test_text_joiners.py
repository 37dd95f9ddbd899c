"""Zero-width joiners in post text: kept where they join letters or emoji (Persian and Indic spelling, emoji
sequences), dropped where they only hide a word ("What\\u200cs\\u200dApp"), in the stored text and in alert mail."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from click.testing import CliRunner
from fakeserver import FakeServer, Reply
from smtp_server import SmtpServer, smtp_server  # noqa: F401  (fixture)
from test_alerts_email import mail_settings
from test_alerts_support import T0, open_incident, seed_posts

from miner.alerts import dispatch, plan_notifications
from miner.cli import main
from miner.collectors.matching import ServiceMatcher
from miner.config import parse_config
from miner.errors import ConfigError
from miner.store import Store

ZWNJ, ZWJ = "\u200c", "\u200d"
# Digikala (an Iranian shop) as Persian writes it, with a ZWNJ, and "doesn't work, I want to place my order": the
# ZWNJs belong to "نمی‌کند" and "می‌خواهم"; without them each prefix runs into its verb, a misspelling.
PERSIAN = f"دیجی{ZWNJ}کالا کار نمی{ZWNJ}کند، می{ZWNJ}خواهم سفارش بدهم"
FAMILY = f"👨{ZWJ}👩{ZWJ}👧{ZWJ}👦"  # one family: without the ZWJs, four people
CODER = f"👩🏽{ZWJ}💻"  # a skin tone, then the ZWJ
FLAGS = f"🏳️{ZWJ}🌈 🏴{ZWJ}☠️ 🇮🇷"  # rainbow and pirate flags (VS16, ZWJ), Iran's (regional indicators, no joiner)
HEART = f"❤️{ZWJ}🩹 🙂{ZWJ}↔️"  # mending heart, head shaking (its arrow is a math symbol, not a pictograph)
SINHALA = f"ශ්{ZWJ}රී ලංකා"  # Sri Lanka: the ZWJ after the al-lakuna asks for the rakaransaya form
MALAYALAM = f"അവന്{ZWJ} പറഞ്ഞു"  # "he said", the chillu written the old way: virama and ZWJ, at the word's end
# Where joiners join nothing: they hide "WhatsApp" from a search, or stand at a word's edge, or come in a run.
SPOOF = (f"What{ZWNJ}s{ZWJ}App {ZWJ}{ZWJ}down{ZWNJ} {ZWNJ}again, دیجی{ZWNJ}{ZWNJ}کالا a{ZWJ}👍 👍{ZWJ}b "
         # and what else is invisible: bidi overrides and isolates, soft hyphen, zero-width space, BOM, tag characters
         # (text hidden from a reader, "ign" here), the Arabic letter mark, a deprecated format character, an annotation
         "\u202eevil\u202c \u2066x\u2069 Whats\u00adApp\u200b\ufeff Whats\U000e0069\U000e0067\U000e006eApp\u061c "
         "\u206aoff\ufff9line\ufffb")
TEXTS = {
    "persian": PERSIAN,
    "emoji": f"WhatsApp down {FAMILY} the whole family cut off {CODER} {HEART}",
    "flags": f"WhatsApp {FLAGS}",
    "indic": f"WhatsApp {SINHALA} {MALAYALAM}",
    "spoof": SPOOF,
}
STORED_SPOOF = "WhatsApp down again, دیجیکالا a👍 👍b evil x WhatsApp WhatsApp offline"


def _rss() -> bytes:
    items = "".join(
        f"<item><title>{escape(text)}</title><guid isPermaLink='false'>{name}</guid>"
        f"<pubDate>Tue, 01 Dec 2026 10:0{n}:00 GMT</pubDate></item>" for n, (name, text) in enumerate(TEXTS.items()))
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{items}</channel></rss>'.encode()


def test_collected_posts_keep_the_joiners_that_join_and_lose_those_that_hide(tmp_path: Path, runner: CliRunner,
                                                                            server: FakeServer) -> None:
    server.serve("/feed.rss", Reply(200, _rss(), content_type="application/rss+xml"))
    cfg = tmp_path / "miner.toml"
    cfg.write_text('[[services]]\nname = "WhatsApp"\n\n[[services]]\nname = "Digikala"\n'
                   f'aliases = ["دیجی{ZWNJ}کالا"]\n\n'
                   f'[[sources]]\nname = "feed"\ntype = "rss"\nurl = "{server.url}/feed.rss"\n', encoding="utf-8")
    db = tmp_path / "m.sqlite"
    collected = runner.invoke(main, ["--config", str(cfg), "--db", str(db), "collect", "--once"])
    assert collected.exit_code == 0, collected.output
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT external_id, text FROM posts").fetchall()
        matched = conn.execute("SELECT p.external_id, ps.service FROM posts p JOIN post_services ps "
                               "ON ps.post_id = p.id ORDER BY ps.service").fetchall()
    conn.close()
    # The guids name no site: stored after the feed's host (collectors/rss.py), by their own part here.
    texts = {ident.rpartition("#")[2]: text for ident, text in rows}
    assert texts["persian"] == PERSIAN
    assert texts["emoji"] == TEXTS["emoji"]
    assert texts["flags"] == TEXTS["flags"]
    assert texts["indic"] == TEXTS["indic"]
    assert texts["spoof"] == STORED_SPOOF
    # Matching reads every joiner as nothing: the alias written with its ZWNJ matches the text with it and without.
    assert sorted(service for post, service in matched if post.rpartition("#")[2] in ("persian", "spoof")) == [
        "Digikala", "Digikala", "WhatsApp"]
    # Matching itself reads every joiner as nothing (one kept between letters, or in a text stored before they were
    # read): "What\\u200dsApp" is WhatsApp, and the alias written with its ZWNJ matches a text without it.
    matcher = ServiceMatcher(parse_config(cfg.read_text(encoding="utf-8")).services)
    assert matcher.match(f"What{ZWJ}sApp down? {PERSIAN}") == ("WhatsApp", "Digikala")
    assert matcher.match("دیجیکالا کار نمیکند") == ("Digikala",)


def test_an_alias_may_hold_the_joiners_of_its_spelling_but_no_stray_one() -> None:
    services = '[[services]]\nname = "Digikala"\naliases = ["{}"]\n'
    [service] = parse_config(services.format(f"دیجی{ZWNJ}کالا")).services
    assert service.aliases == (f"دیجی{ZWNJ}کالا",)
    for stray in (f"What{ZWNJ}sApp", f"دیجی{ZWNJ}{ZWNJ}کالا", f"{ZWJ}دیجی", f"دیجی{ZWNJ}\u202eکالا"):
        with pytest.raises(ConfigError) as refused:
            parse_config(services.format(stray))
        assert refused.value.key == "services[0].aliases[0]"
        assert "must not contain control or format" in str(refused.value)


def test_alert_mail_keeps_the_joiners_that_join_and_loses_those_that_hide(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    cfg = mail_settings(smtp_server, group_wait=0.0, max_samples=len(TEXTS) + 1)
    # A sample is cut at 280 characters: this one right after a ZWNJ, which joins nothing once the rest is cut off.
    cut = "WhatsApp " + "م" * 269 + ZWNJ + "خ" * 50
    # As stored before joiners were read (or by any other path): the mail cleans them itself.
    # Posts a minute apart, the last before T0: the bucket in progress when the alert goes is not sampled.
    seed_posts(store, "WhatsApp", T0 - timedelta(minutes=6), [*TEXTS.values(), cut])
    open_incident(store, "WhatsApp", T0, posts=False)
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0, worker_id="w").sent == 1
    [msg] = smtp_server.inbox.messages
    text_part, related = msg.iter_parts()
    html = next(related.iter_parts()).get_content()
    text = text_part.get_content()
    for part in (html, text):
        for word in (FAMILY, CODER, *" ".join((PERSIAN, HEART, FLAGS, SINHALA, MALAYALAM, STORED_SPOOF)).split()):
            assert word in part
        assert f"What{ZWNJ}s" not in part and f"s{ZWJ}App" not in part and f"{ZWNJ}{ZWNJ}" not in part
        assert not any(ch in part for ch in "\u202e\u202c\u2066\u2069\u00ad\u200b\ufeff")
        assert "مم…" in part  # the text part breaks the long word into lines

"""feeds.toml loading: the shipped files are valid, and every kind of mistake names its key and line."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import replace
from pathlib import Path
from urllib.parse import SplitResult, urlsplit

import pytest
from click.testing import CliRunner

import miner.source_identity as source_identity
from miner.cli import main
from miner.config import SourceConfig, bundled_path, load_config, parse_config
from miner.config_files import check_named_files, warn_unset_alert_env
from miner.config_lines import locate
from miner.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = (ROOT / "feeds.toml").read_text(encoding="utf-8")


def test_shipped_config_is_valid_and_realistic() -> None:
    cfg = load_config(ROOT / "feeds.toml")
    names = {s.name for s in cfg.services}
    assert {"WhatsApp", "Instagram", "Facebook", "Gmail", "Slack", "Discord", "GitHub", "Cloudflare", "AWS"} <= names
    assert len(names) >= 12  # plus ISPs and telecoms
    types = {s.type for s in cfg.sources}
    assert {"rss", "reddit", "hackernews", "mastodon", "statuspage", "status_feed"} <= types
    # A service's status_page becomes a statuspage source watching that service.
    github = cfg.source("status:github")
    assert github is not None and github.type == "statuspage" and github.services == ("GitHub",)


def test_the_shipped_configs_commented_alerts_example_is_valid_once_uncommented() -> None:
    # The shipped file had no [alerts] at all: started from it, miner told no one of any incident, and nothing in it
    # said how to change that.
    block = SHIPPED[SHIPPED.index("# [alerts]\n"):]
    uncommented = "".join(line.removeprefix("# ").removeprefix("#") + "\n" for line in block.splitlines())
    cfg = parse_config(SHIPPED + "\n" + uncommented, "feeds.toml")
    routes = [(r.name, r.email, r.digest) for r in cfg.alerts.routes]
    assert routes == [("oncall", ("oncall@example.org",), "0 8 * * *")]
    assert (cfg.alerts.smtp.username_env, cfg.alerts.smtp.password_env) == ("MINER_SMTP_USER", "MINER_SMTP_PASSWORD")


def test_demo_config_is_valid() -> None:
    cfg = load_config(bundled_path("demo.toml"))
    assert [s.name for s in cfg.services] == ["MTN", "Airtel", "Africell"]


@pytest.mark.parametrize("text", ["", '[[services]]\nname = "X"\n',
                                  '[[sources]]\nname = "s"\ntype = "rss"\nurl = "https://example.org/feed"\n'])
def test_no_section_is_required(text: str) -> None:
    # docs/configuration.md: "Every section is optional"; the demo's config has no sources.
    cfg = parse_config(text, "feeds.toml")
    assert len(cfg.services) + len(cfg.sources) == text.count("[[")


def test_config_objects_are_frozen() -> None:
    cfg = load_config(ROOT / "feeds.toml")
    with pytest.raises(AttributeError):
        cfg.services[0].name = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("edit", "key", "message"),
    [
        (("interval = 600\n\n[[sources]]\nname = \"mastodon-whatsappdown\"",
          "intervall = 600\n\n[[sources]]\nname = \"mastodon-whatsappdown\""), "sources[1].intervall", "unknown key"),
        (("port = 8787", 'port = "high"'), "server.port", "expected an integer"),
        (('services = ["Slack"]', 'services = ["Slak"]'), "sources[6].services[0]", "unknown service 'Slak'"),
        (('type = "hackernews"', 'type = "hn"'), "sources[4].type", "must be one of"),
        (("retention_days = 30", "retention_days = 0"), "store.retention_days", "at least 1"),
        # An empty alias matched nothing, silently; one alias for two services counted its posts for the first.
        # Its board page, services/. or services/.., and its API series were dot segments no client could ask for.
        (('name = "WhatsApp"', 'name = "."'), "services[0].name", "must not be '.': a URL path cannot name it"),
        (('name = "WhatsApp"', 'name = ".."'), "services[0].name", "must not be '..': a URL path cannot name it"),
        (('"mtn uganda", "mymtn"', '"", "mymtn"'), "services[11].aliases[1]", "must not be empty (got '')"),
        (('"mtn uganda", "mymtn"', '" # ", "mymtn"'), "services[11].aliases[1]", "must not be empty"),
        (('"mtn uganda", "mymtn"', '"™", "mymtn"'), "services[11].aliases[1]", "must not be empty"),  # no letter
        (('aliases = ["africel", "africellug"', 'aliases = ["africel", "MTN-Uganda"'), "services[13].aliases[1]",
         "'MTN-Uganda' also names service 'MTN' (services[11].aliases[1])"),
        (('aliases = ["FB", "facebookdown", "messenger"]', 'aliases = ["FB", "facebookdown", "#Instagram"]'),
         "services[2].aliases[2]", "'#Instagram' also names service 'Instagram' (services[1].name)"),
        (('aliases = ["africel", "africellug"', 'aliases = ["africel", "Aírtel"'), "services[13].aliases[1]",
         "'Aírtel' also names service 'Airtel' (services[12].name)"),  # matching reads it without its accent
        (('aliases = ["africel", "africellug"', 'aliases = ["africel", "Air&tel"'), "services[13].aliases[1]",
         "'Air&tel' also names service 'Airtel' (services[12].name)"),  # as @Airtel would be for both
        # Matching reads a phone keyboard's apostrophe as "'", and an apostrophe as optional: this was one term for
        # two services, unrefused.
        (('aliases = ["africel", "africellug"', 'aliases = ["africel", "What’s App"'), "services[13].aliases[1]",
         "'What’s App' also names service 'WhatsApp' (services[0].name)"),
    ],
)
def test_errors_name_key_and_line(edit: tuple[str, str], key: str, message: str) -> None:
    old, new = edit
    assert old in SHIPPED
    text = SHIPPED.replace(old, new, 1)
    with pytest.raises(ConfigError) as info:
        parse_config(text, "feeds.toml")
    err = info.value
    assert err.key == key
    assert message in str(err)
    assert err.line is not None
    # The reported line really is where the offending key sits.
    offending = text.splitlines()[err.line - 1]
    assert key.rsplit(".", 1)[-1].split("[")[0] in offending


@pytest.mark.parametrize("width", [7, 25, 100, 2880])
def test_a_bucket_width_that_does_not_divide_a_day_is_refused(width: int) -> None:
    # Buckets are aligned to the epoch: 25-minute buckets start at another time each day and some span midnight,
    # so the hour-of-day and weekday baseline learned from buckets shifted day by day.
    text = f'[[services]]\nname = "A"\n\n[detector]\nwarmup_hours = 1\nbucket_minutes = {width}\n'
    with pytest.raises(ConfigError, match=r"^x.toml:6: detector.bucket_minutes: must divide a day \(1440 minutes\) "
                                          r"evenly, so every day has the same buckets from midnight UTC, e\.g\. 1, 5"):
        parse_config(text, "x.toml")
    for good in (1, 5, 15, 90, 120, 1440):
        assert parse_config(text.replace(f"= {width}", f"= {good}"), "x.toml").detector.bucket_minutes == good


def test_unknown_top_level_and_section_keys() -> None:
    with pytest.raises(ConfigError, match=r"feeds.toml:2: detector.bogus: unknown key"):
        parse_config("[detector]\nbogus = 1\n", "feeds.toml")
    with pytest.raises(ConfigError, match=r"nonsense: unknown key"):
        parse_config("nonsense = true\n", "feeds.toml")


def test_invalid_toml_reports_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("[store]\npath = 'x'\n[broken\n", "f.toml")
    assert info.value.line == 3
    assert "not valid TOML" in str(info.value)


@pytest.mark.parametrize(
    ("text", "line", "error"),
    [
        ('[[services]]\nname = "A"\naliases = [\n  "a",\n  # "b",\n\n', 3, "Invalid value"),
        ('[[sources]]\nname = "x"\ntype = "rss"\nurl = """https://e.org/x.xml\n[store]\nretention_days = 3\n', 4,
         "Unterminated string"),
        ("[store]\npath = '''x\n\nretention_days = 3\n", 2, "Expected \"'''\""),
        ('[[services]]\nname = "A"\naliases = ["a", { x = [1, "b', 3, "Unterminated string"),
        ('[[services]]\nname = "A"\naliases = ["a", { x = [1,\n', 3, "Invalid value"),
    ],
    ids=["array", "multi-line string", "multi-line literal", "string in an array", "array in an inline table"],
)
def test_toml_never_closed_names_the_line_it_opens_on(text: str, line: int, error: str) -> None:
    # tomllib says only "at end of document": the error had no line at all.
    with pytest.raises(ConfigError) as info:
        parse_config(text, "f.toml")
    assert str(info.value) == (f"f.toml:{line}: not valid TOML: {error} (at end of document); the string, array or "
                               f"inline table that starts on line {line} is not closed")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('[alerts]\n"group_wait" = 3\nenabled = true\ngroup_wait = 5\n',
         ":4: not valid TOML: Cannot overwrite a value (at line 4, column 15); group_wait is set twice, or is already "
         "a table"),
        ('[store]\npath = "a"\n\n[[store]]\npath = "b"\n',
         ":4: not valid TOML: Cannot overwrite a value (at line 4, column 8); store is already a table or a value "
         "above, so [[store]] cannot add an entry to it"),
        ('[[services]]\nname = "A"\n[services]\nname = "B"\n',
         ":3: not valid TOML: Cannot declare ('services',) twice (at line 3, column 10); services is an array of "
         "tables ([[services]] on line 1): each of its entries starts with [[services]], in two brackets, not "
         "[services]"),
        ('[[services]]\nname = "A"\n[[ alerts . routes ]] # on call\nname = "a"\n\n[alerts.routes]\nname = "b"\n',
         ":6: not valid TOML: Cannot declare ('alerts', 'routes') twice (at line 6, column 15); alerts.routes is an "
         "array of tables ([[alerts.routes]] on line 3): each of its entries starts with [[alerts.routes]], in two "
         "brackets, not [alerts.routes]"),
        ('[alerts.smtp]\nport = 25\n[alerts.smtp]\nhost = "x"\n',
         ":3: not valid TOML: Cannot declare ('alerts', 'smtp') twice (at line 3, column 13); alerts.smtp is already "
         "defined above (by a [alerts.smtp] or [[alerts.smtp]] header, a dotted key or an inline table): a table is "
         "written in one place"),
        ('alerts.smtp.port = 25\r\n[ alerts.smtp ]\r\nhost = "x"\r\n',
         ":2: not valid TOML: Cannot declare ('alerts', 'smtp') twice (at line 2, column 15); alerts.smtp is already "
         "defined above (by a [alerts.smtp] or [[alerts.smtp]] header, a dotted key or an inline table): a table is "
         "written in one place"),
        ('[[services]]\nname = "A"\n\n[sources] # the first\nname = "a"\ntype = "hackernews"\nquery = "x"\n\n'
         '[[sources]]\nname = "b"\ntype = "hackernews"\nquery = "y"\n',
         ":9: not valid TOML: Cannot overwrite a value (at line 9, column 10); [sources] on line 4 makes sources one "
         "table, so [[sources]] cannot add an entry to it: start each entry with [[sources]], in two brackets, line "
         "4's too"),
    ],
    ids=["key", "table then array of tables", "array of tables then table", "nested array of tables then table",
         "table twice", "dotted key then table", "first entry's bracket dropped"],
)
def test_toml_given_twice_names_what_is_given_twice(text: str, error: str) -> None:
    # tomllib names neither the key nor the table: "Cannot overwrite a value (at line 4, column 15)".
    with pytest.raises(ConfigError) as info:
        parse_config(text, "f.toml")
    assert str(info.value) == f"f.toml{error}"


def test_an_unknown_service_of_a_file_without_services_says_to_declare_it() -> None:
    # "unknown service 'Zen'" alone: a first feeds.toml of sources only did not say where services come from.
    with pytest.raises(ConfigError) as info:
        parse_config('[[sources]]\nname = "a"\ntype = "rss"\nurl = "https://a.example/feed"\nservices = ["Zen"]\n',
                     "x.toml")
    assert str(info.value) == ("x.toml:5: sources[0].services[0]: unknown service 'Zen': no [[services]] entry is "
                               "declared; add one with name = 'Zen'")


def test_an_unknown_service_lists_ten_names_at_most() -> None:
    services = "".join(f'[[services]]\nname = "S{i:02}"\n' for i in range(12))
    with pytest.raises(ConfigError) as info:
        parse_config(services + '[[groups]]\nname = "g"\nservices = ["S00", "Zen"]\n', "x.toml")
    names = ", ".join(f"'S{i:02}'" for i in range(10))
    assert str(info.value).endswith(f"unknown service 'Zen': it is none of the [[services]] names ({names} and 2 "
                                    "more); use one of them, or add a [[services]] entry with name = 'Zen'")


def test_missing_required_key_and_bad_reference() -> None:
    with pytest.raises(ConfigError, match=r"services\[0\].name: required key is missing"):
        parse_config("[[services]]\naliases = ['x']\n")
    with pytest.raises(ConfigError, match=r"groups\[0\].services\[1\]: unknown service 'Nope'"):
        parse_config("[[services]]\nname = 'A'\n[[groups]]\nname = 'g'\nservices = ['A', 'Nope']\n")


def test_match_case_is_read_from_the_file() -> None:
    cfg = parse_config("[[services]]\nname = 'Three'\nmatch_case = true\n[[services]]\nname = 'MTN'\n", "x.toml")
    assert [s.match_case for s in cfg.services] == [True, False]
    with pytest.raises(ConfigError, match=r"x.toml:3: services\[0\].match_case: expected true or false"):
        parse_config("[[services]]\nname = 'Three'\nmatch_case = 'yes'\n", "x.toml")


def test_duplicate_names_and_type_rules() -> None:
    with pytest.raises(ConfigError, match="duplicate service"):
        parse_config("[[services]]\nname = 'A'\n[[services]]\nname = 'a'\n")
    with pytest.raises(ConfigError, match=r"sources\[0\].url: required for type 'rss'"):
        parse_config("[[sources]]\nname = 's'\ntype = 'rss'\n")
    src = "[[sources]]\nname = 's'\ntype = 'rss'\nurl = 'https://x/feed'\n"
    with pytest.raises(ConfigError, match=r"sources\[0\].interval: must be 10 to 604800 seconds"):
        parse_config(src + "interval = 1\n")
    # Values TOML accepts that would overflow a datetime or hang a request far from the file.
    with pytest.raises(ConfigError, match=r":5: sources\[0\].interval: must be 10 to 604800"):
        parse_config(src + "interval = 99999999999999\n")
    assert parse_config(src + "max_entries = 50\n").sources[0].max_entries == 50
    for value, message in (("0", "must be 1 to 100000"), ("true", "expected an integer, got true")):
        with pytest.raises(ConfigError, match=rf":5: sources\[0\].max_entries: {message}"):
            parse_config(src + f"max_entries = {value}\n")
    with pytest.raises(ConfigError, match=r":5: sources\[0\].max_entries: only for the feeds of types 'rss' and "):
        parse_config("[[sources]]\nname = 's'\ntype = 'hackernews'\nquery = 'down'\nmax_entries = 50\n")
    for value in ("inf", "nan", "-inf"):
        with pytest.raises(ConfigError, match=rf":5: sources\[0\].timeout: expected a finite number, got {value}"):
            parse_config(src + f"timeout = {value}\n")
    with pytest.raises(ConfigError, match=r":2: collect.backoff_base: must be more than 0 and at most 604800"):
        parse_config("[collect]\nbackoff_base = 1e299\nbackoff_max = 1e300\n")
    with pytest.raises(ConfigError, match=r":2: collect.backoff_max: must be at least backoff_base \(60\) and at most"):
        parse_config("[collect]\nbackoff_max = 1e300\n")
    # A backoff_base past the default backoff_max named backoff_max, which the file did not set, at the header's line.
    with pytest.raises(ConfigError, match=r"^x.toml:2: collect.backoff_base: must be at most backoff_max \(3600\), "
                                          r"got 7200$"):
        parse_config("[collect]\nbackoff_base = 7200\n", "x.toml")
    with pytest.raises(ConfigError, match=r":3: collect.backoff_max: must be at least backoff_base \(7200\) and at "):
        parse_config("[collect]\nbackoff_base = 7200\nbackoff_max = 3000\n")


def test_secrets_stay_out_of_the_config() -> None:
    src = "[[sources]]\nname = 'b'\ntype = 'bluesky'\nquery = 'down'\n"
    # A value that is not a variable name is the secret itself: refused without echoing it.
    with pytest.raises(ConfigError, match=r":5: sources\[0\].env.password: must name an environment variable") as info:
        parse_config(src + "env = { identifier = 'BSKY_ID', password = 'abcd-efgh-ijkl-mnop' }\n")
    assert "abcd" not in str(info.value)
    with pytest.raises(ConfigError, match=r"sources\[0\].env.token: not a credential of type 'bluesky' "
                                          r"\(it takes identifier, password\)"):
        parse_config(src + "env = { token = 'BSKY_TOKEN' }\n")
    with pytest.raises(ConfigError, match=r":4: sources\[0\].url: must not hold a password"):
        parse_config("[[sources]]\nname = 'f'\ntype = 'rss'\nurl = 'https://me:hunter2@example.org/feed'\n")
    with pytest.raises(ConfigError, match=r":2: store.hash_key_env: must name an environment variable"):
        parse_config("[store]\nhash_key_env = 'correct horse battery'\n")
    parse_config(src + "env = { identifier = 'BSKY_ID', password = 'BSKY_APP_PASSWORD' }\n")
    # A number is the secret itself too (a PIN, a numeric password): "expected a string, got 20240101" echoed it.
    for text, key in ((src + "env = { identifier = 'BSKY_ID', password = 20240101 }\n", "sources[0].env.password"),
                      ("[alerts.smtp]\nusername_env = 'U'\npassword_env = 20240101\n", "alerts.smtp.password_env"),
                      ("[store]\nhash_key_env = 20240101.5\n", "store.hash_key_env")):
        with pytest.raises(ConfigError) as info:
            parse_config(text)
        assert str(info.value).endswith(f"{key}: expected the name of an environment variable, as a string; the "
                                        "value is not shown, as it may be the secret itself")
        assert "2024" not in str(info.value)


def test_status_page_must_be_a_url() -> None:
    # Without a scheme it passed `config check` and failed only when polled, under the generated source's name.
    with pytest.raises(ConfigError, match=r":3: services\[0\].status_page: must start with http"):
        parse_config("[[services]]\nname = 'Discord'\nstatus_page = 'discordstatus.com'\n")


def test_a_status_feed_given_as_a_statuspage_is_refused_with_the_type_it_needs() -> None:
    # A real feed from the multi-status list: polled as a Statuspage it was <feed>/api/v2/incidents.json, a 404.
    url = "https://status.us-west-1.saucelabs.com/history.atom"
    with pytest.raises(ConfigError, match=r":5: sources\[0\].url: is a status feed \(RSS/Atom\), not a Statuspage "
                                          r"page or its .json API: give it type 'status_feed'"):
        parse_config(f"[[sources]]\nname = 's'\ntype = 'statuspage'\n\nurl = '{url}'\n")
    with pytest.raises(ConfigError, match=r":3: services\[0\].status_page: is a status feed .* give it a "
                                          r"\[\[sources\]\] entry of type 'status_feed'"):
        parse_config(f"[[services]]\nname = 'Sauce'\nstatus_page = '{url}'\n")
    assert parse_config(f"[[services]]\nname = 'Sauce'\n\n[[sources]]\nname = 's'\ntype = 'status_feed'\n"
                        f"url = '{url}'\nservices = ['Sauce']\n").sources[0].url == url


def test_alert_route_and_webhook_errors_name_the_entry_and_its_line() -> None:
    text = ("[alerts]\n\n[[alerts.webhooks]]\nname = 'ops'\nurl_env = 'OPS_URL'\n\n"
            "[[alerts.routes]]\nname = 'r'\nwebhooks = ['ops', 'nope']\n")
    with pytest.raises(ConfigError, match=r"x.toml:9: alerts.routes\[0\].webhooks\[1\]: route 'r' names unknown "
                                          r"webhook 'nope'"):
        parse_config(text, "x.toml")
    text = text.replace("'ops', 'nope'", "'ops'")
    with pytest.raises(ConfigError, match=r"x.toml:12: alerts.routes\[1\].name: duplicate route name 'r'"):
        parse_config(text + "\n[[alerts.routes]]\nname = 'r'\nwebhooks = ['ops']\n", "x.toml")
    with pytest.raises(ConfigError, match=r"x.toml:12: alerts.webhooks\[1\].name: duplicate webhook name 'ops'"):
        parse_config(text + "\n[[alerts.webhooks]]\nname = 'ops'\nurl_env = 'OPS_URL'\n", "x.toml")


_PD = '[[alerts.webhooks]]\nname = "pd"\nformat = "pagerduty"\n'


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (_PD + 'timeout = 5\n', ':1: alerts.webhooks[0].routing_key_env: required for format = "pagerduty": the '
         'environment variable holding the integration\'s routing key (never the key itself); '
         'alerts.webhooks[0].format is set on line 3'),
        (_PD + 'routing_key_env = "0f3a9c2e7b1d4e6f8a0b2c4d6e8f0a1b"\n', ':4: alerts.webhooks[0].routing_key_env: '
         'must name an environment variable, not hold the routing key itself'),
        (_PD + 'routing_key_env = "PD_KEY"\nurl = "https://events.eu.pagerduty.com/v2/enqueue"\nurl_env = "PD_URL"\n',
         ":5: alerts.webhooks[0].url: give the endpoint in url or in url_env, not both; alerts.webhooks[0].url_env "
         "is set on line 6"),
        (_PD + 'routing_key_env = "PD_KEY"\nurl = "javascript:alert(1)"\n', ":5: alerts.webhooks[0].url: must be an "
         "http:// or https:// URL with a host, without spaces, quotes, control characters or a user name (a URL "
         "holding a credential goes in url_env)"),
        (_PD + 'routing_key_env = "PD_KEY"\nurl = "https://proxy.example.org/pd?token=abc"\n',
         ":5: alerts.webhooks[0].url: holds what looks like a credential (query parameter token); put the URL in an "
         "environment variable and name it in url_env"),
        (_PD + 'routing_key_env = "PD_KEY"\nseverity = "high"\n', ":5: alerts.webhooks[0].severity: must be one of "
         "'critical' | 'error' | 'warning' | 'info', got 'high'"),
        ('[[alerts.webhooks]]\nname = "ops"\ntimeout = 5\n', ':1: alerts.webhooks[0].url_env: required for format = '
         '"json": the environment variable holding the webhook\'s URL (the URL itself is a secret)'),
        ('[[alerts.webhooks]]\nname = "ops"\nformat = "slack"\nurl_env = "OPS"\nrouting_key_env = "PD_KEY"\n',
         ':5: alerts.webhooks[0].routing_key_env: only a webhook with format = "pagerduty" takes it; '
         'alerts.webhooks[0].format is set on line 3'),
        ('[[alerts.webhooks]]\nname = "ops"\nurl_env = "OPS"\nurl = "https://hooks.example.org/T0/B0/secret"\n',
         ':4: alerts.webhooks[0].url: only a webhook with format = "pagerduty" takes it (a json webhook\'s '
         'URL is its secret: give it in url_env)'),
        ('[[alerts.webhooks]]\nname = "ops"\nformat = "teams"\n', ':1: alerts.webhooks[0].url_env: required for '
         'format = "teams": the environment variable holding the webhook\'s URL (the URL itself is a secret); '
         'alerts.webhooks[0].format is set on line 3'),
        ('[[alerts.webhooks]]\nname = "ops"\nformat = "teams"\nurl_env = "OPS"\n'
         'url = "https://prod-1.westus.logic.azure.com/workflows/x/triggers/manual/paths/invoke?sig=abc"\n',
         ':5: alerts.webhooks[0].url: only a webhook with format = '
         '"pagerduty" takes it (a teams webhook\'s URL is its secret: give it in url_env); alerts.webhooks[0].format '
         'is set on line 3'),
        # The newcomer's way: the Slack URL pasted into url, no url_env. It said "url_env: required", at line 1.
        ('[[alerts.webhooks]]\nname = "ops"\nformat = "slack"\nurl = "https://hooks.slack.com/services/T0/B0/x"\n',
         ':4: alerts.webhooks[0].url: only a webhook with format = "pagerduty" takes it (a slack webhook\'s URL is '
         'its secret: give it in url_env); alerts.webhooks[0].format is set on line 3'),
    ],
    ids=["no routing key", "the key itself", "url and url_env", "not http", "credential in url", "severity",
         "json without url_env", "routing key on slack", "url on json", "teams without url_env", "url on teams",
         "url without url_env"],
)
def test_a_pagerduty_webhook_needs_its_routing_key_from_the_environment(text: str, error: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "x.toml")
    assert str(info.value) == f"x.toml{error}"


def test_a_pagerduty_webhook_needs_no_url() -> None:
    cfg = parse_config(_PD + 'routing_key_env = "PD_KEY"\nseverity = "critical"\n'
                       '[[alerts.routes]]\nname = "pager"\nwebhooks = ["pd"]\n')
    [hook] = cfg.alerts.webhooks
    assert (hook.url, hook.url_env, hook.routing_key_env, hook.severity) == ("", "", "PD_KEY", "critical")


def test_a_pagerduty_endpoint_whose_host_is_not_a_valid_international_name_is_refused() -> None:
    # Every event to it was retried until give_up_after: httpx raised idna's IDNAError, no httpx error.
    with pytest.raises(ConfigError) as info:
        parse_config(_PD + 'routing_key_env = "PD_KEY"\nurl = "https://xn--zz.example/v2/enqueue"\n')
    assert str(info.value) == ("feeds.toml:5: alerts.webhooks[0].url: has host xn--zz.example, which is not a valid "
                               "internationalised domain name (IDNA: Invalid A-label)")


def test_config_check_and_miner_run_name_an_unset_routing_key_variable(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(_PD + 'routing_key_env = "T_PD_KEY"\n[[alerts.routes]]\nname = "pager"\nwebhooks = ["pd"]\n')
    monkeypatch.delenv("T_PD_KEY", raising=False)
    result = CliRunner().invoke(main, ["config", "check", str(cfg)])
    assert result.exit_code == 0, result.output
    assert ("warning: alerts.webhooks[0].routing_key_env: T_PD_KEY is not set: every alert to this webhook fails "
            "until miner is started with it") in result.output
    warn_unset_alert_env(load_config(cfg), logging.getLogger("miner.test"), {})
    assert "alerts.webhooks[0].routing_key_env: T_PD_KEY is not set: every alert to this webhook fails" in caplog.text
    monkeypatch.setenv("T_PD_KEY", "0f3a9c2e7b1d4e6f8a0b2c4d6e8f0a1b")
    result = CliRunner().invoke(main, ["config", "check", str(cfg)])
    assert "T_PD_KEY" not in result.output and "0f3a9c2e" not in result.output


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('[alerts]\nfrom_addr = "miner <miner@example.org>\\r\\nBcc: evil@x.org"\n', ":2: alerts.from_addr: "),
        ('[alerts]\nsubject_prefix = "[miner]\\n"\n', ":2: alerts.subject_prefix: "),
        ('[[alerts.routes]]\nname = "r"\nemail = ["a@example.org"]\n'
         'list_unsubscribe = "mailto:u@example.org>\\r\\nBcc: x@y.org"\n', ":4: alerts.routes[0].list_unsubscribe: "),
        ('[[services]]\nname = "A\\r\\nBcc: x@y.org"\n', ":2: services[0].name: "),
        ('[[services]]\nname = "A"\nprovider = "Me\\u202eta"\n', ":3: services[0].provider: "),
    ],
    ids=["from_addr", "subject_prefix", "list_unsubscribe", "service name", "provider"],
)
def test_control_characters_in_names_and_header_values_are_refused(text: str, where: str) -> None:
    # They passed `config check`; a CR/LF then failed every email for 72 h (or printed a name across two lines).
    with pytest.raises(ConfigError) as err:
        parse_config(text, "x.toml")
    assert where in str(err.value) and "control or format characters" in str(err.value)
    assert "\n" not in str(err.value) and "\r" not in str(err.value)


def test_route_email_with_a_control_character_and_smtp_host_with_a_port_are_refused() -> None:
    with pytest.raises(ConfigError, match=r":3: alerts.routes\[0\].email\[0\]: .* is not an email address"):
        parse_config('[[alerts.routes]]\nname = "r"\nemail = ["a@exam\\u0000ple.org"]\n', "x.toml")
    with pytest.raises(ConfigError, match=r":2: alerts.smtp.host: give the port in `port`"):
        parse_config('[alerts.smtp]\nhost = "smtp.example.org:25"\n', "x.toml")
    with pytest.raises(ConfigError, match=r":2: alerts.smtp.host: must be a host name"):
        parse_config('[alerts.smtp]\nhost = "smtp.example.org\\n"\n', "x.toml")
    assert parse_config('[alerts.smtp]\nhost = "::1"\n', "x.toml").alerts.smtp.host == "::1"


@pytest.mark.parametrize("addr", ["a,b@example.org", "a;b@example.org", "oncall@example..org", "a(b)c@example.org"])
def test_route_email_that_mail_headers_read_otherwise_is_refused(addr: str) -> None:
    # "a,b@example.org" was two recipients in the To header ("a" and "b@example.org") and a third in RCPT TO.
    with pytest.raises(ConfigError, match=r":3: alerts.routes\[0\].email\[0\]: .* is not an email address"):
        parse_config(f'[[alerts.routes]]\nname = "r"\nemail = ["{addr}"]\n', "x.toml")


@pytest.mark.parametrize("value", ["Miner, Alerts <miner@example.org>", "miner@example.org, boss@example.org",
                                   "miner alerts@example.org", "miner <miner@example.org> extra", "miner <>"])
def test_from_addr_that_is_not_one_address_is_refused(value: str) -> None:
    # The first was the envelope sender "Miner" (no domain), also taken for the Message-ID's domain.
    with pytest.raises(ConfigError, match=r":2: alerts.from_addr: .* is not one email address"):
        parse_config(f'[alerts]\nfrom_addr = "{value}"\n', "x.toml")


@pytest.mark.parametrize("value", ['\\"Miner, Alerts\\" <miner@example.org>', "<miner@example.org>",
                                   "miner@example.org (Miner)", "Mïner <miner@example.org>", "miner <miner@localhost>",
                                   "miner v2.0 <miner@example.org>"])
def test_from_addr_with_a_quoted_or_non_ascii_name_is_fine(value: str) -> None:
    parse_config(f'[alerts]\nfrom_addr = "{value}"\n[[alerts.routes]]\nname = "r"\n'
                 'email = ["oncall@example.org", "x.y+tag@sub.example.org", "ünï@example.org"]\n', "x.toml")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")


def test_a_file_far_too_large_for_a_config_is_refused_before_it_is_read_whole(tmp_path: Path) -> None:
    # /dev/zero (or a log file given by mistake) was read until memory ran out: "internal error: MemoryError".
    big = tmp_path / "feeds.toml"
    big.write_bytes(b"# " + b"x" * (16 * 2**20 - 3) + b"\n")
    assert load_config(big).services == ()  # 16 MiB is still read
    big.write_bytes(big.read_bytes() + b"\n")
    for path in (big, Path("/dev/zero")):
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert str(info.value) == (f"{path}: larger than 16 MiB: not a feeds.toml (one watching a thousand sources is "
                                   "well under 1 MiB)")


def test_file_saved_with_a_byte_order_mark_loads_and_errors_keep_their_lines(tmp_path: Path) -> None:
    path = tmp_path / "feeds.toml"
    path.write_bytes(b"\xef\xbb\xbf" + (ROOT / "feeds.toml").read_bytes())
    assert load_config(path) == replace(load_config(ROOT / "feeds.toml"), path=str(path))
    path.write_bytes(b"\xef\xbb\xbf[detector]\nbogus = 1\n")
    with pytest.raises(ConfigError, match=r"feeds.toml:2: detector.bogus: unknown key"):
        load_config(path)


def test_locate_nested_paths() -> None:
    text = "[store]\npath = 'x'\n\n[[sources]]\nname = 'a'\n\n[[sources]]\nname = 'b'\nenv = { k = 'V' }\n"
    assert locate(text, "store.path") == 2
    assert locate(text, "sources[1].name") == 8
    assert locate(text, "sources[1].env.k") == 9  # falls back to the enclosing key
    assert locate(text, "sources[1]") == 7


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        ("# dotted keys\n\nstore.path = 1\n", 3, "store.path"),
        ("[alerts]\nsubject_prefix = 'x'\nsmtp.port = 'high'\n", 3, "alerts.smtp.port"),
        ("[store]\n\n'path' = 1\n", 3, "store.path"),
        ('[classifier]\nmodel_dir = """\n[store]\npath = 1\n"""\n\n[store]\npath = 2\n', 8, "store.path"),
        ("services = [\n  { name = 'A' },\n  { name = 'B', aliases = 'b' },\n]\n", 3, "services[1].aliases"),
        ("[[store]]\npath = 'x'\n", 1, "store"),
    ],
    ids=["top-level dotted key", "dotted key in a table", "quoted key", "after a multi-line string",
         "inline table in an array over lines", "array of tables for a table"],
)
def test_errors_name_the_line_of_the_key_however_it_is_written(text: str, line: int, key: str) -> None:
    # Each was reported at the table's header, at a line inside a string, or with no line at all.
    with pytest.raises(ConfigError) as info:
        parse_config(text, "x.toml")
    assert (info.value.line, info.value.key) == (line, key)



@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('[alerts.smtp]\nhost = "mail.example.org"\nusername_env = "SMTP_USER"\n',
         "x.toml:3: alerts.smtp.username_env: needs password_env too: set both username_env and password_env, or "
         "neither"),
        ('[alerts]\nsmtp.host = "mail.example.org"\nsmtp.password_env = "SMTP_PASSWORD"\n',
         "x.toml:3: alerts.smtp.password_env: needs username_env too: set both username_env and password_env, or "
         "neither"),
        ('[[services]]\nname = "A"\n\n[[alerts.maintenance]]\nservice = "A"\nstart = "2026-01-01T00:00"\n'
         'end = "2026-01-01T02:00"\n\n[[alerts.maintenance]]\nservice = "A"\ncomment = "upgrade"\n'
         'end = "2026-02-01T02:00"\n',
         "x.toml:12: alerts.maintenance[1].end: a one-off window needs start and end (or give cron + "
         "duration_minutes)"),
    ],
    ids=["smtp username_env alone", "smtp password_env alone", "maintenance end alone"],
)
def test_one_key_of_a_pair_names_the_key_given_and_its_line(text: str, error: str) -> None:
    # Each named the key the file leaves out, so the line was the table's header (or the entry's [[...]] header).
    with pytest.raises(ConfigError) as info:
        parse_config(text, "x.toml")
    assert str(info.value) == error

def test_unknown_time_zone_names_the_timezone_key_and_its_line() -> None:
    # It was reported at the entry (alerts.routes[0]) and the line of its [[...]] header.
    route = '[[alerts.routes]]\nname = "r"\nemail = ["a@example.org"]\ntimezone = "Europe/Berlín"\n'
    with pytest.raises(ConfigError, match=r"x.toml:4: alerts.routes\[0\].timezone: unknown time zone 'Europe/Berlín'"):
        parse_config(route, "x.toml")
    window = ('[[services]]\nname = "A"\n\n[[alerts.maintenance]]\nservice = "A"\ncron = "0 2 * * 0"\n'
              'timezone = "CEST"\n')
    with pytest.raises(ConfigError, match=r"x.toml:7: alerts.maintenance\[0\].timezone: unknown time zone 'CEST'"):
        parse_config(window, "x.toml")
    with pytest.raises(ConfigError, match=r"x.toml:3: detector.timezone: unknown time zone 'EST5'"):
        parse_config('[detector]\nbucket_minutes = 15\ntimezone = "EST5"\n', "x.toml")
    with pytest.raises(ConfigError, match=r"x.toml:3: services\[0\].timezone: unknown time zone 'Kampala'"):
        parse_config('[[services]]\nname = "MTN"\ntimezone = "Kampala"\n', "x.toml")


def test_a_folder_of_the_zone_database_is_an_unknown_time_zone() -> None:
    # "Europe" is a directory of zone files: ZoneInfo raised IsADirectoryError, an internal error of `config check`.
    route = '[[alerts.routes]]\nname = "r"\nemail = ["a@example.org"]\ntimezone = "Europe"\n'
    with pytest.raises(ConfigError, match=r"x.toml:4: alerts.routes\[0\].timezone: unknown time zone 'Europe'"):
        parse_config(route, "x.toml")


@pytest.mark.parametrize(("zone", "why"), [
    ("localtime", "the machine's own zone, which another machine (or a change of its settings) makes another"),
    ("right/Europe/Berlin", "a zone counting leap seconds, which miner's times do not: its clocks change 27 s late"),
])
def test_a_zone_name_that_is_no_iana_zone_is_refused_saying_why(zone: str, why: str) -> None:
    # Both are files of Debian's zone folder, so they passed: "localtime" is whatever /etc/localtime is, and a
    # right/ zone reads UTC times as if leap seconds were counted in them (a digest or window moved 27 s).
    window = ('[[services]]\nname = "A"\n\n[[alerts.maintenance]]\nservice = "A"\ncron = "0 2 * * 0"\n'
              f'timezone = "{zone}"\n')
    with pytest.raises(ConfigError) as info:
        parse_config(window, "x.toml")
    assert str(info.value) == (f"x.toml:7: alerts.maintenance[0].timezone: {zone!r} is {why}; use an IANA name such "
                               "as 'Europe/Berlin'")

def test_a_status_page_belongs_to_one_service() -> None:
    # Its incidents were stored for the source's first service only: for none when it listed none, and a second
    # service given the same page by status_page (which the source stands in for) got none of them, silently.
    page = '[[sources]]\nname = "mine"\ntype = "statuspage"\nurl = "https://status.x.example"\n'
    two = '[[services]]\nname = "A"\n\n[[services]]\nname = "B"\nstatus_page = "https://STATUS.x.example/"\n\n'
    with pytest.raises(ConfigError, match=r"x.toml:6: services\[1\].status_page: source 'mine' polls this page for "
                                          r"service 'A', so 'B' would get none of its incidents"):
        parse_config(two + page + 'services = ["A"]\n', "x.toml")
    assert [s.name for s in parse_config(two + page + 'services = ["b"]\n', "x.toml").sources] == ["mine"]
    for services, got in (("", 0), ('services = ["A", "B"]\n', 2)):
        with pytest.raises(ConfigError, match=rf"x.toml:\d+: sources\[0\].services: a status page's incidents belong "
                                              rf"to one service: list exactly one \(got {got}\)"):
            parse_config(two + page.replace("statuspage", "status_feed") + services, "x.toml")


def test_a_status_page_given_by_its_api_url_is_the_same_page() -> None:
    # A statuspage source's url may be the page's incidents.json (or summary.json): a service's status_page of that
    # page added a second source polling it (each poll's request made twice), and a page given to two services so
    # was not refused as it is given by its base URL.
    page = ('[[services]]\nname = "GitHub"\nstatus_page = "https://www.githubstatus.com"\n\n'
            '[[sources]]\nname = "gh"\ntype = "statuspage"\nurl = "https://www.githubstatus.com/api/v2/{}.json"\n'
            'services = ["{}"]\n')
    for api in ("incidents", "summary", "incidents/unresolved"):
        assert [s.name for s in parse_config(page.format(api, "GitHub"), "x.toml").sources] == ["gh"]
    trailing = page.format("incidents", "GitHub").replace('.json"', '.json/"')  # the collector takes it so too
    assert [s.name for s in parse_config(trailing, "x.toml").sources] == ["gh"]
    other = '[[services]]\nname = "Copilot"\n\n' + page.format("incidents", "Copilot")
    with pytest.raises(ConfigError, match=r"x.toml:6: services\[1\].status_page: source 'gh' polls this page for "
                                          r"service 'Copilot'"):
        parse_config(other, "x.toml")

def test_status_pages_are_each_read_once_not_compared_with_every_source(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each service's status_page was compared with every source, parsing both URLs each time: 2,000 services with
    # a page and 2,000 statuspage sources took `config check` (and each SIGHUP reload) half a minute. Counted in URL
    # reads, not timed: a load reads each page a bounded number of times, however many there are.
    n = 300
    text = "".join(f'[[services]]\nname = "S{i}"\nstatus_page = "https://status{i}.example.com"\n' for i in range(n))
    text += "".join(f'[[sources]]\nname = "p{i}"\ntype = "statuspage"\nurl = "https://page{i}.example.com"\n'
                    f'services = ["S{i}"]\n' for i in range(n))
    # One page given both ways is still one source, and still its own service's.
    text += '[[sources]]\nname = "own"\ntype = "statuspage"\nurl = "https://STATUS7.example.com/"\nservices = ["S7"]\n'
    reads = 0

    def counted(url: str) -> SplitResult:
        nonlocal reads
        reads += 1
        return urlsplit(url)

    monkeypatch.setattr(source_identity, "urlsplit", counted)
    cfg = parse_config(text, "x.toml")
    assert reads <= 10 * (2 * n + 1), reads
    assert len(cfg.sources) == 2 * n and "status:s7" not in {s.name for s in cfg.sources}
    with pytest.raises(ConfigError, match=r"services\[8\].status_page: source 'own' polls this page for service 'S7'"):
        parse_config(text.replace("https://STATUS7.example.com/", "https://status8.example.com"), "x.toml")


def test_status_page_sources_of_names_in_other_scripts_are_named_apart() -> None:
    # Their names had no ASCII letter or digit left: both sources were "status:", a clash the config refused.
    text = ('[[services]]\nname = "Яндекс"\nstatus_page = "https://status.yandex.example"\n\n'
            '[[services]]\nname = "ВКонтакте"\nstatus_page = "https://status.vk.example"\n\n'
            '[[services]]\nname = "..."\nstatus_page = "https://status.dots.example"\n\n'
            '[[services]]\nname = "Telefónica"\nstatus_page = "https://status.telefonica.example"\n')
    names = [s.name for s in parse_config(text, "x.toml").sources]
    # A name with ASCII letters keeps the source name stored so far (its other letters as "-").
    assert names[:2] + names[3:] == ["status:яндекс", "status:вконтакте", "status:telef-nica"]
    assert names[2].startswith("status:") and len(names[2]) == len("status:") + 8


def test_status_page_source_whose_name_is_taken_names_the_status_page_line() -> None:
    # The error named sources[1], which is nowhere in the file, and gave no line.
    text = ('[[services]]\nname = "Git Hub"\nstatus_page = "https://a.example.org"\n\n'
            '[[services]]\nname = "Git.Hub"\nstatus_page = "https://b.example.org"\n')
    with pytest.raises(ConfigError, match=r"x.toml:7: services\[1\].status_page: its source would be named "
                                          r"'status:git-hub', which another source has"):
        parse_config(text, "x.toml")
    # The way out the message gives works: the second page gets a source of its own.
    own = ('\n[[sources]]\nname = "status:git-hub-b"\ntype = "statuspage"\nurl = "https://b.example.org"\n'
           'services = ["Git.Hub"]\n')
    cfg = parse_config(text + own, "x.toml")
    assert sorted(s.name for s in cfg.sources) == ["status:git-hub", "status:git-hub-b"]
    with pytest.raises(ConfigError, match=r"x.toml:8: services\[0\].status_page: its source would be named "):
        parse_config('[[sources]]\nname = "status:git-hub"\ntype = "rss"\nurl = "https://x.example.org/feed"\n\n'
                     + text.split("\n\n")[0] + "\n", "x.toml")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[store]\nretention_days = 1000000\n", ":2: store.retention_days: must be at most 36500"),
        ("[detector]\ncooldown_minutes = 1e300\n", ":2: detector.cooldown_minutes: must be at most 527040 minutes"),
        ("[detector]\nmax_fill_hours = 1e7\n", ":2: detector.max_fill_hours: must be at most 8784 hours"),
        ("[alerts]\nenabled = false\n[detector]\nsettle_minutes = 1e300\n",
         ":4: detector.settle_minutes: must be at most 527040 minutes"),
        ("[alerts]\nlease_seconds = 1e11\n", ":2: alerts.lease_seconds: must be at most 31622400 seconds"),
        ("[alerts]\nchart_hours = 1e300\n", ":2: alerts.chart_hours: must be at most 8784 hours"),
        ("[alerts.smtp]\ntimeout = 1e300\n", ":2: alerts.smtp.timeout: must be more than 0 and at most 600"),
        ("[[alerts.webhooks]]\nname = 'w'\nurl_env = 'W'\ntimeout = 1e300\n",
         ":4: alerts.webhooks[0].timeout: must be more than 0 and at most 600"),
        ("[[alerts.routes]]\nname = 'r'\nemail = ['a@example.org']\ngroup_wait = 1e300\n",
         ":4: alerts.routes[0].group_wait: must be at most 31622400 seconds"),
        ("[[services]]\nname = 'A'\n[[alerts.maintenance]]\nservice = 'A'\ncron = '0 2 * * 0'\n"
         "duration_minutes = 1e12\n", ":6: alerts.maintenance[0].duration_minutes: must be at most 527040 minutes"),
    ],
    ids=["retention", "cooldown", "max_fill", "settle", "lease", "chart", "smtp timeout", "webhook timeout",
         "route group_wait", "maintenance duration"],
)
def test_spans_too_long_for_a_datetime_are_refused(text: str, error: str) -> None:
    # Each passed config check, then overflowed a datetime in the middle of a job (prune, outbox send, detection).
    with pytest.raises(ConfigError) as info:
        parse_config(text, "x.toml")
    assert f"x.toml{error}" in str(info.value)
    # A year is allowed, in the key's own unit.
    parse_config(re.sub(r"= (1e\d+|1000000)$", "= 365", text, flags=re.M), "x.toml")


def test_bucket_retention_is_checked_against_the_posts_kept_and_what_the_detector_reads() -> None:
    cases = {
        "[store]\nbucket_retention_days = 0\n": ":2: store.bucket_retention_days: must be at least 1",
        "[store]\nretention_days = 30\nbucket_retention_days = 20\n":
            ":3: store.bucket_retention_days: must be at least retention_days (30)",
        "[store]\nretention_days = 1\nbucket_retention_days = 2\n[detector]\nmax_fill_hours = 72\n":
            ":3: store.bucket_retention_days: must cover detector.max_fill_hours (72 h) and two buckets (4 days)",
    }
    for text, error in cases.items():
        with pytest.raises(ConfigError) as info:
            parse_config(text, "x.toml")
        assert f"x.toml{error}" in str(info.value)
    assert parse_config("[store]\nretention_days = 1\nbucket_retention_days = 2\n").store.bucket_days == 2
    # Not given: 400 days, or the posts' retention when longer (a config valid before the key existed stays so).
    assert parse_config("").store.bucket_days == 400
    assert parse_config("[store]\nretention_days = 3650\n").store.bucket_days == 3650


def test_server_settings_that_cannot_work_are_refused() -> None:
    # report_rate_per_hour = 0 passed config check, then `miner run` stopped at start with an internal ValueError
    # (even with the server off); host = "" listened on every interface instead of loopback.
    cases = {"report_rate_per_hour = 0": ":3: server.report_rate_per_hour: must be at least 1",
             'host = ""': ':3: server.host: must not be empty',
             'host = "localhost:8080"': ":3: server.host: give the port in `port`",
             'host = "127.0.0.1 "': ":3: server.host: must be a host name or address without spaces",
             'trusted_proxies = ["127.0.0.1", "nginx"]': ":3: server.trusted_proxies[1]: must be an IP address or "
                                                         "network such as 10.0.0.0/8, got 'nginx'",
             "report_ipv6_prefix = 16": ":3: server.report_ipv6_prefix: must be 32..128 (56: a household's /56, 64: "
                                        "each /64, 128: each address), got 16",
             "report_ipv6_prefix = 129": ":3: server.report_ipv6_prefix: must be 32..128",
             'report_ipv6_prefix = "/64"': ":3: server.report_ipv6_prefix: expected an integer, got '/64'",
             # Never a Host header's name: every request would be answered 421.
             'allowed_hosts = ["https://status.example.org"]': ":3: server.allowed_hosts[0]: must be a host name "
                                                              "such as status.example.org, without a scheme, port",
             'allowed_hosts = ["a.example", "status.example.org:443"]': ":3: server.allowed_hosts[1]: must be",
             'allowed_hosts = [""]': ":3: server.allowed_hosts[0]: must be",
             # A wildcard, as Django's ALLOWED_HOSTS takes, matches no Host header: every name was refused 421.
             'allowed_hosts = ["*"]': ":3: server.allowed_hosts[0]: must be a host name or address, not a pattern: "
                                      "list each name (leave the list empty to answer any Host), got '*'",
             'allowed_hosts = ["a.example", "*.example.org"]': ":3: server.allowed_hosts[1]: must be a host name or",
             'allowed_hosts = [".example.org"]': ":3: server.allowed_hosts[0]: must be a host name or address, not",
             'allowed_hosts = ["status..example.org"]': ":3: server.allowed_hosts[0]: must be a host name or",
             # A browser sends an international name in its xn-- form: this matched no request, and was called a
             # pattern.
             'allowed_hosts = ["bücher.example"]': ":3: server.allowed_hosts[0]: must be ASCII: give an international "
                                                   "name in the form browsers send ('xn--bcher-kva.example'), got "
                                                   "'bücher.example'",
             'allowed_hosts = "status.example.org"': ":3: server.allowed_hosts: expected a list"}
    for setting, error in cases.items():
        with pytest.raises(ConfigError) as info:
            parse_config(f"[server]\nenabled = true\n{setting}\n", "x.toml")
        assert f"x.toml{error}" in str(info.value)
    assert parse_config('[server]\nhost = "0.0.0.0"\nreport_rate_per_hour = 1\n').server.host == "0.0.0.0"
    proxies = parse_config('[server]\ntrusted_proxies = ["10.1.2.3", "10.0.0.0/8", "fd00::/8"]\n').server
    assert proxies.trusted_proxies == ("10.1.2.3", "10.0.0.0/8", "fd00::/8")
    assert proxies.report_ipv6_prefix == 56  # a household's network, as ISPs delegate it
    assert parse_config("[server]\nreport_ipv6_prefix = 128\n").server.report_ipv6_prefix == 128
    hosts = parse_config('[server]\nallowed_hosts = ["status.example.org", "status.example.org.", "[::1]", '
                         '"xn--bcher-kva.example", "my_host", "10.0.0.7"]\n').server
    assert hosts.allowed_hosts == ("status.example.org", "status.example.org.", "[::1]", "xn--bcher-kva.example",
                                   "my_host", "10.0.0.7")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://", "has no valid host"),
        ("https://status.exa mple.org", "has no valid host"),
        ("https://example.org/feed ", "must not contain control characters or start or end with a space"),
        # At the start it was told "must start with http:// or https://", which it seemed to.
        (" https://example.org/feed", "must not contain control characters or start or end with a space"),
        ("\\thttps://example.org/feed", "must not contain control characters or start or end with a space"),
        ("https://example.org:99999/feed", "is not a valid URL (check the host and the port)"),
        ("https://example.org:443:80/feed", "is not a valid URL (check the host and the port)"),
        ("http://[::1/feed", "is not a valid URL (check the host and the port)"),
        # Connecting to port 0 fails at every poll; it passed as a port in range.
        ("https://example.org:0/feed", "has port 0, which nothing can be reached at"),
        ("http://[::1]:000/feed", "has port 0, which nothing can be reached at"),
        # httpx raised idna's IDNAError at every poll (an internal error of the collector), or refused the name.
        ("http://xn--zz.example/feed", "has host xn--zz.example, which is not a valid internationalised domain name "
                                       "(IDNA: Invalid A-label)"),
        ("http://status.XN--.example/feed",
         "has host status.xn--.example, which is not a valid internationalised domain name (IDNA: Malformed A-label, "
         "no Punycode eligible content found)"),
        ("https://☃.example/feed", "has host ☃.example, which is not a valid internationalised domain name "
                                        "(IDNA: Codepoint U+2603 at position 1 of '☃' not allowed)"),
    ],
)
def test_urls_that_can_never_be_fetched_are_refused(url: str, problem: str) -> None:
    # They passed config check and failed every poll ("bad URL"); a broken IPv6 bracket was even reported at the
    # [[sources]] header as "sources[0]: Invalid IPv6 URL".
    with pytest.raises(ConfigError) as info:
        parse_config(f'[[sources]]\nname = "s"\ntype = "rss"\n\nurl = "{url}"\n', "x.toml")
    assert f"x.toml:5: sources[0].url: {problem}" in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse_config(f'[[services]]\nname = "S"\nstatus_page = "{url}"\n', "x.toml")
    assert f"x.toml:3: services[0].status_page: {problem}" in str(info.value)


def test_urls_that_work_are_kept_as_written() -> None:
    for url in ("https://example.org/search?q=is down", "http://[::1]:8080/feed", "https://bot@example.org/feed",
                "https://xn--bcher-kva.example/feed", "https://bücher.example/feed", "http://my_host.lan/feed"):
        cfg = parse_config(f'[[sources]]\nname = "s"\ntype = "rss"\nurl = "{url}"\n', "x.toml")
        assert cfg.sources[0].url == url


@pytest.mark.parametrize("url", ["miner.example.org/status", "javascript:alert(1)", "file:///var/www/status.html",
                                 "https://miner.example.org/a b", "https://miner.example.org/\\u202e"])
def test_dashboard_url_the_emails_would_leave_out_is_refused(url: str) -> None:
    # It passed config check and the "Open the dashboard" link was silently missing from every email.
    with pytest.raises(ConfigError, match=r"x.toml:3: alerts.dashboard_url: must be an http:// or https:// URL"):
        parse_config(f'[alerts]\nsubject_prefix = "[m]"\ndashboard_url = "{url}"\n', "x.toml")
    assert parse_config('[alerts]\ndashboard_url = "https://miner.example.org/-/dashboards/outages?s=1"\n')


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ("retry_base = -1", "x.toml:3: alerts.retry_base: must be positive, got -1"),
        ("retry_base = 3600", "x.toml:3: alerts.retry_base: must be at most retry_max (1800), got 3600"),
        ("retry_max = 10", "x.toml:3: alerts.retry_max: must be at least retry_base (30), got 10"),
        ("retry_max = 300000", "x.toml:3: alerts.retry_max: must be at most give_up_after (259200), got 300000"),
        ("give_up_after = 100", "x.toml:3: alerts.give_up_after: must be at least retry_max (1800), got 100"),
    ],
)
def test_retry_settings_that_disagree_name_the_key_the_file_sets(settings: str, error: str) -> None:
    # Each was "alerts.retry_max: must be >= retry_base > 0" (or "give_up_after: must be at least retry_max"), at the
    # line of the [alerts] header when the file did not set the key named.
    with pytest.raises(ConfigError) as info:
        parse_config(f'[alerts]\nsubject_prefix = "[m]"\n{settings}\n', "x.toml")
    assert error in str(info.value)


def test_a_schedule_that_never_fires_is_refused() -> None:
    # "0 8 31 2 *" (31 February) passed config check; the digest or maintenance window then never happened.
    route = '[[alerts.routes]]\nname = "r"\nemail = ["a@example.org"]\ndigest = "{cron}"\n'
    with pytest.raises(ConfigError, match=r"x.toml:4: alerts.routes\[0\].digest: cron '0 8 31 2 \*' never fires"):
        parse_config(route.format(cron="0 8 31 2 *"), "x.toml")
    window = '[[services]]\nname = "A"\n[[alerts.maintenance]]\nservice = "A"\ncron = "{cron}"\n'
    with pytest.raises(ConfigError, match=r"x.toml:5: alerts.maintenance\[0\].cron: cron '0 2 31 4,6 \*' never fires"):
        parse_config(window.format(cron="0 2 31 4,6 *"), "x.toml")
    # Rare is not never: 29 February, and a day of the month that is ORed with a weekday, as in crontab.
    for cron in ("0 8 29 2 *", "0 8 31 2 1"):
        assert parse_config(route.format(cron=cron), "x.toml").alerts.routes[0].digest == cron


def test_values_nested_too_deeply_for_the_parser_are_a_config_error(tmp_path: Path) -> None:
    # tomllib recurses per level: the CLI answered "internal error: RecursionError".
    path = tmp_path / "feeds.toml"
    path.write_text("[store]\npath = 'x'\nx = " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["config", "check", str(path)])
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: {path}: not valid TOML: arrays or inline tables nested too deeply"


def test_a_file_not_in_utf8_names_the_line_of_the_first_bad_byte(tmp_path: Path) -> None:
    # The error gave a byte offset ("position 52") and no line.
    path = tmp_path / "feeds.toml"
    text = '[[services]]\nname = "Movistar"\n\n[[services]]\nname = "Telefónica"\n'
    for bom in (b"", b"\xef\xbb\xbf"):
        path.write_bytes(bom + text.encode("cp1252"))
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert str(info.value) == f"{path}:5: not UTF-8: byte 0xf3 cannot be read (save the file as UTF-8)"


def test_unknown_top_level_key_lists_only_keys_a_file_may_use() -> None:
    # The list named `path`, which is refused at the top level too.
    for text in ("nonsense = true\n", "path = 'feeds.toml'\n"):
        with pytest.raises(ConfigError) as info:
            parse_config(text, "x.toml")
        assert str(info.value).endswith("allowed here: alerts, classifier, collect, detector, groups, "
                                        "server, services, sources, store)")


def test_unknown_key_suggests_the_key_it_was_probably_meant_to_be() -> None:
    cases = {"[store]\nretention_day = 7\n": ":2: store.retention_day: unknown key (did you mean 'retention_days'?",
             "[[sources]]\nname = 's'\nintervall = 60\n": ":3: sources[0].intervall: unknown key (did you mean "
                                                           "'interval'?",
             "[alerts.smtp]\nhots = 'mail'\n": ":2: alerts.smtp.hots: unknown key (did you mean 'host'?",
             "[[service]]\nname = 'A'\n": ":1: service: unknown key (did you mean 'services'?"}
    for text, error in cases.items():
        with pytest.raises(ConfigError) as info:
            parse_config(text, "x.toml")
        assert f"x.toml{error}" in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse_config("[detector]\nbogus = 1\n", "x.toml")
    assert "did you mean" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[server]\nport = true\n", ":2: server.port: expected an integer, got true"),
        ("[server]\nenabled = 1\n", ":2: server.enabled: expected true or false, got 1"),
        ("[services]\nname = 'A'\n", ":1: services: expected an array of tables ([[services]] for each entry), "
                                     "got a table"),
        ("[[store]]\npath = 'x'\n", ":1: store: expected a table, got an array of tables ([[...]])"),
        ("[[services]]\nname = 'A'\n[[alerts.maintenance]]\nservice = 'A'\nstart = 2026-01-01T00:00:00Z\n",
         ":5: alerts.maintenance[0].start: expected a string, got the date-time 2026-01-01T00:00:00+00:00 "
         "(in quotes it is a string)"),
    ],
    ids=["bool for int", "int for bool", "table for array of tables", "array of tables for table", "date-time"],
)
def test_wrong_types_are_shown_as_the_file_writes_them(text: str, error: str) -> None:
    # Python's spelling came through: got True, got {'name': 'A'}, got datetime.datetime(2026, 1, 1, 0, 0, ...).
    with pytest.raises(ConfigError) as info:
        parse_config(text, "x.toml")
    assert str(info.value) == f"x.toml{error}"


def test_a_group_too_small_to_ever_open_is_refused() -> None:
    # It passed config check and never grouped anything: group_min_services of it can never open.
    services = '[[services]]\nname = "A"\n[[services]]\nname = "B"\n[[services]]\nname = "C"\n\n'
    for members, need in (('["A"]', ""), ('["A", "a"]', ""), ('["A", "B"]', "[detector]\ngroup_min_services = 3\n")):
        with pytest.raises(ConfigError) as info:
            parse_config(f'{need}{services}[[groups]]\nname = "g"\nservices = {members}\n', "x.toml")
        assert f"groups[0].services: a group needs at least {3 if need else 2} different services" in str(info.value)
        assert info.value.line == 10 + need.count("\n")
    assert len(parse_config(f'{services}[[groups]]\nname = "g"\nservices = ["A", "B"]\n').groups) == 1


def test_an_empty_store_path_is_refused() -> None:
    # SQLite opened "" as a temporary database: miner run stored posts and incidents there and lost them on exit.
    for value in ('""', '"  "'):
        with pytest.raises(ConfigError, match=r"x.toml:3: store.path: must name the SQLite file"):
            parse_config(f"[store]\nretention_days = 7\npath = {value}\n", "x.toml")


@pytest.mark.parametrize(("url", "kept"), [
    ("https://example.org/feed?api_key=K&q=down", "https://example.org/feed?api_key=[redacted]&q=down"),
    ("https://example.org/f?apiKey=K&access_token=T&X-Amz-Signature=S&private-token=P",
     "https://example.org/f?apiKey=[redacted]&access_token=[redacted]&X-Amz-Signature=[redacted]"
     "&private-token=[redacted]"),
    ("https://T0K3N@example.org:8443/feed.rss", "https://example.org:8443/feed.rss"),
    ("https://example.org/search.rss?keywords=outage&sort=new", "https://example.org/search.rss?keywords=outage&sort=new"),
    ("https://www.reddit.com/r/sysadmin/new/.rss", "https://www.reddit.com/r/sysadmin/new/.rss"),
])
def test_the_store_keeps_a_source_url_without_its_credentials(url: str, kept: str) -> None:
    assert SourceConfig("s", "rss", url=url).stored_url == kept


def test_url_env_names_a_variable_and_replaces_url() -> None:
    src = "[[sources]]\nname = 'f'\ntype = 'rss'\n"
    assert parse_config(src + "url_env = 'FEED_URL'\n").sources[0].stored_url == "$FEED_URL"
    with pytest.raises(ConfigError, match=r":4: sources\[0\].url_env: must name an environment variable"):
        parse_config(src + "url_env = 'https://example.org/feed?key=K'\n")
    with pytest.raises(ConfigError, match=r"sources\[0\].url_env: give url or url_env, not both"):
        parse_config(src + "url = 'https://example.org/feed'\nurl_env = 'FEED_URL'\n")
    with pytest.raises(ConfigError, match=r"sources\[0\].url: required for type 'rss' \(or url_env"):
        parse_config(src)


@pytest.mark.parametrize(("kind", "query"), [("hackernews", "   "), ("bluesky", "\t"), ("mastodon", " #"),
                                             ("discourse", " "), ("reddit", "  ")])
def test_a_blank_query_is_refused(kind: str, query: str) -> None:
    # It passed as a query: hackernews searched for spaces, mastodon read the tag "", discourse searched
    # " order:latest" instead of listing its latest topics.
    url = "url = 'https://forum.example.org'\n" if kind in ("discourse", "mastodon") else ""
    with pytest.raises(ConfigError) as info:
        parse_config(f"[[sources]]\nname = 's'\ntype = '{kind}'\n{url}query = {json.dumps(query)}\n", "x.toml")
    assert str(info.value) == f"x.toml:{4 + bool(url)}: sources[0].query: must not be blank (got {query!r})"
    assert parse_config(f"[[sources]]\nname = 's'\ntype = '{kind}'\n{url}query = '#down'\n").sources[0].query


@pytest.mark.parametrize("query", ["whatsapp down", "#WhatsApp #outage", "#WhatsApp-Down", "#2024"])
def test_a_mastodon_query_that_is_not_one_hashtag_is_refused(query: str) -> None:
    # The tag timeline takes one tag: a server drops what else the name holds ("whatsapp down" read as #whatsappdown)
    # or answers an empty timeline, and the source polled without error, finding nothing, for good.
    with pytest.raises(ConfigError) as info:
        parse_config(f"[[sources]]\nname = 's'\ntype = 'mastodon'\nurl = 'https://m.example'\nquery = {query!r}\n",
                     "x.toml")
    assert str(info.value).startswith(f"x.toml:5: sources[0].query: a mastodon source reads one hashtag's timeline, "
                                      f"and {query!r} is not one hashtag")
    for tag in ("#WhatsAppDown", "outage", " #Down_2024 ", "#störung", "#ВотсапНеРаботает", "#微信"):
        parse_config(f"[[sources]]\nname = 's'\ntype = 'mastodon'\nurl = 'https://m.example'\nquery = {tag!r}\n")
    # Other types search for words.
    assert parse_config("[[sources]]\nname = 's'\ntype = 'lemmy'\nurl = 'https://l.example'\n"
                        "query = 'whatsapp down'\n").sources[0].query == "whatsapp down"


def test_a_key_of_another_table_names_the_table_it_belongs_to() -> None:
    # "detector.group_wait: unknown key (allowed here: bucket_minutes, ...)" left the reader to find where it goes;
    # a key meant for [store] but written after a [[sources]] entry is in that entry, as TOML reads it.
    cases = {"[detector]\ngroup_wait = 3\n": ":2: detector.group_wait: unknown key (it belongs to [alerts] or "
                                             "[[alerts.routes]], not to [detector]; allowed here: bucket_minutes,",
             "[[sources]]\nname = 's'\ntype = 'rss'\nretention_days = 3\n":
                 ":4: sources[0].retention_days: unknown key (it belongs to [store], not to [[sources]]; allowed",
             "path = 'x.sqlite'\n": ":1: path: unknown key (it belongs to [store], not to the top level; allowed",
             "[server]\nservices = []\n": ":2: server.services: unknown key (it belongs to the top level (above the "
                                          "first table header) or [[sources]] or [[groups]] or [[alerts.routes]], "
                                          "not to [server]; allowed"}
    for text, error in cases.items():
        with pytest.raises(ConfigError) as info:
            parse_config(text, "x.toml")
        assert str(info.value).startswith(f"x.toml{error}")
    with pytest.raises(ConfigError) as info:  # a key no table takes: the list of the keys allowed, as before
        parse_config("[detector]\nbogus = 1\n", "x.toml")
    assert str(info.value).startswith("x.toml:2: detector.bogus: unknown key (allowed here: bucket_minutes,")


@pytest.mark.parametrize(
    ("group", "error"),
    [
        ('name = "  "\nservices = ["A", "B"]\n', ":6: groups[0].name: must not be blank (got '  ')"),
        ('name = "Meta\\r\\nBcc: x@example.org"\nservices = ["A", "B"]\n',
         ":6: groups[0].name: must not contain control or format characters (found U+000D)"),
        ('name = "Meta"\nservices = ["A", "B"]\ncause = "DNS\\u202e"\n',
         ":8: groups[0].cause: must not contain control or format characters (found U+202E)"),
        ('name = "Meta"\nservices = ["A", "B"]\n\n[[groups]]\nname = "meta"\nservices = ["A", "B"]\n',
         ":10: groups[1].name: duplicate group 'meta'; groups[0].name is set on line 6"),
    ],
    ids=["blank", "line break", "bidi cause", "duplicate"],
)
def test_group_names_are_checked_like_service_names(group: str, error: str) -> None:
    # All passed: the name goes into a grouped alert's subject, where a line break failed every email of it.
    services = '[[services]]\nname = "A"\n[[services]]\nname = "B"\n[[groups]]\n'
    with pytest.raises(ConfigError) as info:
        parse_config(services + group, "x.toml")
    assert str(info.value) == f"x.toml{error}"


@pytest.mark.parametrize(("third", "error"), [
    ('"ops@example.org"', ":6: alerts.routes[0].email[2]: 'ops@example.org' is listed twice: list each recipient once; "
                          "alerts.routes[0].email[0] is set on line 4"),
    ('"ops@EXAMPLE.org"', ":6: alerts.routes[0].email[2]: 'ops@EXAMPLE.org' is listed twice (as 'ops@example.org'): "
                          "list each recipient once; alerts.routes[0].email[0] is set on line 4"),
    ('"ops@bücher.example"', ":7: alerts.routes[0].email[3]: 'ops@xn--bcher-kva.example' is listed twice (as "
                             "'ops@bücher.example'): list each recipient once; alerts.routes[0].email[2] is set on "
                             "line 6"),
    ('"Ops@example.org"', None),  # the part before @ may be case-sensitive (RFC 5321): two mailboxes
])
def test_a_recipient_listed_twice_in_a_route_is_an_error_naming_both_lines(third: str, error: str | None) -> None:
    # Passed without a word: the address got every alert twice from a server that delivers each RCPT, or the
    # copy-paste slip hid the colleague it was meant to name.
    text = ('[[alerts.routes]]\nname = "r"\nemail = [\n  "ops@example.org",\n  "b@example.org",\n'
            f'  {third},\n  "ops@xn--bcher-kva.example",\n]\n')
    if error is None:
        assert len(parse_config(text, "x.toml").alerts.routes[0].email) == 4
        return
    with pytest.raises(ConfigError) as info:
        parse_config(text, "x.toml")
    assert str(info.value) == f"x.toml{error}"


def test_a_webhook_listed_twice_in_a_route_is_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config('[[alerts.webhooks]]\nname = "chat"\nurl_env = "CHAT_URL"\n[[alerts.routes]]\nname = "r"\n'
                     'webhooks = [\n  "chat",\n  "chat",\n]\n', "x.toml")
    assert str(info.value) == ("x.toml:8: alerts.routes[0].webhooks[1]: webhook 'chat' is listed twice: list each "
                               "webhook once; alerts.routes[0].webhooks[0] is set on line 7")


def test_a_bad_list_entry_names_the_line_of_the_entry() -> None:
    # The error named the list (`email: entry 2`) and so the line it starts on, not the entry's.
    with pytest.raises(ConfigError) as info:
        parse_config('[[alerts.routes]]\nname = "r"\nemail = [\n  "a@example.org",\n  "b@example.org",\n'
                     '  "not an address",\n]\n', "x.toml")
    assert str(info.value) == "x.toml:6: alerts.routes[0].email[2]: 'not an address' is not an email address"
    with pytest.raises(ConfigError) as info:
        parse_config('[[services]]\nname = "A"\naliases = [\n  "a1",\n  """two\nlines""",\n]\n', "x.toml")
    assert str(info.value) == ("x.toml:5: services[0].aliases[1]: must not contain control or format characters "
                               "(found U+000A in 'two\\nlines')")


@pytest.mark.parametrize(
    ("detector", "error"),
    [
        ("persist_n = 0\n", ":3: detector.persist_n: must be 1..32"),
        ("persist_n = 40\n", ":3: detector.persist_n: must be 1..32"),
        # These named persist_k and z_close, keys the file leaves at their defaults, at the [detector] header's line.
        ("persist_n = 1\n", ":3: detector.persist_n: must be at least persist_k (2), got 1"),
        ("z_open = 1.0\n", ":3: detector.z_open: must be above z_close (1.5) for hysteresis, got 1"),
        # Both in the file: either may be the one to change, so the other's line is named too.
        ("persist_n = 2\npersist_k = 3\n", ":4: detector.persist_k: must be between 1 and persist_n (2), got 3; "
                                           "detector.persist_n is set on line 3"),
        ("z_open = 2\nz_close = 2\n", ":4: detector.z_close: must be below z_open (2) for hysteresis, got 2; "
                                      "detector.z_open is set on line 3"),
    ],
)
def test_a_detector_setting_out_of_step_with_another_names_the_key_given(detector: str, error: str) -> None:
    # persist_n = 0 was "persist_k: must be between 1 and persist_n", at the [detector] header's line.
    with pytest.raises(ConfigError) as info:
        parse_config(f"\n[detector]\n{detector}", "x.toml")
    assert str(info.value) == f"x.toml{error}"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[alerts]\nretry_base = 100\nsubject_prefix = '[m]'\nretry_max = 50\n",
         "x.toml:4: alerts.retry_max: must be at least retry_base (100), got 50; alerts.retry_base is set on line 2"),
        ("alerts.retry_max = 500\nalerts.give_up_after = 50\n",
         "x.toml:2: alerts.give_up_after: must be at least retry_max (500), got 50; alerts.retry_max is set on line 1"),
        ("[collect]\nbackoff_base = 100\nbackoff_max = 50\n",
         "x.toml:3: collect.backoff_max: must be at least backoff_base (100) and at most 604800 seconds, got 50; "
         "collect.backoff_base is set on line 2"),
        ("[store]\nbucket_retention_days = 30\nretention_days = 90\n",
         "x.toml:2: store.bucket_retention_days: must be at least retention_days (90): buckets are counted from the "
         "posts kept; store.retention_days is set on line 3"),
        ("[detector]\nmax_fill_hours = 100\n\n[store]\nretention_days = 1\nbucket_retention_days = 1\n",
         "x.toml:6: store.bucket_retention_days: must cover detector.max_fill_hours (100 h) and two buckets (5 days): "
         "the detector reads that far back; detector.max_fill_hours is set on line 2"),
        ("[detector]\nsettle_minutes = 100\n\n[alerts]\nstale_after = 120\n",
         "x.toml:5: alerts.stale_after: must be at least 6060 seconds (detector.settle_minutes, 100 min, plus 60 s): "
         "an opening is planned up to that long after its bucket ended, so less flags openings seen in time as seen "
         "late; detector.settle_minutes is set on line 2"),
        ('[detector]\ngroup_min_services = 3\n\n[[services]]\nname = "A"\n[[services]]\nname = "B"\n\n'
         '[[groups]]\nname = "g"\nservices = ["A", "B"]\n',
         "x.toml:11: groups[0].services: a group needs at least 3 different services (detector.group_min_services) "
         "to ever open; detector.group_min_services is set on line 2"),
    ],
    ids=["retry_max under retry_base", "give_up_after under retry_max", "backoff_max under backoff_base",
         "bucket_retention_days under retention_days", "bucket_retention_days under max_fill_hours",
         "stale_after under settle_minutes", "group under group_min_services"],
)
def test_two_keys_in_conflict_name_the_other_ones_line_too(text: str, error: str) -> None:
    # The error was at one key's line only, where the one to change may be the other (a raised retention_days, a
    # raised group_min_services), which the message named without its line.
    with pytest.raises(ConfigError) as info:
        parse_config(text, "x.toml")
    assert str(info.value) == error


def test_two_keys_in_conflict_on_one_line_name_it_once() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("\nalerts = { retry_base = 100, retry_max = 50 }\n", "x.toml")
    assert str(info.value) == "x.toml:2: alerts.retry_max: must be at least retry_base (100), got 50"

_TWO_SERVICES = '[[services]]\nname = "Slack"\n\n[[services]]\nname = "Zoom"\n\n'
_HN = 'type = "hackernews"\nquery = "down"\n'


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (_TWO_SERVICES + '[[services]]\nname = "slack"\n',
         "x.toml:8: services[2].name: duplicate service 'slack'; services[0].name is set on line 2"),
        (_TWO_SERVICES + '[[services]]\nname = "Teams"\naliases = [\n  "ms teams",\n  "zoom",\n]\n',
         "x.toml:11: services[2].aliases[1]: 'zoom' also names service 'Zoom' (services[1].name): a post naming it "
         "would count for one of them only; services[1].name is set on line 5"),
        (_TWO_SERVICES + f'[[sources]]\nname = "hn"\n{_HN}\n[[sources]]\nname = "hn"\n{_HN}',
         "x.toml:13: sources[1].name: duplicate source 'hn'; sources[0].name is set on line 8"),
        ('[[services]]\nname = "A"\nstatus_page = "https://a.example.org"\n\n'
         f'[[sources]]\nname = "status:a"\n{_HN}',
         "x.toml:3: services[0].status_page: its source would be named 'status:a', which another source has; add "
         "a [[sources]] entry of type 'statuspage' with this url and a name of your own; sources[0].name is set on "
         "line 6"),
        ('[[alerts.routes]]\nname = "ops"\nemail = ["a@example.org"]\n\n'
         '[[alerts.routes]]\nname = "ops"\nemail = ["b@example.org"]\n',
         "x.toml:6: alerts.routes[1].name: duplicate route name 'ops'; alerts.routes[0].name is set on line 2"),
        ('[[alerts.webhooks]]\nname = "chat"\nurl_env = "A"\n[[alerts.webhooks]]\nname = "pager"\nurl_env = "B"\n'
         '[[alerts.webhooks]]\nname = "chat"\nurl_env = "C"\n',
         "x.toml:8: alerts.webhooks[2].name: duplicate webhook name 'chat'; alerts.webhooks[0].name is set on line 2"),
    ],
    ids=["service", "alias", "source", "status_page's source", "route", "webhook"],
)
def test_a_name_given_twice_names_the_line_of_the_first_too(text: str, error: str) -> None:
    # The error is at the second; the first, which may be the one to rename, was named without its line or not at all.
    with pytest.raises(ConfigError) as info:
        parse_config(text, "x.toml")
    assert str(info.value) == error

@pytest.mark.parametrize(
    ("source", "error"),
    [
        ('type = "rss"\ninterval = 600\n',
         "x.toml:4: sources[0].url: required for type 'rss' (or url_env, naming the environment variable that holds "
         "it); sources[0].type is set on line 6"),
        ('type = "mastodon"\nurl = "https://mastodon.social"\n',
         "x.toml:4: sources[0].query: required for type 'mastodon'; sources[0].type is set on line 6"),
        ('type = "hackernews"\nquery = "slack down"\nmax_entries = 50\n',
         "x.toml:8: sources[0].max_entries: only for the feeds of types 'rss' and 'reddit', not 'hackernews'; "
         "sources[0].type is set on line 6"),
        ('type = "rss"\nurl = "https://example.org/feed"\nurl_env = "FEED_URL"\n',
         "x.toml:8: sources[0].url_env: give url or url_env, not both; sources[0].url is set on line 7"),
        ('type = "statuspage"\nurl = "https://status.example.org/history.atom"\n',
         "x.toml:7: sources[0].url: is a status feed (RSS/Atom), not a Statuspage page or its .json API: give it type "
         "'status_feed'; sources[0].type is set on line 6"),
        ('type = "hackernews"\nquery = "slack down"\nenv = { client_id = "HN_ID" }\n',
         "x.toml:8: sources[0].env.client_id: not a credential of type 'hackernews' (it takes no credentials); "
         "sources[0].type is set on line 6"),
        ('type = "status_feed"\nurl = "https://status.example.org/history.atom"\nservices = []\n',
         "x.toml:8: sources[0].services: a status page's incidents belong to one service: list exactly one (got 0); "
         "sources[0].type is set on line 6"),
    ],
    ids=["url for its type", "query for its type", "max_entries for its type", "url and url_env", "a feed as a page",
         "credential of another type", "a status page's services"],
)
def test_a_source_key_out_of_step_with_its_type_names_the_type_line_too(source: str, error: str) -> None:
    # The error named the entry's [[sources]] header or the key alone: the type, which may be what is wrong, had no
    # line.
    text = f'[[services]]\nname = "Slack"\n\n[[sources]]\nname = "s"\n{source}'
    with pytest.raises(ConfigError) as info:
        parse_config(text, "x.toml")
    assert str(info.value) == error

def test_a_window_and_a_status_page_out_of_step_with_another_key_name_its_line_too() -> None:
    window = ('[[services]]\nname = "A"\n\n[[alerts.maintenance]]\nservice = "A"\ncron = "0 2 * * 0"\n'
              'comment = "weekly"\nstart = "2026-01-01T02:00"\n')
    with pytest.raises(ConfigError) as info:
        parse_config(window, "x.toml")
    assert str(info.value) == ("x.toml:6: alerts.maintenance[0].cron: a window is either recurring (cron) or one-off "
                               "(start/end), not both; alerts.maintenance[0].start is set on line 8")
    pages = ('[[services]]\nname = "A"\n[[services]]\nname = "B"\nstatus_page = "https://status.example.org"\n\n'
             '[[sources]]\nname = "page"\ntype = "statuspage"\nurl = "https://status.example.org"\nservices = ["A"]\n')
    with pytest.raises(ConfigError) as info:
        parse_config(pages, "x.toml")
    assert str(info.value) == ("x.toml:5: services[1].status_page: source 'page' polls this page for service 'A', so "
                               "'B' would get none of its incidents: a status page belongs to one service; remove this "
                               "status_page or that source; sources[0].url is set on line 10")

def test_two_services_with_one_status_page_and_no_source_for_it_are_refused() -> None:
    # Each got a generated source of its own, so the page was polled twice and its incidents stored for both.
    text = ('[[services]]\nname = "A"\nstatus_page = "https://status.example.org"\n\n'
            '[[services]]\nname = "B"\nstatus_page = "https://STATUS.example.org/api/v2/incidents.json"\n')
    with pytest.raises(ConfigError) as info:
        parse_config(text, "x.toml")
    assert str(info.value) == ("x.toml:7: services[1].status_page: service 'A' has this status page too: a status page "
                               "belongs to one service; remove one of them; services[0].status_page is set on line 3")

def test_two_services_of_one_slug_with_one_status_page_are_told_the_page_is_one_services() -> None:
    # "slack" and "Slack!" would both get a source named status:slack: the error said to add a [[sources]] entry for
    # the page with a name of one's own, which the next check refused as the other service's page.
    text = ('[[services]]\nname = "slack"\nstatus_page = "https://status.slack.com"\n\n'
            '[[services]]\nname = "Slack!"\nstatus_page = "https://status.slack.com"\n')
    with pytest.raises(ConfigError) as info:
        parse_config(text, "x.toml")
    assert str(info.value) == ("x.toml:7: services[1].status_page: service 'slack' has this status page too: a status "
                               "page belongs to one service; remove one of them; services[0].status_page is set on "
                               "line 3")

def test_the_model_folder_and_ca_file_named_are_checked_with_their_key_and_line(tmp_path: Path) -> None:
    # config check said OK: `miner run` then stopped naming only the path, or sent no email (permanently failed).
    cfg = tmp_path / "feeds.toml"
    ca = tmp_path / "ca.pem"
    text = f'[classifier]\nmodel_dir = "my-model"\n\n[alerts.smtp]\nca_file = "{ca}"\n'
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        check_named_files(load_config(cfg))
    assert str(info.value) == f"{cfg}:2: classifier.model_dir: {tmp_path / 'my-model'}: no such folder (leave " \
                              "model_dir out for the model shipped in models/)"
    (tmp_path / "my-model").mkdir()  # read from the config's folder, as the classifier reads it
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(cfg))}:5: alerts.smtp.ca_file: cannot be read as a "
                                          r"PEM file of CA certificates: \[Errno 2\]"):
        check_named_files(load_config(cfg))
    ca.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r":5: alerts.smtp.ca_file: cannot be read as a PEM file"):
        check_named_files(load_config(cfg))
    runner = CliRunner()
    result = runner.invoke(main, ["config", "check", str(cfg)])
    assert result.exit_code == 1 and "alerts.smtp.ca_file: cannot be read" in result.output
    for unused in ("[alerts]\nenabled = false\n" + text, text + 'security = "none"\n'):  # no email reads it
        cfg.write_text(unused)
        check_named_files(load_config(cfg))
    with pytest.raises(ConfigError, match=r":2: classifier.model_dir: must not be blank"):
        parse_config('[classifier]\nmodel_dir = " "\n')


def test_a_ca_file_that_cannot_be_read_is_named_as_opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A relative ca_file is read from the working directory, not the config's folder: `config check` in a shell and
    # the service (systemd's WorkingDirectory) read two files, and the error named neither.
    cfg = tmp_path / "etc" / "feeds.toml"
    cfg.parent.mkdir()
    cfg.write_text('[alerts.smtp]\nca_file = "relay-ca.pem"\n')
    (cfg.parent / "relay-ca.pem").write_text("not read: the config's folder is not where a relative path starts\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        check_named_files(load_config(cfg))
    assert str(info.value) == (f"{cfg}:2: alerts.smtp.ca_file: cannot be read as a PEM file of CA certificates: "
                               f"[Errno 2] No such file or directory ({tmp_path / 'relay-ca.pem'}: a relative path "
                               "is read from the working directory)")
    absolute = tmp_path / "nowhere" / "ca.pem"
    cfg.write_text(f'[alerts.smtp]\nca_file = "{absolute}"\n')
    with pytest.raises(ConfigError, match=rf"No such file or directory \({re.escape(str(absolute))}\)$"):
        check_named_files(load_config(cfg))


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('[[sources]]\nname = "a"\ntype = "RSS"\n', ":3: sources[0].type: must be one of 'rss' | 'reddit' | "
         "'hackernews' | 'discourse' | 'lemmy' | 'mastodon' | 'bluesky' | 'statuspage' | 'status_feed', got 'RSS' "
         "(did you mean 'rss'?)"),
        ('[[alerts.webhooks]]\nname = "h"\nurl_env = "H"\nformat = "Slack "\n',
         ":4: alerts.webhooks[0].format: must be one of 'json' | 'slack' | 'pagerduty' | 'teams', got 'Slack ' (did "
         "you mean 'slack'?)"),
        ('[alerts.smtp]\nsecurity = "starttsl"\n',
         ":2: alerts.smtp.security: must be one of 'starttls' | 'ssl' | 'none', got 'starttsl' (did you mean "
         "'starttls'?)"),
        ('[alerts.smtp]\nsecurity = "tls"\n', ":2: alerts.smtp.security: must be one of 'starttls' | 'ssl' | 'none', "
         "got 'tls'"),
        ('[[alerts.routes]]\nname = "r"\nemail = ["a@example.org"]\ngroup_by = "providers"\n',
         ":4: alerts.routes[0].group_by: must be one of 'provider' | 'service' | 'route', got 'providers' (did you "
         "mean 'provider'?)"),
    ],
    ids=["case", "case and space", "typo", "no guess", "optional"],
)
def test_a_value_that_is_not_one_of_the_choices_names_the_one_it_was_probably_meant_to_be(text: str,
                                                                                         error: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "x.toml")
    assert str(info.value) == f"x.toml{error}"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('[[sources]]\nname = "s"\ntype = "hackernews"\nquery = "down"\nservices = ["Slak"]\n',
         "sources[0].services[0]: unknown service 'Slak' (did you mean 'Slack'?)"),
        ('[[groups]]\nname = "g"\nservices = ["Slack", "githb"]\n',
         "groups[0].services[1]: unknown service 'githb' (did you mean 'GitHub'?)"),
        ('[[alerts.routes]]\nname = "r"\nemail = ["a@example.org"]\nservices = ["Gihub"]\n',
         "alerts.routes[0].services[0]: unknown service 'Gihub' (did you mean 'GitHub'?)"),
        ('[[alerts.maintenance]]\nservice = "Slacks"\ncron = "0 1 * * *"\n',
         "alerts.maintenance[0].service: unknown service 'Slacks' (did you mean 'Slack'?)"),
        ('[[alerts.webhooks]]\nname = "OnCall"\nurl_env = "H"\n[[alerts.routes]]\nname = "r"\nwebhooks = ["oncall"]\n',
         "alerts.routes[0].webhooks[0]: route 'r' names unknown webhook 'oncall' (did you mean 'OnCall'?)"),
        ('[[alerts.routes]]\nname = "r"\nemail = ["a@example.org"]\nservices = ["Gitlab"]\n',
         "alerts.routes[0].services[0]: unknown service 'Gitlab': it is none of the [[services]] names ('Slack', "
         "'GitHub'); use one of them, or add a [[services]] entry with name = 'Gitlab'"),
        ('[[sources]]\nname = "s"\ntype = "rss"\nurl = "https://forum.example.net/latest.rss"\n'
         'services = ["FibreNet Business"]\n',
         "sources[0].services[0]: unknown service 'FibreNet Business': it is none of the [[services]] names "
         "('Slack', 'GitHub'); use one of them, or add a [[services]] entry with name = 'FibreNet Business'"),
    ],
    ids=["source", "group", "route", "maintenance", "webhook in another case", "nothing near", "source, nothing near"],
)
def test_an_unknown_name_names_the_one_it_was_probably_meant_to_be(text: str, error: str) -> None:
    # "unknown service 'Slak'" left the reader to find the typo; a webhook is named in its own case, a service in any.
    with pytest.raises(ConfigError) as info:
        parse_config('[[services]]\nname = "Slack"\n[[services]]\nname = "GitHub"\n\n' + text, "x.toml")
    assert str(info.value).split(": ", 1)[1] == error


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('[[services]]\nname = "A"\nprovider = 5\n', ":3: services[0].provider: expected a string, got 5"),
        ('[[services]]\nname = "A"\naliases = "a-net"\n',
         ':3: services[0].aliases: expected a list, got \'a-net\' (a list of one is written in brackets: ["a-net"])'),
        ('[classifier]\nthreshold = "0.5"\n', ":2: classifier.threshold: expected a number, got '0.5'"),
        ('[[alerts.routes]]\nname = "r"\nemail = ["a@example.org"]\ngroup_wait = true\n',
         ":4: alerts.routes[0].group_wait: expected a number, got true"),
    ],
)
def test_an_optional_setting_of_the_wrong_type_says_what_it_takes_as_the_file_writes_it(text: str, error: str) -> None:
    # "expected str" and "expected float", where a plain setting says "a string" and "a number".
    with pytest.raises(ConfigError) as info:
        parse_config(text, "x.toml")
    assert str(info.value) == f"x.toml{error}"


@pytest.mark.parametrize(
    ("route", "error"),
    [
        ('email = ["a@example.org"]\nimmediate = false\n', ":7: alerts.routes[0].immediate: a route with immediate = "
         "false sends only digests, and this one has no digest: it would never send anything"),
        ('email = ["a@example.org"]\nwebhooks = ["ops"]\nimmediate = false\ndigest = "0 8 * * *"\n',
         ":7: alerts.routes[0].webhooks: a route with immediate = false sends only digests, which are emailed: its "
         "webhooks would never be used; alerts.routes[0].immediate is set on line 8"),
    ],
    ids=["nothing at all", "webhooks"],
)
def test_a_route_that_would_never_send_anything_is_refused(route: str, error: str) -> None:
    # A resolve notice follows only an alert the route sent: without immediate alerts it sends digests or nothing.
    hooks = '[[alerts.webhooks]]\nname = "ops"\nurl_env = "OPS_URL"\n'
    with pytest.raises(ConfigError) as info:
        parse_config(f'{hooks}[[alerts.routes]]\nname = "r"\n{route}', "x.toml")
    assert str(info.value) == f"x.toml{error}"
    digest_only = '[[alerts.routes]]\nname = "r"\nemail = ["a@x.org"]\nimmediate = false\ndigest = "0 8 * * *"\n'
    assert not parse_config(digest_only).alerts.routes[0].immediate


@pytest.mark.parametrize("value", ["0", "59.5"])
def test_a_stale_after_that_would_suppress_every_alert_is_refused(value: str) -> None:
    # An opening is planned some seconds after its bucket closed: stale_after = 0 suppressed every alert as stale.
    with pytest.raises(ConfigError) as info:
        parse_config(f"[alerts]\nstale_after = {value}\n", "x.toml")
    assert str(info.value) == ("x.toml:2: alerts.stale_after: must be at least 60 seconds: an opening is often a "
                               "minute old when it is planned, so less suppresses alerts as stale (0: every one)")
    assert parse_config("[detector]\nsettle_minutes = 0\n[alerts]\nstale_after = 60\n").alerts.stale_after == 60


def test_a_stale_after_shorter_than_the_detector_waits_for_a_bucket_is_refused() -> None:
    # The detector scores a bucket up to settle_minutes after its end, the opening dated at that end: stale_after =
    # 300 flagged openings planned in time, 6-9 minutes after their bucket, as seen late (stale, if resolved by then).
    with pytest.raises(ConfigError) as info:
        parse_config("[alerts]\nstale_after = 300\n", "x.toml")
    assert str(info.value) == ("x.toml:2: alerts.stale_after: must be at least 660 seconds (detector.settle_minutes, "
                               "10 min, plus 60 s): an opening is planned up to that long after its bucket ended, so "
                               "less flags openings seen in time as seen late")
    with pytest.raises(ConfigError, match=r"alerts\.stale_after: must be at least 3660 seconds"):
        parse_config("[detector]\nsettle_minutes = 60\n[alerts]\nstale_after = 3000\n")
    # With stale_after left at its default, the key the file set is named, with its line: it was alerts.stale_after,
    # with no line, in a file without an [alerts] table.
    with pytest.raises(ConfigError) as info:
        parse_config("[detector]\nsettle_minutes = 60\n", "x.toml")
    assert str(info.value) == ("x.toml:2: detector.settle_minutes: must be at most 59 minutes with alerts.stale_after "
                               "at its default, 3600 seconds (an opening is planned up to settle_minutes plus 60 s "
                               "after its bucket ended), got 60: raise alerts.stale_after too")
    assert parse_config("[alerts]\nstale_after = 660\n").alerts.stale_after == 660
    assert parse_config("[alerts]\nenabled = false\nstale_after = 300\n").alerts.stale_after == 300


def test_a_status_page_given_as_a_source_too_is_polled_once_however_its_url_is_spelled() -> None:
    # Only the very same string counted: a trailing slash or another case of the host added status:github beside it,
    # polling the page twice and storing each of its incidents under both.
    text = ('[[services]]\nname = "GitHub"\nstatus_page = "https://www.githubstatus.com"\n'
            '[[sources]]\nname = "gh"\ntype = "statuspage"\nurl = "{url}"\nservices = ["GitHub"]\n')
    for url in ("https://www.githubstatus.com", "https://WWW.githubstatus.com/", "https://www.githubstatus.com//"):
        assert [s.name for s in parse_config(text.format(url=url)).sources] == ["gh"]
    other = parse_config(text.format(url="https://www.githubstatus.com/eu"))
    assert [s.name for s in other.sources] == ["gh", "status:github"]


@pytest.mark.parametrize("provider", ["", "  "])
def test_a_blank_provider_is_refused(provider: str) -> None:
    # "" was read as no provider, "  " as one: services given it opened as one "   platform outage".
    with pytest.raises(ConfigError) as info:
        parse_config(f'[[services]]\nname = "A"\nprovider = "{provider}"\n', "x.toml")
    assert str(info.value) == (f"x.toml:3: services[0].provider: must not be blank (got {provider!r}; leave it out "
                               "for no provider)")


def test_a_quoted_key_with_a_control_character_is_shown_escaped_on_one_line() -> None:
    # The key path was printed raw: "\n" split the one-line error in two, and "\u001b[31m" coloured the terminal.
    with pytest.raises(ConfigError) as info:
        parse_config('[alerts]\n"x\\u001b[31m\\nred" = 1\n', "x.toml")
    assert str(info.value).startswith("x.toml:2: alerts.x\\u001b[31m\\u000ared: unknown key")
    assert str(info.value).isprintable()


def test_an_integer_too_large_for_a_number_setting_names_its_key() -> None:
    # float() of it raised OverflowError, an internal error of `config check`.
    with pytest.raises(ConfigError, match=r"x.toml:2: alerts.group_wait: expected a finite number, got an integer "
                                          r"of 401 digits"):
        parse_config(f"[alerts]\ngroup_wait = 1{'0' * 400}\n", "x.toml")


def test_a_number_of_too_many_digits_is_invalid_toml_at_its_line() -> None:
    # tomllib's int() raised ValueError (more digits than Python converts), an internal error of `config check`.
    with pytest.raises(ConfigError, match=r"x.toml:3: not valid TOML: a number of more than \d+ digits"):
        parse_config(f"[detector]\n\nz_open = 1{'0' * 5000}\n", "x.toml")


def test_a_list_unsubscribe_url_with_a_password_is_refused() -> None:
    # It went into the List-Unsubscribe header of every digest, to every recipient, without a word from config check.
    text = ('[[services]]\nname = "A"\n\n[[alerts.routes]]\nname = "r"\nemail = ["a@example.org"]\n'
            'digest = "0 8 * * *"\nlist_unsubscribe = "https://ops:s3cret@lists.example.org/unsub"\n')
    with pytest.raises(ConfigError, match=r"x.toml:8: alerts.routes\[0\].list_unsubscribe: must not hold a user name"):
        parse_config(text, "x.toml")


def test_a_service_name_in_other_unicode_characters_is_named_as_such() -> None:
    # "cafe\u0301" (decomposed, as pasted from a Mac) for the declared "caf\u00e9": the error said "unknown service
    # 'café'" with no hint, both looking the same on screen.
    text = ('[[services]]\nname = "caf\u00e9"\n\n[[alerts.routes]]\nname = "r"\nemail = ["a@example.org"]\n'
            'services = ["cafe\u0301"]\n')
    with pytest.raises(ConfigError, match=r"x.toml:7: alerts.routes\[0\].services\[0\]: unknown service .* \(did "
                                          r"you mean 'caf\u00e9'\? it looks the same, but its accents are written"):
        parse_config(text, "x.toml")


def test_a_status_page_with_a_password_is_refused_as_a_source_url_is() -> None:
    # The docs say status_page is checked like sources.url, which refuses user:password@; it passed with a warning.
    text = '[[services]]\nname = "A"\nstatus_page = "https://ops:s3cret@status.example.org"\n'
    with pytest.raises(ConfigError, match=r"x.toml:3: services\[0\].status_page: must not hold a password"):
        parse_config(text, "x.toml")

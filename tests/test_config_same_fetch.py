"""Two [[sources]] entries that fetch the same thing are refused: each was polled, its posts stored under both names,
and a post without an author counted twice by the detector."""

from __future__ import annotations

import pytest

from miner.collectors.poller import _DEFAULT_BASES
from miner.config import parse_config
from miner.errors import ConfigError
from miner.source_identity import DEFAULT_BASES

_SVC = '[[services]]\nname = "Slack"\n\n'


def _sources(*tables: str) -> str:
    return _SVC + "".join(f'[[sources]]\nname = "s{i}"\n{table}\n' for i, table in enumerate(tables))


@pytest.mark.parametrize(
    ("first", "second", "keys"),
    [
        ('type = "rss"\nurl = "https://www.reddit.com/r/sysadmin/new/.rss"\n',
         'type = "rss"\nurl = "https://www.reddit.com/r/sysadmin/new/.rss"\n', ("url", "url")),
        # Scheme and host in either case, the default port and a trailing slash are one address.
        ('type = "rss"\nurl = "https://forum.example.org/latest.rss"\n',
         'type = "rss"\nurl = "https://Forum.Example.org:443/latest.rss/"\n', ("url", "url")),
        ('type = "status_feed"\nurl = "http://status.example.org/history.atom"\nservices = ["Slack"]\n',
         'type = "status_feed"\nurl = "http://status.example.org:80/history.atom#x"\nservices = ["Slack"]\n',
         ("url", "url")),
        ('type = "mastodon"\nurl = "https://mastodon.social"\nquery = "outage"\n',
         'type = "mastodon"\nurl = "https://mastodon.social/"\nquery = "#Outage"\n', ("url", "url")),
        ('type = "hackernews"\nquery = "slack down"\n',
         'type = "hackernews"\nurl = "https://hn.algolia.com/"\nquery = "slack down"\ninterval = 60\n',
         ("url", "query")),
        ('type = "reddit"\nquery = "r/sysadmin"\n',
         'type = "reddit"\nquery = "r/SysAdmin"\nenv = { client_id = "A", client_secret = "B" }\n',
         ("query", "query")),
        ('type = "discourse"\nurl = "https://community.example.com"\n',
         'type = "discourse"\nurl = "https://community.example.com/"\nservices = ["Slack"]\n', ("url", "url")),
        ('type = "statuspage"\nurl = "https://www.githubstatus.com"\nservices = ["Slack"]\n',
         'type = "statuspage"\nurl = "https://WWW.githubstatus.com/api/v2/incidents.json"\nservices = ["Slack"]\n',
         ("url", "url")),
        ('type = "rss"\nurl_env = "FEED"\n', 'type = "rss"\nurl_env = "FEED"\n', ("url_env", "url_env")),
    ],
    ids=["as written", "case, port, slash", "http port", "mastodon tag", "hackernews default base", "subreddit",
         "discourse latest", "statuspage page", "url_env"],
)
def test_a_source_fetching_what_another_does_is_refused_naming_both(first: str, second: str,
                                                                    keys: tuple[str, str]) -> None:
    text = _sources(first, second)
    with pytest.raises(ConfigError) as info:
        parse_config(text, "x.toml")
    lines = text.split("\n")
    first_line = next(n for n, line in enumerate(lines, 1) if line.startswith(f"{keys[1]} ="))
    second_line = max(n for n, line in enumerate(lines, 1) if line.startswith(f"{keys[0]} ="))
    assert str(info.value).startswith(f"x.toml:{second_line}: sources[1].{keys[0]}: source 's1' polls what "
                                      "source 's0' polls (same type, ")
    assert str(info.value).endswith(f"; sources[0].{keys[1]} is set on line {first_line}")
    assert "stored and counted twice" in str(info.value)


def test_the_users_repro_names_both_sources_and_their_lines() -> None:
    text = _sources('type = "rss"\nurl = "https://www.reddit.com/r/sysadmin/new/.rss"\ninterval = 600\n',
                    'type = "hackernews"\nquery = "down"\n',
                    'type="rss"\nurl="https://www.reddit.com/r/sysadmin/new/.rss"\n')
    with pytest.raises(ConfigError) as info:
        parse_config(text, "x.toml")
    assert str(info.value) == (
        "x.toml:18: sources[2].url: source 's2' polls what source 's0' polls (same type, url): each poll would be "
        "made twice and its posts stored and counted twice; remove one of them (one source may list several "
        "services); sources[0].url is set on line 7")


@pytest.mark.parametrize(
    ("first", "second"),
    [
        # One instance or forum, different searches, tags or communities: different things fetched.
        ('type = "mastodon"\nurl = "https://mastodon.social"\nquery = "outage"\n',
         'type = "mastodon"\nurl = "https://mastodon.social"\nquery = "slackdown"\n'),
        ('type = "discourse"\nurl = "https://community.example.com"\n',
         'type = "discourse"\nurl = "https://community.example.com"\nquery = "sync"\n'),
        ('type = "lemmy"\nurl = "https://lemmy.world"\nquery = "slack down"\n',
         'type = "lemmy"\nurl = "https://lemmy.world"\nquery = "slack outage"\n'),
        ('type = "hackernews"\nquery = "slack down"\n', 'type = "hackernews"\nquery = "Slack outage"\n'),
        ('type = "reddit"\nquery = "r/sysadmin"\n', 'type = "reddit"\nquery = "sysadmin"\n'),
        # A query string is part of what is fetched, in its order.
        ('type = "rss"\nurl = "https://example.org/search.rss?q=a&sort=new"\n',
         'type = "rss"\nurl = "https://example.org/search.rss?q=b&sort=new"\n'),
        ('type = "rss"\nurl = "https://example.org/feed"\n', 'type = "rss"\nurl = "https://example.org:8443/feed"\n'),
        # Two types read one URL two ways (a page's feed and its JSON API are different sources of it anyway).
        ('type = "statuspage"\nurl = "https://status.example.org"\nservices = ["Slack"]\n',
         'type = "discourse"\nurl = "https://status.example.org"\n'),
        # A disabled copy polls nothing.
        ('type = "rss"\nurl = "https://example.org/feed"\n',
         'type = "rss"\nurl = "https://example.org/feed"\nenabled = false\n'),
        ('type = "rss"\nurl_env = "FEED_A"\n', 'type = "rss"\nurl_env = "FEED_B"\n'),
    ],
    ids=["mastodon tags", "discourse latest and search", "lemmy searches", "hackernews searches",
         "subreddit and search", "queries", "ports", "types", "disabled", "url_envs"],
)
def test_sources_fetching_different_things_on_one_host_pass(first: str, second: str) -> None:
    config = parse_config(_sources(first, second), "x.toml")
    assert [src.name for src in config.sources] == ["s0", "s1"]
    # While the first given twice is a copy.
    with pytest.raises(ConfigError, match=r"sources\[1\]\.\w+: source 's1' polls what source 's0' polls"):
        parse_config(_sources(first, first), "x.toml")


def test_the_default_bases_are_the_collectors() -> None:
    # The collectors' own constants, which source_identity cannot import (the collectors import the config).
    assert DEFAULT_BASES == _DEFAULT_BASES

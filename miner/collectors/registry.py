"""Source type -> collector, and the host each type talks to when its `url` is not set."""

from __future__ import annotations

from miner.collectors.base import Collector
from miner.collectors.bluesky import DEFAULT_BASE as BLUESKY_BASE
from miner.collectors.bluesky import BlueskyCollector
from miner.collectors.discourse import DiscourseCollector
from miner.collectors.hackernews import DEFAULT_BASE as HN_BASE
from miner.collectors.hackernews import HackerNewsCollector
from miner.collectors.http import host_of
from miner.collectors.lemmy import LemmyCollector
from miner.collectors.mastodon import MastodonCollector
from miner.collectors.reddit import WWW as REDDIT_BASE
from miner.collectors.reddit import RedditCollector
from miner.collectors.rss import RssCollector
from miner.collectors.status_feed import StatusFeedCollector
from miner.collectors.statuspage import StatuspageCollector
from miner.config import SourceConfig

_DEFAULT_BASES = {"hackernews": HN_BASE, "bluesky": BLUESKY_BASE, "reddit": REDDIT_BASE}


def default_collectors() -> dict[str, Collector]:
    """A fresh collector per source type. Reddit and Bluesky cache login tokens, so keep one set per process."""
    return {
        "rss": RssCollector(),
        "reddit": RedditCollector(),
        "hackernews": HackerNewsCollector(),
        "discourse": DiscourseCollector(),
        "lemmy": LemmyCollector(),
        "mastodon": MastodonCollector(),
        "bluesky": BlueskyCollector(),
        "statuspage": StatuspageCollector(),
        "status_feed": StatusFeedCollector(),
    }


def source_host(source: SourceConfig) -> str:
    """The host a source's requests go to: what per-host concurrency limits are keyed by."""
    return host_of(source.url or _DEFAULT_BASES.get(source.type, source.name))

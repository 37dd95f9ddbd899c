"""Settings shared by every collector: the `[collect]` table of feeds.toml."""

from __future__ import annotations

from dataclasses import dataclass

from miner.settings import Conflict
from miner.source_settings import MAX_INTERVAL, MAX_TIMEOUT


@dataclass(frozen=True)
class CollectSettings:
    user_agent: str = "miner/0.1 (+https://github.com/miner-project/miner; outage signal miner)"
    max_body_bytes: int = 5_000_000  # larger responses are refused, not truncated silently
    per_host_concurrency: int = 2
    max_workers: int = 8  # threads polling due sources at once (across all hosts)
    connect_timeout: float = 10.0
    backoff_base: float = 60.0  # seconds; doubles per consecutive failure, with jitter
    backoff_max: float = 3600.0
    backoff_jitter: float = 0.25  # a failed source waits between (1 - jitter) and 1 times its backoff
    max_redirects: int = 5
    max_items: int = 100  # items asked for per API request (each API caps this itself too)
    max_pages: int = 5  # pages one poll reads at most, when more is new than one page holds
    max_text_chars: int = 4000  # normalised post text is cut here; outage signal is in the first lines

    def validate(self) -> None:
        # An HTTP header: httpx cannot encode anything else (every poll, and miner run's start, would fail).
        if bad := next((ch for ch in self.user_agent if not " " <= ch <= "~"), None):
            raise ValueError(f"user_agent: must be printable ASCII, without line breaks (found U+{ord(bad):04X})")
        # h11 refuses a header value with a space at either end (every poll failed with "Illegal header value"),
        # and an empty one is sent as such, which APIs such as Reddit's refuse.
        if not self.user_agent.strip():
            raise ValueError("user_agent: must not be blank (APIs such as Reddit's refuse requests without one)")
        if self.user_agent != self.user_agent.strip():
            raise ValueError(f"user_agent: must not start or end with a space (got {self.user_agent!r})")
        if self.max_body_bytes < 1024:
            raise ValueError("max_body_bytes: must be at least 1024")
        if self.per_host_concurrency < 1:
            raise ValueError("per_host_concurrency: must be at least 1")
        if self.max_workers < 1:
            raise ValueError("max_workers: must be at least 1")
        if not 0 < self.connect_timeout <= MAX_TIMEOUT:
            raise ValueError(f"connect_timeout: must be more than 0 and at most {MAX_TIMEOUT:.0f} seconds")
        if not 0 < self.backoff_base <= MAX_INTERVAL:
            raise ValueError(f"backoff_base: must be more than 0 and at most {MAX_INTERVAL} seconds (7 days)")
        if self.backoff_base > self.backoff_max == CollectSettings.backoff_max:
            # The file raised backoff_base past the default backoff_max: it was named backoff_max's error, at the
            # [collect] header's line.
            raise Conflict(f"backoff_base: must be at most backoff_max ({self.backoff_max:g}), got "
                           f"{self.backoff_base:g}", also=("backoff_max",))
        if not self.backoff_base <= self.backoff_max <= MAX_INTERVAL:
            raise Conflict(f"backoff_max: must be at least backoff_base ({self.backoff_base:g}) and at most "
                           f"{MAX_INTERVAL} seconds, got {self.backoff_max:g}",
                           also=("backoff_base",) if self.backoff_max < self.backoff_base else ())
        if not 0 <= self.backoff_jitter < 1:
            raise ValueError("backoff_jitter: must be in [0, 1)")
        if self.max_redirects < 0:
            raise ValueError("max_redirects: must not be negative")
        if not 1 <= self.max_items <= 500:
            raise ValueError("max_items: must be 1..500")
        if not 1 <= self.max_pages <= 100:
            raise ValueError("max_pages: must be 1..100")
        if self.max_text_chars < 200:
            raise ValueError("max_text_chars: must be at least 200")

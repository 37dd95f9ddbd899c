"""Settings shared by every collector: the `[collect]` table of feeds.toml."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CollectSettings:
    user_agent: str = "miner/0.1 (+https://github.com/miner-project/miner; outage signal miner)"
    max_body_bytes: int = 5_000_000  # larger responses are refused, not truncated silently
    per_host_concurrency: int = 2
    connect_timeout: float = 10.0
    backoff_base: float = 60.0  # seconds; doubles per consecutive failure, with jitter
    backoff_max: float = 3600.0
    max_redirects: int = 5

    def validate(self) -> None:
        if self.max_body_bytes < 1024:
            raise ValueError("max_body_bytes: must be at least 1024")
        if self.per_host_concurrency < 1:
            raise ValueError("per_host_concurrency: must be at least 1")
        if self.backoff_base <= 0 or self.backoff_max < self.backoff_base:
            raise ValueError("backoff_max: must be >= backoff_base > 0")

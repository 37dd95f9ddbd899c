"""The `[detector]` table of feeds.toml: every detector parameter, with defaults that work out of the box."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DetectorParams:
    bucket_minutes: int = 5

    def validate(self) -> None:
        if self.bucket_minutes < 1:
            raise ValueError("bucket_minutes: must be at least 1")

"""The `[alerts]` table of feeds.toml: SMTP, webhooks and routes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AlertSettings:
    enabled: bool = True

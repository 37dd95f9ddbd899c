"""What the service's HTTP endpoint (miner.http_api) asks of the service: a callable for each of its routes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from miner.http_cache import Reply


@dataclass
class Endpoints:
    """What the server needs from the service; each callable is thread-safe."""

    health: Callable[[], tuple[bool, dict[str, Any]]]
    metrics: Callable[[], str]
    report: Callable[[object, str], dict[str, Any]]  # raises InputError (400) or RateLimited (429)
    # GET of a read API path and its query string -> (status, body); None for a path it does not know (404)
    read: Callable[[str, str], tuple[int, dict[str, Any]] | None] | None = None
    # the same for the status board's pages -> (status, HTML)
    board: Callable[[str, str], tuple[int, str] | None] | None = None
    # a GET's path, or /report's at a POST -> the answer given before the route's own (/livez, /readyz; every route's
    # while the service starts: service_starting), or None
    early: Callable[[str], Reply | None] | None = None

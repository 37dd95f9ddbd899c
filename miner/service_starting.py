"""What the service's HTTP endpoint answers while the service starts, and its liveness and readiness probes.

`miner run` listens before the slow part of its start: the store's check (a wait for another process's upgrade of
it, up to 15 minutes), the model's load and the store's upgrade (10 s for a 0.1.0 store of 1 M posts, 25 s at
2.5 M). It listened only after all of it: connections were refused meanwhile, so a liveness probe (Kubernetes', a
Docker healthcheck's, a load balancer's) failed, an orchestrator killed the service mid-upgrade, and the next start
began the upgrade again, so a large store's service might never come up. While it starts:

- ``/livez``: 200 ``{"status": "starting", "phase": ...}``: the process is alive and getting on with its start;
- ``/healthz`` and ``/readyz``: 503 with the same body, ``stages`` as /healthz has them (no job has run);
- ``/metrics``: ``miner_starting 1`` and ``miner_start_phase{phase}``, and no gauge read from the store (its
  connection would upgrade the store, or wait for the upgrade's lock);
- the read API, the status board and ``POST /report``: 503 with ``Retry-After``, the store not open to them yet.

Once started: ``/livez`` 200 ``{"status": "ok"}`` while the endpoint answers; ``/readyz`` 200 ``{"status":
"ready"}`` (503 once the store file is lost, as the service stops); ``/healthz`` as before (its jobs' health). A
reload's new service, prepared while the one before ran, starts in milliseconds on the listening socket handed over
(service_handover): it answers only once started, the connections made meanwhile waiting in the backlog as before.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from miner import status_board
from miner.http_cache import Reply, json_text
from miner.metrics import Metrics
from miner.read_api import PREFIX as READ_PREFIX
from miner.timeutil import iso

# Seconds a client is asked to wait before it asks again while the service starts.
RETRY_AFTER = 5
Health = Callable[[], tuple[bool, dict[str, Any]]]


class Starting:
    """The phase of the service's start until it has started (thread-safe), and the endpoint's answers meanwhile.

    ``health`` is the service's /healthz (its stages), ``metrics`` the registry its /metrics renders, ``tell`` told
    each phase's words (systemd's STATUS: service_notify)."""

    def __init__(self, health: Health, metrics: Metrics, clock: Callable[[], datetime],
                 tell: Callable[[str], None] | None = None) -> None:
        self._health = health
        self._tell = tell
        self._metrics = metrics
        self._clock = clock
        self._guard = threading.Lock()
        self._since = clock()
        self._began = time.monotonic()
        self._phase: tuple[str, str] | None = None  # (key, words); None once started
        self.set("start", "starting")

    def set(self, key: str, words: str) -> None:
        """The start is now at phase ``key`` (its label on /metrics), doing what ``words`` say (on /healthz)."""
        with self._guard:
            self._phase = (key, words)
            self._metrics.set("miner_starting", 1.0)
            self._metrics.replace("miner_start_phase", {(("phase", key),): 1.0})
        if self._tell is not None:
            self._tell(words)

    def started(self) -> None:
        with self._guard:
            self._phase = None
            self._metrics.set("miner_starting", 0.0)
            self._metrics.replace("miner_start_phase", {})

    @property
    def phase(self) -> str | None:
        """What the start is doing, None once started."""
        with self._guard:
            return None if self._phase is None else self._phase[1]

    def detail(self, phase: str) -> dict[str, Any]:
        """/healthz's body while the service starts."""
        _ok, health = self._health()
        return {**health, "status": "starting", "phase": phase, "since": iso(self._since),
                "seconds": round(time.monotonic() - self._began, 1)}

    def answer(self, path: str) -> Reply | None:
        """The answer to a GET of ``path`` (without its query), or a POST of /report, given before the endpoint's
        own: the probes', and every route's while the service starts; None where the endpoint answers as usual."""
        phase = self.phase
        if path == "/livez":
            body = {"status": "ok", "now": iso(self._clock())} if phase is None else self.detail(phase)
            return 200, json_text(body), "application/json", {}
        if phase is None:
            return self._ready() if path == "/readyz" else None
        if path in ("/healthz", "/readyz"):
            return 503, json_text(self.detail(phase)), "application/json", {}
        if path == "/metrics":
            return 200, self._metrics.render(), "text/plain; version=0.0.4", {}
        later = {"Retry-After": str(RETRY_AFTER)}
        if status_board.is_page(path):
            return 503, status_board.starting_page(path, phase, RETRY_AFTER), "text/html", {
                **status_board.HEADERS, **later}
        if path.startswith(READ_PREFIX) or path == "/report":
            what = "reports are taken" if path == "/report" else "the API answers"
            return 503, json_text({"error": f"the service is starting ({phase}); {what} once it has started: ask "
                                            f"again in {RETRY_AFTER} s", "status": "starting", "phase": phase}), \
                "application/json", later
        return None

    def _ready(self) -> Reply:
        _ok, health = self._health()
        if health.get("status") == "failed":  # the store file lost: the service is stopping
            return 503, json_text({"status": "failed", "error": health.get("error"), "now": health.get("now")}), \
                "application/json", {}
        return 200, json_text({"status": "ready", "now": health.get("now"), "model": health.get("model")}), \
            "application/json", {}

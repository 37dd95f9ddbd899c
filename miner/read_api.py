"""The read-only JSON API on the service's HTTP endpoint, version 1: each service's state, the incidents, and a
service's bucket series, for dashboards, status widgets and scripts (docs/api.md).

Aggregates only: no post's text, link or author hash is in any answer. Every answer is read through the API's own
store connection, one request at a time; a request that waits more than READ_WAIT for its turn is answered 503, so a
slow read holds neither the reports nor /metrics, which read and write on connections of their own.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, unquote

from miner.errors import MinerError
from miner.muted import pending_silences, service_mute
from miner.provider_ongoing import ongoing
from miner.query_fields import MAX_FIELDS, BadRequest, refused
from miner.read_paging import CURSOR, BadCursor, cursor_of, next_link, read_cursor
from miner.read_times import before, series_range, when
from miner.settings import guess
from miner.store.incidents import UnscoredGap, gap_json
from miner.timeutil import floor_time, iso, iso_exact, parse_iso
from miner.urls import web_link
from miner.warmup import health, warm_from_saved

if TYPE_CHECKING:
    from miner.config import Config
    from miner.store import Store

VERSION = 1
PREFIX = "/api/v1/"
ENDPOINTS = ("/api/v1/services", "/api/v1/incidents", "/api/v1/services/NAME/series")
READ_WAIT = 5.0  # seconds a request waits for the ones before it
# Requests reading or waiting their turn at once; more are answered 503 at once. Each holds one of the endpoint's
# 32 connections (http_api.MAX_CONNECTIONS) while it waits: 32 clients asking for the board's index of 300 services
# over and over held them all, and /healthz and POST /report were answered "too many connections" 43 times in 45.
READ_QUEUE = 8
# When this thread's latest read of the store began (time.monotonic(), the moment it reads): what http_cache dates a
# kept answer from, as its Age. The request may have waited READ_WAIT for its turn before it.
_began = threading.local()
DEFAULT_SINCE = timedelta(days=7)
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000
# The most buckets one series answer holds: a week of 1-minute buckets, 35 days of 5-minute ones (about 1 MB, 0.1 s).
# The 400 days of bucket rows kept by default were 115,200 buckets, 10 MB and a second under the read lock per GET.
MAX_SERIES_BUCKETS = 10_080
DEFAULT_HOURS = 24
STATUSES = ("open", "resolved", "all")
# How long after its resolve a service's entry names its last incident: a status page that said "OK" at once lost
# an outage that ended minutes ago, while /incidents and the digest still told it (the board's sparkline spans a day).
RESOLVED_SHOWN = timedelta(hours=24)

Answer = tuple[int, dict[str, Any]]
T = TypeVar("T")


def read_began() -> float | None:
    """When this thread's latest read of the store began (time.monotonic()) since it was last asked; None if it made
    none (a bad request, a 503 for its turn)."""
    at: float | None = getattr(_began, "at", None)
    _began.at = None
    return at


class Unavailable(Exception):
    """A 503 with its message: the store could not be read, or a request waited READ_WAIT for its turn."""


class ReadApi:
    """``store`` gives the API's connection; ``store_failed`` is called when a read raised, before the 503."""

    def __init__(self, config: Config, store: Callable[[], Store], store_failed: Callable[[], None],
                 clock: Callable[[], datetime]) -> None:
        self._config = config
        self._store = store
        self._store_failed = store_failed
        self._clock = clock
        self._providers = {s.name: s.provider for s in config.services}
        # The sources polled: an incident of a status source removed (or renamed) is never resolved in the store.
        self._polled = frozenset(config.polled_sources)
        self._lock = threading.Lock()
        self._queue = threading.BoundedSemaphore(READ_QUEUE)

    @property
    def _bucket(self) -> timedelta:
        return timedelta(minutes=self._config.detector.bucket_minutes)

    @property
    def names(self) -> tuple[str, ...]:
        """The configured services' names, in the order of feeds.toml."""
        return tuple(self._providers)

    @property
    def bucket_minutes(self) -> int:
        return self._config.detector.bucket_minutes

    @property
    def max_hours(self) -> int:
        """The most hours a series may go back: no further than bucket rows are kept, nor than MAX_SERIES_BUCKETS."""
        return max(1, min(self._config.store.bucket_days * 24, MAX_SERIES_BUCKETS * self.bucket_minutes // 60))

    def answer(self, path: str, query: str) -> Answer | None:
        """(status, body) of a GET of ``path``, None for a path that is not the API's (a 404 for the caller)."""
        if not path.startswith(PREFIX):
            return None
        parts = path[len(PREFIX):].split("/")
        route: Callable[[Store, dict[str, str]], dict[str, Any]]
        allowed: tuple[str, ...]
        if parts == ["services"]:
            route, allowed = self.services, ()
        elif parts == ["incidents"]:
            route, allowed = self.incidents, ("status", "service", "since", "until", "limit", CURSOR)
        elif len(parts) == 3 and parts[0] == "services" and parts[2] == "series" and parts[1]:
            route, allowed = partial(self.series, unquote(parts[1])), ("hours", "since", "until")
        else:
            return None
        try:
            params = parse_query(query, allowed)
            return 200, self.read(lambda store: route(store, params))
        except BadRequest as exc:
            return exc.status, {"error": str(exc)}
        except Unavailable as exc:
            return 503, {"error": str(exc)}

    def read(self, reads: Callable[[Store], T]) -> T:
        """What ``reads`` gets from the API's store connection, one request at a time (the status board's pages
        too), every read of it seeing the store at one moment. Raises BadRequest as ``reads`` does, and Unavailable
        for a 503."""
        if not self._queue.acquire(blocking=False):
            raise Unavailable(f"busy: {READ_QUEUE} requests are reading or waiting for their turn; retry soon")
        try:
            if not self._lock.acquire(timeout=READ_WAIT):
                raise Unavailable(f"busy: a request waited {READ_WAIT:g} s for the ones before it; retry soon")
            try:
                # One moment of the store: a job committing during the read of 300 services mixed two.
                store = self._store()
                with store.database.snapshot():
                    _began.at = time.monotonic()
                    return reads(store)
            except MinerError:
                self._store_failed()
                raise Unavailable("cannot read the store right now") from None
            finally:
                self._lock.release()
        finally:
            self._queue.release()

    def window(self, now: datetime, hours: int) -> tuple[datetime, datetime]:
        """The start of the first and of the last bucket (the one in progress) of a series of ``hours`` to ``now``."""
        return floor_time(now - timedelta(hours=hours), self._bucket), floor_time(now, self._bucket)

    # GET /api/v1/services --------------------------------------------------------------------------------

    def services(self, store: Store, params: dict[str, str]) -> dict[str, Any]:
        now = self._clock()
        silences = pending_silences(store, now)  # once, not per service
        return {"version": VERSION, "now": iso(now), "bucket_minutes": self._config.detector.bucket_minutes,
                "services": [self.state(store, svc.name, now, silences) for svc in self._config.services]}

    def state(self, store: Store, name: str, now: datetime, silences: list[dict[str, Any]] | None = None
              ) -> dict[str, Any]:
        """One configured service's entry of /api/v1/services as of ``now``; ``silences``: pending_silences, read
        here if not given."""
        bucket = self._bucket
        current = floor_time(now, bucket)
        latest = current - bucket  # the latest bucket that has ended
        hour = floor_time(now - timedelta(hours=1), bucket)  # the buckets overlapping the last hour, on the grid
        rows = store.series(name, min(hour, latest), current + bucket)
        done = next((r for r in rows if r["bucket_start"] == iso(latest)), None)
        recent = [r for r in rows if parse_iso(r["bucket_start"]) >= hour]
        # The detector's last bucket, as `miner status` shows it: behind the clock while its job fails, after it
        # while the clock is behind the store.
        scored = store.last_scored(name)
        incident = store.open_incident_for(name)
        saved = store.detector_state(name)
        warm = warm_from_saved(self._config.detector, saved)
        return {
            "service": name,
            "provider": self._providers[name],
            "state": "incident" if incident else "ok",
            # What the board's badge says. "ok" in state only ever meant no incident open: while the detector warms
            # up, or before it scored a bucket, none can open, so "ok" told a status widget "no outage" where the
            # truth was "cannot tell yet". A field of its own, as v1 only adds fields: a client reading state's two
            # values reads them still.
            "health": health(incident is not None, saved, warm),
            "incident": {"id": incident["id"], "opened_at": _time(incident["opened_at"])} if incident else None,
            "recently_resolved": _resolved(store, store.incidents_newest_first(
                status="resolved", service=name, since=now - RESOLVED_SHOWN, limit=1)),
            "latest_bucket": {"start": iso(latest), "posts": done["posts"] if done else 0,
                              "complaints": done["complaints"] if done else 0},
            "last_hour": {"since": iso(hour), "posts": sum(r["posts"] for r in recent),
                          "complaints": sum(r["complaints"] for r in recent)},
            "baseline": _round(scored["baseline"], 3) if scored else None,
            "z_score": _round(scored["score"], 2) if scored else None,
            # No incident opens before it however many complain (`miner status` says it too): null once warm.
            "warm_from": warm,
            "official": self._official_now(store, name, now),
            "last_post_at": _time(store.last_counted_post_at(name, bucket)),
            # As the running service's planner mutes it: its config's windows (feeds.toml as of its start or reload).
            **service_mute(self._config.alerts, pending_silences(store, now) if silences is None else silences, name,
                           now),
        }

    def _official_now(self, store: Store, service: str, now: datetime) -> dict[str, Any] | None:
        """The provider's latest-started incident going on now, as provider_ongoing (the alerts' and digest's rule too)
        has it."""
        live = [o for o in store.official_incidents(service, now) if ongoing(o, now, self._polled)]
        return _official(live[-1]) if live else None

    # GET /api/v1/incidents -------------------------------------------------------------------------------

    def incidents(self, store: Store, params: dict[str, str]) -> dict[str, Any]:
        return self.incidents_reopened(store, params)[0]

    def incidents_reopened(self, store: Store, params: dict[str, str], also: Sequence[int] = ()
                           ) -> tuple[dict[str, Any], dict[int, list[tuple[datetime | None, datetime]]]]:
        """The answer of `incidents`, and the re-openings (Store.reopenings_of) of its incidents and of ``also``:
        the status board's service page shows them all, from this one read of them."""
        now = self._clock()
        status = params.get("status", "all")
        if status not in STATUSES:
            raise BadRequest(f"status: must be one of {', '.join(STATUSES)} (got {status[:40]!r})"
                             + guess(status, STATUSES))
        service = params.get("service")
        if service is not None and service not in self._providers and not store.incidents_newest_first(
                status=None, service=service, since=None, limit=1):
            raise BadRequest(f"service: no service named {service[:80]!r}{guess(service, self._providers)}")
        until = when(params["until"], "until") if "until" in params else None
        # Without until, the week to now as before (to the second, as the answer gives now); with it, the week to it
        # (not one that ended before it began).
        since = when(params["since"]) if "since" in params else before(
            now.replace(microsecond=0) if until is None else until, DEFAULT_SINCE)
        if until is not None and until <= since:
            raise BadRequest(f"until: {iso_exact(until)} is not after since ({iso_exact(since)}): no time is in "
                             "between")
        limit = _whole(params, "limit", DEFAULT_LIMIT, MAX_LIMIT)
        try:
            after = read_cursor(params[CURSOR]) if CURSOR in params else None
        except BadCursor:
            raise BadRequest(f"{CURSOR}: not one this API gave (got {params[CURSOR][:60]!r}); follow a page's next "
                             "as it is") from None
        rows = store.incidents_newest_first(status=None if status == "all" else status, service=service, since=since,
                                            until=until, after=after, limit=limit + 1)
        official = store.official_incidents_by_id([r["official_incident_id"] for r in rows[:limit]
                                                   if r["official_incident_id"] is not None])
        minutes = store.bucket_minutes()
        width = timedelta(minutes=minutes) if minutes else None
        resolved = [r["id"] for r in rows[:limit] if r["status"] == "resolved"]
        closed, gaps = store.ended_unseen(resolved)
        reopened = store.reopenings_of([*(r["id"] for r in rows[:limit]), *also], now)
        # As given, to the fraction of a second: the next page is read with the same bounds.
        applied = {"status": status, "service": service, "since": iso_exact(since),
                   "until": None if until is None else iso_exact(until), "limit": str(limit)}
        return {"version": VERSION, "now": iso(now), "status": status, "service": service, "since": applied["since"],
                "limit": limit, "incidents": [self._incident(r, official, store.peak_baseline(r, width, now),
                                                             closed.get(r["id"]), gaps.get(r["id"]),
                                                             reopened[r["id"]][-1][1] if r["id"] in reopened else None)
                                              for r in rows[:limit]],
                "truncated": len(rows) > limit, "until": applied["until"], CURSOR: params.get(CURSOR),
                "next": next_link(applied, cursor_of(rows[limit - 1])) if len(rows) > limit else None}, reopened

    def _incident(self, row: Mapping[str, Any], official: Mapping[int, dict[str, Any]], peak_baseline: float | None,
                  untracked: str | None, gap: UnscoredGap | None, reopened: datetime | None
                  ) -> dict[str, Any]:
        # The names of the alerts' JSON webhook payload where they say the same (docs/alerts.md); baseline, the
        # opening bucket's (as incidents.baseline), is not the webhook's, which is this peak_baseline.
        linked = official.get(row["official_incident_id"]) if row["official_incident_id"] is not None else None
        return {
            "id": row["id"],
            "service": row["service"],
            "provider": self._providers.get(row["service"]),
            "status": row["status"],
            "opened_at": _time(row["opened_at"]),
            "updated_at": _time(row["updated_at"]),
            "resolved_at": _time(row["resolved_at"]),
            "peak_complaints": int(row["peak_complaints"] or 0),
            "baseline": _round(row["baseline"], 3),
            "peak_baseline": _round(peak_baseline, 3),
            "z_score": _round(row["peak_score"], 2),
            "total_complaints": int(row["total_complaints"] or 0),
            "symptoms": _symptoms(row["symptoms"]),
            "official": _official(linked) if linked else None,
            "lead_time_minutes": _round(row["lead_time_minutes"], 1),
            # Its last re-opening, as the webhook's: opened_at alone read as one outage since then.
            "reopened_at": None if reopened is None else iso(reopened),
            # Closed by miner, not seen to end (its service left feeds.toml): resolved_at is then no end of the outage.
            "closed_untracked": untracked,
            # Resolved after miner's own downtime, its end unseen (from ended_from): resolved_at is when it scored anew.
            "resolved_after_gap": None if gap is None else gap_json(gap),
        }

    # GET /api/v1/services/NAME/series --------------------------------------------------------------------

    def series(self, name: str, store: Store, params: dict[str, str], *, max_hours: int | None = None
               ) -> dict[str, Any]:
        """``max_hours``: the most ``?hours=`` taken (and hours from ``since`` to ``until``), if fewer than the hours
        bucket rows are kept."""
        if name not in self._providers:
            raise BadRequest(f"no service named {name[:80]!r}{guess(name, self._providers)}", 404)
        most = self.max_hours if max_hours is None else min(max_hours, self.max_hours)
        # To the second, as "now" is written: the window's ends taken from it ("until" by default, "since" for
        # hours) repeated it with the clock's microseconds, a time other than the answer's "now".
        now = self._clock().replace(microsecond=0)
        hours: int | None = None
        if "since" in params or "until" in params:
            since, until = series_range(params, now, DEFAULT_HOURS, most)
            start, current = floor_time(since, self._bucket), floor_time(now, self._bucket)
            # No bucket after the one in progress, as with hours (and none past year 9999 for an until there).
            last = min(floor_time(until, self._bucket), current)
        else:
            hours = _whole(params, "hours", DEFAULT_HOURS, most)
            since, until = now - timedelta(hours=hours), now
            start, current = self.window(now, hours)
            last = current
        rows = store.series(name, start, last + self._bucket)
        return {"version": VERSION, "now": iso(now), "service": name, "provider": self._providers[name],
                "bucket_minutes": self._config.detector.bucket_minutes, "hours": hours,
                "since": iso_exact(since), "until": iso_exact(until),
                "buckets": [{"start": _time(r["bucket_start"]), "posts": r["posts"], "complaints": r["complaints"],
                             "complete": parse_iso(r["bucket_start"]) < current} for r in rows]}


def parse_query(query: str, allowed: tuple[str, ...], *, others: bool = False) -> dict[str, str]:
    """The query's parameters, each once, all of them among ``allowed``; with ``others``, the ones not among
    ``allowed`` are left out instead (a page linked with ``?utm_source=`` or a tracker's tag still shows)."""
    try:
        # A page's left-out parameters may be anything a link carried: only those it takes must decode.
        parsed = parse_qs(query, keep_blank_values=True, errors="replace" if others else "strict",
                          max_num_fields=MAX_FIELDS)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest(refused(query)) from None
    if others and any("\ufffd" in v for key in allowed for v in parsed.get(key, ())):
        raise BadRequest(refused(query, allowed))
    if others:
        parsed = {key: values for key, values in parsed.items() if key in allowed}
    for key, values in parsed.items():
        if key not in allowed:
            takes = f"takes {', '.join(allowed)}" if allowed else "takes no parameters"
            raise BadRequest(f"unknown parameter {key[:40]!r}{guess(key, allowed)}; this endpoint {takes}")
        if len(values) > 1:
            raise BadRequest(f"{key}: given {len(values)} times; give it once")
    return {key: values[0] for key, values in parsed.items()}


def _whole(params: Mapping[str, str], key: str, default: int, most: int) -> int:
    text = params.get(key)
    if text is None:
        return default
    value = text.strip()
    # int() would also take "+5", "1_0" and non-ASCII digits, and refuses more than 4300 digits with a ValueError.
    if not (value.isascii() and value.isdigit() and len(value) <= 9) or not 1 <= int(value) <= most:
        raise BadRequest(f"{key}: must be a whole number from 1 to {most} (got {text[:40]!r})")
    return int(value)


def _time(value: str | None) -> str | None:
    """A stored time as ISO 8601 with its offset."""
    return iso(parse_iso(value)) if value else None


def _resolved(store: Store, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A service's recently_resolved: an end miner did not see is told as /api/v1/incidents tells it, as its
    resolved_at minus opened_at is then no duration of the outage."""
    if not rows:
        return None
    closed, gaps = store.ended_unseen([rows[0]["id"]])
    gap = gaps.get(rows[0]["id"])
    return {"id": rows[0]["id"], "opened_at": _time(rows[0]["opened_at"]), "resolved_at": _time(rows[0]["resolved_at"]),
            "peak_complaints": int(rows[0]["peak_complaints"] or 0), "closed_untracked": closed.get(rows[0]["id"]),
            "resolved_after_gap": None if gap is None else gap_json(gap)}


def _round(value: float | None, digits: int) -> float | None:
    # json.dumps writes an infinite float as Infinity, which no strict JSON parser (jq, JSON.parse) reads.
    return round(value, digits) if value is not None and math.isfinite(value) else None


def _symptoms(text: str | None) -> dict[str, int]:
    try:
        parsed = json.loads(text or "{}")
    except ValueError:
        return {}
    if not isinstance(parsed, dict):
        return {}
    return {str(k): int(v) for k, v in parsed.items() if isinstance(v, int | float) and math.isfinite(v)}


def _official(row: Mapping[str, Any]) -> dict[str, Any]:
    # Someone else's link, followed by dashboards that show it: http or https only (no javascript:), else null.
    return {"title": row["title"], "status": row["status"], "url": web_link(row["url"]),
            "started_at": _time(row["started_at"]), "posted_at": _time(row.get("posted_at") or row["started_at"]),
            "impact": row["impact"] or None}

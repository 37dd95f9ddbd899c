"""What `miner status` shows: each service's last hour against its baseline, each source's health (and whether it
needs someone to act), the silences and maintenance windows muting alerts now, the alert channels whose server the
last attempt could not reach, the notifications that failed for good, and a clock behind the store (which /healthz
and /metrics show too)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from miner.config import Config
from miner.detect import DetectorState
from miner.detect_due import due_now
from miner.model_dir import model_on_disk, resolve_model_dir
from miner.muted import in_effect, muted_until, silenced_services
from miner.store import Store
from miner.store.signals import SavedDetector
from miner.store.sources import current_warning
from miner.timeutil import counted, duration_text, floor_time, iso, parse_iso
from miner.urls import escape_controls
from miner.warmup import health, warm_from_saved

# The latest reason of the notifications failed for good, in status: an SMTP reply may run to a paragraph.
REASON_WIDTH = 120


def running_status(store_path: str | Path) -> dict[str, Any]:
    """Whether a `miner run` holds the store's lock now (``running``), and the PID and role (``holder``: service,
    replay or demo) of the process that holds it, None for none (the PID None too where its file names none).
    Asked of the lock itself (lock_owner): a PID left by a service killed with SIGKILL, since given to another
    process, read as a service running. Status read the same with the service stopped (it
    crashed, or was never started) as running: each source's next poll, long past, was the only sign that nothing
    polls, classifies or alerts."""
    from miner.service_lock import lock_owner

    owner = lock_owner(store_path)
    return {"running": owner is not None and owner[1] == "service", "pid": owner[0] if owner else None,
            "holder": owner[1] if owner else None}


def running_text(running: dict[str, Any]) -> str:
    # None: the holder could not write its PID in the lock file (a full disk).
    pid = running["pid"] if running["pid"] is not None else "unknown"
    if running["running"]:
        return f"service: `miner run` is running on this store (pid {pid})"
    # The role is the lock file's text, anyone's who can write the store's folder: raw, its controls drove a terminal.
    held = f"; a `miner {escape_controls(running['holder'])}` (pid {pid}) holds it" if running["holder"] else ""
    return (f"service: no `miner run` is running on this store{held}: nothing polls, classifies or alerts until it is "
            "started (the next polls below are when it would poll)")


def service_status(store: Store, config: Config, now: datetime, window: timedelta) -> list[dict[str, Any]]:
    """Per service: the posts and complaints in the buckets overlapping the ``window`` before ``now``, the score of
    the last bucket the detector scored and its start (None before the first), the sources the buckets that have
    ended since wait for (see _waiting_for), and the open incident (its id and when it opened) or None. Times are
    ISO 8601 with their offset; a number SQLite holds as infinite is None.

    Both are read on the bucket grid. Counted from ``now - window`` itself, a bucket as wide as the window (the
    demo's hour) was left out unless ``now`` fell on its boundary: the counts were those of the bucket in progress,
    and no score was shown, as the last scored bucket starts before ``now - window``. The score is read from the
    last bucket scored, not the last one ended: that one waits for its sources' polls (see collected_until), and
    with hourly buckets no score was shown for up to detector.settle_minutes every hour. It is the detector's last
    bucket's (Store.last_scored), as the read API's: with the clock behind the store, a bucket after ``now``.
    """
    bucket = timedelta(minutes=config.detector.bucket_minutes)
    end = floor_time(now, bucket) + bucket
    start = floor_time(now - window, bucket)
    polled = {r["name"]: r for r in store.source_rows()}
    out = []
    for svc in config.services:
        saved = store.detector_state(svc.name)
        counted = store.series(svc.name, start, end)
        latest = store.last_scored(svc.name)
        incident = store.open_incident_for(svc.name)
        warm = warm_from_saved(config.detector, saved)
        out.append({
            "service": svc.name,
            "posts": sum(r["posts"] for r in counted),
            "complaints": sum(r["complaints"] for r in counted),
            "baseline": _rounded(latest["baseline"], 2) if latest else None,
            "z": _rounded(latest["score"], 1) if latest else None,
            "last_bucket": iso(saved.last_bucket) if saved else None,
            "waiting_for": _waiting_for(config, svc.name, saved, polled, now),
            "warm_from": warm,
            "health": health(incident is not None, saved, warm),
            "incident": {"id": incident["id"], "opened_at": _time(incident["opened_at"])} if incident else None,
        })
    return out


def warmup_text(services: list[dict[str, Any]], warmup_hours: float) -> list[str]:
    """The lines under the services' table for those (service_status's) no incident can open in yet: a z above
    z_open with no incident, or no baseline and nothing open, and nothing said why."""
    lines = []
    warming: dict[str, list[str]] = {}  # one line per time: services added together warm up together
    for s in services:
        if s["warm_from"]:
            warming.setdefault(s["warm_from"], []).append(s["service"])
    for at, names in warming.items():
        lines.append(f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} warming up: no incident opens from a "
                     f"bucket before {shown_time(at)} (detector.warmup_hours: {warmup_hours:g} h of history first)")
    # Before its first bucket scored (a new store, a service just added, its detector failing): no data, not OK.
    if blind := [s["service"] for s in services if s["health"] == "no_data"]:
        lines.append(f"{', '.join(blind)} {'has' if len(blind) == 1 else 'have'} no bucket scored yet: no data, an "
                     f"outage cannot be told (no incident opens before detector.warmup_hours, {warmup_hours:g} h, "
                     "of history from the first bucket scored)")
    return lines


def model_status(store: Store, config: Config, now: datetime) -> dict[str, Any]:
    """The model `miner run` loaded last (``version``; None before a service recorded one), when it loaded it
    (``loaded_at``) and ``loaded_by``, the command that did ("miner run"; "miner replay" or "miner demo" when a
    replay into the store gave its verdicts since), the ``threshold`` and ``early_exit`` it decides at (None before
    a service recorded them),
    ``verdicts_other_model``: the posts created in the day before ``now`` whose counted verdict is another model's
    (None with no version), which a model update leaves until `miner reclassify --since` runs,
    ``verdicts_other_settings``: those whose counted verdict is this model's decided at another threshold or early-exit
    setting (None with none recorded), which a change of [classifier] threshold or early_exit leaves,
    ``on_disk``: the version of the model.json classifier.model_dir holds now (None when unreadable), and
    ``config_threshold``, ``config_early_exit``: the decision feeds.toml's [classifier] settings give with that
    model.json, as the service would load them (None when it is unreadable). The service reads both at its start
    only: a model replaced in place or settings changed since are not served until it restarts or reloads."""
    from miner.pipeline import REPORTS_SOURCE

    on_disk, asked = model_on_disk(resolve_model_dir(config.classifier, Path(config.path).parent if config.path
                                                     else None), config.classifier)
    configured = {"config_threshold": asked.threshold if asked else None,
                  "config_early_exit": asked.early_exit if asked else None}
    if (serving := store.serving_model()) is None:
        return {"version": None, "loaded_at": None, "loaded_by": None, "threshold": None, "early_exit": None,
                "verdicts_other_model": None, "verdicts_other_settings": None, "on_disk": on_disk, **configured}
    version, loaded_at, loaded_by = serving
    decision = store.serving_decision()
    return {"version": version, "loaded_at": _time(loaded_at), "loaded_by": loaded_by,
            "threshold": decision.threshold if decision else None,
            "early_exit": decision.early_exit if decision else None,
            "verdicts_other_model": store.other_model_verdicts(now, version, skip_source=REPORTS_SOURCE),
            "verdicts_other_settings": store.other_decision_verdicts(now, version, decision,
                                                                     skip_source=REPORTS_SOURCE) if decision else None,
            "on_disk": on_disk, **configured}


def _waiting_for(config: Config, service: str, saved: SavedDetector | None, polled: dict[str, dict[str, Any]],
                 now: datetime) -> list[str]:
    """The sources whose next poll the service's first bucket not scored yet, ended by ``now``, waits for, as the
    detector decides it (see due_now): [] when no bucket has ended since the last one scored, or the detector's
    next run scores one."""
    try:
        state = DetectorState.from_json(saved.state) if saved else None
    except ValueError:  # a state this version cannot read (a newer one's): the detector reports it, status goes on
        return []
    return due_now(config, service, state, polled, now).waiting_for


def source_status(store: Store, config: Config) -> list[dict[str, Any]]:
    """Per configured source: its health, with None for a time it has none of (``last_ok``: never polled
    successfully; ``next_poll``: due at the next tick, or ``enabled`` is false and it is not polled).

    ``warning`` is the one that stands (see current_warning; "" for none), ``warning_at`` when a poll last gave it
    (None for none, or for one stored before its time was). ``behind``: its last poll stopped before it had read
    everything new, and the next polls read the rest (the detector waits for them: see sources.behind).
    ``needs_action``: its last poll failed in a way that lasts until someone acts (SourceError.calls_for_action: a
    revoked token's 401, a feed's 404 or 410, a TLS certificate not trusted, a page that is no feed poll after poll),
    not one that passes by itself (a 429, a 5xx, a timeout); ``needs_action_since``, the first failed poll of that
    run (None for none). A disabled source, which is not polled, needs none."""
    rows = {r["name"]: r for r in store.source_rows()}
    out = []
    for src in config.sources:
        row = rows.get(src.name, {})
        warning = current_warning(row)
        since = _time(row.get("needs_action_since")) if src.enabled else None
        out.append({
            "source": src.name,
            "type": src.type,
            "enabled": src.enabled,
            "last_ok": _time(row.get("last_ok_at")),
            "next_poll": _time(row.get("next_poll_at")) if src.enabled else None,
            "failures": row.get("consecutive_failures", 0),
            "last_error": row.get("last_error") or "",
            "needs_action": since is not None,
            "needs_action_since": since,
            "posts_stored": row.get("posts_stored", 0),
            "behind": bool(row.get("behind", 0)),
            "warning": warning[0] if warning else "",
            "warning_at": iso(warning[1]) if warning and warning[1] else None,
        })
    return out


def alert_channels(config: Config) -> set[str]:
    """The alert channels the config sends through: "email" when a route has recipients, "webhook:NAME" per webhook
    a route names; none with alerts disabled."""
    alerts = config.alerts
    if not alerts.enabled:
        return set()
    return ({"email"} if any(r.email for r in alerts.routes) else set()) | {
        f"webhook:{name}" for r in alerts.routes for name in r.webhooks}


def channel_status(store: Store, config: Config) -> list[dict[str, Any]]:
    """Per configured alert channel ("email", "webhook:NAME") whose server was found failing at its last attempt
    (alert_state unreachable:CHANNEL, until a message gets through): ``error``, in net_errors' words, and
    ``last_failed_at``, its last failed attempt (None when none is kept). A TLS failure showed only in `miner outbox`
    and the log, and a queue held for 72 h by a certificate nobody trusted looked like no problem here."""
    channels = alert_channels(config)
    if not channels:
        return []
    return [{"channel": r["channel"], "error": r["error"], "last_failed_at": _time(r["at"])}
            for r in store.unreachable_channels() if r["channel"] in channels]


def failed_status(store: Store) -> dict[str, Any] | None:
    """The notifications that failed for good (Store.failed_notifications), None for none: ``count``, ``since`` (the
    earliest failure of those still failed), ``last_failed_at``, and the latest one's ``last_id``, ``last_channel``
    and ``last_reason``. Only `miner outbox` and the log showed them: every email failing permanently for want of
    its SMTP password left status saying nothing, the channel's server being reachable."""
    failed = store.failed_notifications()
    if failed is None:
        return None
    return {"count": failed["count"], "since": _time(failed["first_at"]), "last_failed_at": _time(failed["last_at"]),
            "last_id": failed["id"], "last_channel": failed["channel"], "last_reason": failed["reason"]}


def failed_text(failed: dict[str, Any]) -> str:
    """failed_status in two lines, for `miner status`: the latest reason cut at REASON_WIDTH (`miner outbox` shows
    each whole)."""
    n, reason = failed["count"], " ".join(failed["last_reason"].split())
    if len(reason) > REASON_WIDTH:
        reason = reason[:REASON_WIDTH - 3] + "..."
    since = f" since {shown_time(failed['since'])}" if n > 1 else ""
    return (f"{counted(n, 'notification')} failed for good{since}, the last (outbox {failed['last_id']}, "
            f"{failed['last_channel']}) at {shown_time(failed['last_failed_at'], 'an unknown time')}: "
            f"{reason or 'no reason kept'}\n"
            f"`miner outbox` lists {'them' if n > 1 else 'it'} with each reason; once the cause is fixed, "
            "`miner outbox retry ID` sends one again")


def silence_status(config: Config, now: datetime, silences: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``silences`` (pending_silences) muting alerts at ``now`` (`miner silence add`), oldest first: ``id``,
    ``service`` (None for a provider's), ``provider`` (None for a service's), ``services``: those feeds.toml gives it
    now (the silence mutes them, as the planner matches it; for a service's, itself), ``until``, ``muted_until``
    (when the alerts of the services it mutes are no longer muted, the last of them for a provider's: other silences
    and maintenance windows overlapping it or following on without a gap taken in; None: they follow on
    past mute_end.HORIZON) and ``comment`` (why; "" for none).

    Only `miner silence list` showed them: the on-call reading status in an outage saw a service's incident and no
    alert of it, with nothing saying it was muted."""
    shown = []
    for r in in_effect(silences, now):
        services = silenced_services(config, r)
        ends = [muted_until(config.alerts, silences, s, now) for s in services]
        unmuted = None if None in ends else iso(max([parse_iso(r["ends_at"]), *(e for e in ends if e)]))
        shown.append({"id": r["id"], "service": r["service"], "provider": r["provider"], "services": services,
                      "until": _time(r["ends_at"]), "muted_until": unmuted, "comment": r["comment"]})
    return shown


def maintenance_status(config: Config, now: datetime, silences: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The maintenance windows of feeds.toml muting alerts at ``now``, and those starting within 24 h, in the file's
    order: ``window`` (its index in alerts.maintenance), ``service``, ``active`` (whether it mutes now), ``start``
    and ``end`` (of the window in effect, or of the next one), ``muted_until`` (when the service's alerts are no
    longer muted, the windows and ``silences`` (pending_silences) overlapping this one or following on without a gap
    taken in; None: they follow on past mute_end.HORIZON) and ``comment``.

    A window mutes as a silence does, and only the silences were shown: an incident in status with no alert of it
    said nothing of the window behind that."""
    shown = []
    for i, w in enumerate(config.alerts.maintenance):
        span = w.span(now)
        if span is None or span[1] <= now or span[0] > now + timedelta(hours=24):
            continue
        unmuted = muted_until(config.alerts, silences, w.service, max(span[0], now))
        shown.append({"window": i, "service": w.service, "active": span[0] <= now, "start": iso(span[0]),
                      "end": iso(span[1]), "muted_until": None if unmuted is None else iso(unmuted),
                      "comment": w.comment})
    return shown


def clock_status(store: Store, now: datetime) -> dict[str, Any] | None:
    """The clock behind the store (see Store.clock_behind) as `miner status`, /healthz and /metrics show it, None
    while it is not: ``newest_post``, the newest post a source dated, and ``seconds`` it is after ``now``.

    The detector then steps no bucket, and notifications wait, until the clock is set right; the log said so once,
    and nothing else did, for as long as that lasted (an hour, a day)."""
    newest = store.clock_behind(now)
    return None if newest is None else clock_behind(newest, now)


def clock_behind(newest: datetime, now: datetime) -> dict[str, Any]:
    """``newest_post`` and ``seconds`` of a clock behind the store (clock_status) at ``now``."""
    return {"newest_post": iso(newest), "seconds": round((newest - now).total_seconds())}


def clock_behind_text(behind: dict[str, Any]) -> str:
    """A clock behind the store (clock_status) in one line, for `miner status` and /healthz."""
    return (f"the clock is behind the store by {duration_text(behind['seconds'])}: it holds a post its source dated "
            f"{shown_time(behind['newest_post'])}; the detector steps no bucket, and notifications wait, until the "
            "clock is set right (NTP)")


def _time(value: str | None) -> str | None:
    """A stored time as ISO 8601 with its offset (one stored without, by hand, is UTC as every stored time)."""
    return iso(parse_iso(value)) if value else None


def _rounded(value: float | None, digits: int) -> float | None:
    # json.dumps writes an infinite float as Infinity, which no strict JSON parser (jq, JSON.parse) reads.
    return round(value, digits) if value is not None and math.isfinite(value) else None


def shown_time(value: str | None, missing: str = "") -> str:
    """A stored time as the terminal shows it, ``2026-11-28 04:50:00 UTC``; ``missing`` for None.

    The ISO text cut before its offset, as it was shown, reads as local time to whoever is not on UTC.
    """
    if value is None:
        return missing
    return parse_iso(value).strftime("%Y-%m-%d %H:%M:%S UTC")

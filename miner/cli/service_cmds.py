"""Operating commands: run the service, show status, open the store in Datasette."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from miner.cli.app import PORT, AppContext, main, pass_app
from miner.cli.output import one_line, table
from miner.cli.stdio import acting, prints

if TYPE_CHECKING:
    from miner.config import Config

# A warning can run to 2,000 characters (several joined, a gap naming ids): the status table shows its start.
WARNING_WIDTH = 100


@main.command()
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="One line per event; json for log shippers.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True)
@click.option("--http/--no-http", "http", default=None,
              help="Serve /healthz, /livez, /readyz, /metrics, POST /report, the read API (/api/v1/) and the "
                   "status board (/) (default: [server].enabled; on with --port).")
@click.option("--port", type=PORT, default=None,
              help="Port for the HTTP endpoint, which it turns on (default: [server].port; 0: any free port, which the "
                   "log names).")
@pass_app
def run(app: AppContext, log_format: str, log_level: str, http: bool | None, port: int | None) -> None:
    """Run the background service until SIGTERM or SIGINT; SIGHUP reloads the config.

    Polls each source on its interval, classifies new posts, updates buckets and incidents, dispatches the
    outbox and sends digests on schedule. Refuses to start when another service holds the same store.

    At SIGHUP it reads the --config file again and checks it as `miner config check` does. A config refused is
    logged as one error naming the key and line, and the service runs on with the one it has. A config accepted
    (even unchanged) has its model loaded, and a new HTTP address bound and another store's lock taken, while the
    service runs on (a model refused, a port taken or a store held by another process is logged as a config
    refused is, nothing stopped); then the service stops gracefully and starts again in the same process with the
    new settings and that model, the HTTP endpoint answering throughout (a connection waits milliseconds in its
    backlog); should that start fail, it logs why and starts again with the config it ran before. The command line's
    options (the HTTP ones here, the global --db) stay as given.

    SIGINT stays ignored when it was at the start, as a script's `miner run &` starts it: stop it with SIGTERM.

    Under systemd's Type=notify (NOTIFY_SOCKET set) it tells systemd each phase of its start, when it has started,
    its reloads and its stop, and pings WatchdogSec='s watchdog while no job is stuck (see docs/operations.md).
    """
    from miner.config_files import load_checked
    from miner.http_listener import bind_early, listen_at
    from miner.logsetup import setup_logging

    if port is not None and http is False:
        raise click.UsageError("--port and --no-http exclude each other")
    if port is not None:
        http = True  # the port was ignored unless [server].enabled: no endpoint where the engineer looked for one

    setup_logging(log_level, log_format)
    config = app.config
    # Before the service's imports, for the first service's endpoint: see bind_early.
    early = bind_early(listen_at(config.server, http, port))

    from miner.service import Service, ServiceOptions
    from miner.service_notify import Notifier
    from miner.service_reload import Reloader

    def make(cfg: Config) -> Service:
        nonlocal early
        service = Service(cfg, app.db_path or Path(cfg.store.path), options)
        if early is not None:
            service.listen_on(early)
            early = None
        return service

    # Across the reloads: systemd's notification socket and watchdog (Type=notify; see docs/operations.md).
    options = ServiceOptions(http=http, http_port=port, notify=Notifier.from_env())
    try:
        Reloader(config, lambda: load_checked(config.path), make).run()
    finally:
        options.notify.close()
        if early is not None:  # no service was made
            early.close()


@main.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@pass_app
@prints
def status(app: AppContext, fmt: str) -> None:
    """Per service: posts and complaints in the last hour, baseline, z, open incident. First, a clock behind the
    store (it holds a post its source dated more than 10 minutes after the current time), with that post's date and
    how far behind: the detector steps no bucket, and notifications wait, until the clock is set right. Then whether
    a `miner run` is running on the store (holds its lock), with its PID: with none, nothing polls, classifies or
    alerts, and the next polls shown are when it would poll. Then the model the service (`miner run`) loaded last,
    whether the model.json on disk is another (replaced without a restart), whether the config's [classifier]
    threshold and early_exit decide otherwise than the service (changed without a
    reload), and how many posts of the last 24 h count another model's verdict, or one decided at another setting (a
    change whose `miner reclassify` has not run). The last bucket the detector scored, and the sources the buckets
    ended since wait for. Per source: last ok, next poll, whether its last poll is behind, last error; then the
    sources whose failure needs someone to act, with since when and the whole error (a 401, 403, 404 or 410, a TLS
    certificate not trusted, a setting missing, a page that is no feed poll after poll: not a 429, a 5xx, a timeout,
    which pass by themselves), until a poll succeeds or fails otherwise; then the sources with a warning, when last
    seen (a warning stands until a poll reads the source again without it; a 304 clears none). Times are UTC.
    Posts are counted once `miner run` has classified them (`miner collect` only stores them); a line under the
    services says how many wait for that. Then the silences muting alerts now (`miner silence add`), each with what it
    mutes (a provider's: its services), until when and its comment, and the maintenance windows of feeds.toml muting
    alerts now or starting within 24 h, each with its service, when it starts and ends and its comment; each says
    when the alerts are no longer muted where windows or silences overlapping it (or starting as it ends) keep them
    muted past its end.

    A bucket is scored once the sources polled for its service have polled after it ended, or
    detector.settle_minutes after it ended; a source behind (its last poll stopped before it had read everything
    new: collect.max_pages, a rate limit, a failed later page) is waited for until then. While every one of them
    fails, or none has polled for settle_minutes though each is due (the collect job stalled, the host was
    suspended), the buckets wait for them, up to detector.max_fill_hours.

    JSON is {"service": {...}, "model": {...}, "services": [...], "unclassified": N, "sources": [...]}, N the posts
    stored with no verdict yet. The service has running (true or false), pid and holder (the PID and role, "service",
    "replay" or "demo", of the process holding the store's lock, asked of the lock itself; null for none, and the pid
    null while the lock's file names none). The model has version, loaded_at
    and loaded_by (the command that loaded it: "miner run", or "miner replay" or "miner demo" for the model a replay
    gave its verdicts with; null before one recorded it), threshold and early_exit
    (what the service decides at; null before a service recorded them), verdicts_other_model (the posts of the last 24 h
    whose counted verdict is another model's; null with no version), verdicts_other_settings (those whose counted
    verdict is the model's, decided at another threshold or early_exit; null with none recorded), on_disk (the version
    of the model.json in classifier.model_dir now, read without loading the model; null when unreadable): one that is
    not version was put in place since the service started, which serves it only once restarted or reloaded, and
    config_threshold and config_early_exit (the decision the config's [classifier] settings give with that model.json,
    early exits off below its own threshold, as the service would load them; null when it is unreadable): one that is
    not threshold and early_exit was configured since the service started.
    A service has service, posts, complaints, baseline and z (null before the first scored
    bucket), last_bucket (the start of the last bucket the detector scored; null before the first), waiting_for (the
    sources whose next poll the first bucket ended since waits for; [] for none, or when the detector's next run
    scores a bucket), warm_from (while the service's detector warms up, detector.warmup_hours of history, the start of
    the first bucket that can open an incident, a line below the table in text; null once warm or before the first
    scored bucket; a line below the table in text names the services with none scored yet), health (as the read
    API's: "incident", "no_data" before the first scored bucket, "warming_up" or "ok") and incident: {"id",
    "opened_at"} or null. A source has source, type, enabled, last_ok (null:
    never polled successfully), next_poll (null: due at the service's next tick, or not polled as enabled is false),
    failures, last_error, needs_action (true or false; false for a disabled source) and needs_action_since (the first
    failed poll of those that need someone to act; null for none), posts_stored, behind (true or false), warning
    (whole; "" for none) and warning_at (when a poll last gave it; null for none, or for one an older miner stored
    without its time). Times are ISO 8601 with their offset.

    The silences are "silences": [{"id", "service", "provider", "services", "until", "muted_until", "comment"}] in
    JSON ([] for none): service or provider is null, services those it mutes as feeds.toml stands (for a service's,
    itself), "muted_until" when their alerts are no longer muted (the last of them), other silences and maintenance
    windows overlapping it or following on without a gap taken in (null: they follow on for more than 7 days). The
    maintenance windows are "maintenance": [{"window", "service", "active", "start", "end", "muted_until",
    "comment"}] ([] for none): window is its index in alerts.maintenance, active whether it mutes now (false: it
    starts within 24 h), start and end those of the window in effect, or of the next one, and "muted_until" when the
    service's alerts are no longer muted, windows and silences overlapping it taken in (null: they follow on without
    a gap for more than 7 days).

    Then the alert channels ("email", "webhook:NAME") whose server the last attempt could not reach, with the error
    (a TLS certificate not trusted, a connection refused: see `miner outbox`) and when, until a message gets
    through; in JSON "alert_channels": [{"channel", "error", "last_failed_at"}] ([] for none). Then how many
    notifications failed for good (a permanent error, such as an SMTP password whose variable is not set, or given
    up on), since when, and the latest one's reason, until `miner outbox retry` queues them again; in JSON
    "failed_notifications": {"count", "since", "last_failed_at", "last_id", "last_channel", "last_reason"}, or null.

    Last, a retention prune held back (the clock ahead of every post a source dated, see `miner prune`), until a
    prune goes on again; in JSON "prune_held": {"at", "cutoff", "newest_post"}, or null. A clock behind the store is
    "clock_behind": {"newest_post", "seconds"} in JSON (seconds: how far that post is after the current time), or
    null.
    """
    from miner.muted import pending_silences
    from miner.status import (
        channel_status,
        clock_behind_text,
        clock_status,
        failed_status,
        failed_text,
        maintenance_status,
        model_status,
        running_status,
        running_text,
        service_status,
        shown_time,
        silence_status,
        source_status,
        warmup_text,
    )
    from miner.store.maintenance import held_prune_message
    from miner.timeutil import utcnow

    store = app.store(readonly=True, must_exist=True)
    now = utcnow()
    running = running_status(app.db_path or app.config.store.path)
    model = model_status(store, app.config, now)
    services = service_status(store, app.config, now, window=timedelta(hours=1))
    sources = source_status(store, app.config)
    channels = channel_status(store, app.config)
    failed = failed_status(store)
    pending = pending_silences(store, now)
    silences = silence_status(app.config, now, pending)
    maintenance = maintenance_status(app.config, now, pending)
    held = store.prune_held()
    behind = clock_status(store, now)
    # Posts are counted in buckets as the service classifies them: right after `miner collect --once`, the stored
    # posts were in no count and status showed 0 posts for a service that had just stored a dozen.
    unclassified = store.queue_depths()["classify"]
    if fmt == "json":
        click.echo(json.dumps({"service": running, "model": model, "services": services, "unclassified": unclassified,
                               "sources": sources, "silences": silences, "maintenance": maintenance,
                               "alert_channels": channels, "failed_notifications": failed, "prune_held": held,
                               "clock_behind": behind},
                              indent=2, allow_nan=False))
        return
    if behind:
        # First: it explains a last bucket after the current time below, and no bucket scored since.
        click.echo(clock_behind_text(behind))
        click.echo()
    click.echo(running_text(running))
    click.echo()
    click.echo(_model_line(model))
    click.echo()
    click.echo(table(("service", "posts 1h", "complaints 1h", "baseline", "z", "last bucket", "waiting for",
                      "open incident"),
                     [(s["service"], s["posts"], s["complaints"], s["baseline"], s["z"],
                       shown_time(s["last_bucket"], "none"), ", ".join(s["waiting_for"]),
                       f"#{inc['id']} since {shown_time(inc['opened_at'])}" if (inc := s["incident"]) else "")
                      for s in services]))
    for line in warmup_text(services, app.config.detector.warmup_hours):
        click.echo(line)
    if unclassified:
        click.echo(f"{unclassified} post{'' if unclassified == 1 else 's'} stored and not classified yet, in no count "
                   "above: `miner run` classifies and counts them (at its start, then every 30 s)")
    if silences:
        click.echo()
        for m in silences:  # an incident above with no alert: it says why
            what = f"provider {m['provider']} ({', '.join(m['services']) or 'no service now'})" if m["provider"] \
                else m["service"]
            # Escaped here as in the tables: a comment, a server's reply or a source's error is anyone's text, and
            # written raw it drove the on-call's terminal (a mail server's 550 reply cleared it and set its title).
            why = f": {one_line(m['comment'])}" if m["comment"] else ""
            click.echo(f"alerts of {one_line(what)} silenced until {shown_time(m['until'])} (silence {m['id']})"
                       f"{_muted_on(m['until'], m['muted_until'], len(m['services']) > 1)}{why}")
    if maintenance:
        click.echo()
        for w in maintenance:  # as a silence: an incident with no alert, or none to come
            click.echo(_maintenance_line(w))
    click.echo()
    click.echo(table(("source", "type", "last ok", "next poll", "fails", "behind", "last error"),
                     [(s["source"], s["type"], shown_time(s["last_ok"], "never"),
                       shown_time(s["next_poll"], "now" if s["enabled"] else "disabled"), s["failures"],
                       "yes" if s["behind"] else "", s["last_error"]) for s in sources], max_width=70))
    acting = [s for s in sources if s["needs_action"]]
    if acting:
        click.echo()
        for s in acting:  # whole, as an alert channel's below: the error says what to fix
            n = s["failures"]
            click.echo(f"source {s['source']} needs someone to act (since {shown_time(s['needs_action_since'])}, "
                       f"{n} failed poll{'' if n == 1 else 's'} in a row): {one_line(s['last_error'])}")
    warned = [s for s in sources if s["warning"]]
    if warned:
        click.echo()
        click.echo(table(("source", "warning seen", "warning"),
                         [(s["source"], shown_time(s["warning_at"], "before upgrade"), s["warning"]) for s in warned],
                         max_width=WARNING_WIDTH))
        if any(len(s["warning"]) > WARNING_WIDTH for s in warned):
            click.echo(f"(warnings cut at {WARNING_WIDTH} characters: --format json has them whole)")
    if channels:
        click.echo()
        for c in channels:  # whole: the error says what to fix
            click.echo(f"alerts to {c['channel']} failing (last attempt {shown_time(c['last_failed_at'], 'unknown')}): "
                       f"{one_line(c['error'])}")
    if failed:
        click.echo()
        click.echo(failed_text({**failed, "last_reason": one_line(failed["last_reason"])}))
    if held:
        click.echo()
        click.echo(held_prune_message(held))


def _maintenance_line(w: dict[str, Any]) -> str:
    """A maintenance window of status's, with when its service's alerts are no longer muted: windows overlapping it
    (a recurring one starting again before it ends) keep them muted past its own end, which was all it said."""
    from miner.alerts.mute_end import HORIZON
    from miner.status import shown_time

    why = f": {one_line(w['comment'])}" if w["comment"] else ""
    where = f"alerts.maintenance[{w['window']}]"
    start = "" if w["active"] else f"from {shown_time(w['start'])} "
    muted = "muted" if w["active"] else "to be muted"
    if w["muted_until"] == w["end"]:
        return (f"alerts of {w['service']} {muted} by a maintenance window {start}until {shown_time(w['end'])} "
                f"({where}){why}")
    until = f"until {shown_time(w['muted_until'])}" if w["muted_until"] else \
        f"with no end in the next {HORIZON.days} days: they follow on without a gap"
    return (f"alerts of {w['service']} {muted} by maintenance windows or silences {start}{until} ({where} until "
            f"{shown_time(w['end'])}, then windows or silences overlapping it){why}")


def _muted_on(until: str, muted_until: str | None, several: bool) -> str:
    """What a silence's line adds where other silences or maintenance windows keep its services muted past its end:
    status said the silence's end, and the on-call waited for alerts that a window held back for hours more. Of a
    silence of ``several`` services (a provider's), muted_until is the last of theirs, not each one's."""
    from miner.alerts.mute_end import HORIZON
    from miner.status import shown_time

    if muted_until == until:
        return ""
    which = " some of them" if several else ""
    if muted_until is None:
        return f", then{which} muted with no end in the next {HORIZON.days} days by windows or silences following on"
    return f", then{which} muted until {shown_time(muted_until)} by windows or silences following on"


def _model_line(model: dict[str, Any]) -> str:
    from miner.records import Decision
    from miner.status import shown_time

    if model["version"] is None:
        return ("model: none recorded yet (`miner run` records the model it loads at its start, a replay or the demo "
                "the one that gave its verdicts)")
    by = model["loaded_by"]
    line = f"model {model['version']} (loaded by `{by}` at {shown_time(model['loaded_at'], 'an unknown time')})"
    # The hints to reload are the service's: after a replay, no service serves the model recorded.
    if by == "miner run" and model["on_disk"] is not None and model["on_disk"] != model["version"]:
        # Replaced in place (miner train --out, a new wheel): the service still gives the verdicts of the one loaded.
        line += (f"\nthe model.json on disk is {model['on_disk']}: restart or reload (SIGHUP) the service to "
                 "serve it")
    serving = None if model["threshold"] is None else Decision(model["threshold"], model["early_exit"])
    asked = None if model["config_threshold"] is None else Decision(model["config_threshold"],
                                                                    model["config_early_exit"])
    if by == "miner run" and serving and asked and asked != serving:
        # Edited without a reload: the service decides new posts as before, and a reclassify run now decides the
        # stored ones at the new setting, whose baselines the service's detector then waits with (detect_relearn).
        line += (f"\nthe config's [classifier] settings decide at {asked.text()}, the service at {serving.text()}: "
                 "reload (SIGHUP) or restart the service to serve them")
    if n := model["verdicts_other_model"]:
        line += (f"\n{n} post{'' if n == 1 else 's'} of the last 24 h count{'s' if n == 1 else ''} another model's "
                 "verdict: after a model update, `miner reclassify --since` gives them this one's")
    if (n := model["verdicts_other_settings"]) and serving:
        line += (f"\n{n} post{'' if n == 1 else 's'} of the last 24 h count{'s' if n == 1 else ''} a verdict decided "
                 f"at another threshold or early-exit setting than the service's ({serving.text()}): after a change of "
                 "[classifier] threshold or early_exit, `miner reclassify --since` decides them again")
    return line


@main.command()
@click.option("--port", type=PORT, default=8001, show_default=True, help="Port for Datasette.")
@click.option("--metadata-only", is_flag=True, help="Write datasette-metadata.json next to the store and exit.")
@pass_app
def ui(app: AppContext, port: int, metadata_only: bool) -> None:
    """Explore the store in Datasette (optional extra: pip install 'miner[ui]'), with table descriptions and
    canned queries (complaints per service per hour, open incidents, lead times, failing sources)."""
    from miner.datasette_meta import metadata

    db = Path(app.db_path or app.config.store.path)
    meta_path = db.with_name("datasette-metadata.json")
    # --metadata-only writes the file and says so, as the commands that act (stdio.acts); Datasette does not need
    # our standard output.
    with acting() if metadata_only else contextlib.nullcontext():
        # Opened as `status` opens it, so that a missing, corrupt or foreign database (a --db naming the wrong file)
        # is refused here rather than described as miner's store and served by Datasette.
        app.store(readonly=True, must_exist=True)
        app.close()
        try:
            meta_path.write_text(json.dumps(metadata(db.stem), indent=2), encoding="utf-8")
        except OSError as exc:  # a read-only folder (a copy of the store on read-only media): an "internal error"
            raise click.ClickException(f"cannot write {meta_path} ({exc.strerror or exc}): miner ui writes "
                                       "Datasette's metadata beside the store; copy the store to a writable "
                                       "folder") from None
        if metadata_only:
            click.echo(f"wrote {meta_path}")
            return
    exe = shutil.which("datasette") or str(Path(sys.executable).with_name("datasette"))
    if not Path(exe).exists():
        raise click.ClickException("Datasette is not installed: pip install 'miner[ui]'")
    raise SystemExit(subprocess.call([exe, "serve", str(db), "-m", str(meta_path), "--port", str(port)]))

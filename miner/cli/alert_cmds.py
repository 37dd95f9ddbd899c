"""`miner digest`, `miner outbox` and `miner silence`: look at, queue and mute what the alerts send."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click

from miner.cli.app import ROW_ID, AppContext, PathParam, main, pass_app
from miner.cli.output import one_line, table
from miner.cli.stdio import acts, prints, require_stdout
from miner.cli.stopping import stop_on_signal
from miner.cli.times import parse_duration, parse_time
from miner.errors import ConfigError, InputError
from miner.settings import guess
from miner.timeutil import iso, parse_iso, utcnow

_NOTHING_SENT = "nothing is planned or sent, and the outbox is left as it is"


def _now(at: str | None) -> datetime:
    from miner.replay import EARLIEST

    if at is None:
        return utcnow()
    when = parse_time(at, "--at")
    # A digest looks back a day and more from it: near year 1 that overflowed, an "internal error". No post or
    # incident a store holds is dated before 1970 (replay refuses such posts).
    if when < EARLIEST:
        raise InputError(f"--at {at!r} is before 1970: no store holds anything to digest then")
    return when


@main.command()
@click.option("--dry-run", is_flag=True,
              help="Render to files instead of queueing it for sending (the same period: since the route's last "
                   "digest).")
@click.option("--out", type=PathParam(path_type=Path, file_okay=False), default=Path("digest-out"),
              show_default=True, help="Folder for --dry-run's .eml, .html, .txt and PNG files (replacing those an "
                                       "earlier --dry-run wrote there for the same route).")
@click.option("--route", "route_name", default=None,
              help="Only this route, which needs an email: digests go by email only (default: every route with "
                   "email; with none, --dry-run renders what a route of every service would get, as "
                   "digest-digest.*).")
@click.option("--at", default=None,
              help="Render as of this ISO 8601 time (a month or a year alone, 2026-11 or 2026, is its start), UTC "
                   "unless it has an offset (default: now); a digest queued "
                   "as of a time to come is refused.")
@pass_app
@acts
def digest(app: AppContext, dry_run: bool, out: Path, route_name: str | None, at: str | None) -> None:
    """Render the digest now (--dry-run), or queue it for the next dispatch."""
    from miner.alerts import enqueue_digest_now, write_digest_files

    settings = app.config.alerts
    now = _now(at)
    if dry_run:
        store = app.store(readonly=True, must_exist=True)
        try:
            paths = write_digest_files(store, settings, now, out, route_name, as_queued=True,
                                       sources=app.config.polled_sources)
        except OSError as exc:  # --out under a file, a read-only folder: an "internal error", as replay's was
            from miner.folders import file_in_the_way

            blocker = file_in_the_way(out)  # mkdir's "Not a directory" named no file
            reason = exc.strerror or exc if blocker is None else f"{blocker} is a file, not a folder"
            raise InputError(f"cannot write to {out} ({reason})") from None
        for path in paths:
            click.echo(str(path))
        return
    if not settings.enabled:
        # Queued, it would wait for good: the service and `miner outbox send` plan and send nothing meanwhile.
        raise InputError(f"alerts are disabled ([alerts] enabled = false): {_NOTHING_SENT}; --dry-run renders it")
    routes = [r for r in settings.routes if r.email and (route_name is None or r.name == route_name)]
    if not routes:
        raise InputError(f"no route {'named ' + repr(route_name) + ' ' if route_name else ''}with email in [alerts]")
    if now > (real := utcnow()):
        # Queued as of then, it was due then: `--at 3000-01-01` left a digest pending for good, listed by every
        # `miner outbox`, that nothing could send or retry.
        raise InputError(f"--at {at!r} is after now ({iso(real)}): a digest queued as of then would wait until then "
                         "to go out; --dry-run renders it")
    for route in routes:
        enqueue_digest_now(app.store(must_exist=True), settings, route, now)
        click.echo(f"queued digest for route {route.name}; the service sends it (or run `miner outbox send`)")


@main.group(invoke_without_command=True)
@click.option("--all", "show_all", is_flag=True, help="Include sent and suppressed notifications.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="Rows to show, the newest first.")
@click.pass_context
def outbox(ctx: click.Context, show_all: bool, limit: int) -> None:
    """List queued and failed notifications (subcommands: send, retry).

    "next/sent" is a pending row's next attempt, a sent row's time sent, a failed row's time it failed (its last
    attempt), and a suppressed row's time it was suppressed. A sending row's says when it was claimed and by which
    worker (the service's, or cli-HOST-PID for `miner outbox send`), and when its lease (alerts.lease_seconds, as
    feeds.toml gives it) ends: past that, its sender stopped or hung, and the next send takes it back to pending.

    A message held behind older alerts of its incidents, which go first, names each in "reason or last error"
    ("waits for outbox ID (pending)", or "(sending)"), and gives in "next/sent" the earliest it can go, not its own
    next attempt: "after outbox ID", the one of them it goes right after, with ", not before TIME" while the latest
    of their retries (and its own next attempt) is to come.
    """
    if ctx.invoked_subcommand is not None:
        return
    require_stdout()  # as for the other lists (prints): the list is all it does
    app: AppContext = ctx.obj
    store = app.store(readonly=True, must_exist=True)
    statuses = ["pending", "sending", "failed"] + (["sent", "suppressed"] if show_all else [])
    rows = store.outbox_listing(statuses, min(limit, 2**63 - 1))  # SQLite's largest integer: all rows
    if not rows:
        done = store.outbox_counts()
        if show_all or not done:
            click.echo("outbox is empty: no notifications yet")
        else:
            # Sent and suppressed rows stay in the outbox as the record; "empty" would deny they exist.
            counts = ", ".join(f"{done[s]} {s}" for s in ("sent", "suppressed") if s in done)
            click.echo(f"nothing pending or failed ({counts}; `miner outbox --all` lists them)")
        return
    # Cells in full: the reason is where the docs send the on-call for the server's answer, and cut at 60
    # characters it lost which recipients were refused and why (an SMTP reply names the address first).
    now = iso(utcnow())
    try:
        lease: timedelta | None = timedelta(seconds=app.config.alerts.lease_seconds)
    except ConfigError:  # only --db: the claim alone
        lease = None
    click.echo(table(
        ["id", "status", "kind", "route", "channel", "tries", "next/sent", "reason or last error"],
        [(r["id"], r["status"], r["kind"], r["route"], r["channel"], r["attempts"], _when(r, now, lease), _why(r))
         for r in rows],
        max_width=None,
    ))
    # The list stopped at --limit without a word: 50 rows read as all there were in a backlog of hundreds.
    total = sum(n for status, n in store.outbox_counts().items() if status in statuses)
    if total > len(rows):
        click.echo(f"(the newest {len(rows)} of {total}; --limit {total} lists them all)", err=True)


def _when(row: dict[str, Any], now: str, lease: timedelta | None) -> str:
    """The "next/sent" cell of an outbox row (Store.outbox_listing), ``now`` in ISO form, ``lease`` the claims' (None:
    not known)."""
    if row["status"] == "sending" and row["claimed_at"]:
        # Its next_attempt_at, when it was due, told a send in progress from one a killed process left no better
        # than nothing: the claim's time and worker, and its lease, do.
        claim = f"claimed {row['claimed_at']} by {row['claimed_by']}"
        if lease is None:
            return claim
        ends = iso(parse_iso(str(row["claimed_at"])) + lease)
        if ends > now:
            return f"{claim}, lease until {ends}"
        return (f"{claim}, lease ended {ends}: its sender stopped or hung, and the next send (the service's, "
                "`miner outbox send`) takes it back")
    if row["status"] in ("sent", "failed"):
        # A failed row's next_attempt_at was when its last attempt was due, neither when it failed nor to come.
        return str(row["sent_at"] or row["last_attempt_at"] or row["next_attempt_at"])
    if row["goes_after"] is None:
        return str(row["next_attempt_at"])  # a suppressed row's: when it was suppressed
    # A held row's own next attempt, long past in a backlog, read as a dispatcher that had stopped: it goes right
    # after that alert, and not before the time given, the earliest the alerts before it can go.
    after = f"after outbox {row['goes_after']}"
    return f"{after}, not before {row['not_before']}" if row["not_before"] > now else after


# Alerts named in a held row's cell: a resolve notice of a provider outage's hundreds of incidents may wait for an
# alert of each.
_NAMED = 5


def _why(row: dict[str, Any]) -> str:
    """The "reason or last error" cell of an outbox row (Store.outbox_listing)."""
    if not row["waits_for"]:
        return str(row["reason"] or row["last_error"] or "")
    # Held behind older alerts, a row reads as pending and due (long ago, in a backlog) with nothing said: the
    # on-call could not tell it from a dispatcher that had stopped. It goes once every one of them has gone, so all
    # are named (the oldest alone hid the others). A pending row has no reason, and a retried one's last error stays
    # beside the wait.
    named = ", ".join(f"{w['id']} ({w['status']})" for w in row["waits_for"][:_NAMED])
    more = len(row["waits_for"]) - _NAMED
    wait = f"waits for outbox {named}" + (f" and {more} more" if more > 0 else "")
    return f"{wait}; last error: {row['last_error']}" if row["last_error"] else wait


@outbox.command("retry")
@click.argument("outbox_id", type=ROW_ID)
@pass_app
@acts
def outbox_retry(app: AppContext, outbox_id: int) -> None:
    """Queue a failed notification again (after fixing what made it fail)."""
    store = app.store(must_exist=True)
    row = store.notification(outbox_id)
    if row is not None and row["status"] == "failed" and (why := _unsendable(app, row)) is not None:
        raise InputError(f"outbox {outbox_id} would fail again: {why}; it stays failed (put its route or channel "
                         "back in feeds.toml and reload the service, then retry it)")
    if not store.retry_notification(outbox_id, utcnow()):
        # "is not a failed notification" alone, for an id that does not exist too, left the user to guess which.
        row = store.notification(outbox_id)
        if row is None:
            raise InputError(f"no notification {outbox_id} in the outbox (see `miner outbox --all`)")
        raise InputError(f"outbox {outbox_id} is {row['status']}, not failed: only a failed notification is queued "
                         "again (see `miner outbox`)")
    click.echo(f"outbox {outbox_id} queued again")


def _unsendable(app: AppContext, row: dict[str, Any]) -> str | None:
    """Why failed outbox ``row`` cannot go as feeds.toml stands (AlertSettings.unsendable). Queued again, such a row
    failed again at the next send, for the same reason, and the on-call read "queued again" as the message on its
    way. A feeds.toml that cannot be read says nothing here (the row is queued, as with only --db it always was):
    the send checks again."""
    try:
        settings = app.config.alerts
    except ConfigError:
        return None
    return settings.unsendable(str(row["route"]), str(row["channel"]))


@outbox.command("send")
@pass_app
@acts
def outbox_send(app: AppContext) -> None:
    """Plan, queue due digests and send what is due now, once (the service does this every 30 s).

    Exits 1 when a notification failed for good in this run (see `miner outbox`), or failed in a way that is
    retried but lasts until someone acts (a TLS certificate not trusted, expired or for another name, no STARTTLS);
    one that will be retried otherwise (a server down, a timeout) does not count. SIGINT (Ctrl-C) or SIGTERM stops
    it as it stops the service, and it says so on stderr: the notification being sent is finished and recorded (an
    email still being sent 5 s after the signal is cut, and stays pending, due at once; one gone out whole waits for
    its server's reply), no other is sent (they wait for the next run), and the exit status is 130 (143 for
    SIGTERM). A second signal stops at once.
    """
    from miner.alerts import run_alerts

    if not app.config.alerts.enabled:  # "sent 0" read as if nothing was due, with notifications pending
        click.echo(f"alerts are disabled ([alerts] enabled = false): {_NOTHING_SENT}")
        return
    # Cut short mid-send, a claimed notification was left 'sending': neither sent nor failed in `miner outbox`
    # until its lease ran out, then sent again whether or not it had gone out.
    with stop_on_signal("the notification being sent is finished (an email still sending 5 s on stays pending), "
                        "no other is sent") as stop:
        stats = run_alerts(app.store(must_exist=True), app.config.alerts, utcnow(),
                           worker_id=f"cli-{socket.gethostname()}-{os.getpid()}", sources=app.config.polled_sources,
                           stop=stop)
        deferred = f", left for the next run {stats.deferred} (server unreachable)" if stats.deferred else ""
        if stats.throttled:
            deferred += f", held {stats.throttled} (webhook rate limit: 429 or Retry-After)"
        action = f" ({stats.needs_action} need action: see `miner outbox`)" if stats.needs_action else ""
        click.echo(f"sent {stats.sent}, retrying {stats.retried}{action}, failed {stats.failed}{deferred}")
    if stats.failed or stats.needs_action:
        raise click.exceptions.Exit(1)


@main.group()
def silence() -> None:
    """Mute alerts for a service, or a provider's services, for a while (recorded as suppressed, never dropped)."""


@silence.command("add")
@click.argument("service", required=False)
@click.option("--provider", metavar="NAME", help="Instead of one SERVICE, every service feeds.toml gives this "
                                                 "`provider` (one silence: also those given it later).")
@click.option("--for", "duration", required=True, help="How long: 30m, 2h, 1d ...")
@click.option("--comment", default="", help="Why (shown in the suppressed notifications).")
@pass_app
@acts
def silence_add(app: AppContext, service: str | None, provider: str | None, duration: str, comment: str) -> None:
    """Silence SERVICE, or every service of --provider, from now for --for."""
    if (service is None) == (provider is None):
        raise InputError("give SERVICE or --provider, not both" if service is not None else
                         "give the SERVICE to silence, or --provider NAME for every service of a provider")
    if provider is not None:
        provider = _known_provider(app, provider)
        members = [s.name for s in app.config.services if (s.provider or "").lower() == provider.lower()]
        what = f"provider {provider} ({', '.join(members)})"
    else:
        known = app.config.service(str(service)) or next(
            (s for s in app.config.services if s.name.lower() == str(service).lower()), None)
        if known is None:
            names = [s.name for s in app.config.services]
            # The hint config check gives: a name pasted with its accents decomposed looks the same as the declared
            # one, and "unknown service 'Café' (services: Café)" read as nonsense.
            raise InputError(f"unknown service {service!r}{guess(service, names)} "
                             f"(services: {', '.join(names) or 'none configured'})")
        service = what = known.name
    now = utcnow()
    ends = now + parse_duration(duration)
    sid = app.store(must_exist=True).add_silence(service, now, ends, comment.strip()[:200], now, provider=provider)
    click.echo(f"silence {sid}: {what} until {iso(ends)}")


def _known_provider(app: AppContext, provider: str) -> str:
    """``provider`` as [[services]] spells it (any case), or InputError naming the providers there are."""
    providers: dict[str, str] = {}
    for svc in app.config.services:
        if svc.provider:
            providers.setdefault(svc.provider.lower(), svc.provider)
    if (known := providers.get(provider.strip().lower())) is None:
        names = sorted(providers.values(), key=str.lower)
        raise InputError(f"unknown provider {provider!r}{guess(provider, names)} "
                         f"(providers: {', '.join(names) or 'none configured'})")
    return known


@silence.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include expired and ended silences.")
@pass_app
@prints
def silence_list(app: AppContext, show_all: bool) -> None:
    """Show active silences."""
    from miner.store.mutes import silence_label

    now = iso(utcnow())
    rows = app.store(readonly=True, must_exist=True).silences(active_at=None if show_all else parse_iso(now))
    if not rows:
        click.echo("no active silences" if not show_all else "no silences")
        return
    columns = ["id", "service", "from", "until", "comment"]
    if not show_all:
        click.echo(table(columns, [(r["id"], silence_label(r), r["starts_at"], r["ends_at"], r["comment"])
                                   for r in rows]))
        return

    def state(r: dict[str, str]) -> str:
        return "expired" if r["ends_at"] <= now else "active" if r["starts_at"] <= now else "scheduled"

    click.echo(table([*columns[:4], "state", "comment"],
                     [(r["id"], silence_label(r), r["starts_at"], r["ends_at"], state(r), r["comment"]) for r in rows]))


@silence.command("remove")
@click.argument("silence_id", type=ROW_ID)
@pass_app
@acts
def silence_remove(app: AppContext, silence_id: int) -> None:
    """End a silence now. It is kept, as expired, in `silence list --all`: suppressed notifications cite it. Says
    which of its services other silences or maintenance windows keep muted, and until when."""
    from miner.store.mutes import silence_label

    outcome, row = app.store(must_exist=True).end_silence(silence_id, utcnow())
    if row is None:
        raise InputError(f"no silence {silence_id} (see `miner silence list --all`)")
    if outcome == "already ended":
        raise InputError(f"silence {silence_id} ({silence_label(row)}) already ended at {row['ends_at']}; "
                         "nothing to do")
    click.echo(f"silence {silence_id} ({silence_label(row)}) ended at {row['ends_at']}")
    _still_muted(app, row)


def _still_muted(app: AppContext, silence: dict[str, Any]) -> None:
    """Say which services of an ended silence other silences or maintenance windows keep muted, and until when: the
    on-call removing a silence to hear of the outage again waited for alerts that a window held back."""
    from miner.alerts.mute_end import HORIZON
    from miner.muted import muted_until, pending_silences, silenced_services
    from miner.status import shown_time

    try:
        config = app.config
    except ConfigError:
        return  # the silence is ended: a config that no longer loads only leaves the hint out
    now = utcnow()
    pending = pending_silences(app.store(), now)
    for service in silenced_services(config, silence):
        end = muted_until(config.alerts, pending, service, now)
        if end is None or end > now:
            until = f"until {shown_time(iso(end))}" if end else f"with no end in the next {HORIZON.days} days"
            click.echo(f"alerts of {one_line(service)} stay muted {until} by other silences or maintenance windows "
                       "(`miner status` lists them)")

"""Commands that run the pipeline: collect, replay, demo (reclassify: reclassify_cmd)."""

from __future__ import annotations

import math
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from miner.cli.app import AppContext, PathParam, main, pass_app
from miner.cli.output import progress, table
from miner.cli.stdio import acts, reader_stopped
from miner.cli.stopping import stop_on_signal
from miner.timeutil import parse_iso

# Seconds a round of `miner collect` without --once waits for its polls before it prints what ended and sleeps.
ROUND_WAIT = 5.0

if TYPE_CHECKING:
    from miner.collect_stage import CollectReport
    from miner.config import Config
    from miner.records import Post
    from miner.replay import Keeping
    from miner.store import Store


@main.command()
@click.option("--once", is_flag=True, help="Poll every due source once, print what happened, and exit.")
@click.option("--all", "poll_all", is_flag=True,
              help="Poll every enabled source now, due or not (without --once, later rounds poll the due ones).")
@pass_app
@acts
def collect(app: AppContext, once: bool, poll_all: bool) -> None:
    """Poll sources and store their posts and official incidents.

    Without --once, keeps polling each source on its interval until interrupted (the service does this
    too, together with the other stages: see `miner run`); a round prints the polls that ended within 5 s,
    and those still running are printed by a later round, so one slow source holds up no other. With --once,
    every poll is waited for, and the exit status is 1 when a source's poll failed (its error is in the table).
    Per poll the table counts posts stored, dupes (the store had them already) and old (left out as older than
    the store keeps posts: [store].retention_days, or a bucket a prune has made final; a feed's first poll may
    list many), and official incidents stored or updated.

    SIGINT (Ctrl-C) or SIGTERM ends the round in progress as in the service, and says so on stderr: no further
    poll starts, the polls in flight get 5 s to end, and what they returned is stored and shown; then the exit
    status is 130 (143 for SIGTERM). A second signal stops at once.
    """
    from miner.collectors.poller import Poller
    from miner.pipeline import Pipeline
    from miner.timeutil import utcnow

    pipeline = Pipeline(app.config, app.store())
    failed = False
    with (stop_on_signal(f"no further poll starts, the polls in flight get {Poller.stop_grace:g} s to end") as stop,
          Poller.from_config(app.config) as poller):
        first = True
        while True:
            # --all is for the first round: every round polled every source, every 5 s, past intervals, backoff
            # and a server's Retry-After. Without --once a round returns after ROUND_WAIT, the polls still running
            # carried over to the next, as in the service: one source hanging until its timeout made every other
            # source's interval that long.
            reports = pipeline.collect(utcnow(), poller, due_only=not (poll_all and first), stop=stop,
                                       wait=None if once else ROUND_WAIT)
            first = False
            _print_round(reports)
            if not reports and once and not stop.is_set():
                # "Use --all" was the answer to --all too, where the config has no source to poll at all.
                click.echo("no source is due (use --all to poll every source now)" if app.config.polled_sources
                           else f"no source to poll: {app.config.path or 'the config'} enables no [[sources]]")
            failed = any(r.error for r in reports)
            if reader_stopped():  # `miner collect | head`: as at a signal, the polls in flight are stored first
                stop.set()
            if once or stop.wait(5):
                break
        if stop.is_set() and poller.pool.in_flight():
            # Stopped between rounds: the polls carried over get the stop's grace, as in a round, and are stored.
            reports = pipeline.collect(utcnow(), poller, stop=stop)
            _print_round(reports)
            failed = failed or any(r.error for r in reports)
    if failed:
        raise click.exceptions.Exit(1)


def _print_round(reports: list[CollectReport]) -> None:
    from miner.collect_stage import late_text

    # A 304 stored nothing: "304" in the stored column read as 304 posts stored, so the result says it.
    rows = [(r.source, r.type, r.stored, r.duplicates, r.too_old, r.official_incidents, f"{r.seconds:.1f}",
             r.error or ", ".join(
                ["ok", *(["not modified (HTTP 304)"] if r.not_modified else []),
                 *(["posts missed (see miner status)"] if r.gap else []),
                 *([late_text(r.posts_late, r.late_by_s)] if r.posts_late else [])]))
            for r in reports]
    if rows:
        click.echo(table(("source", "type", "stored", "dupes", "old", "official", "secs", "result"), rows,
                         max_width=90))


def _replay(app: AppContext, posts_path: Path, speed: float | None, out: Path | None, label: str, *,
            fresh: bool = False) -> None:
    """``fresh``: delete the store first (the demo's own)."""
    from miner.errors import InputError
    from miner.replay import check_stream
    from miner.service_lock import ServiceLock
    from miner.timeutil import utcnow

    db = Path(app.db_path or app.config.store.path)
    # Without --out, the notifications go beside the store: checked before any work, as --out's are.
    outbox = out / "outbox" if out is not None else db.with_name("outbox")
    _check_writable(outbox)
    try:
        total = check_stream(posts_path, utcnow())
    except InputError as exc:
        raise InputError(f"{exc} (nothing was stored)") from None
    if not total:
        raise click.ClickException(f"{posts_path} holds no posts")
    # The service's lock: a replay into the store of a running service stepped its detectors hours ahead on the
    # simulated clock, and its file senders took the service's due notifications, marked sent and never sent.
    with ServiceLock(db, role=label):
        if fresh:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
        try:
            _replay_locked(app, posts_path, total, speed, out, outbox, label)
        finally:
            app.close()  # before the lock goes


def _replay_locked(app: AppContext, posts_path: Path, total: int, speed: float | None, out: Path | None,
                   outbox: Path, label: str) -> None:
    from miner.alerts import FileSenders, write_digest_files
    from miner.alerts.files import remove_digest_files
    from miner.cli.summary import print_summary
    from miner.pipeline import Pipeline
    from miner.replay import read_posts, run_replay
    from miner.replay_sends import flush, send_due_before
    from miner.timeutil import utcnow

    cfg = app.config
    store = app.store()
    # Notifications go to files: a replay shows what would have been sent, and never sends it. Files there from
    # a run into another store would be counted as this one's, so a store that has sent nothing replaces them.
    files = FileSenders(outbox, replace=not store.has_sent_notifications())
    # What the store had queued is not the replay's to send (store/replay_outbox.py): a stopped service's alerts
    # queued while its mail server was down were written to these files and marked sent, and never sent.
    queued = store.begin_replay()
    pipeline = Pipeline(cfg, store, senders=files.senders())
    # Posts older than where the detector has got to are stored and counted, but it never steps back to them.
    clock, last_post = store.detector_clock(), store.last_post_id()
    click.echo(f"model {pipeline.classifier.version}; buckets of {cfg.detector.bucket_minutes} min; "
               f"store {store.path}", err=True)
    too_old = 0  # posts left out as a poll's would be: dated in a bucket a prune of this store has made final
    stored = 0  # posts new to the store: not those it had, nor one repeated in the file

    def tick(now: datetime, posts: list[Post]) -> None:
        nonlocal too_old, stored
        send_due_before(pipeline, now)
        report = pipeline.tick(now, posts)
        too_old, stored = too_old + report.too_old, stored + report.stored

    def prefetch(arrivals: list[tuple[datetime, list[Post]]]) -> None:
        nonlocal too_old, stored
        ingested = pipeline.ingest_ahead(arrivals)
        too_old, stored = too_old + ingested.too_old, stored + ingested.stored

    started = time.monotonic()
    with progress(total, f"replaying {total} posts") as bar:
        stats = run_replay(read_posts(posts_path, _keeping(cfg)), pipeline.bucket, tick, speed=speed, prefetch=prefetch,
                           progress=lambda k: bar.update(k), until=utcnow(), done_until=clock)
    if stats.start is None or stats.end is None:
        raise click.ClickException(f"{posts_path} holds no posts")
    # As the service at its start: `miner status` names the model that gave the verdicts (recorded only now, so that
    # a demo stopped before it stored a post leaves a store _refuse_other_store still takes for its own).
    store.record_serving_model(pipeline.classifier.version, utcnow(), pipeline.classifier.decision, by=f"miner {label}")
    flush(pipeline, stats.end)
    left = store.end_replay()  # only now: a killed replay's rows are the run's that resumes it
    elapsed = time.monotonic() - started
    click.echo(f"replayed {stats.posts} posts from {stats.start:%Y-%m-%d %H:%M} to {stats.end:%Y-%m-%d %H:%M} UTC "
               f"in {elapsed:.1f} s ({stats.ticks} ticks)")
    # A rerun or a resumed replay reads every post again: the count above alone read as that many stored.
    if known := stats.posts - stored - too_old:
        click.echo(f"{stored} new posts stored; {known} {'was' if known == 1 else 'were'} already in the store or "
                   "earlier in the file")
    print_summary(store, cfg, click.echo)
    click.echo(f"\n{len(files.files())} notifications written to {files.out_dir} (a {label} sends nothing)")
    if left:
        click.echo(f"{left} notifications the {label} planned are due later than its end plus group_wait (held for "
                   "group_interval) and were recorded as suppressed, never to be sent (see `miner outbox --all`)")
    if queued:
        click.echo(f"{queued} notifications the store had pending before the {label} were left as they were, for "
                   "`miner run` to send (see `miner outbox`)")
    if out is not None:
        # The digest as of the busiest incident's end, so it shows an outage rather than a quiet day.
        when = _digest_time(store, stats.end)
        remove_digest_files(out)
        paths = write_digest_files(store, cfg.alerts, when, out, sources=cfg.polled_sources)
        click.echo(f"digest as of {when:%Y-%m-%d %H:%M} UTC: " + ", ".join(str(p) for p in paths
                                                                       if p.suffix in (".html", ".eml")))
    if too_old and (final := store.first_open_bucket(pipeline.bucket)) is not None:
        click.echo(f"\nwarning: {too_old} posts of {posts_path} are dated before {final:%Y-%m-%d %H:%M} UTC: a prune "
                   "of this store deleted its posts up to there and kept their bucket counts, which are final, so "
                   "these were not stored (as a source's would not be); replay them into a fresh store to see them",
                   err=True)
    # A resumed or repeated replay stores none of these: a bucket's posts are all stored before its tick runs.
    late = store.count_posts_stored_after(last_post, clock) if clock is not None else 0
    if late:
        click.echo(f"\nwarning: {late} posts of {posts_path} are older than where the store's detector had got to "
                   f"({clock:%Y-%m-%d %H:%M} UTC): they were stored, but no incident is detected from them; replay "
                   "captures into one store in time order, or this one into a fresh store", err=True)


def _keeping(cfg: Config) -> Keeping:
    """What of a replayed post is stored, as its source's collector would store it. Its ``author`` hashed (with
    [store].hash_key_env's key): each post without one counts as a complainer of its own, so a capture of one account
    posting fifty times opened an outage live would not have. Its link and id without the parts of its source's URL
    from the environment (url_env, read as a poll reads it), its text cut at [collect].max_text_chars."""
    import os

    from miner.collectors.base import author_space, resolved, source_secrets
    from miner.collectors.normalise import hash_key_from_env
    from miner.errors import SourceError
    from miner.replay import Keeping, replay_authors

    sources = []
    # A source's URL from the environment names its author space (its host) and its key: without it a replayed
    # author was hashed in another space than the polled one, and the key stayed in the posts' links.
    for source in cfg.sources:
        try:
            sources.append(resolved(source, os.environ))
        except SourceError as exc:
            click.echo(f"warning: source {source.name}: {exc}: its replayed posts' authors are hashed apart from its "
                       "polled ones, and their links may hold its key", err=True)
            sources.append(source)
    authors = replay_authors(lambda: hash_key_from_env(cfg.store.hash_key_env),
                             {s.name: author_space(s) for s in sources})
    return Keeping(authors, {s.name: source_secrets(s) for s in sources}, cfg.collect.max_text_chars,
                   frozenset(s.name for s in sources if s.secret_url))


def _check_writable(outbox: Path) -> None:
    """Create ``outbox`` (and the folder above it, for the digest) and write a file in each, or fail now: they were
    first written to by the first notification, which failed unseen (retried as if a mail server were down), and
    by the digest after the whole replay."""
    for folder in (outbox.parent, outbox):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as exc:
            from miner.folders import file_in_the_way

            blocker = file_in_the_way(folder)  # "File exists" read as if the folder were there already
            reason = exc.strerror or exc if blocker is None else (
                "it is a file, not a folder" if blocker == folder else f"{blocker} is a file, not a folder")
            raise click.ClickException(f"cannot write to {folder} ({reason}); nothing was stored") from None


def _digest_time(store: Store, end: datetime) -> datetime:
    """Just after the incident with the most complaints, or ``end`` (where the replay's clock stopped) when there
    was none; never after ``end``: an incident resolved (or still open) at the clock's end had its digest dated
    5 minutes after it, a time the replay never reached (and, for a capture that ends now, a time yet to come)."""
    incidents = sorted(store.incidents(), key=lambda i: -int(i["total_complaints"]))
    if not incidents:
        return end
    first = incidents[0]
    return min(parse_iso(first["resolved_at"] or first["updated_at"]) + timedelta(minutes=5), end)


def _not_nan(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    # FloatRange lets nan through: every comparison with it is false
    if value is not None and math.isnan(value):
        raise click.BadParameter("nan is not in the range x>0.")
    return value


@main.command()
@click.argument("posts", type=PathParam(path_type=Path, dir_okay=False, exists=True, allow_dash=True))
@click.option("--speed", type=click.FloatRange(min=0, min_open=True), default=None, callback=_not_nan,
              help="Pace the replay at N times real time.")
@click.option("--as-fast-as-possible", "fast", is_flag=True, help="No pacing (the default).")
@click.option("--out", type=PathParam(path_type=Path, file_okay=False), default=None,
              help="Folder for the rendered digest and the notifications that would have been sent "
                   "(default: no digest, notifications in outbox/ beside the store).")
@pass_app
@acts
def replay(app: AppContext, posts: Path, speed: float | None, fast: bool, out: Path | None) -> None:
    """Push recorded posts (JSONL: id, text, created_at, source[, url, lang, author]) through the pipeline on a
    simulated clock.

    POSTS is UTF-8, or gzip-compressed UTF-8 (whatever its name), one post per line (a line longer than 16 MiB
    is refused, and so is one whose JSON is nested deeper than 256 levels or holds more than 100,000 values); a
    byte-order mark at the start of any line and CRLF line ends are accepted.

    author (optional): the poster's handle or account id. Complaints count authors, as live: posts of one author in
    a bucket are one complaint, and a post without one counts as a complainer of its own. It is stored only as the
    keyed hash a collector of that source stores ([store].hash_key_env's key), never as it is.

    Each post is stored as a collector stores one: text folded to one line, contact details and people's handles
    replaced, cut at [collect].max_text_chars; url and a link-made id without credentials; lang as its primary
    subtag. A text of only whitespace or invisible characters is refused. A source's url_env is read from the
    environment, as by a poll: it tells the source's key and the host its authors are hashed under.

    Produces the incidents and notifications the service would have produced, in the store of --db (default:
    [store].path). For a fresh store, name one that does not exist yet; --db goes before the command:
    miner --db replay.sqlite replay POSTS. Refused while `miner run` uses that store. Notification files and the
    digest an earlier run left in the folder are replaced (a resumed replay, whose store has sent them, adds to
    them); other files there are kept.

    The file is checked before anything is stored: posts must be in time order, none dated after now or before
    1970, and none more than a year (366 days) after the one before (split the file there and replay the parts one
    after another). Posts dated in the buckets a prune of the store has made final are not stored, as a source's
    would not be; the replay ends with a warning saying how many there were.
    """
    if speed and fast:
        raise click.UsageError("--speed and --as-fast-as-possible exclude each other")
    if str(posts) == "-" or not posts.is_file():  # a pipe: the check would read it all, leaving the replay nothing
        raise click.ClickException(
            f"{'standard input' if str(posts) == '-' else posts} is not a file: replay reads its posts twice, first "
            "to check them all so that a bad line stores nothing; save them to a file first (it may be "
            "gzip-compressed)")
    _replay(app, posts, None if fast else speed, out, "replay")


@main.command()
@click.option("--out", type=PathParam(path_type=Path, file_okay=False), default=Path("demo-out"),
              show_default=True, help="Folder for the store, the rendered digest and the notifications.")
@click.pass_context
@acts
def demo(ctx: click.Context, out: Path) -> None:
    """Replay the bundled real stream (SentiTel, Ugandan telecom posts, 2019) offline and show what was found.

    Uses the bundled demo configuration unless --config is given. Writes a fresh store, OUT/miner.sqlite (a
    --db store is added to instead), and replaces the digest and notifications an earlier run left in OUT;
    other files there are kept. An OUT/miner.sqlite that is not an earlier demo's (it holds other posts, or no post
    but other rows: a service's that has stored no post yet) is refused, never replaced. MINER_CONFIG and MINER_DB
    are not read: only --config and --db on the command line.
    """
    from miner.config import bundled_path
    from miner.replay import demo_stream_path

    app: AppContext = ctx.obj
    # Exported for the service (to spare typing --db for `miner status`), MINER_DB took the demo's 5,355 posts of
    # 2019 and their incident into the service's store, and MINER_CONFIG gave it services matching none of them.
    from_env = [(name, param) for name, param in (("MINER_DB", "db_path"), ("MINER_CONFIG", "config_path"))
                if ctx.parent is not None
                and ctx.parent.get_parameter_source(param) is click.core.ParameterSource.ENVIRONMENT]
    if from_env:
        for _, param in from_env:
            setattr(app, param, None)
        click.echo(f"{' and '.join(name for name, _ in from_env)} (from the environment) "
                   f"{'are' if len(from_env) > 1 else 'is'} not used by the demo: it writes its own store with its "
                   "own config (--db and --config before the command say otherwise)", err=True)
    if app.config_path is None:
        app.config_path = bundled_path("demo.toml")
    db = out / "miner.sqlite"
    fresh = app.db_path is None
    if fresh:
        _refuse_other_store(db)  # deleted under the service lock by _replay
    app.db_path = app.db_path or db
    _replay(app, demo_stream_path(), None, out, "demo", fresh=fresh)
    # What happened was all it said: a newcomer at the end of the README's first command was left to find the next.
    click.echo("\nnext, your own services: write a feeds.toml (its services, sources and an alert route: "
               "docs/configuration.md), check it with `miner config check`, then start the service, `miner run`")


def _refuse_other_store(db: Path) -> None:
    """Fail unless ``db`` is absent, holds only the bundled stream's posts, or holds nothing at all (a demo stopped
    before it stored a post): `miner demo --out .` beside the service's miner.sqlite deleted it, and did so while
    the service had stored no post yet, with the silences set and the sources' state."""
    from miner.errors import StoreError
    from miner.replay import DEMO_SOURCE
    from miner.store import Store

    if not db.exists():
        return
    try:
        store = Store.open(db, readonly=True, any_schema=True)
        try:
            sources = set(store.post_sources())
            ours = sources == {DEMO_SOURCE} or (not sources and store.holds_only_a_replay_mark())
        finally:
            store.close()
    except StoreError:  # not a database, or not a store
        ours = False
    if not ours:
        raise click.ClickException(
            f"{db} is not a store an earlier `miner demo` wrote, and the demo starts a fresh store in its --out "
            f"folder: give it another one, or add the demo to this store with miner --db {db} demo")


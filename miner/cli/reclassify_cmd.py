"""`miner reclassify`: new verdicts for stored posts after a model update."""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING

import click

from miner.cli.app import AppContext, main, pass_app
from miner.cli.output import progress
from miner.cli.stdio import acts
from miner.cli.stopping import Interrupted

if TYPE_CHECKING:
    from miner.pipeline import Pipeline


@main.command()
@click.option("--since", required=True,
              help="Reclassify posts created at or after this time: ISO 8601 (2026-11-28, 2026-11-28T04:50; a month "
                   "or a year alone, 2026-11 or 2026, is its start), UTC unless it has an offset (Z, +05:30); or a "
                   "duration before now (2h, 1d).")
@pass_app
@acts
def reclassify(app: AppContext, since: str) -> None:
    """Classify stored posts again with the current model (after a model update) at the current [classifier]
    threshold and early_exit (after a change of either), and recount buckets.

    Safe beside `miner run`, in short batches. Posts that have no verdict yet are left to `miner run`, which
    classifies new posts in the order they were stored. Restart (or reload) the service after a model update or a
    change of those settings, before this: it loads the model and its settings only then, and gives posts it
    classifies the old verdicts until then. Posts whose latest verdict is the current model's at the current
    threshold and early_exit already are left as they are (the run says how many). A verdict of this model decided
    at another threshold, early exits on or off as now, is decided again from its stored score without running the
    model (the run says how many), but for a post that becomes an outage report at a lower threshold: its symptom
    is not kept with a verdict of no outage, and the model runs for it. Where early_exit changed in effect (it is
    off at a threshold below the model's own), or for a verdict of this model stored before miner recorded its
    threshold and early_exit (by an older miner), a score decides where it tells whether early exits were on or
    off: under the threshold with early exits on now, at or above the exits' own threshold with them off (an
    exit's estimate is below it); the model runs for the others. The run ends saying how the complaints counted
    since --since changed and how long it took; interrupted (SIGINT, SIGTERM), it says how many posts it had done:
    the same command goes on from there. A --since after now is refused. The service's next detector run learns its
    baselines again from the buckets recounted, and gives an open incident whose complaints changed the new figures
    (peak, z-score, total, symptoms, samples), resolving it (with the usual resolve notice) where the new verdicts
    leave no outage open; no incident is opened for the past, and resolved ones keep the figures they were sent with.
    """
    from miner.cli.times import parse_since
    from miner.errors import InputError
    from miner.pipeline import Pipeline, load_model
    from miner.store import require_store
    from miner.timeutil import utcnow

    now = utcnow()
    since_utc = parse_since(since, "--since", now)
    if since_utc > now:
        # "reclassified 0 posts since 2027-01-01" read as done, where a typo in the year had asked for nothing.
        raise InputError(f"--since {_shown(since_utc)} UTC is after now ({_shown(now)} UTC): no post is that new")
    # The model is loaded before the store is opened, as `miner run` does: opening it upgrades an older store, and
    # a model refused then (a broken or mismatched folder) left it upgraded all the same, which the version that
    # ran before refuses (going back took restoring a backup).
    require_store(app.db_path or app.config.store.path)
    classifier = load_model(app.config)
    pipeline = Pipeline(app.config, app.store(must_exist=True), classifier)
    click.echo(f"model {pipeline.classifier.version} ({pipeline.classifier.decision.text()})", err=True)
    # Counted first: the run gives the rest this model's verdicts too. Without it, a run with no model change
    # said only "reclassified 0 posts", as if there were none since --since.
    todo, current = pipeline.reclassify_counts(since_utc)
    before = _complaints(pipeline, since_utc)
    began, done = time.monotonic(), 0

    def advance(k: int) -> None:
        nonlocal done
        done += k
        bar.update(k)

    try:
        with progress(todo, "reclassifying") as bar:
            n = pipeline.reclassify_since(since_utc, utcnow, progress=advance)
    except Interrupted:
        # Said before "Interrupted by ...": the batches done keep their verdicts, and the run goes on from them.
        click.echo(f"reclassified {done} of {todo} posts since {_shown(since_utc)} UTC before the interruption; "
                   f"run `miner reclassify --since {since_utc.isoformat(timespec='seconds')}` again to do the rest",
                   err=True)
        raise
    waiting = pipeline.store.queue_depths()["classify"]
    left = f"; {waiting} posts with no verdict yet are left to `miner run`" if waiting else ""
    had = (f"; {current} post{'' if current == 1 else 's'} had this model's verdict already and "
           f"{'was' if current == 1 else 'were'} left as {'it is' if current == 1 else 'they are'}" if current else "")
    # Said apart: a change of the threshold alone takes no model run, and one expected after it would look skipped.
    scored = (f" ({pipeline.from_scores} decided again from their stored score at "
              f"{pipeline.classifier.decision.text()}, without the model)" if pipeline.from_scores else "")
    click.echo(f"reclassified {n} posts since {_shown(since_utc)} UTC in {time.monotonic() - began:.1f} s{scored}"
               f"{had}{left}")
    if n:
        after = _complaints(pipeline, since_utc)
        click.echo(f"complaints counted since then: {before} before, {after} now; the service's next detector run "
                   "learns its baselines again from the buckets recounted and gives open incidents whose complaints "
                   "changed the new figures, resolving those left with no outage (resolved incidents keep theirs)")


def _shown(at: datetime) -> str:
    # strftime's %Y writes year 1 as "1", and the run said "since 1-01-01 00:00:00 UTC".
    return at.isoformat(sep=" ", timespec="seconds")[:19]


def _complaints(pipeline: Pipeline, since: datetime) -> int:
    """The complaints the buckets from the one holding ``since`` on count, every service together."""
    from miner.timeutil import floor_time

    return pipeline.store.complaints_counted_from(floor_time(since, pipeline.bucket))

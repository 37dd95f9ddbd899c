"""`miner train`: reproduce the shipped model from the labelled posts."""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from miner.classify.recipe import FOLDS, WEAK_PER_RULE, TrainConfig
from miner.cli.app import PathParam, main
from miner.cli.stdio import acts
from miner.cli.stopping import raise_on_hangup
from miner.model_dir import default_model_dir


class _Finite(click.FloatRange):
    """A FloatRange that refuses nan and inf, which it lets through: nan compares false with either bound."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{number} is not a finite number.", param, ctx)
        return number


# The project's extra labels are not packaged (training data): a checkout has them, an installed miner none.
EXTRA_LABELS = Path(__file__).resolve().parents[2] / "data" / "labels" / "extra"


@main.command("train")
@click.option(
    "--data",
    type=PathParam(path_type=Path, dir_okay=False, exists=True),
    default=lambda: str(Path(os.environ.get("MINER_SHARED_DATA", "/work/shared/data")) / "labels" / "train.jsonl"),
    show_default="$MINER_SHARED_DATA/labels/train.jsonl",
    help="Hand-labelled posts (JSONL).",
)
@click.option(
    "--out",
    type=PathParam(path_type=Path, file_okay=False),
    # The project's, as --extra's, whatever the current folder: "models" there was a folder nothing reads.
    default=lambda: str(default_model_dir()),
    show_default="the project's models/, which the classifier reads unless classifier.model_dir says otherwise",
    help="Folder to write the model, metadata and metrics to; its model is replaced only once the whole build "
    "succeeded (an interrupted or failed run leaves the previous one).",
)
# numpy's seed takes 0 .. 2**32 - 1: another failed as an internal error once the data was read.
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=TrainConfig.seed, show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=TrainConfig.epochs, show_default=True)
# A negative or nan rate failed in torch's optimizer as an internal error; inf, or a nan --rdrop, trained to nan.
@click.option("--lr", type=_Finite(min=0.0), default=TrainConfig.lr, show_default=True, help="Encoder learning rate.")
@click.option(
    "--average-from",
    type=click.IntRange(min=0),
    default=TrainConfig.average_from,
    show_default=True,
    help="Keep the mean of the weights at the end of this epoch and every later one (0 = the last weights).",
)
@click.option(
    "--rdrop",
    type=_Finite(min=0.0),
    default=TrainConfig.rdrop,
    show_default=True,
    help="Weight of the R-drop consistency loss between two dropout passes of each batch (0 = off: one pass, "
    "training about twice as fast).",
)
@click.option(
    "--folds",
    type=click.IntRange(min=0),
    default=FOLDS,
    show_default=True,
    help="Cross-validation folds for threshold and metrics (0 = skip, threshold 0.5).",
)
@click.option(
    "--extra",
    "extra_dir",
    type=PathParam(path_type=Path, file_okay=False, exists=True),  # a mistyped folder trained without them
    default=lambda: str(EXTRA_LABELS) if EXTRA_LABELS.is_dir() else None,
    show_default="data/labels/extra of a checkout, none once installed",
    help="Folder of extra label files (*.jsonl: id, label, symptom, source) joined to shared texts; they join "
    "training splits only.",
)
@click.option("--no-extra", is_flag=True, help="Train on --data alone.")
@click.option(
    "--weak",
    "weak_per_rule",
    type=click.IntRange(min=0),
    default=WEAK_PER_RULE,
    show_default=True,
    help="Add up to N rule-labelled posts per weak rule from the shared data, in training splits only "
    "(0 = none).",
)
@click.option(
    "--reuse-oof",
    type=PathParam(path_type=Path, dir_okay=False, exists=True),
    help="Take out-of-fold scores from an earlier run's oof.jsonl (same data and options) instead of CV.",
)
@click.option(
    "--checkpoint",
    type=PathParam(path_type=Path, dir_okay=False),
    help="Save the final model's torch weights here, or reuse them if the file exists (same data/options).",
)
@click.option("--max-steps", type=click.IntRange(min=1), hidden=True, help="Stop early (smoke tests).")
@acts
def train_cmd(
    data: Path,
    out: Path,
    seed: int,
    epochs: int,
    lr: float,
    average_from: int,
    rdrop: float,
    folds: int,
    extra_dir: Path | None,
    no_extra: bool,
    weak_per_rule: int,
    reuse_oof: Path | None,
    checkpoint: Path | None,
    max_steps: int | None,
) -> None:
    """Fine-tune all-MiniLM-L6-v2 on labelled posts and write the serving model to --out.

    The defaults reproduce the shipped model (3-fold CV, seed 13, the project's extra labels, 300 weak labels
    per rule). The model is written as a chain of int8 ONNX graphs with early exits fitted on the shared posts
    outside the training data. It is built in a hidden folder in --out: a run that fails, or that SIGINT, SIGTERM or
    SIGHUP stops (exit status 130, 143, 129), removes it and leaves --out's model as it was.
    """
    if folds == 1:  # was taken as 0: no CV, threshold 0.5, and metrics.json saying 1 fold
        raise click.BadParameter("one fold leaves no posts to train on: 2 or more, or 0 to skip CV",
                                 param_hint="--folds")
    from miner.classify.build import build
    from miner.classify.data import DEFAULT_SHARED

    # Our own progress lines only: onnxruntime's quantizer logs every tensor at INFO on the root logger.
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("miner").setLevel(logging.INFO)
    cfg = TrainConfig(epochs=epochs, lr=lr, seed=seed, average_from=average_from, rdrop=rdrop)
    shared = Path(os.environ.get("MINER_SHARED_DATA", str(DEFAULT_SHARED)))
    with click.progressbar(length=1, label="training", file=sys.stderr) as bar:

        def progress(done: int, total: int, what: str) -> None:
            if done < bar.pos or total != bar.length:
                # A new phase (the final fit after the folds): the bar had finished, showing 100 % and no ETA
                # through the final fit, and its pace counted from the start of CV put the ETA days out.
                bar.finished, bar.pos, bar.avg, bar.start = False, 0, [], time.time()
            bar.length = total
            bar.label = what
            bar.update(done - bar.pos)

        extra = None if no_extra else extra_dir
        # A closed terminal or ended session (SIGHUP) killed the build outright, its staging folder left in --out.
        with raise_on_hangup():
            result = build(data, out, cfg, folds, extra, shared, progress, max_steps, weak_per_rule, reuse_oof,
                           checkpoint)
    cv = result.metrics.get("cv", {}).get("overall")
    click.echo(f"wrote {out} ({result.version}, {' + '.join(result.graphs)}, threshold {result.threshold:.2f})")
    if cv:
        click.echo(f"cross-validated: precision {cv['precision']:.3f} recall {cv['recall']:.3f} f1 {cv['f1']:.3f}")

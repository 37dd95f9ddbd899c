"""Fitting the early exit (training side): a logistic probe that mimics the full network, and its threshold.

The probe learns the full int8 network's outage probability from the head graph's pooled vector, on the
training posts and half of the unlabelled shared posts. Its threshold is the highest one at which, on the
other half (real posts neither the network nor the probe saw), it drops at most ``max_loss`` of the posts the
full network calls outages. No label is used: the exit is judged against the full network's decisions, as
the int8 graphs are judged against fp32.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

from miner.classify.model import Classifier, EarlyExit

log = logging.getLogger(__name__)

MAX_LOSS = 0.005  # share of the full network's outage calls the exit may drop on unseen posts
GRID = tuple(round(0.005 * i, 3) for i in range(1, 61))  # candidate thresholds 0.005 .. 0.3


@dataclass(frozen=True)
class ExitCheck:
    n: int  # held-out unseen posts the threshold was chosen on
    threshold: float  # 0.0: no threshold met the budget, the exit is off
    exit_rate: float  # share of those posts that stop early
    full_positives: int  # posts the full network calls outages
    dropped: int  # of those, posts the exit stops (decisions changed)


def fit_probe(x: NDArray[np.float32], target: NDArray[np.float32], seed: int, steps: int = 400) -> tuple[
    NDArray[np.float32], float
]:
    """Logistic regression on soft targets (full-batch Adam on standardised inputs); returns raw-space w, b."""
    torch.manual_seed(seed)
    xt = torch.from_numpy(x)
    mu, sd = xt.mean(0), xt.std(0) + 1e-6
    xn = (xt - mu) / sd
    y = torch.from_numpy(target)
    lin = torch.nn.Linear(x.shape[1], 1)
    opt = torch.optim.Adam(lin.parameters(), lr=1e-2, weight_decay=1e-4)
    bce = torch.nn.BCEWithLogitsLoss()
    for _ in range(steps):
        opt.zero_grad()
        loss = bce(lin(xn).squeeze(-1), y)
        loss.backward()
        opt.step()
    with torch.no_grad():
        w = (lin.weight[0] / sd).numpy().astype(np.float32)
        b = float(lin.bias[0] - (lin.weight[0] * mu / sd).sum())
    return w, b


def choose_threshold(
    probe: NDArray[np.float32], full_positive: NDArray[np.bool_], decision: float, max_loss: float = MAX_LOSS
) -> float:
    """Highest grid threshold below ``decision`` that drops at most ``max_loss`` of the full positives."""
    allowed = int(max_loss * int(full_positive.sum()))
    best = 0.0
    for t in GRID:
        if t >= decision or int((full_positive & (probe < t)).sum()) > allowed:
            break  # drops only grow with t
        best = t
    return best


def fit_exit(
    full: Classifier,
    train_texts: Sequence[str],
    unseen_texts: Sequence[str],
    decision: float,
    layer: int,
    seed: int,
) -> tuple[EarlyExit | None, ExitCheck]:
    """Fit the probe and pick its threshold; ``None`` when no threshold keeps within the loss budget."""
    unseen = list(unseen_texts)
    random.Random(seed).shuffle(unseen)
    held = unseen[: len(unseen) // 2]
    fit = [*train_texts, *unseen[len(unseen) // 2 :]]
    s_fit, x_fit = full.scores_and_pooled(fit)
    w, b = fit_probe(x_fit, s_fit, seed)
    if not held:
        log.warning("no unlabelled posts to choose the early-exit threshold on: early exit off")
        return None, ExitCheck(0, 0.0, 0.0, 0, 0)
    s_held, x_held = full.scores_and_pooled(held)
    probe = EarlyExit(w, b, 1.0, layer).prob(x_held)
    positive = s_held >= decision
    t = choose_threshold(probe, positive, decision)
    stopped = probe < t
    check = ExitCheck(len(held), t, float(stopped.mean()), int(positive.sum()), int((stopped & positive).sum()))
    log.info("early exit: %s", check)
    return (EarlyExit(w, b, t, layer) if t > 0 else None), check

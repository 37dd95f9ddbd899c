"""Fitting the early exits (training side): logistic probes that mimic the full network, and their threshold.

Each probe learns the full int8 network's outage probability from one stage's pooled vector, on the training
posts and half of the unlabelled shared posts. All exits share one threshold, chosen on the other half
(real posts neither the network nor the probes saw): the highest at which all exits together drop at most
``max_loss`` of the posts the full network calls outages. One threshold per exit, each chosen to save the
most layers, met the budget on the posts it was chosen on but dropped up to 1.5 % of the outage calls on
posts held out from that choice; the shared one held (docs/classifier-experiments.md, "Early-exit layouts").
No label is used: the exits are judged against the full network's decisions, as the int8 graphs are judged
against fp32.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch
from numpy.typing import NDArray

from miner.classify.meta import EarlyExit
from miner.classify.model import Classifier

log = logging.getLogger(__name__)

MAX_LOSS = 0.005  # share of the full network's outage calls the exit may drop on unseen posts
GRID = tuple(round(0.005 * i, 3) for i in range(1, 61))  # candidate thresholds 0.005 .. 0.3


@dataclass(frozen=True)
class ExitCheck:
    n: int  # held-out unseen posts the thresholds were chosen on
    layers: tuple[int, ...]  # encoder layers run before each exit
    thresholds: tuple[float, ...]  # per exit (one shared value); 0.0: off (none kept within the budget)
    stop_rates: tuple[float, ...]  # share of those posts that stop at each exit
    exit_rate: float  # share that stops at any exit
    layers_per_post: float  # mean encoder layers run per post (the whole network runs all of them)
    full_positives: int  # posts the full network calls outages
    dropped: int  # of those, posts an exit stops (decisions changed)


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
    """Highest grid threshold below ``decision`` that drops at most ``max_loss`` of the full positives.

    ``probe`` is, per post, the lowest probability any exit gives it: the post stops if that is below.
    """
    allowed = int(max_loss * int(full_positive.sum()))
    best = 0.0
    for t in GRID:
        if t >= decision or int((full_positive & (probe < t)).sum()) > allowed:
            break  # drops only grow with t
        best = t
    return best


def fit_exits(
    full: Classifier,
    train_texts: Sequence[str],
    unseen_texts: Sequence[str],
    decision: float,
    layers: Sequence[int],
    depth: int,
    seed: int,
    max_loss: float = MAX_LOSS,
) -> tuple[tuple[EarlyExit | None, ...], ExitCheck]:
    """Fit a probe per exit point (``layers``: encoder layers before each, of ``depth``) and their threshold.

    When no threshold keeps within the budget every exit is ``None`` (off).
    """
    stages = [b - a for a, b in pairwise([0, *layers, depth])]
    unseen = list(unseen_texts)
    random.Random(seed).shuffle(unseen)
    held = unseen[: len(unseen) // 2]
    fit = [*train_texts, *unseen[len(unseen) // 2 :]]
    s_fit, x_fit = full.scores_and_pooled(fit)
    weights = [fit_probe(x, s_fit, seed) for x in x_fit]
    if not held or not layers:
        if layers:
            log.warning("no unlabelled posts to choose the early-exit threshold on: early exits off")
        off = tuple(0.0 for _ in layers)
        return (None,) * len(layers), ExitCheck(0, tuple(layers), off, off, 0.0, float(depth), 0, 0)
    s_held, x_held = full.scores_and_pooled(held)
    probes = [EarlyExit(w, b, 1.0, n).prob(x) for (w, b), x, n in zip(weights, x_held, layers, strict=True)]
    positive = s_held >= decision
    t = choose_threshold(np.min(probes, axis=0), positive, decision, max_loss)
    stopped = list(np.minimum.accumulate(np.stack(probes)) < t)  # stopped[i]: by exit i or an earlier one
    rates = [float(stopped[0].mean())] + [float((b & ~a).mean()) for a, b in pairwise(stopped)]
    reach = [1.0] + [1.0 - float(s.mean()) for s in stopped]
    check = ExitCheck(
        n=len(held),
        layers=tuple(layers),
        thresholds=(t,) * len(layers),
        stop_rates=tuple(rates),
        exit_rate=float(stopped[-1].mean()),
        layers_per_post=float(sum(n * r for n, r in zip(stages, reach, strict=True))),
        full_positives=int(positive.sum()),
        dropped=int((stopped[-1] & positive).sum()),
    )
    log.info("early exits: %s", check)
    return tuple(EarlyExit(w, b, t, n) if t > 0 else None for (w, b), n in zip(weights, layers, strict=True)), check

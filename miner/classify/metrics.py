"""Classification metrics and threshold choice (numpy only, so the card and tests need no torch)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from miner.records import SYMPTOMS


def prf(y: NDArray[np.int64], pred: NDArray[np.int64]) -> dict[str, float | int]:
    tp = int(((pred == 1) & (y == 1)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    tn = int(((pred == 0) & (y == 0)).sum())
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {
        "precision": round(p, 4),
        "recall": round(r, 4),
        "f1": round(f, 4),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "n": len(y),
    }


def best_threshold(y: NDArray[np.int64], scores: NDArray[np.float32]) -> float:
    """The threshold maximising F1 on held-out scores; ties go to the middle of the best plateau."""
    grid = np.round(np.arange(0.05, 0.951, 0.01), 2)
    f1s = np.array([prf(y, (scores >= t).astype(np.int64))["f1"] for t in grid])
    best = np.flatnonzero(f1s >= f1s.max() - 1e-9)
    return float(grid[best[len(best) // 2]])


def source_group(source: str) -> str:
    """Per-source reporting groups: 'complaints2019/software' -> 'complaints2019', 'apps/waplay' -> 'apps'."""
    return source.split("/", 1)[0]


def report(
    y: NDArray[np.int64],
    scores: NDArray[np.float32],
    sym_true: Sequence[str | None],
    sym_pred: Sequence[str],
    sources: Sequence[str],
    threshold: float,
) -> dict[str, Any]:
    """Overall, per-source and per-symptom metrics of out-of-fold predictions at ``threshold``."""
    pred = (scores >= threshold).astype(np.int64)
    out: dict[str, Any] = {"threshold": threshold, "overall": prf(y, pred)}
    groups = sorted({source_group(s) for s in sources} | set(sources))
    src = np.array(sources)
    grp = np.array([source_group(s) for s in sources])
    out["per_source"] = {
        g: prf(y[(grp == g) if "/" not in g else (src == g)], pred[(grp == g) if "/" not in g else (src == g)])
        for g in groups
    }
    # Per symptom: recall of true outages of that symptom, and accuracy of the symptom head on them.
    per_sym: dict[str, dict[str, float | int]] = {}
    for s in SYMPTOMS:
        idx = [i for i, t in enumerate(sym_true) if t == s]
        if not idx:
            continue
        detected = [i for i in idx if pred[i] == 1]
        per_sym[s] = {
            "n": len(idx),
            "outage_recall": round(len(detected) / len(idx), 4),
            "symptom_accuracy": round(sum(sym_pred[i] == s for i in idx) / len(idx), 4),
        }
    out["per_symptom"] = per_sym
    out["confusion"] = {k: out["overall"][k] for k in ("tp", "fp", "fn", "tn")}
    labels = [s for s in SYMPTOMS]
    matrix = [[sum(1 for i, t in enumerate(sym_true) if t == a and sym_pred[i] == b) for b in labels] for a in labels]
    out["symptom_confusion"] = {"labels": labels, "matrix": matrix}
    return out

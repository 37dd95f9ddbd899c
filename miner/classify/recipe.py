"""The training recipe: one frozen set of hyperparameters whose defaults are those of the shipped model.

Kept free of torch so that `miner train` can show these defaults in its options without importing it: the
CLI, the build and code that builds a TrainConfig directly all get the same recipe.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# How the shipped model's build runs around the recipe: cross-validation folds (out-of-fold scores pick the
# threshold and fill the card) and rule-labelled posts drawn per weak rule from the shared data.
FOLDS = 3
WEAK_PER_RULE = 300


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 5
    lr: float = 6e-5  # encoder; the heads start from scratch and learn at head_lr
    head_lr: float = 1e-3
    batch_size: int = 16
    max_length: int = 128  # longer than ~98% of the labelled posts; a long post's first sentences carry the report
    weight_decay: float = 0.01
    warmup: float = 0.1
    pos_weight: float = 1.0
    symptom_weight: float = 0.5
    seed: int = 13
    # Ship the mean of the weights at the end of epochs average_from..epochs (0: the last weights only).
    average_from: int = 2
    # R-drop: each batch runs twice (two dropout masks) and this weight pulls the two outage probabilities
    # together (symmetric KL): +0.010 F1 in 9 paired CV runs (models/MODEL_CARD.md). 0 turns it off.
    rdrop: float = 1.0

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)

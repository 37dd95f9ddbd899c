"""The `[classifier]` table of feeds.toml."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClassifierSettings:
    model_dir: str | None = None  # default: the model shipped in the project's models/ folder
    batch_size: int = 32
    threshold: float | None = None  # default: the threshold chosen on validation data, from the model
    threads: int = 2  # batches scored at once, one core each; the service shares a small box with the collectors
    early_exit: bool = True  # let clear non-reports stop after the first layers (models/MODEL_CARD.md)

    def validate(self) -> None:
        # "" was the config file's own folder, not the shipped model: the service then failed on its model.json.
        if self.model_dir is not None and not self.model_dir.strip():
            raise ValueError("model_dir: must not be blank (leave it out for the model shipped in models/)")
        if self.batch_size < 1:
            raise ValueError("batch_size: must be at least 1")
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            raise ValueError("threshold: must be between 0 and 1")
        if self.threads < 1:
            raise ValueError("threads: must be at least 1")

"""Where the shipped classifier is: the default of ``classifier.model_dir`` and of ``miner train --out``; where a
config's classifier.model_dir is, and the version and decision its model.json gives.

A module of its own, importing nothing of the classifier's, so that the command line can show the default, and
`miner status` the version and decision on disk, without loading numpy and ONNX Runtime.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import miner
from miner.records import Decision

if TYPE_CHECKING:
    from miner.classify.settings import ClassifierSettings


def default_model_dir() -> Path:
    """The shipped model: inside the package once installed (a wheel, `pip install .`), else the checkout's models/.

    pyproject.toml ships the serving files of the top-level models/ folder as the package miner.models. A checkout
    or an editable install has no miner/models/ and serves the top-level folder, where `miner train` writes. The
    installed copy is looked for first: beside an installed package is site-packages, where a models/ folder
    would be some other distribution's.
    """
    package = Path(miner.__file__).resolve().parent
    installed = package / "models"
    return installed if installed.is_dir() else package.parent / "models"


def resolve_model_dir(settings: ClassifierSettings, base_dir: Path | None = None) -> Path:
    """The folder of the model ``settings`` name: a relative classifier.model_dir is read from ``base_dir`` (the
    config file's folder)."""
    if settings.model_dir is None:
        return default_model_dir()
    path = Path(settings.model_dir).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path


def model_on_disk(model_dir: Path, settings: ClassifierSettings) -> tuple[str | None, Decision | None]:
    """(version, decision) of the model.json in ``model_dir`` now, read without loading the model: the version it
    gives, and the decision (see Decision.asked) its threshold and exits with ``settings`` give verdicts at. `miner
    status` tells them from those the service loaded at its start. Either is None when it cannot be read."""
    try:
        raw = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None, None
    if not isinstance(raw, dict):
        return None, None
    version = raw.get("version")
    own, exits = raw.get("threshold"), raw.get("exits") or []
    decision = None
    # Not a bool (an int to Python); ModelMeta refuses what is not a probability, and the service would not load it.
    if isinstance(own, int | float) and not isinstance(own, bool) and 0.0 < own < 1.0 and isinstance(exits, list):
        decision = Decision.asked(settings.threshold, settings.early_exit, float(own), any(exits))
    return version if isinstance(version, str) and version.strip() else None, decision

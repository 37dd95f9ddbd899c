"""Where the shipped classifier is: the default of ``classifier.model_dir`` and of ``miner train --out``.

A module of its own, importing nothing of the classifier's, so that the command line can show the default without
loading numpy and ONNX Runtime.
"""

from __future__ import annotations

from pathlib import Path

import miner


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

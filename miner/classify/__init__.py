"""The outage classifier: is a post an outage report, how sure, and what is broken.

Public API (stable; the pipeline uses only this)::

    from miner.classify import ClassifierSettings, Classifier, load_classifier

    clf = load_classifier(settings, base_dir=config_dir)   # raises miner.errors.ModelError naming the bad file
    clf.version                                             # e.g. "minilm-outage-2026.11.28-3f2a9c1d"
    clf.predict(["whatsapp is down again"])                 # -> list[miner.records.Prediction], input order

``load_classifier(settings, base_dir=None)`` reads ``settings.model_dir`` (a relative path is taken against
``base_dir``; ``None`` means the shipped model, :func:`miner.classify.model.default_model_dir`: the
repository's top-level ``models/`` folder in a checkout or editable install, ``miner/models/`` in site-packages
once installed from a wheel). That folder holds ``model.json`` (version, threshold, symptom labels, max_length,
training data hash, file names, the graphs' sha256, early-exit probes), the int8 ONNX stage graphs (each runs
some of the encoder layers) and ``tokenizer.json``. ``predict`` batches internally (``settings.batch_size``
posts per ONNX run, length-sorted); any text is accepted: empty, emoji-only or very long posts are scored (long
ones truncated to ``max_length`` tokens). ``Prediction.outage`` is ``score >= threshold`` (``settings.threshold``
overrides the model's validated one); ``Prediction.symptom`` is one of :data:`miner.records.SYMPTOMS` when
``outage`` else ``None``. With ``settings.early_exit`` (the default) a post an exit probe calls a clear
non-report stops after that stage and scores the probe's estimate of the full model's probability (see
:mod:`miner.classify.model`).

Serving uses ONNX Runtime and `tokenizers` only: importing this package never imports torch. Training
(:mod:`miner.classify.train`, :mod:`miner.classify.crossval`, :mod:`miner.classify.export`) imports torch and
transformers and is loaded only by ``miner train``. Importing this package turns ONNX Runtime's telemetry off
(see below).
"""

import importlib
import os
from typing import TYPE_CHECKING, Any

# ONNX Runtime 1.29 and later, on Linux too, send Microsoft usage events (one per process, then session and model
# events) and keep a device id under ~/.cache: a self-hosted service that reads people's posts phones home. Set
# before onnxruntime is first imported, which only this package does; ORT_DISABLE_TELEMETRY=0 in the environment
# opts back in.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

if TYPE_CHECKING:
    from miner.classify.model import Classifier, load_classifier
    from miner.classify.settings import ClassifierSettings

# The model (numpy, ONNX Runtime, tokenizers) loads on first use: reading feeds.toml and `miner train`'s options,
# which need the settings and the recipe alone, loaded it all, before `miner run` could take its port.
_LAZY = {"Classifier": "model", "load_classifier": "model", "ClassifierSettings": "settings"}

__all__ = ["Classifier", "ClassifierSettings", "load_classifier"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'miner.classify' has no attribute {name!r}")
    return getattr(importlib.import_module(f"miner.classify.{module}"), name)

"""models/model.json read into typed, checked objects: the model's metadata and its early-exit probes.

Every field is checked when the file is read, so a damaged or hand-edited model.json is refused naming the
field, before any graph is opened (serving in :mod:`miner.classify.model`, writing in ``build.py``).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from miner.errors import ModelError
from miner.records import SYMPTOMS

META_FILE = "model.json"
# Fewest tokens a model may cut posts to: [CLS] and [SEP] take two, so less leaves a post a few word pieces.
MIN_TOKENS = 8
# Most: far past any encoder's position table (MiniLM's is 512), and load_classifier runs the first graph once on
# max_length tokens to find its limit, so a bound keeps that check's arrays small (10**12 asked for terabytes).
MAX_TOKENS = 1 << 16



@dataclass(frozen=True)
class EarlyExit:
    """Logistic probe on the head graph's pooled vector: ``sigmoid(pooled @ weight + bias)``."""

    weight: NDArray[np.float32]
    bias: float
    threshold: float  # posts whose probe probability is below this stop here
    layer: int  # encoder layers run before this exit (for the card; the graphs carry the split)

    def prob(self, pooled: NDArray[np.float32]) -> NDArray[np.float32]:
        z = np.clip(pooled @ self.weight + self.bias, -30.0, 30.0)
        prob: NDArray[np.float32] = (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
        return prob

    def as_json(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "threshold": self.threshold,
            "bias": self.bias,
            "weight": [float(f"{w:.8g}") for w in self.weight],  # float32 holds about 7 significant digits
        }

    @classmethod
    def from_json(cls, raw: Any, name: str = "exit") -> EarlyExit:
        """The exit ``raw`` describes; an _Invalid error names a bad field as ``name``.field."""
        with np.errstate(over="ignore"):  # a value past float32's range becomes inf, refused below
            weight = np.asarray(raw["weight"], dtype=np.float32)
        bias, threshold = float(raw["bias"]), float(raw["threshold"])
        if weight.ndim != 1:
            raise _Invalid(f"'{name}.weight' is not a vector")
        # A NaN or infinite probe scores posts NaN: no outage is ever found, and the output is not JSON.
        if not np.isfinite(weight).all():
            bad = int(np.flatnonzero(~np.isfinite(weight))[0])
            raise _Invalid(f"'{name}.weight' [{bad}] is {raw['weight'][bad]}, not a finite float32")
        if not math.isfinite(bias):
            raise _Invalid(f"'{name}.bias' is {bias}, not a finite number")
        if not 0.0 <= threshold < 1.0:  # false for NaN too
            raise _Invalid(f"'{name}.threshold' is {threshold}, not a probability in [0, 1)")
        return cls(weight, bias, threshold, int(raw["layer"]))


class _Invalid(ValueError):
    """A model.json field that parses but is out of range; the message names it and is shown as it is."""


def _graph_sums(raw: Any, graphs: tuple[str, ...]) -> tuple[str, ...]:
    """model.json's ``graph_sha256`` ({graph file: sha256 hex}) in the order of ``graphs``; () when absent."""
    if raw is None:
        return ()
    if not isinstance(raw, dict) or sorted(raw) != sorted(graphs):
        raise _Invalid(f"'graph_sha256' does not give one sha256 for each of 'graphs' {list(graphs)}")
    sums = tuple(str(raw[g]) for g in graphs)
    if not all(re.fullmatch(r"[0-9a-f]{64}", h) for h in sums):
        raise _Invalid("'graph_sha256' has a value that is not a sha256 in lower-case hex")
    return sums


def _tokenizer_sum(raw: Any) -> str:
    """model.json's ``tokenizer_sha256``; "" when absent (a model.json from before it was recorded)."""
    if raw is None:
        return ""
    if not isinstance(raw, str) or not re.fullmatch(r"[0-9a-f]{64}", raw):
        raise _Invalid(f"'tokenizer_sha256' is {json.dumps(raw)}, not a sha256 in lower-case hex")
    return raw


def file_sha256(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read ({exc.strerror or exc})") from exc


@dataclass(frozen=True)
class ModelMeta:
    """What models/model.json says about the shipped model."""

    version: str
    threshold: float
    symptoms: tuple[str, ...]
    max_length: int
    graphs: tuple[str, ...]  # stage graph files in order (see stage_io)
    tokenizer_file: str
    training_data_hash: str
    exits: tuple[EarlyExit | None, ...] = ()  # exits[i] reads stage i's pooled vector; None: no exit there
    text_prep: str = ""  # tokenize.TEXT_PREP of the code that trained it; "" before it was recorded
    path: Path | None = None  # the model.json it was read from, named in errors found while serving
    # sha256 (hex) of each file in graphs, checked before it is opened; () in a model.json from before they were
    # recorded, which still loads (unchecked)
    graph_sha256: tuple[str, ...] = ()
    # sha256 (hex) of tokenizer_file, checked before it is loaded; "" in a model.json from before it was recorded
    tokenizer_sha256: str = ""

    @classmethod
    def read(cls, path: Path) -> ModelMeta:
        try:
            raw: Any = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ModelError(f"{path}: model metadata not found (run `miner train` or restore models/)") from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"{path}: unreadable model metadata ({exc})") from exc
        if isinstance(raw, dict) and "graphs" not in raw and "onnx" in raw:
            # Named as found: a 0.1.0 model folder (one graph) was called a head/tail one, which it never was.
            layout = "head/tail layout ('onnx', 'onnx_tail')" if "onnx_tail" in raw else "single-graph layout ('onnx')"
            raise ModelError(f"{path}: {layout} of an older miner; rebuild the model with `miner train`")
        try:
            graphs = tuple(str(g) for g in raw["graphs"])
            raw_exits = raw.get("exits") or [None] * len(graphs[1:])
            exits = tuple(EarlyExit.from_json(e, f"exits[{i}]") if e else None for i, e in enumerate(raw_exits))
            if not graphs or len(exits) != len(graphs) - 1:
                raise ValueError("'exits' (one per graph but the last)")
            # Every verdict is stored under it, and reclassify tells one model's verdicts from another's by it: a
            # null one was stored as "None", and an empty one told no model from another.
            if not isinstance(version := raw["version"], str) or not version.strip():
                raise _Invalid(f"'version' is {json.dumps(version)}, not a non-empty string")
            # Past 2**64 the tokenizer's truncation failed with an internal OverflowError; int() cut a float or a
            # string to a count unsaid, and turned true into 1.
            max_length = raw["max_length"]
            if type(max_length) is not int or not MIN_TOKENS <= max_length <= MAX_TOKENS:
                raise _Invalid(f"'max_length' is {json.dumps(max_length)}, not a whole number of tokens from "
                               f"{MIN_TOKENS} to {MAX_TOKENS}")
            meta = cls(
                version=version,
                threshold=float(raw["threshold"]),
                symptoms=tuple(str(s) for s in raw["symptoms"]),
                max_length=max_length,
                graphs=graphs,
                tokenizer_file=str(raw["tokenizer"]),
                training_data_hash=str(raw.get("training_data_hash", "")),
                exits=exits,
                text_prep=str(raw.get("text_prep", "")),
                path=path,
                graph_sha256=_graph_sums(raw.get("graph_sha256"), graphs),
                tokenizer_sha256=_tokenizer_sum(raw.get("tokenizer_sha256")),
            )
        except _Invalid as exc:
            raise ModelError(f"{path}: {exc}") from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{path}: model metadata lacks or mistypes {exc}") from exc
        if not 0.0 < meta.threshold < 1.0:  # false for NaN too
            raise ModelError(f"{path}: 'threshold' is {meta.threshold}, not a probability in (0, 1)")
        if unknown := sorted(set(meta.symptoms) - set(SYMPTOMS)):
            raise ModelError(f"{path}: 'symptoms' has labels not in miner.records.SYMPTOMS: {unknown}")
        return meta

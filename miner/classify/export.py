"""Torch -> a chain of ONNX stage graphs (split where the early exits read) -> dynamic int8, checked against fp32.

The stages are described in :mod:`miner.classify.model`. Attention is exported in its eager form: an additive
mask instead of the fused kernel's masking ops, which ONNX Runtime runs faster.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from miner.classify.meta import ModelMeta
from miner.classify.model import Classifier, open_graphs, stage_io
from miner.classify.tokenize import load_tokenizer
from miner.classify.train import OutageNet, mean_pool
from miner.records import SYMPTOMS

log = logging.getLogger(__name__)

OPSET = 17
# Encoder layers run before each early exit. Measured on unseen posts (docs/classifier-experiments.md,
# "Early-exit layouts"): exits after layers 1 and 2 run 3.4 of the 6 layers per post at the same decision loss
# as one exit after layer 2 (4.0); a third after layer 4 saved no more.
EXIT_LAYERS = (1, 2)


def _additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


class _Stage(nn.Module):
    """Encoder layers ``start`` to ``stop`` (0-based, stop exclusive); the first stage embeds the token ids,
    the last one adds the heads, the others return hidden states and their mean-pooled vector."""

    def __init__(self, model: OutageNet, start: int, stop: int) -> None:
        super().__init__()
        encoder: Any = model.encoder  # a transformers BertModel, untyped here
        self.first = start == 0
        self.last = stop == model.depth
        self.embeddings = encoder.embeddings
        self.layers = encoder.encoder.layer[start:stop]
        self.outage = model.outage
        self.symptom = model.symptom

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.embeddings(input_ids=x) if self.first else x
        additive = _additive_mask(mask, hidden.dtype)
        for layer in self.layers:
            hidden = layer(hidden, additive)
        pooled = mean_pool(hidden, mask)
        if self.last:
            return torch.sigmoid(self.outage(pooled)).squeeze(-1), torch.softmax(self.symptom(pooled), dim=-1)
        return hidden, pooled


def export_fp32(model: OutageNet, out_dir: Path, exit_layers: Sequence[int]) -> list[str]:
    """Write the fp32 stage graphs to ``out_dir``; return their file names in order."""
    model.eval()
    encoder: Any = model.encoder
    encoder.config._attn_implementation = "eager"
    depth = model.depth
    if list(exit_layers) != sorted(set(exit_layers)) or not all(0 < n < depth for n in exit_layers):
        raise ValueError(f"exit layers {list(exit_layers)} must rise strictly within 1..{depth - 1}")
    bounds = [0, *exit_layers, depth]
    names = [f"layers{a + 1}-{b}.fp32.onnx" for a, b in pairwise(bounds)]  # by the (1-based) layers each runs
    mask = torch.ones((2, 8), dtype=torch.int64)
    axes = {0: "batch", 1: "tokens"}
    with torch.no_grad():
        for i, name in enumerate(names):
            inputs, outputs = stage_io(i, len(names))
            first = torch.ones((2, 8), dtype=torch.int64) if i == 0 else torch.zeros((2, 8, model.outage.in_features))
            dyn: dict[str, dict[int, str]] = {n: axes for n in inputs}
            dyn.update({o: (axes if o == "hidden_out" else {0: "batch"}) for o in outputs})
            torch.onnx.export(
                _Stage(model, bounds[i], bounds[i + 1]),
                (first, mask),
                str(out_dir / name),
                input_names=list(inputs),
                output_names=list(outputs),
                dynamic_axes=dyn,
                opset_version=OPSET,
                # The TorchScript exporter, deprecated since torch 2.9 but in the pinned 2.13: the shipped graphs and
                # their int8 checks come from it, and the torch.export one needs onnxscript, one more dependency.
                dynamo=False,
            )
    return names


def quantize_int8(fp32_path: Path, int8_path: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32_path), str(int8_path), per_channel=True, weight_type=QuantType.QInt8)


@dataclass(frozen=True)
class Agreement:
    n: int
    decision_agreement: float  # share of posts on the same side of the threshold
    symptom_agreement: float  # share of fp32-positive posts given the same symptom
    max_abs_diff: float
    mean_abs_diff: float


def full_classifier(model_dir: Path, graphs: Sequence[str], tok_path: Path, max_length: int) -> Classifier:
    """The exported network without early exits, through the serving code, 2 batches at a time."""
    meta = ModelMeta("check", 0.5, SYMPTOMS, max_length, tuple(graphs), tok_path.name, "")
    return Classifier(open_graphs(model_dir, meta), load_tokenizer(tok_path, max_length), meta, 32, 0.5, threads=2)


def agreement(fp32: Classifier, int8: Classifier, texts: Sequence[str], threshold: float) -> Agreement:
    s32, y32 = fp32.scores(texts)
    s8, y8 = int8.scores(texts)
    d32 = s32 >= threshold
    d8 = s8 >= threshold
    pos = np.flatnonzero(d32)
    sym = float(np.mean([y32[i] == y8[i] for i in pos])) if len(pos) else 1.0
    diff = np.abs(s32 - s8)
    return Agreement(len(texts), float((d32 == d8).mean()), sym, float(diff.max()), float(diff.mean()))


def export_all(
    model: OutageNet,
    model_dir: Path,
    tok_path: Path,
    max_length: int,
    texts: Sequence[str],
    threshold: float,
    exit_layers: Sequence[int] = EXIT_LAYERS,
    min_agreement: float = 0.99,
) -> tuple[tuple[str, ...], Agreement]:
    """Write the stage graphs as int8 (or fp32 when int8 disagrees too often); return file names + check.

    The check scores ``texts`` through the serving code with both versions of the network.
    """
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        fp32_names = export_fp32(model, scratch, exit_layers)
        int8_names = [name.replace(".fp32.", ".int8.") for name in fp32_names]
        for src, dst in zip(fp32_names, int8_names, strict=True):
            quantize_int8(scratch / src, model_dir / dst)
        fp32 = full_classifier(scratch, fp32_names, tok_path, max_length)
        int8 = full_classifier(model_dir, int8_names, tok_path, max_length)
        check = agreement(fp32, int8, texts, threshold)
        log.info("int8 vs fp32: %s", check)
        if check.decision_agreement >= min_agreement:
            return tuple(int8_names), check
        log.warning("int8 decisions agree on only %.4f of posts: shipping fp32", check.decision_agreement)
        for src, dst in zip(fp32_names, int8_names, strict=True):
            (model_dir / dst).unlink()
            shutil.copyfile(scratch / src, model_dir / src)
        return tuple(fp32_names), check

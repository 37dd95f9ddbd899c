"""Torch -> two ONNX graphs (head: first layers, tail: the rest) -> dynamic int8, checked against fp32.

The split is where the early exit reads the network (see :mod:`miner.classify.model`). Attention is exported
in its eager form: an additive mask instead of the fused kernel's masking ops, which ONNX Runtime runs faster.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from miner.classify.model import HEAD_IO, TAIL_IO, Classifier, Graphs, ModelMeta, open_graphs
from miner.classify.tokenize import load_tokenizer
from miner.classify.train import OutageNet, mean_pool
from miner.errors import ModelError
from miner.records import SYMPTOMS

log = logging.getLogger(__name__)

OPSET = 17
# Encoder layers before the exit. Measured on unseen posts with the shipped network: after layer 1 the probe
# lets fewer posts stop at the same decision loss, after layer 3 each stop saves less (models/MODEL_CARD.md).
EXIT_LAYER = 2


def _additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


class _Head(nn.Module):
    def __init__(self, model: OutageNet, layers: int) -> None:
        super().__init__()
        encoder: Any = model.encoder  # a transformers BertModel, untyped here
        self.embeddings = encoder.embeddings
        self.layers = encoder.encoder.layer[:layers]

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.embeddings(input_ids=ids)
        additive = _additive_mask(mask, hidden.dtype)
        for layer in self.layers:
            hidden = layer(hidden, additive)
        return hidden, mean_pool(hidden, mask)


class _Tail(nn.Module):
    def __init__(self, model: OutageNet, layers: int) -> None:
        super().__init__()
        encoder: Any = model.encoder
        self.layers = encoder.encoder.layer[layers:]
        self.outage = model.outage
        self.symptom = model.symptom

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        additive = _additive_mask(mask, hidden.dtype)
        for layer in self.layers:
            hidden = layer(hidden, additive)
        pooled = mean_pool(hidden, mask)
        return torch.sigmoid(self.outage(pooled)).squeeze(-1), torch.softmax(self.symptom(pooled), dim=-1)


def export_fp32(model: OutageNet, head_path: Path, tail_path: Path, layers: int = EXIT_LAYER) -> None:
    model.eval()
    encoder: Any = model.encoder
    encoder.config._attn_implementation = "eager"
    mask = torch.ones((2, 8), dtype=torch.int64)
    axes = {0: "batch", 1: "tokens"}
    parts: list[tuple[nn.Module, Path, tuple[torch.Tensor, ...], tuple[tuple[str, ...], tuple[str, ...]]]] = [
        (_Head(model, layers), head_path, (torch.ones((2, 8), dtype=torch.int64), mask), HEAD_IO),
        (_Tail(model, layers), tail_path, (torch.zeros((2, 8, model.outage.in_features)), mask), TAIL_IO),
    ]
    with torch.no_grad():
        for module, path, args, (inputs, outputs) in parts:
            dyn: dict[str, dict[int, str]] = {n: axes for n in inputs}
            dyn.update({o: (axes if o == "hidden" else {0: "batch"}) for o in outputs})
            torch.onnx.export(
                module,
                args,
                str(path),
                input_names=list(inputs),
                output_names=list(outputs),
                dynamic_axes=dyn,
                opset_version=OPSET,
                dynamo=False,
            )


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


def full_classifier(model_dir: Path, head: str, tail: str, tok_path: Path, max_length: int) -> Classifier:
    """The exported network without an early exit, through the serving code, 2 batches at a time."""
    meta = ModelMeta("check", 0.5, SYMPTOMS, max_length, head, tail, tok_path.name, "")
    graphs: Graphs = open_graphs(model_dir, meta)
    return Classifier(graphs, load_tokenizer(tok_path, max_length), meta, 32, 0.5, threads=2)


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
    min_agreement: float = 0.99,
) -> tuple[tuple[str, str], Agreement]:
    """Write head/tail graphs as int8 (or fp32 when int8 disagrees too often); return file names + check.

    The check scores ``texts`` through the serving code with both versions of the network.
    """
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        export_fp32(model, scratch / "head.fp32.onnx", scratch / "tail.fp32.onnx")
        for part in ("head", "tail"):
            quantize_int8(scratch / f"{part}.fp32.onnx", model_dir / f"{part}.int8.onnx")
        fp32 = full_classifier(scratch, "head.fp32.onnx", "tail.fp32.onnx", tok_path, max_length)
        int8 = full_classifier(model_dir, "head.int8.onnx", "tail.int8.onnx", tok_path, max_length)
        check = agreement(fp32, int8, texts, threshold)
        log.info("int8 vs fp32: %s", check)
        if check.decision_agreement >= min_agreement:
            return ("head.int8.onnx", "tail.int8.onnx"), check
        log.warning("int8 decisions agree on only %.4f of posts: shipping fp32", check.decision_agreement)
        names: list[str] = []
        for part in ("head", "tail"):
            (model_dir / f"{part}.int8.onnx").unlink()
            target = model_dir / f"{part}.fp32.onnx"
            target.write_bytes((scratch / target.name).read_bytes())
            if not target.is_file():
                raise ModelError(f"{target}: export failed")
            names.append(target.name)
        return (names[0], names[1]), check



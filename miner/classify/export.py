"""Torch -> ONNX -> dynamic int8 (per-channel), with a check that int8 decides as fp32 does."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from miner.classify.model import Classifier, ModelMeta, open_session
from miner.classify.tokenize import load_tokenizer
from miner.classify.train import OutageNet
from miner.errors import ModelError
from miner.records import SYMPTOMS

log = logging.getLogger(__name__)

OPSET = 17


def export_fp32(model: OutageNet, path: Path) -> None:
    model.eval()
    ids = torch.ones((2, 8), dtype=torch.int64)
    mask = torch.ones((2, 8), dtype=torch.int64)
    axes = {0: "batch", 1: "tokens"}
    torch.onnx.export(
        model,
        (ids, mask),
        str(path),
        input_names=["input_ids", "attention_mask"],
        output_names=["outage_prob", "symptom_probs"],
        dynamic_axes={
            "input_ids": axes,
            "attention_mask": axes,
            "outage_prob": {0: "batch"},
            "symptom_probs": {0: "batch"},
        },
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


def _scores(onnx_path: Path, tok_path: Path, max_length: int, texts: Sequence[str]) -> tuple[Any, list[int]]:
    meta = ModelMeta("check", 0.5, SYMPTOMS, max_length, onnx_path.name, tok_path.name, "")
    clf = Classifier(open_session(onnx_path), load_tokenizer(tok_path, max_length), meta, 64, 0.5, threads=2)
    return clf.scores(texts)


def agreement(
    fp32: Path, int8: Path, tok_path: Path, max_length: int, texts: Sequence[str], threshold: float
) -> Agreement:
    s32, y32 = _scores(fp32, tok_path, max_length, texts)
    s8, y8 = _scores(int8, tok_path, max_length, texts)
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
) -> tuple[str, Agreement]:
    """Write model.int8.onnx (or model.fp32.onnx when int8 disagrees too often); return file name + check.

    The check scores ``texts`` through the serving code with both graphs.
    """
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "model.fp32.onnx"
        export_fp32(model, fp32)
        int8 = model_dir / "model.int8.onnx"
        quantize_int8(fp32, int8)
        check = agreement(fp32, int8, tok_path, max_length, texts, threshold)
        log.info("int8 vs fp32: %s", check)
        if check.decision_agreement >= min_agreement:
            return int8.name, check
        log.warning("int8 decisions agree on only %.4f of posts: shipping fp32", check.decision_agreement)
        int8.unlink()
        target = model_dir / fp32.name
        target.write_bytes(fp32.read_bytes())
        if not target.is_file():
            raise ModelError(f"{target}: export failed")
        return target.name, check

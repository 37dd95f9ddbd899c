"""Serving: the ONNX model, its tokenizer and metadata from models/, run with ONNX Runtime (no torch)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import miner
from miner.classify.settings import ClassifierSettings
from miner.classify.tokenize import load_tokenizer, pad, token_ids
from miner.errors import ModelError
from miner.records import SYMPTOMS, Prediction

log = logging.getLogger(__name__)

META_FILE = "model.json"


def default_model_dir() -> Path:
    return Path(miner.__file__).resolve().parent.parent / "models"


@dataclass(frozen=True)
class ModelMeta:
    """What models/model.json says about the shipped model."""

    version: str
    threshold: float
    symptoms: tuple[str, ...]
    max_length: int
    onnx_file: str
    tokenizer_file: str
    training_data_hash: str

    @classmethod
    def read(cls, path: Path) -> ModelMeta:
        try:
            raw: Any = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ModelError(f"{path}: model metadata not found (run `miner train` or restore models/)") from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"{path}: unreadable model metadata ({exc})") from exc
        try:
            meta = cls(
                version=str(raw["version"]),
                threshold=float(raw["threshold"]),
                symptoms=tuple(str(s) for s in raw["symptoms"]),
                max_length=int(raw["max_length"]),
                onnx_file=str(raw["onnx"]),
                tokenizer_file=str(raw["tokenizer"]),
                training_data_hash=str(raw.get("training_data_hash", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{path}: model metadata lacks or mistypes {exc}") from exc
        if not set(meta.symptoms) <= set(SYMPTOMS) or not 0.0 < meta.threshold < 1.0:
            raise ModelError(f"{path}: symptoms or threshold out of range")
        return meta


class Classifier:
    """Outage probability, decision and symptom per post. Thread-compatible, not thread-safe.

    With ``threads`` > 1, whole batches run concurrently on single-threaded ONNX Runtime kernels (a session's
    ``run`` is thread-safe and releases the GIL). On small batches of short posts this beats splitting each
    operator over threads: bench/classify_bench.py measures both.
    """

    def __init__(
        self, session: Any, tokenizer: Any, meta: ModelMeta, batch_size: int, threshold: float, threads: int = 1
    ) -> None:
        self._session = session
        self._tok = tokenizer
        self.meta = meta
        self.batch_size = batch_size
        self.threshold = threshold
        self.version = meta.version
        self.threads = threads
        self._pool: ThreadPoolExecutor | None = None

    def _run(self, seqs: list[list[int]]) -> tuple[Any, Any]:
        ids, mask = pad(seqs)
        prob, sym = self._session.run(None, {"input_ids": ids, "attention_mask": mask})
        return np.asarray(prob).reshape(-1), np.asarray(sym).argmax(axis=1)

    def scores(self, texts: Sequence[str]) -> tuple[np.ndarray[Any, np.dtype[np.float32]], list[int]]:
        """Raw outage probabilities and symptom indices, in input order."""
        seqs = token_ids(self._tok, texts)
        # Length-sorted batches pad to similar lengths: most posts are short, a few are long.
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        batches = [order[start : start + self.batch_size] for start in range(0, len(order), self.batch_size)]
        jobs = [[seqs[i] for i in idx] for idx in batches]
        if self.threads > 1 and len(jobs) > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="classify")
            results = list(self._pool.map(self._run, jobs))
        else:
            results = [self._run(job) for job in jobs]
        scores = np.zeros(len(seqs), dtype=np.float32)
        symptoms = [0] * len(seqs)
        for idx, (prob, sym) in zip(batches, results, strict=True):
            scores[idx] = prob
            for i, s in zip(idx, sym, strict=True):
                symptoms[i] = int(s)
        return scores, symptoms

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        if not texts:
            return []
        scores, symptoms = self.scores(texts)
        out = []
        for score, sym in zip(scores.tolist(), symptoms, strict=True):
            outage = score >= self.threshold
            out.append(
                Prediction(score=float(score), outage=outage, symptom=self.meta.symptoms[sym] if outage else None)
            )
        return out


def open_session(onnx_path: Path, threads: int = 1) -> Any:
    """An ONNX Runtime session with ``threads`` intra-op threads (the Classifier parallelises over batches)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors for truncated or foreign files
        raise ModelError(f"{onnx_path}: cannot load ONNX model ({str(exc).splitlines()[0][:200]})") from exc
    names = {i.name for i in session.get_inputs()}
    if names != {"input_ids", "attention_mask"}:
        raise ModelError(f"{onnx_path}: unexpected model inputs {sorted(names)}")
    return session


def resolve_model_dir(settings: ClassifierSettings, base_dir: Path | None = None) -> Path:
    if settings.model_dir is None:
        return default_model_dir()
    path = Path(settings.model_dir).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path


def load_classifier(settings: ClassifierSettings, base_dir: Path | None = None) -> Classifier:
    """Load the model named by ``settings`` (see :mod:`miner.classify`). Raises ModelError naming the bad file."""
    model_dir = resolve_model_dir(settings, base_dir)
    if not model_dir.is_dir():
        raise ModelError(f"{model_dir}: model directory not found")
    meta = ModelMeta.read(model_dir / META_FILE)
    tok_path = model_dir / meta.tokenizer_file
    if not tok_path.is_file():
        raise ModelError(f"{tok_path}: tokenizer file not found")
    tokenizer = load_tokenizer(tok_path, meta.max_length)
    onnx_path = model_dir / meta.onnx_file
    if not onnx_path.is_file():
        raise ModelError(f"{onnx_path}: ONNX model file not found")
    session = open_session(onnx_path)
    threshold = settings.threshold if settings.threshold is not None else meta.threshold
    log.info("loaded classifier %s from %s (threshold %.2f)", meta.version, model_dir, threshold)
    return Classifier(session, tokenizer, meta, settings.batch_size, threshold, settings.threads)

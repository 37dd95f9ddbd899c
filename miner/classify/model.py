"""Serving: the two ONNX graphs, tokenizer and metadata from models/, run with ONNX Runtime (no torch).

The network is exported in two parts: the *head* graph runs the embeddings and the first encoder layers and
returns their hidden states and mean-pooled vector; the *tail* graph runs the remaining layers and the outage
and symptom heads. A linear *early exit* on the pooled vector estimates the full model's outage probability;
posts it calls clearly negative stop there, the rest go through the tail. Most posts in a stream are not
outage reports, and most of those stop early. ``miner train`` fits the exit and picks its threshold on real
posts the model never saw, so that it changes almost no decision of the full model (models/MODEL_CARD.md
gives the share that stops early and the decisions it changed).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

import miner
from miner.classify.settings import ClassifierSettings
from miner.classify.tokenize import TEXT_PREP, load_tokenizer, pad, token_ids
from miner.errors import ModelError
from miner.records import SYMPTOMS, Prediction

log = logging.getLogger(__name__)

META_FILE = "model.json"


def default_model_dir() -> Path:
    return Path(miner.__file__).resolve().parent.parent / "models"


@dataclass(frozen=True)
class EarlyExit:
    """Logistic probe on the head graph's pooled vector: ``sigmoid(pooled @ weight + bias)``."""

    weight: NDArray[np.float32]
    bias: float
    threshold: float  # posts whose probe probability is below this stop after the head graph
    layer: int  # encoder layers the head graph runs (for the card; the graphs carry the split)

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
    def from_json(cls, raw: Any) -> EarlyExit:
        weight = np.asarray(raw["weight"], dtype=np.float32)
        if weight.ndim != 1:
            raise ValueError("'exit.weight' is not a vector")
        if not 0.0 <= float(raw["threshold"]) < 1.0:
            raise ValueError("'exit.threshold' is out of range")
        return cls(weight, float(raw["bias"]), float(raw["threshold"]), int(raw["layer"]))


@dataclass(frozen=True)
class ModelMeta:
    """What models/model.json says about the shipped model."""

    version: str
    threshold: float
    symptoms: tuple[str, ...]
    max_length: int
    onnx_file: str  # head graph: input_ids, attention_mask -> hidden, pooled
    tail_file: str  # tail graph: hidden, attention_mask -> outage_prob, symptom_probs
    tokenizer_file: str
    training_data_hash: str
    early_exit: EarlyExit | None = None
    text_prep: str = ""  # tokenize.TEXT_PREP of the code that trained it; "" before it was recorded

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
                tail_file=str(raw["onnx_tail"]),
                tokenizer_file=str(raw["tokenizer"]),
                training_data_hash=str(raw.get("training_data_hash", "")),
                early_exit=EarlyExit.from_json(raw["exit"]) if raw.get("exit") else None,
                text_prep=str(raw.get("text_prep", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{path}: model metadata lacks or mistypes {exc}") from exc
        if not set(meta.symptoms) <= set(SYMPTOMS) or not 0.0 < meta.threshold < 1.0:
            raise ModelError(f"{path}: symptoms or threshold out of range")
        return meta


@dataclass(frozen=True)
class Graphs:
    """The two ONNX Runtime sessions of one model (see the module docstring)."""

    head: Any
    tail: Any


class Classifier:
    """Outage probability, decision and symptom per post. Thread-compatible, not thread-safe.

    With ``threads`` > 1, whole batches run concurrently on single-threaded ONNX Runtime kernels (a session's
    ``run`` is thread-safe and releases the GIL). On small batches of short posts this beats splitting each
    operator over threads: bench/classify_bench.py measures both. ``early_exit=False`` sends every post through
    the whole network (scores then never come from the exit probe).
    """

    def __init__(
        self,
        graphs: Graphs,
        tokenizer: Any,
        meta: ModelMeta,
        batch_size: int,
        threshold: float,
        threads: int = 1,
        early_exit: bool = True,
    ) -> None:
        self._graphs = graphs
        self._tok = tokenizer
        self.meta = meta
        self.batch_size = batch_size
        self.threshold = threshold
        self.version = meta.version
        self.threads = threads
        # The exit was calibrated against the model's own threshold; a lower one asks for posts it would drop.
        self._exit = meta.early_exit if early_exit and threshold >= meta.threshold else None
        self._pool: ThreadPoolExecutor | None = None
        self.exited = 0  # posts that stopped at the early exit, over this classifier's life (for the bench)

    def _run(self, seqs: list[list[int]]) -> tuple[NDArray[np.float32], NDArray[np.int64], int, NDArray[np.float32]]:
        """(probabilities, symptom indices, posts that stopped early, head pooled vectors) of one batch."""
        ids, mask = pad(seqs)
        hidden, pooled = self._graphs.head.run(None, {"input_ids": ids, "attention_mask": mask})
        prob = np.zeros(len(seqs), dtype=np.float32)
        sym = np.zeros(len(seqs), dtype=np.int64)
        go = np.arange(len(seqs))
        if self._exit is not None:
            early = self._exit.prob(np.asarray(pooled))
            go = np.flatnonzero(early >= self._exit.threshold)
            prob[:] = early  # kept for the posts that stop here; the tail overwrites the rest
        if len(go):
            sub = mask[go]
            width = int(sub.sum(axis=1).max())  # the rows left may all be shorter than the batch's longest
            feed = {"hidden": np.asarray(hidden)[go, :width], "attention_mask": sub[:, :width]}
            p, s = self._graphs.tail.run(None, feed)
            prob[go] = np.asarray(p).reshape(-1)
            sym[go] = np.asarray(s).argmax(axis=1)
        return prob, sym, len(seqs) - len(go), np.asarray(pooled)

    def scores(self, texts: Sequence[str]) -> tuple[NDArray[np.float32], list[int]]:
        """Outage probabilities and symptom indices, in input order.

        A post that stopped at the early exit scores the probe's estimate of the full model's probability
        (below the exit threshold, so below the decision threshold) and symptom index 0.
        """
        scores, symptoms, _ = self._score(texts, keep_pooled=False)
        return scores, symptoms

    def scores_and_pooled(self, texts: Sequence[str]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Outage probabilities and the head graph's pooled vectors, in input order (what the exit probe reads)."""
        scores, _, pooled = self._score(texts, keep_pooled=True)
        return scores, pooled

    def _score(
        self, texts: Sequence[str], keep_pooled: bool
    ) -> tuple[NDArray[np.float32], list[int], NDArray[np.float32]]:
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
        width = results[0][3].shape[1] if keep_pooled and results else 0
        pooled = np.zeros((len(seqs), width), dtype=np.float32)
        for idx, (prob, sym, exited, vec) in zip(batches, results, strict=True):
            scores[idx] = prob
            for i, s in zip(idx, sym.tolist(), strict=True):
                symptoms[i] = s
            self.exited += exited
            if keep_pooled:
                pooled[idx] = vec
        return scores, symptoms, pooled

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


HEAD_IO = (("input_ids", "attention_mask"), ("hidden", "pooled"))  # (inputs, outputs) of each graph
TAIL_IO = (("hidden", "attention_mask"), ("outage_prob", "symptom_probs"))


def open_session(onnx_path: Path, io: tuple[tuple[str, ...], tuple[str, ...]], threads: int = 1) -> Any:
    """An ONNX Runtime session with ``threads`` intra-op threads (the Classifier parallelises over batches).

    ``io`` is the (input names, output names) the graph must have: a head graph where a tail belongs, or a
    graph from an older layout, is refused by name instead of failing on the first post.
    """
    import onnxruntime as ort

    if not onnx_path.is_file():
        raise ModelError(f"{onnx_path}: ONNX model file not found")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors for truncated or foreign files
        raise ModelError(f"{onnx_path}: cannot load ONNX model ({str(exc).splitlines()[0][:200]})") from exc
    inputs = {i.name for i in session.get_inputs()}
    outputs = tuple(o.name for o in session.get_outputs())
    if (inputs, outputs) != (set(io[0]), io[1]):
        raise ModelError(f"{onnx_path}: graph takes {sorted(inputs)} and gives {list(outputs)}; expected "
                         f"{sorted(io[0])} -> {list(io[1])}")
    return session


def open_graphs(model_dir: Path, meta: ModelMeta, threads: int = 1) -> Graphs:
    return Graphs(
        open_session(model_dir / meta.onnx_file, HEAD_IO, threads),
        open_session(model_dir / meta.tail_file, TAIL_IO, threads),
    )


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
    if meta.text_prep != TEXT_PREP:
        # Scores still come out; they are those of a model reading text cleaned differently from its training.
        log.warning("model %s was trained on text cleaned as %r, this code cleans as %r: retrain (miner train)",
                    meta.version, meta.text_prep or "before links were replaced", TEXT_PREP)
    graphs = open_graphs(model_dir, meta)
    width = graphs.head.get_outputs()[1].shape[-1]
    if meta.early_exit is not None and isinstance(width, int) and width != len(meta.early_exit.weight):
        raise ModelError(
            f"{model_dir / META_FILE}: exit weights have {len(meta.early_exit.weight)} values for a {width}-wide "
            f"pooled vector in {meta.onnx_file}"
        )
    threshold = settings.threshold if settings.threshold is not None else meta.threshold
    log.info("loaded classifier %s from %s (threshold %.2f)", meta.version, model_dir, threshold)
    return Classifier(
        graphs, tokenizer, meta, settings.batch_size, threshold, settings.threads, settings.early_exit
    )

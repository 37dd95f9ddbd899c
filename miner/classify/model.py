"""Serving: the stage graphs, tokenizer and metadata from models/, run with ONNX Runtime (no torch).

The network is exported as a chain of ONNX graphs (*stages*), each running some of the encoder layers: the
first embeds the token ids, the last adds the outage and symptom heads, and every stage but the last returns
its hidden states and their mean-pooled vector. After each such stage a linear *early exit* on the pooled
vector can estimate the full model's outage probability; posts it calls clearly negative stop there, the
rest go on to the next stage. Most posts in a stream are not outage reports, and most of those stop early,
the clearest after one layer. ``miner train`` fits the exits and picks their shared threshold on real posts
the model never saw, so that they change almost no decision of the full model (models/MODEL_CARD.md gives
the share that stops at each exit and the decisions they changed).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from miner.classify.meta import META_FILE, MIN_TOKENS, EarlyExit, ModelMeta, file_sha256
from miner.classify.settings import ClassifierSettings
from miner.classify.tokenize import TEXT_PREP, load_tokenizer, pad, token_ids
from miner.errors import ModelError
from miner.model_dir import default_model_dir as default_model_dir
from miner.model_dir import resolve_model_dir as resolve_model_dir
from miner.records import Decision, Prediction

log = logging.getLogger(__name__)


class Classifier:
    """Outage probability, decision and symptom per post. Thread-compatible, not thread-safe.

    ``graphs`` are the stage sessions in order (see the module docstring). With ``threads`` > 1, whole
    batches run concurrently on single-threaded ONNX Runtime kernels (a session's ``run`` is thread-safe and
    releases the GIL). On small batches of short posts this beats splitting each operator over threads:
    bench/classify_bench.py measures both. ``early_exit=False`` sends every post through the whole network
    (scores then never come from an exit probe).
    """

    def __init__(
        self,
        graphs: Sequence[Any],
        tokenizer: Any,
        meta: ModelMeta,
        batch_size: int,
        threshold: float,
        threads: int = 1,
        early_exit: bool = True,
    ) -> None:
        self._graphs = tuple(graphs)
        self._tok = tokenizer
        self.meta = meta
        self.batch_size = batch_size
        self.threshold = threshold
        self.version = meta.version
        self.threads = threads
        exits = len(meta.exits) == len(self._graphs) - 1 and any(e is not None for e in meta.exits)
        self.decision = Decision.asked(threshold, early_exit, meta.threshold, exits)
        self._exits = meta.exits if self.decision.early_exit else (None,) * (len(self._graphs) - 1)
        self._pool: ThreadPoolExecutor | None = None
        self.exited = [0] * (len(self._graphs) - 1)  # posts stopped at each exit, over this classifier's life

    @property
    def exit_threshold(self) -> float:
        """The probability under which an early exit of this model stops a post, the highest of its exits' (0.0:
        it has none): with exits on, a score at or above it came from the whole network."""
        return max((e.threshold for e in self.meta.exits if e is not None), default=0.0)

    def _run(
        self, seqs: list[list[int]], exits: Sequence[EarlyExit | None]
    ) -> tuple[NDArray[np.float32], NDArray[np.int64], list[int], list[NDArray[np.float32]]]:
        """(probabilities, symptom indices, posts stopped at each exit, pooled vectors per exit) of one batch.

        The pooled vectors cover every post of the batch only when no exit is on.
        """
        ids, mask = pad(seqs)
        feed: dict[str, NDArray[Any]] = {"input_ids": ids, "attention_mask": mask}
        prob = np.zeros(len(seqs), dtype=np.float32)
        sym = np.zeros(len(seqs), dtype=np.int64)
        rows = np.arange(len(seqs))  # the batch's posts still in the network
        stops: list[int] = []
        pooled: list[NDArray[np.float32]] = []
        for graph, exit_ in zip(self._graphs, exits, strict=False):  # every stage but the last
            hidden, vec = (np.asarray(a) for a in graph.run(None, feed))
            pooled.append(vec)
            go = np.arange(len(rows))
            if exit_ is not None:
                early = exit_.prob(vec)
                prob[rows] = early  # kept for the posts that stop here; later stages overwrite the rest
                go = np.flatnonzero(early >= exit_.threshold)
            stops.append(len(rows) - len(go))
            rows = rows[go]
            if not len(rows):
                return prob, sym, stops + [0] * (len(exits) - len(stops)), pooled
            sub = feed["attention_mask"][go]
            width = int(sub.sum(axis=1).max())  # the rows left may all be shorter than the batch's longest
            feed = {"hidden": hidden[go, :width], "attention_mask": sub[:, :width]}
        p, s = self._graphs[-1].run(None, feed)
        sym_probs = np.asarray(s)
        if sym_probs.ndim != 2 or sym_probs.shape[1] != len(self.meta.symptoms):
            # Only a graph whose head width is symbolic gets here: load_classifier checks a fixed one.
            got = sym_probs.shape[1] if sym_probs.ndim == 2 else f"shape {sym_probs.shape}"
            raise ModelError(f"{self.meta.path or META_FILE}: 'symptoms' has {len(self.meta.symptoms)} labels for "
                             f"symptom scores of width {got} from {self.meta.graphs[-1]}")
        prob[rows] = np.asarray(p).reshape(-1)
        sym[rows] = sym_probs.argmax(axis=1)
        return prob, sym, stops, pooled

    def scores(self, texts: Sequence[str]) -> tuple[NDArray[np.float32], list[int]]:
        """Outage probabilities and symptom indices, in input order.

        A post that stopped at an early exit scores that probe's estimate of the full model's probability
        (below the exit's threshold, so below the decision threshold) and symptom index 0.
        """
        scores, symptoms, _ = self._score(texts, self._exits)
        return scores, symptoms

    def scores_and_pooled(self, texts: Sequence[str]) -> tuple[NDArray[np.float32], list[NDArray[np.float32]]]:
        """Whole-network probabilities and, per exit point, every post's pooled vector (what the probes read)."""
        scores, _, pooled = self._score(texts, (None,) * len(self._exits))
        return scores, pooled

    def _score(
        self, texts: Sequence[str], exits: Sequence[EarlyExit | None]
    ) -> tuple[NDArray[np.float32], list[int], list[NDArray[np.float32]]]:
        seqs = token_ids(self._tok, texts)
        # Length-sorted batches pad to similar lengths: most posts are short, a few are long.
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        batches = [order[start : start + self.batch_size] for start in range(0, len(order), self.batch_size)]
        jobs = [[seqs[i] for i in idx] for idx in batches]
        if self.threads > 1 and len(jobs) > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="classify")
            results = list(self._pool.map(lambda job: self._run(job, exits), jobs))
        else:
            results = [self._run(job, exits) for job in jobs]
        scores = np.zeros(len(seqs), dtype=np.float32)
        symptoms = [0] * len(seqs)
        pooled: list[NDArray[np.float32]] = []
        if results and not any(exits):  # pooled vectors are whole only when every post went through every stage
            pooled = [np.zeros((len(seqs), v.shape[1]), dtype=np.float32) for v in results[0][3]]
        for idx, (prob, sym, stops, vecs) in zip(batches, results, strict=True):
            scores[idx] = prob
            for i, s in zip(idx, sym.tolist(), strict=True):
                symptoms[i] = s
            self.exited = [a + b for a, b in zip(self.exited, stops, strict=True)]
            for whole, vec in zip(pooled, vecs if pooled else [], strict=True):
                whole[idx] = vec
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


def stage_io(index: int, count: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(input names, output names) of stage ``index`` of ``count``: ids in first, probabilities out last."""
    inputs = ("input_ids", "attention_mask") if index == 0 else ("hidden", "attention_mask")
    outputs = ("outage_prob", "symptom_probs") if index == count - 1 else ("hidden_out", "pooled")
    return inputs, outputs


def open_session(onnx_path: Path, io: tuple[tuple[str, ...], tuple[str, ...]], threads: int = 1) -> Any:
    """An ONNX Runtime session with ``threads`` intra-op threads (the Classifier parallelises over batches).

    ``io`` is the (input names, output names) the graph must have: a graph from another place in the chain
    or from another layout is refused by name instead of failing on the first post.
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


def open_graphs(model_dir: Path, meta: ModelMeta, threads: int = 1) -> list[Any]:
    """The stage sessions; a graph whose sha256 is not the one model.json records is refused by name.

    ONNX Runtime loads a graph with damaged weight data without complaint. Hashing the shipped graphs (23 MB)
    takes about 20 ms of the 100 ms load_classifier takes (measured on 2 cores): paid once per load.
    """
    n = len(meta.graphs)
    sessions = []
    for i, name in enumerate(meta.graphs):
        path = model_dir / name
        if meta.graph_sha256 and path.is_file():  # open_session names a missing file
            got, want = file_sha256(path), meta.graph_sha256[i]
            if got != want:
                raise ModelError(f"{path}: sha256 {got[:16]}... differs from the {want[:16]}... that "
                                 f"{meta.path or META_FILE} records in 'graph_sha256': the file is damaged or "
                                 "from another model")
        sessions.append(open_session(path, stage_io(i, n), threads))
    return sessions


def check_graph_inputs(model_dir: Path, meta: ModelMeta, first: Any, tokenizer: Any) -> None:
    """Refuse a ``max_length`` longer than the first graph's position-embedding table (512 for MiniLM), and a
    tokenizer whose token ids go past its word-embedding table (a tokenizer.json of another model).

    Either fails only when such a post arrives: mid-file in `miner classify`, and at each run of the service's
    classify job, as an internal error. The tables' sizes are initializers of the graph, which ONNX Runtime does
    not show and the onnx package takes about a second to import for; running the graph once on ``max_length``
    tokens of the tokenizer's highest id reads the limits the graph really has, in about 10 ms for 128 tokens.
    """
    import onnxruntime as ort

    quiet = ort.RunOptions()
    quiet.log_severity_level = 4  # a failure becomes the ModelError below; ONNX Runtime need not log it too
    top = max(tokenizer.get_vocab(with_added_tokens=True).values(), default=0)

    def run(tokens: int, token_id: int = 1) -> None:
        ids = np.full((1, tokens), token_id, dtype=np.int64)
        first.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)}, quiet)

    try:
        run(meta.max_length, top)
    except Exception as exc:  # onnxruntime's errors are untyped
        reason = str(exc).splitlines()[0][:200]
        try:
            run(MIN_TOKENS)
        except Exception as short:
            raise ModelError(f"{model_dir / meta.graphs[0]}: cannot run the graph ({reason})") from short
        try:
            run(meta.max_length)
        except Exception:
            raise ModelError(f"{model_dir / META_FILE}: 'max_length' {meta.max_length} is more tokens than "
                             f"{meta.graphs[0]} takes ({reason})") from exc
        raise ModelError(f"{model_dir / meta.tokenizer_file}: gives token ids up to {top}, past the word-embedding "
                         f"table of {meta.graphs[0]}: the tokenizer of another model?") from exc


def load_classifier(settings: ClassifierSettings, base_dir: Path | None = None) -> Classifier:
    """Load the model named by ``settings`` (see :mod:`miner.classify`). Raises ModelError naming the bad file."""
    model_dir = resolve_model_dir(settings, base_dir)
    if not model_dir.is_dir():
        raise ModelError(f"{model_dir}: model directory not found")
    meta = ModelMeta.read(model_dir / META_FILE)
    tok_path = model_dir / meta.tokenizer_file
    if not tok_path.is_file():
        raise ModelError(f"{tok_path}: tokenizer file not found")
    # A tokenizer of the same vocabulary size but other ids passes check_graph_inputs and turns every post into
    # other words: each verdict would be garbage, stored under this model's version.
    if meta.tokenizer_sha256 and (got := file_sha256(tok_path)) != meta.tokenizer_sha256:
        raise ModelError(f"{tok_path}: sha256 {got[:16]}... differs from the {meta.tokenizer_sha256[:16]}... that "
                         f"{meta.path or META_FILE} records in 'tokenizer_sha256': the file is damaged or from "
                         "another model")
    tokenizer = load_tokenizer(tok_path, meta.max_length)
    if meta.text_prep != TEXT_PREP:
        # Scores still come out; they are those of a model reading text cleaned differently from its training.
        log.warning("model %s was trained on text cleaned as %r, this code cleans as %r: retrain (miner train)",
                    meta.version, meta.text_prep or "before links were replaced", TEXT_PREP)
    graphs = open_graphs(model_dir, meta)
    for name, graph, exit_ in zip(meta.graphs, graphs, meta.exits, strict=False):
        width = graph.get_outputs()[1].shape[-1]
        if exit_ is not None and isinstance(width, int) and width != len(exit_.weight):
            raise ModelError(
                f"{model_dir / META_FILE}: exit weights have {len(exit_.weight)} values for a {width}-wide "
                f"pooled vector in {name}"
            )
    check_graph_inputs(model_dir, meta, graphs[0], tokenizer)
    heads = graphs[-1].get_outputs()[1].shape[-1]  # a symbolic width is checked on the first batch instead
    if isinstance(heads, int) and heads != len(meta.symptoms):
        raise ModelError(f"{model_dir / META_FILE}: 'symptoms' has {len(meta.symptoms)} labels for a {heads}-wide "
                         f"symptom head in {meta.graphs[-1]}")
    threshold = settings.threshold if settings.threshold is not None else meta.threshold
    log.info("loaded classifier %s from %s (threshold %.2f)", meta.version, model_dir, threshold)
    return Classifier(
        graphs, tokenizer, meta, settings.batch_size, threshold, settings.threads, settings.early_exit
    )

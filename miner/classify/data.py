"""Labelled training data: the hand-labelled posts, the helpers' extra labels and the weak rule labels, joined to texts.

No torch here, so the CLI can validate a data path and hash it without loading the training stack.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from miner.errors import InputError
from miner.records import SYMPTOMS

log = logging.getLogger(__name__)

DEFAULT_SHARED = Path("/work/shared/data")


@dataclass(frozen=True)
class LabelledPost:
    id: str
    text: str
    label: int
    symptom: str | None
    source: str


def _row_to_post(row: dict[str, object], where: str) -> LabelledPost:
    try:
        label = int(str(row["label"]))
        text = str(row["text"])
        post_id = str(row["id"])
    except (KeyError, ValueError) as exc:
        raise InputError(f"{where}: needs id, text and label 0/1 ({exc})") from exc
    if label not in (0, 1):
        raise InputError(f"{where}: label must be 0 or 1, got {label}")
    # str() made a null text the post "None" and a null id the id "None": trained on, and joined on, as such.
    if not isinstance(row["text"], str):
        raise InputError(f"{where}: text must be a string, got {json.dumps(row['text'])[:40]}")
    if row["id"] is None or not post_id.strip():
        raise InputError(f"{where}: id must not be empty")
    symptom = row.get("symptom") or None
    if symptom is not None and symptom not in SYMPTOMS:
        raise InputError(f"{where}: unknown symptom {symptom!r}")
    if label == 1 and symptom is None:
        symptom = "general"  # the rubric's fallback for "down/not working with no more detail"
    return LabelledPost(post_id, text, label, symptom if label else None, str(row.get("source") or "unknown"))


def load_labelled(path: Path) -> list[LabelledPost]:
    """Read a train.jsonl-style file (id, text, label, symptom, source per line)."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # a byte-order mark is not part of line 1
    except OSError as exc:
        raise InputError(f"{path}: cannot read training data ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    posts = []
    first_line: dict[str, int] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{n}: invalid JSON ({exc.msg})") from exc
        except RecursionError:
            raise InputError(f"{path}:{n}: invalid JSON (nested too deeply)") from None
        if not isinstance(row, dict):
            raise InputError(f"{path}:{n}: not a JSON object (needs id, text and label 0/1)")
        post = _row_to_post(row, f"{path}:{n}")
        # One post twice lands in two CV folds, scored by a model that trained on its twin: optimistic metrics.
        if (twin := first_line.setdefault(post.id, n)) != n:
            raise InputError(f"{path}:{n}: id {post.id!r} is also on line {twin}")
        posts.append(post)
    if not posts:
        raise InputError(f"{path}: no labelled rows")
    return posts


def _csv_rows(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except OSError as exc:
        raise InputError(f"{path}: cannot read shared data ({exc.strerror}); set MINER_SHARED_DATA") from exc


def _sentitel_items(shared: Path) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for split in ("train", "dev", "test"):
        path = shared / "sentitel" / f"sentitel_{split}.json"
        try:
            items += json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: cannot read shared data ({exc}); set MINER_SHARED_DATA") from exc
    return items


def _shared_texts(shared: Path) -> dict[str, str]:
    """Map the helpers' id scheme (pc-, st-, wa-) to the texts in the shared data copies."""
    texts = {f"pc-{r['tweet_id']}": r["text"] for r in _csv_rows(shared / "complaints" / "complaints-data.csv")}
    texts |= {f"st-{item['id']}": item["text"] for item in _sentitel_items(shared)}
    texts |= {f"wa-{r['row']}": r["text"] for r in _csv_rows(shared / "power" / "wa_tweets.csv")}
    return texts


def unlabelled_texts(shared: Path, exclude: Iterable[str]) -> list[str]:
    """Shared posts whose ids are not in ``exclude``: real posts a model trained on those ids never saw."""
    if not shared.is_dir():
        return []
    skip = set(exclude)
    return [text for post_id, text in _shared_texts(shared).items() if post_id not in skip]


def load_extra(extra_dir: Path, shared: Path = DEFAULT_SHARED, exclude: Iterable[str] = ()) -> list[LabelledPost]:
    """Rows from ``extra_dir/*.jsonl`` whose ids resolve to a shared text; ids in ``exclude`` are skipped."""
    files = sorted(extra_dir.glob("*.jsonl"))
    if not files:
        return []
    texts = _shared_texts(shared)
    seen = set(exclude)
    posts: list[LabelledPost] = []
    for path in files:
        missing = 0
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s:%d: invalid JSON, skipped", path, n)
                continue
            if not isinstance(row, dict):
                log.warning("%s:%d: not a JSON object, skipped", path, n)
                continue
            post_id = str(row.get("id", ""))
            if post_id not in texts:
                missing += 1
                continue
            if post_id in seen:
                continue
            seen.add(post_id)
            row["text"] = texts[post_id]
            try:
                posts.append(_row_to_post(row, f"{path}:{n}"))
            except InputError as exc:
                log.warning("%s, skipped", exc)
        if missing:  # another copy of the shared data: the model would differ from the shipped one without a word
            log.warning("%s: %d labels name posts not in the shared data (%s), skipped", path, missing, shared)
    return posts


def training_posts(
    data: Path, extra_dir: Path | None, shared: Path, weak_per_rule: int, seed: int
) -> tuple[list[LabelledPost], list[LabelledPost], list[LabelledPost]]:
    """What `miner train` trains on: the hand labels, then extra and weak labels of posts not labelled before.

    One function for the build and for whoever needs to know which shared posts a model has seen (the bench).
    """
    posts = load_labelled(data)
    seen = {p.id for p in posts}
    extra = load_extra(extra_dir, shared, exclude=seen) if extra_dir else []
    seen |= {p.id for p in extra}
    weak = weak_labels(shared, seen, weak_per_rule, seed) if weak_per_rule else []
    return posts, extra, weak


def data_hash(posts: Iterable[LabelledPost]) -> str:
    """sha256 over (id, label, symptom, text) in id order: names exactly what a model was trained on."""
    h = hashlib.sha256()
    for p in sorted(posts, key=lambda p: p.id):
        h.update(json.dumps([p.id, p.label, p.symptom, p.text], ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()


def weak_labels(shared: Path, exclude: Iterable[str], per_rule: int, seed: int) -> list[LabelledPost]:
    """Rule-labelled posts from the shared copies, kept only where the rule agreed with hand labels.

    Agreement with train.jsonl where both exist: power tweets with outage=0 were all 0 (70/70); complaints
    labelled "not a complaint" were 0 in 96% (355/369); Sentitel posts whose only opinion is a negative one
    on the Network aspect were outages in 86% (57/66). Looser rules (power outage=1: 72%, Sentitel Data
    negative: 53%) are left out. At most ``per_rule`` posts per rule, drawn with ``seed``.
    """
    skip = set(exclude)
    rng = random.Random(seed)
    rules: dict[str, list[LabelledPost]] = {"wa0": [], "pc0": [], "stnet": []}
    for r in _csv_rows(shared / "power" / "wa_tweets.csv"):
        if r["outage"] == "0" and f"wa-{r['row']}" not in skip:
            rules["wa0"].append(LabelledPost(f"wa-{r['row']}", r["text"], 0, None, "weak/wa_power"))
    for r in _csv_rows(shared / "complaints" / "complaints-data.csv"):
        if r["label"] == "0" and f"pc-{r['tweet_id']}" not in skip:
            rules["pc0"].append(LabelledPost(f"pc-{r['tweet_id']}", r["text"], 0, None, "weak/complaints"))
    for item in _sentitel_items(shared):
        ops = {(o["aspect"], o["sentiment"]) for o in item["opinions"]}
        if ops == {("Network", "Negative")} and f"st-{item['id']}" not in skip:
            rules["stnet"].append(LabelledPost(f"st-{item['id']}", item["text"], 1, "connectivity", "weak/sentitel"))
    out: list[LabelledPost] = []
    for name in sorted(rules):
        found = rules[name]
        rng.shuffle(found)
        out += found[:per_rule]
        log.info("weak rule %s: %d posts (kept %d)", name, len(found), min(len(found), per_rule))
    return out

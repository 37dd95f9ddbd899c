"""Throughput and peak RSS of `miner classify` (int8 ONNX) on 10,000 real posts, beside torch fp32.

Run: PYTHONPATH=. .venv/bin/python bench/classify_bench.py [--n 10000] [--threads 2]

Each path runs in its own child process; peak RSS is that child's ru_maxrss (os.wait4). The torch row runs
the same network (MiniLM-L6 + heads, fp32, same tokenisation and length-sorted batches of 32) in eager torch:
the reference the ONNX path replaces. Timings include process start and model load ("wall") and, separately,
posts/s over the scoring loop alone where the child reports it.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import describe

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("MINER_SHARED_DATA", "/work/shared/data"))


def real_posts(n: int) -> list[str]:
    texts: list[str] = []
    with (SHARED / "complaints" / "complaints-data.csv").open(encoding="utf-8") as fh:
        texts += [r["text"] for r in csv.DictReader(fh)]
    with (SHARED / "power" / "wa_tweets.csv").open(encoding="utf-8") as fh:
        texts += [r["text"] for r in csv.DictReader(fh)]
    texts += [i["text"] for i in json.loads((SHARED / "sentitel" / "sentitel_train.json").read_text())]
    # Interleave sources the way a live stream mixes them; repeat only if the copies run short.
    texts = texts[::3] + texts[1::3] + texts[2::3]
    while len(texts) < n:
        texts += texts
    return texts[:n]


def run_child(cmd: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """(wall seconds, peak RSS in MB, stdout) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with status {status}")
    return wall, usage.ru_maxrss // 1024, out


def torch_worker(path: Path, threads: int) -> None:
    import torch

    from miner.classify.tokenize import load_tokenizer
    from miner.classify.train import base_model_dir, new_model, predict_torch

    torch.set_num_threads(threads)
    texts = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]
    model = new_model(13)
    tok = load_tokenizer(base_model_dir() / "tokenizer.json", 128)
    start = time.perf_counter()
    predict_torch(model, tok, texts, batch_size=32)
    print(json.dumps({"loop_s": time.perf_counter() - start}))


def onnx_worker(path: Path, threads: int, batch: int, intra: bool) -> None:
    from miner.classify import ClassifierSettings, load_classifier
    from miner.classify.model import Classifier, default_model_dir, open_session

    texts = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]
    clf = load_classifier(ClassifierSettings(threads=threads, batch_size=batch))
    if intra:  # the alternative the Classifier does not take: one batch at a time, each operator on all threads
        session = open_session(default_model_dir() / clf.meta.onnx_file, threads)
        clf = Classifier(session, clf._tok, clf.meta, batch, clf.threshold, threads=1)
    start = time.perf_counter()
    clf.predict(texts)
    print(json.dumps({"loop_s": time.perf_counter() - start}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--worker", choices=["torch", "onnx"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--input", type=Path)
    ap.add_argument("--intra", action="store_true", help="split each operator over threads, not batches")
    args = ap.parse_args()
    if args.worker == "torch":
        return torch_worker(args.input, args.threads)
    if args.worker == "onnx":
        return onnx_worker(args.input, args.threads, args.batch, args.intra)

    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "MINER_CONFIG": ""}
    env.pop("MINER_CONFIG")
    meta = json.loads((ROOT / "models" / "model.json").read_text())
    rows: list[tuple[str, float, float, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        inp = Path(tmp) / "posts.jsonl"
        inp.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(real_posts(args.n))))
        me = [sys.executable, str(Path(__file__).resolve())]
        cli = [sys.executable, "-c", "from miner.cli import main; main()", "classify", str(inp), "-o", f"{tmp}/o.jsonl"]
        runs: list[tuple[str, list[str], dict[str, str]]] = [
            (f"miner classify CLI, {meta['onnx']}, batch 32, {args.threads} batches at once", cli, env),
            (
                f"ONNX API int8, batch 32, {args.threads} batches at once",
                [*me, "--worker", "onnx", "--input", str(inp), "--threads", str(args.threads)],
                env,
            ),
            (
                f"ONNX API int8, batch 32, {args.threads} intra-op threads, one batch at a time",
                [*me, "--worker", "onnx", "--input", str(inp), "--threads", str(args.threads), "--intra"],
                env,
            ),
            (
                f"torch fp32 eager, batch 32, {args.threads} threads (reference)",
                [*me, "--worker", "torch", "--input", str(inp), "--threads", str(args.threads)],
                env,
            ),
        ]
        for name, cmd, e in runs:
            wall, rss, out = run_child(cmd, e)
            loop = json.loads(out)["loop_s"] if out.strip().startswith("{") else wall
            rows.append((name, args.n / wall, args.n / loop, rss))
            print(f"  done: {name}", file=sys.stderr)
    print(f"machine: {describe()}")
    print(f"model: {meta['version']} ({meta['onnx']}), {args.n} real posts from {SHARED}")
    print("| path | posts/s (whole process) | posts/s (scoring loop) | peak RSS MB |")
    print("|---|---:|---:|---:|")
    for name, whole, loop, rss in rows:
        print(f"| {name} | {whole:.0f} | {loop:.0f} | {rss} |")


if __name__ == "__main__":
    main()

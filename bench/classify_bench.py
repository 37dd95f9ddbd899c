"""Throughput and peak RSS of `miner classify` (int8 ONNX) on 10,000 unseen real posts, beside torch fp32.

Run: PYTHONPATH=. .venv/bin/python bench/classify_bench.py [--n 10000] [--threads 2]

Each path runs in its own child process; peak RSS is that child's ru_maxrss (os.wait4). The int8 rows run
with the early exit (the default) and without it. The torch row runs the same network (MiniLM-L6 + heads,
fp32, same tokenisation and length-sorted batches of 32) in eager torch: the reference the ONNX path
replaces. Timings include process start and model load ("wall") and, separately, posts/s over the scoring
loop alone where the child reports it. On a shared VM one run can be 10 % off the next: ``--repeat N`` runs
every path N times, round after round, and reports the median with the slowest and fastest run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
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
    """Real shared posts the shipped model never trained on, shuffled: what a live stream gives the early exit.

    Posts it trained on would score more confidently and stop early more often than new ones do.
    """
    from miner.classify.data import training_posts, unlabelled_texts

    meta = json.loads((ROOT / "models" / "model.json").read_text(encoding="utf-8"))
    # "weak:N" in training_data: the model also trained on the rule-labelled posts `miner train --weak N` drew.
    weak = next((int(s[5:]) for s in meta["training_data"] if s.startswith("weak:")), 0)
    extra = ROOT / "data" / "labels" / "extra"
    sets = training_posts(SHARED / "labels" / "train.jsonl", extra, SHARED, weak, meta["seed"])
    trained = {p.id for posts in sets for p in posts}
    texts = unlabelled_texts(SHARED, trained)
    random.Random(13).shuffle(texts)
    while len(texts) < n:  # repeat only if the copies run short
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


def onnx_worker(path: Path, threads: int, batch: int, intra: bool, early_exit: bool) -> None:
    from miner.classify import ClassifierSettings, load_classifier
    from miner.classify.model import Classifier, default_model_dir, open_graphs

    texts = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]
    clf = load_classifier(ClassifierSettings(threads=threads, batch_size=batch, early_exit=early_exit))
    if intra:  # the alternative the Classifier does not take: one batch at a time, each operator on all threads
        graphs = open_graphs(default_model_dir(), clf.meta, threads)
        clf = Classifier(graphs, clf._tok, clf.meta, batch, clf.threshold, threads=1, early_exit=early_exit)
    start = time.perf_counter()
    clf.predict(texts)
    print(json.dumps({"loop_s": time.perf_counter() - start, "exited": sum(clf.exited) / len(texts)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--worker", choices=["torch", "onnx"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--input", type=Path)
    ap.add_argument("--intra", action="store_true", help="split each operator over threads, not batches")
    ap.add_argument("--no-exit", action="store_true", help="send every post through the whole network")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each path; the table shows the median")
    args = ap.parse_args()
    if args.worker == "torch":
        return torch_worker(args.input, args.threads)
    if args.worker == "onnx":
        return onnx_worker(args.input, args.threads, args.batch, args.intra, not args.no_exit)

    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "MINER_CONFIG": ""}
    env.pop("MINER_CONFIG")
    meta = json.loads((ROOT / "models" / "model.json").read_text())
    walls: dict[str, list[float]] = {}
    loops: dict[str, list[float]] = {}
    peak: dict[str, int] = {}
    exited: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        inp = Path(tmp) / "posts.jsonl"
        inp.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(real_posts(args.n))))
        me = [sys.executable, str(Path(__file__).resolve())]
        cli = [sys.executable, "-c", "from miner.cli import main; main()", "classify", str(inp), "-o", f"{tmp}/o.jsonl"]
        worker = [*me, "--worker", "onnx", "--input", str(inp), "--threads", str(args.threads)]
        runs: list[tuple[str, list[str]]] = [
            (f"miner classify CLI, int8 with early exit, batch 32, {args.threads} batches at once", cli),
            (f"ONNX API int8 with early exit, batch 32, {args.threads} batches at once", worker),
            (
                f"ONNX API int8, whole network for every post, batch 32, {args.threads} batches at once",
                [*worker, "--no-exit"],
            ),
            (f"ONNX API int8, batch 32, {args.threads} intra-op threads, one batch at a time", [*worker, "--intra"]),
            (
                f"torch fp32 eager, batch 32, {args.threads} threads (reference)",
                [*me, "--worker", "torch", "--input", str(inp), "--threads", str(args.threads)],
            ),
        ]
        # Rounds rather than one path N times in a row, so a busy spell on the box hits every path alike.
        for _ in range(max(1, args.repeat)):
            for name, cmd in runs:
                wall, rss, out = run_child(cmd, env)
                report = json.loads(out) if out.strip().startswith("{") else {}
                walls.setdefault(name, []).append(wall)
                loops.setdefault(name, []).append(report.get("loop_s", wall))
                peak[name] = max(peak.get(name, 0), rss)
                exited[name] = f"{report['exited']:.2f}" if "exited" in report else ""
                print(f"  done: {name}", file=sys.stderr)
    print(f"machine: {describe()}")
    print(f"model: {meta['version']} ({' + '.join(meta['graphs'])}), {args.n} real posts from {SHARED}")
    print(f"runs per path: {max(1, args.repeat)} (median; slowest-fastest run in brackets)")
    print("| path | posts/s (whole process) | posts/s (scoring loop) | peak RSS MB | share stopped early |")
    print("|---|---:|---:|---:|---:|")
    for name, _ in runs:
        rates = sorted(args.n / w for w in walls[name])
        spread = f" ({rates[0]:.0f}-{rates[-1]:.0f})" if len(rates) > 1 else ""
        loop = args.n / statistics.median(loops[name])
        print(f"| {name} | {statistics.median(rates):.0f}{spread} | {loop:.0f} | {peak[name]} | {exited[name]} |")


if __name__ == "__main__":
    main()

"""End-to-end throughput: replay N posts through the whole pipeline (store, classify, detect, alerts).

The posts are the bundled SentiTel texts, repeated with new ids and spread over ``--days`` of simulated time
(so the detector and alert stages run over a realistic number of buckets). Runs the real `miner replay` in a
child process and reports posts/s and the child's peak RSS.

    .venv/bin/python bench/replay_bench.py [--posts 100000] [--days 7]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import describe  # noqa: E402

from miner.replay import demo_stream_path, read_posts  # noqa: E402

CONFIG = """
[[services]]
name = "MTN"
aliases = ["mtnug", "mtn uganda", "mymtn", "momo"]

[[services]]
name = "Airtel"
aliases = ["airtelug", "airtel uganda", "airtel money"]

[[services]]
name = "Africell"
aliases = ["africel", "africellug"]

[alerts]
from_addr = "bench <bench@example.org>"

[[alerts.routes]]
name = "oncall"
email = ["oncall@example.org"]
digest = "0 8 * * *"
"""


def write_stream(path: Path, n: int, days: float) -> None:
    texts = [p.text for p in read_posts(demo_stream_path())]
    start = datetime(2026, 1, 5, tzinfo=UTC)
    step = timedelta(days=days) / n
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"b{i}", "text": texts[i % len(texts)], "source": "bench",
                                "created_at": (start + i * step).isoformat()}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--days", type=float, default=7.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stream, cfg = Path(tmp) / "posts.jsonl", Path(tmp) / "feeds.toml"
        write_stream(stream, args.posts, args.days)
        cfg.write_text(CONFIG, encoding="utf-8")
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "miner", "--config", str(cfg), "--db", str(Path(tmp) / "bench.sqlite"),
             "replay", str(stream), "--out", str(Path(tmp) / "out")],
            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        elapsed = time.monotonic() - started
        if result.returncode != 0:
            sys.exit(f"replay failed: {result.stderr.strip().splitlines()[-1]}")
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        db_mb = (Path(tmp) / "bench.sqlite").stat().st_size / 1e6
    print(f"machine: {describe()} (at the end)")
    print(f"replayed {args.posts:,} posts over {args.days:g} simulated days in {elapsed:.1f} s: "
          f"{args.posts / elapsed:,.0f} posts/s end to end (store, classify, detect, alerts)")
    print(f"peak RSS of the replay process: {peak_mb:,.0f} MB; store size {db_mb:,.1f} MB")
    for line in result.stdout.splitlines():
        if "incidents detected" in line or "notifications written" in line or line.startswith("replayed"):
            print(f"  {line.strip()}")


if __name__ == "__main__":
    main()

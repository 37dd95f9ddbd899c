"""What a health check sees while `miner run` starts on a store of 0.1.0 it has to upgrade: /healthz asked every
50 ms (a second's timeout each, as a liveness probe's) from the process's start until it answers 200, each answer
counted as refused (nobody listening), 503 "starting" (with the phases it named), another 503, or a timeout.

The 0.1.0 store is built as bench/upgrade_bench.py builds one (``--posts`` real-text posts over ``--days``), or
reused (``--reuse``, one kept by ``upgrade_bench.py --keep``); each run starts the service on a copy of it.

    .venv/bin/python bench/start_probe_bench.py [--posts 300000 --days 60] [--keep /tmp/old.sqlite] [--runs 1]
    .venv/bin/python bench/start_probe_bench.py --reuse /tmp/old.sqlite
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import describe  # noqa: E402
from upgrade_bench import build  # noqa: E402

EVERY = 0.05  # seconds between probes
TIMEOUT = 1.0  # a probe's own
GIVE_UP = 300.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def probe(url: str) -> tuple[str, str | None]:
    """What one GET of /healthz found: its kind, and the phase a "starting" answer named."""
    try:
        reply = httpx.get(url, timeout=TIMEOUT)
    except httpx.ConnectError:
        return "refused", None
    except httpx.TimeoutException:
        return "timeout", None
    if reply.status_code == 200:
        return "200", None
    with contextlib.suppress(ValueError):
        body = reply.json()
        if body.get("status") == "starting":
            return "503 starting", str(body.get("phase"))
    return f"{reply.status_code} other", None


def run_once(old: Path, work: Path) -> dict[str, Any]:
    store = work / "miner.sqlite"
    shutil.copyfile(old, store)
    port = free_port()
    cfg = work / "feeds.toml"
    cfg.write_text(f'[store]\npath = "{store}"\n[server]\nenabled = true\nport = {port}\n'
                   '[[services]]\nname = "MTN"\n', encoding="utf-8")
    url = f"http://127.0.0.1:{port}/healthz"
    seen: Counter[str] = Counter()
    phases: dict[str, int] = {}
    first_answer = ready = None
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "miner", "--config", str(cfg), "run"], cwd=work,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
    try:
        while time.monotonic() - started < GIVE_UP and proc.poll() is None:
            asked = time.monotonic()
            kind, phase = probe(url)
            seen[kind] += 1
            if phase is not None:
                phases[phase] = phases.get(phase, 0) + 1
            if kind != "refused" and first_answer is None:
                first_answer = asked - started
            if kind == "200":
                ready = asked - started
                break
            time.sleep(max(0.0, EVERY - (time.monotonic() - asked)))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return {"probes": dict(seen), "first_answer_s": first_answer, "ready_s": ready, "phases": phases,
            "exit": proc.returncode}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=300_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--services", type=int, default=19)
    parser.add_argument("--keep", type=Path, help="keep the 0.1.0 store built here (not upgraded)")
    parser.add_argument("--reuse", type=Path, help="start on copies of a 0.1.0 store kept earlier")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    print(describe(), flush=True)
    work = Path(tempfile.mkdtemp(prefix="start-probe-bench-"))
    try:
        old = args.reuse or args.keep or work / "old.sqlite"
        if not args.reuse:
            if old.exists():
                sys.exit(f"{old} exists: --reuse it or remove it")
            build(old, args.posts, args.days, args.services)
        print(f"0.1.0 store {old.stat().st_size / 1e6:,.0f} MB; /healthz every {EVERY * 1000:.0f} ms from the start",
              flush=True)
        for n in range(args.runs):
            run = work / f"run{n}"
            run.mkdir()
            print(json.dumps(run_once(old, run)), flush=True)
            shutil.rmtree(run, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""What a liveness probe sees while the status board's readers and the reporters hold the endpoint's connections.

    PYTHONPATH=. .venv/bin/python bench/probe_flood.py [--services 300] [--readers 40] [--reporters 10]
        [--seconds 15] [--timeout 1] [--cache-seconds 5] [--code DIR]

Not in `make bench`. Runs `miner run` (the real CLI, in a subprocess; the code of ``--code``, a checkout, this one by
default) on a temporary config of ``--services`` services and a store holding two days of 5-minute buckets of each
(the board's index reads 24 hours of all of them: a slow read), with the server on. Once it answers, another process
(this one) takes the store's write lock (BEGIN IMMEDIATE, as `miner prune` or a backup does) and holds it; then, from
a process of their own, ``--readers`` clients reload `/` and ``--reporters`` clients post a report, each one request
after another on a new connection; meanwhile /healthz is asked every 50 ms with a ``--timeout`` to connect and as
many to be answered, as an orchestrator's liveness probe. Each probe is counted by its outcome (answered 200, 503
"too many connections", another status, timed out, reset), and so are the flood's answers.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import multiprocessing
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import describe  # noqa: E402

from miner.store import Store  # noqa: E402

EVERY = 0.05  # seconds between probes
REPORT = json.dumps({"service": "S000", "symptom": "calls"}).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ask(port: int, method: str, path: str, timeout: float, body: bytes | None = None) -> str:
    """One request on a new connection: its outcome."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        reply = conn.getresponse()
        data = reply.read()
        if reply.status == 503 and b"too many connections" in data:
            return "503 too many connections"
        return f"{reply.status}"
    except TimeoutError:
        return "timed out"
    except (ConnectionError, http.client.RemoteDisconnected):
        return "reset or refused"
    except OSError as exc:
        return f"other: {type(exc).__name__}"
    finally:
        conn.close()


def flood(port: int, readers: int, reporters: int, seconds: float, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """``readers`` clients reloading `/` and ``reporters`` posting reports for ``seconds``: their outcomes."""
    counts: collections.Counter[str] = collections.Counter()
    guard = threading.Lock()
    end = time.monotonic() + seconds

    def client(method: str, path: str, body: bytes | None) -> None:
        while time.monotonic() < end:
            outcome = ask(port, method, path, 30.0, body)
            with guard:
                counts[f"{method} {path} {outcome}"] += 1
            if outcome.startswith("503"):
                time.sleep(0.05)  # as a browser's reload or a client's retry would, rather than spinning

    threads = [threading.Thread(target=client, args=("GET", "/", None)) for _ in range(readers)]
    threads += [threading.Thread(target=client, args=("POST", "/report", REPORT)) for _ in range(reporters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.put(dict(counts))


def build(folder: Path, services: int, port: int, cache_seconds: int) -> Path:
    db = folder / "miner.sqlite"
    names = [f"S{n:03d}" for n in range(services)]
    cfg = folder / "feeds.toml"
    cfg.write_text(f'[store]\npath = "{db}"\n\n[server]\nenabled = true\nport = {port}\n'
                   f'cache_seconds = {cache_seconds}\n\n'
                   + "".join(f'[[services]]\nname = "{name}"\n\n' for name in names), encoding="utf-8")
    Store.open(db).close()
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    now -= timedelta(minutes=now.minute % 5)
    with sqlite3.connect(db) as conn:
        conn.executemany("INSERT INTO buckets (service, bucket_start, posts, complaints) VALUES (?, ?, 12, 3)",
                         [(name, (now - timedelta(minutes=5 * i)).isoformat()) for name in names for i in range(576)])
    return cfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--services", type=int, default=300)
    ap.add_argument("--readers", type=int, default=40)
    ap.add_argument("--reporters", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--timeout", type=float, default=1.0, help="a probe's seconds to connect, and to be answered")
    ap.add_argument("--cache-seconds", type=int, default=5, help="server.cache_seconds (5, the default)")
    ap.add_argument("--code", type=Path, default=ROOT, help="the checkout whose `miner run` is measured")
    args = ap.parse_args()
    print(describe())
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        cfg = build(Path(tmp), args.services, port, args.cache_seconds)
        env = {k: v for k, v in os.environ.items() if k not in ("MINER_CONFIG", "MINER_DB")}
        proc = subprocess.Popen([sys.executable, "-m", "miner", "--config", str(cfg), "run"], cwd=tmp,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**env, "PYTHONPATH": str(args.code.resolve())})
        try:
            deadline = time.monotonic() + 120
            while ask(port, "GET", "/healthz", 5.0) != "200":
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the service did not start (exit code {proc.poll()})")
                time.sleep(0.2)
            started = time.monotonic()
            index = ask(port, "GET", "/", 60.0)
            print(f"{args.services} services: the board's index read alone {time.monotonic() - started:.2f} s "
                  f"({index})")
            lock = sqlite3.connect(Path(tmp) / "miner.sqlite", isolation_level=None)
            lock.execute("BEGIN IMMEDIATE")  # another process's write, held throughout
            out: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
            crowd = multiprocessing.Process(target=flood, args=(port, args.readers, args.reporters, args.seconds + 2,
                                                                out))
            crowd.start()
            time.sleep(2.0)  # the crowd is in
            probes: collections.Counter[str] = collections.Counter()
            end = time.monotonic() + args.seconds
            while time.monotonic() < end:
                asked = time.monotonic()
                probes[ask(port, "GET", "/healthz", args.timeout)] += 1
                time.sleep(max(0.0, EVERY - (time.monotonic() - asked)))
            counts = out.get(timeout=120)
            crowd.join(timeout=60)
            lock.rollback()
            lock.close()
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    total = sum(probes.values())
    print(f"{args.readers} clients reloading /, {args.reporters} posting reports, the store locked by another "
          f"process, cache_seconds = {args.cache_seconds}; /healthz every {EVERY * 1000:g} ms for {args.seconds:g} s "
          f"({args.timeout:g} s timeout), "
          f"code {args.code}:")
    for outcome, count in sorted(probes.items()):
        print(f"  /healthz {outcome}: {count} of {total} ({100 * count / total:.1f} %)")
    for what, count in sorted(counts.items()):
        print(f"  flood: {what}: {count}")


if __name__ == "__main__":
    main()

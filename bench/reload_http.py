"""Probe `miner run`'s HTTP endpoint through SIGHUP reloads, as a load balancer's health check would.

    PYTHONPATH=. .venv/bin/python bench/reload_http.py [--reloads 5] [--timeout 2] [--clients 2] [--slow-client]

Not in `make bench`. Runs `miner run` (the real CLI, in a subprocess) on a temporary config with the server on and
one local RSS source, and `--clients` threads that each open a new connection to /healthz, one request after
another, with `--timeout` seconds to connect and as many to be answered. Meanwhile it sends `--reloads` SIGHUPs,
each once the reload before is logged done. Every request is counted by its outcome: answered 200, refused (nobody
listening), reset (closed unanswered), timed out, or other; the slowest answer is printed too, and the longest a
request waited whatever its outcome. A probe's timeout as short as health checks' often is (`--timeout 0.5`, as
Kubernetes' and Consul's) counts a reload's pause as timeouts. With `--slow-client`, a connection that has sent
half its request head is open at each SIGHUP (a slow mobile client, a report still arriving), and closed once the
reload is logged. Under a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from fakeserver import FakeServer  # noqa: E402
from machine import describe  # noqa: E402
from test_reload import Running, free_port, healthy, write_config  # noqa: E402


def probe(port: int, timeout: float) -> tuple[str, float]:
    """One health check on a new connection: its outcome and how long it took."""
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/healthz")
        status = conn.getresponse().status
        outcome = "answered 200" if status == 200 else f"answered {status}"
    except ConnectionRefusedError:
        outcome = "refused"
    except (ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError):
        outcome = "reset"
    except TimeoutError:
        outcome = "timed out"
    except OSError as exc:
        outcome = f"other: {type(exc).__name__}"
    finally:
        conn.close()
    return outcome, time.monotonic() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reloads", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=2.0, help="seconds to connect, and to be answered")
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--slow-client", action="store_true",
                    help="hold a connection with half a request head open across each reload")
    args = ap.parse_args()
    print(describe())
    outcomes: collections.Counter[str] = collections.Counter()
    slowest = longest = 0.0
    done = threading.Event()
    guard = threading.Lock()

    def hammer(port: int) -> None:
        nonlocal slowest, longest
        while not done.is_set():
            outcome, took = probe(port, args.timeout)
            with guard:
                outcomes[outcome] += 1
                longest = max(longest, took)
                if outcome == "answered 200":
                    slowest = max(slowest, took)
            if outcome == "refused":
                time.sleep(0.01)  # as a client's retry would, rather than spinning on the refusals

    with tempfile.TemporaryDirectory() as tmp, FakeServer() as feeds:
        feeds.serve_fixture("/alpha.rss", "rss/forum_latest.rss")
        cfg, port = Path(tmp) / "feeds.toml", free_port()
        write_config(cfg, feeds.url, port)
        service = Running(cfg)
        threads = []
        try:
            service.wait_for(lambda: healthy(port))
            threads = [threading.Thread(target=hammer, args=(port,), daemon=True) for _ in range(args.clients)]
            for thread in threads:
                thread.start()
            time.sleep(1.0)
            took = []
            for n in range(1, args.reloads + 1):
                slow = socket.create_connection(("127.0.0.1", port)) if args.slow_client else None
                if slow is not None:
                    slow.sendall(b"GET /healthz HTTP/1.0\r\n")
                started = time.monotonic()
                service.hup()
                service.wait_for(lambda n=n: service.messages().count(f"config reloaded from {cfg}") == n)
                took.append(time.monotonic() - started)
                if slow is not None:
                    slow.close()
                time.sleep(1.0)
        finally:
            done.set()
            for thread in threads:
                thread.join(timeout=30)
            code = service.stop()
    print(f"{args.reloads} reloads (SIGHUP to 'config reloaded' logged: {', '.join(f'{t:.2f}' for t in took)} s), "
          f"{args.clients} clients, timeout {args.timeout:g} s{', a slow client' if args.slow_client else ''}, "
          f"exit code {code}")
    total = sum(outcomes.values())
    for outcome, count in sorted(outcomes.items()):
        print(f"  {outcome}: {count} of {total} requests")
    print(f"  slowest answer: {slowest:.2f} s; longest wait, any outcome: {longest:.2f} s")


if __name__ == "__main__":
    main()

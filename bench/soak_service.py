"""Soak `miner run` for a while against local sources and SMTP, and watch what grows.

    PYTHONPATH=. .venv/bin/python bench/soak_service.py [--minutes 20] [--every 5] [--hup] [--out DIR]

Not in `make bench`: it runs for minutes. The service runs as a subprocess (the same Reloader and Service as `miner
run`, with the job intervals cut to 1-3 s so hundreds of cycles happen in minutes) against real parts on
127.0.0.1: feed servers serving recorded real payloads (tests/fakeserver.py) and an aiosmtpd server
(tests/smtp_server.py) taking a digest a minute. Sources: an RSS feed handing out new real posts (the bundled
SentiTel stream) each poll, two recorded status feeds (ETag/304), one failing with 500 for a while, one answering
429 with Retry-After, one slow (8 s), one malformed XML, one slower than its 2 s timeout, and one on a port where
nothing listens (connection refused). Meanwhile a client scrapes /metrics and posts a report every 0.5 s (from
changing X-Forwarded-For addresses; three in four refused: unknown service, not JSON, wrong Content-Type; the
rest soon rate-limited), and another reads the status board and the read API every 0.5 s (`/`, a service's page
of 168 h, `/api/v1/services`, `/api/v1/incidents?limit=1000`, a series of 168 h), with a burst of 12 pages at
once every 20 rounds (past the 8 reads the API lets wait: some 503).

Every `--every` s it samples the service's RSS, open fds (by kind: sockets, the store's files, one per
connection), TCP sockets by state, threads, the store's -wal size, log volume, /healthz and /metrics (series per
family: a label that grows with clients or errors would show). On a timeline it takes SMTP down and back, lets
the failing source recover, jumps the service's clock (ServiceOptions.clock) forward and back, starts a rival
service on the same store (with --hup, reloads it with SIGHUP half way: it must serve on), and ends with SIGTERM in
a cycle. Prints a summary; samples go to DIR/samples.jsonl and the service's log to DIR/service.log.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from machine import describe  # noqa: E402

SHORT_JOBS = (("collect", 1.0), ("process", 2.0), ("alerts", 2.0), ("retention", 30.0))


def child(cfg: str, db: str, port: int, offset_file: str) -> None:
    """The service, as `miner run --log-format json --http` starts it (a SIGHUP reloads `cfg`), with short job
    intervals and a clock that runs `offset_file` seconds ahead of the wall clock (to jump it without touching the
    machine's)."""
    from miner.config import load_config
    from miner.config_files import load_checked
    from miner.logsetup import setup_logging
    from miner.service import JobSpec, Service, ServiceOptions
    from miner.service_reload import Reloader
    from miner.timeutil import utcnow

    cache: dict[str, Any] = {"mtime": None, "offset": 0.0}

    def clock() -> Any:
        try:
            mtime = os.stat(offset_file).st_mtime_ns
            if mtime != cache["mtime"]:
                cache["mtime"], cache["offset"] = mtime, float(Path(offset_file).read_text() or 0)
        except (OSError, ValueError):
            pass
        return utcnow() + timedelta(seconds=cache["offset"])

    setup_logging("info", "json")
    jobs = tuple(JobSpec(name, every) for name, every in SHORT_JOBS)
    options = ServiceOptions(jobs=jobs, clock=clock, http=True, http_port=port)
    Reloader(load_config(Path(cfg)), lambda: load_checked(Path(cfg)), lambda config: Service(config, db, options)).run()


class LiveFeed:
    """An RSS feed of the newest 50 posts of the real SentiTel stream, 5 more posts each request."""

    def __init__(self) -> None:
        from miner.replay import demo_stream_path, read_posts

        self.posts = list(read_posts(demo_stream_path()))
        self.start = datetime.now(UTC)  # the 2019 posts are re-dated: older than retention, none would be stored
        self.served = 0
        self.times: list[float] = []
        self.lock = threading.Lock()

    def __call__(self, request: Any) -> Any:
        from fakeserver import Reply

        with self.lock:
            self.served += 5
            end = self.served
            self.times.append(time.monotonic())
        items = []
        for n in range(max(0, end - 50), end):
            post = self.posts[n % len(self.posts)]
            items.append(f"<item><guid>post-{n}</guid><title>{escape(post.text[:80])}</title>"
                         f"<description>{escape(post.text)}</description><link>https://example.org/{n}</link>"
                         f"<pubDate>{format_datetime(self.start + timedelta(seconds=2 * n))}</pubDate></item>")
        body = ('<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>telecom</title>'
                f"<link>https://example.org/</link>{''.join(items)}</channel></rss>").encode()
        return Reply(200, body, content_type="application/rss+xml")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(out: Path, feed: str, smtp_port: int) -> Path:
    cfg = out / "feeds.toml"
    sources = [("live", "rss", "/live.rss", ""), ("saucelabs", "status_feed", "/saucelabs.atom", 'services = ["MTN"]'),
               ("parse", "status_feed", "/parse.rss", 'services = ["Airtel"]'), ("flaky", "rss", "/flaky.rss", ""),
               ("limited", "rss", "/limited.rss", ""), ("slow", "rss", "/slow.rss", "timeout = 20"),
               ("malformed", "rss", "/malformed.rss", ""), ("hang", "rss", "/hang.rss", "timeout = 2"),
               ("refused", "rss", None, "")]
    refused = f"http://127.0.0.1:{free_port()}/gone.rss"  # nothing listens there: connection refused
    src = "".join(f'\n[[sources]]\nname = "{n}"\ntype = "{t}"\nurl = "{feed + p if p else refused}"\n'
                  f'interval = 10\n{x}\n' for n, t, p, x in sources)
    cfg.write_text(f"""
[store]
path = "{out / 'miner.sqlite'}"

[server]
report_rate_per_hour = 60

[collect]
backoff_base = 10
backoff_max = 40

[alerts]
from_addr = "miner <miner@example.org>"
[alerts.smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
timeout = 5
[[alerts.routes]]
name = "oncall"
email = ["oncall@example.org"]
digest = "* * * * *"
digest_when_quiet = true

[[services]]
name = "MTN"
aliases = ["mtnug", "mtn uganda"]

[[services]]
name = "Airtel"
aliases = ["airtelug", "airtel uganda"]
{src}""")
    return cfg


def proc_sample(pid: int) -> dict[str, Any]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    kinds: collections.Counter[str] = collections.Counter()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # closed between the listing and the look
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            # sockets, pipes, eventfds by kind; files by name (the store's main file counts its connections)
            kinds[target.split(":")[0] if ":[" in target else Path(target).name] += 1
    return {"rss_kb": rss, "fds": sum(kinds.values()), "threads": len(os.listdir(f"/proc/{pid}/task")),
            "tcp_conns": _tcp_conns(pid), "fd_kinds": dict(kinds)}


def _tcp_conns(pid: int) -> dict[str, int]:
    """The process's TCP sockets by state (ESTABLISHED, CLOSE_WAIT...): a leaked client socket shows as CLOSE_WAIT."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    states = {"01": "ESTABLISHED", "06": "TIME_WAIT", "08": "CLOSE_WAIT", "0A": "LISTEN", "02": "SYN_SENT",
              "04": "FIN_WAIT1", "05": "FIN_WAIT2", "07": "CLOSE", "09": "LAST_ACK", "0B": "CLOSING"}
    out: collections.Counter[str] = collections.Counter()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    out[states.get(fields[3], fields[3])] += 1
    return dict(out)


def families(m: dict[str, float]) -> dict[str, int]:
    """Series per metric family: a family whose count keeps growing has an unbounded label."""
    return dict(collections.Counter(key.split("{")[0] for key in m))


class Clients:
    """Frequent /metrics scrapes and POST /report calls from many client addresses (X-Forwarded-For from an
    untrusted peer, so the limit is keyed by the peer) and bad ones: unknown service, not JSON, wrong type."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.stop = threading.Event()
        self.codes: collections.Counter[str] = collections.Counter()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        bodies: list[tuple[dict[str, str], bytes]] = [
            ({"Content-Type": "application/json"}, b'{"service": "MTN", "symptom": "calls"}'),
            ({"Content-Type": "application/json"}, b'{"service": "Nope", "symptom": "calls"}'),
            ({"Content-Type": "application/json"}, b"{not json"),
            ({"Content-Type": "text/plain"}, b"hello"),
        ]
        with httpx.Client(timeout=10) as client:
            for n in itertools.count():
                if self.stop.wait(0.5):
                    return
                try:
                    r = client.get(f"{self.base}/metrics")
                    self.codes[f"GET /metrics {r.status_code}"] += 1
                    headers, body = bodies[n % len(bodies)]
                    headers = {**headers, "X-Forwarded-For": f"10.{n % 250}.{n // 250 % 250}.{n % 7}"}
                    r = client.post(f"{self.base}/report", content=body, headers=headers)
                    self.codes[f"POST /report {r.status_code}"] += 1
                except httpx.HTTPError as exc:
                    self.codes[f"error {type(exc).__name__}"] += 1


class Readers:
    """The status board's pages and the read API's GETs, one after another each round, and every 20 rounds a burst
    of 12 at once on their own connections (more than the 8 the API lets read or wait: the 503 path too)."""

    PATHS = ("/", "/services/MTN?hours=168", "/api/v1/services", "/api/v1/incidents?limit=1000",
             "/api/v1/services/MTN/series?hours=168")

    def __init__(self, base: str) -> None:
        self.base = base
        self.stop = threading.Event()
        self.codes: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def get(self, client: httpx.Client, path: str) -> None:
        try:
            code = str(client.get(f"{self.base}{path}").status_code)
        except httpx.HTTPError as exc:
            code = f"error {type(exc).__name__}"
        with self.lock:
            self.codes[f"GET {path.split('?')[0].replace('/MTN', '/NAME')} {code}"] += 1

    def burst(self) -> None:
        def one(n: int) -> None:
            with httpx.Client(timeout=30) as client:
                self.get(client, self.PATHS[1] if n % 2 else self.PATHS[0])

        threads = [threading.Thread(target=one, args=(n,)) for n in range(12)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            for n in itertools.count(1):
                if self.stop.wait(0.5):
                    return
                for path in self.PATHS:
                    self.get(client, path)
                if n % 20 == 0:
                    self.burst()


def metrics(base: str) -> dict[str, float]:
    out = {}
    # raise_for_status: a 503 (every connection busy) is a missed scrape, not a page of metrics
    for line in httpx.get(f"{base}/metrics", timeout=10).raise_for_status().text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def health(base: str) -> tuple[int, dict[str, Any]]:
    try:
        r = httpx.get(f"{base}/healthz", timeout=10)
        return r.status_code, r.json()
    except httpx.HTTPError as exc:
        return 0, {"error": str(exc)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    ap.add_argument("--hup", action="store_true", help="reload the service with SIGHUP half way")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]), args.child[3])
        return

    from fakeserver import FakeServer
    from smtp_server import SmtpServer

    print(describe())
    out = args.out or Path(tempfile.mkdtemp(prefix="miner-soak-"))
    out.mkdir(parents=True, exist_ok=True)
    total = args.minutes * 60
    smtp = SmtpServer()
    smtp.start()
    feeds = FakeServer().start()
    live = LiveFeed()
    feeds.serve("/live.rss", live)
    feeds.serve_fixture("/saucelabs.atom", "status/saucelabs_us-west-1_history.atom")
    feeds.serve_fixture("/parse.rss", "status/parse_status_history.rss")
    feeds.fault("/flaky.rss", "500")
    feeds.fault("/limited.rss", "429", retry_after="30")
    feeds.fault("/slow.rss", "slow", fixture="rss/forum_latest.rss", delay=8.0)
    feeds.fault("/malformed.rss", "malformed_xml")
    feeds.fault("/hang.rss", "slow", fixture="rss/forum_latest.rss", delay=6.0)  # past its 2 s timeout
    cfg = write_config(out, feeds.url, smtp.port)
    db = out / "miner.sqlite"
    offset = out / "clock_offset"
    offset.write_text("0")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log_path = out / "service.log"
    log_file = log_path.open("w")
    proc = subprocess.Popen([sys.executable, __file__, "--child", str(cfg), str(db), str(port), str(offset)],
                            stdout=subprocess.DEVNULL, stderr=log_file, env=env)
    deadline = time.monotonic() + 120
    while health(base)[0] == 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"service did not start; see {log_path}")
        time.sleep(0.2)
    clients = Clients(base)
    clients.thread.start()
    readers = Readers(base)
    readers.thread.start()
    samples = (out / "samples.jsonl").open("w")
    events: list[str] = []
    started = time.monotonic()

    def at(frac: float) -> float:
        return frac * total

    timeline = [
        (at(0.05), "rival", None), (at(0.15), "smtp down", smtp.stop), (at(0.40), "smtp up", smtp.start),
        (at(0.25), "flaky recovers", lambda: feeds.serve_fixture("/flaky.rss", "rss/forum_latest.rss")),
        (at(0.55), "flaky fails again", lambda: feeds.fault("/flaky.rss", "500")),
        (at(0.60), "clock +2h", lambda: offset.write_text("7200")),
        (at(0.70), "clock back to wall", lambda: offset.write_text("0")),
        (at(0.80), "clock -2h", lambda: offset.write_text("-7200")),
        (at(0.90), "clock back to wall", lambda: offset.write_text("0")),
    ]
    if args.hup:
        # A reload, no stop (since `miner run` reloads at SIGHUP): a new service in the same process takes over.
        timeline.append((at(0.50), "SIGHUP (reload)", lambda: proc.send_signal(signal.SIGHUP)))
    timeline.sort(key=lambda t: t[0])
    first: dict[str, Any] | None = None
    try:
        while time.monotonic() - started < total:
            t = time.monotonic() - started
            while timeline and timeline[0][0] <= t:
                _, name, action = timeline.pop(0)
                if name == "rival":
                    rival = subprocess.run([sys.executable, "-m", "miner", "--config", str(cfg), "run"],
                                           capture_output=True, text=True, timeout=120, env=env)
                    name += f": exit {rival.returncode}: {rival.stderr.strip()[-160:]}"
                elif action is not None:
                    action()
                events.append(f"{t:7.0f}s {name}")
                print(events[-1], flush=True)
            if proc.poll() is not None:
                raise SystemExit(f"service exited early with {proc.returncode}; see {log_path}")
            try:
                m = metrics(base)
            except httpx.HTTPError:
                m = {}
            code, h = health(base)
            with contextlib.suppress(httpx.HTTPError):  # a user report per sample: the HTTP path over the run
                httpx.post(f"{base}/report", json={"service": "MTN", "symptom": "calls"}, timeout=10)
            wal = out / "miner.sqlite-wal"
            row = {"t": round(t, 1), **proc_sample(proc.pid), "wal_bytes": wal.stat().st_size if wal.exists() else 0,
                   "db_bytes": db.stat().st_size, "log_bytes": log_path.stat().st_size, "health": code,
                   "health_status": h.get("status"), "inbox": len(smtp.inbox.messages),
                   "metric_series": len(m), "families": families(m), "metrics": m}
            samples.write(json.dumps(row) + "\n")
            samples.flush()
            if first is None and t > 30:
                first = row
            time.sleep(args.every)
        clients.stop.set()
        readers.stop.set()
        readers.thread.join(timeout=60)
        # SIGTERM in a cycle: the slow source makes most moments part of one.
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
        stop_s = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
        log_file.close()
        feeds.stop()
        smtp.stop()
    summarise(out, row, first, events, code, stop_s, smtp.inbox.message_ids(), feeds, live.times, "SIGTERM")
    print("  clients: " + ", ".join(f"{k} {v}" for k, v in sorted(clients.codes.items())))
    print("  readers: " + ", ".join(f"{k} {v}" for k, v in sorted(readers.codes.items())))


def summarise(out: Path, last: dict[str, Any], first: dict[str, Any] | None, events: list[str], code: int,
              stop_s: float, message_ids: list[str], feeds: Any, live_times: list[float], signame: str) -> None:
    lines = (out / "service.log").read_text().splitlines()
    msgs: collections.Counter[str] = collections.Counter()
    tracebacks = 0
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            msgs["(not json) " + line[:60]] += 1
            continue
        tracebacks += "exc" in rec
        msgs[f"{rec['level']} {re.sub(r'[0-9]+', 'N', rec['msg'])[:90]}"] += 1
    print(f"\nran {last['t']:.0f} s; {signame} -> exit {code} in {stop_s:.1f} s")
    if first:
        for key in ("rss_kb", "fds", "threads", "wal_bytes", "db_bytes", "metric_series"):
            print(f"  {key:14} at 30 s {first[key]:>12,}   end {last[key]:>12,}")
        rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
        quarters = [rows[min(len(rows) - 1, len(rows) * q // 4)] for q in range(1, 5)]
        print("  rss_kb at each quarter: " + ", ".join(f"{r['rss_kb']:,} ({r['t']:.0f} s)" for r in quarters))
        for key in ("fds", "threads"):
            print(f"  {key:14} range over the run {min(r[key] for r in rows)}-{max(r[key] for r in rows)}")
        conns = [r["fd_kinds"].get("miner.sqlite", 0) for r in rows]
        socks = [sum(r["tcp_conns"].values()) for r in rows]
        print(f"  store conns    range over the run {min(conns)}-{max(conns)}; TCP sockets {min(socks)}-{max(socks)}")
        after = [r for r in rows if r["t"] > 60]  # past warm-up: a leak keeps climbing here, a plateau does not
        if len(after) > 1:
            half = len(after) // 2
            print("  after 60 s, max of each half: " + ", ".join(
                f"{key} {max(r[key] for r in after[:half]):,} -> {max(r[key] for r in after[half:]):,}"
                for key in ("rss_kb", "fds", "threads")))
        for key in ("fd_kinds", "tcp_conns", "families"):
            print(f"  {key:14} at 30 s {first[key]}\n  {'':14} end     {last[key]}")
    print(f"  log: {len(lines):,} lines, {last['log_bytes']:,} bytes, {tracebacks} tracebacks")
    for msg, n in msgs.most_common(12):
        print(f"    {n:6,} {msg}")
    dupes = [m for m, n in collections.Counter(message_ids).items() if n > 1]
    print(f"  emails received {len(message_ids)}, duplicated Message-IDs {len(dupes)}")
    m = last["metrics"]
    print("  job runs: " + ", ".join(f"{k.split('{')[1].rstrip('}')} {v:.0f}" for k, v in m.items()
                                     if k.startswith("miner_job_runs_total")))
    print("  config reloads: " + (", ".join(f"{k.split('{')[1].rstrip('}')} {v:.0f}" for k, v in m.items()
                                            if k.startswith("miner_config_reloads_total")) or "none counted"))
    for path in ("/live.rss", "/slow.rss", "/limited.rss", "/flaky.rss", "/malformed.rss", "/hang.rss"):
        print(f"  requests to {path}: {len(feeds.requests_to(path))}")
    gaps = sorted(b - a for a, b in itertools.pairwise(live_times))
    if gaps:
        print(f"  /live.rss poll gaps (interval 10 s): median {gaps[len(gaps) // 2]:.1f} s, max {gaps[-1]:.1f} s")
    for e in events:
        print("  " + e)
    print(f"  samples: {out / 'samples.jsonl'}")


if __name__ == "__main__":
    main()

"""The real service as a subprocess against a local feed server: health, metrics, reports, one service per
store, SIGKILL in the middle of ingesting and classifying, graceful SIGTERM, and one clear start-up error each
for a missing model, a corrupt store and a locked store."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

import httpx
import pytest
from click.testing import CliRunner, Result
from fakeserver import FakeServer, Reply
from ports import LogReader

from miner.errors import MinerError, StoreError
from miner.replay import demo_stream_path, read_posts
from miner.store import Store
from miner.store.migrations import MIGRATIONS, apply_migrations
from miner.timeutil import iso, parse_iso, utcnow

if TYPE_CHECKING:
    from miner.service import Service

ROOT = Path(__file__).resolve().parent.parent
N_ITEMS = 1500
# The start's warning of a config without [[alerts.routes]], as these tests' configs are: not what they look for.
NO_ROUTE = "no [[alerts.routes]]"


def big_feed() -> bytes:
    """An RSS feed of real posts (the bundled SentiTel stream), enough to take a few seconds to classify."""
    items = []
    for n, post in enumerate(read_posts(demo_stream_path())):
        if n == N_ITEMS:
            break
        items.append(f"<item><guid>post-{n}</guid><title>{escape(post.text[:80])}</title>"
                     f"<description>{escape(post.text)}</description><link>https://example.org/{n}</link>"
                     f"<pubDate>{format_datetime(post.created_at)}</pubDate></item>")
    return ('<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>telecom</title>'
            f"<link>https://example.org/</link>{''.join(items)}</channel></rss>").encode()


@pytest.fixture(scope="module")
def feed_server() -> Iterator[FakeServer]:
    body = big_feed()
    with FakeServer() as server:
        server.serve("/telecom.rss", Reply(200, body, content_type="application/rss+xml"))
        yield server


def write_config(tmp_path: Path, feed_url: str, extra: str = "") -> Path:
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(f"""
[store]
path = "{tmp_path / 'miner.sqlite'}"
retention_days = 36500  # the feed's real posts are from 2019

[server]
report_rate_per_hour = 3

[[services]]
name = "MTN"
aliases = ["mtnug", "mtn uganda"]

[[services]]
name = "Airtel"
aliases = ["airtelug", "airtel uganda"]

[[sources]]
name = "telecom-feed"
type = "rss"
url = "{feed_url}"
interval = 60
max_entries = {N_ITEMS}  # the whole feed in one poll, stored whole or not at all
{extra}
""")
    return cfg


# The logs of the services start() started, read as they come (endpoint() waits for a line of one).
_LOGS: weakref.WeakKeyDictionary[subprocess.Popen[str], LogReader] = weakref.WeakKeyDictionary()


def start(cfg: Path, http: bool = False, prefix: Sequence[str] = ()) -> subprocess.Popen[str]:
    """`miner run` on ``cfg``; with ``http``, its endpoint on a free port (port 0), which :func:`endpoint` reads."""
    args = [*prefix, sys.executable, "-m", "miner", "--config", str(cfg), "run", "--log-format", "json"]
    if http:
        # Not a port picked here beforehand: anything could take it before the service binds it.
        args += ["--http", "--port", "0"]
    proc = subprocess.Popen(args, cwd=cfg.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    _LOGS[proc] = LogReader(proc)
    return proc


def endpoint(proc: subprocess.Popen[str]) -> str:
    """The base URL of the HTTP endpoint of a service :func:`start` started, at the port its log says it bound."""
    return f"http://127.0.0.1:{_LOGS[proc].port()}"


def wait_for(check: Callable[[], bool], timeout: float = 120.0, proc: subprocess.Popen[str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            err = _LOGS[proc].text() if proc in _LOGS else proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"service exited early ({proc.returncode}): {err}")
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def counts(db: Path) -> dict[str, int]:
    if not db.exists():
        return {"posts": 0, "verdicts": 0}
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        row = conn.execute("SELECT (SELECT count(*) FROM posts), (SELECT count(*) FROM classifications), "
                           "(SELECT count(DISTINCT post_id) FROM classifications)").fetchone()
        conn.close()
    except sqlite3.OperationalError:  # tables not created yet
        return {"posts": 0, "verdicts": 0}
    return {"posts": row[0], "verdicts": row[1], "classified": row[2]}


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, str]:
    proc.send_signal(sig)
    if (log := _LOGS.get(proc)) is not None:  # its stderr is the reader's
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return proc.returncode, log.text()
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return proc.returncode, err


def test_service_runs_survives_sigkill_and_refuses_a_second_instance(tmp_path: Path,
                                                                     feed_server: FakeServer) -> None:
    cfg = write_config(tmp_path, f"{feed_server.url}/telecom.rss")
    db = tmp_path / "miner.sqlite"
    first = start(cfg, http=True)
    try:
        # Killed while posts are stored but not all classified yet.
        wait_for(lambda: 0 < counts(db)["verdicts"] < N_ITEMS, proc=first)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        before = counts(db)
        assert before["posts"] == N_ITEMS  # a poll is stored whole or not at all

        second = start(cfg, http=True)
        try:
            wait_for(lambda: counts(db).get("classified") == N_ITEMS, proc=second)
            after = counts(db)
            assert after == {"posts": N_ITEMS, "verdicts": N_ITEMS, "classified": N_ITEMS}

            # A second service on the same store refuses to start, naming the owner.
            rival = subprocess.run([sys.executable, "-m", "miner", "--config", str(cfg), "run"], cwd=tmp_path,
                                   capture_output=True, text=True, timeout=120, env={**os.environ,
                                                                                     "PYTHONPATH": str(ROOT)})
            assert rival.returncode == 1
            assert f"another miner service (pid {second.pid})" in rival.stderr
            assert "Traceback" not in rival.stderr

            base = endpoint(second)
            wait_for(lambda: httpx.get(f"{base}/healthz").status_code == 200, proc=second)
            health = httpx.get(f"{base}/healthz").json()
            assert set(health["stages"]) == {"collect", "process", "alerts", "retention"}
            metrics = httpx.get(f"{base}/metrics").text
            assert "# TYPE miner_posts_stored_total counter" in metrics
            assert 'miner_queue_depth{queue="classify"} 0' in metrics
            # Written at 0 from the start: a run is a count above it.
            assert 'miner_job_runs_total{outcome="ok",stage="process"}' in metrics
            assert 'miner_job_runs_total{outcome="ok",stage="process"} 0\n' not in metrics

            # User reports: stored as complaints, validated, rate-limited per client.
            ok = httpx.post(f"{base}/report", json={"service": "mtnug", "symptom": "calls"})
            assert ok.status_code == 202 and ok.json()["service"] == "MTN"
            bad = httpx.post(f"{base}/report", json={"service": "Nokia"})
            assert bad.status_code == 400 and "unknown service" in bad.json()["error"]
            deep = httpx.post(f"{base}/report", content=b"[" * 1500 + b"]" * 1500,
                              headers={"Content-Type": "application/json"})
            assert deep.status_code == 400 and deep.json()["error"] == "body is not valid JSON"
            statuses = [httpx.post(f"{base}/report", json={"service": "MTN"}).status_code for _ in range(3)]
            assert statuses[-1] == 429
            assert counts(db)["posts"] == N_ITEMS + 1 + statuses.count(202)
        finally:
            code, err = stop(second)
        assert code == 0, err
        assert "stopped" in err
        assert json.loads(err.strip().splitlines()[-1])["msg"] == "stopped"
        # The lock died with the process: a new service could start now.
        assert not (tmp_path / "miner.sqlite.lock").read_text().strip()
    finally:
        if first.poll() is None:
            first.kill()


@pytest.mark.parametrize("problem", ["missing_model", "no_model_folder", "no_ca_file", "corrupt_store",
                                     "read_only_folder", "read_only_store", "read_only_file", "full_disk"])
def test_start_up_problems_are_one_clear_line(tmp_path: Path, problem: str) -> None:
    extra = ""
    prefix: list[str] = []
    if problem == "missing_model":
        (tmp_path / "empty-models").mkdir()
        extra = f'\n[classifier]\nmodel_dir = "{tmp_path / "empty-models"}"\n'
    elif problem == "no_model_folder":
        extra = '\n[classifier]\nmodel_dir = "modles"\n'
    elif problem == "no_ca_file":
        extra = '\n[alerts.smtp]\nca_file = "relay-ca.pem"\n'
    cfg = write_config(tmp_path, "http://127.0.0.1:9/feed.rss", extra)
    db = tmp_path / "miner.sqlite"
    if problem == "corrupt_store":
        db.write_bytes(b"\x00garbage" * 4096)
    elif problem == "read_only_store":
        # SQLite opens a file whose header asks for a newer writer (write version 3) read-only, even for root:
        # the same silent read-only open as a file without write permission.
        Store.open(db).close()
        header = bytearray(db.read_bytes())
        header[18] = 3
        db.write_bytes(bytes(header))
    elif problem == "read_only_file":
        Store.open(db).close()
        db.chmod(0o444)
        if os.geteuid() == 0:
            # In a user namespace of its own, root keeps its uid but loses CAP_DAC_OVERRIDE: file modes hold.
            prefix = ["unshare", "--user"]
            if not shutil.which("unshare") or subprocess.run([*prefix, "true"], capture_output=True).returncode:
                pytest.skip("root writes a read-only file and cannot drop that here; read_only_store covers it")
    elif problem == "full_disk":
        # A file-size limit of 0: every write that adds to a file fails, as on a full disk. Writing its PID into
        # the service lock failed first, with "internal error: OSError: [Errno 27] File too large".
        Store.open(db).close()
        prefix = [sys.executable, "-c", "import os, resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0)); "
                  "os.execv(sys.argv[1], sys.argv[1:])"]
    elif problem == "read_only_folder":
        if os.geteuid() == 0:  # root ignores permission bits unless it drops its capabilities
            if not shutil.which("setpriv"):
                pytest.skip("needs setpriv to drop root's capabilities")
            prefix = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"]
        tmp_path.chmod(0o555)
    try:
        result = subprocess.run([*prefix, sys.executable, "-m", "miner", "--config", str(cfg), "run"],
                                cwd=tmp_path, capture_output=True, text=True, timeout=120,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        tmp_path.chmod(0o755)
    assert result.returncode == 1
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    model_line = cfg.read_text().splitlines().index('model_dir = "modles"') + 1 if problem == "no_model_folder" else 0
    ca_line = cfg.read_text().splitlines().index('ca_file = "relay-ca.pem"') + 1 if problem == "no_ca_file" else 0
    expected = {"missing_model": "model",
                # Only the path was named, not the setting or its line.
                "no_model_folder": f"Error: {cfg}:{model_line}: classifier.model_dir: {tmp_path / 'modles'}: no such "
                                   "folder",
                # The service started, and every email then failed at its send.
                "no_ca_file": f"Error: {cfg}:{ca_line}: alerts.smtp.ca_file: cannot be read as a PEM file of CA "
                              "certificates: [Errno 2] No such file or directory",
                "corrupt_store": "is not a SQLite database or is corrupt (file is not a database); to restore it, "
                                 "stop miner, copy a backup made by `miner backup` over it and delete",
                "read_only_folder": f"Error: cannot create the service lock {tmp_path / 'miner.sqlite.lock'} "
                                    "(Permission denied); `miner run` writes its store and this lock in that "
                                    "folder",
                "read_only_store": "is read-only", "read_only_file": "is read-only",
                "full_disk": f"Error: store {db}: disk full or I/O error"}[problem]
    assert expected in lines[0]


def test_a_model_refused_at_start_leaves_an_older_store_as_it_was(tmp_path: Path) -> None:
    # The new version refused the model folder only after opening the store, which upgraded it: going back to the
    # version that ran took restoring a backup, as any version since 0.1.0 refuses a store upgraded past it.
    db = tmp_path / "miner.sqlite"
    with sqlite3.connect(db, isolation_level=None) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        apply_migrations(conn, MIGRATIONS[:2])  # the schema of miner 0.1.0
    (tmp_path / "empty-models").mkdir()
    cfg = write_config(tmp_path, "http://127.0.0.1:9/feed.rss",
                       f'\n[classifier]\nmodel_dir = "{tmp_path / "empty-models"}"\n')
    result = subprocess.run([sys.executable, "-m", "miner", "--config", str(cfg), "run"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 1
    assert "model" in result.stderr
    with sqlite3.connect(db) as conn:
        assert [r[0] for r in conn.execute("SELECT id FROM schema_migrations")] == [m.id for m in MIGRATIONS[:2]]


def test_a_deleted_store_stops_the_service_with_one_error_and_a_copy(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "http://127.0.0.1:9/feed.rss")
    db = tmp_path / "miner.sqlite"
    proc = start(cfg, http=True)
    try:
        base = endpoint(proc)
        wait_for(lambda: _get(f"{base}/healthz") == 200, proc=proc)
        assert httpx.post(f"{base}/report", json={"service": "MTN"}).status_code == 202
        db.unlink()
        code, err = stop(proc, sig=0)  # signal 0: only wait; the service must stop by itself
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 1, err
    assert not db.exists()  # no empty store was created in its place
    last = err.strip().splitlines()[-1]
    assert f"store {db} was deleted or replaced while the service was running" in last
    (copy,) = tmp_path.glob("miner.sqlite.lost-*")
    assert str(copy) in last
    assert counts(copy)["posts"] == 1  # the report accepted before the deletion
    assert "Traceback" not in err


@pytest.mark.skipif(os.geteuid() == 0 and not shutil.which("setpriv"), reason="root ignores permissions")
def test_reports_are_stored_again_once_a_read_only_store_is_writable_again(tmp_path: Path) -> None:
    # The reports' connection, opened by the first report while the file was read-only, stayed read-only: every
    # report was refused (503) until a restart, long after the permissions were put right.
    cfg = write_config(tmp_path, "http://127.0.0.1:9/feed.rss")
    db = tmp_path / "miner.sqlite"
    Store.open(db).close()
    # Without its capabilities root is held to the permission bits like anyone else.
    proc = start(cfg, http=True,
                 prefix=["setpriv", "--bounding-set=-all", "--inh-caps=-all"] if os.geteuid() == 0 else [])
    try:
        base = endpoint(proc)
        wait_for(lambda: all(s["runs"] for s in _health(base)["stages"].values()), proc=proc)
        # An empty -wal, as right after the service starts: SQLite gave it the read-only file's mode when the
        # first report's connection opened it, and every connection opened after that was read-only too. Left to
        # the jobs' timing, their first writes were in the -wal by then in most runs, and this passed.
        wait_for(lambda: _truncate_wal(db), proc=proc)
        db.chmod(0o444)
        try:
            refused = httpx.post(f"{base}/report", json={"service": "MTN"}, timeout=30)
        finally:
            db.chmod(0o644)
        assert refused.status_code == 503
        accepted = httpx.post(f"{base}/report", json={"service": "MTN"}, timeout=30)
        assert accepted.status_code == 202, accepted.text
        code, err = stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, err
    assert f"store {db} is read-only" in err and "Traceback" not in err
    assert counts(db)["posts"] == 1


def test_a_replaced_store_fails_health_and_every_job(tmp_path: Path) -> None:
    from miner.config import load_config
    from miner.service import JobSpec, Service, ServiceOptions

    db = tmp_path / "miner.sqlite"
    service = Service(load_config(write_config(tmp_path, "http://127.0.0.1:9/feed.rss")), db,
                      ServiceOptions(jobs=(JobSpec("retention", 3600.0),), http=False))
    service.start()
    try:
        assert service.healthz()[0]
        # Replaced by another file (a restore done with `mv`, say): the service must not go on with the old one.
        other = tmp_path / "other.sqlite"
        Store.open(other).close()
        other.replace(db)
        ok, detail = service.healthz()
        assert not ok and detail["status"] == "failed"
        assert "was deleted or replaced while the service was running" in detail["error"]
        before = utcnow().replace(microsecond=0)  # as iso() gives it
        service._run_job("retention")
        assert "was deleted or replaced" in str(service.health["retention"].last_error)
        # When it failed, too: last_error stays after a job succeeds again, and without a time read as current.
        stage = service.healthz()[1]["stages"]["retention"]
        assert "was deleted or replaced" in stage["last_error"]
        assert before <= parse_iso(stage["last_error_at"]) <= utcnow()
        assert 'miner_store_error{cause="lost",stage="retention"} 1\n' in service.metrics_text()
        with pytest.raises(StoreError, match="deleted or replaced"):
            service._store("http")  # a new connection would work on the new file (or create an empty one)
    finally:
        service.stop()
    assert service._stop.is_set()


@pytest.mark.parametrize("side", ["-wal", "-shm"])
def test_a_deleted_wal_stops_the_service_and_its_commits_are_saved(tmp_path: Path, side: str) -> None:
    # The -wal and -shm deleted under the running service (a restore's last step done too early): the service wrote
    # on into its unlinked -wal, every new connection (`miner status`, a restart after a crash) saw a store without
    # the commits still there, and /healthz said ok.
    from miner.config import load_config
    from miner.service import JobSpec, Service, ServiceOptions

    db = tmp_path / "miner.sqlite"
    service = Service(load_config(write_config(tmp_path, "http://127.0.0.1:9/feed.rss")), db,
                      ServiceOptions(jobs=(JobSpec("retention", 3600.0),), http=False))
    service.start()
    try:
        # The scheduler runs the job once at start: the run below must not share its store connection with that one.
        wait_for(lambda: service.health["retention"].runs >= 1, timeout=30)
        service._store("http").add_silence("MTN", utcnow(), utcnow() + timedelta(hours=1), "test", utcnow())
        assert service.healthz()[0]
        Path(f"{db}{side}").unlink()
        ok, detail = service.healthz()
        assert not ok and detail["status"] == "failed"
        assert f"store {db}: its {side} file was deleted or replaced" in detail["error"]
        service._run_job("retention")
        assert 'miner_store_error{cause="lost",stage="retention"} 1\n' in service.metrics_text()
    finally:
        service.stop()
    assert service._stop.is_set()
    assert "a copy of its last state is saved" in str(service._stores.lost_reason)
    (copy,) = tmp_path.glob("miner.sqlite.lost-*")
    with contextlib.closing(sqlite3.connect(copy)) as conn:
        assert conn.execute("SELECT count(*) FROM silences").fetchone()[0] == 1


def test_a_store_replaced_under_the_service_is_not_given_the_lost_files_wal(tmp_path: Path) -> None:
    # A backup restored with `mv` while the service ran: it stopped, but left the lost file's -wal and -shm beside
    # the file now at the path, and the next open (the unit's restart, a `miner status`) read that -wal as the
    # restored file's: its pages were copied over the backup's, which showed the lost store's commits (and a
    # backup of another layout would have been damaged).
    from miner.config import load_config
    from miner.service import JobSpec, Service, ServiceOptions

    db = tmp_path / "miner.sqlite"
    service = Service(load_config(write_config(tmp_path, "http://127.0.0.1:9/feed.rss")), db,
                      ServiceOptions(jobs=(JobSpec("retention", 3600.0),), http=False))
    service.start()
    try:
        wait_for(lambda: service.health["retention"].runs >= 1, timeout=30)
        backup = tmp_path / "backup.sqlite"
        service._store("http").backup(backup)
        service._store("http").add_silence("MTN", utcnow(), utcnow() + timedelta(hours=1), "test", utcnow())
        backup.replace(db)
        assert not service.healthz()[0]
    finally:
        service.stop()
    (copy,) = tmp_path.glob("miner.sqlite.lost-*")
    with contextlib.closing(sqlite3.connect(copy)) as conn:  # the lost file's commits are in its copy
        assert conn.execute("SELECT count(*) FROM silences").fetchone()[0] == 1
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:  # not in the backup restored
        assert conn.execute("SELECT count(*) FROM silences").fetchone()[0] == 0
        assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"


def test_a_backup_restored_with_cp_under_the_service_is_left_as_it_was_copied(tmp_path: Path) -> None:
    # The documented restore (copy the backup over the store, delete its -wal and -shm) done while the service ran:
    # `cp` keeps the file's inode, so the service, stopping, took the file for its own, and its last connection's
    # close checkpointed the service's -wal into it: the pages the service had changed since the backup were copied
    # over the backup's (the restore undone where the two agreed, a damaged store where they did not).
    from miner.config import load_config
    from miner.service import JobSpec, Service, ServiceOptions

    db = tmp_path / "miner.sqlite"
    service = Service(load_config(write_config(tmp_path, "http://127.0.0.1:9/feed.rss")), db,
                      ServiceOptions(jobs=(JobSpec("retention", 3600.0),), http=False))
    service.start()
    backup = tmp_path / "backup.sqlite"
    try:
        wait_for(lambda: service.health["retention"].runs >= 1, timeout=30)
        service._store("http").backup(backup)
        service._store("http").add_silence("MTN", utcnow(), utcnow() + timedelta(hours=1), "test", utcnow())
        shutil.copyfile(backup, db)  # in place, as cp does
        for side in ("-wal", "-shm"):
            Path(f"{db}{side}").unlink()
        assert not service.healthz()[0]
    finally:
        service.stop()
    assert db.read_bytes() == backup.read_bytes()
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        assert conn.execute("SELECT count(*) FROM silences").fetchone()[0] == 0
        assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    wal = Path(f"{db}-wal")
    assert not wal.exists() or wal.stat().st_size == 0  # nothing for the next open to copy into it
    assert not list(tmp_path.glob(".miner.sqlite*"))  # the file moved aside while the service closed is back


def test_a_store_found_corrupt_is_logged_once_while_every_run_and_scrape_shows_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Each run of each job logged the same error line, with its advice: every 15 s from collect alone, and at
    # each scrape, for as long as the store stayed damaged.
    import logging

    from miner.config import load_config
    from miner.records import Post
    from miner.service import JobSpec, Service, ServiceOptions

    db = tmp_path / "miner.sqlite"
    store, now = Store.open(db), utcnow()
    store.insert_posts([Post("telecom-feed", str(n), "MTN is down " + "x" * 500, now - timedelta(minutes=n),
                             services=("MTN",)) for n in range(300)], now)
    store.close()
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'sqlite_autoindex_store_state_1'"
                            ).fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    page = (root - 1) * size
    good = db.read_bytes()[page:page + size]

    def write_page(data: bytes) -> None:  # in place: another file at the path would be a lost store
        with db.open("r+b") as f:
            f.seek(page)
            f.write(data)

    # The root page of store_state's keys damaged: the retention prune reads it (a hold, the prune cutoff), and so
    # does /metrics (miner_prune_held). (The prune reads no post of this store: none is old enough.)
    write_page(b"\xff" * size)
    service = Service(load_config(write_config(tmp_path, "http://127.0.0.1:9/feed.rss")), db,
                      ServiceOptions(jobs=(JobSpec("retention", 3600.0),), http=False))
    caplog.set_level("INFO", logger="miner.service")

    def logged() -> list[str]:
        return [r.getMessage().split(": store /")[0] for r in caplog.records
                if r.name == "miner.service" and (r.levelno > logging.INFO or "again" in r.getMessage())
                and not r.getMessage().startswith(NO_ROUTE)]

    service.start()
    try:
        wait_for(lambda: service.health["retention"].runs >= 1, timeout=30)  # the run at start
        for _ in range(3):
            service._run_job("retention")
            assert "is corrupt (database disk image is malformed)" in str(service.health["retention"].last_error)
            assert 'miner_store_error{cause="corrupt",stage="retention"} 1\n' in service.metrics_text()
        # The start records the model it loaded in store_state: refused, it says so and starts all the same.
        assert logged() == ["cannot record the model loaded, which `miner status` shows", "job retention failed",
                            "metrics: cannot read the store"]
        write_page(good)  # put right (a restore by hand would stop the service first)
        service._run_job("retention")
        assert "miner_store_error{" not in service.metrics_text()
        write_page(b"\xff" * size)
        service._stores.forget("retention")  # damaged again where its connection has not cached the page
        service._run_job("retention")
        service._run_job("retention")
        assert logged() == ["cannot record the model loaded, which `miner status` shows", "job retention failed",
                            "metrics: cannot read the store",
                            "job retention succeeded again: the store no longer fails it (corrupt)",
                            "job retention failed"]
    finally:
        service.stop()


def test_a_job_failing_the_same_way_at_every_run_logs_its_traceback_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A stored row the process job cannot read failed it at every run (every 30 s), each time with the whole
    # traceback in the log, for as long as the row stayed; only store errors were logged once.
    import logging

    from miner.config import load_config
    from miner.service import JobSpec, Service, ServiceOptions

    db = tmp_path / "miner.sqlite"
    service = Service(load_config(write_config(tmp_path, "http://127.0.0.1:9/feed.rss")), db,
                      ServiceOptions(jobs=(JobSpec("process", 3600.0),), http=False))
    caplog.set_level("INFO", logger="miner.service")

    def logged() -> list[tuple[str, bool]]:
        return [(r.getMessage(), r.exc_info is not None) for r in caplog.records
                if r.name == "miner.service" and (r.levelno > logging.INFO or "again" in r.getMessage())
                and not r.getMessage().startswith(NO_ROUTE)]

    def set_last_bucket(value: str) -> None:
        with contextlib.closing(sqlite3.connect(db)) as conn, conn:
            conn.execute("UPDATE detector_state SET last_bucket = ? WHERE service = 'MTN'", (value,))

    service.start()
    try:
        wait_for(lambda: service.health["process"].runs >= 1, timeout=30)  # the run at start saves the detectors
        with contextlib.closing(sqlite3.connect(db)) as conn:
            good = conn.execute("SELECT last_bucket FROM detector_state WHERE service = 'MTN'").fetchone()[0]
        set_last_bucket("garbage")  # as a hand edit, or a version of miner that wrote it otherwise, may leave it
        for _ in range(3):
            service._run_job("process")
            assert service.health["process"].last_error == "ValueError: Invalid isoformat string: 'garbage'"
        assert logged() == [("job process failed", True)]
        set_last_bucket(good)
        service._run_job("process")
        set_last_bucket("garbage")
        service._run_job("process")
        assert logged() == [("job process failed", True), ("job process succeeded again (it failed with ValueError)",
                                                           False), ("job process failed", True)]
        assert service.metrics.get("miner_job_runs_total", stage="process", outcome="error") == 4
    finally:
        service.stop()


def test_a_collect_round_outlasting_its_interval_is_counted_not_warned_at_each_tick(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from miner.config import load_config
    from miner.service import JobSpec, Service, ServiceOptions

    offset = [0.0]
    with FakeServer() as server:
        server.serve_fixture("/feed.rss", "rss/forum_latest.rss")
        db = tmp_path / "miner.sqlite"
        service = Service(load_config(write_config(tmp_path, f"{server.url}/feed.rss")), db,
                          ServiceOptions(jobs=(JobSpec("collect", 0.1),), http=False,
                                         clock=lambda: utcnow() + timedelta(seconds=offset[0])))
        caplog.set_level("WARNING")
        service.start()
        try:
            wait_for(lambda: service.health["collect"].runs >= 1, timeout=30)
            # Another writer holds the store for 4 s, within the busy timeout, as the source is due again: the run
            # waits for it, longer than the job's interval, and every tick meanwhile is skipped. 40 ticks of 0.1 s,
            # so that the scheduler wakes at least 5 times meanwhile, however loaded the machine.
            writer = sqlite3.connect(db, timeout=5, isolation_level=None)
            writer.execute("BEGIN IMMEDIATE")
            offset[0] = 120.0
            time.sleep(4.0)
            writer.execute("COMMIT")
            writer.close()
            wait_for(lambda: service.metrics.get("miner_polls_total", source="telecom-feed") == 2, timeout=30)
        finally:
            service.stop()
    assert service.health["collect"].last_error is None
    assert service.metrics.get("miner_job_runs_total", stage="collect", outcome="skipped") >= 5
    assert not [r for r in caplog.records if r.name.startswith("apscheduler")]


def test_the_start_line_counts_one_source_as_one(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # An operator's first feeds.toml watching one feed read "miner service started: ..., 1 sources".
    from miner.config import load_config
    from miner.service import JobSpec, Service, ServiceOptions

    with FakeServer() as server:
        server.serve_fixture("/feed.rss", "rss/forum_latest.rss")
        service = Service(load_config(write_config(tmp_path, f"{server.url}/feed.rss")), tmp_path / "miner.sqlite",
                          ServiceOptions(jobs=(JobSpec("collect", 60.0),), http=False))
        caplog.set_level("INFO", logger="miner.service")
        service.start()
        service.stop()
    started = [r.getMessage() for r in caplog.records if r.getMessage().startswith("miner service started")]
    assert len(started) == 1 and started[0].endswith(", 1 source"), started


def test_a_poll_outlasting_the_collect_jobs_interval_is_carried_over_and_named(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from miner.config import load_config
    from miner.service import JobSpec, Service, ServiceOptions

    with FakeServer() as server:
        # A fast feed and a slow one: the runs go on at their interval, the slow poll carried over from each to the
        # next until it ends; a run waited for it, and the fast feed's next poll with it.
        server.serve_fixture("/fast.rss", "rss/forum_latest.rss")
        server.fault("/slow.rss", "slow", fixture="rss/forum_latest.rss", delay=3.0)
        extra = f'\n[[sources]]\nname = "slow-feed"\ntype = "rss"\nurl = "{server.url}/slow.rss"\ninterval = 60\n'
        service = Service(load_config(write_config(tmp_path, f"{server.url}/fast.rss", extra)),
                          tmp_path / "miner.sqlite", ServiceOptions(jobs=(JobSpec("collect", 1.0),), http=False))
        caplog.set_level("INFO", logger="miner.service")
        service.start()
        try:
            wait_for(lambda: service.metrics.get("miner_polls_total", source="slow-feed") == 1, timeout=60)
        finally:
            service.stop()
    assert service.metrics.get("miner_poll_seconds", source="slow-feed") >= 3.0
    assert service.metrics.get("miner_poll_seconds", source="telecom-feed") < 3.0
    assert service.health["collect"].runs >= 2
    assert service.metrics.get("miner_job_seconds", stage="collect") < 3.0
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("collected from")]
    carried = [line for line in lines if "carried over to the next run" in line]
    assert carried and all("in flight for longer than the collect job's 1 s interval, carried over to the next "
                           "run: slow-feed" in line and "telecom-feed" not in line.split(";", 1)[1]
                           for line in carried), lines


def roomy_feed(guid: str) -> Reply:
    """An RSS feed of three items, guids ``guid`` + 0 to 2, large enough that storing them takes new pages."""
    items = "".join(
        f"<item><guid>{guid}{n}</guid><title>MTN down {n}</title><description>{'x' * 2000}</description>"
        f"<pubDate>{format_datetime(utcnow() - timedelta(minutes=n))}</pubDate></item>"
        for n in range(3)
    )
    body = f'<rss version="2.0"><channel><title>t</title>{items}</channel></rss>'.encode()
    return Reply(200, body, content_type="application/rss+xml")


def collector_on_a_full_disk(tmp_path: Path, feed_url: str, offset: list[float]) -> tuple[Service, Callable[[], None]]:
    """A service whose one job is collect (hourly: the tests run it by hand), on a clock ``offset[0]`` seconds ahead,
    and what fills its disk: the collect job's next connection, on a disk with no room left (SQLite's own limit).
    The job opens a fresh connection after each store error, so each run that must fail needs one."""
    from miner.config import load_config
    from miner.service import JobSpec, Service, ServiceOptions

    db = tmp_path / "miner.sqlite"
    options = ServiceOptions(
        jobs=(JobSpec("collect", 3600.0),), http=False, clock=lambda: utcnow() + timedelta(seconds=offset[0])
    )
    service = Service(load_config(write_config(tmp_path, feed_url)), db, options)

    def disk_full() -> None:
        if (previous := service._stores.open.get("collect")) is not None:
            previous.close()
        store = Store.open(db)
        store.database.execute(f"PRAGMA max_page_count = {store.database.one('PRAGMA page_count')['page_count']}")
        service._stores.open["collect"] = store

    return service, disk_full


def test_polls_a_full_store_does_not_take_are_held_shown_and_stored_later(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    offset = [0.0]
    db = tmp_path / "miner.sqlite"
    with FakeServer() as server:
        server.serve("/feed.rss", lambda request: roomy_feed("n-"))
        service, disk_full = collector_on_a_full_disk(tmp_path, f"{server.url}/feed.rss", offset)
        disk_full()
        service.start()
        try:
            wait_for(lambda: service.health["collect"].runs == 1, timeout=30)
            error = str(service.health["collect"].last_error)
            assert "disk full" in error and "3 posts of 1 poll are held in memory until the store takes them" in error
            assert "miner_posts_held 3\n" in service.metrics_text()
            # The cause is on /metrics too, for an alert to name it.
            assert 'miner_store_error{cause="disk_full",stage="collect"} 1\n' in service.metrics_text()
            disk_full()
            service._run_job("collect")  # the next round: the source is not polled again before its interval
            assert len(server.requests_to("/feed.rss")) == 1
            assert counts(db)["posts"] == 0 and service.health["collect"].runs == 2
            assert service.health["collect"].last_ok is None

            service._run_job("collect")  # space freed: the job's fresh connection takes writes
            assert service.health["collect"].last_ok is not None
            assert counts(db)["posts"] == 3 and len(server.requests_to("/feed.rss")) == 1
            assert "miner_posts_held 0\n" in service.metrics_text()
            assert "miner_store_error{" not in service.metrics_text()

            # Still held when the service stops: said so, with what it costs.
            disk_full()
            offset[0] = 3600.0
            server.serve("/feed.rss", lambda request: roomy_feed("m-"))
            service._run_job("collect")
            assert len(server.requests_to("/feed.rss")) == 2
            disk_full()  # and for the last try at stop
        finally:
            service.stop()
    assert counts(db)["posts"] == 3
    assert ("stopping with 3 posts of 1 held poll that the store never took" in caplog.text
            and "they are lost, but their sources' cursors in the store did not move" in caplog.text), caplog.text


def test_a_full_store_is_logged_once_while_the_polls_it_holds_grow(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The collect job's error says how many posts are held, more at each poll: read as a new error, it was logged at
    # every run that polled (every 15 s with a few sources) for as long as the disk stayed full.
    served = [0]

    def feed(request: object) -> Reply:  # new items at each poll
        served[0] += 1
        return roomy_feed(f"{served[0]}-")

    offset = [0.0]
    with FakeServer() as server:
        server.serve("/feed.rss", feed)
        service, disk_full = collector_on_a_full_disk(tmp_path, f"{server.url}/feed.rss", offset)
        disk_full()
        caplog.set_level("INFO", logger="miner.service")
        service.start()
        try:
            wait_for(lambda: service.health["collect"].runs == 1, timeout=30)
            for polls in (2, 3):
                disk_full()
                offset[0] += 120.0  # the source is due again: its new posts are held too
                service._run_job("collect")
                assert f"{3 * polls} posts of {polls} polls are held" in str(service.health["collect"].last_error)
            assert len(server.requests_to("/feed.rss")) == 3
            failed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("job collect failed")]
            assert len(failed) == 1 and "3 posts of 1 poll are held" in failed[0], failed
        finally:
            service.stop()


def _truncate_wal(db: Path) -> bool:
    """Checkpoint the store and empty its -wal; False while a writer or reader is in the way."""
    with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:
        busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    return busy == 0 and db.with_name(f"{db.name}-wal").stat().st_size == 0


def _health(base: str) -> dict[str, Any]:
    try:
        body: dict[str, Any] = httpx.get(f"{base}/healthz").json()
    except httpx.TransportError:
        return {"stages": {"starting": {"runs": 0}}}
    return body


def _get(url: str) -> int:
    try:
        return httpx.get(url).status_code
    except httpx.TransportError:
        return 0


def _retention_only(tmp_path: Path, offset: list[float]) -> Service:
    """A service running only the hourly retention job, on a clock ``offset[0]`` seconds from the real one."""
    from miner.config import load_config
    from miner.service import JobSpec, Service, ServiceOptions

    return Service(load_config(write_config(tmp_path, "http://127.0.0.1:9/feed.rss")), tmp_path / "miner.sqlite",
                   ServiceOptions(jobs=(JobSpec("retention", 3600.0),), http=False,
                                  clock=lambda: utcnow() + timedelta(seconds=offset[0])))


def test_a_stop_ends_a_long_retention_prune_after_its_batch(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The first prune of a large store (after an upgrade, or retention_days lowered) went on batch after batch, for
    # minutes: a SIGTERM waited for all of it, past systemd's TimeoutStopSec, whose SIGKILL lost the held polls.
    from miner.records import Post

    service = _retention_only(tmp_path, [0.0])
    store, now = Store.open(tmp_path / "miner.sqlite"), utcnow()
    old = now - timedelta(days=service.config.store.retention_days + 5)
    store.insert_posts([Post("feed", str(i), f"post {i} whatsapp down", old) for i in range(40_000)], now)
    store.insert_posts([Post("feed", "new", "whatsapp down", now - timedelta(days=1))], now)
    with caplog.at_level("INFO", logger="miner.service"):
        service.start()
        try:
            wait_for(lambda: store.pruned_before() is not None, timeout=60)  # its first batch is committed
        finally:
            service.stop()
    left = store.database.one("SELECT count(*) AS n FROM posts WHERE created_at < ?", (iso(old + timedelta(1)),))
    assert left is not None and 0 < left["n"] < 40_000
    assert "retention: stopped; what is left to prune goes at the next run" in caplog.messages
    store.close()


def backlog_service(tmp_path: Path) -> tuple[Service, Store]:
    """A service running the process job alone, hourly, on a store of 30,000 real posts none classified yet (a
    first start on a store filled by `miner ingest`), and that store, open."""
    from miner.config import load_config
    from miner.records import Post
    from miner.service import JobSpec, Service, ServiceOptions

    service = Service(load_config(write_config(tmp_path, "http://127.0.0.1:9/feed.rss")), tmp_path / "miner.sqlite",
                      ServiceOptions(jobs=(JobSpec("process", 3600.0),), http=False))
    store, now = Store.open(tmp_path / "miner.sqlite"), utcnow()
    texts = [p.text for p in read_posts(demo_stream_path())][:1000]
    store.insert_posts([Post("feed", str(i), texts[i % len(texts)], now - timedelta(minutes=i % 600))
                        for i in range(30_000)], now)
    return service, store


def test_a_stop_ends_a_long_classify_backlog_after_its_batch(tmp_path: Path) -> None:
    # The process job classified every pending post before it returned: a backlog (a first start on a store filled
    # by `miner ingest`, or the job failing for a while) kept a SIGTERM waiting minutes, past systemd's stop timeout.
    from miner.pipeline import Pipeline

    service, store = backlog_service(tmp_path)

    def unclassified() -> int:
        row = store.database.one("SELECT count(*) AS n FROM posts p WHERE NOT EXISTS "
                                 "(SELECT 1 FROM classifications c WHERE c.post_id = p.id)")
        assert row is not None
        return int(row["n"])

    service.start()
    try:
        wait_for(lambda: unclassified() < 30_000)  # well into the backlog: its first batch committed
    finally:
        # What stop() does first, here before the count: from now on the job may end only the batch in progress.
        # Counted, not timed: a batch takes seconds on a loaded machine, the whole backlog a minute here.
        service._stop.set()
        before = unclassified()
        service.stop()
    left = unclassified()
    assert left >= before - Pipeline(service.config, store)._chunk() > 0, (before, left)  # one batch at most
    store.close()


def test_the_retention_job_prunes_the_alert_history(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # It pruned posts and bucket rows only: sent notifications and their deliveries were kept for good.
    from miner.records import Post
    from miner.store.outbox import Finish

    service = _retention_only(tmp_path, [0.0])
    store, now, kept = Store.open(tmp_path / "miner.sqlite"), utcnow(), service.config.store.bucket_days
    for i, days in enumerate((kept + 1, 1)):
        at = now - timedelta(days=days)
        store.enqueue_digest(f"digest:{i}", "oncall", f"<{i}@example.org>", {}, at, "digest_anchor:oncall", "")
        assert store.claim_due(i + 1, "test", at, at) is not None
        assert store.finish_notification(i + 1, "test", at, Finish("sent"))
    # One post as old as the older notification, and a newer one, so that the prune is not held back.
    times = (now - timedelta(days=kept + 1), now - timedelta(days=1))
    store.insert_posts([Post("telecom-feed", f"p{i}", "MTN is down", at, services=("MTN",))
                        for i, at in enumerate(times)], now)
    # And the failed polls of as long ago: the record of why a source failed goes with the alerts it may explain.
    store.sync_sources(service.config.sources)
    for at in times:
        store.record_poll_failure("telecom-feed", "HTTP 503 from 127.0.0.1", at, at, http_status=503)
    try:
        with caplog.at_level("INFO"):
            service.job_retention(now)
    finally:
        service.stop()
    # One of each is "1 post", not "1 posts".
    assert f"retention: pruned 1 post older than {service.config.store.retention_days} days" in caplog.text
    assert f"retention: pruned 1 finished notification and 0 ended silences older than {kept} days" in caplog.text
    assert f"retention: pruned 1 failed poll record older than {kept} days" in caplog.text
    assert [r["dedupe_key"] for r in store.outbox_listing(["sent"])] == ["digest:1"]
    assert store.database.one("SELECT count(*) AS n FROM deliveries") == {"n": 1}
    assert [r["polled_at"] for r in store.poll_failures("telecom-feed", 10)] == [iso(times[1])]
    store.close()


def test_a_retention_prune_by_a_clock_ahead_of_every_post_deletes_nothing_and_says_so(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A clock 45 days ahead (an NTP step, a wrong RTC at boot) with 30 days kept: its cutoff was after every post,
    # and the retention job deleted them all, for good.
    from miner.cli import main
    from miner.config import load_config
    from miner.records import Post
    from miner.service import JobSpec, Service, ServiceOptions

    cfg = write_config(tmp_path, "http://127.0.0.1:9/feed.rss")
    cfg.write_text(cfg.read_text().replace("retention_days = 36500", "retention_days = 30"))
    offset = [45 * 86400.0]
    db = tmp_path / "miner.sqlite"
    service = Service(load_config(cfg), db, ServiceOptions(jobs=(JobSpec("retention", 3600.0),), http=False,
                                                          clock=lambda: utcnow() + timedelta(seconds=offset[0])))
    now = utcnow().replace(microsecond=0)
    store = Store.open(db)
    store.insert_posts([Post("telecom-feed", str(days), "MTN is down", now - timedelta(days=days), services=("MTN",))
                        for days in (1, 10, 40)], now)
    # Dated by that clock, as a user report is: no sign of what time it really is.
    store.insert_posts([Post("reports", "r", "User report: problem with MTN", service.options.clock(),
                             services=("MTN",))], service.options.clock())
    try:
        with caplog.at_level("WARNING"):
            service.job_retention(service.options.clock())
        assert counts(db)["posts"] == 4
        assert "retention: nothing pruned at " in caplog.text and "Is the system clock ahead" in caplog.text
        assert "miner_prune_held 1\n" in service.metrics_text()
        held = store.prune_held()
        assert held is not None and parse_iso(held["newest_post"]) == now - timedelta(days=1)
        shown = CliRunner().invoke(main, ["--config", str(cfg), "--db", str(db), "status", "--format", "json"])
        assert json.loads(shown.stdout)["prune_held"] == held, shown.output

        offset[0] = 0.0  # set right: the prune goes on, and the hold is gone
        service.job_retention(service.options.clock())
        assert counts(db)["posts"] == 3
        assert "miner_prune_held 0\n" in service.metrics_text()
        assert store.prune_held() is None
    finally:
        service.stop()
        store.close()


def test_the_clock_going_back_runs_every_job_at_once(tmp_path: Path) -> None:
    # APScheduler waits for next run times on the wall clock: set back an hour, it would run nothing for an hour.
    offset = [0.0]
    service = _retention_only(tmp_path, offset)
    service.start()
    try:
        wait_for(lambda: service.health["retention"].runs == 1, timeout=30)
        assert not service._clock_went_back()  # the first look (run_started's, once a second) only notes the time
        offset[0] = -3600.0
        assert service._clock_went_back()
        wait_for(lambda: service.health["retention"].runs == 2, timeout=30)
        assert not service._clock_went_back()
    finally:
        service.stop()


def test_health_stays_ok_when_the_clock_steps_forward(tmp_path: Path) -> None:
    offset = [0.0]
    service = _retention_only(tmp_path, offset)
    service.start()
    try:
        wait_for(lambda: service.health["retention"].runs == 1, timeout=30)
        assert service.healthz()[0]
        offset[0] = 2 * 86400.0  # an NTP step; the job ran a moment ago all the same
        ok, detail = service.healthz()
        assert ok, detail
    finally:
        service.stop()


def test_health_fails_a_first_run_stuck_past_three_intervals(tmp_path: Path) -> None:
    # A job that had not finished a run yet counted as starting, however long ago the service started: a first
    # collect round stuck on a source (or a lock) kept /healthz at 200 for as long as it hung.
    from miner.config import load_config
    from miner.service import JobSpec, Service, ServiceOptions

    with FakeServer() as server:
        # Stuck for the whole test, however slow the machine (the source's timeout, 20 s, ends it first).
        server.serve("/slow.rss", Reply(200, b"<rss/>", content_type="application/rss+xml", delay=60.0))
        # Hourly: a run waits for its polls up to its interval (less a second) before carrying them over.
        service = Service(load_config(write_config(tmp_path, f"{server.url}/slow.rss")), tmp_path / "miner.sqlite",
                          ServiceOptions(jobs=(JobSpec("collect", 3600.0),), http=False))
        service.start()
        try:
            assert service._poller is not None
            service._poller.stop_grace = 0.5  # the stop gives the stuck poll up at once
            wait_for(lambda: len(server.requests_to("/slow.rss")) == 1, timeout=30)
            assert service.healthz()[0]  # just started: the first round has time
            assert service._started is not None
            service._started -= 4 * 3600.0  # as if the round had hung for four hours, past 3 intervals + 60 s
            assert service.health["collect"].runs == 0
            ok, detail = service.healthz()
            assert not ok, detail
            assert detail["status"] == "degraded" and not detail["stages"]["collect"]["ok"]
        finally:
            service.stop()


def test_health_stays_ok_while_a_source_hangs_past_three_collect_intervals(tmp_path: Path) -> None:
    # A round waited for its slowest poll: a source given a 90 s timeout whose server did not answer turned /healthz
    # 503 (degraded, with no error) 63 s into the round, at every round that polled it. A run returns within its
    # interval, the poll carried over.
    from miner.config import load_config
    from miner.service import JobSpec, Service, ServiceOptions

    with FakeServer() as server:
        server.serve("/slow.rss", Reply(200, b"<rss/>", content_type="application/rss+xml", delay=60.0))
        config = load_config(write_config(tmp_path, f"{server.url}/slow.rss", "timeout = 90"))
        service = Service(config, tmp_path / "miner.sqlite",
                          ServiceOptions(jobs=(JobSpec("collect", 1.0),), http=False))
        service.start()
        try:
            assert service._poller is not None and service._started is not None
            service._poller.stop_grace = 0.5  # the stop gives the stuck poll up at once
            wait_for(lambda: service.health["collect"].runs >= 3, timeout=30)
            assert len(server.requests_to("/slow.rss")) == 1  # still in flight
            service._started -= 120.0
            ok, detail = service.healthz()
            assert ok, detail
        finally:
            service.stop()


def test_a_run_due_long_ago_runs_late_rather_than_not_at_all(tmp_path: Path) -> None:
    # After the machine was suspended, or the clock stepped forward, past a run's time by more than 5 minutes
    # (APScheduler's misfire grace), the run was skipped with a warning: retention waited 6 more hours.
    from datetime import UTC, datetime

    service = _retention_only(tmp_path, [0.0])
    service.start()
    try:
        wait_for(lambda: service.health["retention"].runs == 1, timeout=30)
        assert service._scheduler is not None
        service._scheduler.modify_job("retention", next_run_time=datetime.now(UTC) - timedelta(minutes=30))
        wait_for(lambda: service.health["retention"].runs == 2, timeout=60)
    finally:
        service.stop()


def test_a_clock_stepped_forward_years_is_caught_up_in_one_step(tmp_path: Path) -> None:
    # APScheduler listed every run time missed to run the last one only: a clock stepped a year forward (a machine
    # without a real-time clock, started before its time was set) was 2 million run times of the 15 s collect job,
    # seconds of the scheduler's thread and hundreds of MB; here 175,200 of the hourly job's for 20 years.
    from datetime import UTC, datetime

    service = _retention_only(tmp_path, [0.0])
    service.start()
    try:
        wait_for(lambda: service.health["retention"].runs == 1, timeout=30)
        assert service._scheduler is not None
        job = service._scheduler.get_job("retention")
        stepped = datetime.now(UTC) + timedelta(days=20 * 365)
        assert job._get_run_times(stepped) == [job.next_run_time]  # what the scheduler lists at its next wake-up
        service._scheduler.modify_job("retention", next_run_time=datetime.now(UTC) - timedelta(days=20 * 365))
        wait_for(lambda: service.health["retention"].runs == 2, timeout=60)
        after = service._scheduler.get_job("retention").next_run_time
        assert timedelta(0) < after - datetime.now(UTC) <= timedelta(hours=1)  # on the hourly grid, from now on
    finally:
        service.stop()


def test_metrics_say_which_sources_have_a_warning_that_stands(tmp_path: Path) -> None:
    from miner.config import load_config
    from miner.service import JobSpec, Service, ServiceOptions

    offset = [0.0]
    with FakeServer() as server:
        server.serve_fixture("/forum.rss", "rss/wrong_encoding.rss", content_type="application/rss+xml")
        extra = f'[[sources]]\nname = "clean"\ntype = "rss"\nurl = "{server.url}/clean.rss"\n'
        server.serve_fixture("/clean.rss", "rss/forum_latest.rss")
        service = Service(load_config(write_config(tmp_path, f"{server.url}/forum.rss", extra)),
                          tmp_path / "miner.sqlite",
                          ServiceOptions(jobs=(JobSpec("collect", 3600.0),), http=False,
                                         clock=lambda: utcnow() + timedelta(seconds=offset[0])))
        service.start()
        try:
            wait_for(lambda: service.health["collect"].runs == 1, timeout=30)
            lines = service.metrics_text().splitlines()
            assert 'miner_source_warning{source="telecom-feed"} 1' in lines
            assert 'miner_source_warning{source="clean"} 0' in lines
            fixed = server.fixture_bytes("rss/wrong_encoding.rss").replace(b'"us-ascii"', b'"utf-8"', 1)
            server.serve("/forum.rss", Reply(200, fixed, content_type="application/rss+xml"))
            offset[0] = 120.0  # both due again
            service._run_job("collect")
            assert len(server.requests_to("/forum.rss")) == 2
            assert 'miner_source_warning{source="telecom-feed"} 0' in service.metrics_text().splitlines()
        finally:
            service.stop()


def test_metrics_say_whether_sources_not_polled_since_the_start_are_up(tmp_path: Path) -> None:
    # After a restart the gauge had a series only for the sources polled since: one failing for good (a 404 waits
    # backoff_max, an hour, for its next poll) could not be alerted on until then.
    from miner.cli import main
    from miner.config import load_config
    from miner.service import JobSpec, Service, ServiceOptions

    with FakeServer() as server:
        server.serve_fixture("/forum.rss", "rss/forum_latest.rss")
        cfg = write_config(tmp_path, f"{server.url}/forum.rss",
                           f'[[sources]]\nname = "gone"\ntype = "rss"\nurl = "{server.url}/gone.rss"\n')
        polled = CliRunner().invoke(main, ["--config", str(cfg), "collect", "--once"])
        assert polled.exit_code == 1 and "HTTP 404" in polled.output, polled.output
        service = Service(load_config(cfg), tmp_path / "miner.sqlite",
                          ServiceOptions(jobs=(JobSpec("collect", 3600.0),), http=False))
        service.start()
        try:
            wait_for(lambda: service.health["collect"].runs == 1, timeout=30)
            assert len(server.requests_to("/forum.rss")) == 1  # the service's round polled neither again
            lines = [ln for ln in service.metrics_text().splitlines() if ln.startswith("miner_source_up")]
            assert lines == ['miner_source_up{source="gone"} 0', 'miner_source_up{source="telecom-feed"} 1']
        finally:
            service.stop()


def test_a_stop_does_not_wait_for_a_hanging_source_and_keeps_what_the_round_stored(tmp_path: Path) -> None:
    # A collect round waited for its slowest poll (up to the source's timeout) before the service could exit, and
    # stored no source's posts until then.
    from miner.config import load_config
    from miner.service import JobSpec, Service, ServiceOptions

    with FakeServer() as server:
        server.serve_fixture("/forum.rss", "rss/forum_latest.rss")
        server.serve("/hang.rss", Reply(200, b"", delay=60.0))
        extra = f'[[sources]]\nname = "hanging"\ntype = "rss"\nurl = "{server.url}/hang.rss"\ntimeout = 120\n'
        db = tmp_path / "miner.sqlite"
        service = Service(load_config(write_config(tmp_path, f"{server.url}/forum.rss", extra)), db,
                          ServiceOptions(jobs=(JobSpec("collect", 3600.0),), http=False))
        service.start()
        try:
            service._poller.stop_grace = 0.5  # the default is 5 s: the test only needs it shorter than the hang
            # The other source's poll stored while the hanging one is in flight (not at the round's end, 60 s on).
            wait_for(lambda: bool(server.requests_to("/hang.rss")) and counts(db)["posts"] > 0, timeout=45)
        finally:
            started = time.monotonic()
            service.stop()
            took = time.monotonic() - started
    assert took < 0.5 + 10.0  # the grace, not the hanging server's 60 s
    # The given-up poll's thread runs on until its timeout: the interpreter's exit must not wait for it.
    assert not [t for t in threading.enumerate() if t.name.startswith("miner-collect") and not t.daemon]
    store = Store.open(db)
    try:
        hanging = store.source_row("hanging")
        assert hanging is not None and (hanging["polls"], hanging["consecutive_failures"]) == (0, 0)
        assert store.due_sources(["hanging"], utcnow()) == ["hanging"]  # polled again at the next start
    finally:
        store.close()
    assert counts(db)["posts"] > 0  # the other source's poll, ended in the round or in its grace, is kept


def test_a_replay_is_refused_while_the_service_runs_and_holds_the_store_while_it_runs(
        tmp_path: Path, runner: CliRunner) -> None:
    # A replay into the running service's store went ahead: its simulated clock stepped the detectors hours past
    # now, and its file senders took the service's due notifications (written to files, marked sent, never sent).
    from miner.alerts import enqueue_digest_now
    from miner.cli import main
    from miner.config import load_config
    from miner.service import JobSpec, Service, ServiceOptions

    routes = '\n[alerts]\n[[alerts.routes]]\nname = "oncall"\nemail = ["oncall@example.org"]\n'
    cfg = write_config(tmp_path, "http://127.0.0.1:9/feed.rss", routes)
    config = load_config(cfg)
    db = tmp_path / "miner.sqlite"
    posts = tmp_path / "posts.jsonl"
    posts.write_text(json.dumps({"id": "1", "text": "MTN is down", "source": "replayed",
                                 "created_at": (utcnow() - timedelta(minutes=1)).isoformat()}) + "\n")
    options = ServiceOptions(jobs=(JobSpec("retention", 3600.0),), http=False)
    service = Service(config, db, options)
    service.start()
    try:
        store = Store.open(db)
        assert enqueue_digest_now(store, config.alerts, config.alerts.routes[0], utcnow())
        result = runner.invoke(main, ["--config", str(cfg), "replay", str(posts)])
        assert result.exit_code == 1, result.output
        assert f"Error: another miner service (pid {os.getpid()}) is already using {db}; stop it first" in result.output
        assert [r["status"] for r in store.outbox_listing(["pending", "sending", "sent"])] == ["pending"]
        assert store.database.rows("SELECT * FROM posts") == store.database.rows("SELECT * FROM detector_state") == []
        store.close()
    finally:
        service.stop()

    # And a service does not start on a store while a replay runs into it (a 6 h tail at 7200 times: 3 s; it ends
    # at the current time, so the post is older than that).
    other = tmp_path / "replay.sqlite"
    posts.write_text(json.dumps({"id": "1", "text": "MTN is down", "source": "replayed",
                                 "created_at": (utcnow() - timedelta(hours=7)).isoformat()}) + "\n")
    done: list[Result] = []
    replay = threading.Thread(target=lambda: done.append(runner.invoke(
        main, ["--config", str(cfg), "--db", str(other), "replay", str(posts), "--speed", "7200"])))
    replay.start()
    try:
        lock = Path(f"{other}.lock")
        wait_for(lambda: lock.exists() and "replay" in lock.read_text(), timeout=30)
        with pytest.raises(MinerError, match=rf"another miner replay \(pid {os.getpid()}\) is already using {other}"):
            Service(config, other, options).start()
    finally:
        replay.join()
    assert done[0].exit_code == 0, done[0].output
    assert not lock.read_text().strip()



def test_a_replay_into_the_running_services_store_through_a_symlink_is_refused(tmp_path: Path,
                                                                               runner: CliRunner) -> None:
    # The lock was the path as given plus ".lock": a replay naming the store by a link to it (or the service started
    # by one) locked a file of its own, and ran on the service's store beside it.
    from miner.cli import main
    from miner.config import load_config
    from miner.service import JobSpec, Service, ServiceOptions

    cfg = write_config(tmp_path, "http://127.0.0.1:9/feed.rss")
    db = tmp_path / "miner.sqlite"
    link = tmp_path / "current.sqlite"
    link.symlink_to(db.name)
    posts = tmp_path / "posts.jsonl"
    posts.write_text(json.dumps({"id": "1", "text": "MTN is down", "source": "replayed",
                                 "created_at": (utcnow() - timedelta(hours=1)).isoformat()}) + "\n")
    options = ServiceOptions(jobs=(JobSpec("retention", 3600.0),), http=False)
    for service_path, replay_path in ((db, link), (link, db)):
        service = Service(load_config(cfg), service_path, options)
        service.start()
        try:
            result = runner.invoke(main, ["--config", str(cfg), "--db", str(replay_path), "replay", str(posts)])
            assert result.exit_code == 1, result.output
            assert f"Error: another miner service (pid {os.getpid()}) is already using {replay_path}; stop it first" \
                in result.output
            store = Store.open(db)
            assert store.database.rows("SELECT * FROM posts") == []
            store.close()
        finally:
            service.stop()


def _http_service(tmp_path: Path) -> tuple[Service, str]:
    """A started service on a free port, running only the hourly retention job, and its base URL."""
    from miner.config import load_config
    from miner.service import JobSpec, Service, ServiceOptions

    service = Service(load_config(write_config(tmp_path, "http://127.0.0.1:9/feed.rss")), tmp_path / "miner.sqlite",
                      ServiceOptions(jobs=(JobSpec("retention", 3600.0),), http=True, http_port=0))
    service.start()
    assert service._http is not None
    return service, f"http://127.0.0.1:{service._http.address[1]}"


def test_a_scrape_does_not_wait_for_a_report_held_up_by_a_locked_store(tmp_path: Path) -> None:
    service, base = _http_service(tmp_path)
    locker = sqlite3.connect(tmp_path / "miner.sqlite", isolation_level=None)
    try:
        assert httpx.get(f"{base}/metrics").status_code == 200
        assert httpx.post(f"{base}/report", json={"service": "MTN"}).status_code == 202
        # SQLite's wait, shortened, but far longer than the scrape takes on a loaded machine: a scrape that waited
        # for the report would come after its 503.
        service._store("http").database.execute("PRAGMA busy_timeout = 10000")
        locker.execute("BEGIN IMMEDIATE")  # another writer: `miner prune` run by hand, say
        replies: list[int] = []
        report = threading.Thread(target=lambda: replies.append(
            httpx.post(f"{base}/report", json={"service": "MTN"}, timeout=60).status_code))
        report.start()
        wait_for(service._reports.lock.locked, timeout=30)
        # The report is in SQLite's wait for the lock: in its transaction on the http store's connection.
        wait_for(lambda: _held_by_another_thread(service._store("http").database._lock), timeout=30)
        scrape = httpx.get(f"{base}/metrics", timeout=60)
        assert scrape.status_code == 200 and "miner_reports_total" in scrape.text
        assert report.is_alive()  # answered while the report still waits
        report.join()
        assert replies == [503]
        assert httpx.post(f"{base}/report", json={"service": "No such"}).status_code == 400
        scrape = httpx.get(f"{base}/metrics", timeout=30).text
        for result in ("accepted", "unavailable", "invalid"):  # each counted once
            assert f'miner_reports_total{{result="{result}"}} 1' in scrape, result
    finally:
        locker.close()
        service.stop()


def _held_by_another_thread(lock: Any) -> bool:
    if not lock.acquire(blocking=False):
        return True
    lock.release()
    return False


def test_scrapes_at_once_each_read_the_store_as_of_their_own_request(tmp_path: Path) -> None:
    # Every scrape read on the one metrics connection, from its own handler thread: scrapes at once (Prometheus in
    # an HA pair, a dashboard) shared one SQLite read transaction, kept open while any of their statements ran, and
    # a scrape asked after a commit answered from a snapshot taken before it, tens of commits late.
    from miner.records import Post

    service, base = _http_service(tmp_path)
    writer, now = Store.open(tmp_path / "miner.sqlite"), utcnow()
    writer.insert_posts([Post("feed", str(i), f"post {i} whatsapp down", now) for i in range(30_000)], now)
    committed, late, statuses = [30_000], [], []
    done = threading.Event()

    def write() -> None:
        # 300 commits, and on until the scrapes below are many, however slow the machine makes them.
        deadline = time.monotonic() + 120
        i = 0
        while i < 300 or (len(statuses) <= 50 and time.monotonic() < deadline):
            writer.insert_posts([Post("feed", f"new-{i}", "whatsapp down", now)], now)
            committed[0] += 1
            i += 1
            time.sleep(0.005)
        done.set()

    def scrape() -> None:
        with httpx.Client(timeout=30) as client:
            while not done.is_set():
                before = committed[0]
                reply = client.get(f"{base}/metrics")
                statuses.append(reply.status_code)
                [depth] = [int(line.split()[-1]) for line in reply.text.splitlines()
                           if line.startswith('miner_queue_depth{queue="classify"}')]
                if depth < before:
                    late.append(before - depth)

    threads = [threading.Thread(target=write), *(threading.Thread(target=scrape) for _ in range(6))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        writer.close()
        service.stop()
    assert len(statuses) > 50 and set(statuses) == {200}
    assert late == []


def test_reports_queued_behind_one_held_up_by_a_locked_store_are_answered_503_soon(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each report waited for the one ahead of it to wait out SQLite's busy timeout: the third answered after three.
    from miner import report_intake

    monkeypatch.setattr(report_intake, "REPORT_WAIT", 0.5)
    service, base = _http_service(tmp_path)
    locker = sqlite3.connect(tmp_path / "miner.sqlite", isolation_level=None)
    try:
        assert httpx.get(f"{base}/healthz").status_code == 200
        # The first report waits in SQLite's busy timeout until the lock is let go below, however slow the machine:
        # the ones behind it are answered meanwhile, or never (they queued behind it, the third after three).
        service._store("http").database.execute("PRAGMA busy_timeout = 120000")
        locker.execute("BEGIN IMMEDIATE")
        replies: list[int] = []

        def report() -> threading.Thread:
            thread = threading.Thread(target=lambda: replies.append(
                httpx.post(f"{base}/report", json={"service": "MTN"}, timeout=120).status_code))
            thread.start()
            return thread

        first = report()
        wait_for(service._reports.lock.locked, timeout=30)
        behind = [report() for _ in range(2)]
        wait_for(lambda: len(replies) == 2, timeout=30)
        assert replies == [503, 503] and first.is_alive()  # answered while the first still waits
        for thread in behind:
            thread.join()
        locker.execute("ROLLBACK")
        first.join()
        assert replies == [503, 503, 202]
        assert httpx.post(f"{base}/report", json={"service": "MTN"}).status_code == 202
    finally:
        if locker.in_transaction:
            locker.execute("ROLLBACK")  # the reports still waiting go on, and the service can stop
        locker.close()
        service.stop()


def test_reports_held_up_by_a_locked_store_leave_connections_for_the_probes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # With the store locked by another writer, 32 reports at once each waited its turn on one of the endpoint's 32
    # connections: /healthz and /livez were answered "too many connections" until the reports gave up (REPORT_WAIT).
    from miner import report_intake

    monkeypatch.setattr(report_intake, "REPORT_WAIT", 60.0)  # the ones waiting their turn wait out the test
    service, base = _http_service(tmp_path)
    locker = sqlite3.connect(tmp_path / "miner.sqlite", isolation_level=None)
    try:
        service._store("http").database.execute("PRAGMA busy_timeout = 120000")
        locker.execute("BEGIN IMMEDIATE")
        replies: list[int] = []

        def report() -> None:
            try:
                replies.append(httpx.post(f"{base}/report", json={"service": "MTN"}, timeout=120).status_code)
            except httpx.HTTPError:  # one beyond the connection cap may be cut off before it has sent its report
                replies.append(0)

        threads = [threading.Thread(target=report) for _ in range(40)]
        for thread in threads:
            thread.start()
        # The first waits in SQLite's busy timeout and 7 behind it for their turn (report_intake.REPORT_QUEUE, 8); the
        # others are refused at once, where 31 waited and 8 were turned away for want of a connection.
        wait_for(lambda: len(replies) == 32, timeout=30)
        assert set(replies) <= {503, 0}
        # Logged once a minute, not a line for each report refused.
        assert [r.levelno for r in caplog.records if "reports are being stored or waiting" in r.getMessage()
                and r.levelno >= logging.INFO] == [logging.ERROR]
        assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200
        assert httpx.get(f"{base}/livez", timeout=10).status_code == 200
        locker.execute("ROLLBACK")
        for thread in threads:
            thread.join()
        # Those that waited are answered once the lock is let go: stored, but for the rate limit's (3 an hour).
        assert sorted(replies[32:]) == [202] * 3 + [429] * 5
    finally:
        if locker.in_transaction:
            locker.execute("ROLLBACK")
        locker.close()
        service.stop()


def test_run_port_turns_the_http_endpoint_on(tmp_path: Path) -> None:
    # `miner run --port P` with [server] disabled (the default) served nothing, on P or anywhere, and said nothing.
    # Port 0: any free port, which the (text) log names.
    cfg = write_config(tmp_path, "http://127.0.0.1:9/feed.rss")
    proc = subprocess.Popen([sys.executable, "-m", "miner", "--config", str(cfg), "run", "--port", "0"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    log = _LOGS[proc] = LogReader(proc)
    try:
        port = log.port()
        assert port != 0
        wait_for(lambda: _get(f"http://127.0.0.1:{port}/healthz") in (200, 503), timeout=60, proc=proc)
    finally:
        code, err = stop(proc)
    assert code == 0, err
    assert f"http endpoint on http://127.0.0.1:{port}" in err
    from miner.cli import main

    refused = CliRunner().invoke(main, ["--config", str(cfg), "run", "--no-http", "--port", "0"])
    assert refused.exit_code == 2 and "--port and --no-http exclude each other" in refused.output, refused.output


def test_start_warns_of_each_unset_variable_alerts_need(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    # Read at each send: the service started without a word, and the first alert of an outage failed for good.
    import logging

    from miner.config import parse_config
    from miner.service import Service, ServiceOptions

    for var in ("T_HOOK", "T_USER", "hunter2"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("T_SET", "https://hooks.example.org/x")
    text = ('[alerts.smtp]\nusername_env = "T_USER"\npassword_env = "hunter2"\n'
            '[[alerts.webhooks]]\nname = "set"\nurl_env = "T_SET"\n'
            '[[alerts.webhooks]]\nname = "ops"\nurl_env = "T_HOOK"\n'
            '[[alerts.routes]]\nname = "r"\nemail = ["a@example.org"]\nwebhooks = ["ops", "set"]\n')
    for enabled, expected in ((True, ["alerts.smtp.username_env: T_USER is not set: every email fails until miner is "
                                      "started with it",
                                      "alerts.smtp.password_env: a variable whose name is not shown (it reads as the "
                                      "secret itself) is not set: every email fails until miner is started with it",
                                      "alerts.webhooks[1].url_env: T_HOOK is not set: every alert to this webhook "
                                      "fails until miner is started with it"]),
                              (False, [])):
        caplog.clear()
        config = parse_config(f"[alerts]\nenabled = {str(enabled).lower()}\n" + text)
        service = Service(config, tmp_path / "miner.sqlite", ServiceOptions(jobs=(), http=False))
        with caplog.at_level(logging.WARNING, logger="miner.service"):
            service.start()
        service.stop()
        assert [r.getMessage() for r in caplog.records if r.name == "miner.service"] == expected


def test_start_warns_of_an_smtp_login_sent_unencrypted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    # `config check` warned of it, the service did not: its log, what an operator reads, never said that every
    # email sent the password across the network in the clear.
    import logging

    from miner.config import parse_config
    from miner.service import Service, ServiceOptions

    monkeypatch.setenv("T_USER", "alerts")
    monkeypatch.setenv("T_PW", "pw-8c1f0e2a")
    route = '[[alerts.routes]]\nname = "r"\nemail = ["a@example.org"]\n'
    for smtp, expected in (('host = "mail.example.org"\nsecurity = "none"',
                            ['alerts.smtp: security = "none" sends the login (T_PW) to mail.example.org unencrypted; '
                             "use starttls or ssl (none is for a relay on this machine)"]),
                           ('host = "127.0.0.1"\nsecurity = "none"', []),
                           ('host = "mail.example.org"\nsecurity = "starttls"', [])):
        caplog.clear()
        config = parse_config(f'[alerts.smtp]\n{smtp}\nusername_env = "T_USER"\npassword_env = "T_PW"\n{route}')
        service = Service(config, tmp_path / "miner.sqlite", ServiceOptions(jobs=(), http=False))
        with caplog.at_level(logging.WARNING, logger="miner.service"):
            service.start()
        service.stop()
        assert [r.getMessage() for r in caplog.records if r.name == "miner.service"] == expected
        assert "pw-8c1f0e2a" not in caplog.text


def test_start_warns_of_an_smtp_security_the_port_does_not_speak(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    # `config check` warns of it; the service's log, what an operator reads, must too: the first email fails.
    import logging

    from miner.config import load_config
    from miner.service import Service, ServiceOptions

    cfg = tmp_path / "feeds.toml"
    cfg.write_text('[alerts.smtp]\nhost = "mail.example.org"\nport = 587\nsecurity = "ssl"\n'
                   '[[alerts.routes]]\nname = "r"\nemail = ["a@example.org"]\n')
    service = Service(load_config(cfg), tmp_path / "miner.sqlite", ServiceOptions(jobs=(), http=False))
    with caplog.at_level(logging.WARNING, logger="miner.service"):
        service.start()
    service.stop()
    assert [r.getMessage() for r in caplog.records if r.name == "miner.service"] == [
        f'{cfg}:4: alerts.smtp.security: security = "ssl" with port 587, where servers expect starttls: every email '
        'is likely to fail at its send; use security = "starttls", or port 465 for ssl (a relay that takes it on this '
        "port may ignore this)"]


def test_a_report_the_store_could_not_take_does_not_spend_the_clients_rate_limit(tmp_path: Path) -> None:
    # Each report answered 503 spent one of the client's reports an hour: one who retried through a locked store
    # (`miner prune` run by hand) was answered 429 once it was free, with none of its reports stored.
    service, base = _http_service(tmp_path)  # 3 reports an hour per client
    locker = sqlite3.connect(tmp_path / "miner.sqlite", isolation_level=None)
    try:
        assert httpx.get(f"{base}/healthz").status_code == 200
        service._store("http").database.execute("PRAGMA busy_timeout = 50")
        locker.execute("BEGIN IMMEDIATE")
        assert [httpx.post(f"{base}/report", json={"service": "MTN"}, timeout=60).status_code
                for _ in range(3)] == [503, 503, 503]
        locker.execute("ROLLBACK")
        assert [httpx.post(f"{base}/report", json={"service": "MTN"}, timeout=60).status_code
                for _ in range(4)] == [202, 202, 202, 429]
        assert _stored_posts(tmp_path / "miner.sqlite") == 3
    finally:
        if locker.in_transaction:
            locker.execute("ROLLBACK")
        locker.close()
        service.stop()


def _stored_posts(db: Path) -> int:
    store = Store.open(db)
    try:
        return int(store.database.rows("SELECT count(*) AS n FROM posts")[0]["n"])
    finally:
        store.close()

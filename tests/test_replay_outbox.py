"""Replays as live: a stopped service's queue is left to it, the clock's end writes its alerts, authors count."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner
from streams import CONFIG, T0, write_stream

from miner.classify import Classifier
from miner.cli import main
from miner.collectors.normalise import hash_author
from miner.config import load_config
from miner.pipeline import Pipeline
from miner.replay import read_posts, run_replay
from miner.store import Store
from miner.timeutil import floor_time, iso, parse_iso, utcnow


def closed_port() -> int:
    """A loopback port nothing listens on: a mail server that is down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def shifted(path: Path, out: Path, by: timedelta, prefix: str) -> Path:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    out.write_text("".join(json.dumps({**r, "id": prefix + r["id"],
                                       "created_at": iso(parse_iso(r["created_at"]) + by)}) + "\n" for r in rows))
    return out


def _service_with_a_queue(tmp_path: Path, real_posts: dict[str, list[str]], classifier: Classifier
                          ) -> tuple[Path, Path, Path, Store]:
    """A stopped service's feeds.toml (its SMTP server down), store (open, with the alerts it could not send pending)
    and the stream it ran on."""
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG + '\n[alerts]\ngroup_wait = 0\n\n[[alerts.routes]]\nname = "oncall"\n'
                            'email = ["oncall@example.org"]\n\n[alerts.smtp]\nhost = "127.0.0.1"\n'
                            f'port = {closed_port()}\nsecurity = "none"\ntimeout = 2\n')
    db = tmp_path / "m.sqlite"
    live = write_stream(real_posts, tmp_path / "live.jsonl")
    store = Store.open(db)
    pipeline = Pipeline(load_config(cfg), store, classifier)
    run_replay(read_posts(live), pipeline.bucket, pipeline.tick, until=utcnow())
    return cfg, db, live, store


def test_a_replay_leaves_the_notifications_a_stopped_service_had_pending_to_it(
        tmp_path: Path, runner: CliRunner, real_posts: dict[str, list[str]], classifier: Classifier) -> None:
    # A replay into a stopped service's store took the service's queue: its alerts queued while the mail server was
    # down were written to the replay's files and marked sent, and the service never sent them.
    cfg, db, live, store = _service_with_a_queue(tmp_path, real_posts, classifier)
    pending = {int(r["id"]): int(r["attempts"]) for r in store.outbox_listing(["pending"])}
    store.close()
    assert pending  # queued while the mail server was down

    capture = shifted(live, tmp_path / "capture.jsonl", timedelta(days=3), "c")
    out = tmp_path / "out"
    result = runner.invoke(main, ["--config", str(cfg), "--db", str(db), "replay", str(capture), "--out", str(out)])
    assert result.exit_code == 0, result.output
    store = Store.open(db)
    rows = {int(r["id"]): r for r in store.outbox_listing(["pending", "sending", "sent", "failed"])}
    store.close()
    # Untried by the replay, and still the service's to send
    assert {i: (rows[i]["status"], rows[i]["attempts"]) for i in pending} == {i: ("pending", n)
                                                                              for i, n in pending.items()}
    written = sorted(p.name for p in (out / "outbox").iterdir())
    mine = [i for i, r in rows.items() if i not in pending and r["status"] == "sent"]
    assert mine and len(written) == len(mine)  # the replay's own alert and resolve notice
    assert f"{len(pending)} notifications the store had pending before the replay were left as they were" \
        in result.output


def test_a_replay_adds_nothing_to_a_batch_a_stopped_service_has_waiting(
        tmp_path: Path, runner: CliRunner, real_posts: dict[str, list[str]], classifier: Classifier) -> None:
    # The replay's alerts joined a batch the service had in its group wait: not written by the replay, and sent by the
    # service, for real, when it started again, a replayed outage with its own.
    cfg = tmp_path / "feeds.toml"
    route = '\n[[alerts.routes]]\nname = "oncall"\nemail = ["oncall@example.org"]\n'
    cfg.write_text(CONFIG + "\n[alerts]\ngroup_wait = 500000\n" + route)
    db = tmp_path / "m.sqlite"
    live = write_stream(real_posts, tmp_path / "live.jsonl")
    store = Store.open(db)
    pipeline = Pipeline(load_config(cfg), store, classifier)
    run_replay(read_posts(live), pipeline.bucket, pipeline.tick, until=utcnow())
    waiting = [(int(r["id"]), r["kind"], r["attempts"]) for r in store.outbox_listing(["pending"])]
    store.close()
    assert [(kind, attempts) for _, kind, attempts in waiting] == [("alert", 0)]  # in its group wait (5.8 days)

    cfg.write_text(CONFIG + "\n[alerts]\ngroup_wait = 0\n" + route)
    capture = shifted(live, tmp_path / "capture.jsonl", timedelta(days=3), "c")
    out = tmp_path / "out"
    result = runner.invoke(main, ["--config", str(cfg), "--db", str(db), "replay", str(capture), "--out", str(out)])
    assert result.exit_code == 0, result.output
    store = Store.open(db)
    items = [(int(r["outbox_id"]), int(r["incident_id"])) for r in store.database.rows(
        "SELECT outbox_id, incident_id FROM outbox_items WHERE outbox_id = ?", (waiting[0][0],))]
    store.close()
    assert len(items) == 1  # its own incident only
    assert [p.name.split("-")[2] for p in sorted((out / "outbox").iterdir())] == ["OPEN", "RESOLVED"]


def test_a_killed_replays_rows_are_the_resuming_ones_until_something_else_plans(tmp_path: Path) -> None:
    # The run that resumes a killed replay writes what the killed run had planned (test_crash); once the service (or
    # `miner digest`) has planned a row since, the next replay starts after it, and leaves it to the service.
    db = tmp_path / "m.sqlite"
    now = utcnow()

    def digest(store: Store, key: str) -> None:
        assert store.enqueue_digest(key, "oncall", f"<{key}@x>", {}, now, "digest_anchor:oncall", iso(now))

    service = Store.open(db)
    digest(service, "queued-live")
    replay = Store.open(db)
    assert replay.begin_replay() == 1 and replay.outbox_after == 1
    digest(replay, "planned-by-a-replay-then-killed")
    replay.close()  # killed: no end_replay

    resumed = Store.open(db)
    assert resumed.begin_replay() == 1 and resumed.outbox_after == 1  # the killed run's row is its own
    assert [r["dedupe_key"] for r in resumed.due_notifications(now, 10)] == ["planned-by-a-replay-then-killed"]
    resumed.close()  # killed again

    # Never the service's to send: it sent them for real, and a replay pages nobody
    assert [r["dedupe_key"] for r in service.due_notifications(now, 10)] == ["queued-live"]
    digest(service, "planned-by-the-service")  # the service ran in between
    assert [(r["dedupe_key"], r["status"], r["reason"]) for r in service.outbox_listing(["pending", "suppressed"])] == [
        ("planned-by-the-service", "pending", None),
        ("planned-by-a-replay-then-killed", "suppressed",
         "planned by a replay that did not finish (a replay pages nobody)"),
        ("queued-live", "pending", None)]
    service.close()
    later = Store.open(db)
    assert later.begin_replay() == 2 and later.outbox_after == 3
    assert later.due_notifications(now, 10) == []
    digest(later, "held-past-the-replays-end")
    assert later.end_replay() == 1
    assert later.alert_state("replay_outbox_after") is None
    assert [(r["dedupe_key"], r["reason"]) for r in later.outbox_listing(["suppressed"])][:1] == [
        ("held-past-the-replays-end", "the replay ended before it was due (a replay pages nobody)")]
    later.close()
    service = Store.open(db)
    assert [r["dedupe_key"] for r in service.due_notifications(now, 10)] == ["queued-live", "planned-by-the-service"]
    service.close()


def test_a_capture_ending_in_an_outage_that_opens_at_its_end_writes_its_alert(
        tmp_path: Path, runner: CliRunner, real_posts: dict[str, list[str]]) -> None:
    # The clock stops at the current time: an outage opening at the end of the last bucket before it was alerted
    # group_wait after that, past the clock's end, so its alert was left pending, and the replay wrote no
    # notification at all. A group_wait of a bucket's width (15 min) has it so whenever the test runs.
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG + '\n[alerts]\ngroup_wait = 900\n\n[[alerts.routes]]\nname = "oncall"\n'
                            'email = ["oncall@example.org"]\n')
    rows = [json.loads(line) for line in write_stream(real_posts, tmp_path / "s.jsonl").read_text().splitlines()]
    burst = T0 + timedelta(days=2, minutes=5)  # streams.write_stream's
    rows = [r for r in rows if parse_iso(r["created_at"]) < burst + timedelta(minutes=29)]  # 20 reports in 28.5 min
    # The reports fill the last two buckets that have ended by now: the detector opens the outage at the end of the
    # second (persist_k 2)
    by = floor_time(utcnow(), timedelta(minutes=15)) - timedelta(minutes=29, seconds=30) - burst
    capture = tmp_path / "capture.jsonl"
    capture.write_text("".join(json.dumps({**r, "created_at": iso(parse_iso(r["created_at"]) + by)}) + "\n"
                               for r in rows))
    out = tmp_path / "out"
    result = runner.invoke(main, ["--config", str(cfg), "--db", str(tmp_path / "m.sqlite"), "replay", str(capture),
                                  "--out", str(out)])
    assert result.exit_code == 0, result.output
    store = Store.open(tmp_path / "m.sqlite")
    assert [(i["service"], i["status"]) for i in store.incidents()] == [("MTN", "open")]
    listed = store.outbox_listing(["pending", "sending", "sent"])
    assert [(r["kind"], r["status"]) for r in listed] == [("alert", "sent")]
    clock = store.detector_clock()
    sent_at = [parse_iso(r["sent_at"]) for r in store.outbox_listing(["sent"])]
    store.close()
    assert clock is not None and clock <= utcnow() and all(t <= utcnow() for t in sent_at)  # nothing run ahead
    assert [p.name.split("-")[2] for p in (out / "outbox").iterdir()] == ["OPEN"]
    assert "1 notifications written" in result.output and "pending" not in result.output


def test_a_replayed_author_counts_as_one_complainer_as_live_hashed_as_its_collector_would(
        tmp_path: Path, real_posts: dict[str, list[str]]) -> None:
    # The format had no author: each replayed post counted as a complainer of its own, where live one account posting
    # thirty times is one complaint, so a capture of one noisy account opened an outage the service would not have.
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG + '\n[[sources]]\nname = "test"\ntype = "rss"\nurl = "https://forum.example.org/feed"\n'
                            'services = ["MTN", "Airtel"]\n')
    rows = [json.loads(line) for line in write_stream(real_posts, tmp_path / "s.jsonl").read_text().splitlines()]
    burst = T0 + timedelta(days=2, minutes=5)
    stream = tmp_path / "one-account.jsonl"
    stream.write_text("".join(json.dumps({**r, "author": "@NoisyONE" if n % 2 else "noisyone" if parse_iso(
        r["created_at"]) >= burst else f"user{n}"}) + "\n" for n, r in enumerate(rows)))
    env = {**os.environ, "MINER_HASH_KEY": "a long random secret"}
    result = subprocess.run([sys.executable, "-m", "miner", "--config", str(cfg), "--db", str(tmp_path / "m.sqlite"),
                             "replay", str(stream)], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    conn = sqlite3.connect(tmp_path / "m.sqlite")
    assert conn.execute("SELECT count(*) FROM incidents").fetchone()[0] == 0
    peak = conn.execute("SELECT max(posts), max(complaints) FROM buckets WHERE service = 'MTN'").fetchone()
    hashes = {h for (h,) in conn.execute("SELECT DISTINCT author_hash FROM posts WHERE created_at >= ?", (iso(burst),))}
    conn.close()
    assert peak[0] >= 8 and peak[1] == 1  # "@NoisyONE" and "noisyone" are one account
    # The hash an RSS collector of forum.example.org stores for the handle, never the handle
    assert hashes == {hash_author("NoisyONE", b"a long random secret", "forum.example.org")}


def test_a_silence_at_a_replays_simulated_time_leaves_a_stopped_services_queue_and_silences_alone(
        tmp_path: Path, runner: CliRunner, real_posts: dict[str, list[str]], classifier: Classifier) -> None:
    # Muting queued rows ran on the replay's simulated clock over every pending row: a silence active then suppressed
    # the service's own alerts, never sent; and the clock-ahead retiming moved the service's silence back by days.
    cfg, db, live, store = _service_with_a_queue(tmp_path, real_posts, classifier)
    pending = sorted(int(r["id"]) for r in store.outbox_listing(["pending"]))
    services = {str(i["service"]) for i in store.incidents()}
    assert pending and len(services) == 1
    now = utcnow()
    store.add_silence(services.pop(), T0 - timedelta(days=1), now + timedelta(hours=1), "maintenance", now)
    silences = store.silences()
    store.close()

    capture = shifted(live, tmp_path / "capture.jsonl", timedelta(days=3), "c")
    result = runner.invoke(main, ["--config", str(cfg), "--db", str(db), "replay", str(capture), "--out",
                                  str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    store = Store.open(db)
    rows = {int(r["id"]): r["status"] for r in store.outbox_listing(["pending", "sending", "sent", "suppressed"])}
    assert store.silences() == silences
    store.close()
    assert {i: rows[i] for i in pending} == dict.fromkeys(pending, "pending")

"""A replay's stored and rendered times follow its simulated clock, as a live service's follow the real one."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner
from streams import CONFIG, capture_ending_now, write_stream

from miner.cli import main
from miner.timeutil import floor_time, parse_iso, utcnow

ALERTS = '\n[alerts]\ngroup_wait = 0\n\n[[alerts.routes]]\nname = "oncall"\nemail = ["oncall@example.org"]\n'


def _times(db: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT p.created_at, p.fetched_at, c.classified_at FROM posts p "
                            "JOIN classifications c ON c.post_id = p.id ORDER BY p.id").fetchall()
    conn.close()
    return [(str(a), str(b), str(c)) for a, b, c in rows]


def test_a_replayed_post_is_fetched_and_classified_at_the_tick_it_arrives_at_however_the_replay_runs(
        tmp_path: Path, runner: CliRunner, real_posts: dict[str, list[str]]) -> None:
    # Unpaced, a replay stores up to 2,000 posts ahead of their ticks, to classify them in large batches: they were
    # all classified at the next tick, weeks before some were written (the demo's first 2,000 at its first tick, up
    # to 76 days before), and dated fetched at the last post of the chunk's time, not at their own tick's.
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG)
    stream = write_stream(real_posts, tmp_path / "s.jsonl")
    for name, args in (("prefetched", []), ("paced", ["--speed", "1e9"])):
        result = runner.invoke(main, ["--config", str(cfg), "--db", str(tmp_path / f"{name}.sqlite"), "replay",
                                      str(stream), *args])
        assert result.exit_code == 0, result.output
    prefetched, paced = _times(tmp_path / "prefetched.sqlite"), _times(tmp_path / "paced.sqlite")
    bucket = timedelta(minutes=15)  # streams.CONFIG's
    assert len(prefetched) == len(stream.read_text().splitlines())
    for created, fetched, classified in prefetched:
        assert parse_iso(fetched) == floor_time(parse_iso(created), bucket) + bucket, (created, fetched)
        assert classified == fetched, (created, fetched, classified)
    assert prefetched == paced  # the paced one runs each tick's posts as they arrive, as live


def test_the_digest_of_a_replay_is_as_of_a_time_its_clock_reached(tmp_path: Path, runner: CliRunner,
                                                                  real_posts: dict[str, list[str]]) -> None:
    # The digest was rendered 5 minutes after the busiest incident's last change: for a capture ending now in an
    # outage, after the clock's end, "as of" a time still to come.
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG + ALERTS)
    capture = capture_ending_now(real_posts, tmp_path)
    out = tmp_path / "out"
    result = runner.invoke(main, ["--config", str(cfg), "--db", str(tmp_path / "m.sqlite"), "replay", str(capture),
                                  "--out", str(out)])
    assert result.exit_code == 0, result.output
    end = re.search(r"replayed \d+ posts from .* to (.*) UTC in", result.output)
    shown = re.search(r"digest as of (.*) UTC: ", result.output)
    subject = re.match(r"\[miner\] Digest (.*) UTC: 1 open", (out / "digest-oncall.txt").read_text())
    assert end is not None and shown is not None and subject is not None, result.output
    assert shown[1] == subject[1] <= end[1], result.output
    assert datetime.strptime(shown[1], "%Y-%m-%d %H:%M").replace(tzinfo=UTC) <= utcnow()


def test_a_replay_sends_each_notification_when_it_falls_due_between_its_ticks(
        tmp_path: Path, runner: CliRunner, real_posts: dict[str, list[str]]) -> None:
    # The clock moves a bucket at a time (an hour between posts), and a notification due group_wait after the tick
    # that planned it was sent at the next tick: the demo's alert was dated 18:00 for an incident opened at 17:00
    # ("Since: 17:00 UTC (1 h 00 min)"), where the service's alerts job (every 30 s) sends it at 17:00:30.
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG + ALERTS.replace("group_wait = 0", "group_wait = 60"))
    result = runner.invoke(main, ["--config", str(cfg), "--db", str(tmp_path / "m.sqlite"), "replay",
                                  str(write_stream(real_posts, tmp_path / "s.jsonl")), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(tmp_path / "m.sqlite") as conn:
        rows = conn.execute("SELECT kind, created_at, sent_at FROM outbox ORDER BY id").fetchall()
    conn.close()
    assert [kind for kind, _, _ in rows] == ["alert", "resolved"], rows
    assert [parse_iso(sent) - parse_iso(planned) for _, planned, sent in rows] == [timedelta(seconds=60)] * 2, rows

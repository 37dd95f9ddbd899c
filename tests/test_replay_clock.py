"""A replay's stored and rendered times follow its simulated clock, as a live service's follow the real one."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner
from streams import CONFIG, write_stream

from miner.cli import main
from miner.timeutil import iso, parse_iso, utcnow

ALERTS = '\n[alerts]\ngroup_wait = 0\n\n[[alerts.routes]]\nname = "oncall"\nemail = ["oncall@example.org"]\n'


def test_the_digest_of_a_replay_is_as_of_a_time_its_clock_reached(tmp_path: Path, runner: CliRunner,
                                                                  real_posts: dict[str, list[str]]) -> None:
    # The digest was rendered 5 minutes after the busiest incident's last change: for a capture ending now in an
    # outage, after the clock's end, "as of" a time still to come.
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG + ALERTS)
    rows = [json.loads(line) for line in write_stream(real_posts, tmp_path / "s.jsonl").read_text().splitlines()]
    rows = rows[:-1]  # the burst ends the capture
    shift = utcnow() - timedelta(minutes=2) - parse_iso(rows[-1]["created_at"])
    capture = tmp_path / "capture.jsonl"
    capture.write_text("".join(json.dumps({**r, "created_at": iso(parse_iso(r["created_at"]) + shift)}) + "\n"
                               for r in rows))
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

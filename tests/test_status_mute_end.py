"""`miner status` says when a service's alerts are no longer muted, its silences and maintenance windows taken in
together, as the planner mutes it while any of them holds."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner
from test_silences_provider import CONFIG

from miner.cli import main
from miner.store import Store


def test_status_muted_until_takes_in_silences(tmp_path: Path) -> None:
    # A window ending under a silence said the window's end, and a silence followed by a window (or another
    # silence) said the silence's: the on-call waited for alerts the planner held back for hours more.
    now = datetime.now(UTC).replace(microsecond=0)
    hour = timedelta(hours=1)
    cfg_path = tmp_path / "feeds.toml"
    cfg_path.write_text(CONFIG
                        + f'\n[[alerts.maintenance]]\nservice = "Gmail"\nstart = "{(now - hour).isoformat()}"\n'
                          f'end = "{(now + hour).isoformat()}"\n'
                        + f'\n[[alerts.maintenance]]\nservice = "WhatsApp"\nstart = "{(now + hour).isoformat()}"\n'
                          f'end = "{(now + 2 * hour).isoformat()}"\n')
    db = tmp_path / "miner.sqlite"
    store = Store.open(db)
    try:
        store.add_silence("gmail", now - hour, now + 3 * hour, "", now - hour)  # outlasts the window, any case
        store.add_silence("WhatsApp", now - hour, now + hour, "", now - hour)  # the window starts as it ends
        store.add_silence("Telegram", now - hour, now + hour, "", now - hour)
        store.add_silence("Telegram", now - hour / 6, now + 5 * hour, "", now - hour / 6)  # overlaps the one before
        store.add_silence(None, now - hour, now + hour / 2, "", now - hour, provider="meta")
        store.add_silence("Telegram", now - 3 * hour, now - 2 * hour, "", now - 3 * hour)  # over: mutes nothing
    finally:
        store.close()
    base = ["--config", str(cfg_path), "--db", str(db), "status"]
    run = CliRunner()

    data = json.loads(run.invoke(main, [*base, "--format", "json"]).stdout)

    def at(hours: float) -> str:
        return (now + hours * hour).isoformat()

    assert [(m["service"] or m["provider"], m["until"], m["muted_until"]) for m in data["silences"]] == [
        ("gmail", at(3), at(3)), ("WhatsApp", at(1), at(2)), ("Telegram", at(1), at(5)), ("Telegram", at(5), at(5)),
        ("meta", at(0.5), at(2))]  # the last of its services: WhatsApp, Instagram's mute ends with it
    assert [(w["service"], w["end"], w["muted_until"]) for w in data["maintenance"]] == [
        ("Gmail", at(1), at(3)), ("WhatsApp", at(2), at(2))]

    res = run.invoke(main, base)
    assert res.exit_code == 0, res.output

    def shown(hours: float) -> str:
        return (now + hours * hour).strftime("%Y-%m-%d %H:%M:%S UTC")

    lines = [line for line in res.output.splitlines() if line.startswith("alerts of ")]
    assert lines == [
        f"alerts of gmail silenced until {shown(3)} (silence 1)",
        f"alerts of WhatsApp silenced until {shown(1)} (silence 2), then muted until {shown(2)} by windows or "
        "silences following on",
        f"alerts of Telegram silenced until {shown(1)} (silence 3), then muted until {shown(5)} by windows or "
        "silences following on",
        f"alerts of Telegram silenced until {shown(5)} (silence 4)",
        f"alerts of provider meta (WhatsApp, Instagram) silenced until {shown(0.5)} (silence 5), then some of them "
        f"muted until {shown(2)} by windows or silences following on",
        f"alerts of Gmail muted by maintenance windows or silences until {shown(3)} (alerts.maintenance[0] until "
        f"{shown(1)}, then windows or silences overlapping it)",
        f"alerts of WhatsApp to be muted by a maintenance window from {shown(1)} until {shown(2)} "
        "(alerts.maintenance[1])"]


def test_silence_remove_says_what_stays_muted(tmp_path: Path) -> None:
    # Removing a silence to hear of an outage again said only that it ended: a maintenance window (or another
    # silence) kept the service muted, and the on-call waited for alerts that did not come.
    now = datetime.now(UTC).replace(microsecond=0)
    hour = timedelta(hours=1)
    cfg_path = tmp_path / "feeds.toml"
    cfg_path.write_text(CONFIG + f'\n[[alerts.maintenance]]\nservice = "Gmail"\nstart = "{(now - hour).isoformat()}"\n'
                                 f'end = "{(now + 2 * hour).isoformat()}"\n')
    db = tmp_path / "miner.sqlite"
    Store.open(db).close()
    base = ["--config", str(cfg_path), "--db", str(db), "silence"]
    run = CliRunner()
    for args in (["Gmail"], ["--provider", "Meta"], ["WhatsApp"], ["Telegram"]):
        assert run.invoke(main, [*base, "add", *args, "--for", "3h"]).exit_code == 0

    res = run.invoke(main, [*base, "remove", "1"])
    assert res.exit_code == 0, res.output
    [ended, kept] = res.output.splitlines()
    assert ended.startswith("silence 1 (Gmail) ended at ")
    assert kept == (f"alerts of Gmail stay muted until {(now + 2 * hour).strftime('%Y-%m-%d %H:%M:%S UTC')} by "
                    "other silences or maintenance windows (`miner status` lists them)")

    # A provider's: WhatsApp stays muted by a silence of its own, Instagram is not.
    res = run.invoke(main, [*base, "remove", "2"])
    assert res.exit_code == 0, res.output
    assert [line.split(" until ")[0] for line in res.output.splitlines()[1:]] == ["alerts of WhatsApp stay muted"]

    res = run.invoke(main, [*base, "remove", "4"])  # nothing else mutes Telegram
    assert res.exit_code == 0, res.output
    assert len(res.output.splitlines()) == 1 and "stay muted" not in res.output


def test_a_mute_longer_than_the_horizon_alone_says_its_own_end(tmp_path: Path) -> None:
    # A 30-day silence, or a 10-day window, with nothing following on: its end is known, and status said the alerts
    # were muted "with no end in the next 7 days", by "windows or silences following on" that there were none of.
    now = datetime.now(UTC).replace(microsecond=0)
    day = timedelta(days=1)
    cfg_path = tmp_path / "feeds.toml"
    cfg_path.write_text(CONFIG + f'\n[[alerts.maintenance]]\nservice = "Gmail"\nstart = "{(now - day).isoformat()}"\n'
                                 f'end = "{(now + 10 * day).isoformat()}"\n')
    db = tmp_path / "miner.sqlite"
    store = Store.open(db)
    try:
        store.add_silence("Telegram", now - day, now + 30 * day, "", now - day)
    finally:
        store.close()
    base = ["--config", str(cfg_path), "--db", str(db), "status"]
    data = json.loads(CliRunner().invoke(main, [*base, "--format", "json"]).stdout)
    assert [(m["until"], m["muted_until"]) for m in data["silences"]] == [((now + 30 * day).isoformat(),) * 2]
    assert [(w["end"], w["muted_until"]) for w in data["maintenance"]] == [((now + 10 * day).isoformat(),) * 2]
    res = CliRunner().invoke(main, base)
    assert res.exit_code == 0, res.output
    lines = [line for line in res.output.splitlines() if line.startswith("alerts of ")]
    assert "following on" not in "".join(lines) and "no end" not in "".join(lines), lines


def test_a_silence_until_the_last_year_beside_a_recurring_window_has_no_end_in_sight(tmp_path: Path) -> None:
    # A silence "for good" (until 9999-12-31) looked at past the horizon: the recurring window's span at its end is
    # past the last date there is, and its OverflowError came out of status as an internal error.
    now = datetime.now(UTC).replace(microsecond=0)
    cfg_path = tmp_path / "feeds.toml"
    cfg_path.write_text(CONFIG + '\n[[alerts.maintenance]]\nservice = "Telegram"\ncron = "0 3 * * *"\n'
                                 'duration_minutes = 60\n')
    db = tmp_path / "miner.sqlite"
    store = Store.open(db)
    try:
        store.add_silence("Telegram", now - timedelta(hours=1), datetime(9999, 12, 31, 23, tzinfo=UTC), "", now)
    finally:
        store.close()
    res = CliRunner().invoke(main, ["--config", str(cfg_path), "--db", str(db), "status", "--format", "json"])
    assert res.exit_code == 0, res.output
    assert [m["muted_until"] for m in json.loads(res.stdout)["silences"]] == [None]

"""Silences of a provider: one row that mutes every service feeds.toml gives the provider, stored by a migration,
applied by the planner (also to queued items), listed and removed by the CLI."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from test_alerts_support import T0, open_incident, settings

from miner.alerts import plan_notifications
from miner.alerts.settings import AlertSettings, RouteSettings
from miner.cli import main
from miner.config import parse_config
from miner.store import Store
from miner.store.migrations import MIGRATIONS, apply_migrations

CONFIG = """
[[services]]
name = "WhatsApp"
provider = "Meta"

[[services]]
name = "Instagram"
provider = "Meta"

[[services]]
name = "Telegram"

[[services]]
name = "Gmail"
provider = "Google"

[alerts]
from_addr = "miner <miner@example.org>"

[[alerts.routes]]
name = "oncall"
email = ["oncall@example.org"]
"""

META = {"whatsapp": "Meta", "instagram": "Meta", "gmail": "Google"}


def cfg(providers: dict[str, str] = META, **overrides: object) -> AlertSettings:
    route = RouteSettings(name="oncall", email=("oncall@example.org",))
    return settings(routes=(route,), webhooks=(), providers=providers, **overrides)


def items(store: Store) -> dict[str, dict[str, Any]]:
    """Per service, the outbox row its (only) item is in."""
    out = {}
    for row in store.outbox_listing(["pending", "sending", "sent", "failed", "suppressed"]):
        for it in store.notification_items(int(row["id"])):
            out[str(store.incident(it["incident_id"])["service"])] = row  # type: ignore[index]
    return out


def test_the_config_gives_the_alerts_each_services_provider() -> None:
    config = parse_config(CONFIG, "x.toml")
    assert config.alerts.providers == META
    assert config.alerts.provider_of("WHATSAPP") == "Meta" and config.alerts.provider_of("Telegram") is None


def test_a_provider_silence_mutes_its_services_only_and_says_so(store: Store) -> None:
    sid = store.add_silence(None, T0, T0 + timedelta(hours=2), "Meta-wide", T0, provider="Meta")
    for service in ("WhatsApp", "Instagram", "Telegram", "Gmail"):
        open_incident(store, service, T0, posts=False, series=False)
    plan_notifications(store, cfg(), T0)
    rows = items(store)
    for service in ("WhatsApp", "Instagram"):
        assert rows[service]["status"] == "suppressed"
        assert rows[service]["reason"] == (f"silenced by silence #{sid} of provider Meta until "
                                           f"{(T0 + timedelta(hours=2)).isoformat()} (Meta-wide)")
    assert rows["Telegram"]["status"] == rows["Gmail"]["status"] == "pending"
    # Services without a provider are each a group of their own (group_by = "provider").
    assert rows["Telegram"]["id"] != rows["Gmail"]["id"]


def test_a_provider_silence_follows_the_config_a_service_added_later_and_one_moved_away(store: Store) -> None:
    # One silence row: a service given the provider after it was added is muted too (no second silence needed);
    # one whose provider changed is not muted any more. Provider names match in any case.
    store.add_silence(None, T0, T0 + timedelta(hours=2), "", T0, provider="meta")
    later = {"whatsapp": "Other", "messenger": "Meta"}
    for service in ("WhatsApp", "Messenger"):
        open_incident(store, service, T0, posts=False, series=False)
    plan_notifications(store, cfg(later), T0)
    rows = items(store)
    assert rows["Messenger"]["status"] == "suppressed" and "of provider meta" in rows["Messenger"]["reason"]
    assert rows["WhatsApp"]["status"] == "pending"
    assert len(store.silences()) == 1


def test_a_provider_silence_mutes_what_is_queued_and_its_end_announces_what_is_still_open(store: Store) -> None:
    c = cfg(group_wait=60.0)
    for service in ("WhatsApp", "Telegram"):
        open_incident(store, service, T0, posts=False, series=False)
    plan_notifications(store, c, T0)
    assert {r["status"] for r in items(store).values()} == {"pending"}
    sid = store.add_silence(None, T0, T0 + timedelta(hours=1), "", T0 + timedelta(seconds=10), provider="Meta")
    plan_notifications(store, c, T0 + timedelta(seconds=20))
    rows = items(store)
    assert rows["WhatsApp"]["status"] == "suppressed"
    assert str(rows["WhatsApp"]["reason"]).startswith(f"silenced by silence #{sid} of provider Meta until ")
    assert rows["Telegram"]["status"] == "pending"
    # Removed while WhatsApp is still open: announced at the next planning, as after a service's silence.
    assert store.end_silence(sid, T0 + timedelta(minutes=5))[0] == "ended"
    plan_notifications(store, c, T0 + timedelta(minutes=5))
    late = [r for r in store.outbox_listing(["pending"]) if str(r["dedupe_key"]).startswith("open:1:unmuted:")]
    assert len(late) == 1


def test_the_migration_keeps_the_silences_and_lets_a_row_name_a_provider(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path, isolation_level=None) as conn:
        apply_migrations(conn, MIGRATIONS[:6])  # a store as the miner before provider silences left it
        conn.execute("INSERT INTO silences (service, starts_at, ends_at, comment, created_at) VALUES "
                     "('WhatsApp', '2026-11-27T12:00:00+00:00', '2026-11-27T14:00:00+00:00', 'deploy', "
                     "'2026-11-27T12:00:00+00:00')")
    conn.close()
    store = Store.open(path)
    try:
        [old] = store.silences()
        assert (old["id"], old["service"], old["provider"], old["comment"]) == (1, "WhatsApp", None, "deploy")
        assert store.add_silence(None, T0, T0 + timedelta(hours=1), "", T0, provider="Meta") == 2
        with pytest.raises(sqlite3.IntegrityError), store.database.transaction() as conn:  # one or the other
            conn.execute("INSERT INTO silences (service, provider, starts_at, ends_at, created_at) "
                         "VALUES ('WhatsApp', 'Meta', 'a', 'b', 'c')")
        with pytest.raises(ValueError, match="a service or of a provider"):
            store.add_silence("WhatsApp", T0, T0, "", T0, provider="Meta")
    finally:
        store.close()


def test_cli_silences_a_provider_in_one_row_and_refuses_what_is_unclear(tmp_path: Path) -> None:
    cfg_path = tmp_path / "feeds.toml"
    cfg_path.write_text(CONFIG)
    db = tmp_path / "miner.sqlite"
    Store.open(db).close()
    run = CliRunner()
    base = ["--config", str(cfg_path), "--db", str(db)]

    res = run.invoke(main, [*base, "silence", "add", "--provider", "meta", "--for", "2h", "--comment", "Meta-wide"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("silence 1: provider Meta (WhatsApp, Instagram) until ")
    listed = run.invoke(main, [*base, "silence", "list"]).output.splitlines()
    assert len(listed) == 3 and listed[2].split()[:3] == ["1", "provider", "Meta"] and "Meta-wide" in listed[2]

    res = run.invoke(main, [*base, "silence", "add", "--provider", "Amazon", "--for", "2h"])
    assert res.exit_code == 1 and "unknown provider 'Amazon' (providers: Google, Meta)" in res.output
    res = run.invoke(main, [*base, "silence", "add", "WhatsApp", "--provider", "Meta", "--for", "2h"])
    assert res.exit_code == 1 and "give SERVICE or --provider, not both" in res.output
    res = run.invoke(main, [*base, "silence", "add", "--for", "2h"])
    assert res.exit_code == 1 and "give the SERVICE to silence, or --provider NAME" in res.output
    assert len(run.invoke(main, [*base, "silence", "list"]).output.splitlines()) == 3  # nothing more stored

    res = run.invoke(main, [*base, "silence", "remove", "1"])
    assert res.exit_code == 0 and "silence 1 (provider Meta) ended at" in res.output
    res = run.invoke(main, [*base, "silence", "remove", "1"])
    assert res.exit_code == 1 and "silence 1 (provider Meta) already ended at" in res.output
    listed = run.invoke(main, [*base, "silence", "list", "--all"]).output.splitlines()
    assert listed[2].split()[:3] == ["1", "provider", "Meta"] and "expired" in listed[2]


def test_cli_a_provider_silence_with_no_providers_configured(tmp_path: Path) -> None:
    cfg_path = tmp_path / "feeds.toml"
    cfg_path.write_text(CONFIG.replace('provider = "Meta"\n', "").replace('provider = "Google"\n', ""))
    db = tmp_path / "miner.sqlite"
    Store.open(db).close()
    res = CliRunner().invoke(main, ["--config", str(cfg_path), "--db", str(db), "silence", "add", "--provider",
                                    "Meta", "--for", "1h"])
    assert res.exit_code == 1 and "unknown provider 'Meta' (providers: none configured)" in res.output


def test_cli_an_unknown_service_or_provider_is_answered_with_the_near_name(tmp_path: Path) -> None:
    # "unknown service 'Café' (services: Café)": a name pasted decomposed (cafe + U+0301, as from a Mac) looks the
    # same as the declared one, and the error read as nonsense; config check and the read API say which was meant.
    cfg_path = tmp_path / "feeds.toml"
    cfg_path.write_text(CONFIG.replace('"Telegram"', '"Caf\u00e9"').replace('"Google"', '"T\u00e9l\u00e9com"'),
                        encoding="utf-8")
    db = tmp_path / "miner.sqlite"
    Store.open(db).close()
    base = ["--config", str(cfg_path), "--db", str(db), "silence", "add"]
    run = CliRunner()
    res = run.invoke(main, [*base, "Cafe\u0301", "--for", "1h"])
    assert res.exit_code == 1
    assert res.output == ("Error: unknown service 'Cafe\u0301' (did you mean 'Caf\u00e9'? it looks the same, but its "
                          "accents are written with other Unicode characters) (services: WhatsApp, Instagram, "
                          "Caf\u00e9, Gmail)\n")
    res = run.invoke(main, [*base, "Whatsap", "--for", "1h"])
    assert res.exit_code == 1 and "unknown service 'Whatsap' (did you mean 'WhatsApp'?) (services: " in res.output
    res = run.invoke(main, [*base, "--provider", "Te\u0301le\u0301com", "--for", "1h"])
    assert res.exit_code == 1
    assert res.output.startswith("Error: unknown provider 'Te\u0301le\u0301com' (did you mean 'T\u00e9l\u00e9com'? it "
                                 "looks the same")
    res = run.invoke(main, [*base, "--provider", "Amazon", "--for", "1h"])
    assert res.output == "Error: unknown provider 'Amazon' (providers: Meta, T\u00e9l\u00e9com)\n"
    assert run.invoke(main, [*base, "caf\u00c9", "--for", "1h"]).exit_code == 0  # any case, as the config matches


def test_status_shows_the_silences_muting_alerts_now(tmp_path: Path) -> None:
    # Only `miner silence list` showed them: in an outage, status showed a service's incident and no alert of it
    # came, with nothing there saying why.
    cfg_path = tmp_path / "feeds.toml"
    cfg_path.write_text(CONFIG)
    db = tmp_path / "miner.sqlite"
    store = Store.open(db)
    now = datetime.now(UTC).replace(microsecond=0)
    store.add_silence("Telegram", now - timedelta(hours=3), now - timedelta(hours=1), "ended", now)
    store.add_silence(None, now - timedelta(minutes=5), now + timedelta(hours=2), "Meta-wide outage", now,
                      provider="Meta")
    store.add_silence("Gmail", now - timedelta(minutes=1), now + timedelta(minutes=30), "", now)
    store.add_silence("Telegram", now + timedelta(hours=1), now + timedelta(hours=2), "later", now)
    store.close()
    base = ["--config", str(cfg_path), "--db", str(db), "status"]
    run = CliRunner()

    res = run.invoke(main, base)
    assert res.exit_code == 0, res.output
    lines = [line for line in res.output.splitlines() if " silenced until " in line]
    until = (now + timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert lines[0] == (f"alerts of provider Meta (WhatsApp, Instagram) silenced until {until} (silence 2): "
                        "Meta-wide outage")
    assert lines[1].startswith("alerts of Gmail silenced until ") and lines[1].endswith(" (silence 3)")
    assert len(lines) == 2  # the ended and the one to come are not muting anything now

    data = json.loads(run.invoke(main, [*base, "--format", "json"]).stdout)
    assert [(m["id"], m["service"], m["provider"], m["services"], m["comment"]) for m in data["silences"]] == [
        (2, None, "Meta", ["WhatsApp", "Instagram"], "Meta-wide outage"), (3, "Gmail", None, ["Gmail"], "")]
    assert data["silences"][1]["until"] == (now + timedelta(minutes=30)).isoformat()


def test_status_shows_the_maintenance_windows_muting_alerts_now_and_the_next_24_h(tmp_path: Path) -> None:
    # A window mutes as a silence does, and status showed only the silences: an incident there with no alert of it
    # said nothing of the window behind that.
    now = datetime.now(UTC).replace(microsecond=0)

    def window(service: str, start: datetime, end: datetime, comment: str = "") -> str:
        return (f'\n[[alerts.maintenance]]\nservice = "{service}"\nstart = "{start.isoformat()}"\n'
                f'end = "{end.isoformat()}"\ncomment = "{comment}"\n')

    cfg_path = tmp_path / "feeds.toml"
    cfg_path.write_text(CONFIG
                        + window("Telegram", now - timedelta(hours=3), now - timedelta(hours=1), "over")
                        + window("Gmail", now - timedelta(hours=1), now + timedelta(hours=2), "mail migration")
                        + window("WhatsApp", now + timedelta(hours=3), now + timedelta(hours=4))
                        + window("Instagram", now + timedelta(hours=30), now + timedelta(hours=31), "too far")
                        + '\n[[alerts.maintenance]]\nservice = "Telegram"\ncron = "* * * * *"\n'
                          'duration_minutes = 120\ncomment = "always"\n')
    db = tmp_path / "miner.sqlite"
    Store.open(db).close()
    base = ["--config", str(cfg_path), "--db", str(db), "status"]
    run = CliRunner()

    res = run.invoke(main, base)
    assert res.exit_code == 0, res.output
    lines = [line for line in res.output.splitlines() if "maintenance window" in line]

    def shown(t: datetime) -> str:
        return t.strftime("%Y-%m-%d %H:%M:%S UTC")

    assert lines[0] == (f"alerts of Gmail muted by a maintenance window until {shown(now + timedelta(hours=2))} "
                        "(alerts.maintenance[1]): mail migration")
    assert lines[1] == (f"alerts of WhatsApp to be muted by a maintenance window from "
                        f"{shown(now + timedelta(hours=3))} until {shown(now + timedelta(hours=4))} "
                        "(alerts.maintenance[2])")
    # Every minute for two hours: each window starts before the last ended, and the alerts stay muted.
    assert lines[2].startswith("alerts of Telegram muted by maintenance windows or silences with no end in the next 7 "
                               "days: they follow on without a gap (alerts.maintenance[4] until ")
    assert lines[2].endswith(", then windows or silences overlapping it): always")
    assert len(lines) == 3  # the one over and the one beyond 24 h are not shown

    data = json.loads(run.invoke(main, [*base, "--format", "json"]).stdout)
    assert [(w["window"], w["service"], w["active"], w["comment"]) for w in data["maintenance"]] == [
        (1, "Gmail", True, "mail migration"), (2, "WhatsApp", False, ""), (4, "Telegram", True, "always")]
    assert data["maintenance"][0]["start"] == (now - timedelta(hours=1)).isoformat()
    assert data["maintenance"][1]["end"] == (now + timedelta(hours=4)).isoformat()
    cron = data["maintenance"][2]
    assert datetime.fromisoformat(cron["start"]) <= datetime.now(UTC) < datetime.fromisoformat(cron["end"])
    assert [w["muted_until"] for w in data["maintenance"]] == [
        (now + timedelta(hours=2)).isoformat(), (now + timedelta(hours=4)).isoformat(), None]


def test_status_says_when_overlapping_maintenance_windows_stop_muting(tmp_path: Path) -> None:
    # The planner mutes a service while any of its windows is in effect: status said each window's own end, though
    # the next one (overlapping it, or starting as it ends) kept the alerts muted past it.
    now = datetime.now(UTC).replace(microsecond=0)

    def window(service: str, start: timedelta, end: timedelta) -> str:
        return (f'\n[[alerts.maintenance]]\nservice = "{service}"\nstart = "{(now + start).isoformat()}"\n'
                f'end = "{(now + end).isoformat()}"\n')

    hours = [timedelta(hours=h) for h in range(8)]
    cfg_path = tmp_path / "feeds.toml"
    cfg_path.write_text(CONFIG
                        + window("Gmail", -hours[1], hours[1]) + window("gmail", hours[1] / 2, hours[3])
                        + window("Gmail", hours[3], hours[4])  # starts as the one before ends
                        + window("Gmail", hours[4] + timedelta(seconds=1), hours[7])  # a second after: alerts then
                        + window("WhatsApp", hours[5], hours[6]) + window("WhatsApp", hours[2], hours[5] + hours[1] / 2)
                        + window("Instagram", hours[2], hours[3]))
    db = tmp_path / "miner.sqlite"
    Store.open(db).close()
    base = ["--config", str(cfg_path), "--db", str(db), "status"]
    run = CliRunner()

    res = run.invoke(main, base)
    assert res.exit_code == 0, res.output

    def shown(hour: float, seconds: int = 0) -> str:
        return (now + timedelta(hours=hour, seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S UTC")

    then = "then windows or silences overlapping it"
    assert [line for line in res.output.splitlines() if "maintenance window" in line] == [
        f"alerts of Gmail muted by maintenance windows or silences until {shown(4)} (alerts.maintenance[0] until "
        f"{shown(1)}, {then})",
        f"alerts of gmail to be muted by maintenance windows or silences from {shown(0.5)} until {shown(4)} "
        f"(alerts.maintenance[1] until {shown(3)}, {then})",
        f"alerts of Gmail to be muted by a maintenance window from {shown(3)} until {shown(4)} (alerts.maintenance[2])",
        f"alerts of Gmail to be muted by a maintenance window from {shown(4, 1)} until {shown(7)} "
        "(alerts.maintenance[3])",
        # The one overlapping it ends before it: its own end is the mute's.
        f"alerts of WhatsApp to be muted by a maintenance window from {shown(5)} until {shown(6)} "
        "(alerts.maintenance[4])",
        f"alerts of WhatsApp to be muted by maintenance windows or silences from {shown(2)} until {shown(6)} "
        f"(alerts.maintenance[5] until {shown(5.5)}, {then})",
        f"alerts of Instagram to be muted by a maintenance window from {shown(2)} until {shown(3)} "
        "(alerts.maintenance[6])"]

    data = json.loads(run.invoke(main, [*base, "--format", "json"]).stdout)
    assert [(w["window"], w["end"], w["muted_until"]) for w in data["maintenance"]] == [
        (i, (now + end).isoformat(), (now + muted).isoformat()) for i, end, muted in (
            (0, hours[1], hours[4]), (1, hours[3], hours[4]), (2, hours[4], hours[4]),
            (3, hours[7], hours[7]), (4, hours[6], hours[6]), (5, hours[5] + hours[1] / 2, hours[6]),
            (6, hours[3], hours[3]))]

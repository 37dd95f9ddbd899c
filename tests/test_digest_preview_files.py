"""`miner digest --dry-run` into a folder it wrote to before: the folder holds this preview's files, not the last one's
charts of incidents it no longer shows; another route's preview and other files there are left as they are. And the
route it previews must be one that gets a digest."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner
from test_alerts_support import T0, open_incident, resolve

from miner.cli import main
from miner.store import Store

CONFIG = """
[[services]]
name = "WhatsApp"

[[services]]
name = "Airtel"

[alerts]
from_addr = "miner <miner@example.org>"

[[alerts.routes]]
name = "oncall"
email = ["oncall@example.org"]

[[alerts.routes]]
name = "oncall-airtel"
email = ["airtel@example.org"]
services = ["Airtel"]

[[alerts.webhooks]]
name = "chat"
url_env = "MINER_TEST_CHAT_URL"
format = "slack"

[[alerts.routes]]
name = "chat-only"
webhooks = ["chat"]
"""


def _digest_files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.name.startswith("digest-")}


def test_a_second_preview_into_the_folder_leaves_no_chart_of_the_first_ones_incidents(tmp_path: Path) -> None:
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG)
    db = tmp_path / "miner.sqlite"
    store = Store.open(db)
    whatsapp = open_incident(store, "WhatsApp", T0)  # open from 12:00
    airtel = open_incident(store, "Airtel", T0 - timedelta(hours=3))
    resolve(store, airtel, T0 - timedelta(hours=1))  # open 09:00 to 11:00
    store.close()
    out = tmp_path / "preview"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    run = CliRunner()
    base = ["--config", str(cfg), "--db", str(db), "digest", "--dry-run", "--out", str(out)]

    # The Airtel route's preview while both were open, then the whole route's, as of 12:50: both incidents charted.
    res = run.invoke(main, [*base, "--route", "oncall-airtel", "--at", "2026-11-27T10:00Z"])
    assert res.exit_code == 0, res.output
    res = run.invoke(main, [*base, "--route", "oncall", "--at", "2026-11-27T12:50Z"])
    assert res.exit_code == 0, res.output
    assert {f"digest-oncall-chart-{whatsapp}.png", f"digest-oncall-chart-{airtel}.png",
            f"digest-oncall-airtel-chart-{airtel}.png"} <= _digest_files(out)

    # As of 10:00 the route's digest shows Airtel alone: WhatsApp's chart of the earlier preview is gone with it.
    res = run.invoke(main, [*base, "--route", "oncall", "--at", "2026-11-27T10:00Z"])
    assert res.exit_code == 0, res.output
    written = {Path(line).name for line in res.output.splitlines()}
    assert written == {"digest-oncall.eml", "digest-oncall.html", "digest-oncall.txt",
                       f"digest-oncall-chart-{airtel}.png"}
    # What is left of the other route's preview is whole, and a file not miner's stays.
    assert _digest_files(out) == written | {"digest-oncall-airtel.eml", "digest-oncall-airtel.html",
                                            "digest-oncall-airtel.txt", f"digest-oncall-airtel-chart-{airtel}.png"}
    assert (out / "notes.txt").read_text() == "mine"
    assert f"digest-oncall-chart-{whatsapp}.png" not in (out / "digest-oncall.html").read_text()


def test_a_preview_of_a_route_without_email_is_refused_as_queueing_its_digest_is(tmp_path: Path) -> None:
    # Digests go by email only: rendered, the preview of a webhook-only route read as a digest it would get.
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG)
    db = tmp_path / "miner.sqlite"
    store = Store.open(db)
    open_incident(store, "WhatsApp", T0)
    store.close()
    out = tmp_path / "preview"
    run = CliRunner()
    base = ["--config", str(cfg), "--db", str(db), "digest"]
    res = run.invoke(main, [*base, "--route", "chat-only"])
    assert res.exit_code == 1 and "no route named 'chat-only' with email" in res.output, res.output
    res = run.invoke(main, [*base, "--dry-run", "--out", str(out), "--route", "chat-only", "--at", "2026-11-27T12:50Z"])
    assert res.exit_code == 1, res.output
    assert "Error: route 'chat-only' has no email: digests go by email only, so it gets none" in res.output
    assert not out.exists()

"""`miner status` names the notifications that failed for good, which only `miner outbox` and the log showed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from smtp_server import SmtpServer
from sqlplan import query_plan
from test_alerts_support import open_incident

from miner.cli import main
from miner.store import Store
from miner.store.channel_health import FAILED_SQL
from miner.timeutil import utcnow

CONFIG = """
[[services]]
name = "WhatsApp"

[[services]]
name = "Telegram"

[alerts]
from_addr = "miner <miner@example.org>"
group_wait = 0

[alerts.smtp]
host = "127.0.0.1"
port = PORT
security = "starttls"
username_env = "MINER_T_USER"
password_env = "MINER_T_PASS"
ca_file = "CA"
timeout = 5

[[alerts.routes]]
name = "oncall"
email = ["oncall@example.org"]
"""


def test_status_says_how_many_notifications_failed_for_good_until_they_are_retried(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every email failed permanently, its SMTP password's variable unset, and status said nothing: the server was
    # never tried, so no channel was found unreachable.
    server = SmtpServer(tls="starttls", folder=tmp_path, login=("alerts", "s3cret"))
    server.start()
    try:
        cfg, db = tmp_path / "feeds.toml", tmp_path / "miner.sqlite"
        cfg.write_text(CONFIG.replace("PORT", str(server.port)).replace("CA", str(tmp_path / "cert.pem")))
        base = ["--config", str(cfg), "--db", str(db)]
        monkeypatch.setenv("MINER_T_USER", "alerts")
        monkeypatch.delenv("MINER_T_PASS", raising=False)
        run = CliRunner()
        store = Store.open(db)
        open_incident(store, "WhatsApp", utcnow())
        store.close()

        def status() -> tuple[str, dict[str, object] | None]:
            text, data = run.invoke(main, [*base, "status"]), run.invoke(main, [*base, "status", "--format", "json"])
            assert text.exit_code == 0 and data.exit_code == 0, text.output + data.output
            return text.output, json.loads(data.output)["failed_notifications"]

        assert status() == (status()[0], None) and "failed for good" not in status()[0]
        run.invoke(main, [*base, "outbox", "send"])
        store = Store.open(db)
        open_incident(store, "Telegram", utcnow(), series=False)
        store.close()
        run.invoke(main, [*base, "outbox", "send"])

        text, failed = status()
        assert failed is not None
        reason = "SMTP password: environment variable MINER_T_PASS is not set"
        assert (failed["count"], failed["last_channel"], failed["last_reason"]) == (2, "email", reason)
        assert failed["since"] and failed["last_failed_at"] and str(failed["since"]) <= str(failed["last_failed_at"])
        store = Store.open(db, readonly=True)
        ids = sorted(int(r["id"]) for r in store.outbox_listing(["failed"]))
        store.close()
        assert failed["last_id"] == ids[-1]
        lines = text.splitlines()
        [at] = [i for i, line in enumerate(lines) if "failed for good" in line]
        first, second = lines[at:at + 2]
        assert first.startswith("2 notifications failed for good since 20")
        assert f", the last (outbox {ids[-1]}, email) at 20" in first and first.endswith(f"UTC: {reason}")
        assert second == ("`miner outbox` lists them with each reason; once the cause is fixed, `miner outbox retry "
                          "ID` sends one again")

        # Fixed and retried: sent, and status says nothing of them.
        monkeypatch.setenv("MINER_T_PASS", "s3cret")
        for outbox_id in ids:
            assert run.invoke(main, [*base, "outbox", "retry", str(outbox_id)]).exit_code == 0
        sent = run.invoke(main, [*base, "outbox", "send"])
        assert sent.exit_code == 0 and len(server.inbox.messages) == 2, sent.output
        text, failed = status()
        assert failed is None and "failed for good" not in text
    finally:
        server.stop()


def test_the_failed_notifications_are_read_by_their_status_not_through_the_whole_outbox(tmp_path: Path) -> None:
    # `miner status` reads them at each run, and the outbox keeps its sent rows for the retention period.
    store = Store.open(tmp_path / "miner.sqlite")
    plan = query_plan(store.database.conn, FAILED_SQL)
    store.close()
    assert "SEARCH o USING INDEX outbox_due (status=?)" in plan, plan
    assert not [step for step in plan if step.startswith("SCAN o")], plan

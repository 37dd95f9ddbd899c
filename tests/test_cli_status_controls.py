"""`miner status` prints no other party's control characters to the terminal: a mail server's reply, a source's
error and a silence's comment are shown with them escaped (\\x1b), as the tables and `miner outbox` show them."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from smtp_server import SmtpServer, smtp_server  # noqa: F401  (fixture)
from test_alerts_support import open_incident

from miner.cli import main
from miner.store import Store
from miner.timeutil import utcnow

CONFIG = """
[[services]]
name = "WhatsApp"

[alerts]
from_addr = "miner <miner@example.org>"
group_wait = 0

[alerts.smtp]
host = "127.0.0.1"
port = PORT
security = "none"
timeout = 5

[[alerts.routes]]
name = "oncall"
email = ["oncall@example.org"]
"""

# Sets the terminal's title, clears the screen and turns what follows red: what a hostile or broken server may send.
HOSTILE = "\x1b]0;pwned\x07\x1b[2Jmailbox unavailable \x1b[31mred"


def test_a_mail_servers_reply_and_a_silences_comment_reach_the_terminal_escaped(
        tmp_path: Path, smtp_server: SmtpServer) -> None:  # noqa: F811
    cfg, db = tmp_path / "feeds.toml", tmp_path / "miner.sqlite"
    cfg.write_text(CONFIG.replace("PORT", str(smtp_server.port)))
    base = ["--config", str(cfg), "--db", str(db)]
    store = Store.open(db)
    open_incident(store, "WhatsApp", utcnow())
    store.close()
    smtp_server.inbox.reject_rcpt = f"550 {HOSTILE}"
    run = CliRunner()
    res = run.invoke(main, [*base, "outbox", "send"])
    assert res.exit_code == 1, res.output  # the alert refused for good: a 5xx for its only recipient
    res = run.invoke(main, [*base, "silence", "add", "WhatsApp", "--for", "1h", "--comment", "on it \x1b[2J\x07"])
    assert res.exit_code == 0, res.output

    # color=True: as on a terminal, where click strips nothing (it strips only colour codes, and only elsewhere).
    res = run.invoke(main, [*base, "status"], color=True)
    assert res.exit_code == 0, res.output
    assert "\x1b" not in res.output and "\x07" not in res.output, repr(res.output)
    assert "550 \\x1b]0;pwned\\x07\\x1b[2Jmailbox unavailable \\x1b[31mred" in res.output
    assert "(silence 1): on it \\x1b[2J\\x07" in res.output

"""Recording an attempt the server took, while another writer holds the store: a real SQLite file, a second
connection holding its write lock, and a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import sqlite3
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

from smtp_server import SmtpServer, smtp_server  # noqa: F401  (fixture)
from test_alerts_email import mail_settings
from test_alerts_support import T0, open_incident

from miner.alerts import dispatch, plan_notifications
from miner.store import Store


def test_a_message_the_server_took_is_recorded_sent_while_another_writer_holds_the_store(
        tmp_path: Path, smtp_server: SmtpServer) -> None:  # noqa: F811
    # Marking it sent raised "database is locked" out of the run, the row left claimed: sent again once the claim
    # lapsed, a duplicate of a message the server had taken.
    path = tmp_path / "miner.sqlite"
    store = Store.open(path)
    store.database.conn.execute("PRAGMA busy_timeout = 50")  # the lock below outlasts it many times over
    cfg = mail_settings(smtp_server, group_wait=0.0)
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    accept = smtp_server.inbox.handle_DATA

    async def accept_as_another_writer_takes_the_store(*args: Any) -> str:
        reply = await accept(*args)
        other.execute("BEGIN IMMEDIATE")  # a prune, a backup, `miner outbox retry`: held past the busy timeout
        threading.Timer(0.5, other.execute, ("COMMIT",)).start()
        return reply

    smtp_server.inbox.handle_DATA = accept_as_another_writer_takes_the_store  # type: ignore[method-assign]
    try:
        stats = dispatch(store, cfg, T0, worker_id="w")
        assert (stats.sent, stats.lapsed) == (1, 0)
        [row] = store.outbox_rows(["sent"])
        later = dispatch(store, cfg, T0 + timedelta(seconds=cfg.lease_seconds + 1), worker_id="w2")
        assert (later.reclaimed, later.claimed) == (0, 0)
        assert smtp_server.inbox.message_ids() == [row["message_id"]]
    finally:
        other.close()
        store.close()

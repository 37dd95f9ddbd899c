"""A message waits for an older alert of its incident, route and channel that is still to go (store/outbox_order.py)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from smtp_server import Inbox, SmtpServer
from test_alerts_support import T0, open_incident, resolve, settings

from miner.alerts import dispatch, plan_notifications
from miner.alerts.settings import AlertSettings, RouteSettings, SmtpSettings
from miner.cli import main
from miner.store import Store
from miner.timeutil import parse_iso

ROOT = Path(__file__).resolve().parent.parent


class _HeldInbox(Inbox):
    """The first message's DATA waits until the test releases it, then is refused for now (451)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = threading.Event()
        self.release = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if not self.arrived.is_set():
            self.arrived.set()
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 30)
            return "451 4.3.0 Local error in processing, try again later"
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def held() -> Iterator[tuple[SmtpServer, _HeldInbox]]:
    """A mail server whose first message's DATA waits for the test (_HeldInbox), and its inbox."""
    server = SmtpServer()
    server.inbox = inbox = _HeldInbox()
    server.start()
    try:
        yield server, inbox
    finally:
        server.stop()


def _mail(server: SmtpServer) -> AlertSettings:
    smtp = SmtpSettings(host="127.0.0.1", port=server.port, security="none", timeout=30)
    return settings(routes=(RouteSettings(name="oncall", email=("oncall@example.org",)),), webhooks=(), smtp=smtp,
                    group_wait=0.0)


def _resolved_while_sending(store: Store, inbox: _HeldInbox, cfg: AlertSettings) -> tuple[dict[str, Any],
                                                                                    dict[str, Any]]:
    """An alert whose first attempt fails (451) while `miner outbox send` plans its incident's resolve notice: the
    planner folds a notice into an alert nobody has yet, not into one being sent. Returns both rows, as now."""
    iid = open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    [alert] = store.outbox_listing(["pending"])
    sending = threading.Thread(target=dispatch, args=(store, cfg, T0), kwargs={"worker_id": "service"})
    sending.start()
    try:
        assert inbox.arrived.wait(30)
        planner = Store.open(store.path)
        try:
            resolve(planner, iid, T0 + timedelta(seconds=1))
            assert plan_notifications(planner, cfg, T0 + timedelta(seconds=1)) == 1
        finally:
            planner.close()
    finally:
        inbox.release.set()
        sending.join(30)
    row, [notice] = store.notification(int(alert["id"])), store.outbox_listing(["pending"], 1)
    assert row is not None and row["status"] == "pending" and row["attempts"] == 1 and notice["kind"] == "resolved"
    assert parse_iso(row["next_attempt_at"]) > T0 + timedelta(seconds=2)  # retry_base 10 s, half of it at least
    return row, notice


def test_a_resolve_notice_due_while_its_alert_waits_out_its_backoff_goes_after_the_alert(
        store: Store, held: tuple[SmtpServer, _HeldInbox]) -> None:
    # It went first: "RESOLVED" at the top of the thread, before the alert it closes.
    server, inbox = held
    cfg = _mail(server)
    alert, notice = _resolved_while_sending(store, inbox, cfg)
    stats = dispatch(store, cfg, T0 + timedelta(seconds=2), worker_id="w")
    assert (stats.claimed, stats.sent) == (0, 0) and inbox.messages == []
    assert store.due_in_claim_order(T0 + timedelta(seconds=2), 100) == []  # nor does it take a place in a run
    waiting = store.notification(int(notice["id"]))
    assert waiting is not None and waiting["status"] == "pending" and waiting["attempts"] == 0
    # The alert's retry due, both go in one run, the alert first.
    assert dispatch(store, cfg, parse_iso(alert["next_attempt_at"]), worker_id="w").sent == 2
    assert inbox.message_ids() == [alert["message_id"], notice["message_id"]]


def test_a_resolve_notice_waits_while_its_alert_fails_again_and_goes_once_the_alert_fails_for_good(
        store: Store, held: tuple[SmtpServer, _HeldInbox]) -> None:
    server, inbox = held
    cfg = _mail(server)
    alert, notice = _resolved_while_sending(store, inbox, cfg)
    inbox.data_reply = "451 4.3.0 Local error in processing, try again later"
    # Both due: the alert is tried and fails again; the notice listed after it is not tried in that run.
    at = parse_iso(alert["next_attempt_at"])
    stats = dispatch(store, cfg, at, worker_id="w")
    assert (stats.claimed, stats.retried) == (1, 1)
    waiting = store.notification(int(notice["id"]))
    assert waiting is not None and waiting["status"] == "pending" and waiting["attempts"] == 0
    assert stats.waiting == 1
    assert store.claim_due(int(notice["id"]), "other", at, at) is None  # nor by a worker that listed it before
    # An alert failed for good releases the notice: nothing waits for ever behind it.
    inbox.data_reply = None
    retried = store.notification(int(alert["id"]))
    assert retried is not None
    inbox.refuse = {"oncall@example.org": ["550 5.1.1 no such user"]}
    stats = dispatch(store, cfg, parse_iso(retried["next_attempt_at"]), worker_id="w")
    assert (stats.failed, stats.sent) == (1, 1) and inbox.message_ids() == [notice["message_id"]]


def _reasons(runner: CliRunner, store: Store) -> dict[int, str]:
    """`miner outbox`'s "reason or last error" cell of each row listed, by id (the cell after the six before it)."""
    listed = runner.invoke(main, ["--config", str(ROOT / "feeds.toml"), "--db", store.path, "outbox"])
    assert listed.exit_code == 0, listed.output
    return {int(line.split()[0]): " ".join(line.split()[7:]) for line in listed.stdout.splitlines()[2:]}


def test_outbox_lists_what_a_held_message_waits_for(store: Store, held: tuple[SmtpServer, _HeldInbox],
                                                    runner: CliRunner) -> None:
    # A held resolve notice was listed pending, due long ago, with nothing said: the on-call could not tell why it
    # had not gone.
    server, inbox = held
    cfg = _mail(server)
    alert, notice = _resolved_while_sending(store, inbox, cfg)
    aid, nid = int(alert["id"]), int(notice["id"])
    reasons = _reasons(runner, store)
    assert reasons[nid] == f"waits for outbox {aid} (pending)" and "451 4.3.0" in reasons[aid]
    at = parse_iso(alert["next_attempt_at"])
    assert store.claim_notification(aid, "other", at)  # another worker sending it
    assert _reasons(runner, store)[nid] == f"waits for outbox {aid} (sending)"
    assert store.reclaim_stale(at + timedelta(seconds=1)) == 1
    # The alert fails for good and the notice, released, is retried: requeued, the alert holds it again.
    inbox.refuse = {"oncall@example.org": ["550 5.1.1 no such user", "451 4.2.1 mailbox busy"]}
    stats = dispatch(store, cfg, at, worker_id="w")
    assert (stats.failed, stats.retried) == (1, 1)
    assert store.retry_notification(aid, at)
    reasons = _reasons(runner, store)
    assert reasons[nid] == (f"waits for outbox {aid} (pending); last error: all recipients refused: "
                            "oncall@example.org: 451 4.2.1 mailbox busy")
    assert reasons[aid] == "all recipients refused: oncall@example.org: 550 5.1.1 no such user"  # held by nothing

"""A stop while an email is being sent to a server that stalls: a real service running the alerts job, a real aiosmtpd
server on 127.0.0.1 that holds its reply to one SMTP command until the test lets it go, a real store."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from smtp_server import Inbox, SmtpServer
from test_service import wait_for
from test_service_notify import alerting_service

from miner.alerts.smtp_session import STOP_GRACE
from miner.service import Service, ServiceOptions
from miner.store import Store
from miner.store.channel_health import unreachable_key
from miner.timeutil import parse_iso, utcnow

# Each SMTP command may take this long: without the stop's grace, a stop waited for it.
SMTP_TIMEOUT = 300.0
STALL = 240.0  # the longest the server holds a reply, should the test not let it go


class StallingInbox(Inbox):
    """Holds its reply to the command ``at`` ("RCPT" or "DATA") until :attr:`go` is set."""

    def __init__(self, at: str) -> None:
        super().__init__()
        self.at = at
        self.stalled = threading.Event()  # a command is being held
        self.go = threading.Event()

    async def _stall(self, command: str) -> None:
        if command != self.at or self.go.is_set():
            return
        self.stalled.set()
        began = time.monotonic()
        while not self.go.is_set() and time.monotonic() - began < STALL:
            await asyncio.sleep(0.05)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        await self._stall("RCPT")
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await self._stall("DATA")
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def stalled_send(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Service, Store, SmtpServer]]:
    """A service whose first message is being sent to a server holding its reply to ``request.param``'s command."""
    smtp = SmtpServer()
    smtp.inbox = inbox = StallingInbox(request.param)
    smtp.start()
    service, store = alerting_service(tmp_path, smtp, 1, smtp_timeout=SMTP_TIMEOUT)
    service.start()
    try:
        assert inbox.stalled.wait(120), "the message was not sent"
        yield service, store, smtp
    finally:
        inbox.go.set()
        service.stop()
        smtp.stop()
        store.close()


def _stopped_in_a_thread(service: Service) -> threading.Thread:
    stopping = threading.Thread(target=service.stop, daemon=True)
    stopping.start()
    return stopping


def _sent_at_the_next_start(service: Service, store: Store) -> None:
    """Start the service again on the same config and store, and let its alerts job run once at least."""
    again = Service(service.config, service.db_path, ServiceOptions(jobs=service.options.jobs, http=False))
    again.start()
    try:
        wait_for(lambda: again.healthz()[1]["stages"]["alerts"]["runs"] >= 1, timeout=120)
    finally:
        again.stop()


@pytest.mark.parametrize("stalled_send", ["RCPT"], indirect=True)
def test_a_stop_cuts_a_send_to_a_stalled_mail_server_and_the_next_start_sends_it_once(
        stalled_send: tuple[Service, Store, SmtpServer]) -> None:
    # A stop waited for the send in flight: a server that stalls held it for smtp.timeout at each SMTP command (30 s x
    # (9 + recipients) at the defaults), past systemd's TimeoutStopSec, whose SIGKILL left the message claimed until
    # its lease lapsed.
    service, store, smtp = stalled_send
    stopping = _stopped_in_a_thread(service)
    stopping.join(timeout=SMTP_TIMEOUT / 3)
    assert not stopping.is_alive(), "the stop waited for the stalled server"
    assert not smtp.inbox.go.is_set()  # the server was stalling still: the stop cut the send
    [row] = store.outbox_listing(["pending"])
    # Due at once, no backoff, and not counted as an attempt: the stop cut it, not a failure of the message's.
    assert row["attempts"] == 0 and parse_iso(row["next_attempt_at"]) <= utcnow()
    [attempt] = store.deliveries(row["id"])
    assert attempt["outcome"] == "retry" and "asked to stop: sent again at the next start" in attempt["detail"]
    assert attempt["attempt"] == 1  # the number the next attempt takes too
    assert not store.alert_state(unreachable_key("email"))  # the stop cut it, not the server
    smtp.inbox.go.set()
    _sent_at_the_next_start(service, store)
    assert smtp.inbox.message_ids() == [row["message_id"]]
    assert store.outbox_listing(["sent"])[0]["id"] == row["id"]


@pytest.mark.parametrize("stalled_send", ["DATA"], indirect=True)
def test_a_stop_waits_for_the_reply_to_a_message_gone_out_whole_so_the_next_start_does_not_send_it_again(
        stalled_send: tuple[Service, Store, SmtpServer]) -> None:
    # Cut at the stop's grace too, a message the server had whole might be delivered and would go again at the next
    # start. Its reply is waited for (one smtp.timeout at most), as the server is answering it.
    service, store, smtp = stalled_send
    stopping = _stopped_in_a_thread(service)
    stopping.join(timeout=STOP_GRACE + 2)  # past the grace: a cut would have come
    smtp.inbox.go.set()
    stopping.join(timeout=120)
    assert not stopping.is_alive()
    sent = store.outbox_listing(["sent"])
    assert len(sent) == 1, store.deliveries(store.outbox_listing(["pending"])[0]["id"])
    row = sent[0]
    _sent_at_the_next_start(service, store)
    assert smtp.inbox.message_ids() == [row["message_id"]]


def test_a_send_that_times_out_counts_as_an_attempt_and_one_cut_by_the_stop_does_not(tmp_path: Path) -> None:
    # A send cut by the stop counted as a failed attempt: a server hanging through many stops (reloads, restarts)
    # brought an old message to GIVE_UP_ATTEMPTS, and so to being given up at its next failure, without that many
    # failures of its own. A send that runs out its smtp.timeout is a failure, and still counts.
    from miner.config import load_config

    smtp = SmtpServer()
    smtp.inbox = inbox = StallingInbox("RCPT")
    smtp.start()
    service, store = alerting_service(tmp_path, smtp, 1, smtp_timeout=1.0)
    try:
        service.start()
        try:
            wait_for(lambda: any(r["attempts"] for r in store.outbox_listing(["pending"])), timeout=120)
        finally:
            service.stop()
        [row] = store.outbox_listing(["pending"])
        [timed_out] = store.deliveries(row["id"])
        assert row["attempts"] == 1 and timed_out["attempt"] == 1 and timed_out["outcome"] == "retry"
        assert "asked to stop" not in timed_out["detail"], timed_out
        # Due again now rather than after its backoff, and sent through the default timeout: the stop cuts it.
        store.database.execute("UPDATE outbox SET next_attempt_at = ? WHERE id = ?",
                               (store.database.one("SELECT created_at FROM outbox WHERE id = ?",
                                                   (row["id"],))["created_at"], row["id"]))
        cfg = tmp_path / "feeds.toml"
        cfg.write_text(cfg.read_text(encoding="utf-8").replace("timeout = 1.0", f"timeout = {SMTP_TIMEOUT}"),
                       encoding="utf-8")
        inbox.stalled.clear()
        again = Service(load_config(cfg), service.db_path, ServiceOptions(jobs=service.options.jobs, http=False))
        again.start()
        try:
            assert inbox.stalled.wait(120), "the message was not sent again"
        finally:
            stopping = _stopped_in_a_thread(again)
            stopping.join(timeout=SMTP_TIMEOUT / 3)
        assert not stopping.is_alive(), "the stop waited for the stalled server"
        [row] = store.outbox_listing(["pending"])
        assert row["attempts"] == 1, store.deliveries(row["id"])  # the timeout's only
        cut = store.deliveries(row["id"])[-1]
        assert cut["attempt"] == 2 and "asked to stop: sent again at the next start" in cut["detail"], cut
    finally:
        inbox.go.set()
        smtp.stop()
        store.close()

"""Recording an attempt the server took, and whom it reached, while another writer holds the store, and preparing a
message while the store takes no writes: a real SQLite file, a second connection holding its write lock (or SQLite's
own read-only and page-count limits), a real SMTP server (aiosmtpd) and a real HTTP server."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fakeserver import FakeServer, Recorded, Reply
from smtp_server import SmtpServer, smtp_server  # noqa: F401  (fixture)
from test_alerts_email import mail_settings
from test_alerts_pagerduty import PATH, one_message_of_incidents, pd_settings, serve_pagerduty
from test_alerts_support import T0, open_incident

from miner.alerts import dispatch, plan_notifications
from miner.alerts.claim import NotRecorded
from miner.errors import StoreError
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
        [row] = store.outbox_listing(["sent"])
        later = dispatch(store, cfg, T0 + timedelta(seconds=cfg.lease_seconds + 1), worker_id="w2")
        assert (later.reclaimed, later.claimed) == (0, 0)
        assert smtp_server.inbox.message_ids() == [row["message_id"]]
    finally:
        other.close()
        store.close()


@pytest.mark.parametrize("ends", ["claim-lapses", "service-stops"])
def test_a_record_given_up_ends_the_run_with_the_row_claimed_and_says_who_gets_it_again(
        tmp_path: Path, smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture, ends: str) -> None:  # noqa: F811
    # The lock outlasts the claim, or the service stops while it holds: the record is given up, and the run ends
    # with the row claimed (another worker sends it once the claim lapses), an error saying the server has it.
    store, other = _locked_store(tmp_path)
    cfg = mail_settings(smtp_server, group_wait=0.0)
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    accept = smtp_server.inbox.handle_DATA
    stop = threading.Event()
    accepted = threading.Event()

    async def accept_as_another_writer_takes_the_store_for_good(*args: Any) -> str:
        reply = await accept(*args)
        other.execute("BEGIN IMMEDIATE")  # released only once the run has ended
        accepted.set()
        if ends == "service-stops":
            stop.set()
        return reply

    def clock() -> datetime:  # past the claim's lease once the server has the message, when the claim lapses
        lapsed = accepted.is_set() and ends == "claim-lapses"
        return T0 + timedelta(seconds=cfg.lease_seconds + 1 if lapsed else 0)

    smtp_server.inbox.handle_DATA = accept_as_another_writer_takes_the_store_for_good  # type: ignore[method-assign]
    try:
        with pytest.raises(NotRecorded, match="locked"):
            dispatch(store, cfg, T0, worker_id="w", stop=stop, clock=clock)
        other.execute("COMMIT")
        [row] = store.outbox_listing(["sending"])
        assert (row["claimed_by"], row["attempts"], store.deliveries(row["id"])) == ("w", 0, [])
        [said] = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert said.getMessage().startswith(f"outbox {row['id']} (email): sent, but not recorded as sent: it is sent "
                                            "again once its claim lapses (lease_seconds) (store ")
        smtp_server.inbox.handle_DATA = accept  # type: ignore[method-assign]
        later = dispatch(store, cfg, T0 + timedelta(seconds=cfg.lease_seconds + 1), worker_id="w2")
        assert (later.reclaimed, later.sent) == (1, 1)
        assert smtp_server.inbox.message_ids() == [row["message_id"]] * 2  # at least once: the same Message-ID
    finally:
        other.close()
        store.close()


def test_a_failed_attempt_whose_record_is_given_up_says_it_is_tried_again(
        tmp_path: Path, server: FakeServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # Only a message sent said what follows a record given up: one that failed ended the run with the store's own
    # error, 'job alerts failed: store ... is locked', naming no message.
    serve_pagerduty(server, monkeypatch)
    store, other = _locked_store(tmp_path)
    cfg = pd_settings()
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    stop = threading.Event()

    def fail_as_another_writer_takes_the_store_and_the_service_stops(request: Recorded) -> Reply:
        other.execute("BEGIN IMMEDIATE")  # released only once the run has ended
        stop.set()
        return Reply(503, b'{"status": "unavailable"}', content_type="application/json")

    server.serve(PATH, fail_as_another_writer_takes_the_store_and_the_service_stops)
    try:
        with pytest.raises(NotRecorded, match="locked"):
            dispatch(store, cfg, T0, worker_id="w", stop=stop)
        other.execute("COMMIT")
        [row] = store.outbox_listing(["sending"])
        assert (row["claimed_by"], row["attempts"]) == ("w", 0)
        [said] = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert said.getMessage().startswith(f"outbox {row['id']} (webhook:pd): its attempt (retry) not recorded: it "
                                            "is tried again once its claim lapses (lease_seconds), to whom it has not "
                                            "reached (store ")
    finally:
        other.close()
        store.close()


def test_the_recipients_an_email_reached_are_recorded_while_another_writer_holds_the_store(
        tmp_path: Path, smtp_server: SmtpServer) -> None:  # noqa: F811
    # One recipient refused for now (452), the other reached: recording who has it met the lock and raised, the
    # attempt failing as if nothing had gone out, and its next send went to both recipients.
    store, other = _locked_store(tmp_path)
    cfg = mail_settings(smtp_server, group_wait=0.0)
    smtp_server.inbox.refuse = {"sre@example.org": ["452 4.2.2 mailbox full"]}  # then accepted
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    accept = smtp_server.inbox.handle_DATA

    async def accept_as_another_writer_takes_the_store(*args: Any) -> str:
        reply = await accept(*args)
        _hold(other)
        return reply

    smtp_server.inbox.handle_DATA = accept_as_another_writer_takes_the_store  # type: ignore[method-assign]
    try:
        stats = dispatch(store, cfg, T0, worker_id="w")
        assert (stats.retried, stats.failed) == (1, 0)
        smtp_server.inbox.handle_DATA = accept  # type: ignore[method-assign]
        [row] = store.outbox_listing(["pending"])
        assert "refused sre@example.org: 452 4.2.2 mailbox full" in row["last_error"]
        assert dispatch(store, cfg, T0 + timedelta(seconds=cfg.retry_max), worker_id="w").sent == 1
        assert [rcpts for _, rcpts in smtp_server.inbox.envelopes] == [["oncall@example.org"], ["sre@example.org"]]
    finally:
        other.close()
        store.close()


def test_the_pagerduty_events_accepted_are_recorded_while_another_writer_holds_the_store(
        tmp_path: Path, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # Recording the first event PagerDuty accepted met the lock: the message failed with 'database is locked' as
    # if it could not be rendered, the second event never went, and its retry triggered the first one again.
    pd = serve_pagerduty(server, monkeypatch)
    store, other = _locked_store(tmp_path)
    cfg = one_message_of_incidents(store, ("WhatsApp", "Signal"))

    def accept_as_another_writer_takes_the_store(request: Recorded) -> Reply:
        if len(pd.requests) == 1:
            _hold(other)
        return Reply(202, b'{"status": "success"}', content_type="application/json")

    server.serve(PATH, accept_as_another_writer_takes_the_store)
    try:
        stats = dispatch(store, cfg, T0, worker_id="w")
        assert (stats.sent, stats.failed, stats.retried) == (1, 0, 0)
        later = dispatch(store, cfg, T0 + timedelta(seconds=cfg.lease_seconds + 1), worker_id="w2")
        assert (later.reclaimed, later.claimed) == (0, 0)
        keys = [e["dedup_key"] for e in pd.events]
        assert len(keys) == 2 == len(set(keys))
    finally:
        other.close()
        store.close()


@pytest.mark.parametrize("late", [False, True], ids=["in-time", "past-give_up_after"])
def test_a_pagerduty_message_prepared_while_another_writer_holds_the_store_is_retried_not_failed(
        tmp_path: Path, server: FakeServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        late: bool) -> None:
    # Its store key, every dedup_key's part, is written before the first event goes: the lock met there failed the
    # message for good as one that 'cannot be rendered', though nothing had gone out, until a `miner outbox retry`.
    # A lock says nothing of the message or its channel, so it does not end the retries of one past give_up_after.
    pd = serve_pagerduty(server, monkeypatch)
    store, other = _locked_store(tmp_path)
    cfg = pd_settings()
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    read_items = store.notification_items
    held: list[bool] = []

    def read_as_another_writer_takes_the_store(outbox_id: int) -> list[dict[str, Any]]:
        if not held:  # the row is claimed by now, and nothing has gone out
            _hold(other)
            held.append(True)
        return read_items(outbox_id)

    monkeypatch.setattr(store, "notification_items", read_as_another_writer_takes_the_store)
    try:
        at = T0 + timedelta(seconds=cfg.give_up_after if late else 0)
        stats = dispatch(store, cfg, at, worker_id="w")
        assert (stats.retried, stats.failed, len(pd.requests)) == (1, 0, 0)
        [row] = store.outbox_listing(["pending"])
        assert row["last_error"].startswith("nothing sent: the store was locked while the message was prepared")
        assert "failed, retrying in" in caplog.text and "cannot be rendered" not in caplog.text
        assert dispatch(store, cfg, at + timedelta(seconds=cfg.retry_max), worker_id="w").sent == 1
        assert [e["event_action"] for e in pd.events] == ["trigger"]
    finally:
        other.close()
        store.close()


@pytest.mark.parametrize("cause", ["read_only", "disk_full"])
def test_a_pagerduty_message_prepared_while_the_store_takes_no_writes_is_retried_not_failed(
        store: Store, server: FakeServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        cause: str) -> None:
    # Only a lock was the store's passing state: a full disk or a store made read-only (a remount) while the message's
    # store key was written failed it for good as a message that 'cannot be rendered', though nothing had gone out
    # and nothing was wrong with it, until a `miner outbox retry`.
    pd = serve_pagerduty(server, monkeypatch)
    cfg = pd_settings()
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    read_items, record = store.notification_items, store.finish_notification

    def read_as_the_store_stops_taking_writes(outbox_id: int) -> list[dict[str, Any]]:
        _take_no_writes(store, cause)  # the row is claimed by now, and nothing has gone out
        return read_items(outbox_id)

    def record_once_mended(*args: Any) -> bool:
        _take_writes(store)  # space freed, the store writable again by the time the attempt is recorded
        return record(*args)

    monkeypatch.setattr(store, "notification_items", read_as_the_store_stops_taking_writes)
    monkeypatch.setattr(store, "finish_notification", record_once_mended)
    with caplog.at_level(logging.WARNING, logger="miner.alerts"):
        stats = dispatch(store, cfg, T0, worker_id="w")
    assert (stats.retried, stats.failed, len(pd.requests)) == (1, 0, 0)
    [row] = store.outbox_listing(["pending"])
    assert row["last_error"].startswith(f"nothing sent: the store failed ({cause}) while the message was prepared")
    [error] = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert f"outbox {row['id']} (webhook:pd): the store failed ({cause}) while the message was prepared" in error
    assert "cannot be rendered" not in caplog.text
    monkeypatch.setattr(store, "notification_items", read_items)
    assert dispatch(store, cfg, T0 + timedelta(seconds=cfg.retry_max), worker_id="w").sent == 1
    assert [e["event_action"] for e in pd.events] == ["trigger"]


def test_a_pagerduty_message_after_the_stores_first_goes_out_while_another_writer_holds_the_store(
        tmp_path: Path, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # The store's key was written (BEGIN IMMEDIATE) at every PagerDuty message, not only at the first: each met
    # another writer's lock, and waited for its retry.
    pd = serve_pagerduty(server, monkeypatch)
    store, other = _locked_store(tmp_path)
    cfg = pd_settings()
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0, worker_id="w").sent == 1
    open_incident(store, "Signal", T0 + timedelta(minutes=5), posts=False, series=False)
    plan_notifications(store, cfg, T0 + timedelta(minutes=5))
    read_items = store.notification_items

    def read_as_another_writer_takes_the_store(outbox_id: int) -> list[dict[str, Any]]:
        _hold(other)  # the row is claimed by now, and nothing of it has gone out
        return read_items(outbox_id)

    monkeypatch.setattr(store, "notification_items", read_as_another_writer_takes_the_store)
    try:
        stats = dispatch(store, cfg, T0 + timedelta(minutes=5), worker_id="w")
        assert (stats.sent, stats.retried, stats.failed) == (1, 0, 0)
        first, second = (e["dedup_key"] for e in pd.events)
        assert first.rsplit("/", 2)[0] == second.rsplit("/", 2)[0]  # one store key: miner/KEY/SERVICE/INCIDENT
    finally:
        other.close()
        store.close()


def _locked_store(tmp_path: Path) -> tuple[Store, sqlite3.Connection]:
    """A store whose busy timeout the lock below outlasts many times over, and a second connection to lock it with."""
    path = tmp_path / "miner.sqlite"
    store = Store.open(path)
    store.database.conn.execute("PRAGMA busy_timeout = 50")
    return store, sqlite3.connect(path, isolation_level=None, check_same_thread=False)


def _hold(other: sqlite3.Connection) -> None:
    """Take the store's write lock as another writer would (a prune, a backup, `miner outbox retry`), for 0.5 s."""
    other.execute("BEGIN IMMEDIATE")
    threading.Timer(0.5, other.execute, ("COMMIT",)).start()


def _take_no_writes(store: Store, cause: str) -> None:
    """Have SQLite refuse the store's writes, as a read-only remount or a full disk has it (on its connection)."""
    if cause == "read_only":
        store.database.conn.execute("PRAGMA query_only = ON")  # SQLite: attempt to write a readonly database
        return
    pages = store.database.one("PRAGMA page_count")["page_count"]  # type: ignore[index]
    store.database.conn.execute(f"PRAGMA max_page_count = {pages}")  # no write may add a page
    n = 0
    with contextlib.suppress(StoreError):  # the room left in its pages filled, to the last: database or disk is full
        while True:
            store.set_alert_state(f"f{n:05d}", "")  # rows smaller than any the dispatcher writes
            n += 1


def _take_writes(store: Store) -> None:
    store.database.conn.execute("PRAGMA query_only = OFF")
    store.database.conn.execute("PRAGMA max_page_count = 1073741823")

"""A message waits for an older alert of its incident, route and channel that is still to go (store/outbox_order.py)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from smtp_server import Inbox, SmtpServer, smtp_server  # noqa: F401  (fixture)
from test_alerts_support import T0, open_incident, resolve, settings

from miner.alerts import dispatch, plan_notifications
from miner.alerts.settings import AlertSettings, RouteSettings, SmtpSettings
from miner.cli import main
from miner.store import Store
from miner.store.outbox import PlannedItem
from miner.timeutil import iso, parse_iso, utcnow

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


def _resolved_while_sending(store: Store, inbox: _HeldInbox, cfg: AlertSettings,
                            at: datetime = T0) -> tuple[dict[str, Any], dict[str, Any]]:
    """An alert whose first attempt fails (451) while `miner outbox send` plans its incident's resolve notice: the
    planner folds a notice into an alert nobody has yet, not into one being sent. Returns both rows, as now."""
    iid = open_incident(store, "WhatsApp", at, posts=False, series=False)
    plan_notifications(store, cfg, at)
    [alert] = store.outbox_listing(["pending"])
    sending = threading.Thread(target=dispatch, args=(store, cfg, at), kwargs={"worker_id": "service"})
    sending.start()
    try:
        assert inbox.arrived.wait(30)
        planner = Store.open(store.path)
        try:
            resolve(planner, iid, at + timedelta(seconds=1))
            assert plan_notifications(planner, cfg, at + timedelta(seconds=1)) == 1
        finally:
            planner.close()
    finally:
        inbox.release.set()
        sending.join(30)
    row, [notice] = store.notification(int(alert["id"])), store.outbox_listing(["pending"], 1)
    assert row is not None and row["status"] == "pending" and row["attempts"] == 1 and notice["kind"] == "resolved"
    assert parse_iso(row["next_attempt_at"]) > at + timedelta(seconds=2)  # after the notice: retry_base / 2 at least
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


def _cells(runner: CliRunner, store: Store) -> dict[int, dict[str, str]]:
    """`miner outbox`'s cells of each row listed, by id and column (cut where the header's rule is: a cell may hold
    spaces)."""
    listed = runner.invoke(main, ["--config", str(ROOT / "feeds.toml"), "--db", store.path, "outbox"])
    assert listed.exit_code == 0, listed.output
    header, rule, *lines = listed.stdout.splitlines()
    spans, start = [], 0
    for dashes in rule.split("  "):
        spans.append((start, start + len(dashes)))
        start += len(dashes) + 2
    spans[-1] = (spans[-1][0], None)  # the last column, as wide as its longest cell, is not padded
    names = [header[a:b].strip() for a, b in spans]
    return {int(line[:spans[0][1]]): {n: line[a:b].strip() for n, (a, b) in zip(names, spans, strict=True)}
            for line in lines}


def _reasons(runner: CliRunner, store: Store) -> dict[int, str]:
    """`miner outbox`'s "reason or last error" cell of each row listed, by id."""
    return {i: cells["reason or last error"] for i, cells in _cells(runner, store).items()}


def test_outbox_lists_what_a_held_message_waits_for(store: Store, held: tuple[SmtpServer, _HeldInbox],
                                                    runner: CliRunner) -> None:
    # A held resolve notice was listed pending, due long ago, with nothing said: the on-call could not tell why it
    # had not gone.
    server, inbox = held
    cfg = _mail(server)
    alert, notice = _resolved_while_sending(store, inbox, cfg)
    aid, nid = int(alert["id"]), int(notice["id"])
    cells = _cells(runner, store)
    assert cells[nid]["reason or last error"] == f"waits for outbox {aid} (pending)"
    assert "451 4.3.0" in cells[aid]["reason or last error"]
    # Not its own next attempt, long past (the alert's retry is too, by the real clock): it goes right after the
    # alert, whenever that goes.
    assert cells[nid]["next/sent"] == f"after outbox {aid}" and cells[aid]["next/sent"] == alert["next_attempt_at"]
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


def _recently() -> datetime:
    """A minute ago, by the real clock `miner outbox` reads, to the second as the outbox keeps times: what is retried
    an hour on from it is still to come when the test lists it."""
    return utcnow().replace(microsecond=0) - timedelta(minutes=1)


def _slow_retries(server: SmtpServer) -> AlertSettings:
    """_mail, its retries 30-60 min after a failed attempt (retry_base 3,600 s, each wait 50-100 % of it)."""
    return replace(_mail(server), retry_base=3600.0, retry_max=7200.0)


def test_outbox_says_when_a_held_message_can_go_at_the_earliest(store: Store, held: tuple[SmtpServer, _HeldInbox],
                                                                 runner: CliRunner) -> None:
    # Its "next/sent" cell gave its own next attempt, due long ago, beside "waits for outbox ID": read as a dispatcher
    # that had stopped. It goes after the alert, whose retry is still to come.
    server, inbox = held
    cfg = _slow_retries(server)
    alert, notice = _resolved_while_sending(store, inbox, cfg, _recently())
    aid, nid = int(alert["id"]), int(notice["id"])
    retry = alert["next_attempt_at"]
    assert notice["next_attempt_at"] < iso(utcnow()) < retry
    assert _cells(runner, store)[nid]["next/sent"] == f"after outbox {aid}, not before {retry}"
    # As the dispatcher has it: nothing goes a second before that time, and at it the alert, then the notice.
    assert dispatch(store, cfg, parse_iso(retry) - timedelta(seconds=1), worker_id="w").claimed == 0
    assert store.claim_notification(aid, "other", parse_iso(retry))  # another worker sending it
    assert _cells(runner, store)[nid]["next/sent"] == f"after outbox {aid}"  # its retry's time, if any, not known
    assert store.reclaim_stale(parse_iso(retry) + timedelta(hours=1)) == 1
    assert dispatch(store, cfg, parse_iso(retry), worker_id="w").sent == 2
    assert inbox.message_ids() == [alert["message_id"], notice["message_id"]]


def _plan(store: Store, at: datetime, items: Sequence[tuple[str, str, int, str]]) -> None:
    """Write ``items`` (kind, item kind, incident, group) as the planner does, route oncall, email, due at ``at``;
    those of one kind and group in one message."""
    planned = [PlannedItem(item_key=f"{item_kind}:{incident}:{group}", route="oncall", channel="email", kind=kind,
                           item_kind=item_kind, incident_id=incident, message_id=f"<{group}.{kind}@test>", due_at=at,
                           group=group) for kind, item_kind, incident, group in items]
    cursor = store.alert_cursor()
    assert store.apply_alert_plan(cursor, cursor, planned, at) == len(planned)


def _ids(store: Store) -> dict[str, int]:
    """Each outbox row's id by its message's group (_plan)."""
    return {str(r["message_id"]).strip("<>").split(".")[0]: int(r["id"]) for r in store.outbox_listing(["pending"])}


def test_a_message_held_behind_several_alerts_goes_after_the_last_of_them(
        store: Store, smtp_server: SmtpServer, runner: CliRunner) -> None:  # noqa: F811
    # Only the oldest was named, as if it went first and the message after it: a resolve notice of two incidents
    # waits for the page of each, and the older page may be retried after the newer one.
    at = _recently()
    first, second = (open_incident(store, name, at, posts=False, series=False) for name in ("WhatsApp", "Signal"))
    for iid in (first, second):
        resolve(store, iid, at)
    _plan(store, at, [("alert", "open", first, "a"), ("alert", "open", second, "b"),
                      ("resolved", "resolve", first, "r"), ("resolved", "resolve", second, "r")])
    ids = _ids(store)
    cfg = _slow_retries(smtp_server)
    smtp_server.inbox.refuse = {"oncall@example.org": ["451 4.2.1 mailbox busy"] * 2}
    assert dispatch(store, cfg, at, worker_id="w").retried == 2
    retries = {g: store.notification(ids[g])["next_attempt_at"] for g in "ab"}  # type: ignore[index]
    last = max("ab", key=lambda g: (retries[g], ids[g]))
    cells = _cells(runner, store)[ids["r"]]
    assert cells["reason or last error"] == f"waits for outbox {ids['a']} (pending), {ids['b']} (pending)"
    assert cells["next/sent"] == f"after outbox {ids[last]}, not before {retries[last]}"
    # As the dispatcher has it: the notice goes in the run that sends the last of the two, right after it.
    before = parse_iso(retries[last]) - timedelta(seconds=1)
    assert dispatch(store, cfg, before, worker_id="w").sent == (1 if min(retries.values()) <= iso(before) else 0)
    assert dispatch(store, cfg, parse_iso(retries[last]), worker_id="w").sent >= 2
    assert smtp_server.inbox.message_ids()[-2:] == [f"<{last}.alert@test>", "<r.resolved@test>"]


def test_a_message_held_behind_an_alert_that_waits_itself_goes_no_sooner_than_what_that_alert_waits_for(
        store: Store, smtp_server: SmtpServer, runner: CliRunner) -> None:  # noqa: F811
    # A reminder of two incidents waits for the page of one, retried in an hour; the other's resolve notice waits
    # for the reminder, due long ago: it was listed as due then.
    at = _recently()
    first, second = (open_incident(store, name, at, posts=False, series=False) for name in ("WhatsApp", "Signal"))
    _plan(store, at, [("alert", "open", second, "page")])
    smtp_server.inbox.refuse = {"oncall@example.org": ["451 4.2.1 mailbox busy"]}
    cfg = _slow_retries(smtp_server)
    assert dispatch(store, cfg, at, worker_id="w").retried == 1
    resolve(store, first, at)
    _plan(store, at, [("alert", "open", first, "reminder"), ("alert", "repeat", second, "reminder"),
                      ("resolved", "resolve", first, "notice")])
    ids = _ids(store)
    retry = store.notification(ids["page"])["next_attempt_at"]  # type: ignore[index]
    cells = _cells(runner, store)
    assert cells[ids["reminder"]]["next/sent"] == f"after outbox {ids['page']}, not before {retry}"
    assert cells[ids["notice"]]["reason or last error"] == f"waits for outbox {ids['reminder']} (pending)"
    assert cells[ids["notice"]]["next/sent"] == f"after outbox {ids['reminder']}, not before {retry}"
    assert dispatch(store, cfg, parse_iso(retry) - timedelta(seconds=1), worker_id="w").claimed == 0
    assert dispatch(store, cfg, parse_iso(retry), worker_id="w").sent == 3
    assert smtp_server.inbox.message_ids() == ["<page.alert@test>", "<reminder.alert@test>", "<notice.resolved@test>"]

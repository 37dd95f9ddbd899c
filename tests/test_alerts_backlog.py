"""What waited in the outbox through an outage or a config reload, when it goes out: digests, alerts, throttling."""

from __future__ import annotations

import json
import random
from datetime import timedelta

import pytest
from click.testing import CliRunner
from fakeserver import FakeServer, Recorded, ScriptedWebhook
from smtp_server import SmtpServer, smtp_server  # noqa: F401  (fixture)
from test_alerts_rules import reopen
from test_alerts_support import T0, open_incident, resolve, settings

from miner.alerts import dispatch, plan_notifications, run_alerts
from miner.alerts.settings import AlertSettings, RouteSettings, SmtpSettings, WebhookSettings
from miner.cli import main
from miner.store import Store
from miner.timeutil import iso, parse_iso


def test_digests_queued_through_a_long_smtp_outage_go_out_as_one_covering_them_all(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    route = RouteSettings(name="oncall", email=("oncall@example.org",), immediate=False, digest="0 * * * *",
                          digest_when_quiet=True)
    smtp = SmtpSettings(host="127.0.0.1", port=smtp_server.port, security="none", timeout=5)
    cfg = settings(routes=(route,), webhooks=(), smtp=smtp)
    run_alerts(store, cfg, T0, worker_id="w")  # anchors the schedule at 12:00
    first = open_incident(store, "WhatsApp", T0 + timedelta(minutes=10), posts=False, series=False)
    resolve(store, first, T0 + timedelta(minutes=40))  # only the 13:00 digest covers it
    smtp_server.stop()
    for hour in range(1, 11):
        if hour == 5:
            open_incident(store, "Signal", T0 + timedelta(hours=4, minutes=30), posts=False, series=False)
        run_alerts(store, cfg, T0 + timedelta(hours=hour, minutes=1), worker_id="w")
    # One digest waits, the others recorded as superseded by it, not deleted.
    assert len(store.outbox_listing(["pending"])) == 1
    superseded = store.outbox_listing(["suppressed"])
    assert len(superseded) == 9 and all("superseded" in r["reason"] for r in superseded)
    # Its next_attempt_at, in `miner outbox`, is when the next run superseded it, not when it was due.
    assert [r["next_attempt_at"] for r in superseded] == [
        iso(parse_iso(r["created_at"]) + timedelta(hours=1)) for r in superseded]
    smtp_server.start()
    run_alerts(store, cfg, T0 + timedelta(hours=10, minutes=2), worker_id="w")
    [msg] = smtp_server.inbox.messages
    text = msg.as_string()
    assert "WhatsApp" in text and "Signal" in text  # the first hour's incident is not lost
    [sent] = store.outbox_listing(["sent"])
    assert json.loads(sent["payload"]) == {"as_of": iso(T0 + timedelta(hours=10)), "since": iso(T0)}
    listing = CliRunner().invoke(main, ["--db", store.path, "outbox", "--all"])
    assert listing.exit_code == 0 and "superseded" in listing.output


def _mail(server: SmtpServer, route: RouteSettings) -> AlertSettings:
    smtp = SmtpSettings(host="127.0.0.1", port=server.port, security="none", timeout=5)
    return settings(routes=(route,), webhooks=(), smtp=smtp)


@pytest.mark.parametrize("reloaded", [
    RouteSettings(name="oncall", email=("oncall@example.org",), services=("Signal",)),
    RouteSettings(name="oncall", email=("oncall@example.org",), immediate=False, digest="0 8 * * *"),
], ids=["service-dropped", "made-digest-only"])
def test_a_queued_alert_the_reloaded_route_no_longer_sends_is_dropped_with_a_reason(
        store: Store, smtp_server: SmtpServer, reloaded: RouteSettings) -> None:  # noqa: F811
    before = _mail(smtp_server, RouteSettings(name="oncall", email=("oncall@example.org",),
                                              services=("WhatsApp", "Signal")))
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    run_alerts(store, before, T0, worker_id="w")  # planned, waiting out its group wait
    after = _mail(smtp_server, reloaded)  # feeds.toml changed and reloaded meanwhile
    run_alerts(store, after, T0 + timedelta(seconds=31), worker_id="w")
    assert smtp_server.inbox.messages == []
    [row] = store.outbox_listing(["suppressed"])
    assert row["kind"] == "alert" and "route 'oncall'" in row["reason"]
    assert ("no longer covers WhatsApp" if reloaded.immediate else "digest-only") in row["reason"]


def test_a_resolve_notice_still_follows_an_alert_sent_before_the_route_dropped_the_service(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    before = _mail(smtp_server, RouteSettings(name="oncall", email=("oncall@example.org",), services=("WhatsApp",)))
    iid = open_incident(store, "WhatsApp", T0, posts=False, series=False)
    run_alerts(store, before, T0, worker_id="w")
    run_alerts(store, before, T0 + timedelta(seconds=31), worker_id="w")
    assert len(smtp_server.inbox.messages) == 1
    after = _mail(smtp_server, RouteSettings(name="oncall", email=("oncall@example.org",), services=("Signal",)))
    resolve(store, iid, T0 + timedelta(hours=1))
    run_alerts(store, after, T0 + timedelta(hours=1), worker_id="w")
    run_alerts(store, after, T0 + timedelta(hours=1, seconds=31), worker_id="w")
    opened, resolved = smtp_server.inbox.messages
    assert "RESOLVED" in resolved["Subject"] and resolved["In-Reply-To"] == opened["Message-ID"]


class Highest(random.Random):
    """Jitter at its largest, so the wait it adds can be read."""

    def uniform(self, a: float, b: float) -> float:
        return b


class Receiver(ScriptedWebhook):
    """A JSON webhook receiver at /hook answering each POST with the next scripted status (202 when none is left)."""

    def answer(self, request: Recorded, status: int) -> tuple[bytes, str | None]:
        return b"", None


def test_a_429_holds_every_message_to_that_webhook_until_its_retry_after_plus_jitter(
        store: Store, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    receiver = Receiver(server, "/hook")
    monkeypatch.setenv("MINER_TEST_HOOK", f"{server.url}/hook")
    cfg = settings(routes=(RouteSettings(name="chat", webhooks=("hook",)),), group_wait=0.0,
                   webhooks=(WebhookSettings(name="hook", url_env="MINER_TEST_HOOK", timeout=5),))
    for service in ("WhatsApp", "Signal"):  # no provider: two groups, two messages due at once
        open_incident(store, service, T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    assert len(store.outbox_listing(["pending"])) == 2
    receiver.script = [(429, "120")]
    # Attempted at T0, not T0 plus the real seconds the run took (a second more made the wait 127 on a loaded CI
    # runner), so that the wait is the receiver's and the jitter's alone.
    first = dispatch(store, cfg, T0, worker_id="w", rng=Highest(), clock=lambda: T0)
    # The other message is not sent straight into the rate limit the receiver just announced.
    assert (first.retried, first.sent, first.throttled, len(receiver.requests)) == (1, 0, 1, 1)
    retried = [r for r in store.outbox_listing(["pending"]) if r["attempts"]]
    wait = (parse_iso(retried[0]["next_attempt_at"]) - T0).total_seconds()
    assert wait == 126  # jitter on top of Retry-After (up to 5 %): throttled messages do not all land together
    # A later run holds it too (the receiver's wait outlasts the run), until the time the retry is due.
    later = dispatch(store, cfg, T0 + timedelta(seconds=60), worker_id="w")
    assert (later.sent, later.throttled, len(receiver.requests)) == (0, 1, 1)
    done = dispatch(store, cfg, T0 + timedelta(seconds=127), worker_id="w")
    assert (done.sent, len(receiver.requests)) == (2, 3)


def test_a_429_met_with_the_clock_ahead_holds_its_webhook_no_longer_once_the_clock_is_set_right(
        store: Store, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    receiver = Receiver(server, "/hook")
    monkeypatch.setenv("MINER_TEST_HOOK", f"{server.url}/hook")
    cfg = settings(routes=(RouteSettings(name="chat", webhooks=("hook",)),), group_wait=0.0,
                   webhooks=(WebhookSettings(name="hook", url_env="MINER_TEST_HOOK", timeout=5),))
    for service in ("WhatsApp", "Signal"):
        open_incident(store, service, T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    receiver.script = [(429, "120")]
    assert dispatch(store, cfg, T0 + timedelta(days=1), worker_id="w").throttled == 1  # a clock a day ahead
    # Set right, the clock takes the retry back to now: the webhook is not held until real time reaches tomorrow.
    assert run_alerts(store, cfg, T0 + timedelta(minutes=1), worker_id="w").sent == 2
    assert len(receiver.requests) == 3


def test_a_page_goes_before_the_backlog_of_a_mail_outage_and_an_incidents_resolve_before_its_reopening(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # The backlog went in the order it fell due: an incident opening as the mail server came back queued behind
    # every resolve notice of the outage, a whole backlog (or several runs of parts) late for the on-call.
    route = RouteSettings(name="oncall", email=("oncall@example.org",), group_by="service", group_interval=0.0)
    cfg = settings(routes=(route,), webhooks=(), group_wait=0.0,
                   smtp=SmtpSettings(host="127.0.0.1", port=smtp_server.port, security="none", timeout=5))
    ids = [open_incident(store, f"svc{i}", T0, posts=False, series=False) for i in range(5)]
    assert run_alerts(store, cfg, T0, worker_id="w").sent == 5
    smtp_server.stop()
    for iid in ids:
        resolve(store, iid, T0 + timedelta(hours=1))
    run_alerts(store, cfg, T0 + timedelta(hours=1), worker_id="w")  # svc0's resolve tried, the others left
    reopen(store, ids[0], T0 + timedelta(hours=2))
    new = open_incident(store, "svc5", T0 + timedelta(hours=2), posts=False, series=False)
    plan_notifications(store, cfg, T0 + timedelta(hours=2))
    # A listing cut short still holds the older rows of its pages' incidents, listed with them.
    listed = store.due_in_claim_order(T0 + timedelta(hours=2), 2)
    assert [_about(store, int(r["id"])) for r in listed] == [("resolved", ids[0]), ("alert", ids[0])]
    smtp_server.start()
    before = {int(r["id"]) for r in store.database.rows("SELECT id FROM deliveries")}
    assert run_alerts(store, cfg, T0 + timedelta(hours=2), worker_id="w").claimed == 7
    order = [_about(store, int(d["outbox_id"])) for d in store.database.rows("SELECT * FROM deliveries ORDER BY id")
             if int(d["id"]) not in before]
    # svc0's resolve (nothing to send now: it is open again) keeps its place before svc0's page, which takes it along
    # ahead of the other resolve notices; then the new incident's page, then the rest in the order they were due.
    assert order == [("resolved", ids[0]), ("alert", ids[0]), ("alert", new),
                     *(("resolved", iid) for iid in ids[1:])]
    subjects = [str(m["Subject"]) for m in smtp_server.inbox.messages[5:]]
    assert "RESOLVED" not in subjects[0] + subjects[1] and all("RESOLVED" in s for s in subjects[2:])


def _about(store: Store, outbox_id: int) -> tuple[str, int]:
    row = store.notification(outbox_id)
    [item] = store.notification_items(outbox_id)
    assert row is not None
    return str(row["kind"]), int(item["incident_id"])


def test_outbox_gives_when_a_row_failed_or_was_suppressed_not_when_it_was_due(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # Its "next/sent" cell gave such a row's next_attempt_at: when its last attempt had been due (2 h before the
    # failure, in a backlog), or the end of a group wait it never went out after; neither when it failed or was
    # suppressed, nor an attempt to come.
    cfg = _mail(smtp_server, RouteSettings(name="oncall", email=("oncall@example.org",)))
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)  # due after its group wait, at 12:00:30
    smtp_server.inbox.reject_rcpt = "550 5.1.1 mailbox unavailable"
    failed_at = T0 + timedelta(hours=2)
    assert dispatch(store, cfg, failed_at, worker_id="w").failed == 1
    # Queued, then muted by a silence added during its group wait.
    signal_at = T0 + timedelta(hours=3)
    open_incident(store, "Signal", signal_at, posts=False, series=False)
    plan_notifications(store, cfg, signal_at)
    muted_at = signal_at + timedelta(seconds=10)
    store.add_silence("Signal", muted_at, muted_at + timedelta(hours=5), "deploy", muted_at)
    store.add_silence("Telegram", muted_at, muted_at + timedelta(hours=5), "deploy", muted_at)
    plan_notifications(store, cfg, muted_at)
    # Planned while a silence holds: suppressed at once.
    planned_at = T0 + timedelta(hours=4)
    open_incident(store, "Telegram", planned_at, posts=False, series=False)
    plan_notifications(store, cfg, planned_at)
    rows = {str(store.incident(int(store.notification_items(int(r["id"]))[0]["incident_id"]))["service"]): r
            for r in store.outbox_listing(["failed", "suppressed"])}
    assert {s: r["status"] for s, r in rows.items()} == {"WhatsApp": "failed", "Signal": "suppressed",
                                                          "Telegram": "suppressed"}

    listing = CliRunner().invoke(main, ["--db", store.path, "outbox", "--all"])
    assert listing.exit_code == 0, listing.output
    cells = {int(line.split()[0]): line.split()[6] for line in listing.output.splitlines()[2:]}
    assert {i: cells[i] for i in (int(r["id"]) for r in rows.values())} == {
        rows["WhatsApp"]["id"]: iso(failed_at), rows["Signal"]["id"]: iso(muted_at),
        rows["Telegram"]["id"]: iso(planned_at)}

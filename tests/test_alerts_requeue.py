"""A message given up through a mail outage and queued again (`miner outbox retry`): its age stays counted from its
planning, its attempts go on. Real SQLite, a real SMTP server on 127.0.0.1 stopped and started, ``now`` passed in."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from smtp_server import SmtpServer, smtp_server  # noqa: F401  (fixture)
from test_alerts_clock import mail
from test_alerts_support import T0, open_incident

from miner.alerts import dispatch, plan_notifications
from miner.alerts.retry import GIVE_UP_ATTEMPTS, gives_up
from miner.alerts.settings import AlertSettings
from miner.store import Store
from miner.store.outbox import Finish
from miner.timeutil import iso


def _fail_until_given_up(store: Store, cfg: AlertSettings, now: datetime) -> tuple[int, datetime]:
    """Dispatch at each retry (retry_max apart: no backoff is longer, whatever its jitter) until the message is given
    up; returns how many attempts that took in this call, and the time it was given up."""
    rng = random.Random(7)
    for tries in range(1, 3 * GIVE_UP_ATTEMPTS):
        stats = dispatch(store, cfg, now, worker_id="w", rng=rng, clock=lambda: now)  # noqa: B023  (called here)
        assert stats.claimed == 1, stats
        if stats.failed:
            return tries, now
        now += timedelta(seconds=cfg.retry_max)
    raise AssertionError("never given up")


def test_a_message_queued_again_keeps_its_age_and_is_given_up_after_as_many_failures_again(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # `miner outbox retry` stamped created_at anew: the message read as planned at its requeue (`miner query`, the
    # age giving it up), and one requeued through a long outage got a whole new give_up_after (72 h) each time, so it
    # was never old. Its age counts from its planning, as Alertmanager's or healthchecks' does from the first queued,
    # and its failures since the requeue count towards giving it up again.
    cfg = mail(smtp_server, group_wait=0.0)
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    [row] = store.outbox_listing(["pending"])
    assert row["created_at"] == iso(T0)
    smtp_server.stop()
    old = T0 + timedelta(seconds=cfg.give_up_after)
    tries, gave_up = _fail_until_given_up(store, cfg, old)
    assert tries == GIVE_UP_ATTEMPTS

    requeued = gave_up + timedelta(hours=1)  # the on-call thinks the mail server is mended: it is not yet
    assert store.retry_notification(row["id"], requeued)
    assert store.notification(row["id"])["created_at"] == iso(T0)  # planned then still
    # Not given up at its first failure (it was old and had failed 10 times already), nor only give_up_after after
    # the requeue: after as many failures again, each waiting out its backoff.
    tries, _ = _fail_until_given_up(store, cfg, requeued)
    assert tries == GIVE_UP_ATTEMPTS
    [failed] = store.outbox_listing(["failed"])
    assert failed["attempts"] == 2 * GIVE_UP_ATTEMPTS and failed["created_at"] == iso(T0)
    assert failed["reason"].startswith(f"gave up after {2 * GIVE_UP_ATTEMPTS} attempts")

    smtp_server.start()
    again = requeued + timedelta(days=1)
    assert store.retry_notification(row["id"], again)
    assert dispatch(store, cfg, again, worker_id="w", clock=lambda: again).sent == 1
    assert smtp_server.inbox.message_ids() == [row["message_id"]]
    [sent] = store.outbox_listing(["sent"])
    assert sent["created_at"] == iso(T0) and sent["attempts"] == 2 * GIVE_UP_ATTEMPTS + 1


def test_a_failure_given_up_by_a_worker_whose_claim_lapsed_is_no_requeue(store: Store) -> None:
    # Worker w1's claim lapses and w2 takes the row over; w1 then gives it up, too late to fail it. The row was
    # never requeued (`miner outbox retry`): the failures towards giving it up still count from its first attempt.
    store.enqueue_digest("digest:1", "r", "<m@x>", {}, T0, "anchor:r", "x")
    [row] = store.outbox_listing(["pending"])
    with store.database.transaction() as conn:
        conn.execute("UPDATE outbox SET attempts = 8")
    late = T0 + timedelta(days=4)
    assert store.claim_due(row["id"], "w1", late, late) is not None
    assert store.reclaim_stale(late + timedelta(hours=1)) == 1
    later = late + timedelta(hours=2)
    assert store.claim_due(row["id"], "w2", later, later) is not None
    assert not store.finish_notification(row["id"], "w1", later, Finish("failed", "gave up after 9 attempts"))
    assert store.finish_notification(row["id"], "w2", later, Finish("retry", "refused", later))
    claimed = store.claim_due(row["id"], "w2", later, later)
    assert claimed is not None and claimed["attempts"] == GIVE_UP_ATTEMPTS - 1
    assert claimed["requeued_after"] == 0
    assert gives_up(AlertSettings(), claimed, later)

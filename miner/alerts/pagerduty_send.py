"""PagerDuty's side of delivery: a message is one event per incident, each recorded as PagerDuty accepts it, so a
retry, `miner outbox retry` or a worker taking over a lapsed claim sends only the rest; and the store's part of every
dedup_key."""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING, Any

from miner.alerts.channel_settings import WebhookSettings
from miner.alerts.delivery import DeliveryError, NothingSent, SendStopped, WebhookSender, delivered_key
from miner.timeutil import counted

if TYPE_CHECKING:
    from miner.alerts.claim import Claim
    from miner.store import Store


def pagerduty_store_key(store: Store) -> str:
    """This store's part of every PagerDuty dedup_key (pagerduty_events.pagerduty_dedup_key), made at its first event.

    Read before it is written: the write takes the store's write lock, which another writer may hold past the busy
    timeout (a prune, a backup), and only the store's first PagerDuty message has to."""
    return store.alert_state("pagerduty_store_key") or store.first_alert_state("pagerduty_store_key",
                                                                                secrets.token_hex(4))


def send_events(store: Store, claim: Claim, sender: WebhookSender, webhook: WebhookSettings,
                events: list[dict[str, Any]]) -> str:
    """Send the claimed outbox row's PagerDuty ``events`` (one per incident) that PagerDuty has not accepted yet.

    Each accepted event's ``dedup_key`` is recorded (alert_state ``delivered:<id>``, by the claim, as send_email
    records recipients) as soon as PagerDuty takes it, so a retry, `miner outbox retry`, or a worker taking over a
    lapsed claim sends only the rest; a re-sent trigger (miner died before recording it) is folded by PagerDuty into the
    alert of its dedup_key. A transient failure (429, 5xx, timeout) stops the run: the events after it would meet
    the same outage or rate limit, each taking up to the timeout. A permanent one (a 400: PagerDuty found that event
    invalid) does not keep the others from going out; the row fails once they have. Once the claim's stop is set
    (the service is stopping), no further event goes, and the event in flight is cut if it has not gone out whole
    STOP_GRACE s on: the rest are due again at once (SendStopped). The claim
    is renewed before each event after the first, so a batch outlasting the lease is not taken over mid-way.
    """
    if not events:
        raise NothingSent("nothing to send: its incidents resolved before it went out, and the route has "
                          "notify_resolved = false, or they opened again before their resolve notice went out")
    key = delivered_key(claim.id)
    done: list[str] = json.loads(store.alert_state(key) or "[]")
    todo = [e for e in events if e["dedup_key"] not in done]
    if not todo:
        return f"PagerDuty had every event ({len(done)}) from an earlier attempt"
    refused: dict[str, list[str]] = {}  # error -> the events that got it
    sent = 0
    for n, event in enumerate(todo):
        if n and claim.stop is not None and claim.stop.is_set():
            # A batch of a provider outage is hundreds of events, each up to the webhook's timeout: the stop waited
            # for them all, past systemd's TimeoutStopSec (SIGKILL, and the row claimed until its lease lapsed).
            # Cut by the stop, as an email is: due at once and no attempt of the message's. Taken for a transient
            # failure, it was backed off and counted towards giving the message up at every stop or reload.
            raise SendStopped(f"the service stopped with {len(todo) - n} of the message's "
                              f"{counted(len(events), 'PagerDuty event')} unsent: they go at the retry"
                              f"{_accepted(sent, len(done) - sent)}", reached=True)
        # Each event may take up to the webhook's timeout, and a batch is one event per incident: the lease, which
        # outlasts one timeout (AlertSettings.slowest_send), lapsed mid-batch, and another worker sent the rest
        # again, alongside. Each event gets a whole lease of its own.
        if n and not claim.renew():
            raise DeliveryError(f"our claim lapsed with {len(todo) - n} of the message's "
                                f"{counted(len(events), 'PagerDuty event')} unsent: the worker that took it over "
                                "sends them"
                                f"{_accepted(sent, len(done) - sent)}")
        what = f"{event['event_action']} {event['dedup_key']}"
        try:
            sender(webhook, event)
        except SendStopped as exc:
            # The event's POST cut by the stop before it went out whole: a stop as above, not PagerDuty's failure.
            left = len(todo) - n - 1
            raise SendStopped(f"{exc} ({what}{f', {left} more unsent' if left else ''})"
                              f"{_accepted(sent, len(done) - sent)}", reached=True if sent else None) from None
        except DeliveryError as exc:
            if not exc.permanent:
                raise DeliveryError(f"{exc} ({what}){_accepted(sent, len(done) - sent)}",
                                    retry_after=exc.retry_after, unreachable=exc.unreachable,
                                    throttled=exc.throttled) from None
            refused.setdefault(str(exc), []).append(what)
            continue
        sent += 1
        done.append(event["dedup_key"])
        claim.remember(key, json.dumps(done), f"its {counted(len(done), 'accepted PagerDuty event')}",
                       f"PagerDuty accepted {what}, but it is not recorded: it is sent again once the claim lapses "
                       "(lease_seconds), and folded by PagerDuty into its alert")
    if refused:
        # A missing routing key fails every event alike: said once, with the events it failed.
        raise DeliveryError("; ".join(f"{error} ({', '.join(whats)})" for error, whats in refused.items())
                            + _accepted(sent, len(done) - sent), permanent=True)
    earlier = len(done) - sent
    more = f" ({earlier} more at an earlier attempt)" if earlier else ""
    return f"{counted(sent, 'PagerDuty event')} accepted{more}"


def _accepted(now: int, earlier: int) -> str:
    if not now + earlier:
        return ""
    before = f" ({earlier} at an earlier attempt)" if earlier else ""
    return f"; {counted(now + earlier, 'other event')} accepted{before}"

"""The resolve notice in Slack and Teams, over a real loopback receiver: its line says when the outage was open,
from its opening to its resolve, as the email's "Open: ... to ..." does. It read "WhatsApp resolved, since 12:00 UTC
(1 h 00 min)": resolved since noon, to whoever read it in the channel, of an outage that had ended at 13:00."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from fakeserver import FakeServer, Recorded, ScriptedWebhook
from test_alerts_support import T0, open_incident, resolve, settings

from miner.alerts import dispatch, plan_notifications
from miner.alerts.settings import RouteSettings, WebhookSettings
from miner.store import Store


class Receiver(ScriptedWebhook):
    def answer(self, request: Recorded, status: int) -> tuple[bytes, str | None]:
        return b"", None


def first_lines(fmt: str, body: dict[str, Any]) -> list[str]:
    """Each incident's first line, as the channel shows it."""
    if fmt == "slack":
        # Without the status emoji and the bold around the service: ":red_circle: *WhatsApp* open, ..."
        return [b["text"]["text"].split("\n")[0].split(" ", 1)[1].replace("*", "")
                for b in body["blocks"] if b["type"] == "section"]
    card = body["attachments"][0]["content"]
    return [c["items"][0]["text"] for c in card["body"] if c["type"] == "Container"]


@pytest.mark.parametrize("fmt", ["slack", "teams"])
@pytest.mark.parametrize(("resolved_after", "want"), [
    (timedelta(hours=1), "WhatsApp resolved, open 12:00 to 13:00 UTC (1 h 00 min)"),
    # Over midnight: the days are named, as 12:00 to 11:30 would read backwards.
    (timedelta(hours=23, minutes=30), "WhatsApp resolved, open 2026-11-27 12:00 to 2026-11-28 11:30 UTC "
                                      "(23 h 30 min)"),
])
def test_the_resolve_notice_says_from_when_to_when_it_was_open(
        store: Store, server: FakeServer, monkeypatch: pytest.MonkeyPatch, fmt: str, resolved_after: timedelta,
        want: str) -> None:
    monkeypatch.setenv("MINER_TEST_HOOK", server.url + "/hook")
    receiver = Receiver(server, "/hook")
    route = RouteSettings(name="chat", webhooks=("hook",))
    cfg = settings(routes=(route,), group_wait=0.0,
                   webhooks=(WebhookSettings(name="hook", url_env="MINER_TEST_HOOK", format=fmt),))  # type: ignore[arg-type]
    iid = open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0, worker_id="w").sent == 1
    resolve(store, iid, T0 + resolved_after)
    plan_notifications(store, cfg, T0 + resolved_after)
    assert dispatch(store, cfg, T0 + resolved_after, worker_id="w").sent == 1
    alert, notice = (json.loads(r.body) for r in receiver.requests)
    assert first_lines(fmt, alert) == ["WhatsApp open, since 12:00 UTC (0 min)"]
    assert first_lines(fmt, notice) == [want]

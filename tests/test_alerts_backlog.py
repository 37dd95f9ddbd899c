"""What waited in the outbox through an outage or a config reload, when it goes out: digests, alerts, throttling."""

from __future__ import annotations

import json
from datetime import timedelta

from click.testing import CliRunner
from smtp_server import SmtpServer, smtp_server  # noqa: F401  (fixture)
from test_alerts_support import T0, open_incident, resolve, settings

from miner.alerts import run_alerts
from miner.alerts.settings import RouteSettings, SmtpSettings
from miner.cli import main
from miner.store import Store
from miner.timeutil import iso


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
    assert len(store.outbox_rows(["pending"])) == 1
    superseded = store.outbox_rows(["suppressed"])
    assert len(superseded) == 9 and all("superseded" in r["reason"] for r in superseded)
    smtp_server.start()
    run_alerts(store, cfg, T0 + timedelta(hours=10, minutes=2), worker_id="w")
    [msg] = smtp_server.inbox.messages
    text = msg.as_string()
    assert "WhatsApp" in text and "Signal" in text  # the first hour's incident is not lost
    [sent] = store.outbox_rows(["sent"])
    assert json.loads(sent["payload"]) == {"as_of": iso(T0 + timedelta(hours=10)), "since": iso(T0)}
    listing = CliRunner().invoke(main, ["--db", store.path, "outbox", "--all"])
    assert listing.exit_code == 0 and "superseded" in listing.output

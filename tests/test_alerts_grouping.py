"""group_interval over a real SMTP server and store: an outage spreading over detector buckets is one message per
group interval, route channel and group (group_by: a provider's services together, an unrelated service not held
back), and silences, inhibition, reminders, stale openings, retries, claims and the cap per message still hold."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from smtp_server import SmtpServer, smtp_server  # noqa: F401  (fixture)
from test_alerts_support import T0, dispatch_in_two_threads, open_incident, resolve, settings

from miner.alerts import dispatch, plan_notifications
from miner.alerts.content import MAX_INCIDENTS
from miner.alerts.settings import AlertSettings, RouteSettings, SmtpSettings
from miner.config import parse_config
from miner.errors import ConfigError
from miner.store import Store
from miner.store.migrations import MIGRATIONS, apply_migrations
from miner.timeutil import iso, parse_iso

STEP = timedelta(seconds=30)  # the service's alerts job
# As [[services]] gives them (the config loader fills AlertSettings.providers in); other services have none.
META = {"whatsapp": "Meta", "instagram": "Meta", "messenger": "Meta", "facebook": "Meta"}


def mail(server: SmtpServer, route: RouteSettings | None = None, **overrides: object) -> AlertSettings:
    route = route or RouteSettings(name="oncall", email=("oncall@example.org",))
    smtp = SmtpSettings(host="127.0.0.1", port=server.port, security="none", timeout=5)
    base: dict[str, object] = {"group_wait": 30.0, "group_interval": 900.0, "providers": META}
    base.update(overrides)
    return settings(routes=(route,), webhooks=(), smtp=smtp, **base)


def run(store: Store, cfg: AlertSettings, start: datetime, end: datetime,
        script: dict[datetime, Callable[[], object]] | None = None) -> None:
    """The alerts job every 30 s from ``start`` to ``end`` (inclusive); ``script`` runs at its times, before."""
    now = start
    while now <= end:
        if script and now in script:
            script[now]()
        plan_notifications(store, cfg, now)
        # Sent at the run's simulated time, not that plus the real seconds the run took: the storm's 116 incidents
        # took 2 s to send on a loaded CI runner, and its message was stamped 15:30:32, not 15:30.
        dispatch(store, cfg, now, worker_id="w", clock=lambda now=now: now)
        now += STEP


def sent(store: Store, kind: str = "alert") -> list[tuple[list[str], datetime]]:
    """Per sent notification of ``kind``, oldest first: its services, and when it went out."""
    out = []
    for row in sorted(store.outbox_listing(["sent"]), key=lambda r: int(r["id"])):
        if row["kind"] == kind:
            services = sorted(str(store.incident(i["incident_id"])["service"])  # type: ignore[index]
                              for i in store.notification_items(int(row["id"])))
            out.append((services, parse_iso(row["sent_at"])))
    return out


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def spreading(store: Store) -> dict[datetime, Callable[[], object]]:
    """A provider outage opening one service per 5-minute detector bucket."""
    return {at(m): (lambda s=s, m=m: open_incident(store, s, at(m), posts=False, series=False))
            for m, s in ((0, "WhatsApp"), (5, "Instagram"), (10, "Messenger"))}


@pytest.mark.parametrize(("interval", "route_interval", "messages"), [
    (900.0, None, [["WhatsApp"], ["Instagram", "Messenger"]]),
    (0.0, None, [["WhatsApp"], ["Instagram"], ["Messenger"]]),  # as before group_interval
    (900.0, 0.0, [["WhatsApp"], ["Instagram"], ["Messenger"]]),  # the route's override wins
    (0.0, 900.0, [["WhatsApp"], ["Instagram", "Messenger"]]),
], ids=["grouped", "zero", "route-zero", "route-grouped"])
def test_an_outage_spreading_over_buckets_is_one_message_per_group_interval(
        store: Store, smtp_server: SmtpServer, interval: float, route_interval: float | None,  # noqa: F811
        messages: list[list[str]]) -> None:
    route = RouteSettings(name="oncall", email=("oncall@example.org",), group_interval=route_interval)
    cfg = mail(smtp_server, route, group_interval=interval)
    run(store, cfg, T0, at(30), spreading(store))
    got = sent(store)
    assert [services for services, _ in got] == messages
    assert len(smtp_server.inbox.messages) == len(messages)
    if len(messages) == 2:
        # The second goes out a group interval after the first, not after its own group wait.
        assert got[1][1] - got[0][1] == timedelta(seconds=900)
    else:
        assert [when for _, when in got] == [at(0.5), at(5.5), at(10.5)]


def test_a_group_interval_shortened_by_a_reload_releases_what_it_held(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    script = spreading(store)
    run(store, mail(smtp_server), T0, at(6), {when: f for when, f in script.items() if when <= at(6)})
    assert [services for services, _ in sent(store)] == [["WhatsApp"]]  # Instagram held until 15:30
    # The route's pages came late: set to group_interval = 0 and reloaded. What was held goes at the next run, and
    # Messenger after its group wait, not both a quarter of an hour after WhatsApp's alert.
    pager = mail(smtp_server, RouteSettings(name="oncall", email=("oncall@example.org",), group_interval=0.0))
    run(store, pager, at(6.5), at(12), {when: f for when, f in script.items() if when > at(6)})
    got = sent(store)[1:]
    assert [services for services, _ in got] == [["Instagram"], ["Messenger"]]
    # Stamped with the real time the send took too: on a busy machine, a run later.
    assert all(at(m) <= when <= at(m) + STEP for (_, when), m in zip(got, (6.5, 10.5), strict=True)), got


@pytest.mark.parametrize(("group_by", "route_group_by", "messages"), [
    # An ISP opening 5 minutes after a Meta alert goes out after its group wait; Meta's next waits for Meta's.
    ("provider", None, [(["WhatsApp"], 0.5), (["Airtel"], 5.5), (["Instagram", "Messenger"], 15.5)]),
    ("service", None, [(["WhatsApp"], 0.5), (["Airtel"], 5.5), (["Instagram"], 10.5), (["Messenger"], 11.5)]),
    ("route", None, [(["WhatsApp"], 0.5), (["Airtel", "Instagram", "Messenger"], 15.5)]),  # as before group_by
    ("provider", "route", [(["WhatsApp"], 0.5), (["Airtel", "Instagram", "Messenger"], 15.5)]),  # the route's wins
    ("route", "provider", [(["WhatsApp"], 0.5), (["Airtel"], 5.5), (["Instagram", "Messenger"], 15.5)]),
], ids=["provider", "service", "route", "route-route", "route-provider"])
def test_group_interval_holds_back_only_the_group_of_the_last_message(
        store: Store, smtp_server: SmtpServer, group_by: str, route_group_by: str | None,  # noqa: F811
        messages: list[tuple[list[str], float]]) -> None:
    route = RouteSettings(name="oncall", email=("oncall@example.org",),
                          group_by=route_group_by)  # type: ignore[arg-type]
    cfg = mail(smtp_server, route, group_by=group_by)
    script: dict[datetime, Callable[[], object]] = {
        at(m): (lambda s=s, m=m: open_incident(store, s, at(m), posts=False, series=False))
        for m, s in ((0, "WhatsApp"), (5, "Airtel"), (10, "Instagram"), (11, "Messenger"))}
    run(store, cfg, T0, at(30), script)
    got = sent(store)
    assert [services for services, _ in got] == [services for services, _ in messages]
    # A send is stamped with the real time it took too, so on a busy machine a hold can end a job run later.
    assert all(at(m) <= when <= at(m) + STEP for (_, when), (_, m) in zip(got, messages, strict=True)), got
    assert len(smtp_server.inbox.messages) == len(messages)


def test_openings_planned_together_are_one_message_per_group_and_so_are_resolve_notices(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # group_wait = 0: openings planned in one run share a message within their group only; the Meta resolve notices
    # wait for the Meta notice before them, not for Airtel's.
    cfg = mail(smtp_server, group_wait=0.0)
    ids: dict[str, int] = {}

    def open_all() -> None:
        for s in ("WhatsApp", "Airtel", "Instagram"):
            ids[s] = open_incident(store, s, T0, posts=False, series=False)

    script: dict[datetime, Callable[[], object]] = {T0: open_all}
    for m, s in ((5, "WhatsApp"), (6, "Airtel"), (7, "Instagram")):
        script[at(m)] = lambda s=s, m=m: resolve(store, ids[s], at(m))
    run(store, cfg, T0, at(30), script)
    assert sorted(services for services, _ in sent(store)) == [["Airtel"], ["Instagram", "WhatsApp"]]
    notices = sent(store, "resolved")
    assert [services for services, _ in notices] == [["WhatsApp"], ["Airtel"], ["Instagram"]]
    assert notices[1][1] < at(6) + STEP and notices[2][1] >= notices[0][1] + timedelta(seconds=900)
    # Each notice threads under the alert that announced its incident.
    mails = smtp_server.inbox.messages
    alert_of = {"Airtel": mails[0]["Message-ID"], "Meta": mails[1]["Message-ID"]}
    if "Airtel" not in str(mails[0]["Subject"]):
        alert_of = {"Airtel": mails[1]["Message-ID"], "Meta": mails[0]["Message-ID"]}
    assert [m["In-Reply-To"] for m in mails[2:]] == [alert_of["Meta"], alert_of["Airtel"], alert_of["Meta"]]


def test_an_opening_planned_just_before_the_last_message_went_out_still_waits_for_it(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # Instagram is planned in the run that sends WhatsApp's alert, before it is sent (the batch was due: it took
    # nothing more), so nothing had gone out to hold it by when it was planned.
    cfg = mail(smtp_server)
    script = spreading(store)
    script[at(0.5)] = script.pop(at(5))
    run(store, cfg, T0, at(16), script)
    assert sent(store) == [(["WhatsApp"], at(0.5)), (["Instagram", "Messenger"], at(15.5))]


def test_a_silence_mutes_an_opening_held_by_group_interval_and_the_rest_still_goes(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    cfg = mail(smtp_server)
    run(store, cfg, T0, at(11), spreading(store))
    [held] = store.outbox_listing(["pending"])
    assert len(store.notification_items(int(held["id"]))) == 2  # Instagram and Messenger, waiting together
    sid = store.add_silence("Instagram", at(11), at(60), "Meta knows", at(11))
    run(store, cfg, at(11.5), at(20))
    assert [services for services, _ in sent(store)] == [["WhatsApp"], ["Messenger"]]
    [muted] = store.outbox_listing(["suppressed"])
    assert str(muted["reason"]).startswith(f"silenced by silence #{sid} ") and "Meta knows" in str(muted["reason"])


def test_an_opening_held_by_group_interval_that_resolves_meanwhile_is_one_message_saying_so(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    cfg = mail(smtp_server)
    script = spreading(store)
    del script[at(10)]
    instagram: list[int] = []
    script[at(5)] = lambda: instagram.append(open_incident(store, "Instagram", at(5), posts=False, series=False))
    script[at(8)] = lambda: resolve(store, instagram[0], at(8))
    run(store, cfg, T0, at(30), script)
    assert [services for services, _ in sent(store)] == [["WhatsApp"], ["Instagram"]]
    assert str(smtp_server.inbox.messages[-1]["Subject"]).startswith("[miner] RESOLVED SINCE: Instagram")
    [notice] = store.outbox_listing(["suppressed"])
    assert notice["kind"] == "resolved" and "not sent yet" in str(notice["reason"])
    assert sent(store, "resolved") == []


def test_resolve_notices_are_grouped_by_group_interval_apart_from_alerts(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    cfg = mail(smtp_server)
    ids: dict[str, int] = {}

    def open_all() -> None:
        for s in ("WhatsApp", "Instagram", "Messenger"):
            ids[s] = open_incident(store, s, T0, posts=False, series=False)

    script: dict[datetime, Callable[[], object]] = {T0: open_all}
    for m, s in ((5, "WhatsApp"), (8, "Instagram"), (12, "Messenger")):
        script[at(m)] = lambda s=s, m=m: resolve(store, ids[s], at(m))
    run(store, cfg, T0, at(30), script)
    assert [services for services, _ in sent(store)] == [["Instagram", "Messenger", "WhatsApp"]]
    notices = sent(store, "resolved")
    # The first notice does not wait for the alert (another kind of message); the next two wait for it together.
    assert notices == [(["WhatsApp"], at(5.5)), (["Instagram", "Messenger"], at(5.5) + timedelta(seconds=900))]


def test_a_reminder_due_within_group_interval_waits_and_goes_with_the_next_openings(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    cfg = mail(smtp_server, repeat_interval=3600.0)
    script: dict[datetime, Callable[[], object]] = {
        at(m): (lambda s=s, m=m: open_incident(store, s, at(m), posts=False, series=False))
        for m, s in ((0, "WhatsApp"), (55, "Instagram"), (65, "Messenger"))}
    run(store, cfg, T0, at(80), script)
    got = sent(store)
    # WhatsApp's reminder was due at 60:30, within 15 minutes of Instagram's alert (its provider's): it waits, and
    # Messenger joins it.
    assert got == [(["WhatsApp"], at(0.5)), (["Instagram"], at(55.5)), (["Messenger", "WhatsApp"], at(70.5))]
    last = store.outbox_listing(["sent"])[0]
    assert sorted(i["kind"] for i in store.notification_items(int(last["id"]))) == ["open", "repeat"]
    assert str(smtp_server.inbox.messages[-1]["Subject"]).startswith("[miner] OPEN: ")
    # The next reminder counts from the one that went out.
    [state] = [s for (_, iid), s in store.alert_incident_states([1]).items() if iid == 1]
    assert parse_iso(state["last_notified_at"]) == at(70.5)


def test_a_stale_opening_is_recorded_as_such_not_held(store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    cfg = mail(smtp_server)
    run(store, cfg, T0, at(1), spreading(store) | {at(5): lambda: None})
    over = open_incident(store, "Instagram", at(5) - timedelta(hours=2), posts=False, series=False)
    resolve(store, over, at(5) - timedelta(hours=1))  # over before miner saw it
    run(store, cfg, at(5), at(30))
    [stale] = [r for r in store.outbox_listing(["suppressed"]) if r["kind"] == "alert"]
    assert str(stale["reason"]).startswith("stale: ")
    assert store.outbox_listing(["pending"]) == [] and len(sent(store)) == 1


def test_a_late_opening_still_going_on_is_alerted_with_its_group(store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # miner was down for hours: an outage it finds still on goes out as any alert of its group would.
    cfg = mail(smtp_server)
    run(store, cfg, T0, at(1), spreading(store) | {at(5): lambda: None})
    open_incident(store, "Instagram", at(5) - timedelta(hours=2), posts=False, series=False)
    run(store, cfg, at(5), at(16))
    assert store.outbox_listing(["suppressed"]) == []
    assert sent(store) == [(["WhatsApp"], at(0.5)), (["Instagram"], at(15.5))]
    assert len(smtp_server.inbox.messages) == 2


def test_messages_tried_through_an_smtp_outage_are_not_held_and_each_goes_once(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    cfg = mail(smtp_server, group_wait=0.0)
    script = spreading(store)
    whatsapp = script[T0]
    script[T0] = lambda: (smtp_server.stop(), whatsapp())
    script[at(20)] = smtp_server.start
    script[at(22)] = lambda: open_incident(store, "Facebook", at(22), posts=False, series=False)
    run(store, cfg, T0, at(45), script)
    got = sent(store)
    # Nothing went out before the outage, so each opening is a batch of its own, tried and retried through it: none
    # waits longer once the server is back (retried messages are late already). Facebook, planned after them,
    # waits a group interval after the last of them.
    assert [services for services, _ in got] == [["WhatsApp"], ["Instagram"], ["Messenger"], ["Facebook"]]
    assert all(at(20) <= when <= at(22) for _, when in got[:3])
    assert got[3][1] == max(when for _, when in got[:3]) + timedelta(seconds=900)
    ids = smtp_server.inbox.message_ids()
    assert len(ids) == 4 and len(set(ids)) == 4
    assert sorted(r["attempts"] > 1 for r in store.outbox_listing(["sent"])) == [False, True, True, True]


def test_batches_due_together_are_held_as_one_and_two_dispatchers_send_nothing_twice(
        tmp_path: Path, smtp_server: SmtpServer) -> None:  # noqa: F811
    # Six batches, due together (planned before group_interval was set): the first goes, the others wait as one
    # batch instead of one group interval each.
    path = tmp_path / "miner.sqlite"
    setup = Store.open(path)
    cfg = mail(smtp_server, group_wait=0.0, providers={f"svc{i}": "Cloud" for i in range(6)})
    for i in range(6):
        open_incident(setup, f"svc{i}", T0, posts=False, series=False)
        plan_notifications(setup, replace(cfg, group_interval=0.0), T0)
    setup.close()
    # Both at once, twice each; then both again a group interval later.
    dispatch_in_two_threads(path, cfg, (T0, at(16)), 2)
    ids = smtp_server.inbox.message_ids()
    assert len(ids) == len(set(ids))
    check = Store.open(path)
    got = sent(check)
    # Each incident in exactly one message, each message sent once; at T0 at most one per dispatcher (both may find
    # nothing sent yet), the rest together a group interval later.
    assert sorted(s for services, _ in got for s in services) == [f"svc{i}" for i in range(6)]
    assert all(len(check.deliveries(int(r["id"]))) == 1 for r in check.outbox_listing(["sent"]))
    assert len(got) <= 3 and len(ids) == len(got) and got[-1][1] >= T0 + timedelta(seconds=900)
    assert check.outbox_listing(["pending", "sending"]) == []
    check.close()


def test_everything_held_goes_in_one_message_capped_at_max_incidents(
        store: Store, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setattr("miner.alerts.render.MAX_HTML_BYTES", 10_000_000)  # the cap at MAX_INCIDENTS alone
    # A storm of one provider's services (of services without a provider, each would be a message of its own).
    cfg = mail(smtp_server, providers={"first": "Cloud"} | {f"svc{i:02d}{j}": "Cloud" for i in range(29)
                                                            for j in range(4)})

    def burst(i: int) -> None:  # a storm: four more services every 30 seconds, each burst planned on its own
        for j in range(4):
            open_incident(store, f"Svc{i:02d}{j}", at(1) + i * STEP, posts=False, series=False)

    script: dict[datetime, Callable[[], object]] = {T0: lambda: open_incident(store, "First", T0, posts=False,
                                                                                series=False)}
    script |= {at(1) + i * STEP: (lambda i=i: burst(i)) for i in range(29)}  # until 15:00
    run(store, cfg, T0, at(16), script)
    got = sent(store)
    n = 29 * 4
    assert [len(services) for services, _ in got] == [1, n]
    assert got[1][1] == at(15.5)
    text = smtp_server.inbox.messages[-1].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert f"shows the {MAX_INCIDENTS} most important of {n}" in text


@pytest.mark.parametrize(("text", "error"), [
    ("[alerts]\ngroup_interval = -1\n", r"x.toml:2: alerts.group_interval: must not be negative"),
    ("[[alerts.routes]]\nname = 'r'\nemail = ['a@example.org']\ngroup_interval = -5\n",
     r"x.toml:4: alerts.routes\[0\].group_interval: must not be negative"),
    ("[alerts]\ngroup_interval = 'soon'\n", r"x.toml:2: alerts.group_interval: "),
    ("[alerts]\ngroup_interval = 1e300\n", r"x.toml:2: alerts.group_interval: must be at most 31622400 seconds"),
])
def test_group_interval_must_be_a_non_negative_number(text: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        parse_config(text, "x.toml")


def test_group_interval_is_read_from_the_config() -> None:
    config = parse_config("[alerts]\ngroup_interval = 600\n\n[[alerts.routes]]\nname = 'r'\n"
                          "email = ['a@example.org']\ngroup_interval = 0\n", "x.toml")
    assert config.alerts.group_interval == 600.0
    assert config.alerts.group_interval_for(config.alerts.routes[0]) == timedelta(0)
    assert parse_config("", "x.toml").alerts.group_interval == 900.0


@pytest.mark.parametrize(("group_by", "held"), [("route", True), ("provider", False)])
def test_a_message_sent_before_the_upgrade_to_groups_holds_the_whole_route_as_it_did(
        tmp_path: Path, smtp_server: SmtpServer, group_by: str, held: bool) -> None:  # noqa: F811
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        apply_migrations(conn, MIGRATIONS[:8])  # the schema before alert groups
        conn.execute("INSERT INTO outbox (dedupe_key, route, channel, kind, status, message_id, created_at, "
                     "next_attempt_at, sent_at, attempts) VALUES ('open:x', 'oncall', 'email', 'alert', 'sent', "
                     "'<m@example.org>', ?, ?, ?, 1)", (iso(T0), iso(T0), iso(T0)))
    conn.close()
    store = Store.open(path)
    assert [r["group_key"] for r in store.outbox_listing(["sent"])] == [""]
    cfg = mail(smtp_server, group_by=group_by)
    run(store, cfg, at(5), at(16), {at(5): lambda: open_incident(store, "Airtel", at(5), posts=False, series=False)})
    [(before, _), (services, when)] = sent(store)  # the one sent before has no items here
    assert before == [] and services == ["Airtel"] and (when >= at(15) if held else when < at(6))
    store.close()


@pytest.mark.parametrize(("text", "error"), [
    ("[alerts]\ngroup_by = 'providers'\n", "x.toml:2: alerts.group_by: must be one of 'provider' | 'service' | "
     "'route', got 'providers' (did you mean 'provider'?)"),
    ("[[alerts.routes]]\nname = 'r'\nemail = ['a@example.org']\ngroup_by = 'Service'\n",
     "x.toml:4: alerts.routes[0].group_by: must be one of 'provider' | 'service' | 'route', got 'Service' (did you "
     "mean 'service'?)"),
    ("[[alerts.routes]]\nname = 'r'\nemail = ['a@example.org']\ngroup_by = ['provider']\n",
     "x.toml:4: alerts.routes[0].group_by: must be one of 'provider' | 'service' | 'route', got a list"),
], ids=["alerts", "route", "a list"])
def test_group_by_must_be_one_of_the_choices(text: str, error: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "x.toml")
    assert str(info.value) == error


def test_group_by_is_read_from_the_config_and_groups_by_provider_or_else_by_the_services_group() -> None:
    config = parse_config(
        "[[services]]\nname = 'WhatsApp'\nprovider = 'Meta'\n[[services]]\nname = 'Instagram'\nprovider = 'meta'\n"
        "[[services]]\nname = 'Threads'\n[[services]]\nname = 'Signal'\n[[services]]\nname = 'Telegram'\n"
        "[[services]]\nname = 'Airtel'\n\n"
        # Threads has no provider: it goes with its group's; WhatsApp's provider comes before its group.
        "[[groups]]\nname = 'META'\nservices = ['Threads', 'WhatsApp']\n"
        "[[groups]]\nname = 'Chat'\nservices = ['Signal', 'Telegram', 'WhatsApp']\n"
        "[[groups]]\nname = 'Other'\nservices = ['Signal', 'Airtel']\n\n"
        "[alerts]\ngroup_by = 'service'\n\n"
        "[[alerts.routes]]\nname = 'r'\nemail = ['a@example.org']\ngroup_by = 'provider'\n\n"
        "[[alerts.routes]]\nname = 's'\nemail = ['a@example.org']\n", "x.toml")
    alerts = config.alerts
    by_provider, by_service = alerts.routes
    assert {s: alerts.group_of(by_provider, s) for s in ("WhatsApp", "instagram", "Threads", "Signal", "Telegram",
                                                         "Airtel")} == {
        "WhatsApp": "group:meta", "instagram": "group:meta", "Threads": "group:meta", "Signal": "group:chat",
        "Telegram": "group:chat", "Airtel": "group:other"}
    assert [alerts.group_of(by_service, s) for s in ("WhatsApp", "Airtel")] == ["service:whatsapp", "service:airtel"]
    assert parse_config("", "x.toml").alerts.group_by == "provider"
    assert alerts.group_of(RouteSettings(name="t", email=("a@example.org",)), "Gmail") == "service:gmail"

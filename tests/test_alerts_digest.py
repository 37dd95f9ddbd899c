"""The digest: what it says, its files, its headers, and the CLI around digests, the outbox and silences."""

from __future__ import annotations

import email
import email.policy
import json
import sqlite3
import time
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from smtp_server import SmtpServer, smtp_server  # noqa: F401  (fixture)
from test_alerts_support import T0, add_official, failing_source, open_incident, resolve, settings

from miner.alerts import render_digest, write_digest_files
from miner.alerts.render import render_alert
from miner.alerts.settings import RouteSettings
from miner.cli import main
from miner.cli.times import parse_since
from miner.config import load_config
from miner.errors import InputError
from miner.store import Store
from miner.timeutil import parse_iso, utcnow


def seeded(store: Store) -> None:
    open_incident(store, "WhatsApp", T0)
    add_official(store, "WhatsApp", T0 + timedelta(minutes=23))
    old = open_incident(store, "Airtel", T0 - timedelta(hours=3), posts=False)
    resolve(store, old, T0 - timedelta(hours=1))
    failing_source(store, T0)


def test_digest_summarises_open_and_recent_incidents_and_failing_sources(store: Store) -> None:
    seeded(store)
    route = RouteSettings(name="oncall", email=("oncall@example.org",), list_unsubscribe="mailto:owner@example.org")
    d = render_digest(store, settings(routes=(route,), webhooks=()), T0 + timedelta(minutes=50), "oncall")
    assert "1 open, 1 resolved" in d.subject and "1 source failing" in d.subject
    assert d.text.index("WhatsApp: OPEN") < d.text.index("Airtel: RESOLVED")  # open first
    # add_official stores the incident when it starts, as miner stores one the provider gave no start: first seen.
    assert "Our lead:   23 min before miner first saw it on the provider's status page" in d.text
    assert "reddit-ug (reddit): HTTP 429 <too many> requests" in d.text
    assert "HTTP 429 &lt;too many&gt; requests" in d.html and "\x00" not in d.html
    assert "&lt;script&gt;" in d.html and "<script>" not in d.html
    assert len(d.images) == 2 and all(png.startswith(b"\x89PNG") for png in d.images.values())
    msg = d.message
    assert msg["List-Unsubscribe"] == "<mailto:owner@example.org>"
    assert msg["Auto-Submitted"] == "auto-generated" and msg["Message-ID"].startswith("<miner.")
    parsed = email.message_from_bytes(bytes(msg), policy=email.policy.default)
    assert [p.get_content_type() for p in parsed.walk()] == [
        "multipart/alternative", "text/plain", "multipart/related", "text/html", "image/png", "image/png"]


def test_digest_says_which_failing_sources_need_someone_to_act(store: Store) -> None:
    """A revoked token's 401 lasts until someone acts; a 429 passes. The digest's reader, who may never run
    `miner status`, is told which is which."""
    from miner.config import SourceConfig

    store.sync_sources([SourceConfig(name="private", type="rss", url="https://x.example/feed"),
                        SourceConfig(name="reddit-ug", type="reddit", query="airtel")])
    store.record_poll_failure("private", "HTTP 401 <Unauthorized> from x.example", T0, T0 + timedelta(minutes=5),
                              needs_action=True)
    store.record_poll_failure("reddit-ug", "HTTP 429 too many requests", T0, T0 + timedelta(minutes=5))
    d = render_digest(store, settings(), T0 + timedelta(minutes=10), "oncall")
    assert "private (rss): needs someone to act: HTTP 401 <Unauthorized>" in d.text
    assert "reddit-ug (reddit): HTTP 429 too many requests" in d.text
    assert "<b>needs someone to act:</b> HTTP 401 &lt;Unauthorized&gt;" in d.html
    assert d.html.count("needs someone to act") == 1


def test_digest_as_of_an_earlier_time_does_not_leak_the_future(store: Store) -> None:
    seeded(store)
    d = render_digest(store, settings(), T0 + timedelta(minutes=10), "oncall")
    assert "Provider:   nothing on the status page yet" in d.text  # the provider posted at +23 min


def test_planned_work_on_the_status_page_is_not_shown_as_the_provider_incident(store: Store) -> None:
    open_incident(store, "WhatsApp", T0)
    add_official(store, "WhatsApp", T0 + timedelta(minutes=23), status="completed")  # a maintenance
    d = render_digest(store, settings(), T0 + timedelta(minutes=50), "oncall")
    assert "Provider:   nothing on the status page yet" in d.text and "Our lead" not in d.text


def test_write_digest_files_links_the_charts(store: Store, tmp_path: Path) -> None:
    seeded(store)
    paths = write_digest_files(store, settings(), T0 + timedelta(minutes=50), tmp_path / "out")
    names = sorted(p.name for p in paths)
    assert names[:3] == ["digest-oncall-chart-1.png", "digest-oncall-chart-2.png", "digest-oncall.eml"]
    html = (tmp_path / "out" / "digest-oncall.html").read_text()
    assert 'src="digest-oncall-chart-1.png"' in html and "cid:" not in html


CONFIG = """
[[services]]
name = "WhatsApp"

[[services]]
name = "Airtel"

[alerts]
from_addr = "miner <miner@example.org>"

[alerts.smtp]
host = "127.0.0.1"
port = 9
security = "none"

[[alerts.routes]]
name = "oncall"
email = ["oncall@example.org"]
digest = "0 * * * *"
"""


def _seeded_cli(tmp_path: Path) -> list[str]:
    """The global options of a CLI run on CONFIG and a store seeded with the incidents and failing source above."""
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG)
    db = tmp_path / "miner.sqlite"
    store = Store.open(db)
    seeded(store)
    store.close()
    return ["--config", str(cfg), "--db", str(db)]


def test_cli_digest_outbox_and_silences(tmp_path: Path) -> None:
    run = CliRunner()
    base = _seeded_cli(tmp_path)

    res = run.invoke(main, [*base, "digest", "--dry-run", "--out", str(tmp_path / "d"), "--at", "2026-11-27T12:50Z"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "d" / "digest-oncall.eml").is_file() and "digest-oncall.html" in res.output
    for at, error in (("0001-01-01T00:00:00+01:00", "is out of range"), ("noon", "is not an ISO 8601 date or time")):
        res = run.invoke(main, [*base, "digest", "--dry-run", "--out", str(tmp_path / "d"), "--at", at])
        assert res.exit_code == 1 and f"Error: --at {at!r} {error}" in res.output, res.output

    res = run.invoke(main, [*base, "digest"])
    assert res.exit_code == 0 and "queued digest for route oncall" in res.output
    res = run.invoke(main, [*base, "outbox"])
    assert "pending" in res.output and "digest" in res.output

    res = run.invoke(main, [*base, "silence", "add", "whatsapp", "--for", "1h30m", "--comment", "deploy"])
    assert res.exit_code == 0 and "silence 1: WhatsApp until" in res.output
    assert "deploy" in run.invoke(main, [*base, "silence", "list"]).output
    res = run.invoke(main, [*base, "silence", "add", "Telegram", "--for", "2h"])
    assert res.exit_code != 0 and "unknown service 'Telegram'" in res.output
    res = run.invoke(main, [*base, "silence", "add", "WhatsApp", "--for", "soon"])
    assert res.exit_code != 0 and "bad duration" in res.output
    res = run.invoke(main, [*base, "silence", "remove", "1"])
    assert res.exit_code == 0 and "silence 1 (WhatsApp) ended at" in res.output
    assert "no active silences" in run.invoke(main, [*base, "silence", "list"]).output
    listed = run.invoke(main, [*base, "silence", "list", "--all"]).output.splitlines()
    assert listed[0].split() == ["id", "service", "from", "until", "state", "comment"]
    assert listed[2].split()[:2] == ["1", "WhatsApp"] and listed[2].split()[-2:] == ["expired", "deploy"]
    res = run.invoke(main, [*base, "silence", "remove", "1"])
    assert res.exit_code != 0 and "silence 1 (WhatsApp) already ended at" in res.output
    res = run.invoke(main, [*base, "silence", "remove", "7"])
    assert res.exit_code != 0 and "no silence 7" in res.output
    # Both said "is not a failed notification": which it was, an id that does not exist or one not failed, is said.
    res = run.invoke(main, [*base, "outbox", "retry", "99"])
    assert res.exit_code == 1 and "Error: no notification 99 in the outbox" in res.output, res.output
    with sqlite3.connect(tmp_path / "miner.sqlite") as conn:
        (digest_id,) = conn.execute("SELECT id FROM outbox WHERE kind = 'digest' AND status = 'pending'").fetchone()
    res = run.invoke(main, [*base, "outbox", "retry", str(digest_id)])
    assert res.exit_code == 1 and f"Error: outbox {digest_id} is pending, not failed" in res.output, res.output


def test_cli_outbox_retry_refuses_a_message_whose_route_is_gone_and_queues_it_once_it_is_back(tmp_path: Path
                                                                                                ) -> None:
    run = CliRunner()
    base = _seeded_cli(tmp_path)
    assert run.invoke(main, [*base, "digest"]).exit_code == 0
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG.replace('name = "oncall"', 'name = "team"'))  # the route renamed while its digest waits
    res = run.invoke(main, [*base, "outbox", "send"])
    assert res.exit_code == 1 and "failed 1" in res.output, res.output

    def digest_status() -> tuple[int, str]:
        with sqlite3.connect(tmp_path / "miner.sqlite") as conn:
            return conn.execute("SELECT id, status FROM outbox WHERE kind = 'digest' AND route = 'oncall'").fetchone()

    digest_id, status = digest_status()
    assert status == "failed"
    # It said "queued again", and the next send failed it again for the same reason.
    res = run.invoke(main, [*base, "outbox", "retry", str(digest_id)])
    assert res.exit_code == 1, res.output
    assert (f"Error: outbox {digest_id} would fail again: route 'oncall' is no longer configured; it stays failed"
            in res.output), res.output
    assert digest_status() == (digest_id, "failed")
    cfg.write_text(CONFIG)  # the route back
    res = run.invoke(main, [*base, "outbox", "retry", str(digest_id)])
    assert res.exit_code == 0 and f"outbox {digest_id} queued again" in res.output, res.output
    assert digest_status() == (digest_id, "pending")


def test_cli_silence_durations_need_a_unit_on_every_number(tmp_path: Path) -> None:
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG)
    db = tmp_path / "miner.sqlite"
    Store.open(db).close()
    run = CliRunner()
    base = ["--config", str(cfg), "--db", str(db)]
    # "1h30" meant an hour and a half, and was taken as one hour; "1.2.3h" as 2.3 hours.
    for text in ("1h30", "1d12", "1.2.3h", "2h 15"):
        res = run.invoke(main, [*base, "silence", "add", "WhatsApp", "--for", text])
        assert res.exit_code == 1 and "bad duration" in res.output and "each number with its unit" in res.output
    res = run.invoke(main, [*base, "silence", "add", "WhatsApp", "--for", "99999999999d"])
    assert res.exit_code == 1 and "longer than ten years" in res.output, res.output
    before = utcnow()
    res = run.invoke(main, [*base, "silence", "add", "WhatsApp", "--for", " 1H 30m "])
    assert res.exit_code == 0, res.output
    until = parse_iso(res.output.split(" until ")[1])
    assert timedelta(minutes=89) < until - before <= timedelta(minutes=91)
    assert "silence 1:" in res.output  # the refused ones stored nothing


def test_cli_silence_an_upper_case_m_is_refused_as_it_may_mean_months(tmp_path: Path) -> None:
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG)
    db = tmp_path / "miner.sqlite"
    Store.open(db).close()
    run = CliRunner()
    base = ["--config", str(cfg), "--db", str(db)]
    # "--for 1M" silenced a service for one minute: units were read in any case, and "M" may well mean a month.
    for text in ("1M", "1h30M", " 2 M "):
        res = run.invoke(main, [*base, "silence", "add", "WhatsApp", "--for", text])
        assert res.exit_code == 1, res.output
        assert (f"Error: bad duration {text!r}: M is no unit (a minute is m; a month, give it in days: 30d); units "
                "are s (seconds), m (minutes), h (hours), d (days), w (weeks)") in res.output, res.output
    assert "no active silences" in run.invoke(main, [*base, "silence", "list"]).output
    now = utcnow()
    with pytest.raises(InputError, match="M is no unit"):
        parse_since("1M", "--since", now)
    # The other units still read in either case, and m is a minute.
    assert [parse_since(text, "--since", now) for text in ("2H", "1m", "1W", "30S", "1D")] == [
        now - timedelta(hours=2), now - timedelta(minutes=1), now - timedelta(weeks=1), now - timedelta(seconds=30),
        now - timedelta(days=1)]
    res = run.invoke(main, [*base, "silence", "add", "WhatsApp", "--for", "30D"])
    assert res.exit_code == 0 and "silence 1: WhatsApp until" in res.output, res.output


def test_cli_an_outage_outlasting_a_short_silence_is_announced_when_it_ends(
        tmp_path: Path, smtp_server: SmtpServer) -> None:  # noqa: F811
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG.replace("port = 9", f"port = {smtp_server.port}").replace(
        'from_addr = "miner <miner@example.org>"', 'from_addr = "miner <miner@example.org>"\ngroup_wait = 0'))
    db = tmp_path / "miner.sqlite"
    store = Store.open(db)
    iid = open_incident(store, "WhatsApp", utcnow())
    run = CliRunner()
    base = ["--config", str(cfg), "--db", str(db)]
    # 5 s: the send after it must come while it lasts (1 s could be gone first on a loaded CI runner).
    assert run.invoke(main, [*base, "silence", "add", "WhatsApp", "--for", "5s"]).exit_code == 0
    assert run.invoke(main, [*base, "outbox", "send"]).exit_code == 0
    assert smtp_server.inbox.messages == [] and len(store.outbox_listing(["suppressed"])) == 1

    [silence] = store.silences()
    time.sleep(max(0.0, (parse_iso(silence["ends_at"]) - utcnow()).total_seconds()) + 0.1)
    for _ in range(2):  # the late opening goes out once
        res = run.invoke(main, [*base, "outbox", "send"])
        assert res.exit_code == 0, res.output
    [opening] = smtp_server.inbox.messages
    assert str(opening["Subject"]).startswith("[miner] OPEN: WhatsApp")

    resolve(store, iid, utcnow())
    assert run.invoke(main, [*base, "outbox", "send"]).exit_code == 0
    store.close()
    closing = smtp_server.inbox.messages[-1]
    assert len(smtp_server.inbox.messages) == 2 and "RESOLVED" in str(closing["Subject"])
    assert closing["In-Reply-To"] == opening["Message-ID"]


def test_digest_and_status_leave_out_sources_removed_from_the_config(tmp_path: Path) -> None:
    db = tmp_path / "miner.sqlite"
    store = Store.open(db)
    seeded(store)  # reddit-ug is failing
    store.close()
    run = CliRunner()
    configured = tmp_path / "with.toml"
    configured.write_text(CONFIG + '\n[[sources]]\nname = "reddit-ug"\ntype = "reddit"\nquery = "airtel"\n')
    removed = tmp_path / "without.toml"
    removed.write_text(CONFIG)
    for cfg, listed in ((configured, True), (removed, False)):
        out = tmp_path / cfg.stem
        res = run.invoke(main, ["--config", str(cfg), "--db", str(db), "digest", "--dry-run", "--out", str(out),
                                "--at", "2026-11-27T12:50Z"])
        assert res.exit_code == 0, res.output
        text = (out / "digest-oncall.txt").read_text()
        assert ("reddit-ug (reddit): HTTP 429" in text) is listed
        assert ("Sources failing to poll" in text) is listed
        res = run.invoke(main, ["--config", str(cfg), "--db", str(db), "status", "--format", "json"])
        assert res.exit_code == 0, res.output
        assert [s["source"] for s in json.loads(res.output)["sources"]] == (["reddit-ug"] if listed else [])


def test_grouped_openings_become_one_alert_written_by_file_senders(store: Store, tmp_path: Path) -> None:
    from miner.alerts import FileSenders, run_alerts

    cfg = settings(group_wait=60.0, providers={"whatsapp": "Meta", "instagram": "Meta"})  # email + a JSON webhook
    wa = open_incident(store, "WhatsApp", T0)
    ig = open_incident(store, "Instagram", T0 + timedelta(seconds=40), posts=False)
    store.create_group("Meta", "Meta platform outage", ["WhatsApp", "Instagram"], T0 + timedelta(seconds=40), [wa, ig])
    files = FileSenders(tmp_path / "sent")
    run_alerts(store, cfg, T0, worker_id="demo", senders=files.senders())
    run_alerts(store, cfg, T0 + timedelta(seconds=40), worker_id="demo", senders=files.senders())
    assert files.count == 0  # still inside group_wait
    stats = run_alerts(store, cfg, T0 + timedelta(seconds=61), worker_id="demo", senders=files.senders())
    assert stats.sent == 2
    [eml] = sorted((tmp_path / "sent").glob("*.eml"))
    msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert msg["Subject"] == "[miner] OPEN: WhatsApp, Instagram (Meta: Meta platform outage)"
    [hook] = sorted((tmp_path / "sent").glob("*-webhook-hook.json"))
    body = json.loads(hook.read_text())
    assert [i["service"] for i in body["incidents"]] == ["WhatsApp", "Instagram"]
    assert {i["group"] for i in body["incidents"]} == {"Meta: Meta platform outage"}


def test_queued_digest_sent_by_the_service_leaves_out_removed_sources(store: Store, tmp_path: Path) -> None:
    from miner.alerts import FileSenders, enqueue_digest_now, run_alerts

    seeded(store)
    cfg = settings(routes=(RouteSettings(name="oncall", email=("oncall@example.org",)),), webhooks=())
    files = FileSenders(tmp_path / "sent")
    for minute, sources in ((50, ["reddit-ug"]), (55, ["another-source"])):
        enqueue_digest_now(store, cfg, cfg.routes[0], T0 + timedelta(minutes=minute))
        run_alerts(store, cfg, T0 + timedelta(hours=1), worker_id="svc", senders=files.senders(), sources=sources)
    first, second = (email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
                     for p in sorted((tmp_path / "sent").glob("*.eml")))
    assert "1 source failing" in first["Subject"] and "failing" not in second["Subject"]


def test_sparse_incident_rows_and_odd_details_still_render(store: Store) -> None:
    from test_alerts_support import seed_posts

    seed_posts(store, "Airtel", T0 - timedelta(minutes=5))
    iid = store.open_incident("Airtel", T0, {}, {"unexpected": {"nested": [1, 2]}})
    store.update_incident(iid, T0 + timedelta(minutes=5), {"symptoms": "not json"}, kind="official",
                          details={"official_id": None})
    d = render_digest(store, settings(), T0 + timedelta(minutes=30), "oncall")
    assert "Airtel: OPEN" in d.text and "baseline 0.0" in d.text
    # No symptom summary on the incident row: counted from the classified posts instead.
    assert "messaging 1 (17%)" in d.text
    [chart] = d.images.values()
    assert chart.startswith(b"\x89PNG")  # "no bucket data yet"


def test_cli_outbox_with_only_sent_notifications_does_not_claim_it_is_empty(tmp_path: Path) -> None:
    from miner.store.outbox import Finish

    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG)
    db = tmp_path / "miner.sqlite"
    run = CliRunner()
    base = ["--config", str(cfg), "--db", str(db), "outbox"]
    store = Store.open(db)
    assert run.invoke(main, base).output == "outbox is empty: no notifications yet\n"
    for i in (1, 2):
        store.enqueue_digest(f"d{i}", "oncall", f"<m{i}@x>", {}, T0, "anchor", "x")
        store.claim_notification(i, "w", T0)
        store.finish_notification(i, "w", T0, Finish("sent", "250 ok"))
    store.close()
    res = run.invoke(main, base)
    assert res.exit_code == 0
    assert res.output == "nothing pending or failed (2 sent; `miner outbox --all` lists them)\n"
    listed = run.invoke(main, [*base, "--all"]).output
    assert listed.count(" sent ") == 2


def test_cli_digest_dry_run_renders_the_period_the_digest_it_queues_covers(
        tmp_path: Path, smtp_server: SmtpServer) -> None:  # noqa: F811
    cfg = tmp_path / "feeds.toml"
    # No schedule of its own: `miner outbox send` (at the real time) queues no digest beside the ones asked for.
    cfg.write_text(CONFIG.replace("port = 9", f"port = {smtp_server.port}").replace('digest = "0 * * * *"\n', ""))
    db = tmp_path / "miner.sqlite"
    store = Store.open(db)
    seeded(store)  # Airtel resolved at T0 - 1 h, WhatsApp open since T0
    store.close()
    run = CliRunner()
    base = ["--config", str(cfg), "--db", str(db)]
    # The last digest went out at T0 - 30 min: the next one covers the time since then, without Airtel.
    assert run.invoke(main, [*base, "digest", "--at", "2026-11-27T11:30Z"]).exit_code == 0
    assert "sent 1," in run.invoke(main, [*base, "outbox", "send"]).output
    at = ["--at", "2026-11-27T12:50Z"]
    res = run.invoke(main, [*base, "digest", "--dry-run", "--out", str(tmp_path / "d"), *at])
    assert res.exit_code == 0, res.output
    preview = (tmp_path / "d" / "digest-oncall.txt").read_text()
    assert run.invoke(main, [*base, "digest", *at]).exit_code == 0
    res = run.invoke(main, [*base, "outbox", "send"])
    assert res.exit_code == 0 and "sent 1," in res.output, res.output
    body = smtp_server.inbox.messages[-1].get_body(("plain",))
    assert body is not None
    assert preview.strip().splitlines() == str(body.get_content()).strip().splitlines()  # mail's lines end in CRLF
    assert "Airtel" not in preview and "WhatsApp" in preview


def test_a_provider_is_called_silent_only_where_a_status_page_of_it_is_watched(store: Store, tmp_path: Path) -> None:
    # Every open incident's alert said "nothing on the status page yet", the digest "silent": also of a service no
    # status page source watches (the demo's MTN), where there is no page to be silent.
    cfg = tmp_path / "feeds.toml"
    cfg.write_text('[[services]]\nname = "WhatsApp"\nstatus_page = "https://status.example.com"\n\n'
                   '[[services]]\nname = "MTN"\n\n[alerts]\nfrom_addr = "miner <miner@example.org>"\n\n'
                   '[[alerts.routes]]\nname = "oncall"\nemail = ["oncall@example.org"]\ndigest = "0 * * * *"\n')
    alerts = load_config(cfg).alerts
    assert alerts.status_pages == frozenset({"whatsapp"})
    ids = [open_incident(store, name, T0) for name in ("WhatsApp", "MTN")]
    route = alerts.routes[0]
    alert = render_alert(store, alerts, route, "alert", [{"incident_id": i, "kind": "open"} for i in ids],
                         message_id="<m@example.org>", now=T0 + timedelta(minutes=5))
    text, html = alert.text.split("MTN")[-1], alert.html.split("MTN")[-1]
    assert alert.text.count("Provider:   nothing on the status page yet") == 1 and "Provider:" not in text
    assert alert.html.count("No incident on the provider's status page yet.") == 1 and "status page yet" not in html
    digest = render_digest(store, alerts, T0 + timedelta(minutes=5), route)
    rows = {name: row for row in digest.html.split("<tr")[1:] for name in ("WhatsApp", "MTN") if f">{name}<" in row}
    assert "silent" in rows["WhatsApp"] and "silent" not in rows["MTN"] and "no status page watched" in rows["MTN"]


def test_cli_digest_queues_one_digest_each_time_it_is_asked(tmp_path: Path) -> None:
    # `miner digest` queues one more digest, as asked (docs/operations.md): keyed by its time alone, a second one as
    # of the same time (--at, or the same second) was taken for the first, and nothing was queued, though it said so.
    base = [*_seeded_cli(tmp_path), "digest", "--at", "2026-11-27T12:50Z"]
    for _ in range(2):
        res = CliRunner().invoke(main, base)
        assert res.exit_code == 0 and "queued digest for route oncall" in res.output, res.output
    with sqlite3.connect(tmp_path / "miner.sqlite") as conn:
        [(queued,)] = conn.execute("SELECT count(*) FROM outbox WHERE kind = 'digest' AND status = 'pending'")
    conn.close()
    assert queued == 2

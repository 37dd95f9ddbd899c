"""How mail clients show the alerts: the messages as they arrive at a real SMTP server."""

from __future__ import annotations

import re
from datetime import timedelta

from smtp_server import SmtpServer, smtp_server  # noqa: F401  (fixture)
from test_alerts_support import T0, failing_source, open_incident, resolve, seed_posts, settings

from miner.alerts import dispatch, enqueue_due_digests, plan_notifications
from miner.alerts.settings import AlertSettings, RouteSettings, SmtpSettings
from miner.store import Store

GMAIL_CLIPS_AT = 102 * 1024  # bytes of an HTML part, past which Gmail shows "[Message clipped]"


def mail_settings(server: SmtpServer, **overrides: object) -> AlertSettings:
    route = RouteSettings(name="oncall", email=("oncall@example.org",), digest="0 * * * *", group_by="route")
    smtp = SmtpSettings(host="127.0.0.1", port=server.port, security="none", timeout=5)
    return settings(routes=(route,), webhooks=(), smtp=smtp, group_wait=0.0, **overrides)


def test_a_storm_digest_and_alert_stay_under_gmails_clipping_and_show_their_end(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # Thirty services down at once, each with five long complaints (full of characters HTML escapes).
    texts = [f"post {i}: " + "<down> & 'out' " * 20 for i in range(5)]
    for i in range(30):
        open_incident(store, f"Svc{i:02d}", T0, series=False, posts=False)
        seed_posts(store, f"Svc{i:02d}", T0 - timedelta(minutes=5), texts)
    failing_source(store, T0)
    cfg = mail_settings(smtp_server)
    enqueue_due_digests(store, cfg, T0 - timedelta(minutes=30))  # anchors the hourly schedule
    now = T0 + timedelta(hours=1)
    plan_notifications(store, cfg, now)
    assert enqueue_due_digests(store, cfg, now) == 1
    assert dispatch(store, cfg, now, worker_id="w").sent == 2

    for msg in smtp_server.inbox.messages:
        text = msg.get_body(("plain",)).get_content()
        html = msg.get_body(("html",)).get_content()
        # Under the clip, so the least important incidents, failing sources and footer are not cut off unsaid.
        assert len(html.encode()) < GMAIL_CLIPS_AT
        assert "Mute a service" in text and "miner silence add" in html
        shown = re.search(r"shows the (\d+) most important of 30 incidents", " ".join(text.split()))
        assert shown is not None and 1 <= int(shown.group(1)) < 30
        assert f"shows the {shown.group(1)} most important of 30 incidents" in html
        # Both parts show the same incidents, the most important ones.
        in_text = set(re.findall(r"Svc\d\d", text))
        assert in_text == set(re.findall(r"Svc\d\d", html)) and len(in_text) == int(shown.group(1))
    [digest] = [m for m in smtp_server.inbox.messages if "Digest" in m["Subject"]]
    assert "30 open, 0 resolved, 1 source failing" in digest["Subject"]  # the subject counts them all
    assert "reddit-ug" in digest.get_body(("html",)).get_content()


def test_a_reminder_is_threaded_under_its_alert_as_the_resolve_notice_is(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    cfg = mail_settings(smtp_server, repeat_interval=3600.0)
    iid = open_incident(store, "WhatsApp", T0)
    for now in (T0, T0 + timedelta(hours=1, minutes=1), T0 + timedelta(hours=2, minutes=2)):
        plan_notifications(store, cfg, now)
        assert dispatch(store, cfg, now, worker_id="w").sent == 1
    resolve(store, iid, T0 + timedelta(hours=2, minutes=30))
    plan_notifications(store, cfg, T0 + timedelta(hours=2, minutes=30))
    assert dispatch(store, cfg, T0 + timedelta(hours=2, minutes=30), worker_id="w").sent == 1

    alert, *reminders, notice = smtp_server.inbox.messages
    assert [str(m["Subject"]).split(":")[0] for m in (alert, *reminders, notice)] == [
        "[miner] OPEN", "[miner] STILL OPEN", "[miner] STILL OPEN", "[miner] RESOLVED"]
    assert alert["In-Reply-To"] is None
    for update in (*reminders, notice):  # one thread per outage, not one per reminder
        assert update["In-Reply-To"] == update["References"] == alert["Message-ID"]


def test_the_footer_says_the_counts_are_complaining_people_not_posts(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # Complaints count an author once per bucket (a bot posting fifty times is one): "Counts are posts" was wrong
    # of every figure above it.
    cfg = mail_settings(smtp_server)
    open_incident(store, "WhatsApp", T0)
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0, worker_id="w").sent == 1
    html = " ".join(smtp_server.inbox.messages[0].get_body(("html",)).get_content().split())
    assert "Counts are posts" not in html
    assert "Counts are complaints: the people (accounts) whose posts our classifier judged to be outage reports" in html


def test_a_digest_when_every_source_fails_lists_some_says_how_many_more_and_stays_under_the_clip(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # miner's own DNS down: all 300 sources fail at once. The digest listed every one, 300 lines of 200-character
    # errors: an HTML part past Gmail's clip however few incidents it kept, which cut off the list's end and the
    # footer unsaid, and left room for no incident at all.
    from miner.config import SourceConfig

    names = [f"reddit-{i:03d}" for i in range(300)]
    store.sync_sources([SourceConfig(name=n, type="reddit", query=n) for n in names])
    dns = ("reddit.com:443 host name www.reddit.com not found (DNS: Temporary failure in name resolution): check "
           "the name for a typo, or this machine's DNS resolver")
    for name in names:
        store.record_poll_failure(name, dns, T0, T0 + timedelta(minutes=5))
    # One whose failure lasts until someone acts, its name sorting last: it is listed, whatever is left out.
    store.record_poll_failure(names[-1], "HTTP 401 <Unauthorized>", T0, T0 + timedelta(minutes=5), needs_action=True)
    for i in range(10):
        open_incident(store, f"Svc{i:02d}", T0, series=i < 2)
    cfg = mail_settings(smtp_server)
    enqueue_due_digests(store, cfg, T0 - timedelta(minutes=30))
    now = T0 + timedelta(hours=1)
    assert enqueue_due_digests(store, cfg, now) == 1
    assert dispatch(store, cfg, now, worker_id="w").sent == 1

    [digest] = [m for m in smtp_server.inbox.messages if "Digest" in m["Subject"]]
    assert "10 open, 0 resolved, 300 sources failing" in digest["Subject"]
    text = " ".join(digest.get_body(("plain",)).get_content().split())
    html = digest.get_body(("html",)).get_content()
    assert len(html.encode()) < GMAIL_CLIPS_AT
    html = " ".join(html.split())
    assert "miner silence add" in html and "Mute a service" in text  # the footer, at the end of each part
    for part in (text, html):
        assert "Sources failing to poll (300)" in part
        assert part.count("Temporary failure in name resolution") == 19
        assert "reddit-299 (reddit): needs someone to act" in part.replace("<b>", "").replace("</b>", "")
        assert "and 280 more" in part and "miner status" in part
        assert "shows the" not in part  # the ten incidents all fit beside the list
        assert len(set(re.findall(r"Svc\d\d", part))) == 10

"""The providers' own incidents in a digest, over a real store and SMTP server: listed in a section of their own for
the route's services, even when miner detected nothing, and never under "All quiet"."""

from __future__ import annotations

from datetime import datetime, timedelta
from email.message import EmailMessage

from smtp_server import SmtpServer, smtp_server  # noqa: F401  (fixture)
from test_alerts_support import T0, open_incident, settings

from miner.alerts import dispatch, enqueue_due_digests, render_digest
from miner.alerts.settings import AlertSettings, RouteSettings, SmtpSettings
from miner.config import SourceConfig
from miner.records import FetchResult, OfficialIncident
from miner.store import Store

EVIL_TITLE = "Degraded <b>Actions</b> & \x1b[31mPages\u202e"


def post_incident(store: Store, service: str, external_id: str, started: datetime, *, status: str = "investigating",
                  title: str = EVIL_TITLE, resolved: datetime | None = None) -> None:
    """The status page's poll at ``started`` + 5 min listing the incident (resolved: as the provider resolved it)."""
    store.sync_sources([SourceConfig(name="status:gh", type="statuspage", url="https://www.githubstatus.com")])
    inc = OfficialIncident(source="status:gh", external_id=external_id, service=service, title=title, status=status,
                           started_at=started, updated_at=resolved or started, impact="major",
                           url=f"https://www.githubstatus.com/incidents/{external_id}", resolved_at=resolved)
    polled = (resolved or started) + timedelta(minutes=5)
    store.save_fetch("status:gh", FetchResult(incidents=[inc]), polled, polled + timedelta(seconds=1))


def route_settings(server: SmtpServer, services: tuple[str, ...] = ()) -> AlertSettings:
    route = RouteSettings(name="team", email=("team@example.org",), immediate=False, digest="0 * * * *",
                          services=services)
    smtp = SmtpSettings(host="127.0.0.1", port=server.port, security="none", timeout=5)
    return settings(routes=(route,), webhooks=(), smtp=smtp, group_wait=0.0)


def said(message: EmailMessage) -> str:
    return " ".join(message.get_body(("plain",)).get_content().split())  # type: ignore[union-attr]


def html(message: EmailMessage) -> str:
    return message.get_body(("html",)).get_content()  # type: ignore[union-attr]


def test_a_quiet_digest_lists_the_providers_open_incident_and_is_not_all_quiet(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # Miner detected nothing; GitHub's status page has a major incident open since 12:20. The digest is sent (not
    # skipped as quiet), says so in its subject and lists it, escaped, in both parts.
    cfg = route_settings(smtp_server)
    enqueue_due_digests(store, cfg, T0)  # anchors the schedule at 12:00
    post_incident(store, "GitHub", "qcvjkzcs7j74", T0 + timedelta(minutes=20))
    assert enqueue_due_digests(store, cfg, T0 + timedelta(hours=1)) == 1
    assert dispatch(store, cfg, T0 + timedelta(hours=1), worker_id="w").sent == 1
    [digest] = smtp_server.inbox.messages
    assert str(digest["Subject"]) == "[miner] Digest 2026-11-27 13:00 UTC: 1 open on status pages"
    text, page = said(digest), html(digest)
    assert "All quiet" not in text and "All quiet" not in page
    assert "Miner detected no incidents since 2026-11-27 12:00 UTC, but 1 incident is open" in text
    assert ("GitHub: Degraded <b>Actions</b> & [31mPages (investigating, major impact, since 2026-11-27 12:20 UTC) "
            "https://www.githubstatus.com/incidents/qcvjkzcs7j74") in text
    assert "\x1b" not in text and "\u202e" not in text and "\x1b" not in page
    assert "<b>GitHub</b>: <a href=\"https://www.githubstatus.com/incidents/qcvjkzcs7j74\"" in page
    assert "Degraded &lt;b&gt;Actions&lt;/b&gt; &amp; [31mPages</a> (investigating, major impact, since" in page


def test_the_route_sees_only_its_services_and_those_resolved_before_its_period_not_at_all(store: Store) -> None:
    since, now = T0, T0 + timedelta(hours=1)
    post_incident(store, "GitHub", "open1", T0 + timedelta(minutes=20), title="Actions delayed")
    post_incident(store, "Slack", "slack1", T0 + timedelta(minutes=25), title="Slack is slow")
    post_incident(store, "GitHub", "done1", T0 - timedelta(minutes=50), title="Pages down",
                  resolved=T0 + timedelta(minutes=10), status="resolved")
    post_incident(store, "GitHub", "old1", T0 - timedelta(hours=5), title="Long over",
                  resolved=T0 - timedelta(hours=4), status="resolved")
    post_incident(store, "GitHub", "later", T0 + timedelta(hours=2), title="Not yet seen")
    # Open in the store, but not updated for two days: its resolve was never read (as for the alerts, ONGOING_QUIET).
    post_incident(store, "GitHub", "stale1", T0 - timedelta(days=2), title="Never closed")
    route = RouteSettings(name="gh", email=("gh@example.org",), services=("github",))
    d = render_digest(store, settings(routes=(route,), webhooks=()), now, "gh", since=since)
    assert "Providers' status pages (1 open, 1 resolved since 2026-11-27 12:00 UTC):" in d.text
    assert d.text.index("Actions delayed (investigating") < d.text.index("Pages down (resolved")  # open first
    assert all(t not in d.text + d.html for t in ("Slack", "Long over", "Not yet seen", "Never closed", "All quiet"))

    other = RouteSettings(name="ug", email=("ug@example.org",), services=("Airtel",))
    quiet = render_digest(store, settings(routes=(other,), webhooks=()), now, "ug", since=since)
    assert "all quiet" in quiet.subject and "All quiet: no incidents for Airtel since" in quiet.text
    assert "status pages" not in quiet.text and "status pages" not in quiet.html


def test_a_cloud_outage_lists_twenty_provider_incidents_and_says_how_many_more_in_both_parts(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # 23 status pages with an incident open (one a cloud provider's outage put on all of them) and one resolved:
    # the digest lists 20 and says how many more. Slack's, the oldest, is first: miner has an incident of Slack open.
    # Then the latest to start; the resolved one, the latest of all, comes after every open one and is left out.
    cfg = route_settings(smtp_server)
    enqueue_due_digests(store, cfg, T0)  # anchors the schedule at 12:00
    post_incident(store, "Slack", "slack1", T0 - timedelta(hours=3), title="Slack <messages> delayed")
    for i in range(22):
        post_incident(store, f"svc{i:02}", f"cloud{i}", T0 + timedelta(minutes=i), title=f"Cloud <outage> {i:02}")
    post_incident(store, "svc99", "done", T0 + timedelta(minutes=40), title="Cloud <outage> over",
                  resolved=T0 + timedelta(minutes=45), status="resolved")
    open_incident(store, "Slack", T0 + timedelta(minutes=30), posts=False)
    assert enqueue_due_digests(store, cfg, T0 + timedelta(hours=1)) == 1
    assert dispatch(store, cfg, T0 + timedelta(hours=1), worker_id="w").sent == 1
    [digest] = smtp_server.inbox.messages
    text, page = said(digest), html(digest)
    section = text[text.index("Providers' status pages"):]
    assert section.startswith("Providers' status pages (23 open, 1 resolved since 2026-11-27 12:00 UTC): - Slack: "
                              "Slack <messages> delayed (investigating, major impact, since 2026-11-27 09:00 UTC)")
    listed = [f"Cloud <outage> {i:02} (" for i in range(21, 2, -1)]
    assert [section.index(t) for t in listed] == sorted(section.index(t) for t in listed)  # the latest first
    for left_out in ("Cloud <outage> 02", "Cloud <outage> 01", "Cloud <outage> 00", "Cloud <outage> over"):
        assert left_out not in text and left_out.replace("<", "&lt;").replace(">", "&gt;") not in page
    more = ("and 4 more (open ones are listed first, then those of services with a miner incident open, then the "
            "latest to start); all of them:")
    query = 'miner query "SELECT * FROM official_incidents ORDER BY started_at DESC"'
    assert f"{more} {query}" in text
    assert f"{more} <code>{query}</code>" in page
    assert page.count("Cloud &lt;outage&gt; ") == 19 and "Slack &lt;messages&gt; delayed</a>" in page
    assert "Providers' status pages</b> &mdash; 23 open, 1 resolved since 2026-11-27 12:00 UTC" in page


def said_of(source: str, external_id: str, service: str, started: datetime, updated: datetime, status: str, *,
            resolved: datetime | None = None, title: str = EVIL_TITLE, impact: str = "major") -> OfficialIncident:
    return OfficialIncident(source=source, external_id=external_id, service=service, title=title, status=status,
                            started_at=started, updated_at=updated, impact=impact, resolved_at=resolved,
                            url=f"https://status.example.com/incidents/{external_id}")


def poll(store: Store, source: str, incidents: list[OfficialIncident], at: datetime, *, all_open: bool = False) -> None:
    store.sync_sources([SourceConfig(name=source, type="statuspage", url="https://status.example.com")])
    store.save_fetch(source, FetchResult(incidents=incidents, all_open=all_open), at, at + timedelta(seconds=1))


def test_a_late_digest_shows_the_providers_incidents_as_they_stood_at_its_time_and_what_they_say_now(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # The 13:00 digest is queued on time and sent at 15:00 (the mail server was down). The store keeps each provider
    # incident's latest state alone: what changed after 13:00 shows as open or resolved then, and the status now
    # marked later; what did not change shows as it is.
    cfg = route_settings(smtp_server)
    enqueue_due_digests(store, cfg, T0)  # anchors the schedule at 12:00

    def t(**since_t0: float) -> datetime:
        return T0 + timedelta(**since_t0)

    poll(store, "status:gh", [said_of("status:gh", "fixed", "GitHub", t(minutes=20), t(minutes=20), "investigating"),
                              said_of("status:gh", "calmer", "GitHub", t(minutes=25), t(minutes=25), "identified",
                                      title="Pages slow"),
                              said_of("status:gh", "same", "GitHub", t(minutes=30), t(minutes=30), "monitoring",
                                      title="Actions queued", impact="minor"),
                              said_of("status:gh", "early", "GitHub", t(minutes=5), t(minutes=50), "resolved",
                                      resolved=t(minutes=50), title="Webhooks lost")], t(minutes=55))
    poll(store, "status:aws", [said_of("status:aws", "gone", "AWS", t(minutes=10), t(minutes=10), "investigating",
                                       title="EC2 errors")], t(minutes=15), all_open=True)
    assert enqueue_due_digests(store, cfg, t(hours=1)) == 1  # queued as of 13:00, not sent
    # After 13:00: GitHub resolves one, updates another and writes the postmortem of the one over at 12:50; AWS's
    # list of open incidents no longer has its own (resolved as of that poll, its update time kept).
    poll(store, "status:gh", [said_of("status:gh", "fixed", "GitHub", t(minutes=20), t(hours=2), "resolved",
                                      resolved=t(hours=2)),
                              said_of("status:gh", "calmer", "GitHub", t(minutes=25), t(minutes=100), "monitoring",
                                      title="Pages slow", impact="minor"),
                              said_of("status:gh", "early", "GitHub", t(minutes=5), t(minutes=130), "postmortem",
                                      resolved=t(minutes=50), title="Webhooks lost")], t(minutes=135))
    poll(store, "status:aws", [], t(minutes=140), all_open=True)
    assert dispatch(store, cfg, t(hours=3), worker_id="w").sent == 1
    [digest] = smtp_server.inbox.messages
    assert str(digest["Subject"]) == "[miner] Digest 2026-11-27 13:00 UTC: 4 open on status pages"
    text, page = said(digest), html(digest)
    assert "Providers' status pages (4 open, 1 resolved since 2026-11-27 12:00 UTC):" in text
    assert "GitHub: Degraded <b>Actions</b> & [31mPages (open, since 2026-11-27 12:20 UTC; later: resolved, major " \
           "impact, at 2026-11-27 14:00 UTC) https://status.example.com/incidents/fixed" in text
    assert "GitHub: Pages slow (open, since 2026-11-27 12:25 UTC; later: monitoring, minor impact, at " \
           "2026-11-27 13:40 UTC)" in text
    assert "GitHub: Actions queued (monitoring, minor impact, since 2026-11-27 12:30 UTC) https://" in text
    assert "AWS: EC2 errors (open, since 2026-11-27 12:10 UTC; later: resolved, major impact, at " \
           "2026-11-27 14:20 UTC)" in text
    assert "GitHub: Webhooks lost (resolved, since 2026-11-27 12:05 UTC; later: postmortem, major impact, at " \
           "2026-11-27 14:10 UTC)" in text
    assert text.index("Webhooks lost") > max(text.index(s) for s in ("Pages slow", "Actions queued", "EC2 errors"))
    assert ("Degraded &lt;b&gt;Actions&lt;/b&gt; &amp; [31mPages</a> (open, since 2026-11-27 12:20 UTC; later: "
            "resolved, major impact, at 2026-11-27 14:00 UTC)") in page
    assert "\x1b" not in page and "\u202e" not in page
    assert "Providers' status pages</b> &mdash; 4 open, 1 resolved since 2026-11-27 12:00 UTC" in page

    # The digest as of 15:00 shows them as they stand: two resolved in its period, two open, and not the one over
    # before it (whose postmortem came in it).
    now = render_digest(store, cfg, t(hours=3), "team", since=t(hours=1))
    assert "Providers' status pages (2 open, 2 resolved since 2026-11-27 13:00 UTC):" in now.text
    assert "EC2 errors (resolved, major impact, since 2026-11-27 12:10 UTC)" in now.text
    assert "Webhooks lost" not in now.text and "later:" not in now.text and "later:" not in now.html


def test_a_provider_incident_over_without_a_resolve_time_is_news_in_one_digest_not_in_every_one(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    # A status page's JSON says "resolved" and gives no resolved_at: its last update (12:20) is when it ended. The
    # 13:00 digest says it resolved; the 14:00 one has nothing to say and is not sent (it was listed, and sent, in
    # every digest for good: the store reads an incident without a resolve time whatever its period).
    cfg = route_settings(smtp_server)
    enqueue_due_digests(store, cfg, T0)  # anchors the schedule at 12:00
    poll(store, "status:gh", [said_of("status:gh", "over", "GitHub", T0 + timedelta(minutes=5),
                                      T0 + timedelta(minutes=20), "resolved", title="Git pushes failing")],
         T0 + timedelta(minutes=25))
    assert enqueue_due_digests(store, cfg, T0 + timedelta(hours=1)) == 1
    assert dispatch(store, cfg, T0 + timedelta(hours=1), worker_id="w").sent == 1
    [digest] = smtp_server.inbox.messages
    assert "Providers' status pages (0 open, 1 resolved since 2026-11-27 12:00 UTC): - GitHub: Git pushes failing " \
           "(resolved, major impact, since 2026-11-27 12:05 UTC)" in said(digest)
    assert enqueue_due_digests(store, cfg, T0 + timedelta(hours=2)) == 0
    later = render_digest(store, cfg, T0 + timedelta(hours=2), "team", since=T0 + timedelta(hours=1))
    assert "all quiet" in later.subject and "Git pushes failing" not in later.text + later.html

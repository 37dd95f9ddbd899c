"""Microsoft Teams webhooks (a Workflows "Post to a channel when a webhook request is received" URL) against a real
HTTP server on 127.0.0.1 that records every request: the Adaptive Card, its escaping, its size, and the answers."""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import timedelta
from typing import Any

import pytest
from fakeserver import FakeServer, Recorded, ScriptedWebhook
from test_alerts_support import BUCKET, T0, add_official, open_incident, resolve, seed_posts, settings, store_text

from miner.alerts import dispatch, plan_notifications
from miner.alerts.settings import AlertSettings, RouteSettings, WebhookSettings
from miner.alerts.text import teams_text
from miner.alerts.webhooks import TEAMS_BYTES
from miner.store import Store

# A Workflows trigger URL: the signature in its query is the secret.
PATH = "/workflows/0f1e2d3c4b5a69788796a5b4c3d2e1f0/triggers/manual/paths/invoke"
QUERY = "api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=S1GN4TURES3CRETs1gn4tureS3CRET"


class Workflow(ScriptedWebhook):
    """The Workflows trigger at PATH (202 is what Workflows answer); an error echoes the request line, as a proxy's
    error page might."""

    def __init__(self, server: FakeServer) -> None:
        super().__init__(server, PATH)

    def answer(self, request: Recorded, status: int) -> tuple[bytes, str | None]:
        return (b"" if status == 202 else f"refused POST {PATH}?{QUERY}".encode()), None

    @property
    def cards(self) -> list[dict[str, Any]]:
        """Each request's card, after checking the envelope Workflows read it from."""
        cards = []
        for request in self.requests:
            message = json.loads(request.body)
            assert message["type"] == "message"
            [attachment] = message["attachments"]
            assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
            assert attachment["contentUrl"] is None
            cards.append(attachment["content"])
        return cards


@pytest.fixture
def wf(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> Workflow:
    monkeypatch.setenv("MINER_TEST_TEAMS", f"{server.url}{PATH}?{QUERY}")
    return Workflow(server)


def teams_settings(**overrides: Any) -> AlertSettings:
    route = RouteSettings(name="chat", webhooks=("teams",), group_interval=0.0)
    base: dict[str, Any] = {"routes": (route,), "group_wait": 0.0,
                            "webhooks": (WebhookSettings(name="teams", url_env="MINER_TEST_TEAMS", format="teams",
                                                         timeout=10.0),)}
    return settings(**(base | overrides))


def texts(element: Any) -> list[str]:
    """Every TextBlock's text in ``element``, in order."""
    if isinstance(element, list):
        return [t for item in element for t in texts(item)]
    if not isinstance(element, dict):
        return []
    own = [element["text"]] if element.get("type") == "TextBlock" else []
    return own + [t for key in ("body", "items") for t in texts(element.get(key, []))]


def incidents(card: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in card["body"] if e["type"] == "Container"]


def test_an_alert_is_an_adaptive_card_in_a_workflows_message(store: Store, wf: Workflow) -> None:
    cfg = teams_settings()
    open_incident(store, "WhatsApp", T0)
    add_official(store, "WhatsApp", T0 + timedelta(minutes=5))
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0 + timedelta(minutes=10), worker_id="w").sent == 1
    [request] = wf.requests
    assert request.headers["content-type"] == "application/json"
    [card] = wf.cards
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4" and isinstance(card["body"], list)
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    title = card["body"][0]
    assert title["type"] == "TextBlock" and title["weight"] == "Bolder"
    assert title["text"] == "[miner] OPEN: WhatsApp outage reports (15.0x normal, z 8.4)"
    [incident] = incidents(card)
    lines = texts(incident)
    assert lines[0] == "WhatsApp open, since 12:00 UTC (10 min)"
    assert lines[1] == "peak 30 vs baseline 2.0 (15.0x), z 8.4, 95 complaints"
    assert lines[2] == "symptoms: messaging 50 (53%), connectivity 30 (32%), login 15 (16%)"
    assert lines[3].startswith("provider: Some users are unable to send messages (investigating); our lead 5 min")
    # Three sample posts, quoted, cleaned by the content layer (no ESC, no bidi override) and escaped.
    quotes = [t for t in lines if t.startswith("\u201c")]
    assert len(quotes) == 3 and all(t.endswith("\u201d") for t in quotes)
    assert not any(ch in t for t in quotes for ch in "\x1b\x07\u202e")
    [buttons] = [e for e in incident["items"] if e["type"] == "ActionSet"]
    assert buttons["actions"] == [{"type": "Action.OpenUrl", "title": "Provider status page",
                                   "url": "https://status.example.com/incidents/abc"}]
    [sent] = store.outbox_listing(["sent"])
    assert store.deliveries(sent["id"])[-1]["detail"] == "HTTP 202"


def test_a_reminder_and_the_resolve_notice_are_cards_too(store: Store, wf: Workflow) -> None:
    cfg = teams_settings(repeat_interval=3600.0)
    incident = open_incident(store, "WhatsApp", T0)
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0, worker_id="w").sent == 1
    plan_notifications(store, cfg, T0 + timedelta(hours=1, minutes=1))
    assert dispatch(store, cfg, T0 + timedelta(hours=1, minutes=1), worker_id="w").sent == 1
    resolve(store, incident, T0 + timedelta(hours=2))
    plan_notifications(store, cfg, T0 + timedelta(hours=2))
    assert dispatch(store, cfg, T0 + timedelta(hours=2), worker_id="w").sent == 1
    alert, reminder, resolved = wf.cards
    assert texts(reminder)[0].startswith("[miner] STILL OPEN: WhatsApp")
    assert texts(incidents(reminder)[0])[0].startswith("WhatsApp open (reminder), since 12:00 UTC")
    assert texts(resolved)[0] == "[miner] RESOLVED: WhatsApp after 2 h 00 min"
    [item] = incidents(resolved)
    assert item["items"][0]["color"] == "Good" and item["items"][0]["text"].startswith("WhatsApp resolved")
    assert not any(t.startswith("\u201c") for t in texts(item))  # no sample posts in a resolve notice
    assert any(t.startswith("\u201c") for t in texts(alert))


def test_post_and_status_page_text_makes_no_link_formatting_or_mention(store: Store, wf: Workflow) -> None:
    # A TextBlock renders Markdown: a post could show a link whose text lies, bold itself, or look like a mention.
    cfg = teams_settings()
    open_incident(store, "WhatsApp", T0, posts=False)
    hostile = ["WhatsApp down: [restore your account](https://phish.example/x)",
               "**URGENT** WhatsApp _everyone_ log out ~~now~~ `rm`",
               "<at>General</at> WhatsApp down &#8238;gnp.exe",
               "WhatsApp down ![x](https://track.example/p.png)"]
    seed_posts(store, "WhatsApp", T0 - BUCKET, hostile)
    add_official(store, "WhatsApp", T0)
    with store.database.transaction() as conn:
        conn.execute("UPDATE official_incidents SET title = '[Sign in](https://phish.example/) to fix **now**', "
                     "url = 'https://status.example.com/i)x'")
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0, worker_id="w").sent == 1
    [card] = wf.cards
    shown = "\n".join(texts(card))
    for markup in ("](https://", "](", "**", "_everyone_", "~~", "`", "<at>", "&#8238;"):
        assert markup not in shown
    # It reads the same: the words and URLs are there, split by invisible characters or drawn by look-alikes.
    assert "[restore your account]\u200b(https://phish.example/x)" in shown
    assert "\u2217\u2217URGENT\u2217\u2217" in shown and "<\u200bat>General" in shown
    assert "provider: [Sign in]\u200b(https://phish.example/) to fix \u2217\u2217now\u2217\u2217" in shown
    # The status page stays a button whose URL no Markdown reads, still a safe_url one.
    [url] = [a["url"] for e in incidents(card)[0]["items"] if e["type"] == "ActionSet" for a in e["actions"]]
    assert url == "https://status.example.com/i)x"
    markdown_it = pytest.importorskip("markdown_it")  # CommonMark, as the Adaptive Cards JS renderer uses
    md = markdown_it.MarkdownIt("commonmark").enable("strikethrough")
    html = "".join(md.render(t) for t in texts(card))
    for tag in ("<a ", "<img", "<strong>", "<em>", "<s>", "<code>", "<ol", "<ul", "<h1"):
        assert tag not in html


@pytest.mark.parametrize(("text", "escaped"), [
    ("[click](https://evil.example)", "[click]\u200b(https://evil.example)"),
    ("**bold** and _it_ and *it*", "\u2217\u2217bold\u2217\u2217 and \u02cdit\u02cd and \u2217it\u2217"),
    ("<at>Everyone</at>", "<\u200bat>Everyone<\u200b/at>"),
    ("&#8238;gnp &amp; AT&T", "&\u200b#8238;gnp &\u200bamp; AT&\u200bT"),
    ("~~gone~~ `code`", "~\u200b~\u200bgone~\u200b~\u200b \u02cbcode\u02cb"),
    ("1. step", "\u200b1. step"), ("- item", "\u200b- item"), ("# heading", "\u200b# heading"),
    ("> quote", "\u200b> quote"), ("2)x", "\u200b2)x"),
    ("WhatsApp down in Kampala, 12:40 (again)", "WhatsApp down in Kampala, 12:40 (again)"),
])
def test_teams_text_defuses_the_markdown_of_a_textblock(text: str, escaped: str) -> None:
    assert teams_text(text) == escaped
    assert teams_text(text).replace("\u200b", "").translate(str.maketrans("\u2217\u02cd\u02cb", "*_`")) == text


def test_a_storm_stays_under_the_teams_size_limit_and_counts_what_it_leaves_out(store: Store, wf: Workflow) -> None:
    # Teams refuses a message over 28 KB: a batch of 120 incidents would be one, and fail for good with a 413.
    n = 120
    for i in range(n):  # Svc000 has the highest z, the last the lowest
        store.open_incident(f"Svc{i:03d}", T0, {"peak_complaints": 30, "peak_score": 100.0 - i, "baseline": 2.0,
                                                "total_complaints": 95}, {})
    cfg = teams_settings(group_wait=60.0, group_by="route")  # so they make one batch
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0 + timedelta(minutes=2), worker_id="w").sent == 1
    [request] = wf.requests
    assert len(request.body) <= TEAMS_BYTES < 28 * 1024
    [card] = wf.cards
    shown = [texts(e)[0].split()[0] for e in incidents(card)]
    assert 30 < len(shown) < n and shown == [f"Svc{i:03d}" for i in range(len(shown))]  # the lowest z left out
    assert card["body"][-1]["text"] == f"{n - len(shown)} more incidents not shown"


def test_an_incident_too_big_with_its_samples_goes_without_them(store: Store, wf: Workflow) -> None:
    # Posts of emoji (12 bytes each as escaped JSON) make one incident's quotes about 10 KB.
    cfg = teams_settings(group_wait=60.0, group_by="route")
    for service in ("WhatsApp", "Signal", "Telegram"):
        open_incident(store, service, T0, posts=False, series=False)
        seed_posts(store, service, T0 - BUCKET, [f"{service} {j} " + "\U0001f621" * 270 for j in range(3)])
    plan_notifications(store, cfg, T0)
    assert dispatch(store, cfg, T0 + timedelta(minutes=2), worker_id="w").sent == 1
    [request] = wf.requests
    assert len(request.body) <= TEAMS_BYTES
    [card] = wf.cards
    quoted = [sum(t.startswith("\u201c") for t in texts(e)) for e in incidents(card)]
    assert len(quoted) == 3 and quoted[0] == 3 and 0 in quoted  # every incident shown, not every quote
    assert "more incidents not shown" not in json.dumps(card)


@pytest.mark.parametrize("status", [400, 401, 404, 413])
def test_a_refusal_fails_at_once(store: Store, wf: Workflow, status: int) -> None:
    cfg = teams_settings()
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    wf.script = [status]
    assert dispatch(store, cfg, T0, worker_id="w").failed == 1
    assert store.outbox_listing(["failed"])[0]["reason"].startswith(f"webhook teams: HTTP {status} refused POST ")
    assert dispatch(store, cfg, T0 + timedelta(hours=1), worker_id="w").claimed == 0
    assert len(wf.requests) == 1


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_throttling_and_server_errors_are_retried(store: Store, wf: Workflow, status: int) -> None:
    cfg = teams_settings()
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    wf.script = [(status, "120")]
    assert dispatch(store, cfg, T0, worker_id="w").retried == 1
    [row] = store.outbox_listing(["pending"])
    assert f"HTTP {status}" in row["last_error"]
    assert row["next_attempt_at"] >= (T0 + timedelta(seconds=120)).isoformat()  # Retry-After honoured
    assert dispatch(store, cfg, T0 + timedelta(minutes=3), worker_id="w").sent == 1
    assert len(wf.cards) == 2


def test_the_workflow_url_is_never_logged_or_stored(store: Store, wf: Workflow,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="miner")  # httpx's own request log is silenced by miner.logsetup
    cfg = teams_settings()
    open_incident(store, "WhatsApp", T0, posts=False, series=False)
    plan_notifications(store, cfg, T0)
    wf.script = [503, 400]  # both answers quote the URL, signature and all
    assert dispatch(store, cfg, T0, worker_id="w").retried == 1
    assert dispatch(store, cfg, T0 + timedelta(minutes=5), worker_id="w").failed == 1
    assert "[redacted]" in store.outbox_listing(["failed"])[0]["reason"]
    for text in (caplog.text, store_text(store)):
        assert "S1GN4TURE" not in text and "0f1e2d3c4b5a" not in text


def test_a_teams_webhook_takes_its_url_from_the_environment_only() -> None:
    hook = WebhookSettings(name="teams", format="teams")
    with pytest.raises(ValueError, match=r'url_env: required for format = "teams"'):
        hook.validate()
    with pytest.raises(ValueError, match=r"url: only a webhook with format = \"pagerduty\" takes it \(a teams "):
        dataclasses.replace(hook, url_env="TEAMS", url="https://example.org/workflows/x").validate()
    dataclasses.replace(hook, url_env="TEAMS").validate()

"""Webhook bodies: a versioned generic JSON document, a Slack-compatible message (text + blocks) and a Microsoft
Teams Workflows message (an Adaptive Card) (PagerDuty's events: pagerduty_events.py); the POST, bounded by one
deadline and cut at the service's stop while it has not gone out whole; and the redaction of the webhook URL (the
secret) from what a receiver answers.

Receivers should dedupe on ``id`` (the notification's Message-ID, stable across retries).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from miner.alerts.content import MAX_INCIDENTS, IncidentView
from miner.alerts.smtp_session import STOP_GRACE
from miner.alerts.text import safe_url, slack_text, slack_url, teams_text
from miner.redaction import REDACTED as REDACTED
from miner.store.incidents import gap_json
from miner.timeutil import iso

if TYPE_CHECKING:
    import httpx

T = TypeVar("T")

BODY_LIMIT = 4096  # bytes of an error answer read, for the snippet stored with the attempt

PAYLOAD_VERSION = 1
SLACK_BLOCKS = 50  # the most blocks Slack takes in one message
# Slack refuses a message whose blocks hold more than about 12,000 characters in all (msg_blocks_too_long; met at
# 11,341, undocumented: slackapi/bolt-js#2509, #2867), though a section may hold 3,000 (docs.slack.dev/reference/
# block-kit/blocks/section-block): 30 incidents, 3 posts of 300 characters each, made 24,579: all refused, for good.
SLACK_CHARS = 11_000  # of the blocks' compact JSON in UTF-8 bytes, never fewer than the characters of their text

@dataclass(frozen=True)
class Reply:
    status: int
    headers: httpx.Headers
    # The first BODY_LIMIT bytes of an error answer; empty for a success (nobody reads it). Not in the repr: it may
    # quote the URL, the secret (miner.urls.without_url cleans it for the message).
    body: bytes = field(repr=False)
    # The answer went on past body: a secret it quotes there may have been cut (miner.redaction.without_cut_secret).
    cut: bool = False


class PostStopped(Exception):
    """The POST was cut STOP_GRACE s after the service was asked to stop, before its body had gone out whole."""


class _Progress:
    """How far the request has gone: ``whole`` once its body has gone out whole (httpcore's trace, HTTP/1.1 or 2)."""

    whole = False
    # httpcore hands our trace to a proxy's CONNECT too (it carries the request's extensions): that empty body has
    # gone out whole before the tunnel's TLS handshake, let alone the POST. Only the POST's own body counts.
    _connect = False

    async def trace(self, name: str, info: dict[str, Any]) -> None:
        if name.endswith(".send_request_body.started"):
            self._connect = getattr(info.get("request"), "method", b"") == b"CONNECT"
        elif name.endswith(".send_request_body.complete") and not self._connect:
            self.whole = True


def post_json(url: str, body: dict[str, Any], *, timeout: float, user_agent: str,
              stop: threading.Event | None = None) -> Reply:
    """POST ``body``; the whole request (connect, send, headers and reading the answer) must end within ``timeout``.

    httpx's timeouts bound each network operation, not the request: a receiver trickling its answer a byte at a
    time holds a sync request for as long as it likes (and our outbox claim lapses meanwhile). Cancelling an
    async request is certain. Raises TimeoutError at the deadline, httpx.HTTPError for other failures, and
    PostStopped where ``stop`` was set STOP_GRACE s before and the body had not gone out whole (connecting, a TLS
    handshake, a receiver reading slowly a body larger than the socket's buffers): the receiver cannot have taken a
    message it lacks the end of. Once it has gone out whole, the answer is waited for (``timeout`` at most): cut
    then, the receiver may act on it all the same, and it would be sent again at the next start (as an email:
    smtp_session.Watchdog).
    """
    progress = _Progress()
    return _run(_cut_at_stop(_post(url, body, timeout, user_agent, progress), stop, progress))


async def _cut_at_stop(request: Coroutine[Any, Any, Reply], stop: threading.Event | None, progress: _Progress) -> Reply:
    task = asyncio.ensure_future(request)
    stop_at: float | None = None
    # Polled, as smtp_session.Watchdog polls: the stop is the service's threading.Event, which no callback follows.
    while not (await asyncio.wait({task}, timeout=0.1))[0]:
        if stop is None or not stop.is_set() or progress.whole:
            continue
        now = time.monotonic()
        stop_at = now + STOP_GRACE if stop_at is None else stop_at
        if now >= stop_at:
            task.cancel()
            try:
                return await task  # it ended before the cancel reached it
            except asyncio.CancelledError:
                raise PostStopped(f"cut {STOP_GRACE:g} s after the service was asked to stop, before the request "
                                  "had gone out whole") from None
    return task.result()


async def _post(url: str, body: dict[str, Any], timeout: float, user_agent: str, progress: _Progress) -> Reply:
    import httpx

    from miner.proxy_env import AsyncRefusedProxy, mounts

    # Redirects are not followed: the URL holds a secret, and a redirect could hand it on. Asking for an identity
    # encoding keeps the bytes we read the bytes we keep (a few KB of gzip can inflate to megabytes).
    headers = {"User-Agent": user_agent, "Accept-Encoding": "identity"}
    # A proxy of the environment httpx cannot use failed the client's making (miner.proxy_env): it fails the POSTs
    # it would carry, with ProxyUnusable.
    proxies = mounts(lambda proxy: httpx.AsyncHTTPTransport(proxy=proxy), AsyncRefusedProxy)
    made = (httpx.AsyncClient(timeout=timeout, follow_redirects=False) if proxies is None else
            httpx.AsyncClient(timeout=timeout, follow_redirects=False, transport=httpx.AsyncHTTPTransport(),
                              mounts=proxies))
    async with (asyncio.timeout(timeout), made as client,
                client.stream("POST", url, json=body, headers=headers, extensions={"trace": progress.trace}) as resp):
        if resp.is_success:
            return Reply(resp.status_code, resp.headers, b"")
        if resp.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
            return Reply(resp.status_code, resp.headers, b"")  # compressed anyway: not worth a snippet
        # Only the start of an error body is kept; an error page can be any size, so the rest is never read.
        head = bytearray()
        async for chunk in resp.aiter_raw():
            head += chunk
            if len(head) > BODY_LIMIT:  # one byte past it tells a body of just BODY_LIMIT bytes from a cut one
                break
        return Reply(resp.status_code, resp.headers, bytes(head[:BODY_LIMIT]), cut=len(head) > BODY_LIMIT)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # Called from code already running an event loop (a notebook): run ours on a thread of its own.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def incident_json(v: IncidentView, reminder: bool) -> dict[str, Any]:
    return {
        "id": v.id,
        "service": v.service,
        "status": v.status,
        "reminder": reminder,
        "opened_at": iso(v.opened_at),
        "resolved_at": iso(v.resolved_at) if v.resolved_at else None,
        "peak_complaints": v.peak_complaints,
        "baseline": round(v.baseline, 3),
        "z_score": round(v.peak_score, 2),
        "total_complaints": v.total_complaints,
        "symptoms": {name: n for name, n, _ in v.symptoms},
        "group": v.group or None,
        "official": None if v.official is None else {
            "title": v.official.title, "status": v.official.status, "url": v.official.url,
            "started_at": v.official.started_at, "posted_at": v.official.posted_at or None,
            "impact": v.official.impact or None,
        },
        # Our opening against the provider's post (official.posted_at), not the start it gives the impact.
        "lead_time_minutes": None if v.lead_minutes is None else round(v.lead_minutes, 1),
        # An opening miner first saw more than stale_after after it happened (down, or catching up a backlog).
        "detected_late": v.seen_late,
        "seen_at": iso(v.seen_late_at) if v.seen_late and v.seen_late_at else None,
        "late_minutes": round(v.late_seconds / 60, 1) if v.seen_late and v.late_seconds is not None else None,
        "reopened_at": iso(v.reopened_at) if v.reopened_at else None,
        "closed_untracked": v.untracked or None,
        # Resolved after miner's own downtime: the span it was not scoring (from, to), and the earliest the outage
        # may have ended, unseen (ended_from: from, or the first quiet bucket before it that the resolve counted).
        "resolved_after_gap": None if v.unscored is None else gap_json(v.unscored),
        "samples": [{"text": p.text, "url": p.url, "source": p.source, "created_at": p.created_at}
                    for p in v.samples],
    }


def json_payload(kind: str, views: list[IncidentView], *, route: str, message_id: str, now: datetime,
                 reminders: set[int]) -> dict[str, Any]:
    """``views`` most important first: past MAX_INCIDENTS they are counted in ``truncated_incidents`` only."""
    return {
        "version": PAYLOAD_VERSION,
        "kind": kind,
        "id": message_id,
        "route": route,
        "sent_at": iso(now),
        "incidents": [incident_json(v, v.id in reminders) for v in views[:MAX_INCIDENTS]],
        "truncated_incidents": max(0, len(views) - MAX_INCIDENTS),
    }


def _fit(text: str, limit: int) -> str:
    """Escaped Slack text cut to ``limit`` characters without splitting an escape (``&lt;``) or a ``<url|text>``
    link: half of either is shown as typed (``&l``)."""
    if len(text) <= limit:
        return text
    cut = text[:limit - 1]
    if cut.rfind("&") > cut.rfind(";"):
        cut = cut[:cut.rfind("&")]
    if cut.rfind("<") > cut.rfind(">"):
        cut = cut[:cut.rfind("<")]
    return cut + "\u2026"


def open_span(v: IncidentView) -> str:
    """When the incident was open, after its status: "since 12:00 UTC (10 min)" while it is, and once resolved "open
    12:00 to 13:00 UTC (1 h 00 min)" ("resolved, since 12:00" read as resolved since then), with the days when they
    differ. An end miner did not see (a gap) has no time: the line under it says what is known of it."""
    if v.status == "open" or v.resolved_at is None:
        return f"since {v.opened_at:%H:%M} UTC ({v.duration})"
    if v.unscored:
        return f"opened {v.opened_at:%H:%M} UTC ({v.duration})"
    when = "%H:%M" if v.opened_at.date() == v.resolved_at.date() else "%Y-%m-%d %H:%M"
    return f"open {v.opened_at.strftime(when)} to {v.resolved_at.strftime(when)} UTC ({v.duration})"


def _slack_incident(kind: str, v: IncidentView, reminder: bool) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """One incident's section, and a context block quoting up to three of its sample posts (None without any)."""
    emoji = ":red_circle:" if v.status == "open" else ":large_green_circle:"
    note = " (reminder)" if reminder else ""
    ratio = f" ({v.ratio:.1f}x)" if v.ratio else ""
    lines = [f"{emoji} *{slack_text(v.service)}* {v.status}{note}, {open_span(v)}",
             f"peak {v.peak_complaints} vs baseline {v.baseline_text}{ratio}, z {v.peak_score:.1f}, "
             f"{v.total_complaints} complaints"]
    if v.seen_late:
        lines.insert(1, ":warning: seen late: " + slack_text(v.late_text))
    if v.reopened_at:
        lines.insert(1, "re-opened " + slack_text(v.reopen_text))
    if v.untracked:
        lines.insert(1, ":warning: closed, not seen to end: " + slack_text(v.untracked))
    if v.unscored:
        lines.insert(1, ":warning: resolved after a gap: " + slack_text(v.gap_text))
    if v.symptoms:
        lines.append("symptoms: " + slack_text(v.symptom_line))
    if v.official is not None:
        official = slack_text(v.official.title)
        if v.official.url:
            official = f"<{slack_url(v.official.url)}|{official}>"
        lines.append(f"provider: {official} ({slack_text(v.official.status)})"
                     + (f"; {slack_text(v.lead_line)}" if v.lead_line else ""))
    section = {"type": "mrkdwn", "text": _fit("\n".join(lines), 2900)}
    quotes = "\n".join(f"> {slack_text(p.text)}" for p in v.samples[:3])
    context = {"type": "context", "elements": [{"type": "mrkdwn", "text": _fit(quotes, 2900)}]}
    return {"type": "section", "text": section}, context if v.samples and kind != "resolved" else None


def _slack_size(blocks: list[dict[str, Any]]) -> int:
    """At least what Slack counts of ``blocks``, be it characters or UTF-16 units of their text, or their JSON."""
    return len(json.dumps(blocks, ensure_ascii=False, separators=(",", ":")).encode())


def slack_payload(kind: str, views: list[IncidentView], *, subject: str, reminders: set[int]) -> dict[str, Any]:
    """``views`` most important first. Within Slack's 50 blocks and SLACK_CHARS: every incident that fits, then the
    sample posts of the first ones while they fit (which of the services are down matters more than what their users
    say); the incidents that do not fit are counted in a last line."""
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": subject[:150]}}]
    more: dict[str, Any] = {"type": "context", "elements": [
        {"type": "mrkdwn", "text": f"{len(views)} more incidents not shown"}]}
    used = _slack_size(blocks) + _slack_size([more])  # room kept for saying what is left out
    shown: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    for v in views:
        section, quotes = _slack_incident(kind, v, v.id in reminders)
        if len(blocks) + len(shown) + 1 > SLACK_BLOCKS - 1 or used + _slack_size([section]) > SLACK_CHARS:
            break
        shown.append((section, quotes))
        used += _slack_size([section])
    room = SLACK_BLOCKS - 1 - len(blocks) - len(shown)
    for section, quotes in shown:
        blocks.append(section)
        if quotes is not None and room and used + _slack_size([quotes]) <= SLACK_CHARS:
            blocks.append(quotes)
            used, room = used + _slack_size([quotes]), room - 1
    if len(shown) < len(views):
        more["elements"][0]["text"] = f"{len(views) - len(shown)} more incidents not shown"
        blocks.append(more)
    return {"text": slack_text(subject), "blocks": blocks}


# Teams refuses a message over 28 KB (learn.microsoft.com/microsoftteams/platform/webhooks-and-connectors/how-to/
# add-incoming-webhook); the workflow wraps the card in a message of its own, so the card stays well below that.
TEAMS_BYTES = 24 * 1024
TEAMS_CARD_VERSION = "1.4"  # as Teams' own webhook samples; nothing in the card is newer than 1.2 (ActionSet)


def _size(value: Any) -> int:
    """Bytes ``value`` takes in the POST, or more: ASCII-escaped JSON with spaces is never shorter than what httpx
    sends (compact UTF-8)."""
    return len(json.dumps(value))


def _teams_incident(kind: str, v: IncidentView, reminder: bool, samples: bool) -> dict[str, Any]:
    """One incident as a Container. Every text is escaped for the TextBlock's Markdown: none of it is ours but the
    labels (the service and provider names come from feeds and status pages too)."""
    note = " (reminder)" if reminder else ""
    ratio = f" ({v.ratio:.1f}x)" if v.ratio else ""
    items: list[dict[str, Any]] = [
        {"type": "TextBlock", "wrap": True, "weight": "Bolder", "color": "Attention" if v.status == "open" else "Good",
         "text": f"{teams_text(v.service)} {v.status}{note}, {open_span(v)}"},
        {"type": "TextBlock", "wrap": True, "spacing": "None",
         "text": f"peak {v.peak_complaints} vs baseline {v.baseline_text}{ratio}, z {v.peak_score:.1f}, "
                 f"{v.total_complaints} complaints"},
    ]
    if v.seen_late:
        items.insert(1, {"type": "TextBlock", "wrap": True, "spacing": "None", "color": "Warning",
                         "text": "seen late: " + teams_text(v.late_text)})
    if v.reopened_at:
        items.insert(1, {"type": "TextBlock", "wrap": True, "spacing": "None",
                         "text": "re-opened " + teams_text(v.reopen_text)})
    if v.untracked:
        items.insert(1, {"type": "TextBlock", "wrap": True, "spacing": "None", "color": "Warning",
                         "text": "closed, not seen to end: " + teams_text(v.untracked)})
    if v.unscored:
        items.insert(1, {"type": "TextBlock", "wrap": True, "spacing": "None", "color": "Warning",
                         "text": "resolved after a gap: " + teams_text(v.gap_text)})
    if v.symptoms:
        items.append({"type": "TextBlock", "wrap": True, "spacing": "None",
                      "text": "symptoms: " + teams_text(v.symptom_line)})
    if v.official is not None:
        lead = f"; {teams_text(v.lead_line)}" if v.lead_line else ""
        items.append({"type": "TextBlock", "wrap": True, "spacing": "None",
                      "text": f"provider: {teams_text(v.official.title)} ({teams_text(v.official.status)}){lead}"})
        # A button, not a Markdown link: its URL is a JSON string no renderer parses, and its title is ours.
        if url := safe_url(v.official.url):
            items.append({"type": "ActionSet", "actions": [
                {"type": "Action.OpenUrl", "title": "Provider status page", "url": url}]})
    if samples and v.samples and kind != "resolved":
        # Quoted: a post's text never starts the TextBlock, where "1. " or "- " would make a list.
        items += [{"type": "TextBlock", "wrap": True, "isSubtle": True, "spacing": "Small",
                   "text": f"\u201c{teams_text(p.text)}\u201d"} for p in v.samples[:3]]
    return {"type": "Container", "separator": True, "items": items}


def teams_payload(kind: str, views: list[IncidentView], *, subject: str, reminders: set[int]) -> dict[str, Any]:
    """A message for a Teams Workflows webhook ("Post to a channel when a webhook request is received"): one Adaptive
    Card, the subject and one Container per incident, ``views`` most important first. Within TEAMS_BYTES: an incident
    that does not fit goes without its sample posts, and those that do not fit even so are counted in a last line."""
    card: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": TEAMS_CARD_VERSION,
        "msteams": {"width": "Full"},
        "body": [{"type": "TextBlock", "size": "Large", "weight": "Bolder", "wrap": True,
                  "text": teams_text(subject)}],
    }
    message = {"type": "message",
               "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
                                "content": card}]}
    more = {"type": "TextBlock", "wrap": True, "isSubtle": True, "separator": True,
            "text": f"{len(views)} more incidents not shown"}
    used = _size(message) + _size(more) + 2  # room kept for saying what is left out
    for n, v in enumerate(views):
        for samples in (True, False):
            element = _teams_incident(kind, v, v.id in reminders, samples)
            if used + _size(element) + 2 <= TEAMS_BYTES:
                break
        else:
            more["text"] = f"{len(views) - n} more incidents not shown"
            card["body"].append(more)
            break
        card["body"].append(element)
        used += _size(element) + 2
    return message

"""`status_feed`: a provider's status RSS/Atom feed (e.g. Statuspage history.atom) -> OfficialIncident.

Statuspage writes each incident's updates newest first as "<strong>Resolved</strong> - text", so the first
recognised label in the entry's content is the incident's current status.
"""

from __future__ import annotations

import re
from typing import Any

from miner.collectors.base import PollContext
from miner.collectors.feeds import entry_body, entry_id, entry_time, entry_updated, fetch_feed, parse_feed
from miner.collectors.http import state_after
from miner.collectors.normalise import fold, html_to_text
from miner.config import SourceConfig
from miner.errors import SourceError
from miner.records import FetchResult, OfficialIncident, SourceState

_STATUS_WORDS = {
    "investigating": "investigating",
    "identified": "identified",
    "monitoring": "monitoring",
    "resolved": "resolved",
    "postmortem": "postmortem",
    "post-mortem": "postmortem",
    "scheduled": "scheduled",
    "in progress": "scheduled",  # maintenance under way
    "verifying": "monitoring",
    "completed": "resolved",
}
_LABEL = re.compile(
    r"(?:^|[\s>])(" + "|".join(re.escape(w) for w in _STATUS_WORDS) + r")\s*[-–—:]\s", re.IGNORECASE
)
# Feeds without update labels (AWS: "Service is operating normally: [RESOLVED] ...") say it in the title.
_RESOLVED_TITLE = re.compile(r"\bresolved\b|\boperating normally\b", re.IGNORECASE)
STATUSES = frozenset(_STATUS_WORDS.values()) | {"unknown"}


def incident_status(text: str) -> str:
    """The current status named by the first update label ("Resolved - ...") in plain text, else unknown."""
    match = _LABEL.search(text)
    return _STATUS_WORDS[match.group(1).lower()] if match else "unknown"


def normalise_status(value: object) -> str:
    """Map a status string from any provider onto the OfficialIncident vocabulary."""
    key = str(value or "").strip().lower().replace("_", " ")
    return _STATUS_WORDS.get(key, "unknown")


def incident_from_entry(source: SourceConfig, ctx: PollContext, entry: Any) -> OfficialIncident:
    text = html_to_text(entry_body(entry))
    title = fold(html_to_text(str(entry.get("title", "") or ""))) or "(untitled incident)"
    status = incident_status(text)
    if status == "unknown" and _RESOLVED_TITLE.search(title):
        status = "resolved"
    started = entry_time(entry) or ctx.now()
    updated = entry_updated(entry) or started
    return OfficialIncident(
        source=source.name,
        external_id=entry_id(entry),
        service=source.services[0] if source.services else None,
        title=title,
        status=status,
        started_at=min(started, updated),
        updated_at=max(started, updated),
        resolved_at=max(started, updated) if status in ("resolved", "postmortem") else None,
        url=str(entry.get("link", "") or "") or None,
    )


class StatusFeedCollector:
    def poll(self, source: SourceConfig, state: SourceState, ctx: PollContext) -> FetchResult:
        if not source.url:
            raise SourceError(f"source {source.name!r} has no url", permanent=True)
        resp = fetch_feed(source, state, ctx, source.url)
        if resp.status == 304:
            return FetchResult(state=state, not_modified=True)
        parsed, warnings = parse_feed(resp, source.name)
        incidents = [incident_from_entry(source, ctx, e) for e in parsed.get("entries") or []]
        return FetchResult(incidents=incidents, state=state_after(resp), warnings=warnings)

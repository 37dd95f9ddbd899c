"""`status_feed`: a provider's status RSS/Atom feed (e.g. Statuspage history.atom) -> OfficialIncident.

Statuspage writes each incident's updates newest first as "<small>Nov 13, 06:53 PST</small><br>
<strong>Resolved</strong> - text", so the first recognised label in the entry's content is the incident's
current status, and the update stamps tell when it started and was resolved: the entry's own dates do not
(its published date is its latest update's, its updated date its last edit, which may be weeks later).
"""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from miner.collectors.aws_events import merge_aws_updates, read_known, write_known
from miner.collectors.base import PollContext, source_secrets
from miner.collectors.feeds import (
    ZONE_HOURS,
    entry_body,
    entry_id,
    entry_time,
    entry_updated,
    fetch_feed,
    parse_feed,
    whole_feed,
)
from miner.collectors.normalise import OFFICIAL_TEXT_CHARS, cut, fold, html_to_text
from miner.collectors.validators import state_after
from miner.config import SourceConfig
from miner.errors import SourceError
from miner.records import MAINTENANCE, FetchResult, OfficialIncident, SourceState
from miner.redaction import redact
from miner.urls import holds_token_host, link_id, stored_link

_STATUS_WORDS = {
    "investigating": "investigating",
    "identified": "identified",
    "monitoring": "monitoring",
    "resolved": "resolved",
    "postmortem": "postmortem",
    "post-mortem": "postmortem",
    # Statuspage's maintenance states: planned work, labelled as such (MAINTENANCE), not an outage.
    "scheduled": "scheduled",
    "in progress": "scheduled",  # under way
    "verifying": "scheduled",
    "completed": "completed",
}
_LABEL = re.compile(
    r"(?:^|[\s>])(" + "|".join(re.escape(w) for w in _STATUS_WORDS) + r")\s*[-–—:]\s", re.IGNORECASE
)
# Feeds without update labels (AWS: "Service is operating normally: [RESOLVED] ...") say it in the title.
_RESOLVED_TITLE = re.compile(r"\bresolved\b|\boperating normally\b", re.IGNORECASE)
STATUSES = frozenset(_STATUS_WORDS.values()) | {"unknown"}
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
# An update's stamp and label in the entry's plain text: "Nov 13, 06:53 PST Investigating - ". The stamp has no
# year and names its zone by abbreviation (or "+03" where the zone has none); "Update" names no state but is dated.
_STAMP = re.compile(
    r"\b(" + "|".join(_MONTHS) + r")[a-z]*\.?\s+(\d{1,2}),?\s+(?:(\d{4}),?\s+)?(\d{1,2}):(\d{2})\s*(am|pm)?\s+"
    r"([A-Z]{1,5}|[+-]\d{2}(?::?\d{2})?)\s+(" + "|".join(re.escape(w) for w in (*_STATUS_WORDS, "update"))
    + r")\s*[-–—:]\s",
    re.IGNORECASE,
)
# Zone abbreviations, in hours east of UTC, for entries dated in UTC. Otherwise a stamp is read in the zone of the
# entry's own date, which Statuspage writes in the page's time zone: its abbreviations are not reliable (a 2013 feed
# says "Oct 28, 14:48 PST" for an update it dates 14:48 -0700), and some are ambiguous (IST).
# Feeds' table, with the North American readings of CST and AST that Statuspage's US-centred stamps mean.
_ZONES = {**ZONE_HOURS, "CST": -6, "AST": -4}


def incident_status(text: str) -> str:
    """The current status named by the first update label ("Resolved - ...") in plain text, else unknown."""
    match = _LABEL.search(text)
    return _STATUS_WORDS[match.group(1).lower()] if match else "unknown"


def normalise_status(value: object) -> str:
    """Map a status string from any provider onto the OfficialIncident vocabulary."""
    key = str(value or "").strip().lower().replace("_", " ")
    return _STATUS_WORDS.get(key, "unknown")


def _entry_date(entry: Any) -> datetime | None:
    """The entry's published (else updated) date with the offset it was written in (feedparser's are UTC)."""
    for key in ("published", "updated"):
        value = str(dict.get(entry, key) or "").strip() if isinstance(entry, dict) else ""
        if not value:
            continue
        try:
            return datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value)
        except ValueError:
            pass
        try:
            return parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            pass
    return None


def update_stamps(text: str, reference: datetime | None) -> list[tuple[str, datetime]]:
    """Each dated update in an entry's plain text as (label as written, lower-case; UTC time), newest first.

    A stamp without a year takes the one that puts it closest to the reference (the entry's date), so an incident
    across New Year, or a postmortem posted after an entry dated by its resolution, is read in the right year.
    Empty when there is no reference to place the stamps by.
    """
    if reference is None:
        return []
    offset = reference.utcoffset()
    if offset is None:
        reference, offset = reference.replace(tzinfo=UTC), timedelta(0)
    ref_zone = timezone(offset)
    stamps = []
    for match in _STAMP.finditer(text):
        month_name, day, year, hour, minute, half, zone, label = match.groups()
        hours = int(hour)
        if half:
            if not 1 <= hours <= 12:
                continue
            hours = hours % 12 + (12 if half.lower() == "pm" else 0)
        month = _MONTHS.index(month_name[:3].lower()) + 1
        try:
            tz = (_zone(zone) if not offset else None) or ref_zone
            local = reference.astimezone(tz)
        except ValueError:
            continue  # a zone "+99"
        candidates = []
        for y in (int(year),) if year else (local.year - 1, local.year, local.year + 1):
            with contextlib.suppress(ValueError, OverflowError):  # a 29 February of another year, a 25:00
                candidates.append(datetime(y, month, int(day), hours, int(minute), tzinfo=tz))
        if candidates:
            when = min(candidates, key=lambda c: abs(c - reference))
            stamps.append((label.lower(), when.astimezone(UTC)))
    return stamps


def _zone(name: str) -> timezone | None:
    if name[0] in "+-":
        digits = name[1:].replace(":", "")
        minutes = int(digits[:2]) * 60 + (int(digits[2:]) if digits[2:] else 0)
        return timezone(timedelta(minutes=minutes if name[0] == "+" else -minutes))
    hours = _ZONES.get(name.upper())
    return None if hours is None else timezone(timedelta(hours=hours))


def incident_from_entry(source: SourceConfig, ctx: PollContext, entry: Any) -> OfficialIncident:
    text = html_to_text(entry_body(entry))
    title = fold(html_to_text(str(entry.get("title", "") or ""))) or "(untitled incident)"
    status = incident_status(text)
    if status == "unknown" and _RESOLVED_TITLE.search(title):
        status = "resolved"
    dated = entry_time(entry)
    published = dated or ctx.now()
    updated = entry_updated(entry) or published
    stamps = update_stamps(text, _entry_date(entry))
    times = [when for _, when in stamps]
    if status in MAINTENANCE:
        # Planned work starts when it is under way, not when it was announced ("Scheduled", days before).
        times = [when for label, when in stamps if label == "in progress"] or times
    started = min([published, updated, *times])
    # The feed gives no start of the impact apart from its updates: its first update (a maintenance's announcement)
    # is when the provider said so, the post our lead is measured to.
    posted = min([published, updated, *(when for _, when in stamps)])
    resolved_at = None
    if status in ("resolved", "postmortem", "completed"):
        # The newest "Resolved" ("Completed") update; a feed without stamps has only its last update (or edit).
        done = "completed" if status == "completed" else "resolved"
        resolved_at = next((when for label, when in stamps if _STATUS_WORDS.get(label) == done),
                           max(published, updated))
    secrets, ident = source_secrets(source), entry_id(entry)
    if secrets:  # a title naming the page's URL, as a post's text may (normalise.post_text)
        title = redact(title, secrets)
    title = cut(title, OFFICIAL_TEXT_CHARS)
    if secrets or (source.secret_url and holds_token_host(ident)):  # as migration 0030 rewrote one stored before
        ident = link_id(ident, secrets, token_hosts=source.secret_url)
    return OfficialIncident(
        source=source.name,
        # Only without the key of a url from the environment: any other guid is kept as written, as it always was.
        external_id=ident,
        service=source.services[0] if source.services else None,
        title=title,
        status=status,
        started_at=started,
        posted_at=posted,
        # An update dated after the entry (a postmortem in an RSS feed, whose pubDate stays at its resolution) is
        # the provider's last update: the store keeps a new version of an incident only when that moves.
        updated_at=max([published, updated, *(when for _, when in stamps)]),
        resolved_at=max(resolved_at, started) if resolved_at else None,
        url=stored_link(str(entry.get("link", "") or ""), secrets, token_hosts=source.secret_url),
        undated=dated is None,
        update_undated=dated is None,  # no date of any kind, and no stamps placed without one
    )


class StatusFeedCollector:
    def poll(self, source: SourceConfig, state: SourceState, ctx: PollContext) -> FetchResult:
        if not source.url:
            raise SourceError(f"source {source.name!r} has no url", permanent=True)
        resp = fetch_feed(source, state, ctx, source.url)
        if resp.status == 304:
            return FetchResult(state=state, not_modified=True)
        parsed, warnings = parse_feed(resp, source.name)
        entries = [incident_from_entry(source, ctx, e) for e in parsed.get("entries") or []]
        incidents, events = merge_aws_updates(entries, read_known(state.cursor))
        return FetchResult(incidents=incidents, state=state_after(resp, write_known(events), whole_feed(parsed)),
                           warnings=warnings)

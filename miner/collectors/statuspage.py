"""`statuspage`: an Atlassian Statuspage's `/api/v2/incidents.json` -> OfficialIncident records.

`url` is the page's base URL (https://status.example.com) or the full incidents.json/summary.json URL.
incidents.json lists the latest incidents, resolved ones included, so one conditional GET per poll is
enough; summary.json (unresolved incidents only) is accepted too when configured explicitly: an incident it no
longer lists is stored resolved (FetchResult.all_open).
"""

from __future__ import annotations

from typing import Any

from miner.collectors.base import PollContext, as_dict, as_list, loose_list, source_secrets, text_of
from miner.collectors.http import fetch, json_object
from miner.collectors.normalise import OFFICIAL_TEXT_CHARS, cut, fold, html_to_text, parse_time
from miner.collectors.poll_notes import note
from miner.collectors.status_feed import normalise_status
from miner.collectors.validators import conditional_headers, state_after
from miner.config import SourceConfig
from miner.errors import BadContent, SourceError
from miner.records import FetchResult, OfficialIncident, SourceState
from miner.redaction import redact
from miner.urls import stored_link

_IMPACTS = frozenset({"none", "minor", "major", "critical"})


def incidents_url(url: str) -> str:
    url = url.rstrip("/")
    if url.endswith(".json"):
        return url
    return f"{url}/api/v2/incidents.json"


def incident_from_json(source: SourceConfig, ctx: PollContext, item: dict[str, Any],
                       page_url: str = "") -> OfficialIncident | None:
    """One incident of incidents.json/summary.json; ``page_url`` is the answer's `page.url` (the page's own address)."""
    ident = item.get("id")
    if not ident:
        return None
    # started_at is when the provider says the impact began, which it may set hours before it posted the incident
    # (created_at): our lead is measured to the post.
    created = parse_time(item.get("created_at"))
    dated = parse_time(item.get("started_at")) or created
    started = dated or ctx.now()
    provider_updated = parse_time(item.get("updated_at"))
    updated = provider_updated or started
    status = normalise_status(item.get("status"))
    impact = cut(fold(text_of(item.get("impact"))), 30).lower() or None  # none, minor, major, critical, maintenance
    components = tuple(
        cut(fold(text_of(as_dict(c).get("name"))), OFFICIAL_TEXT_CHARS)
        for c in loose_list(item.get("components")) if as_dict(c).get("name")
    )
    secrets = source_secrets(source)
    # A title naming the page's URL, as a post's text may (normalise.post_text), is stored without its key.
    title = cut(redact(fold(html_to_text(text_of(item.get("name")))), secrets), OFFICIAL_TEXT_CHARS)
    title = title or "(untitled incident)"
    return OfficialIncident(
        source=source.name,
        external_id=str(ident),
        service=source.services[0] if source.services else None,
        title=title,
        status=status,
        started_at=started,
        posted_at=created or started,
        # Undated, its start is the poll's time, which the store keeps from the first poll on: the provider's own
        # update time (when it gives one) tells when the incident changed, not each poll.
        updated_at=max(updated, started) if dated else updated,
        impact=impact if impact in _IMPACTS else None,
        components=components,
        resolved_at=parse_time(item.get("resolved_at")) if status in ("resolved", "postmortem", "completed") else None,
        # The incident's permalink, the link its page's history feed gives too (how the store knows it is the same
        # incident when both are watched); the stspg.io shortlink, a redirect to it, when the page has no url.
        # Both are the page's text: kept as a feed item's link is, without the key of a url from the environment
        # (a page behind a proxy whose path holds it answers with its page.url under that path) or a login.
        url=stored_link((f"{page_url.rstrip('/')}/incidents/{ident}" if page_url else None)
                        or text_of(item.get("shortlink")) or None, secrets,
                        token_hosts=source.secret_url),
        undated=dated is None,
        update_undated=dated is None and provider_updated is None,
    )


class StatuspageCollector:
    def poll(self, source: SourceConfig, state: SourceState, ctx: PollContext) -> FetchResult:
        if not source.url:
            raise SourceError(f"source {source.name!r} has no url", permanent=True)
        url = incidents_url(source.url)
        resp = fetch(ctx.client, ctx.settings, url, timeout=source.timeout, now=ctx.now,
                     secret_url=source.secret_url, headers={"Accept": "application/json", **conditional_headers(state)})
        if resp.status == 304:
            return FetchResult(state=state, not_modified=True)
        data = json_object(resp)
        if "incidents" not in data:
            raise BadContent(f"unexpected JSON from {resp.where}: no 'incidents' (is this a Statuspage?)")
        incidents = []
        page_url = text_of(as_dict(data.get("page")).get("url"))
        page_url = page_url if page_url.startswith(("https://", "http://")) else ""
        for item in as_list(data["incidents"], "incidents", resp.where):
            incident = incident_from_json(source, ctx, as_dict(item), page_url)
            if incident is None:
                note("malformed", resp.where)  # no id
            else:
                incidents.append(incident)
        # summary.json and incidents/unresolved.json list only open incidents: one that leaves them was resolved.
        all_open = url.endswith(("/summary.json", "/unresolved.json"))
        # A permanent redirect is a warning of the poll's, as for every JSON API (noted by json_object).
        return FetchResult(incidents=incidents, state=state_after(resp), all_open=all_open)

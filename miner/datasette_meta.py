"""Datasette metadata for `miner ui`: table and column descriptions, and canned queries."""

from __future__ import annotations

from typing import Any

from miner.store.catalog import TABLES

CANNED = {
    # The week before the newest bucket, read through buckets_bucket_start: grouping every bucket ever stored to
    # show the newest 500 rows took over Datasette's 1 s query limit after three months of 30 services. With many
    # services the week alone was too much (300 services: 600,000 buckets read for 500 rows of the last 2 hours,
    # 1 s): it starts no earlier than the hour of the 30,000th newest bucket. The 500 rows shown are in that hour
    # or later, as an hour of one service holds at most 60 buckets (detector.bucket_minutes is at least 1).
    "complaints_per_service_per_hour": {
        "title": "Complaints per service per hour (last 7 days)",
        # Sums of buckets: with 5-minute ones, a person counted in 3 of an hour's is 3 (docs/queries.md counts once).
        "description": "Sums of the buckets' counts: with buckets narrower than an hour, an author who complained "
                       "in several buckets of the hour counts once in each.",
        "sql": "SELECT service, substr(bucket_start, 1, 13) || ':00' AS hour, sum(posts) AS posts, "
               "sum(complaints) AS complaints FROM buckets WHERE bucket_start >= (SELECT "
               "max(strftime('%Y-%m-%dT%H:00:00+00:00', max(bucket_start), '-7 days'), ifnull((SELECT "
               "substr(bucket_start, 1, 13) || ':00:00+00:00' FROM buckets ORDER BY bucket_start DESC "
               "LIMIT 1 OFFSET 29999), '')) FROM buckets) "
               "GROUP BY hour, service ORDER BY hour DESC, service LIMIT 500",
    },
    "open_incidents": {
        "title": "Open incidents",
        "sql": "SELECT id, service, opened_at, peak_complaints, round(peak_score, 1) AS z, baseline, symptoms "
               "FROM incidents WHERE status = 'open' ORDER BY opened_at DESC",
    },
    "lead_times": {
        "title": "Lead time over the provider's status page",
        "sql": "SELECT i.id, i.service, i.opened_at, o.posted_at AS provider_posted, o.started_at AS provider_started, "
               "o.title, i.lead_time_minutes FROM incidents i "
               "JOIN official_incidents o ON o.id = i.official_incident_id ORDER BY i.opened_at DESC",
    },
    "failing_sources": {
        "title": "Failing sources",
        "sql": "SELECT name, type, consecutive_failures, last_error, last_error_at, needs_action_since, last_ok_at, "
               "next_poll_at "
               "FROM sources WHERE consecutive_failures > 0 ORDER BY consecutive_failures DESC",
    },
}


def metadata(database: str) -> dict[str, Any]:
    tables = {name: {"description": desc, "columns": dict(cols)} for name, (desc, cols) in TABLES.items()}
    return {
        "title": "miner: outage signals",
        "description": "Posts, classifications, volume buckets and incidents collected by miner.",
        "databases": {database: {"tables": tables, "queries": CANNED}},
    }

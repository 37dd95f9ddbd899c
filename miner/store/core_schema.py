"""Migration 0001_core's tables: sources, posts and their service matches and verdicts, buckets, detector state,
official incidents, incidents, their groups and transitions, as miner 0.1.0 created them (the alerts' tables are
store/outbox.py's). Never edited: later changes are migrations of their own (store/migrations.py)."""

CORE_SQL = """
        CREATE TABLE sources (
            name TEXT PRIMARY KEY,
            type TEXT NOT NULL,
            url TEXT,
            etag TEXT,
            last_modified TEXT,
            cursor TEXT,
            last_poll_at TEXT,
            last_ok_at TEXT,
            last_error TEXT,
            last_error_at TEXT,
            consecutive_failures INTEGER NOT NULL DEFAULT 0,
            next_poll_at TEXT,
            polls INTEGER NOT NULL DEFAULT 0,
            posts_stored INTEGER NOT NULL DEFAULT 0,
            incidents_stored INTEGER NOT NULL DEFAULT 0,
            last_warning TEXT
        );
        CREATE TABLE posts (
            id INTEGER PRIMARY KEY,
            source TEXT NOT NULL,
            external_id TEXT NOT NULL,
            text TEXT NOT NULL,
            url TEXT,
            created_at TEXT NOT NULL,
            fetched_at TEXT NOT NULL,
            author_hash TEXT,
            lang TEXT,
            symptom_hint TEXT,
            UNIQUE (source, external_id)
        );
        CREATE INDEX posts_created_at ON posts (created_at);
        CREATE TABLE post_services (
            post_id INTEGER NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
            service TEXT NOT NULL,
            PRIMARY KEY (post_id, service)
        );
        CREATE INDEX post_services_service ON post_services (service, post_id);
        CREATE TABLE classifications (
            post_id INTEGER NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
            model_version TEXT NOT NULL,
            outage INTEGER NOT NULL,
            score REAL NOT NULL,
            symptom TEXT,
            classified_at TEXT NOT NULL,
            PRIMARY KEY (post_id, model_version)
        );
        CREATE TABLE buckets (
            service TEXT NOT NULL,
            bucket_start TEXT NOT NULL,
            posts INTEGER NOT NULL DEFAULT 0,
            complaints INTEGER NOT NULL DEFAULT 0,
            score REAL,
            baseline REAL,
            upper REAL,
            PRIMARY KEY (service, bucket_start)
        );
        CREATE TABLE detector_state (
            service TEXT PRIMARY KEY,
            last_bucket TEXT NOT NULL,
            state TEXT NOT NULL,
            draft TEXT,
            incident_id INTEGER,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE official_incidents (
            id INTEGER PRIMARY KEY,
            source TEXT NOT NULL,
            external_id TEXT NOT NULL,
            service TEXT,
            title TEXT NOT NULL,
            status TEXT NOT NULL,
            impact TEXT,
            components TEXT NOT NULL DEFAULT '[]',
            started_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            resolved_at TEXT,
            url TEXT,
            first_seen_at TEXT NOT NULL,
            UNIQUE (source, external_id)
        );
        CREATE INDEX official_incidents_service ON official_incidents (service, started_at);
        CREATE TABLE incident_groups (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            cause TEXT NOT NULL DEFAULT '',
            services TEXT NOT NULL DEFAULT '[]',
            opened_at TEXT NOT NULL
        );
        CREATE TABLE incidents (
            id INTEGER PRIMARY KEY,
            service TEXT NOT NULL,
            group_id INTEGER REFERENCES incident_groups (id),
            status TEXT NOT NULL CHECK (status IN ('open', 'resolved')),
            opened_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            resolved_at TEXT,
            peak_complaints INTEGER NOT NULL DEFAULT 0,
            peak_score REAL NOT NULL DEFAULT 0,
            baseline REAL NOT NULL DEFAULT 0,
            total_complaints INTEGER NOT NULL DEFAULT 0,
            symptoms TEXT NOT NULL DEFAULT '{}',
            sample_post_ids TEXT NOT NULL DEFAULT '[]',
            official_incident_id INTEGER REFERENCES official_incidents (id),
            lead_time_minutes REAL
        );
        CREATE INDEX incidents_service ON incidents (service, status);
        CREATE TABLE incident_events (
            id INTEGER PRIMARY KEY,
            incident_id INTEGER NOT NULL REFERENCES incidents (id),
            kind TEXT NOT NULL,
            at TEXT NOT NULL,
            details TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX incident_events_incident ON incident_events (incident_id, id);
        """

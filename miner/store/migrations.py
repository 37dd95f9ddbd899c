"""Schema migrations, applied in order once each and recorded in ``schema_migrations``.

A migration is never edited once released; add a new one instead. Each stage's tables live in the store module
that queries them; this list is the single order in which they are created.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass

from miner.errors import StoreError
from miner.store import email_scrub, feed_boilerplate_scrub, link_scrub, poll_failures, shares
from miner.store.core_schema import CORE_SQL
from miner.store.federated_ids import federated_kind_ids
from miner.store.foreign import refuse_foreign
from miner.store.incidents import BY_SERVICE_SQL, OPEN_SQL
from miner.store.official import POSTED_SQL
from miner.store.outbox import OUTBOX_SQL
from miner.store.sql_script import statements
from miner.timeutil import iso, utcnow


@dataclass(frozen=True)
class Migration:
    id: str
    sql: str  # a script of DDL/DML statements; run atomically with its schema_migrations row
    python: Callable[[sqlite3.Connection], None] | None = None  # then run, in the same transaction


CORE = Migration("0001_core", CORE_SQL)

ALERTS = Migration("0002_alerts_outbox", OUTBOX_SQL)

# refresh_buckets zeroes a time window of every service's buckets before recounting it, once per classify batch.
# The primary key starts with the service, so without this index that was a scan of every bucket ever stored
# (about 8,600 more a day at 30 services and 5-minute buckets, kept for store.bucket_retention_days).
BUCKETS_BY_TIME = Migration("0003_buckets_by_time", "CREATE INDEX buckets_bucket_start ON buckets (bucket_start);")

# Small named facts about the store itself (how far posts have been pruned), beside the alerts' own alert_state.
STORE_STATE = Migration("0004_store_state", "CREATE TABLE store_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);")

# A post without a time of its own: dated when fetched, and counted only when that was soon after it was posted.
UNDATED_POSTS = Migration(
    "0005_undated_posts", "ALTER TABLE posts ADD COLUMN undated TEXT CHECK (undated IN ('new', 'backlog'));")

# A store pruned by a miner that did not record its cutoff (0.1.0, and every prune before 0004) has none: a post a
# feed still listed from the pruned days was stored again, and its classify batch recounted its bucket from the posts
# left, so the kept count of those days dropped to the few stored again. The prune is told by a bucket that counted
# posts and ended before the earliest post left (a bucket is a day at most); the cutoff is taken as that post's time,
# leaving out the sample posts of open incidents, which the prune kept. The bucket holding it is made final too, so a
# post it counted is never counted twice, and nothing before it is stored again.
PRUNED_BEFORE_BACKFILL = Migration(
    "0006_pruned_before_backfill",
    """
        INSERT INTO store_state (key, value)
        SELECT 'pruned_before', first FROM (
            SELECT created_at AS first FROM posts WHERE id NOT IN (
                SELECT value FROM incidents, json_each(CASE WHEN json_valid(incidents.sample_post_ids)
                    THEN incidents.sample_post_ids ELSE '[]' END) WHERE status = 'open' AND value IS NOT NULL)
            ORDER BY created_at LIMIT 1)
        WHERE EXISTS (
            SELECT 1 FROM buckets WHERE posts > 0
            AND bucket_start < strftime('%Y-%m-%dT%H:%M:%S+00:00', first, '-1 day'))
        ON CONFLICT (key) DO NOTHING;
    """,
)

# A silence mutes one service, or every service of a provider (`miner silence add --provider Meta`): one row naming
# the provider, so a service given that provider later is muted too and `silence list` shows what was asked. SQLite
# cannot drop NOT NULL from a column, so the table is made again with the rows as they were.
PROVIDER_SILENCES = Migration(
    "0007_provider_silences",
    """
        CREATE TABLE silences_0007 (
            id INTEGER PRIMARY KEY,
            service TEXT,
            provider TEXT,
            starts_at TEXT NOT NULL,
            ends_at TEXT NOT NULL,
            comment TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            CHECK ((service IS NULL) != (provider IS NULL))
        );
        INSERT INTO silences_0007 (id, service, starts_at, ends_at, comment, created_at)
            SELECT id, service, starts_at, ends_at, comment, created_at FROM silences;
        DROP TABLE silences;
        ALTER TABLE silences_0007 RENAME TO silences;
    """,
)

# A source's warning gets the time it was last seen and the time a poll read the source again without it: it was
# kept forever, even once its problem was put right, so it could not be shown as the source's state. A store's
# warnings from before have neither time: each stands until the source's next poll that reads its content (see
# Store.save_fetch), which either warns again or clears it, so a warning that still holds is not hidden meanwhile.
WARNING_TIMES = Migration(
    "0008_warning_times",
    """
        ALTER TABLE sources ADD COLUMN last_warning_at TEXT;
        ALTER TABLE sources ADD COLUMN warning_cleared_at TEXT;
    """,
)

# An alert or resolve notice belongs to a group of its route's alerts ([alerts] group_by: a provider, a service), and
# group_wait and group_interval run per route, channel and group: an unrelated outage opening within group_interval
# of a message on the route is not held back by it. Rows planned before were batched per route and channel: ''
# (the whole route, group_by = "route") is what they were.
ALERT_GROUPS = Migration("0009_alert_groups", "ALTER TABLE outbox ADD COLUMN group_key TEXT NOT NULL DEFAULT '';")

# A reddit source's anonymous feed stored its posts under their fullname resolved against the feed's URL
# ("https://www.reddit.com/r/<sub>/new/t3_abc"); it stores the bare fullname now, as the API does, and without this
# the first poll after the upgrade stored each post the feed still lists (up to 100) a second time. SQLite has no
# regexp: what rtrim leaves of the id without its trailing base-36 run must end in "/t3_", as the collector's
# _FEED_FULLNAME reads it. An id whose fullname the source stored already (read by the API too) keeps its old id
# (OR IGNORE), as does the second of two old ids of one post (its query changed from a search to a subreddit).
REDDIT_FEED_FULLNAMES = Migration(
    "0010_reddit_feed_fullnames",
    """
        UPDATE OR IGNORE posts
        SET external_id = 't3_' || substr(external_id,
                                          length(rtrim(external_id, '0123456789abcdefghijklmnopqrstuvwxyz')) + 1)
        WHERE source IN (SELECT name FROM sources WHERE type = 'reddit')
        AND external_id GLOB 'http*://*/t3_[0-9a-z]*'
        AND rtrim(external_id, '0123456789abcdefghijklmnopqrstuvwxyz') GLOB 'http*://*/t3_';
    """,
)

# group_interval's lookups (store/group_interval.py: the group's last message, a batch of it still waiting) ran on
# outbox_due (status), which reads every sent row the outbox keeps (bucket_retention_days): with group_by, a planning
# run opening 300 services looked up 300 groups, 14 s of the write lock at 100,000 sent rows.
OUTBOX_GROUPS_INDEX = Migration("0011_outbox_groups_index",
                                "CREATE INDEX outbox_group ON outbox (route, channel, group_key, kind, status);")

# The retention guard's newest post a source dated (store/maintenance.py, hold_prune) walked posts_created_at down
# from the newest post until it found one: on a store without any (user reports and undated items only) every post,
# 1.1 s at 2.5 M posts. Only those posts are indexed here, so the guard reads one entry, or none. The WHERE is the
# guard's (maintenance._SOURCE_DATED): SQLite reads a partial index only for a query whose WHERE implies the index's.
SOURCE_DATED_INDEX = Migration(
    "0012_source_dated_posts_index",
    "CREATE INDEX posts_source_dated ON posts (created_at) "
    "WHERE undated IS NULL AND source != 'reports' AND created_at < fetched_at;",
)

# An opening the planner first saw more than stale_after after it happened (miner was down, or caught up a backlog)
# is alerted when still open; its alert says so, or it read as an outage that just began. The planner's decision is
# kept with the item, as the settings or the incident may change before it is sent. Rows planned before were not late.
LATE_OPENINGS = Migration(
    "0013_late_openings",
    """
        ALTER TABLE outbox_items ADD COLUMN seen_late_at TEXT;
        ALTER TABLE outbox_items ADD COLUMN late_seconds REAL;
    """,
)

# A source's last poll stopped before it had read everything new since the one before, and the next polls read the
# rest (FetchResult.behind): the detector waits for them. Mastodon's cursor, Lemmy's and Discourse's cannot show it;
# the cursors that keep windows left unread (a JSON object with a non-empty backlog) say it for the rows stored before.
# CASE, not AND: SQLite does not stop at a false json_valid, and json_type raises on what is not JSON.
SOURCES_BEHIND = Migration(
    "0014_sources_behind",
    """
        ALTER TABLE sources ADD COLUMN behind INTEGER NOT NULL DEFAULT 0;
        UPDATE sources SET behind = 1 WHERE CASE WHEN json_valid(cursor) THEN
            CASE WHEN json_type(cursor) = 'object' THEN coalesce(json_array_length(cursor, '$.backlog'), 0) > 0
            ELSE 0 END ELSE 0 END;
    """,
)

# A feed's entry is looked up by its link too, at each poll (store/posts.py, relisted): some feeds list their posts
# under new ids at every fetch. Without the index each entry read every post of the store; only linked posts are in it.
POSTS_BY_LINK = Migration("0015_posts_by_link",
                          "CREATE INDEX posts_source_url ON posts (source, url) WHERE url IS NOT NULL;")

# The read API's and status board's newest post of a service (store/signals.py, last_counted_post_at) looked for the
# service's newest bucket with posts on the primary key, from the newest bucket down: the detector stores the empty
# buckets too, so for a service whose last post is weeks old that read each bucket since, 5.6 ms per such service at
# 5-minute buckets (1.7 s per /api/v1/services with 300 of them). Only the buckets that counted a post are indexed
# here (a third of the rows over 300 services), so the read is one entry; the WHERE is the query's.
BUCKETS_WITH_POSTS = Migration("0016_buckets_with_posts",
                               "CREATE INDEX buckets_with_posts ON buckets (service, bucket_start) WHERE posts > 0;")

# Links and ids made of links are stored without a credential (?passkey=...), and a source's url without more key
# names' values: rewritten into those forms (store/link_scrub.py), or the first poll stored again every entry a feed
# listed, reset the state of a source whose stored url changed, and the keys stayed in the store.
STORED_LINKS = Migration("0017_stored_links", "", link_scrub.scrub_stored_links)

# 0006 took a cutoff from the earliest post left, and so none from a store whose prune left no post (but the samples
# of open incidents): its pruned buckets were recounted from the posts stored again (a replay of their days). All
# the posts the buckets counted were deleted then; the cutoff is the end of the last bucket that counted one: the
# start of the next bucket stored (the detector stores empty ones), else a day after its start (a bucket's widest).
# Only where a service's buckets counted more posts than it has left: a store never pruned whose every post is an
# open incident's sample (a young store) has them all, and a cutoff would make its buckets final for nothing.
PRUNED_BEFORE_NO_POSTS = Migration(
    "0018_pruned_before_no_posts",
    """
        INSERT INTO store_state (key, value)
        SELECT 'pruned_before', coalesce(
            (SELECT min(bucket_start) FROM buckets WHERE bucket_start > last),
            strftime('%Y-%m-%dT%H:%M:%S+00:00', last, '+1 day'))
        FROM (SELECT max(bucket_start) AS last FROM buckets WHERE posts > 0)
        WHERE last IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM posts WHERE id NOT IN (
                SELECT value FROM incidents, json_each(
                    CASE WHEN json_valid(sample_post_ids) THEN sample_post_ids ELSE '[]' END)
                WHERE status = 'open' AND value IS NOT NULL))
        AND EXISTS (
            SELECT 1 FROM buckets b GROUP BY b.service
            HAVING sum(b.posts) > (SELECT count(*) FROM post_services ps WHERE ps.service = b.service))
        ON CONFLICT (key) DO NOTHING;
    """,
)

# A prune records the highest post id it deleted, and new posts are numbered past it (store/posts.py, LAST_PRUNED_ID):
# a store pruned before has none, and where its prune deleted the newest posts, the next ones took their ids, which
# the sample_post_ids of incidents cite. The highest id cited is taken for it where no post left has a higher one. Not
# a number past 64 bits (a row edited by hand): CAST made it the largest id there is, the next post's id one past it
# (a real, no rowid), and every post stored after the upgrade failed with "datatype mismatch".
PRUNED_POST_IDS = Migration(
    "0019_last_pruned_post_id",
    """
        INSERT INTO store_state (key, value)
        SELECT 'last_pruned_post_id', cited FROM (
            SELECT max(CAST(ids.value AS INTEGER)) AS cited FROM incidents, json_each(
                CASE WHEN json_valid(incidents.sample_post_ids) THEN incidents.sample_post_ids ELSE '[]' END) AS ids
            WHERE CAST(ids.value AS INTEGER) < 9223372036854775807)
        WHERE cited > (SELECT coalesce(max(id), 0) FROM posts)
        ON CONFLICT (key) DO UPDATE SET value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER));
    """,
)

# The width of an incident's opening bucket: its sample posts (and symptoms read from posts) start with that bucket,
# which ends at opened_at. Taken from the store's width when an alert was written, an incident open across a change of
# detector.bucket_minutes from 60 to 5 had them from 30 minutes before its opening, leaving out the posts that opened
# it, and one changed from 5 to 60 from an hour before, posts from before the outage. Incidents opened before are
# given the width the store records now (that of the buckets being counted, as the upgrade runs before any change).
INCIDENT_BUCKET_MINUTES = Migration(
    "0020_incident_bucket_minutes",
    """
        ALTER TABLE incidents ADD COLUMN bucket_minutes INTEGER;
        UPDATE incidents SET bucket_minutes = (
            SELECT CAST(value AS INTEGER) FROM store_state WHERE key = 'bucket_minutes' AND CAST(value AS INTEGER) > 0);
    """,
)

# A status federated from Lemmy, PieFed or Mbin has its kind in its id (host/comment/5, collectors/mastodon.py
# status_external_id), where host/5 was both a post and a comment. Each poll reads again the hour below its cursor
# (mastodon.LOOKBACK): after the upgrade, every such status of that hour was stored a second time under its new id
# and counted twice. Rewritten from the link stored with it, where its number is the id's: UPDATE OR IGNORE, as in
# 0010, leaves one whose new id the source has already.
MASTODON_FEDERATED_KINDS = Migration("0021_mastodon_federated_kinds", "", federated_kind_ids)

# The links written in a post's text are stored without a credential (miner/text_links.py): the texts stored before
# kept a poster's ?token=, password-reset link or user:password@ as written, in the store and in every alert, board
# and query that shows a sample post. Rewritten with the very function the collectors use (store/link_scrub.py).
TEXT_LINKS = Migration("0022_text_links", "", link_scrub.scrub_text_links)
# The threshold and early-exit setting each verdict was decided at (records.Decision): a change of either was applied
# to new posts only, and `miner reclassify` could not tell the verdicts decided before it. NULL: stored before, or a
# user report's (no model's).
VERDICT_DECISIONS = Migration("0023_verdict_decisions", "ALTER TABLE classifications ADD COLUMN threshold REAL;\n"
                              "ALTER TABLE classifications ADD COLUMN early_exit INTEGER;")
# Since when a source's failed polls need someone to act (SourceError.calls_for_action: a 401, 404 or 410, a TLS
# certificate not trusted, a setting missing): only the error's text was kept, and `miner status` and /metrics could
# not tell it from a 503 that passes by itself. A source failing before has its last error read by the first words
# miner wrote for those statuses and TLS failures, since its last failure (when the run began is not kept); any other
# is told at its next poll.
SOURCES_NEEDS_ACTION = Migration(
    "0024_sources_needs_action",
    """
        ALTER TABLE sources ADD COLUMN needs_action_since TEXT;
        UPDATE sources SET needs_action_since = last_error_at WHERE consecutive_failures > 0 AND (
            last_error GLOB 'HTTP 40[01345] from *' OR last_error GLOB 'HTTP 410 from *'
            OR last_error GLOB 'HTTP 451 from *' OR last_error GLOB 'TLS certificate of *'
            OR last_error GLOB 'TLS handshake with *');
    """,
)
# Links pasted into a post's text without a scheme ("app.example.com/reset?token=...", "docs.google.com/document/d/
# <id>/edit") are stored without a credential too, and so are links percent-encoded in a path segment: the texts
# stored before kept them, 0022 having read only links with a scheme or "www." (store/link_scrub.py).
BARE_TEXT_LINKS = Migration("0025_bare_text_links", "", link_scrub.scrub_bare_text_links)
# And the login written before a host without a scheme, a path after it or not ("admin:hunter2@192.168.1.1/setup",
# "psql postgres:s3cret@localhost"): the host was read alone, after its "@", or not at all, and a password the
# contact rule took no e-mail address in ("pa$$w0rd!@", one before "localhost") was stored as written
# (store/link_scrub.py).
BARE_TEXT_LOGINS = Migration("0026_bare_text_logins", "", link_scrub.scrub_bare_text_logins)
# And the user name of a login whose password and host the contact rule took for an e-mail address ("admin:hunter2@
# nas.lan", before 0026 "admin:hunter2@192.168.1.1/setup" too, before 0022 "ftp://root:toor@host/"): it stayed
# before the address's placeholder ("admin:[email]"), which holds no login for 0026 to read (store/link_scrub.py).
EMAIL_LOGINS = Migration("0027_email_logins", "", link_scrub.scrub_email_logins)
# And an IPv6 host in brackets, without a scheme: the login before one ("admin:pw@[2001:db8::1]:8080/setup", "psql
# postgres:s3cret@[::1]") and the key in a link to one ("[::1]:3000/reset?token=...") were stored as written, no rule
# reading such a host (store/link_scrub.py).
IPV6_TEXT_LINKS = Migration("0028_ipv6_text_links", "", link_scrub.scrub_ipv6_text_links)
# A message waits for an older alert of its incident, route and channel (store/outbox_order.py, waiting_sql): looked
# up by incident for each due row and claim, a read of every item the outbox keeps without this index.
OUTBOX_ITEMS_BY_INCIDENT = Migration(
    "0029_outbox_items_by_incident", "CREATE INDEX outbox_items_incident ON outbox_items (incident_id, outbox_id);")
# And a key as a label of the host of a source's url from the environment ("https://<token>.feeds.example/rss"): the
# links and ids of its items kept it, secret_parts having read the path and query only (store/link_scrub.py).
TOKEN_HOSTS = Migration("0030_token_hosts", "", link_scrub.scrub_token_hosts)
# And an e-mail address with an address literal in brackets ("bob@[192.0.2.1]", "bob@[IPv6:2001:db8::1]"): kept as
# written, or as "bob@[[number]]" where its digits made a long number, until the contact rule read one
# (store/email_scrub.py).
EMAIL_LITERALS = Migration("0031_email_literals", "", email_scrub.scrub_email_literals)
# The read API's incidents, latest opened first, a page at a time after the (opened_at, id) the last ended at: without
# it each page was a scan and sort of every incident (0.05-0.27 s of 100,000; read_paging.py, bench/paging_bench.py).
INCIDENTS_BY_OPENING = Migration("0032_incidents_by_opening", "CREATE INDEX incidents_opened ON incidents (opened_at);")
# An rss source's posts kept their site's boilerplate (Lemmy's and hnrss's naming the author) and a link naming them.
FEED_BOILERPLATE = Migration("0033_feed_boilerplate", "", feed_boilerplate_scrub.scrub_feed_boilerplate)
# The count from which the detector takes a bucket for anomalous (upper, min_count, min_ratio): the alert chart's band
# went to upper, under which a quiet service's buckets passed min_count. NULL in the buckets scored before.
BUCKET_THRESHOLDS = Migration("0034_bucket_thresholds", "ALTER TABLE buckets ADD COLUMN threshold REAL;")
# And those of one service, of one status or any, in the same order (store/incidents.py, BY_SERVICE_SQL).
INCIDENTS_BY_SERVICE = Migration("0035_incidents_by_service", BY_SERVICE_SQL)
# Links and ids kept a poster's e-mail address (a mailing list's ?from=, a Message-ID guid): "[email]" (link_scrub.py).
LINK_EMAILS = Migration("0036_link_emails", "", link_scrub.scrub_link_emails)
OPEN_INCIDENTS = Migration("0037_open_incidents", OPEN_SQL)  # the open incidents by opening time (incidents.py)
# When the provider first said so, apart from the impact's start it may backdate: our lead is measured to it.
OFFICIAL_POSTED = Migration("0038_official_posted", POSTED_SQL)  # rows stored before take their start (official.py)
POLL_FAILURES = Migration("0039_poll_failures", poll_failures.POLL_FAILURES_SQL)  # each failed poll, each recovery
CROSSPOSTS = Migration("0040_crossposts", shares.SHARES_SQL)  # a feed's crosspost stored first goes with its post's

MIGRATIONS: list[Migration] = [CORE, ALERTS, BUCKETS_BY_TIME, STORE_STATE, UNDATED_POSTS, PRUNED_BEFORE_BACKFILL,
                               PROVIDER_SILENCES, WARNING_TIMES, ALERT_GROUPS, REDDIT_FEED_FULLNAMES,
                               OUTBOX_GROUPS_INDEX, SOURCE_DATED_INDEX, LATE_OPENINGS, SOURCES_BEHIND, POSTS_BY_LINK,
                               BUCKETS_WITH_POSTS, STORED_LINKS, PRUNED_BEFORE_NO_POSTS, PRUNED_POST_IDS,
                               INCIDENT_BUCKET_MINUTES, MASTODON_FEDERATED_KINDS, TEXT_LINKS, VERDICT_DECISIONS,
                               SOURCES_NEEDS_ACTION, BARE_TEXT_LINKS, BARE_TEXT_LOGINS, EMAIL_LOGINS, IPV6_TEXT_LINKS,
                               OUTBOX_ITEMS_BY_INCIDENT, TOKEN_HOSTS, EMAIL_LITERALS, INCIDENTS_BY_OPENING,
                               FEED_BOILERPLATE, BUCKET_THRESHOLDS, INCIDENTS_BY_SERVICE, LINK_EMAILS, OPEN_INCIDENTS,
                               OFFICIAL_POSTED, POLL_FAILURES, CROSSPOSTS]


def _applied(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT id FROM schema_migrations")}


def _refuse_newer(applied: set[str]) -> None:
    if newer := sorted(applied - {m.id for m in MIGRATIONS}):
        raise StoreError(f"was written by a newer version of miner (migration {', '.join(newer)}); "
                         "upgrade miner to use it")


def pending_migrations(conn: sqlite3.Connection) -> list[str]:
    """The ids of this miner's migrations the store lacks, changing nothing (for read-only opens). A store from a
    newer miner, or a database that is not a miner store, is refused as by :func:`apply_migrations`."""
    refuse_foreign(conn)
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'")
    applied = _applied(conn) if exists.fetchone() else set()
    _refuse_newer(applied)
    return [m.id for m in MIGRATIONS if m.id not in applied]


def apply_migrations(conn: sqlite3.Connection, migrations: list[Migration] | None = None,
                     progress: Callable[[str, float | None], None] | None = None,
                     begin: Callable[[], object] | None = None) -> list[str]:
    """Apply pending migrations, each in its own transaction. Returns the ids applied. ``progress`` is called with
    a migration's id and None as it starts, and with the seconds it took once committed; ``begin`` starts each
    transaction (BEGIN IMMEDIATE by default).

    A store that records a migration this code does not know was written by a newer miner: refused, since
    writing to a schema we do not know could corrupt it. ``conn`` must be in autocommit mode
    (isolation_level None).
    """
    todo = MIGRATIONS if migrations is None else migrations
    refuse_foreign(conn)
    conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (id TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    if migrations is None:
        _refuse_newer(_applied(conn))
    applied = []
    for migration in todo:
        if migration.id in _applied(conn):
            continue
        if progress is not None:
            progress(migration.id, None)
        started = time.monotonic()
        if begin is None:
            conn.execute("BEGIN IMMEDIATE")
        else:
            begin()
        try:
            # Asked again under the write lock: another process opening the store at the same moment may have
            # applied it since (each then failed with "table ... already exists").
            if migration.id not in _applied(conn):
                for statement in statements(migration.sql):
                    conn.execute(statement)
                if migration.python is not None:
                    migration.python(conn)
                conn.execute("INSERT INTO schema_migrations (id, applied_at) VALUES (?, ?)",
                             (migration.id, iso(utcnow())))
                applied.append(migration.id)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if progress is not None and applied and applied[-1] == migration.id:
            progress(migration.id, time.monotonic() - started)
    return applied

"""What every table and column of the store means: the source of docs/schema.md and of the Datasette
metadata, so the two cannot drift apart (tests/test_docs.py checks both against a fresh store)."""

from __future__ import annotations

TABLES: dict[str, tuple[str, dict[str, str]]] = {
    "schema_migrations": ("Migrations applied to this file, in order. A store that names a migration this miner "
                          "does not know was written by a newer miner: it is refused, not written to. Pending "
                          "migrations are applied when a command that writes opens the store; commands that only "
                          "read it (`status`, `outbox`, `silence list`, `digest --dry-run`) refuse a store that "
                          "lacks some. A SQLite database with tables but no record here was written by another "
                          "program: it is refused and left as it is.", {
        "id": "Migration name, e.g. 0001_core.",
        "applied_at": "When it was applied (UTC, ISO 8601).",
    }),
    "store_state": ("Small named facts about the store itself.", {
        "key": "Name: pruned_before, how far the prunes got: the second after the newest post one deleted (for "
               "a store an older miner pruned without recording it, the earliest post left at the upgrade, or "
               "where it left none, the end of the last bucket that counted posts). It "
               "never moves back, except from ahead of the clock (recorded by a clock that was ahead), where "
               "collect takes it back to the start of the bucket in progress. Posts created before it were "
               "deleted, so the buckets that start before it are final (never recounted) and a source's post dated "
               "before the first bucket after it is not stored again. bucket_minutes, the width of the buckets "
               "and of the detector states (detector.bucket_minutes when the detector last ran): when the config "
               "says another, the detector counts the buckets and learns the baselines again. prune_held, the last "
               "retention prune held back (its cutoff after the newest post a source dated: a clock ahead?), as "
               "JSON of its times; gone once a prune goes on. last_pruned_post_id, the highest posts.id a prune "
               "deleted (for a store an older miner pruned without recording it, the highest id the samples of "
               "incidents cite, where no post left has a higher one): new posts are numbered past it, so no post "
               "id an incident or a verdict cited is given to another post. serving_model, serving_model_at and "
               "serving_model_by, the version of the model `miner run` loaded last and when (at each start and "
               "reload), or a replay (`miner demo`) gave its verdicts with since, and which of them did, which "
               "`miner status` shows; serving_decision, the threshold and early-exit setting it decides at "
               "(`0.37 1`: early exits on), which `miner status` compares with the config's and the stored "
               "verdicts'. reclassified_since and reclassified_by, the earliest time a `miner reclassify` "
               "gave new verdicts from and its model, until the detector has learned its baselines again from the "
               "buckets recounted; reclassified_runs, how many runs recorded one (a run that ends while the detector "
               "learns from the one before is learned from again).",
        "value": "Value as text.",
    }),
    "sources": ("Each configured source and its poll state. The row of a source no longer configured stays; a "
                "source renamed in feeds.toml (same type and url, no query) takes its old name's poll state and "
                "counters at the next collect round, which leaves the old name's row bare (its posts keep the "
                "name).", {
        "name": "Source name from feeds.toml (`[[sources]].name`, or `status:<service>` for a service's status page).",
        "type": "Source type: rss, reddit, hackernews, discourse, lemmy, mastodon, bluesky, statuspage, status_feed.",
        "url": "Feed URL or API base URL, without its user:password@ and with the values of query parameters named "
               "like keys (the name's last word: api_key, apiKey, token, passkey, apitoken, X-Amz-Signature...; not "
               "sortkey or monkey) as [redacted]: a credential is never stored.",
        "etag": "ETag of the last 200 response (none after a feed cut short), sent as If-None-Match.",
        "last_modified": "Last-Modified of the last 200 response (none after a feed cut short), sent as "
                         "If-Modified-Since.",
        "cursor": "API cursor (status id, timestamp...) of the newest item stored; while a burst is only partly read, "
                  "a JSON object with that cursor and the stretches left to read (backlog). For an AWS status feed, "
                  "the events of its last poll (aws_events: service-region, guid, start, last update, resolution).",
        "last_poll_at": "When the source was last polled.",
        "last_ok_at": "When a poll last succeeded (NULL again when the source's type or url changes).",
        "last_error": "The last poll's error, one line (a link in it without a credential, an e-mail address in it as "
                      "`[email]`, as poll_failures.error); NULL after a success.",
        "last_error_at": "When the last error happened; kept after a later success, which empties last_error (each "
                         "failure stays in poll_failures).",
        "consecutive_failures": "Failed polls since the last success (drives the backoff).",
        "next_poll_at": "Earliest time of the next poll (interval, backoff, Retry-After).",
        "polls": "Number of polls (under its earlier names too: see above).",
        "posts_stored": "New posts stored from this source, all time (under its earlier names too).",
        "incidents_stored": "Official incidents stored from this source, all time (under its earlier names too).",
        "last_warning": "The last poll's survivable problems, joined by `; ` (a feed's wrong declared encoding, a "
                        "URL moved for good, posts missed, paging cut short by a rate limit). Kept after a poll "
                        "without one clears it (see warning_cleared_at); NULL again when the source's type or url "
                        "changes.",
        "last_warning_at": "When the last poll that warned was made; NULL for a warning stored by a miner before "
                           "0008_warning_times.",
        "warning_cleared_at": "When a poll first read the source without a warning after last_warning; NULL while "
                              "the warning stands (`miner status` shows it). A poll answered 304 (nothing read) or "
                              "one that failed clears none.",
        "behind": "1 when the last successful poll stopped before it had read everything new since the one before "
                  "(collect.max_pages, a rate limit, a failed later page) and the next polls read the rest: the "
                  "detector waits for them (detector.settle_minutes at most). 0 when it read it all, or what it "
                  "left is missed for good (a warning says so).",
        "needs_action_since": "While the last poll's failure needs someone to act (a 400, 401, 403, 404, 405, 410 or "
                              "451, a TLS failure, a setting missing, an answer that is not the source's content at "
                              "the sixth failed poll in a row or later), when the run of such failures began; NULL "
                              "after a success or a failure that passes by itself (a 429, a 5xx, a timeout, a "
                              "refused connection, DNS). Set from the last error by 0024_sources_needs_action for "
                              "a store upgraded while a source failed so.",
    }),
    "poll_failures": ("Each failed poll of each source, and the successful poll that ended a run of them (its "
                      "recovery): the spans of a source's outages, and why each poll failed, after a success has "
                      "emptied sources.last_error. Written with the source's row. Rows of polls made more than "
                      "`store.bucket_retention_days` ago are pruned (the retention job, `miner prune`), and each "
                      "source keeps its latest 1,000 (every hundredth poll of it cuts the older ones: 1,099 at "
                      "most). Holds no post and no person's data. A source renamed in feeds.toml (same type and "
                      "url, no query) takes its old name's rows at the next collect round (holding up to twice as "
                      "many until its next cut); a searched one (with a query) cannot be told from a new source, and "
                      "its rows keep the old name.", {
        "id": "Row id, in the order the rows were written.",
        "source": "Source name (sources.name): the current one of a renamed source (see above).",
        "polled_at": "When the poll was made (the start of its collect round, as sources.last_poll_at).",
        "outcome": "failed; recovered: the first successful poll after failed ones; or reset: the source's type or "
                   "url changed in feeds.toml while it failed, its next polls another endpoint's.",
        "failures": "failed: the failed polls in a row, this one included (sources.consecutive_failures after it); "
                    "recovered (reset): how many failed polls in a row this success (change) ended.",
        "error": "The failure's error, one line as sources.last_error keeps it (a host and what failed: `HTTP 503 "
                 "from feeds.example (retry after 120 s)`), a link in it without a credential and an e-mail address "
                 "in it (a redirect's target named by one) as `[email]`; NULL for recovered and reset.",
        "http_status": "The status of the server's answer the poll failed on (a 4xx or 5xx, a redirect not followed, "
                       "a 2xx without a body); NULL where none came (a refused connection, a timeout, DNS, TLS) or "
                       "the answer was read and found wrong.",
        "retry_after": "Seconds the server asked to wait (a 429's or 503's Retry-After, or a rate limit's reset); "
                       "NULL where it asked for none.",
        "next_poll_at": "When the source was to be polled next: its backoff (or Retry-After) after a failure, its "
                        "interval after a recovery; NULL for reset.",
    }),
    "posts": ("Normalised posts, one per (source, external_id). Author handles are stored only as keyed hashes.", {
        "id": "Row id; never given again once pruned (see store_state's last_pruned_post_id).",
        "source": "Source name (`reports` for user reports).",
        "external_id": "The item's id at the source; unique per source, so re-polls store nothing twice. A Reddit "
                       "post's fullname (t3_...), whether read by the API or the anonymous feed. One made of a link "
                       "(a feed item without a guid) is the link as url keeps it. Where that left a credential out, "
                       "or an e-mail address in any id was written [email] (a Message-ID or mailto: guid), followed "
                       "by # and the first 16 hex digits of the whole id's SHA-256, so that ids differing only there "
                       "are two posts.",
        "text": "Plain text: HTML stripped, entities decoded, whitespace folded, e-mail addresses and long "
                "numbers (phones, accounts) as [email] / [number], people's @handles and Reddit u/names as "
                "@[user] / u/[user] and the name in a link to a person's page (bsky.app/profile/NAME, HOST/u/NAME) "
                "as [user] (a configured service's handle, such as @WhatsAppSupport, is kept), links "
                "written in it without credentials (user:password@ left out, key-named parameters' values and "
                "token-like path segments as [redacted]). Untrusted.",
        "url": "Public link to the post, so that an operator can check what was counted. On Mastodon it names the "
               "author's account (https://host/@name/id) and on Bluesky their DID (as the at:// external_id does): "
               "author_hash is the only identity kept otherwise. Without a user name before @ and with the values "
               "of query parameters named like keys as [redacted], as sources.url (a private feed's items link with "
               "its key again), and with an e-mail address in it (a mailing-list archive's ?from=) as [email].",
        "created_at": "When the post was published (UTC).",
        "fetched_at": "When miner fetched it (UTC): the start of the collect round whose poll read it, a poll held in "
                      "memory and stored later too; a user report's when it came, a replayed post's the replay's "
                      "clock when it arrived: the end of its bucket (or the current time, if sooner). The retention "
                      "guard leaves out a post dated at or after it: such a time may be our clock's.",
        "author_hash": "HMAC-SHA256 of the author handle (key from the env var in `store.hash_key_env`), truncated. "
                       "The handle is read without case or a leading @, and per site: one handle on two sites "
                       "(Reddit and Hacker News, two forums) is two authors, while Mastodon, Lemmy and Bluesky name "
                       "accounts the same from every server, and an author named by URL or DID is one from "
                       "every source; NULL when the source gives no author, unless another source stored the post "
                       "(one external_id, one created_at) with one, whose author it then is. A user "
                       "report's: of its client's address, under a random key of that UTC day kept in memory "
                       "only: one client's reports of a day share it, unlinkable to its address or to other days; "
                       "null for reports stored by 0.1.0, each of which counts once.",
        "lang": "Language code when the source gives one.",
        "symptom_hint": "Symptom chosen by the user of a report, if any.",
        "undated": "NULL when the source gave the post's time. Else the source gave none and created_at is when it "
                   "was fetched: `new` when that poll came soon after the source's last successful one (within 3 "
                   "intervals or one bucket), so it was posted in between, and it is counted; `backlog` when it "
                   "came in the source's first poll (or the first since its type or url changed) or after a longer "
                   "gap: it may be from any time before, so it is counted in no bucket (nor shown as a sample).",
        "shares": "The id of the post this one shares, as its site names it: a Reddit crosspost's (or link post's "
                  "to a Reddit thread) read from Reddit's feed, which does not mark it. Stored before that post, "
                  "it is deleted when that post is stored under its title (a copy of it); null for others.",
    }),
    "post_services": ("Which services each post mentions (name, alias, #hashtag or @handle).", {
        "post_id": "posts.id.",
        "service": "Service name from feeds.toml.",
    }),
    "classifications": ("The classifier's verdict per post and model version. A post classified again (`miner "
                        "reclassify` after a model update, or back to an earlier model) has a row per model, and "
                        "the one counted (buckets, incidents, `miner status`) is its latest: the highest "
                        "classified_at, then the last written. A join on post_id alone counts such a post once per "
                        "model; join the counted verdict as `JOIN classifications c ON c.post_id = p.id AND c.rowid "
                        "= (SELECT c2.rowid FROM classifications c2 WHERE c2.post_id = p.id ORDER BY "
                        "c2.classified_at DESC, c2.rowid DESC LIMIT 1)`. A post not classified yet has no row. A "
                        "reclassify after a change of `classifier.threshold` or `early_exit` replaces the model's "
                        "row with one decided at the new setting.", {
        "post_id": "posts.id.",
        "model_version": "Version of the model that classified it (`reports` for user reports).",
        "outage": "1 when the score is at least the threshold, else 0.",
        "score": "Outage probability, 0..1, as the model gave it (miner 0.1.0 stored it rounded to 6 decimals).",
        "symptom": "connectivity, login, messaging, calls, media, app, website, payments, power or general; "
                   "NULL when outage = 0.",
        "classified_at": "When it was classified (UTC); a replayed post's the replay's clock when it arrived (its "
                         "fetched_at).",
        "threshold": "The threshold the score was compared to (`classifier.threshold`, else the model's); NULL for "
                     "user reports and verdicts stored before miner recorded it.",
        "early_exit": "1 when early exits were on (`classifier.early_exit`, and a threshold not below the model's), "
                      "so a clear non-report's score may be an exit probe's estimate; 0 when every score came from "
                      "the whole network; NULL as for threshold.",
    }),
    "buckets": ("Per-service volume per time bucket, with the detector's verdict. Rows older than "
                "store.bucket_retention_days (400 days by default) are deleted by the retention prune.", {
        "service": "Service name.",
        "bucket_start": "Start of the bucket (UTC; width = detector.bucket_minutes).",
        "posts": "Posts mentioning the service created in the bucket (counted as their verdicts are stored), "
                 "but not those undated as backlog (posts.undated); the rows several sources stored one post "
                 "with (one external_id, one created_at, not undated) count once.",
        "complaints": "Authors of those posts classified as outage reports (latest verdict): one account posting "
                      "many times counts once; posts without a known author count one each, but the rows several "
                      "sources stored one post with (one external_id, one created_at, not undated) count once. "
                      "Once per bucket: a "
                      "sum over several buckets (an hour of 5-minute ones) counts an author once in each bucket "
                      "they posted in, as the detector does.",
        "score": "Detector z-score of the complaint count; NULL until the detector has processed the bucket.",
        "baseline": "Expected complaint count for this bucket.",
        "upper": "Complaint count at which the bucket's z reaches z_open (before the floors of threshold).",
        "threshold": "Complaint count from which the bucket is anomalous: upper, detector.min_count and "
                     "detector.min_ratio times the baseline, whichever is highest (an incident opens when "
                     "persist_k of the last persist_n buckets are). NULL during the warm-up, where no count is, "
                     "and in buckets scored before miner stored it. The alert chart's band ends here.",
    }),
    "detector_state": ("The detector's memory per service, so a restart resumes where it stopped.", {
        "service": "Service name.",
        "last_bucket": "Start of the last processed bucket.",
        "state": "Detector state as JSON (baseline level, scale, hour-of-day and day-of-week offsets, persistence, "
        "open flag).",
        "draft": "The incident being tracked (open, or resolved and cooling down) as JSON; NULL when none.",
        "incident_id": "incidents.id of that draft.",
        "updated_at": "When it was written.",
    }),
    "official_incidents": ("Incidents published by providers' status pages.", {
        "id": "Row id.",
        "source": "Source name of the status page (of the one that stored it first, when two sources of a service "
                  "read the same page: its JSON and its feed share one row per incident, by url).",
        "external_id": "The incident's id on the status page, as that source gives it.",
        "service": "Service the status page belongs to.",
        "title": "Incident title, cut at 500 characters (\"…\" at the end of one cut).",
        "status": "investigating, identified, monitoring, resolved, postmortem or unknown; planned maintenance is "
                  "scheduled (announced or under way) or completed.",
        "impact": "none, minor, major or critical, when given.",
        "components": "JSON list of affected components (each name cut at 500 characters).",
        "started_at": "When the impact began, as the provider dates it (it may date it hours before it posted the "
                      "incident); the earliest a source of the page gave, where two describe it. When the provider "
                      "gave no time for that, when miner first saw it (first_seen_at, the same value), which later "
                      "polls do not move.",
        "updated_at": ("The provider's last update; when the provider gave no time for it either, the poll that "
                       "first read the incident as it says now (its title, status, impact, components, link or "
                       "resolve), which polls that read nothing new do not move."),
        "resolved_at": "When the provider resolved it (from a list of open incidents only: the poll that no longer "
                       "listed it).",
        "url": "Link to the incident page, without a credential it held (as posts.url).",
        "first_seen_at": "When miner first stored it.",
        "posted_at": "When the provider first said so publicly (Statuspage's created_at, a status feed's first dated "
                     "update; the earliest where two sources describe it): what lead times are measured to. As "
                     "started_at when the provider gave no time, and for incidents stored before migration 0038.",
    }),
    "incidents": ("Incidents opened by the detector, one per service outage.", {
        "id": "Row id.",
        "service": "Service name.",
        "group_id": "incident_groups.id when it opened together with related services.",
        "status": "open or resolved.",
        "opened_at": "End of the bucket in which the detector opened it (when we knew).",
        "updated_at": "Last change.",
        "resolved_at": "When it resolved: the end of the bucket that made detector.quiet_minutes of quiet ones "
                       "(see incident_events for an end not seen), so the outage's last busy bucket ended about "
                       "that long before; resolved_at minus opened_at, the duration alerts show, includes it.",
        "peak_complaints": "Largest complaint count in one bucket.",
        "peak_score": "Largest z-score.",
        "baseline": "Expected complaints per bucket when it opened (as learned again after a `miner reclassify` "
                    "that changed its complaints while it was open).",
        "total_complaints": "Complaints in its buckets, from the one where it opened to the one that resolved it.",
        "symptoms": "JSON object: symptom -> complaints, each complaint under one symptom (its author's most reported "
                    "in the bucket, the latest of two as frequent), so they add up to total_complaints.",
        "sample_post_ids": "JSON list of posts.id of the most confident complaints, one per text.",
        "official_incident_id": "official_incidents.id of the provider's matching incident.",
        "lead_time_minutes": "When the provider posted its incident (official_incidents.posted_at) minus our "
                             "opened_at, in minutes (positive: we were first).",
        "bucket_minutes": "Width of the bucket it opened in (detector.bucket_minutes then): its sample posts start "
                          "with that bucket. Incidents opened before miner recorded it have the width the store "
                          "had at the upgrade (migration 0020), or NULL when it had recorded none (read as the "
                          "store's) until detector.bucket_minutes next changes, when they are given the one before.",
    }),
    "incident_events": ("Every transition of every incident (open, update, group, resolve).", {
        "id": "Row id; increasing, so alerts can read transitions in order.",
        "incident_id": "incidents.id.",
        "kind": "open, update (details.reason: peak, official, symptom or reopened; comma-separated when several; "
                "or reclassified: a `miner reclassify` changed the complaints of the open incident, details.model "
                "the model that gave the new verdicts and details.was the figures it had before), "
                "group or resolve (details.reason unwatched: the service was removed from feeds.toml; reclassified: "
                "a `miner reclassify` left it no outage open, details.model and details.was as for an update; "
                "details.unscored_from and unscored_to: the detector resolved it after skipping those buckets, miner "
                "down longer than detector.max_fill_hours, so its end came unseen, at some time from "
                "details.ended_from, the first quiet bucket scored before them that counted towards the resolve, or "
                "their start, to unscored_to; a resolve stored without ended_from: from unscored_from).",
        "at": "When it happened (UTC; simulated time in replay).",
        "details": "JSON with the figures behind the transition (z, count, baseline...).",
    }),
    "incident_groups": ("Incidents of related services that opened together (one likely common cause).", {
        "id": "Row id.",
        "name": "Group or provider name from feeds.toml.",
        "cause": "The likely common cause to show.",
        "services": "JSON list of the services involved.",
        "opened_at": "When the group was formed.",
    }),
    "alert_state": ("Small named values of the alerts (the planner's cursor over incident_events, digest anchors, "
                    "who has a partly refused email, which PagerDuty events of a message were accepted).", {
        "key": "Name: planner_event_cursor, digest_anchor:<route>, delivered:<outbox id> (a JSON list of the "
               "recipients that accepted an email others refused, or of the dedup_keys of the PagerDuty events "
               "accepted, so a retry skips them; pruned with its row), or pagerduty_store_key (random, made at the "
               "store's first PagerDuty event: part of every dedup_key, so that a new store's incidents, numbered "
               "from 1 again, are not taken for the old one's), or unreachable:<channel> (the error with which the "
               "channel's server was last found unreachable, empty once it answered again: its messages go after "
               "the other channels' at each run meanwhile), or throttled:<channel> (the outbox id of the message "
               "the channel's webhook last answered 429 or Retry-After: its other messages wait for that one's "
               "retry), or replay_outbox_after (while a replay runs, and after "
               "one killed until a notification is planned outside a replay: the last outbox id before it, up to "
               "which the rows are not the replay's to send; the rows after it are never the service's, and are "
               "recorded as suppressed when it goes).",
        "value": "Value as text.",
    }),
    "outbox": ("Every notification, written before it is sent, then claimed with a conditional UPDATE. Finished rows "
               "(sent, failed, suppressed) last touched more than store.bucket_retention_days ago are deleted by the "
               "retention prune, with their items and deliveries, except those about an incident still open and "
               "the newest row.", {
        "id": "Row id.",
        "dedupe_key": "Unique key of what it announces, so planning twice never queues it twice.",
        "route": "[[alerts.routes]] name.",
        "channel": "email or webhook:<name>.",
        "kind": "alert, resolved or digest.",
        "status": "pending, sending (claimed), sent, failed (permanent error, see last_error) or suppressed "
                  "(silence, maintenance, inhibition, a route that no longer covers it, a digest superseded by a "
                  "later one; see reason).",
        "message_id": "Fixed when planned: a resend after a crash carries the same Message-ID / webhook id.",
        "payload": "JSON describing what to render (incidents, digest window).",
        "reason": "Why it was suppressed, or why it failed for good.",
        "created_at": "When it was planned (kept by `miner outbox retry`: its age, for give_up_after, counts "
                      "from it).",
        "next_attempt_at": "Earliest next send (group_wait, or group_interval after its group's last message, "
                           "at first; then backoff after failures); of a suppressed row, when it was suppressed.",
        "attempts": "Send attempts so far (not counting sends cut by the service's stop).",
        "claimed_by": "Worker that holds the claim while sending (as in `deliveries.worker`).",
        "claimed_at": "When it was claimed (stale claims are returned to pending after the lease).",
        "sent_at": "When the server accepted it.",
        "last_error": "The last failed attempt's error; NULL once sent (each attempt's is in deliveries).",
        "group_key": "The group of the route's alerts it belongs to, from group_by when it was planned: "
                     "group:<provider or [[groups]] name> or service:<name>, in lower case, or empty for the whole "
                     "route (group_by = \"route\", digests, and rows planned before 0009_alert_groups). group_wait "
                     "and group_interval batch per route, channel and group.",
    }),
    "outbox_items": ("Which incident transitions each notification announces (grouping puts several in one).", {
        "item_key": "Unique key: route, channel, incident and transition.",
        "outbox_id": "outbox.id.",
        "incident_id": "incidents.id.",
        "kind": "open, repeat or resolve.",
        "seen_late_at": "An opening first planned more than stale_after after it happened (miner was down or caught "
                        "up a backlog): when it was planned, which its alert and the digests show. NULL otherwise.",
        "late_seconds": "Of such an opening: how long after it happened it was planned.",
    }),
    "alert_incidents": ("Per route and incident: what was done about its opening, for repeats and inhibition.", {
        "route": "Route name.",
        "incident_id": "incidents.id.",
        "open_outcome": "queued or suppressed: a resolve notice is not sent when the opening was suppressed.",
        "message_id": "Message-ID of the opening alert (resolve notices reply to it).",
        "last_notified_at": "When its last alert on the route was planned (a reminder a silence muted not "
                            "counted), or later sent (repeat_interval counts from here).",
        "repeats": "Repeat alerts sent.",
    }),
    "deliveries": ("Every send attempt of every notification.", {
        "id": "Row id.",
        "outbox_id": "outbox.id.",
        "attempt": "Attempt number, from 1 (a send cut by the service's stop does not count: its row has the "
                   "number of the attempt after it).",
        "worker": "Worker that made it: `HOST:PID` from the service, a replay or the demo; `cli-HOST-PID` from "
                  "`miner outbox send`.",
        "at": "When.",
        "outcome": "sent, retry or failed (an attempt that failed after its worker's claim lapsed is retry: the "
                   "worker that took the row over decides it).",
        "detail": "Server reply or error.",
    }),
    "silences": ("Silences added with `miner silence add`: the notifications of the service, or of every service "
                 "of the provider, are suppressed, not lost. "
                 "Those that ended more than store.bucket_retention_days ago (but the newest) are deleted by the "
                 "retention prune.", {
        "id": "Row id.",
        "service": "Silenced service; NULL when the silence is of a provider.",
        "provider": "Silenced provider (`miner silence add --provider NAME`): every service feeds.toml gives it, also "
                    "those given it after the silence was added; NULL when the silence is of one service.",
        "starts_at": "Start.",
        "ends_at": "End; `miner silence remove` sets it to the time of removal (the row is kept, for the "
                   "notifications that cite it).",
        "comment": "Why.",
        "created_at": "When it was added.",
    }),
}

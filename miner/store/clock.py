"""State stamped by a system clock that was ahead, and has been set back since (an NTP step, a corrected VM clock).

Every stage passes ``now`` in, so whatever ran while the clock was ahead stamped its state with that clock: a
watermark or a due time hours (or, after a boot with a bad clock, a year) in the future. Compared with the right
time again, each would hold its stage back until real time caught up. A stored time more than CLOCK_SLACK after
``now`` can only have come from such a clock, or from a right one when this clock is behind (clock_behind): the
rules for what is taken back to ``now``, and when nothing is, live here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from miner.records import FUTURE_SLACK
from miner.store.maintenance import PRUNED_BEFORE
from miner.store.signals import SavedDetector
from miner.timeutil import counted, floor_time, iso, parse_iso

if TYPE_CHECKING:
    from miner.store.db import Database

# A time further ahead of the clock than this was written by a clock since set back (NTP steps smaller than this
# only delay what waits on it as much).
CLOCK_SLACK = timedelta(seconds=60)


def past_slack(newest: datetime | None, now: datetime) -> datetime | None:
    """``newest``, the newest post a source dated, where it is more than FUTURE_SLACK after ``now``: the clock is
    behind the store (Store.clock_behind). None otherwise."""
    return newest if newest is not None and newest > now + FUTURE_SLACK else None


class ClockMixin:
    database: Database

    if TYPE_CHECKING:
        def refresh_buckets(self, start: datetime, end: datetime, bucket: timedelta) -> int: ...  # SignalsMixin's
        def newest_source_dated(self) -> datetime | None: ...  # MaintenanceMixin's

    def clock_behind(self, now: datetime) -> datetime | None:
        """The newest post a source dated (see newest_source_dated), when it is more than FUTURE_SLACK after
        ``now``: the clock is behind the store (a board without a real-time clock started before NTP set it, a
        clock set wrong by hand), not set right after running ahead. None otherwise.

        A stored time after ``now`` looks the same either way. Posts dated by their sources tell the two apart: a
        right clock stores none more than FUTURE_SLACK after it (make_post), so one further after ``now`` was stored
        by a clock ahead of this one. Taken for a clock set right, what is stored after ``now`` is taken back to it
        for good: posts dated now, buckets deleted, incidents' times moved, a prune's cutoff moved back, silences
        moved back and alert times rewritten. Whatever takes stored times back waits, while this holds, until the
        clock is right. A store without a post its source dated (user reports and undated items only) has nothing
        to tell them apart by.
        """
        return past_slack(self.newest_source_dated(), now)

    def detectors_ahead(self, now: datetime, bucket: timedelta) -> list[tuple[str, SavedDetector]]:
        """Detectors whose last bucket ends more than FUTURE_SLACK after ``now``: stepped by a clock that was ahead.

        A bucket is stepped once it has ended, so with the right clock the last one always ended by ``now``. Left
        alone, such a detector steps nothing until real time passes its last bucket, and no incident opens. One
        ahead by less is left to wait that little: a right clock stepped back by minutes (NTP) holds posts its
        sources dated up to then, which cannot be told from a source ahead of a clock set right. Taken back from a
        minute ahead, such a step dated those posts now, piling minutes of them into the bucket in progress and
        leaving the next one empty, each scored and learned so, and said the clock had been ahead.
        """
        rows = self.database.rows(
            "SELECT service, last_bucket, state, draft, incident_id FROM detector_state WHERE last_bucket > ? "
            "ORDER BY service", (iso(now + FUTURE_SLACK - bucket),),
        )
        return [(r["service"], SavedDetector(parse_iso(r["last_bucket"]), r["state"], r["draft"], r["incident_id"]))
                for r in rows]

    def buckets_scored_after(self, service: str, after: datetime) -> int:
        """The buckets of ``service`` after ``after`` that the detector scored: a gap it skipped (longer than
        max_fill_hours) has none."""
        row = self.database.one("SELECT count(*) AS n FROM buckets WHERE service = ? AND bucket_start > ? "
                                "AND score IS NOT NULL", (service, iso(after)))
        return int(row["n"]) if row else 0

    def rewind_detectors(self, rewound: Sequence[tuple[str, SavedDetector]], now: datetime,
                         bucket: timedelta) -> int:
        """Store detectors taken back (by the detector's own rules) to an earlier last bucket, and re-date what the
        clock that was ahead dated in the future, in one transaction. Returns the posts re-dated.

        A post is dated by our clock when it comes without a time of its own (a user report, a feed item without a
        date), and so is every verdict. Posts dated more than CLOCK_SLACK after ``now`` are dated ``now``: they
        count in the bucket in progress, which the rewound detectors step next, rather than in a bucket hours (or a
        year) away that no detector reaches before real time does; posts dated from their source's own time were
        at most FUTURE_SLACK (10 minutes) ahead of the clock that stored them. Verdicts are dated ``now`` too, or
        one given after this (a reclassify) would never become the latest. The buckets left in the future hold no
        post any more; their scores were the clock that was ahead scoring them empty, and they go.

        Incidents opened, updated or resolved by the detector stepping future buckets carry those buckets' times:
        a digest leaves out an incident opened after the time it is rendered at, and shows one resolved after it
        as still open, so each would wait for real time to pass them. Their times (and their events' and groups')
        are taken back to ``now``, the latest they can really have happened.
        """
        ahead = iso(now + CLOCK_SLACK)
        with self.database.transaction() as conn:
            conn.executemany(
                "UPDATE detector_state SET last_bucket = ?, state = ?, draft = ?, incident_id = ?, updated_at = ? "
                "WHERE service = ?",
                [(iso(d.last_bucket), d.state, d.draft, d.incident_id, iso(now), service) for service, d in rewound],
            )
            conn.execute("UPDATE classifications SET classified_at = ? WHERE classified_at > ?", (iso(now), ahead))
            moved = conn.execute("UPDATE posts SET created_at = ? WHERE created_at > ?", (iso(now), ahead)).rowcount
            conn.execute("DELETE FROM buckets WHERE bucket_start > ?", (ahead,))
            conn.execute("UPDATE incidents SET opened_at = min(opened_at, :now), updated_at = min(updated_at, :now), "
                         "resolved_at = min(resolved_at, :now) WHERE opened_at > :ahead OR updated_at > :ahead "
                         "OR resolved_at > :ahead", {"now": iso(now), "ahead": ahead})
            conn.execute("UPDATE incident_events SET at = ? WHERE at > ?", (iso(now), ahead))
            conn.execute("UPDATE incident_groups SET opened_at = ? WHERE opened_at > ?", (iso(now), ahead))
            if moved:
                self.refresh_buckets(now, now, bucket)
        return moved

    def rewind_prune_cutoff(self, now: datetime, bucket: timedelta) -> datetime | None:
        """Take a prune cutoff recorded more than CLOCK_SLACK after ``now`` back to the start of the bucket holding
        ``now``; returns the cutoff it was, or None when it was not ahead.

        A prune deletes what is older than a number of days, so its cutoff is never after the time it ran: one after
        ``now`` was computed by a clock ahead by more than those days. Left alone, collect drops every post created
        before it and a recount leaves the buckets before it alone, until real time passes it: the posts of those
        days are lost. The posts that prune deleted were created by the time it ran, so before ``now``, or were
        dated in the future by that clock, and their buckets are the future ones (the detector drops them, see
        rewind_detectors). The bucket in progress stays open, as the detector resumes with it (a prune that ran in
        it, minutes before the clock was set right, may have deleted a few of its posts: they leave its count when
        it is recounted). Nothing is taken back while the clock is behind the store (see clock_behind): a right
        clock's cutoff moved back made the pruned days' buckets, kept longer than their posts, open to a recount.
        """
        ahead = iso(now + CLOCK_SLACK)
        # Read before taking the write lock: it is checked on every collect run.
        row = self.database.one("SELECT value FROM store_state WHERE key = ? AND value > ?", (PRUNED_BEFORE, ahead))
        if row is None or self.clock_behind(now) is not None:
            return None
        with self.database.transaction() as conn:
            taken = conn.execute("UPDATE store_state SET value = ? WHERE key = ? AND value > ?",
                                 (iso(floor_time(now, bucket)), PRUNED_BEFORE, ahead)).rowcount
        return parse_iso(row["value"]) if taken else None

    def retime_alerts(self, now: datetime) -> list[str]:
        """Take alert state stamped more than CLOCK_SLACK after ``now`` back to ``now``, in one transaction.

        Returns how many of each kind were taken back (only kinds with some), in words ("2 notifications due now"),
        for one log line. Each would otherwise wait for real time to pass what the clock that was ahead stamped:

        - a pending notification planned or last tried then is due now (its group wait or backoff cut short), and
          its give-up time counts from now;
        - a batch held for group_interval behind a message sent (or being sent) then is held from now, that message
          stamped now: otherwise it, and all of its group planned meanwhile, waited for real time to pass that
          message's time;
        - a claim taken then is reclaimed a lease from now (its worker may still be sending), not a lease after it;
          sending stays conditional on claiming the row, so nothing goes out twice;
        - an incident last notified then is reminded of a repeat interval from now;
        - a digest schedule anchored on a digest time then (``digest_anchor:ROUTE``) is anchored now: otherwise it
          sends nothing until real time passes that time, and the next digest covers only the time since. A digest
          time that clock queued already is not queued again (its dedupe key, see enqueue_digest);
        - a silence created then (`miner silence add`: from then, for a while) would mute nothing until real time
          reached its start: it moves back by as much as its creation time is ahead, so it mutes from now for as
          long as it was meant to.

        Nothing is taken back while the clock is behind the store (see clock_behind): a right clock's silences
        moved back were over before the clock was right again, and its alerts' times and schedules rewritten.
        """
        args = {"now": iso(now), "ahead": iso(now + CLOCK_SLACK)}
        row = self.database.one(_ALERTS_AHEAD, args)
        if not row or not row["found"] or self.clock_behind(now) is not None:
            return []
        with self.database.transaction() as conn:
            due = conn.execute(
                "UPDATE outbox SET next_attempt_at = min(next_attempt_at, :now), created_at = min(created_at, :now) "
                "WHERE status = 'pending' AND (created_at > :ahead "
                "OR id IN (SELECT outbox_id FROM deliveries WHERE at > :ahead))", args).rowcount
            conn.execute("UPDATE deliveries SET at = :now WHERE at > :ahead", args)
            # Before the messages of their groups are stamped now: they hold these again from there.
            held = conn.execute(f"UPDATE outbox SET next_attempt_at = :now WHERE {_HELD_BEHIND_AHEAD}",
                                args).rowcount
            conn.execute("UPDATE outbox SET sent_at = :now WHERE status = 'sent' AND sent_at > :ahead", args)
            claims = conn.execute(
                "UPDATE outbox SET claimed_at = :now WHERE status = 'sending' AND claimed_at > :ahead", args).rowcount
            reminders = conn.execute(
                "UPDATE alert_incidents SET last_notified_at = :now WHERE last_notified_at > :ahead", args).rowcount
            digests = conn.execute(f"UPDATE alert_state SET value = :now WHERE {_ANCHORS} AND value > :ahead",
                                   args).rowcount
            silences = conn.execute("SELECT id, starts_at, ends_at, created_at FROM silences WHERE created_at > :ahead",
                                    args).fetchall()
            for sid, starts_at, ends_at, created_at in silences:
                back = parse_iso(created_at) - now
                conn.execute("UPDATE silences SET starts_at = ?, ends_at = ?, created_at = ? WHERE id = ?",
                             (iso(parse_iso(starts_at) - back), iso(parse_iso(ends_at) - back), iso(now), sid))
        counts = [(due, "notification", "due now"), (claims, "claim", "whose lease starts now"),
                  (held, "notification", "held for group_interval from now"),
                  (reminders, "incident", "whose repeat interval starts now"),
                  (digests, "digest schedule", "anchored now"), (len(silences), "silence", "counted from now")]
        return [f"{counted(n, noun)} {what}" for n, noun, what in counts if n]


# The digest schedules' anchors in alert_state (the planner's digest_anchor:ROUTE keys), as a range of the key.
_ANCHORS = "key > 'digest_anchor:' AND key < 'digest_anchor;'"

# Pending batches never tried, held (store/group_interval.py) behind a message of their group stamped after :ahead.
_HELD_BEHIND_AHEAD = """
    status = 'pending' AND attempts = 0 AND next_attempt_at > :ahead AND EXISTS (
        SELECT 1 FROM outbox m WHERE m.route = outbox.route AND m.channel = outbox.channel
        AND m.group_key = outbox.group_key AND m.kind = outbox.kind AND m.status IN ('sent', 'sending')
        AND coalesce(m.sent_at, m.claimed_at) > :ahead)
"""

# Whether any alert state is stamped after :ahead. Read before taking the write lock: it is checked on every run.
_ALERTS_AHEAD = f"""
    SELECT EXISTS (SELECT 1 FROM outbox WHERE status = 'pending' AND created_at > :ahead)
        OR EXISTS (SELECT 1 FROM outbox o JOIN deliveries d ON d.outbox_id = o.id
                   WHERE o.status = 'pending' AND d.at > :ahead)
        OR EXISTS (SELECT 1 FROM outbox WHERE status = 'sending' AND claimed_at > :ahead)
        OR EXISTS (SELECT 1 FROM outbox WHERE {_HELD_BEHIND_AHEAD})
        OR EXISTS (SELECT 1 FROM alert_incidents WHERE last_notified_at > :ahead)
        OR EXISTS (SELECT 1 FROM alert_state WHERE {_ANCHORS} AND value > :ahead)
        OR EXISTS (SELECT 1 FROM silences WHERE created_at > :ahead) AS found
"""

"""Sources and their poll state: validators, cursor, last ok/error, backoff schedule; a renamed source takes over its
old name's."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from miner.records import SourceState
from miner.store.clock import CLOCK_SLACK
from miner.store.poll_failures import RESET_ROW, log_failure, stored_error
from miner.store.sql_lists import IN_LIST, json_list
from miner.timeutil import iso, parse_iso

if TYPE_CHECKING:
    from miner.config import SourceConfig
    from miner.store.db import Database


# A source's poll state (cursor, validators, backoff, last error, warning and success, behind) started afresh.
_RESET = ("UPDATE sources SET etag = NULL, last_modified = NULL, cursor = NULL, next_poll_at = NULL, "
          "consecutive_failures = 0, last_error = NULL, last_error_at = NULL, last_warning = NULL, "
          "last_warning_at = NULL, warning_cleared_at = NULL, last_ok_at = NULL, behind = 0, "
          "needs_action_since = NULL WHERE name = ?")
# The columns _RESET starts afresh: a source's poll state of its type and url, which a renamed source takes over.
_POLL_STATE = ("etag", "last_modified", "cursor", "next_poll_at", "consecutive_failures", "last_error",
               "last_error_at", "last_warning", "last_warning_at", "warning_cleared_at", "last_ok_at", "behind",
               "needs_action_since")
# No poll of the source's type and url recorded yet: none succeeded (last_ok_at) and none failed since.
_FRESH = "last_ok_at IS NULL AND consecutive_failures = 0"
_TAKE_STATE = (f"UPDATE sources SET ({', '.join(_POLL_STATE)}) = (SELECT {', '.join(_POLL_STATE)} FROM sources "
               f"WHERE name = :old) WHERE name = :new AND {_FRESH}")
# The old name's counters add to the new one's, its last poll being the feed's too.
_ADD_COUNTS = ("UPDATE sources SET (last_poll_at, polls, posts_stored, incidents_stored) = (SELECT "
               "max(coalesce(sources.last_poll_at, ''), o.last_poll_at), sources.polls + o.polls, "
               "sources.posts_stored + o.posts_stored, sources.incidents_stored + o.incidents_stored "
               "FROM sources o WHERE o.name = :old) WHERE name = :new")
_EMPTIED = "UPDATE sources SET last_poll_at = NULL, polls = 0, posts_stored = 0, incidents_stored = 0 WHERE name = ?"


class SourcesMixin:
    database: Database

    def sync_sources(self, sources: Iterable[SourceConfig]) -> list[str]:
        """Insert configured sources and refresh their type/url. Returns the names whose poll state was reset.

        Poll state (cursor, validators, backoff, last error, warning and success, behind) belongs to the endpoint it
        came from: a source whose type or url changed in feeds.toml starts afresh, or a hackernews cursor would make a
        re-typed discourse source skip every topic (and the new feed's undated backlog would count as new posts). Its
        posts and counters are kept.
        """
        reset: list[str] = []
        with self.database.transaction() as conn:
            for src in sources:
                url = src.stored_url  # without user:password or a key in the query: secrets stay out of the store
                changed = " AND (type IS NOT ? OR url IS NOT ?)"
                conn.execute(RESET_ROW + changed, (src.name, src.type, url))
                cur = conn.execute(_RESET + changed, (src.name, src.type, url))
                if cur.rowcount:
                    reset.append(src.name)
                conn.execute(
                    "INSERT INTO sources (name, type, url) VALUES (?, ?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET type = excluded.type, url = excluded.url",
                    (src.name, src.type, url),
                )
        return reset

    def reset_poll_state(self, name: str) -> None:
        """Start the source's poll state afresh, as sync_sources does when its type or url changed: once the polls
        of the old ones, held while the store took no writes, are stored (see HeldPolls.mark_stale)."""
        with self.database.transaction() as conn:
            conn.execute(RESET_ROW, (name,))
            conn.execute(_RESET, (name,))

    def earlier_names(self, sources: Iterable[SourceConfig]) -> dict[str, list[str]]:
        """For each of ``sources`` (every configured one, enabled or not), the stored sources of the same type and
        url that none of them is named: the same feed under a name it had before feeds.toml renamed it.

        A source with a query (a search, a tag) has none: the store keeps no query, and two searches of one API
        share its url."""
        configured = list(sources)
        names = {s.name for s in configured}
        gone: dict[tuple[str, str], list[str]] = {}
        for row in self.database.rows("SELECT name, type, url FROM sources WHERE url IS NOT NULL ORDER BY name"):
            if row["name"] not in names:
                gone.setdefault((row["type"], row["url"]), []).append(row["name"])
        return {s.name: gone[(s.type, s.stored_url)] for s in configured
                if s.stored_url is not None and not s.query and (s.type, s.stored_url) in gone}

    def follow_renames(self, sources: Iterable[SourceConfig]) -> list[tuple[str, str]]:
        """Give each enabled one of ``sources`` (every configured one) what its earlier names' rows (earlier_names)
        hold of the feed: their failed polls and recoveries (poll_failures), their counters (polls, posts_stored,
        incidents_stored, the latest last_poll_at), and, while the source has recorded no poll of its type and url
        (a new name's row, as sync_sources inserted it), the poll state of the one polled last: cursor, validators,
        schedule and backoff, last error and success, warning, behind, needs_action_since. The old rows are left
        bare (name, type and url): earlier_names still finds the posts stored under them, which keep their name.
        Returns (old name, new name) of each row emptied so; an old row polled again after that (a poll in flight
        across a reload, stored under the name it started with) is emptied into it again at the next call.

        Poll state belongs to the endpoint (sync_sources), and a rename leaves it the same: started afresh, a
        renamed source failing for good was polled at once instead of after its backoff, and `miner status`, the
        API and the metrics showed it with no failures while the old name kept them."""
        configured = list(sources)
        enabled = {s.name for s in configured if s.enabled}  # a disabled one's row, inserted once it is, takes them
        renamed = {new: olds for new, olds in self.earlier_names(configured).items() if new in enabled}
        followed: list[tuple[str, str]] = []
        if not self.database.rows(f"SELECT 1 FROM sources WHERE name {IN_LIST} AND last_poll_at IS NOT NULL LIMIT 1",
                                  (json_list(o for olds in renamed.values() for o in olds),)):
            return followed  # nothing to take: no write transaction at every collect round, old names left bare
        with self.database.transaction() as conn:
            for new, olds in renamed.items():
                if conn.execute("SELECT 1 FROM sources WHERE name = ?", (new,)).fetchone() is None:
                    continue  # not synced yet (sync_sources): its old names keep their rows till it is
                polled = conn.execute(f"SELECT name FROM sources WHERE name {IN_LIST} AND last_poll_at IS NOT NULL "
                                      "ORDER BY last_poll_at DESC, name", (json_list(olds),)).fetchall()
                for (old,) in polled:
                    names = {"old": old, "new": new}
                    conn.execute(_TAKE_STATE, names)
                    conn.execute(_ADD_COUNTS, names)
                    conn.execute("UPDATE poll_failures SET source = :new WHERE source = :old", names)
                    conn.execute(_RESET, (old,))
                    conn.execute(_EMPTIED, (old,))
                    followed.append((old, new))
        return followed

    def source_state(self, name: str) -> SourceState:
        row = self.database.one("SELECT etag, last_modified, cursor FROM sources WHERE name = ?", (name,))
        if row is None:
            return SourceState()
        return SourceState(etag=row["etag"], last_modified=row["last_modified"], cursor=row["cursor"])

    def source_row(self, name: str) -> dict[str, Any] | None:
        return self.database.one("SELECT * FROM sources WHERE name = ?", (name,))

    def source_rows(self) -> list[dict[str, Any]]:
        return self.database.rows("SELECT * FROM sources ORDER BY name")

    def due_sources(self, names: Iterable[str], now: datetime) -> list[str]:
        """Of ``names``, those never polled, whose next poll time has come, or last polled more than CLOCK_SLACK
        after ``now``: by a clock that was ahead and has been set back since.

        The next poll of the last kind was scheduled from that clock, so it is as far ahead as the clock was wrong
        (hours, or a year for a machine that booted with a bad clock), and waiting for it would stop the source
        that long. Polled now, each schedules itself from the right time again.

        Longest due first (one never polled, or polled by a clock that was ahead, first of all), in the order of
        ``names`` among equals: the collect job starts them in this order, and those its workers had no
        time for are withdrawn till the next run, where they must not queue behind sources polled since.
        """
        wanted = list(names)
        if not wanted:
            return []
        rows = self.database.rows(
            f"SELECT name, next_poll_at, last_poll_at FROM sources WHERE name {IN_LIST}", (json_list(wanted),)
        )
        known = {r["name"]: r for r in rows}
        now_s, ahead = iso(now), iso(now + CLOCK_SLACK)
        since = {n: "" if r is None or r["next_poll_at"] is None or (r["last_poll_at"] or "") > ahead
                 else r["next_poll_at"] for n in wanted for r in (known.get(n),)}
        return sorted((n for n in wanted if since[n] <= now_s), key=since.__getitem__)

    def record_poll_failure(self, name: str, error: str, now: datetime, next_poll_at: datetime, *,
                            needs_action: bool = False, http_status: int | None = None,
                            retry_after: float | None = None) -> int:
        """Keep the validators and cursor (nothing was stored), note the error, and add it to the source's
        poll_failures (with the answer's ``http_status`` and the ``retry_after`` seconds the server asked for, where
        there were). Returns consecutive failures.

        ``needs_action``: the failure lasts until someone acts (SourceError.calls_for_action); needs_action_since
        keeps when the run of such failures began, and a failure that passes by itself (a 503) ends it, as a success
        does (Store.save_fetch): the source's state is its last poll's."""
        with self.database.transaction() as conn:
            conn.execute(
                "UPDATE sources SET last_poll_at = ?, last_error = ?, last_error_at = ?, polls = polls + 1, "
                "consecutive_failures = consecutive_failures + 1, next_poll_at = ?, "
                "needs_action_since = CASE WHEN ? THEN coalesce(needs_action_since, ?) END WHERE name = ?",
                (iso(now), stored_error(error), iso(now), iso(next_poll_at), needs_action, iso(now), name),
            )
            log_failure(conn, name, error, now, next_poll_at, http_status, retry_after)
            row = conn.execute("SELECT consecutive_failures FROM sources WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def last_ok_at(self, name: str) -> datetime | None:
        """When a poll of the source (of its current type and url) last succeeded; None for never."""
        row = self.database.one("SELECT last_ok_at FROM sources WHERE name = ?", (name,))
        return parse_iso(row["last_ok_at"]) if row and row["last_ok_at"] else None

    def consecutive_failures(self, name: str) -> int:
        row = self.database.one("SELECT consecutive_failures FROM sources WHERE name = ?", (name,))
        return int(row["consecutive_failures"]) if row else 0

    def failing_sources(self, names: Iterable[str] | None) -> list[dict[str, Any]]:
        """Of ``names`` (the sources the config polls now), those whose latest poll failed, for the digest.

        Rows of sources since removed from feeds.toml stay in the table with their last failure count; without
        ``names`` to restrict to, they would be reported as failing forever. ``None`` means every stored row.
        """
        sql = ("SELECT name, type, last_error, last_error_at, last_ok_at, consecutive_failures, needs_action_since "
               "FROM sources WHERE consecutive_failures > 0")
        if names is None:
            return self.database.rows(sql + " ORDER BY name")
        wanted = sorted(set(names))
        if not wanted:
            return []
        return self.database.rows(sql + f" AND name {IN_LIST} ORDER BY name", (json_list(wanted),))


def current_warning(row: dict[str, Any]) -> tuple[str, datetime | None] | None:
    """A source row's warning that still stands, with when it was last seen; None when there is none.

    A warning stands until a poll reads the source again without it (Store.save_fetch): status is the source's
    state now, as its last error is, which a success clears. A poll answered 304 read nothing, so it clears no
    warning; nor does a failed poll. A warning stored before its time was (an upgraded store) has None for it.
    """
    text = row.get("last_warning")
    if not text or row.get("warning_cleared_at"):
        return None
    seen = row.get("last_warning_at")
    return text, parse_iso(seen) if seen else None

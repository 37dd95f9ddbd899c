"""The order due outbox rows are claimed in: the most urgent first, each incident's messages in planning order.

Rows went in the order they fell due (``next_attempt_at``, then id). After an outage of a channel (a mail server down
for hours) its backlog of resolve notices, reminders and digests was all due, and an incident opening meanwhile
queued behind it: its page went out after every stale update, a run (or several: a backlog goes in parts) late.

Urgency, most urgent first (URGENCY_SQL):

0. an alert with an opening (a new incident, a re-opening, a late or unheard opening): a PagerDuty trigger, a page;
1. everything else about incidents: reminders (an alert of repeats only) and resolve notices;
2. digests.

Within one urgency, rows go as before: the one due first first, then in planning order. But a row never goes ahead
of an older row of its route and channel about one of its incidents (a chain, through shared incidents): the older
takes the urgency of the most urgent row after it in its chain, and the chain goes in planning order. So an
incident's resolve notice still goes before its re-opening's page, never after it, and a batch about several
incidents keeps its place before the later messages about any of them.

Nor does a row go while an older alert of its route and channel about one of its incidents is still to go
(waiting_sql): one claimed by another worker, or retried after a failure, waiting out its backoff, and so not among
the due rows ordered above. Such a row stays pending, unclaimed and untried, until each such alert is sent, failed or
suppressed (`miner outbox` names them, and the earliest the row can go: outbox_listing, waits_after). The planner
folds a resolve notice into an alert nobody has yet (planner._plan_events), but not into one being sent as it plans
(rendered already): when that attempt failed, the resolve notice went out first, an email thread's "RESOLVED" before
its alert. Only alerts hold later rows: a resolve notice retried past its incident's re-opening is nothing to send by
then (dispatcher.send_row), and a page must not wait out its backoff. Nor an alert some recipients have already
(alert_state ``delivered:ID``): they get what follows it (a resolve notice) without waiting for those it is still
retried to, which may be hours.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from miner.store.sql_lists import IN_LIST, json_list
from miner.timeutil import iso

if TYPE_CHECKING:
    from miner.store.db import Database

# A row's own urgency (module docstring), on an outbox row aliased ``o``.
URGENCY_SQL = ("CASE WHEN o.kind = 'digest' THEN 2 WHEN o.kind = 'alert' AND EXISTS (SELECT 1 FROM outbox_items i "
               "WHERE i.outbox_id = o.id AND i.kind = 'open') THEN 0 ELSE 1 END")


# The older alerts an outbox row ``o`` may wait for (waiting_sql): those about one of its incidents, aliased ``older``.
_OLDER_FROM = ("outbox_items mine JOIN outbox_items theirs ON theirs.incident_id = mine.incident_id "
               "AND theirs.outbox_id < mine.outbox_id JOIN outbox older ON older.id = theirs.outbox_id")


def _older_where(o: str, scope: str) -> str:
    """The conditions on ``older`` (_OLDER_FROM) that make it an alert outbox row ``o`` waits for (waiting_sql)."""
    return (f"mine.outbox_id = {o}.id AND older.route = {o}.route AND older.channel = {o}.channel "
            f"AND older.kind = 'alert' AND older.status IN ('pending', 'sending') AND {scope} "
            f"AND NOT EXISTS (SELECT 1 FROM alert_state WHERE key = 'delivered:' || older.id)")


def waiting_sql(o: str, scope: str, older: str = "") -> str:
    """Whether outbox row ``o`` waits for an older alert (module docstring): one of its route and channel, about one
    of its incidents, pending or being sent and nobody's yet, within ``scope`` (ReplayOutboxMixin.outbox_scope, on
    ``older.id``), and ``older`` (a further condition on it, or ""). Read through outbox_items_incident."""
    return f"EXISTS (SELECT 1 FROM {_OLDER_FROM} WHERE {_older_where(o, scope)}{older})"


class OutboxOrderMixin:
    database: Database
    outbox_scope: Callable[..., tuple[str, tuple[int, ...]]]  # ReplayOutboxMixin's

    def due_in_claim_order(self, now: datetime, limit: int, *, exclude_channels: Sequence[str] = (),
                           exclude_ids: Sequence[int] = ()) -> list[dict[str, Any]]:
        """Up to ``limit`` pending rows due at ``now``, in the order they are to be claimed (module docstring);
        rows of ``exclude_channels`` and ``exclude_ids`` left out."""
        skip = f"AND o.channel NOT IN ({','.join('?' * len(exclude_channels))}) " if exclude_channels else ""
        scope, args = self.outbox_scope("o.id")
        older, older_args = self.outbox_scope("older.id")
        # A row waiting for an older alert that is not due, or not among these (claimed, tried in this run), is left
        # out, not listed to take a place in ``limit``; one behind an older due one goes after it (claim_order), unless
        # that one fails (claim_due checks it again).
        waits = waiting_sql("o", older, " AND (older.status = 'sending' OR older.next_attempt_at > ? "
                                        f"OR older.id {IN_LIST})")
        # Ordered over every due row, not a listing cut at ``limit``: the older rows of a page's incidents are claimed
        # with it wherever they fell due. Only what orders them is read of each: 20,000 due rows took 0.35 s.
        due = self.database.rows(
            f"SELECT o.id, o.route, o.channel, o.next_attempt_at, {URGENCY_SQL} AS urgency FROM outbox o "
            f"WHERE o.status = 'pending' AND o.next_attempt_at <= ? AND {scope} {skip}AND o.id NOT {IN_LIST} "
            f"AND NOT {waits}",
            (iso(now), *args, *exclude_channels, json_list(exclude_ids), *older_args, iso(now),
             json_list(exclude_ids)))
        if not due:
            return []
        incidents: dict[int, set[int]] = {}
        for item in self.database.rows(f"SELECT outbox_id, incident_id FROM outbox_items WHERE outbox_id {IN_LIST}",
                                       (json_list(int(r["id"]) for r in due),)):
            incidents.setdefault(int(item["outbox_id"]), set()).add(int(item["incident_id"]))
        ids = [int(r["id"]) for r in claim_order(due, incidents)[:limit]]
        rows = {int(r["id"]): r for r in self.database.rows(f"SELECT * FROM outbox WHERE id {IN_LIST}",
                                                           (json_list(ids),))}
        return [rows[i] for i in ids if i in rows]

    def outbox_listing(self, statuses: Sequence[str], limit: int = 200) -> list[dict[str, Any]]:
        """The newest ``limit`` rows of ``statuses``. A pending row held behind older alerts (module docstring) has
        ``waits_for``: each of them, oldest first (``id``, ``status``, ``next_attempt_at``), ``goes_after``: the id of
        the one of them it goes right after, and ``not_before``: the earliest time it can go (both: waits_after); any
        other row has ``waits_for`` [] and the other two None."""
        # last_attempt_at: when a failed row failed (its next_attempt_at is the time that attempt was due). Read for
        # the rows listed only: in the select list of the query that sorts them, it was read for every row of the
        # statuses, 2x as slow at 50 of 50,000.
        rows = self.database.rows(
            "SELECT o.*, (SELECT d.at FROM deliveries d WHERE d.outbox_id = o.id ORDER BY d.id DESC LIMIT 1) AS "
            f"last_attempt_at FROM (SELECT * FROM outbox WHERE status {IN_LIST} ORDER BY id DESC LIMIT ?) o "
            "ORDER BY o.id DESC", (json_list(statuses), limit))
        # `miner outbox` is where the on-call looks for why a message due long ago has not gone: a held row's own
        # next_attempt_at, long past, read as a dispatcher that had stopped. Its wait is read for the rows listed only,
        # and for the alerts they wait for, which may wait themselves.
        due = {int(r["id"]): str(r["next_attempt_at"]) for r in rows if r["status"] == "pending"}
        waits: dict[int, list[dict[str, Any]]] = {}
        asked: set[int] = set()
        while todo := sorted(set(due) - asked):
            asked.update(todo)
            for held, older in self._older_alerts_of(todo).items():
                waits[held] = older
                due.update((int(w["id"]), str(w["next_attempt_at"])) for w in older if w["status"] == "pending")
        after = waits_after(due, waits)
        for r in rows:
            r["waits_for"] = waits.get(int(r["id"]), []) if r["status"] == "pending" else []
            r["goes_after"], r["not_before"] = after.get(int(r["id"]), (None, None))
        return rows

    def _older_alerts_of(self, ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
        """The older alerts each pending row of ``ids`` waits for (waiting_sql), oldest first; rows waiting for none
        left out."""
        older, args = self.outbox_scope("older.id")
        waits: dict[int, list[dict[str, Any]]] = {}
        # CROSS JOIN: from the rows asked about to their items, as waiting_sql goes. Left to itself SQLite went from
        # every pending alert (index outbox_due) to the rows waiting for it, 8 ms for 50 of 5,000 pending (0.2 ms).
        for w in self.database.rows(
                f"SELECT DISTINCT o.id AS held, older.id, older.status, older.next_attempt_at FROM outbox o CROSS JOIN "
                f"{_OLDER_FROM} WHERE o.id {IN_LIST} AND o.status = 'pending' AND {_older_where('o', older)} "
                f"ORDER BY o.id, older.id", (json_list(ids), *args)):
            waits.setdefault(int(w.pop("held")), []).append(w)
        return waits

    def waits_for_older(self, outbox_id: int) -> bool:
        """Whether pending row ``outbox_id`` waits for an older alert of its route, channel and incidents (module
        docstring): it is not to be claimed yet."""
        older, args = self.outbox_scope("older.id")
        return self.database.one(f"SELECT 1 AS x FROM outbox o WHERE o.id = ? AND {waiting_sql('o', older)}",
                                 (outbox_id, *args)) is not None


def claim_order(rows: Sequence[dict[str, Any]], incidents: dict[int, set[int]]) -> list[dict[str, Any]]:
    """``rows`` (with their own ``urgency``) in claim order: ``incidents`` maps a row's id to the incidents it is about.

    Rows of one route and channel sharing an incident, directly or through others, are one chain. Walking a chain
    from its newest row back, each row's key is the least urgency and the earliest due time of itself and the rows
    after it: so along a chain the keys never decrease, and sorting by (key, id) keeps every chain in planning order
    while a chain with a page in it goes with the pages.
    """
    parent = {int(r["id"]): int(r["id"]) for r in rows}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[tuple[str, str, int], int] = {}
    for r in rows:
        for incident in incidents.get(int(r["id"]), ()):
            key = (str(r["route"]), str(r["channel"]), incident)
            if key in first:
                parent[root(int(r["id"]))] = root(first[key])
            else:
                first[key] = int(r["id"])
    chains: dict[int, list[dict[str, Any]]] = {}
    for r in sorted(rows, key=lambda r: int(r["id"])):
        chains.setdefault(root(int(r["id"])), []).append(r)
    keys: dict[int, tuple[int, str, int]] = {}
    for chain in chains.values():
        urgency, due = 3, "~"  # above every urgency and every ISO time
        for r in reversed(chain):
            urgency, due = min(urgency, int(r["urgency"])), min(due, str(r["next_attempt_at"]))
            keys[int(r["id"])] = (urgency, due, int(r["id"]))
    return sorted(rows, key=lambda r: keys[int(r["id"])])


def waits_after(due: dict[int, str], waits: dict[int, list[dict[str, Any]]]) -> dict[int, tuple[int, str]]:
    """For each held row of ``waits`` (pending, with the older alerts it waits for, Store._older_alerts_of): the alert
    it can go after at the earliest, and the earliest time it can go. ``due``: every pending row's next_attempt_at,
    those of ``waits`` and of the alerts they wait for.

    A held row is claimed once none of the alerts it waits for is pending or being sent (claim_due), in the run that
    sends the last of them, right after it; it never goes before its own next_attempt_at, nor before that of a
    pending alert it waits for, itself held or not (the earliest of such an alert counts, not its own time). An alert
    being sent has no such time: it goes, or is retried at a time not yet known. Of those it waits for, the one with
    the latest earliest time goes last as far as the outbox knows (one being sent before one pending; the newer of
    two alike, as they go in planning order).
    """
    earliest: dict[int, str] = {}
    # An alert waited for is older than the row that waits, so each is done before any row waiting for it.
    for i in sorted(due):
        earliest[i] = max([due[i], *(earliest[int(w["id"])] for w in waits.get(i, []) if w["status"] == "pending")])
    after: dict[int, tuple[int, str]] = {}
    for i, older in waits.items():
        last = max(older, key=lambda w: (w["status"] == "pending", earliest.get(int(w["id"]), ""), int(w["id"])))
        after[i] = int(last["id"]), earliest[i]
    return after

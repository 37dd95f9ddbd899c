"""One service's detector failing (an unreadable detector_state row, a step that fails) never stops the others, a store
failure ends the run, and openings stored by a run that failed or crashed before grouping them are grouped by the next
run."""

from __future__ import annotations

import contextlib
import json
import logging
from datetime import datetime, timedelta
from typing import Any

import pytest
from streams import T0, ReportsOnly, outage_reports, warmed_pipeline

from miner.config import parse_config
from miner.detect import DetectorState
from miner.errors import MinerError, StoreError
from miner.pipeline import Pipeline
from miner.store import Store

ACME = """
[[services]]
name = "Barmail"
provider = "Acme"
[[services]]
name = "Bazdrive"
provider = "Acme"
[[services]]
name = "Quxpay"

[detector]
bucket_minutes = 15
warmup_hours = 1
"""


def _warm(store: Store) -> Pipeline:
    return warmed_pipeline(ACME, store)


def _outage(pipe: Pipeline, services: list[str]) -> tuple[datetime, datetime]:
    """An hour of reports about ``services`` from T0 + 3 h 15, classified at T0 + 4 h 30; returns (start, now)."""
    start, now = T0 + timedelta(hours=3, minutes=15), T0 + timedelta(hours=4, minutes=30)
    pipe.ingest([p for s in services for p in outage_reports(s, start, start + timedelta(hours=1))], now)
    pipe.classify_pending(now)
    return start, now


# JSON that is not an object ('[]', 'null', '1') raised AttributeError, which nothing caught: no repair, the
# service failed every run.
@pytest.mark.parametrize("bad", ["'{not json'", "json_set(state, '$.seen', 'many')",
                                 "json_set(state, '$.last', 1e300)", "'[]'", "'null'", "'1'"])
def test_an_unreadable_detector_state_is_learned_again_and_the_services_after_it_are_scored(
        store: Store, bad: str, caplog: pytest.LogCaptureFixture) -> None:
    # Barmail's row, first in the config, failed every run with a ValueError: Bazdrive and Quxpay after it were never
    # scored again, their outages never opened.
    pipe = _warm(store)
    store.database.conn.execute(f"UPDATE detector_state SET state = {bad} WHERE service = 'Barmail'")
    start, now = _outage(pipe, ["Bazdrive", "Quxpay"])
    with caplog.at_level(logging.WARNING, logger="miner.pipeline"):
        report = pipe.detect(now)
    assert sorted(report.opened) == [("Bazdrive", start + timedelta(minutes=30)),
                                     ("Quxpay", start + timedelta(minutes=30))]
    warned = [r.getMessage() for r in caplog.records if "Barmail" in r.getMessage()]
    assert len(warned) == 1 and "unreadable" in warned[0] and "learned again" in warned[0], warned
    saved = store.detector_state("Barmail")
    assert saved is not None and saved.last_bucket == now - timedelta(minutes=15)
    relearned = DetectorState.from_json(saved.state)
    assert relearned.seen > 4 and not relearned.open  # from the buckets stored since T0, not from nothing
    assert pipe.detect(now + timedelta(minutes=15)).buckets == 3  # and it steps on with the others


def test_an_unreadable_draft_resolves_its_incident_and_the_service_starts_afresh(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    pipe = _warm(store)
    _, now = _outage(pipe, ["Barmail"])
    pipe.detect(now)
    [incident] = store.incidents(status="open")
    store.database.conn.execute("UPDATE detector_state SET draft = '[' WHERE service = 'Barmail'")
    with caplog.at_level(logging.WARNING, logger="miner.pipeline"):
        report = pipe.detect(now + timedelta(minutes=15))
    assert report.buckets == 3  # every service's, Bazdrive's and Quxpay's after it too
    assert [s for s, _ in report.resolved] == ["Barmail"]
    resolved = store.incident(incident["id"])
    assert resolved is not None and resolved["status"] == "resolved"
    events = store.incident_events(incident["id"])
    assert json.loads(events[-1]["details"])["reason"] == "detector state unreadable"
    saved = store.detector_state("Barmail")
    assert saved is not None and saved.draft is None and saved.incident_id is None
    assert any("Barmail" in r.getMessage() and "resolved" in r.getMessage() for r in caplog.records)


def test_a_service_whose_step_fails_fails_the_run_after_the_others_are_scored(store: Store) -> None:
    # A trigger refuses Barmail's step: a step that fails (a bug, a constraint), not the store (see the next test).
    pipe = _warm(store)
    store.database.conn.execute(
        "CREATE TRIGGER refuse AFTER UPDATE ON detector_state WHEN NEW.service = 'Barmail' "
        "BEGIN SELECT RAISE(ABORT, 'a constraint'); END")
    _, now = _outage(pipe, ["Bazdrive", "Quxpay"])
    with pytest.raises(MinerError) as failed:
        pipe.detect(now)
    assert "Barmail" in str(failed.value) and not isinstance(failed.value, StoreError)
    assert sorted(i["service"] for i in store.incidents(status="open")) == ["Bazdrive", "Quxpay"]
    saved = store.detector_state("Bazdrive")
    assert saved is not None and saved.last_bucket == now - timedelta(minutes=15)


def test_a_store_failure_ends_the_run_with_the_services_after_it_not_stepped_and_nothing_grouped(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    # A store that takes no writes (a full disk, a lock past the busy timeout) would fail each service after it in
    # turn (a lock after waiting out the busy timeout for each): the run ends there, and groups nothing.
    pipe = _warm(store)
    _, now = _outage(pipe, ["Barmail", "Bazdrive"])
    pipe.detect(now)
    store.database.conn.execute("UPDATE incidents SET group_id = NULL")  # left ungrouped, for this run to group
    store.database.conn.execute("DELETE FROM incident_groups")
    before = {s: store.detector_state(s) for s in ("Bazdrive", "Quxpay")}
    save = store.save_detector_step
    stepped = []

    def full(service: str, *args: Any, **kwargs: Any) -> None:
        stepped.append(service)
        if service == "Barmail":
            raise StoreError("store x: database or disk is full", cause="disk_full")
        save(service, *args, **kwargs)

    monkeypatch.setattr(store, "save_detector_step", full)
    with pytest.raises(StoreError) as failed:
        pipe.detect(now + timedelta(minutes=15))
    assert failed.value.cause == "disk_full" and "Barmail" in str(failed.value)
    assert stepped == ["Barmail"]
    assert {s: store.detector_state(s) for s in before} == before
    assert store.database.rows("SELECT id FROM incident_groups") == []


@pytest.mark.parametrize("bad", ["'{'", "'[]'", "'null'", "'1'"])
def test_a_removed_service_with_an_unreadable_state_has_its_incident_resolved(store: Store, bad: str) -> None:
    # Resolving the open incident of a service no longer configured read its state first: unreadable, every detect
    # run failed before any service was scored.
    pipe = _warm(store)
    _, now = _outage(pipe, ["Barmail"])
    pipe.detect(now)
    [incident] = store.incidents(status="open")
    store.database.conn.execute(f"UPDATE detector_state SET state = {bad} WHERE service = 'Barmail'")
    config = parse_config(ACME.replace('name = "Barmail"\nprovider = "Acme"\n[[services]]\n', ""))
    report = Pipeline(config, store, ReportsOnly()).detect(now + timedelta(minutes=15))  # type: ignore[arg-type]
    assert report.resolved == [("Barmail", now + timedelta(minutes=15))] and report.buckets == 2
    resolved = store.incident(incident["id"])
    assert resolved is not None and resolved["status"] == "resolved"


def test_openings_a_crash_left_ungrouped_are_grouped_by_the_next_run(store: Store) -> None:
    # A crash (or a failure) between the services' steps and their grouping: the next run opened nothing, so it
    # grouped nothing, and Barmail and Bazdrive were alerted on alone for the whole outage.
    pipe = _warm(store)
    _, now = _outage(pipe, ["Barmail", "Bazdrive"])
    pipe.detect(now)
    # What the crash left: the openings committed, the grouping's transaction not.
    store.database.conn.execute("UPDATE incidents SET group_id = NULL")
    store.database.conn.execute("DELETE FROM incident_events WHERE kind = 'group'")
    store.database.conn.execute("DELETE FROM incident_groups")
    assert pipe.detect(now + timedelta(minutes=15)).opened == []
    groups = store.database.rows("SELECT id, name, services FROM incident_groups")
    assert [(g["name"], sorted(json.loads(g["services"]))) for g in groups] == [("Acme", ["Barmail", "Bazdrive"])]
    assert {i["group_id"] for i in store.incidents()} == {groups[0]["id"]}


def test_a_service_failing_the_same_way_at_every_run_is_logged_once_until_it_changes_or_succeeds(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    # Its traceback was logged at every run (every 30 s for the process job) for as long as the row stayed.
    pipe = _warm(store)

    def refuse(message: str) -> None:
        store.database.conn.execute("DROP TRIGGER IF EXISTS refuse")
        store.database.conn.execute(
            "CREATE TRIGGER refuse AFTER UPDATE ON detector_state WHEN NEW.service = 'Barmail' "
            f"BEGIN SELECT RAISE(ABORT, '{message}'); END")

    def run(minutes: int) -> list[logging.LogRecord]:
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="miner.pipeline"), contextlib.suppress(MinerError):
            pipe.detect(T0 + timedelta(hours=4, minutes=minutes))
        return [r for r in caplog.records if r.levelno >= logging.INFO and "Barmail" in r.getMessage()]

    refuse("no way")
    first, *again = [run(15 * i) for i in range(3)]
    assert [(r.levelname, bool(r.exc_info)) for r in first] == [("ERROR", True)], first
    assert again == [[], []]
    refuse("changed")
    assert [r.levelname for r in run(45)] == ["ERROR"]
    store.database.conn.execute("DROP TRIGGER refuse")
    assert [r.getMessage() for r in run(60)] == ["detect: Barmail is scored again (it failed with IntegrityError)"]
    refuse("changed")
    assert [r.levelname for r in run(75)] == ["ERROR"]  # failing again after a success: logged again

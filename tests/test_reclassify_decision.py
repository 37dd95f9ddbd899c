"""A change of [classifier] threshold or early_exit, applied to stored verdicts by `miner reclassify`: each verdict
is stored with the decision it was given at, and `miner status` says when those counted were decided at another."""

from __future__ import annotations

import json
import logging
import sqlite3
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from ports import bound_port
from reclassify_support import RAISED, classified, reclassify, verdicts, write_config
from sqlplan import query_plan

from miner.cli import main
from miner.config import load_config
from miner.model_dir import default_model_dir, model_on_disk
from miner.pipeline import Pipeline, load_model
from miner.records import Decision
from miner.service import Service, ServiceOptions
from miner.store import Store
from miner.store.model_state import OTHER_DECISION_SQL
from miner.timeutil import utcnow


def _complaints(cfg: Path) -> int:
    with sqlite3.connect(load_config(cfg).store.path) as conn:
        return int(conn.execute("SELECT coalesce(sum(complaints), 0) FROM buckets").fetchone()[0])


def test_reclassify_applies_a_raised_threshold_to_stored_verdicts_from_their_scores(tmp_path: Path) -> None:
    # An operator raising the threshold against false alarms: only posts classified after the restart were decided
    # at it, and `miner reclassify` redid nothing ("had this model's verdict already"), so the stored posts and the
    # buckets counted from them kept every complaint the old threshold had called.
    cfg = classified(tmp_path)
    before = verdicts(cfg)
    assert {(r["threshold"], r["early_exit"]) for r in before.values()} == {(0.37, 1)}
    flipped = [pid for pid, r in before.items() if r["outage"] and r["score"] < RAISED]
    assert len(flipped) == 11
    complaints = _complaints(cfg)

    cfg.write_text(cfg.read_text() + f"threshold = {RAISED}\n")
    out = reclassify(cfg)
    # The threshold alone changed, early exits still on: every verdict is decided again from the score it was given,
    # without the model (and as fast as a store write).
    assert "reclassified 400 posts since " in out
    assert "400 decided again from their stored score at threshold 0.8, early exits on" in out
    after = verdicts(cfg)
    for pid, row in after.items():
        assert (row["threshold"], row["early_exit"]) == (RAISED, 1)
        assert row["score"] == before[pid]["score"]  # the very score the old threshold was compared to
        assert row["outage"] == (row["score"] >= RAISED)
        assert row["symptom"] == (before[pid]["symptom"] if row["outage"] else None)
    assert [pid for pid in flipped if after[pid]["outage"]] == []
    assert _complaints(cfg) == complaints - len(flipped)  # the buckets recounted
    assert f"complaints counted since then: {complaints} before, {complaints - len(flipped)} now" in out
    with sqlite3.connect(load_config(cfg).store.path) as conn:
        mark = dict(conn.execute("SELECT key, value FROM store_state WHERE key LIKE 'reclassified%'").fetchall())
    assert mark["reclassified_at_decision"] == "0.8 1"  # for the detector to learn its baselines again

    # Done: the same run again leaves them.
    assert "reclassified 0 posts since " in reclassify(cfg)

    # Lowered to 0.7: posts that were no outage at 0.8 and are one at 0.7 need their symptom, which a verdict of no
    # outage does not keep: the model runs for those alone.
    cfg.write_text(cfg.read_text().replace(f"threshold = {RAISED}", "threshold = 0.7"))
    symptomless = [pid for pid, r in after.items() if 0.7 <= r["score"] < RAISED]
    assert len(symptomless) == 5
    out = reclassify(cfg)
    assert f"{400 - len(symptomless)} decided again from their stored score at threshold 0.7" in out
    lowered = verdicts(cfg)
    for row in lowered.values():
        assert (row["threshold"], row["early_exit"], row["outage"]) == (0.7, 1, row["score"] >= 0.7)
        assert (row["symptom"] is not None) == bool(row["outage"])
    assert all(lowered[pid]["symptom"] for pid in symptomless if lowered[pid]["outage"])


def test_reclassify_where_early_exits_changed_runs_the_model_for_the_scores_that_do_not_tell(tmp_path: Path) -> None:
    # Below the model's threshold the early exits are off (they were calibrated against it): a post that stopped at
    # an exit scored the probe's estimate, under the exits' threshold, not the whole network's. The model ran for
    # every post, though a score at or above the exits' threshold is the whole network's and decides as it would.
    cfg = classified(tmp_path)
    before = verdicts(cfg)
    exits = 0.055
    whole = [pid for pid, r in before.items() if r["score"] >= exits and (r["outage"] or r["score"] < 0.3)]
    assert 50 < len(whole) < 400
    cfg.write_text(cfg.read_text() + "threshold = 0.3\n")
    out = reclassify(cfg)
    assert "reclassified 400 posts since " in out
    assert f"({len(whole)} decided again from their stored score at threshold 0.3, early exits off" in out
    lowered = verdicts(cfg)
    assert {(r["threshold"], r["early_exit"]) for r in lowered.values()} == {(0.3, 0)}
    assert all(r["outage"] == (r["score"] >= 0.3) for r in lowered.values())
    assert all(lowered[pid]["score"] == before[pid]["score"] for pid in whole)
    # The posts an exit stopped now score the whole network's probability: some moved.
    assert any(lowered[pid]["score"] != r["score"] for pid, r in before.items() if r["score"] < exits)

    # Back to the model's own threshold (the line removed): exits on again. A score under it is no outage whether an
    # exit stops the post or not; the model runs for the others, which an exit may stop.
    under = [pid for pid, r in lowered.items() if r["score"] < 0.37]
    cfg.write_text(cfg.read_text().replace("threshold = 0.3\n", ""))
    out = reclassify(cfg)
    assert "reclassified 400 posts since " in out
    assert f"({len(under)} decided again from their stored score at threshold 0.37, early exits on" in out
    back = verdicts(cfg)
    assert {(r["threshold"], r["early_exit"]) for r in back.values()} == {(0.37, 1)}
    assert all((back[pid]["score"], back[pid]["outage"]) == (lowered[pid]["score"], 0) for pid in under)


def test_verdicts_stored_before_their_decision_was_recorded_are_decided_again(tmp_path: Path) -> None:
    # Stored by an older miner (the upgrade leaves their threshold and early_exit NULL): nothing tells what they were
    # decided at, nor whether an exit's estimate is their score. `miner status` does not count them as decided at
    # another setting while the service's threshold calls their score as they were called, and reclassify gives them
    # a verdict at the current one: from their score where it is under the threshold (no outage, exits on or off
    # when it was scored), from the model where an exit might stop them now (tests/test_reclassify_unrecorded.py).
    cfg = classified(tmp_path)
    config = load_config(cfg)
    with sqlite3.connect(config.store.path) as conn:
        conn.execute("UPDATE classifications SET threshold = NULL, early_exit = NULL WHERE post_id <= 10")
    store = Store.open(config.store.path)
    version = load_model(config).version
    try:
        assert store.other_decision_verdicts(utcnow(), version, Decision(0.37, True)) == 0
        assert store.reclassify_counts(utcnow() - timedelta(days=1), version, Decision(0.37, True)) == (10, 390)
    finally:
        store.close()
    under = [pid for pid, r in verdicts(cfg).items() if pid <= 10 and r["score"] < 0.37]
    assert len(under) == 6
    out = reclassify(cfg)
    assert "reclassified 10 posts since " in out
    assert "(6 decided again from their stored score at threshold 0.37, early exits on, without the model)" in out
    assert "390 posts had this model's verdict already" in out
    assert {(r["threshold"], r["early_exit"]) for r in verdicts(cfg).values()} == {(0.37, 1)}


def test_status_says_how_many_verdicts_were_decided_at_another_threshold_than_the_services(tmp_path: Path) -> None:
    # Restarted with a raised threshold, the service gave new posts its decision while the stored ones counted the
    # old one's, and nothing said so: status spoke only of another model's verdicts.
    cfg = classified(tmp_path)
    cfg.write_text(cfg.read_text() + f"threshold = {RAISED}\n")
    config = load_config(cfg)
    service = Service(config, Path(config.store.path), ServiceOptions(jobs=()))
    service.start()
    try:
        status = CliRunner().invoke(main, ["--config", str(cfg), "status", "--format", "json"])
        model = json.loads(status.output)["model"]
        assert (model["threshold"], model["early_exit"]) == (RAISED, True)
        assert (model["verdicts_other_model"], model["verdicts_other_settings"]) == (0, 400)
        text = CliRunner().invoke(main, ["--config", str(cfg), "status"]).output.splitlines()
        assert text[3] == ("400 posts of the last 24 h count a verdict decided at another threshold or early-exit "
                           "setting than the service's (threshold 0.8, early exits on): after a change of [classifier] "
                           "threshold or early_exit, `miner reclassify --since` decides them again")
        reclassify(cfg)
        status = CliRunner().invoke(main, ["--config", str(cfg), "status", "--format", "json"])
        assert json.loads(status.output)["model"]["verdicts_other_settings"] == 0
    finally:
        service.stop()


def test_status_says_when_the_configs_classifier_settings_are_not_the_ones_the_service_decides_at(
        tmp_path: Path) -> None:
    # feeds.toml edited and the reload forgotten: the service went on deciding new posts at the old threshold, a
    # reclassify decided the stored ones at the new one (its baselines then waiting on a reload), and status, which
    # showed the service's decision, said nothing of the config's.
    cfg = write_config(tmp_path)
    config = load_config(cfg)
    service = Service(config, Path(config.store.path), ServiceOptions(jobs=()))
    service.start()

    def status() -> tuple[dict[str, object], list[str]]:
        shown = CliRunner().invoke(main, ["--config", str(cfg), "status", "--format", "json"])
        text = CliRunner().invoke(main, ["--config", str(cfg), "status"])
        assert shown.exit_code == text.exit_code == 0, shown.output + text.output
        # The paragraph of the model: after the one saying whether a service is running.
        return json.loads(shown.output)["model"], text.output.split("\n\n")[1].splitlines()[1:]

    try:
        model, lines = status()
        assert (model["threshold"], model["early_exit"]) == (0.37, True)
        assert (model["config_threshold"], model["config_early_exit"]) == (0.37, True)
        assert lines == []
        cfg.write_text(cfg.read_text() + f"threshold = {RAISED}\n")
        model, lines = status()
        assert (model["config_threshold"], model["config_early_exit"]) == (RAISED, True)
        assert lines == ["the config's [classifier] settings decide at threshold 0.8, early exits on, the service at "
                         "threshold 0.37, early exits on: reload (SIGHUP) or restart the service to serve them"]
        # Below the model's own threshold the exits are off, as the service would load them: early_exit = true
        # (the default) is not what the service would decide at.
        cfg.write_text(cfg.read_text().replace(f"threshold = {RAISED}", "threshold = 0.3"))
        model, lines = status()
        assert (model["config_threshold"], model["config_early_exit"]) == (0.3, False)
        assert lines[0].startswith("the config's [classifier] settings decide at threshold 0.3, early exits off,")
        # The model's own threshold, written out, with exits off: the threshold is the service's, the exits are not.
        cfg.write_text(cfg.read_text().replace("threshold = 0.3", "threshold = 0.37\nearly_exit = false"))
        model, lines = status()
        assert (model["config_threshold"], model["config_early_exit"]) == (0.37, False)
        assert lines[0].startswith("the config's [classifier] settings decide at threshold 0.37, early exits off,")
    finally:
        service.stop()
    # Reloaded (started again) with them: nothing to say.
    service = Service(load_config(cfg), Path(config.store.path), ServiceOptions(jobs=()))
    service.start()
    try:
        model, lines = status()
        assert (model["threshold"], model["early_exit"]) == (0.37, False) and lines == []
    finally:
        service.stop()


@pytest.mark.parametrize("classifier", ["", "early_exit = false", "threshold = 0.3", "threshold = 0.37",
                                        f"threshold = {RAISED}", f"threshold = {RAISED}\nearly_exit = false"])
def test_status_reads_the_configs_decision_as_the_classifier_decides(tmp_path: Path, classifier: str) -> None:
    # One rule (records.Decision.asked) for both: status reads model.json alone, the service loads the model.
    config = load_config(write_config(tmp_path, classifier))
    assert model_on_disk(default_model_dir(), config.classifier)[1] == load_model(config).decision


def test_metrics_count_the_verdicts_decided_at_another_setting_as_those_of_another_model(tmp_path: Path) -> None:
    # /metrics had miner_verdicts_other_model to alert on after a model update, and nothing after a change of
    # [classifier] settings whose reclassify was forgotten.
    cfg = classified(tmp_path)
    cfg.write_text(cfg.read_text() + f"threshold = {RAISED}\n")
    config = load_config(cfg)
    start = utcnow()
    clock = [start]

    def scrape() -> tuple[str, str]:
        lines = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text.splitlines()
        return (next(line for line in lines if line.startswith("miner_verdicts_other_model ")),
                next(line for line in lines if line.startswith("miner_verdicts_other_settings ")))

    service = Service(config, Path(config.store.path), ServiceOptions(jobs=(), http=True, http_port=0,
                                                                      clock=lambda: clock[0]))
    service.start()
    try:
        port = bound_port(service)
        assert scrape() == ("miner_verdicts_other_model 0", "miner_verdicts_other_settings 400")
        reclassify(cfg)
        assert scrape()[1] == "miner_verdicts_other_settings 400"  # counted a moment ago, as the other model's
        clock[0] = start + timedelta(minutes=1)
        assert scrape() == ("miner_verdicts_other_model 0", "miner_verdicts_other_settings 0")
    finally:
        service.stop()


def test_a_service_deciding_at_the_old_threshold_learns_no_baseline_from_a_reclassify_at_the_new_one(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Reclassified at a raised threshold before the service was reloaded with it: a baseline learned from the fewer
    # complaints of the new threshold scored the old threshold's counts of the new posts as an outage. It waits, as
    # for a model update, until the service decides as the reclassify did.
    cfg = classified(tmp_path)
    old = load_config(cfg)
    cfg.write_text(cfg.read_text() + f"threshold = {RAISED}\n")
    reclassify(cfg)
    store = Store.open(old.store.path)
    try:
        with caplog.at_level("WARNING", logger="miner.pipeline"):
            Pipeline(old, store, load_model(old)).detect(utcnow())
        assert store.reclassified_mark() is not None
        # Warnings only: an earlier test's logging setup may leave INFO on, and the model's load logs at INFO.
        [warning] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert ("were reclassified at threshold 0.8, early exits on, but this service decides at threshold 0.37, "
                "early exits on: reload (SIGHUP) or restart it") in warning
        new = load_config(cfg)
        Pipeline(new, store, load_model(new)).detect(utcnow())
        assert store.reclassified_mark() is None
    finally:
        store.close()


def test_the_count_of_verdicts_decided_at_another_setting_reads_a_day_of_posts_by_their_index(tmp_path: Path) -> None:
    # /metrics-like cost for `miner status`: a day of posts through posts_created_at, never every post stored.
    store = Store.open(tmp_path / "miner.sqlite")
    plan = query_plan(store.database.conn, OTHER_DECISION_SQL,
                      ("2026-01-01T00:00:00+00:00", "reports", "v1", 0.5, 1, 0.5, 0.5))
    assert plan[0].startswith("SEARCH p USING INDEX posts_created_at (created_at>?)"), plan
    assert not [step for step in plan if step.startswith("SCAN")], plan
    store.close()

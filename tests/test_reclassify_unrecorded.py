"""Verdicts stored before miner recorded the threshold and early-exit setting they were decided at (migration
0023_verdict_decisions leaves them NULL), in a store upgraded from that layout: what `miner reclassify` decides again
from their stored score, and what `miner status` counts of them."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import httpx
from click.testing import CliRunner
from ports import bound_port
from reclassify_support import RAISED, classified, mtn_texts, reclassify, verdicts

from miner.cli import main
from miner.config import load_config
from miner.model_dir import default_model_dir
from miner.pipeline import load_model
from miner.service import Service, ServiceOptions

# The shipped model's early exits stop posts their probe scores under 0.055.
EXIT = 0.055


def _stored_before_0023(tmp_path: Path, classifier: str = "") -> Path:
    """A store of 400 real posts naming MTN from the last 7 hours, classified at the model's own threshold (the
    shipped one unless ``classifier`` says) and left as the upgrade to 0023_verdict_decisions leaves verdicts stored
    before it (no threshold nor early_exit), its scores rounded to 6 decimals as miner 0.1.0 stored them."""
    cfg = classified(tmp_path, classifier)
    with sqlite3.connect(load_config(cfg).store.path) as conn:
        conn.executemany("UPDATE classifications SET score = ? WHERE post_id = ?",
                         [(round(score, 6), pid) for pid, score in conn.execute(
                             "SELECT post_id, score FROM classifications")])
        # As 0023_verdict_decisions leaves them (DROP COLUMN and a second upgrade would need SQLite 3.35, and the
        # oldest supported systems ship 3.26).
        conn.execute("UPDATE classifications SET threshold = NULL, early_exit = NULL")
    conn.close()
    return cfg


def test_a_raised_threshold_decides_verdicts_stored_before_their_settings_from_their_scores(tmp_path: Path) -> None:
    # After an upgrade from a miner that recorded no decision, a raised threshold ran the model for every stored
    # post: 11 minutes for a store of 1 M posts. With early exits on now, a score under the threshold is no outage
    # whether an exit gave it or the whole network did; a score at or above it needs the model, as an exit may stop
    # the post now (if they were off when it was scored).
    cfg = _stored_before_0023(tmp_path)
    before = verdicts(cfg)
    high = {pid for pid, r in before.items() if r["score"] >= RAISED}
    flipped = {pid for pid, r in before.items() if r["outage"] and r["score"] < RAISED}
    assert (len(high), len(flipped)) == (160, 11)

    cfg.write_text(cfg.read_text() + f"threshold = {RAISED}\n")
    out = reclassify(cfg)
    assert "reclassified 400 posts since " in out
    assert "240 decided again from their stored score at threshold 0.8, early exits on, without the model" in out
    after = verdicts(cfg)
    for pid, row in after.items():
        assert (row["threshold"], row["early_exit"], row["outage"]) == (RAISED, 1, row["score"] >= RAISED)
        if pid not in high:
            assert (row["score"], row["outage"], row["symptom"]) == (before[pid]["score"], 0, None)
    # As the model decides at 0.8 itself, scoring them as they were scored (one batch: its quantization moves a
    # score with its batch mates, models/MODEL_CARD.md, so those it ran for again may move).
    full = load_model(load_config(cfg)).predict(mtn_texts())
    assert {pid: bool(row["outage"]) for pid, row in after.items() if pid not in high} == {
        i + 1: p.outage for i, p in enumerate(full) if i + 1 not in high}


def test_a_threshold_below_the_models_decides_from_scores_no_exit_gave(tmp_path: Path) -> None:
    # Below the model's threshold early exits are off, and every score is the whole network's. A stored score at or
    # above the exits' threshold is (an exit's is below it): it decides as the model would. One below it may be an
    # exit's estimate, and a post that becomes an outage report needs its symptom: the model runs for those.
    cfg = _stored_before_0023(tmp_path)
    lowered = 0.3
    with sqlite3.connect(load_config(cfg).store.path) as conn:
        # Decided at 0.25 by a miner 0.1.0 told so, a post scored 0.2999996 was stored as an outage report scoring
        # 0.3: which side of 0.3 the model's score fell on, its stored score does not tell.
        rounded = conn.execute("SELECT post_id FROM classifications WHERE score BETWEEN 0.1 AND 0.29 "
                               "ORDER BY post_id").fetchone()[0]
        conn.execute("UPDATE classifications SET score = 0.3, outage = 1, symptom = 'connectivity' "
                     "WHERE post_id = ?", (rounded,))
    conn.close()
    before = verdicts(cfg)
    from_scores = [pid for pid, r in before.items() if pid != rounded
                   and r["score"] >= EXIT + 1e-6 and (r["outage"] or r["score"] < lowered)]
    assert 50 < len(from_scores) < 400
    cfg.write_text(cfg.read_text() + f"threshold = {lowered}\n")
    out = reclassify(cfg)
    assert "reclassified 400 posts since " in out
    assert f"{len(from_scores)} decided again from their stored score at threshold 0.3, early exits off" in out
    after = verdicts(cfg)
    for row in after.values():
        assert (row["threshold"], row["early_exit"], row["outage"]) == (lowered, 0, row["score"] >= lowered)
        assert (row["symptom"] is not None) == bool(row["outage"])
    for pid in from_scores:
        assert (after[pid]["score"], after[pid]["symptom"]) == (before[pid]["score"], before[pid]["symptom"])
    assert after[rounded]["score"] < lowered and not after[rounded]["outage"]  # the model's


def test_a_model_without_early_exits_decides_every_stored_score_again_but_the_symptomless(tmp_path: Path) -> None:
    # A model with no exit (miner 0.1.0's, kept in a model_dir of its own through the upgrade) gives every post the
    # whole network's score: each decides at a new threshold as the model would. Only the posts that become outage
    # reports need it, for their symptom.
    model = tmp_path / "model"
    shutil.copytree(default_model_dir(), model)
    meta = json.loads((model / "model.json").read_text())
    meta["exits"] = []
    (model / "model.json").write_text(json.dumps(meta))
    cfg = _stored_before_0023(tmp_path, f'model_dir = "{model}"')
    before = verdicts(cfg)
    lowered = 0.3
    symptomless = [pid for pid, r in before.items() if lowered <= r["score"] < 0.37]
    assert 0 < len(symptomless) < 20
    cfg.write_text(cfg.read_text() + f"threshold = {lowered}\n")
    out = reclassify(cfg)
    assert f"{400 - len(symptomless)} decided again from their stored score at threshold 0.3, early exits off" in out
    after = verdicts(cfg)
    assert all(r["outage"] == (r["score"] >= lowered) for r in after.values())
    assert all(after[pid]["symptom"] for pid in symptomless if after[pid]["outage"])


def test_status_and_metrics_count_verdicts_stored_before_their_settings_that_another_threshold_called(
        tmp_path: Path) -> None:
    # The service restarted with a raised threshold on an upgraded store: status and /metrics counted none of the
    # verdicts stored before, which went on counting the complaints the old threshold called. Those whose outage
    # call is not the one the service's threshold makes of their score were decided at another: counted as such.
    cfg = _stored_before_0023(tmp_path)
    before = verdicts(cfg)
    flipped = [pid for pid, r in before.items() if r["outage"] and r["score"] < RAISED]
    assert len(flipped) == 11
    cfg.write_text(cfg.read_text() + f"threshold = {RAISED}\n")
    config = load_config(cfg)
    service = Service(config, Path(config.store.path), ServiceOptions(jobs=(), http=True, http_port=0))
    service.start()
    try:
        port = bound_port(service)
        model = json.loads(CliRunner().invoke(main, ["--config", str(cfg), "status", "--format", "json"]).output)[
            "model"]
        assert (model["threshold"], model["verdicts_other_model"], model["verdicts_other_settings"]) == (RAISED, 0, 11)
        text = CliRunner().invoke(main, ["--config", str(cfg), "status"]).output.splitlines()
        assert text[3] == ("11 posts of the last 24 h count a verdict decided at another threshold or early-exit "
                           "setting than the service's (threshold 0.8, early exits on): after a change of [classifier] "
                           "threshold or early_exit, `miner reclassify --since` decides them again")
        lines = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text.splitlines()
        assert "miner_verdicts_other_settings 11" in lines
        reclassify(cfg)
        model = json.loads(CliRunner().invoke(main, ["--config", str(cfg), "status", "--format", "json"]).output)[
            "model"]
        assert model["verdicts_other_settings"] == 0
    finally:
        service.stop()

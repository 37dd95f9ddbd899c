"""The NAB scorer on hand-computed cases."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from nab_score import PROFILES, normalised, probation_rows, scaled_sigmoid, score_series

T0 = datetime(2015, 3, 1)
N = 1000  # probation: 150 rows
TS = [T0 + timedelta(minutes=5 * i) for i in range(N)]
WINDOW = (TS[400], TS[499])  # 100 rows
STD = PROFILES["standard"]


def detections(*rows: int) -> list[bool]:
    out = [False] * N
    for r in rows:
        out[r] = True
    return out


def test_probation_is_15_percent_capped_at_750() -> None:
    assert probation_rows(1000) == 150
    assert probation_rows(10_000) == 750


def test_scaled_sigmoid_anchor_points() -> None:
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(-1.0) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert scaled_sigmoid(3.0) == -1.0


def test_no_detections_scores_zero_and_perfect_scores_100() -> None:
    empty = score_series(TS, detections(), [WINDOW], STD)
    assert empty.raw == -1.0 and normalised([empty]) == 0.0
    perfect = score_series(TS, detections(400), [WINDOW], STD)
    assert perfect.raw == pytest.approx(1.0) and normalised([perfect]) == pytest.approx(100.0)


def test_late_detection_in_window_scores_by_position_and_later_hits_are_ignored() -> None:
    s = score_series(TS, detections(450, 460, 499), [WINDOW], STD)
    # Row 450 is 50 rows from the window's end: position -(499 - 450 + 1) / 100 = -0.5.
    expected_tp = scaled_sigmoid(-0.5) / scaled_sigmoid(-1.0)
    assert s.raw == pytest.approx(expected_tp) and s.found == 1 and s.false_positives == 0
    assert normalised([s]) == pytest.approx(100 * (expected_tp + 1) / 2)


def test_one_false_positive_before_any_window_costs_a_fp() -> None:
    s = score_series(TS, detections(400, 200), [WINDOW], STD)
    assert s.raw == pytest.approx(1.0 - 0.11) and s.false_positives == 1
    assert normalised([s]) == pytest.approx(100 * (1.0 - 0.11 + 1) / 2)


def test_false_positive_after_a_window_costs_by_distance() -> None:
    s = score_series(TS, detections(400, 549), [WINDOW], STD)
    # 50 rows past the end of a 100-row window: distance 50 / 99.
    assert s.raw == pytest.approx(1.0 + 0.11 * scaled_sigmoid(50 / 99))
    far = score_series(TS, detections(400, 900), [WINDOW], STD)
    assert far.raw == pytest.approx(1.0 - 0.11)


def test_detections_in_probation_are_ignored_and_profiles_weigh_misses() -> None:
    s = score_series(TS, detections(10, 20), [WINDOW], STD)
    assert s.false_positives == 0 and s.raw == -1.0
    low_fn = score_series(TS, detections(), [WINDOW], PROFILES["reward_low_FN_rate"])
    assert low_fn.raw == -2.0 and normalised([low_fn]) == 0.0


def test_normalisation_sums_over_series() -> None:
    a = score_series(TS, detections(400), [WINDOW], STD)
    b = score_series(TS, detections(), [WINDOW], STD)
    assert normalised([a, b]) == pytest.approx(50.0)
    (delay,) = score_series(TS, detections(400), [WINDOW], STD).delays
    assert delay == pytest.approx(-247.5)  # minutes from the window centre, half of 99 five-minute rows


def run_nab_bench(shared: Path) -> subprocess.CompletedProcess[str]:
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "MINER_SHARED_DATA": str(shared), "PYTHONPATH": str(root)}
    return subprocess.run([sys.executable, str(root / "bench" / "nab_bench.py")], capture_output=True, text=True,
                          env=env, timeout=300)


def test_nab_bench_reads_its_series_from_miner_shared_data(tmp_path: Path) -> None:
    """bench/README.md: the benches read their data from $MINER_SHARED_DATA; the NAB one read a fixed folder."""
    nab = tmp_path / "nab"
    (nab / "realTweets").mkdir(parents=True)
    counts = [3 + i % 4 + (60 if 700 <= i < 712 else 0) for i in range(N)]
    (nab / "realTweets" / "Twitter_volume_TEST.csv").write_text(
        "timestamp,value\n" + "".join(f"{t:%Y-%m-%d %H:%M:%S},{c}\n" for t, c in zip(TS, counts, strict=True)),
        encoding="utf-8")
    (nab / "windows.json").write_text(
        f'{{"realTweets/Twitter_volume_TEST.csv": [["{TS[650]}", "{TS[749]}"]]}}', encoding="utf-8")
    result = run_nab_bench(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Twitter_volume_TEST" in result.stdout and "1/1" in result.stdout, result.stdout


def test_nab_bench_without_its_data_says_where_to_get_it(tmp_path: Path) -> None:
    result = run_nab_bench(tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"no NAB data in {tmp_path / 'nab'}" in result.stderr and "docs/detector.md" in result.stderr


def test_run_all_answers_help_without_running_a_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    import run_all

    with pytest.raises(SystemExit) as stopped:
        run_all.main(["--help"])
    assert stopped.value.code == 0
    out = capsys.readouterr().out
    assert "every benchmark in turn" in out and "== bench/" not in out

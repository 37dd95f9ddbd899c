"""The streaming detector: warm-up, floors, persistence, hysteresis, resolve, cool-down, gaps, state, restart."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from miner.detect.grid import due_buckets
from miner.detect.params import DetectorParams
from miner.detect.zscore import (
    BucketScore,
    DetectorState,
    detect_series,
    stabilise,
    step,
    unstabilise,
)
from miner.settings import SettingsError, build

T0 = datetime(2025, 3, 3, 0, 0, tzinfo=UTC)
STEP = timedelta(minutes=5)
P = DetectorParams()


def poisson(mean: float, n: int, seed: int = 1) -> list[float]:
    return [float(x) for x in np.random.default_rng(seed).poisson(mean, n)]


def rows(counts: list[float], start: datetime = T0) -> list[tuple[datetime, float]]:
    return [(start + i * STEP, c) for i, c in enumerate(counts)]


def day_buckets(days: float) -> int:
    return int(days * 288)


def opened(scores: list[BucketScore]) -> list[int]:
    return [i for i, s in enumerate(scores) if s.opened]


def test_outage_after_history_opens_once_and_resolves() -> None:
    n = day_buckets(2)
    counts = poisson(20, n) + [200.0] * 12 + poisson(20, 60, seed=2)
    scores = detect_series(P, rows(counts))
    assert opened(scores) == [n + P.persist_k - 1]  # the k-th anomalous bucket opens it
    assert scores[n + 5].open and scores[n + 5].score > P.z_open
    resolved = [i for i, s in enumerate(scores) if s.resolved]
    assert resolved == [n + 12 + int(P.quiet_minutes / 5) - 1]
    assert not scores[-1].open


def test_warm_up_suppresses_openings() -> None:
    counts = [10.0] * 20 + [500.0] * 6 + [10.0] * 20
    assert opened(detect_series(P, rows(counts))) == []
    cold = replace(P, warmup_hours=0.5)
    assert opened(detect_series(cold, rows(counts))) != []


def test_zero_variance_history_gives_finite_scores_and_small_jumps_are_not_outages() -> None:
    counts = [0.0] * day_buckets(1) + [3.0] * 12
    scores = detect_series(P, rows(counts))
    assert all(math.isfinite(s.score) for s in scores)
    assert opened(scores) == []  # 0 -> 3 posts: the noise floor keeps z small and min_count is not met
    assert not any(s.anomalous for s in scores)


def test_floors_block_openings_that_z_alone_would_allow() -> None:
    counts = [2.0] * day_buckets(1) + [6.0] * 12
    loose = replace(P, z_open=1.5, z_close=1.0, min_count=0.0, min_ratio=1.0)
    assert opened(detect_series(loose, rows(counts))) != []
    strict = replace(loose, min_count=7.0)
    assert opened(detect_series(strict, rows(counts))) == []
    relative = replace(loose, min_ratio=4.0)  # 6 posts against the usual 2 is not 4 times the normal
    assert opened(detect_series(relative, rows(counts))) == []


def test_threshold_is_the_count_from_which_the_detector_takes_a_bucket_for_anomalous() -> None:
    # What the alert chart draws its band to. Drawn to upper (z_open alone), a quiet service's bars of 4 complaints
    # (usual 0.01, upper 3.1) rose above it, though min_count (5) kept the detector from taking them for anomalous.
    quiet = poisson(0.05, day_buckets(2), seed=4)
    quiet[day_buckets(1):day_buckets(1) + 3] = [4.0] * 3
    quiet[day_buckets(1.5):day_buckets(1.5) + 4] = [9.0] * 4
    busy = poisson(40, day_buckets(2), seed=5)
    busy[day_buckets(1):day_buckets(1) + 4] = [70.0, 90.0, 300.0, 60.0]
    for params in (P, replace(P, min_count=2.0), replace(P, min_ratio=6.0), replace(P, warmup_hours=0.0)):
        for counts in (quiet, busy):
            scores = detect_series(params, rows(counts))
            assert [s.anomalous for s in scores] == [s.threshold is not None and s.count >= s.threshold
                                                     for s in scores]
            assert any(s.anomalous for s in scores)
    scores = detect_series(P, rows(quiet))
    fours = [s for s in scores if s.count == 4.0 and s.upper < 4.0]
    assert len(fours) >= 2 and all(s.threshold == P.min_count and not s.anomalous for s in fours)
    assert all(s.threshold is None for s in scores[:int(P.warmup_hours * 12)])


def test_persistence_needs_k_of_n_anomalous_buckets() -> None:
    base = poisson(20, day_buckets(1))
    single = [*base, 300.0, *poisson(20, 30, seed=3)]
    assert opened(detect_series(P, rows(single))) == []
    one_shot = replace(P, persist_k=1, persist_n=1)
    assert opened(detect_series(one_shot, rows(single))) == [len(base)]
    spaced = [*base, 300.0, 20.0, 300.0, *poisson(20, 30, seed=3)]
    assert opened(detect_series(replace(P, persist_k=2, persist_n=3), rows(spaced))) == [len(base) + 2]


def test_hysteresis_keeps_an_incident_open_between_the_thresholds() -> None:
    state = None
    for ts, c in rows(poisson(50, day_buckets(1))):
        state, s = step(P, state, ts, c)
    t = T0 + day_buckets(1) * STEP
    for _ in range(4):
        state, s = step(P, state, t, 400.0)
        t += STEP
    assert state is not None and state.open
    # The baseline is frozen, so the band tells which count sits halfway between z_close and z_open.
    expected = stabilise(s.baseline)
    sd = (stabilise(s.upper) - expected) / P.z_open
    between = unstabilise(expected + (P.z_close + P.z_open) / 2 * sd)
    for _ in range(int(P.quiet_minutes / 5) * 3):
        state, s = step(P, state, t, between)
        t += STEP
        assert P.z_close <= s.score < P.z_open and not s.anomalous
    assert state.open
    for _ in range(int(P.quiet_minutes / 5)):
        state, s = step(P, state, t, s.baseline)
        t += STEP
    assert s.resolved and not state.open


def test_cool_down_turns_a_flapping_outage_into_one_incident() -> None:
    base = poisson(20, day_buckets(1))
    burst = [300.0] * 6
    quiet = poisson(20, int(P.quiet_minutes / 5) + 6, seed=4)
    counts = base + burst + quiet + burst + quiet
    scores = detect_series(P, rows(counts))
    assert len(opened(scores)) == 1
    assert sum(s.resolved for s in scores) == 2 and sum(s.reopened for s in scores) == 1
    no_cool = replace(P, cooldown_minutes=0.0)
    assert len(opened(detect_series(no_cool, rows(counts)))) == 2


def test_baseline_freezes_while_open() -> None:
    base = poisson(20, day_buckets(1))
    scores = detect_series(P, rows(base + [300.0] * 60))
    during = [s for s in scores[len(base):] if s.open]
    assert len(during) > 40
    assert max(s.baseline for s in during) < 30  # the outage did not become the new normal
    assert all(s.score > P.z_open for s in during)


def test_short_gap_counts_as_zero_buckets_and_can_resolve_an_incident() -> None:
    base = poisson(20, day_buckets(1))
    data = rows(base + [300.0] * 6)
    state = None
    for ts, c in data:
        state, s = step(P, state, ts, c)
    assert state is not None and state.open
    # 3 quiet hours are missing: filled with zero buckets, which are quiet, so the incident resolved in the gap.
    later = data[-1][0] + timedelta(hours=3)
    state, s = step(P, state, later, 20.0)
    assert s.resolved and not s.open and state.last == later


def test_long_gap_is_skipped_without_learning_zeros() -> None:
    base = poisson(20, day_buckets(1))
    state = None
    for ts, c in rows(base):
        state, _ = step(P, state, ts, c)
    assert state is not None
    before = state.seen
    later = T0 + len(base) * STEP + timedelta(hours=P.max_fill_hours + 1)
    state, s = step(P, state, later, 20.0)
    assert state.seen == before + 1  # only the new bucket was learned from
    assert abs(s.score) < P.z_open


def test_due_buckets_lists_complete_buckets_since_the_last() -> None:
    now = T0 + timedelta(minutes=17)
    assert due_buckets(P, None, now) == [T0 + 2 * STEP]
    state = DetectorState(last=T0)
    assert due_buckets(P, state, now) == [T0 + STEP, T0 + 2 * STEP]
    assert due_buckets(P, DetectorState(last=T0 + 2 * STEP), now) == []
    far = T0 + timedelta(days=2)
    due = due_buckets(P, state, far)
    assert len(due) == int(P.max_fill_hours * 12) + 1 and due[-1] == far - STEP


def test_state_round_trips_through_json() -> None:
    state = None
    for ts, c in rows(poisson(20, 500) + [300.0] * 4):
        state, _ = step(P, state, ts, c)
    assert state is not None and state.open
    text = state.to_json()
    assert DetectorState.from_json(text) == state
    assert len(text) < 2000
    with pytest.raises(ValueError):
        DetectorState.from_json('{"v": 2}')
    with pytest.raises(ValueError):
        DetectorState.from_json("not json")
    for not_an_object in ("[]", "null", "1", '"v"'):  # raised AttributeError, which the repair did not expect
        with pytest.raises(ValueError, match="not a JSON object"):
            DetectorState.from_json(not_an_object)


def test_restart_from_stored_state_matches_an_uninterrupted_run_and_replays_change_nothing() -> None:
    data = rows(poisson(20, day_buckets(1)) + [300.0] * 20 + poisson(20, 40, seed=5))
    straight = detect_series(P, data)
    cut = len(data) - 30
    state = None
    for ts, c in data[:cut]:
        state, _ = step(P, state, ts, c)
    assert state is not None
    stored = state.to_json()
    resumed = DetectorState.from_json(stored)
    # The restart replays a few buckets it had already processed: no-ops.
    for ts, c in data[cut - 10:cut]:
        again, s = step(P, resumed, ts, c)
        assert again == resumed and s.replayed and not s.opened and not s.resolved
    out = []
    for ts, c in data[cut:]:
        resumed, s = step(P, resumed, ts, c)
        out.append(s)
    assert out == straight[cut:]


def test_seasonal_baseline_follows_a_smooth_daily_cycle() -> None:
    def day(seed: int) -> list[float]:
        means = 35 + 25 * np.sin(np.arange(288) / 288 * 2 * np.pi)
        return [float(x) for x in np.random.default_rng(seed).poisson(means)]

    counts = [c for seed in range(5) for c in day(seed)]
    scores = detect_series(P, rows(counts))
    assert opened(scores) == []
    last_day = scores[-288:]
    assert last_day[6 * 12].baseline > 45 and last_day[18 * 12].baseline < 20  # 06:00 peak, 18:00 trough
    # The 06:00 peak's count at 18:00 is an outage.
    state = None
    for ts, c in rows(counts):
        state, _ = step(P, state, ts, c)
    t = T0 + len(counts) * STEP + timedelta(hours=18)
    state, _ = step(P, state, t, 60.0)
    state, s = step(P, state, t + STEP, 60.0)
    assert s.opened


def test_a_new_daily_peak_is_learned_within_days_despite_the_freeze() -> None:
    def day(seed: int) -> list[float]:
        hours = np.repeat(np.arange(24), 12)
        means = np.where((hours >= 12) & (hours < 16), 60.0, 10.0)
        return [float(x) for x in np.random.default_rng(seed).poisson(means)]

    scores = detect_series(P, rows([c for seed in range(7) for c in day(seed)]))
    days = sorted({i // 288 for i in opened(scores)})
    assert days and days[0] == 0 and days[-1] <= 4  # a surprise at first, then the usual afternoon


def test_params_validate_through_the_settings_builder() -> None:
    with pytest.raises(SettingsError) as err:
        build(DetectorParams, {"z_open": 2.0, "z_close": 3.0}, "detector")
    assert err.value.key == "detector.z_close"
    with pytest.raises(SettingsError) as err:
        build(DetectorParams, {"persist_k": 4, "persist_n": 3}, "detector")
    assert err.value.key == "detector.persist_k"
    with pytest.raises(SettingsError):
        build(DetectorParams, {"bogus": 1}, "detector")
    assert build(DetectorParams, {}, "detector") == DetectorParams()


def test_bursty_normal_traffic_widens_the_scale() -> None:
    rng = np.random.default_rng(11)
    counts = [float(x) for x in rng.poisson(20, day_buckets(6))]
    for i in range(100, len(counts), 47):  # two-bucket bursts every four hours are this series' normal
        counts[i] = counts[i + 1] = float(rng.integers(40, 150))

    def alarming_after(n: int, burst: float) -> bool:
        state = None
        for ts, c in rows(counts[:n]):
            state, _ = step(P, state, ts, c)
        t = T0 + n * STEP
        state, _ = step(P, state, t, burst)
        _, s = step(P, state, t + STEP, burst)
        return s.anomalous

    assert alarming_after(day_buckets(0.5) + 10, 80.0)  # before bursts were seen, 80 against 20 is an outage
    assert not alarming_after(day_buckets(6) - 10, 80.0)  # after days of bursts up to 150, it is not
    assert alarming_after(day_buckets(6) - 10, 600.0)


def test_weekday_offsets_keep_a_quiet_weekend_from_making_every_monday_an_outage() -> None:
    # T0 is a Monday: four weeks of 40 complaints per bucket on weekdays and 8 at weekends.
    means = [8.0 if (i // 288) % 7 >= 5 else 40.0 for i in range(day_buckets(28))]
    counts = [float(x) for x in np.random.default_rng(3).poisson(means)]
    scores = detect_series(P, rows(counts))
    assert opened(scores[day_buckets(7):]) == []  # no Monday climbs out of a weekend as an outage
    assert scores[day_buckets(21)].baseline > 25  # Monday 00:00 expects a weekday's count ...
    assert scores[day_buckets(20)].baseline < 20  # ... Sunday 00:00 a weekend's, once the offsets are in use


def test_state_written_before_weekday_offsets_still_loads() -> None:
    state, _ = step(P, None, T0, 10.0)
    raw = json.loads(state.to_json())
    del raw["weekday"], raw["weekday_n"]
    old = DetectorState.from_json(json.dumps(raw))
    assert old.weekday == (0.0,) * 7 and old.level == state.level


def test_quiet_minutes_zero_resolves_at_the_first_quiet_bucket_not_during_the_outage() -> None:
    params = replace(P, quiet_minutes=0.0)
    base = poisson(20, day_buckets(1))
    scores = detect_series(params, rows(base + [300.0] * 12 + poisson(20, 6, seed=3)))
    during = scores[len(base):len(base) + 12]
    assert sum(s.opened for s in during) == 1
    assert not any(s.resolved or s.reopened for s in during)
    assert all(s.open for s in during[params.persist_k - 1:])
    # The outage over, the first quiet bucket resolves it.
    assert scores[len(base) + 12].resolved and not scores[len(base) + 12].open


def _local_day(zone: str, start: datetime, days: int, seed: int = 3) -> list[tuple[datetime, float]]:
    """Counts per 5-minute bucket of a service used by day in ``zone``: 2 at night, 30 from 8:00 to 21:00 local."""
    rng, tz = np.random.default_rng(seed), ZoneInfo(zone)
    starts = [start + i * STEP for i in range(day_buckets(days))]
    return [(t, float(rng.poisson(30.0 if 8 <= t.astimezone(tz).hour < 21 else 2.0))) for t in starts]


def test_a_daily_pattern_kept_in_local_time_opens_nothing_when_the_clocks_change() -> None:
    # New York moves its clocks at 2026-03-08 07:00 UTC: the morning rise comes an hour earlier in UTC.
    change = datetime(2026, 3, 8, 7, tzinfo=UTC)
    counts = _local_day("America/New_York", change - timedelta(weeks=5), 42)
    after = {zone: [s for s in detect_series(replace(P, timezone=zone), counts)
                    if s.opened and s.bucket_start >= change] for zone in ("UTC", "America/New_York")}
    assert after["America/New_York"] == [] and len(after["UTC"]) >= 3


@pytest.mark.parametrize("zone", ["Asia/Kolkata", "Asia/Kathmandu", "Asia/Tehran", "Pacific/Chatham"])
def test_a_changed_timezone_of_a_half_hour_offset_moves_each_hour_to_the_hour_its_buckets_start_in(zone: str) -> None:
    # Hourly buckets start at :00 UTC, in Kolkata (+5:30) at :30: the bucket from 0:00 UTC is in the hour from 5:00
    # there. The shift was the difference of the clocks rounded, 6 hours: each bucket got the offset of the UTC hour
    # before its own, a whole day's rise or fall an hour early.
    params = replace(P, bucket_minutes=60)
    state = None
    for at, count in [(T0 + timedelta(hours=h), c) for h, c in enumerate(poisson(10, 24 * 7))]:
        state, _ = step(params, state, at, count + (40.0 if 3 <= at.hour < 15 else 0.0))
    assert state is not None and state.last is not None
    at = state.last + timedelta(hours=1)
    moved = state.rezoned(zone, at)
    buckets = [at + timedelta(hours=h) for h in range(24)]
    assert [moved.season[t.astimezone(ZoneInfo(zone)).hour] for t in buckets] == [state.season[t.hour] for t in buckets]


@pytest.mark.parametrize("seed", [2, 4])
def test_buckets_wider_than_an_hour_open_nothing_when_the_clocks_change(seed: int) -> None:
    # 2-hour buckets start every other hour: in New York's winter at 19:00, 21:00 ... local, in summer at 20:00,
    # 22:00 ...: after the change every bucket started in an hour never learned, scored against the bare level.
    change = datetime(2026, 3, 8, 7, tzinfo=UTC)
    fine = _local_day("America/New_York", change - timedelta(weeks=5), 42, seed=seed)
    wide = [(fine[i][0], sum(c for _, c in fine[i:i + 24])) for i in range(0, len(fine), 24)]
    params = replace(P, bucket_minutes=120, timezone="America/New_York")
    assert [s for s in detect_series(params, wide) if s.opened and s.bucket_start >= change] == []


def test_a_changed_timezone_keeps_the_daily_pattern_learned() -> None:
    counts = _local_day("America/New_York", T0, 24)
    learned, tail = counts[:day_buckets(21)], counts[day_buckets(21):]
    state = None
    for at, count in learned:
        state, _ = step(P, state, at, count)  # in UTC: the rise at 13:00
    assert state is not None and state.zone == "UTC"
    local = replace(P, timezone="America/New_York")
    scores = []
    for at, count in tail:
        state, score = step(local, state, at, count)
        scores.append(score)
    assert state.zone == "America/New_York" and opened(scores) == []
    assert DetectorState.from_json(state.to_json()) == state


def test_a_state_in_a_zone_unknown_here_is_scored_on_the_configured_clock() -> None:
    # A store moved to a host whose time zone database lacks the zone it was learned in: raising stopped detection.
    state, _ = step(P, None, T0, 3.0)
    moved = DetectorState.from_json(state.to_json().replace('"zone":"UTC"', '"zone":"Mars/Olympus_Mons"'))
    later, score = step(replace(P, timezone="Europe/Berlin"), moved, T0 + STEP, 3.0)
    assert later.zone == "Europe/Berlin" and later.season == state.season and not score.replayed


@pytest.mark.parametrize("start", [[100.0], [1000.0], [50.0] * 12, [50.0] * 24],
                         ids=["first bucket 10x", "first bucket 100x", "first hour 5x", "first two hours 5x"])
def test_history_begun_in_a_spike_or_an_outage_is_not_learned_as_the_usual_level(start: list[float]) -> None:
    # A service added or started during an outage: its usual 10 complaints a bucket come after. That first level was
    # learned, the hour-of-day and weekday offsets made up the difference and clipping kept it: a 5x outage a day later
    # (after 1000: any day of the next two weeks) opened nothing.
    k = len(start) + day_buckets(1)
    counts = start + poisson(10, day_buckets(2))
    counts[k:k + 12] = [50.0] * 12
    scores = detect_series(P, rows(counts))
    assert scores[k - 1].baseline < 12
    assert [i for i in opened(scores) if i < k + 12] == [k + P.persist_k - 1]

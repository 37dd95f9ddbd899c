"""Streaming robust z-score detector over one service's complaint counts per bucket.

One call to :func:`step` processes one bucket and returns the new state and the bucket's score. The state is
a small frozen record that round-trips through JSON, so the service can store it per service and resume after
a restart; a bucket at or before the state's last bucket is a no-op, so replaying stored buckets is harmless.

Model, in the Anscombe space ``y = 2*sqrt(count + 3/8)`` where Poisson noise has unit variance:

- expected ``y`` = a de-seasonalised level (EWMA) plus an hour-of-day offset once ``season_min_days`` of
  history exist, plus a day-of-week offset once ``weekday_min_days`` exist (weekends are quieter for most
  services; without it, every Monday morning climbs against a baseline that learned Sunday);
- the noise scale is the largest of: an EWMA of absolute residuals (the core noise), a running
  ``tail_quantile`` of positive residuals rescaled to a standard deviation (how bursty this service's normal
  traffic is, so a brand with daily viral spikes is not paged for each), and ``noise_floor`` (Poisson noise:
  0 -> 3 posts is never a big z);
- residuals are clipped to ``clip_sigmas`` before they update anything; while an incident is open (up to
  ``max_freeze_hours``, and after it in each anomalous bucket that keeps it open) level, scale and tail freeze, so
  an outage does not become the new normal, and only the hour-of-day and day-of-week offsets keep learning from
  clipped residuals, so a pattern that recurs daily is learned in days;
- in the first two hours of history a bucket ``clip_sigmas`` below the expected value starts the learning again from
  it, and so does the third day of a drop begun in the first day (:mod:`miner.detect.restart`): what came before
  was a spike or an outage the service started in, not its usual level;
- a bucket is anomalous when z >= ``z_open`` and the count clears both an absolute and a relative floor;
  an incident opens when ``persist_k`` of the last ``persist_n`` buckets are anomalous, stays open while
  z >= ``z_close`` and resolves after ``quiet_minutes`` of quiet buckets; an opening within
  ``cooldown_minutes`` of a resolve re-opens that incident (``reopened``) instead of starting a new one, so a
  flapping outage stays one incident.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from statistics import NormalDist
from typing import Any
from zoneinfo import ZoneInfo

from miner.detect import restart
from miner.detect.params import DetectorParams
from miner.timeutil import zone_or_none

SEASON_SLOTS = 24  # hour of day, on the clock of DetectorParams.timezone
WEEK_SLOTS = 7  # day of week, on the same clock
_MAD_TO_SD = 1.2533  # mean absolute deviation -> standard deviation, for normal noise


def stabilise(count: float) -> float:
    """Anscombe transform: Poisson counts get a standard deviation of about 1 whatever their mean."""
    return 2.0 * math.sqrt(max(count, 0.0) + 0.375)


def unstabilise(y: float) -> float:
    return max((y / 2.0) ** 2 - 0.375, 0.0)


@dataclass(frozen=True)
class DetectorState:
    """Everything the detector remembers about one service between buckets."""

    last: datetime | None = None  # start of the last processed bucket
    seen: int = 0  # buckets of history learned from
    level: float = 0.0  # de-seasonalised expected value, stabilised units
    scale: float = 0.0  # EWMA of absolute residuals, stabilised units
    tail: float = 0.0  # running tail_quantile of the positive residuals: how bursty normal traffic is
    season: tuple[float, ...] = (0.0,) * SEASON_SLOTS  # hour-of-day offsets from the level
    season_n: tuple[int, ...] = (0,) * SEASON_SLOTS  # updates each offset has had
    weekday: tuple[float, ...] = (0.0,) * WEEK_SLOTS  # day-of-week offsets from level + hour of day
    weekday_n: tuple[int, ...] = (0,) * WEEK_SLOTS
    hits: int = 0  # bit i set: the bucket i steps ago was anomalous
    open: bool = False
    opened_at: datetime | None = None
    quiet: int = 0  # consecutive quiet buckets while open
    resolved_at: datetime | None = None  # last resolve: openings within the cool-down re-open that incident
    zone: str = "UTC"  # the time zone whose hours and weekdays the offsets are learned in
    drop: tuple[int, int, float] = (0, 0, 0.0)  # a drop begun in the first day: restart.tracked

    def to_json(self) -> str:
        def ts(value: datetime | None) -> float | None:
            return None if value is None else value.timestamp()

        return json.dumps(
            {"v": 1, "last": ts(self.last), "seen": self.seen, "level": self.level, "scale": self.scale,
             "tail": self.tail,
             "season": list(self.season), "season_n": list(self.season_n),
             "weekday": list(self.weekday), "weekday_n": list(self.weekday_n), "hits": self.hits,
             "open": self.open, "opened_at": ts(self.opened_at), "quiet": self.quiet,
             "resolved_at": ts(self.resolved_at), "zone": self.zone, "drop": list(self.drop)},
            separators=(",", ":"),
        )

    def rewound(self, to: datetime, width: timedelta, stepped: int | None = None) -> DetectorState:
        """This state with its last bucket at ``to`` and no time after it: for a state stepped by a clock that was
        ahead, whose buckets (``width`` wide) are still in the future. What it learned from them (empty then) stays
        learned, but its count of quiet buckets leaves out the ``stepped`` it scored (None: every one after ``to``)."""
        def clamp(value: datetime | None) -> datetime | None:
            return None if value is None else min(value, to)
        ahead = 0 if self.last is None else max(0, (self.last - to) // width if stepped is None else stepped)
        return replace(self, last=clamp(self.last), opened_at=clamp(self.opened_at),
                       resolved_at=clamp(self.resolved_at), quiet=max(0, self.quiet - ahead))

    def rezoned(self, zone: str, at: datetime) -> DetectorState:
        """This state with its hour-of-day offsets moved to the hours of ``zone``, as its clock and the state's
        differ at ``at``: a changed detector.timezone keeps the daily pattern learned, instead of scoring each hour
        against another hour's offset for days. The day-of-week offsets stay (a few hours of each day move). The
        shift is between the hours ``at`` (a bucket's start) falls in on the two clocks, not their offsets' difference
        rounded: 0:00 UTC is in the hour from 5:00 in Kolkata (+5:30), not 6:00. A zone unknown here moves nothing."""
        old = zone_or_none(self.zone)  # a zone unknown here raised, and stopped every service's detector
        shift = at.astimezone(ZoneInfo(zone)).hour - at.astimezone(old or ZoneInfo(zone)).hour

        def moved(values: tuple[Any, ...]) -> tuple[Any, ...]:
            return tuple(values[(hour - shift) % SEASON_SLOTS] for hour in range(SEASON_SLOTS))

        return replace(self, season=moved(self.season), season_n=moved(self.season_n), zone=zone)

    @classmethod
    def from_json(cls, text: str) -> DetectorState:
        """Parse :meth:`to_json` output; raises ValueError on anything else."""
        try:
            data: Any = json.loads(text)
            if not isinstance(data, dict):  # '[]', 'null' or '1' raised AttributeError, which nobody expected
                raise ValueError(f"not a JSON object: {type(data).__name__}")
            if data.get("v") != 1:
                raise ValueError(f"unknown detector state version {data.get('v')!r}")

            def dt(value: Any) -> datetime | None:
                return None if value is None else datetime.fromtimestamp(float(value), UTC)

            season = tuple(float(x) for x in data["season"])
            season_n = tuple(int(x) for x in data["season_n"])
            if len(season) != SEASON_SLOTS or len(season_n) != SEASON_SLOTS:
                raise ValueError("season must have 24 slots")
            # States written before the day-of-week offset existed have none: it starts learning from zero.
            weekday = tuple(float(x) for x in data.get("weekday", (0.0,) * WEEK_SLOTS))
            weekday_n = tuple(int(x) for x in data.get("weekday_n", (0,) * WEEK_SLOTS))
            if len(weekday) != WEEK_SLOTS or len(weekday_n) != WEEK_SLOTS:
                raise ValueError("weekday must have 7 slots")
            return cls(
                last=dt(data["last"]), seen=int(data["seen"]), level=float(data["level"]),
                scale=float(data["scale"]), tail=float(data["tail"]), season=season, season_n=season_n,
                weekday=weekday, weekday_n=weekday_n, hits=int(data["hits"]),
                open=bool(data["open"]), opened_at=dt(data["opened_at"]), quiet=int(data["quiet"]),
                resolved_at=dt(data["resolved_at"]), zone=str(data.get("zone", "UTC")),
                # States written before the drop was tracked: none begun.
                drop=_drop(data.get("drop", (0, 0, 0.0))),
            )
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"bad detector state: {exc}") from None


def _drop(value: Any) -> tuple[int, int, float]:
    buckets, risen, below = value
    return int(buckets), int(risen), float(below)


@dataclass(frozen=True)
class BucketScore:
    """The detector's verdict on one bucket. Counts are complaints per bucket."""

    bucket_start: datetime
    count: float
    score: float  # z-score of the count against the baseline, in stabilised units
    baseline: float  # expected count
    upper: float  # the count that would reach z_open (before the absolute and relative floors)
    anomalous: bool  # this bucket alone clears z_open and both floors
    opened: bool  # an incident opened at this bucket
    resolved: bool  # the open incident resolved at (or, after a gap, before) this bucket
    open: bool  # an incident is open after this bucket
    replayed: bool = False  # the bucket was at or before the state's last bucket: nothing changed
    reopened: bool = False  # the incident resolved less than cooldown_minutes ago came back at this bucket
    # The count from which this bucket is anomalous: upper or the floors (count_floor), whichever is higher; None where
    # no count is (warm-up, the first bucket) and for a replayed bucket. What the alert chart draws its band to.
    threshold: float | None = None


def _alpha(halflife_buckets: float, n: int) -> float:
    """EWMA weight, starting as a running mean so early estimates are not biased to the initial zero."""
    alpha = 1.0 - math.pow(0.5, 1.0 / max(halflife_buckets, 1e-9))
    return max(alpha, 1.0 / (n + 1))


def _buckets(params: DetectorParams, minutes: float) -> float:
    return minutes / params.bucket_minutes


def _slots(params: DetectorParams, bucket_start: datetime) -> tuple[int, int]:
    """(hour of day, day of week) of a bucket's start on the clock of ``params.timezone``."""
    t = bucket_start.astimezone(ZoneInfo(params.timezone))
    return t.hour, t.weekday()


def _season_on(params: DetectorParams, state: DetectorState) -> bool:
    return state.seen >= _buckets(params, params.season_min_days * 1440.0)


def _hour_offset(state: DetectorState, slot: int) -> float:
    """The hour-of-day offset of ``slot``; for an hour no bucket has started in yet, the mean of the nearest hours
    that have one.

    Buckets wider than an hour start in some hours only (120 minutes: every other hour), and which ones moves with
    the clock of ``timezone``: a change of daylight saving time made every bucket start in an hour never learned,
    whose offset of 0 put the whole day at the level, so each busy hour opened an incident. With 90 minutes a third
    of the hours were; a changed timezone can leave some unlearned too.
    """
    if state.season_n[slot] or not any(state.season_n):
        return state.season[slot]
    for distance in range(1, SEASON_SLOTS // 2 + 1):
        near = {(slot - distance) % SEASON_SLOTS, (slot + distance) % SEASON_SLOTS}
        learned = [state.season[h] for h in near if state.season_n[h]]
        if learned:
            return sum(learned) / len(learned)
    return state.season[slot]  # unreachable: some hour has been learned


def _expected(params: DetectorParams, state: DetectorState, slot: int, day: int) -> float:
    season = _hour_offset(state, slot) if _season_on(params, state) else 0.0
    return state.level + season + _weekday(params, state, day)


def _weekday(params: DetectorParams, state: DetectorState, day: int) -> float:
    """The day-of-week offset added to the expected count: zero until ``weekday_min_days`` of history.

    The offsets learn from the first day and the level is always measured net of them, so until then a quiet
    weekend is scored against the busier weekdays' level: it looks quieter than usual (never an alert), and the
    level does not sink over the weekend for Monday to climb out of as an "outage".
    """
    return state.weekday[day] if state.seen >= _buckets(params, params.weekday_min_days * 1440.0) else 0.0


def _sd(params: DetectorParams, state: DetectorState) -> float:
    """Noise scale: the larger of the core (mean absolute residual) and the tail (bursts that normal traffic
    has had) estimates, never below the Poisson floor."""
    core = _MAD_TO_SD * state.scale
    tail = state.tail / NormalDist().inv_cdf(params.tail_quantile) if params.tail_quantile > 0.5 else 0.0
    return max(core, tail, params.noise_floor)


def _learn(
    params: DetectorParams, state: DetectorState, slot: int, day: int, y: float, resid: float, sd: float,
    *, season_only: bool = False,
) -> DetectorState:
    """Update level, scale and the seasonal offsets from one bucket, with its residual clipped.

    ``season_only`` (while an incident is open) still nudges the hour-of-day and day-of-week offsets by the
    clipped residual: level and scale stay frozen, but a pattern that recurs every day at that hour is learned
    over days instead of opening an incident every day forever.
    """
    limit = params.clip_sigmas * sd
    clipped = max(-limit, min(limit, resid)) if state.seen > 0 else resid
    y_c = y - resid + clipped
    n = state.seen
    if season_only:
        return _learn_offsets(params, state, slot, day, y_c, state.level)
    a_level = _alpha(_buckets(params, params.level_halflife_hours * 60.0), n)
    a_scale = _alpha(_buckets(params, params.scale_halflife_hours * 60.0), n)
    if n == 0:
        return replace(state, seen=1, level=y, scale=0.0, tail=0.0)
    drop = restart.tracked(params, n, state.drop, y, y - resid)
    if restart.due(params, n, drop[0], resid < -limit):
        # History begun in a spike or an outage (a service added or started during one): this is the usual level.
        blank = DetectorState()
        return replace(state, seen=1, level=y, scale=0.0, tail=0.0, season=blank.season, season_n=blank.season_n,
                       weekday=blank.weekday, weekday_n=blank.weekday_n, drop=blank.drop)
    season = _hour_offset(state, slot) if _season_on(params, state) else state.season[slot]
    level = state.level + a_level * (y_c - season - state.weekday[day] - state.level)
    scale = state.scale + a_scale * (abs(clipped) - state.scale)
    # Stochastic-approximation quantile: steps up by ~p when exceeded, down by ~(1-p) otherwise.
    eta = params.tail_rate * max(_MAD_TO_SD * state.scale, params.noise_floor)
    tail = state.tail + eta * (params.tail_quantile - (1.0 if resid <= state.tail else 0.0))
    state = replace(state, seen=n + 1, level=level, scale=scale, tail=tail, drop=drop)
    return _learn_offsets(params, state, slot, day, y_c, level)


def _learn_offsets(
    params: DetectorParams, state: DetectorState, slot: int, day: int, y_c: float, level: float
) -> DetectorState:
    """Move the hour-of-day offset, then the day-of-week offset, towards what the level leaves unexplained.

    Each half-life is counted in that slot's own updates, so every hour and every day adapts at the same pace;
    both start as running means. Both learn from the first day; :func:`_weekday` decides when the day-of-week
    offsets are added to the expected count.
    """
    per_hour = params.season_halflife_days * 1440.0 / params.bucket_minutes / SEASON_SLOTS
    season, season_n = list(state.season), list(state.season_n)
    weekday, weekday_n = list(state.weekday), list(state.weekday_n)
    season[slot] += _alpha(per_hour, season_n[slot]) * (y_c - level - weekday[day] - season[slot])
    season_n[slot] += 1
    per_day = params.weekday_halflife_weeks * 7 * 1440.0 / params.bucket_minutes / WEEK_SLOTS
    weekday[day] += _alpha(per_day, weekday_n[day]) * (y_c - level - season[slot] - weekday[day])
    weekday_n[day] += 1
    return replace(state, season=tuple(season), season_n=tuple(season_n), weekday=tuple(weekday),
                   weekday_n=tuple(weekday_n))


def _gap(params: DetectorParams, last: datetime, bucket_start: datetime) -> int:
    """Whole buckets missing between ``last`` and ``bucket_start``."""
    width = params.bucket_minutes * 60.0
    return max(round((bucket_start - last).total_seconds() / width) - 1, 0)


def step(
    params: DetectorParams, state: DetectorState | None, bucket_start: datetime, count: float
) -> tuple[DetectorState, BucketScore]:
    """Process one bucket. A bucket at or before ``state.last`` changes nothing (``replayed`` is set)."""
    if bucket_start.tzinfo is None:
        raise ValueError("bucket_start must be timezone-aware (UTC)")
    state = state or DetectorState(zone=params.timezone)
    if state.zone != params.timezone:
        state = state.rezoned(params.timezone, bucket_start)
    if state.last is not None and bucket_start <= state.last:
        return state, _replayed(params, state, bucket_start, count)
    resolved_in_gap = False
    if state.last is not None:
        missing = _gap(params, state.last, bucket_start)
        if missing and missing * params.bucket_minutes <= params.max_fill_hours * 60.0:
            width = timedelta(minutes=params.bucket_minutes)
            start = state.last
            for i in range(1, missing + 1):
                state, filled = _step_one(params, state, start + i * width, 0.0)
                resolved_in_gap = resolved_in_gap or filled.resolved
        elif missing:
            # Too long to be quiet time: our own collection was down. Keep the baseline, forget persistence.
            state = replace(state, hits=0)
    state, score = _step_one(params, state, bucket_start, count)
    if resolved_in_gap:
        score = replace(score, resolved=True)
    return state, score


def _replayed(params: DetectorParams, state: DetectorState, bucket_start: datetime, count: float) -> BucketScore:
    slot, day = _slots(params, bucket_start)
    expected = _expected(params, state, slot, day)
    sd = _sd(params, state)
    z = (stabilise(count) - expected) / sd
    return BucketScore(bucket_start, count, z, unstabilise(expected), unstabilise(expected + params.z_open * sd),
                       False, False, False, state.open, replayed=True)


def _step_one(
    params: DetectorParams, state: DetectorState, bucket_start: datetime, count: float
) -> tuple[DetectorState, BucketScore]:
    slot, day = _slots(params, bucket_start)
    y = stabilise(count)
    expected = _expected(params, state, slot, day)
    sd = _sd(params, state)
    resid = y - expected if state.seen else 0.0
    z = resid / sd
    baseline = unstabilise(expected) if state.seen else count
    warm = state.seen >= _buckets(params, params.warmup_hours * 60.0)
    floor = params.count_floor(baseline)
    anomalous = warm and z >= params.z_open and count >= floor
    mask = (1 << params.persist_n) - 1
    hits = ((state.hits << 1) | int(anomalous)) & mask
    opened = resolved = reopened = False
    is_open, opened_at, quiet, resolved_at = state.open, state.opened_at, state.quiet, state.resolved_at
    if is_open:
        # Hysteresis: quiet buckets count towards the resolve, buckets between the thresholds hold the count
        # (so Poisson noise during recovery does not restart it), and anomalous ones restart it.
        if z < params.z_close:
            quiet += 1
        elif z >= params.z_open:
            quiet = 0
        # Only at a quiet bucket: with quiet_minutes below a bucket (0 too), the one quiet bucket is the whole span,
        # and 0 * width reached 0 minutes at every bucket, anomalous ones too: a flap of resolves and re-openings.
        if quiet and quiet * params.bucket_minutes >= params.quiet_minutes:
            is_open, resolved, opened_at, quiet, resolved_at = False, True, None, 0, bucket_start
            hits = 0
    else:
        cooling = resolved_at is not None and (
            bucket_start - resolved_at < timedelta(minutes=params.cooldown_minutes)
        )
        if anomalous and bin(hits).count("1") >= params.persist_k:
            is_open, opened_at, quiet = True, bucket_start, 0
            opened, reopened = not cooling, cooling
    frozen = is_open and opened_at is not None and (
        bucket_start - opened_at < timedelta(hours=params.max_freeze_hours)
    )
    new = replace(state, last=bucket_start, hits=hits, open=is_open, opened_at=opened_at, quiet=quiet,
                  resolved_at=resolved_at)
    if state.seen > 0:
        hold = frozen or (anomalous and bin(hits).count("1") >= params.persist_k)
        new = _learn(params, new, slot, day, y, resid, sd, season_only=hold)
    else:
        new = _learn(params, new, slot, day, y, resid, sd)
    upper = unstabilise(expected + params.z_open * sd)
    return new, BucketScore(bucket_start, count, z, baseline, upper, anomalous, opened, resolved, is_open,
                            reopened=reopened, threshold=max(upper, floor) if warm and state.seen else None)


def detect_series(params: DetectorParams, rows: Iterable[tuple[datetime, float]]) -> list[BucketScore]:
    """Run :func:`step` over ``(bucket_start, count)`` rows from a fresh state: the batch form of the service."""
    state: DetectorState | None = None
    scores = []
    for bucket_start, count in rows:
        state, score = step(params, state, bucket_start, count)
        scores.append(score)
    return scores

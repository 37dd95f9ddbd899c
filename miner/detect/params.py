"""The `[detector]` table of feeds.toml: every detector parameter, with defaults that work out of the box.

Counts are compared in a variance-stabilised space (the Anscombe transform ``2*sqrt(x + 3/8)``, where Poisson
noise has a standard deviation of about 1), so one set of defaults serves a service with two complaints an hour
and a brand with thousands of posts a minute.
"""

from __future__ import annotations

from dataclasses import dataclass

from miner.config import check_spans
from miner.settings import Conflict
from miner.timeutil import check_timezone

MINUTES_PER_DAY = 1440
_EXAMPLE_WIDTHS = (1, 5, 10, 15, 20, 30, 60, 90, 120, 1440)


@dataclass(frozen=True)
class DetectorParams:
    bucket_minutes: int = 5  # width of one count bucket; divides a day
    timezone: str = "UTC"  # the clock the hour-of-day and day-of-week profiles follow, daylight saving time included

    # Baseline: a robust, seasonal EWMA (Holt-Winters-like) in the stabilised space.
    level_halflife_hours: float = 12.0  # how fast the de-seasonalised level follows a drift
    scale_halflife_hours: float = 24.0  # how fast the noise scale (mean absolute residual) adapts
    season_halflife_days: float = 3.0  # how fast the hour-of-day profile adapts
    season_min_days: float = 2.0  # the hour-of-day profile is used once this much history exists
    weekday_halflife_weeks: float = 3.0  # how fast the day-of-week offsets adapt
    weekday_min_days: float = 14.0  # the day-of-week offsets are used once this much history exists
    tail_quantile: float = 0.998  # bursty traffic widens the scale so its usual bursts sit at this quantile ...
    tail_rate: float = 1.0  # ... tracked with steps of this fraction of the core scale (0: off; so is quantile <= 0.5)
    clip_sigmas: float = 3.0  # residuals are clipped to this many scales before they update the baseline
    max_freeze_hours: float = 12.0  # an incident open longer than this lets the baseline learn again

    # Scoring and floors.
    noise_floor: float = 1.0  # minimum scale in stabilised units: 1 = pure Poisson noise, never less
    warmup_hours: float = 12.0  # no incident opens before this much history
    z_open: float = 2.5  # a bucket is anomalous at or above this z ...
    min_count: float = 5.0  # ... and only with at least this many complaints in the bucket ...
    min_ratio: float = 1.5  # ... and at least this multiple of the expected count
    persist_k: int = 2  # open when k ...
    persist_n: int = 4  # ... of the last n buckets are anomalous
    z_close: float = 1.5  # hysteresis: a bucket below this z is quiet
    quiet_minutes: float = 60.0  # resolve after this long of consecutive quiet buckets
    cooldown_minutes: float = 720.0  # an opening this soon after a resolve re-opens that incident: no new one
    max_fill_hours: float = 6.0  # gaps up to this long are zero-count buckets; longer ones are our own outage
    settle_minutes: float = 10.0  # a bucket waits this long at most for polls after its end, if one polls (detect_due)

    # Incident lifecycle.
    max_samples: int = 5  # sample post ids kept per incident
    official_match_minutes: float = 120.0  # a status-page incident starting this long before our opening matches
    update_peak_ratio: float = 1.5  # an "update" when the peak grows past this multiple of the peak last announced

    # Correlated services: openings this close together in one group are reported as one grouped incident.
    group_window_minutes: float = 30.0
    group_min_services: int = 2  # services of a group that must open for a grouped incident

    def count_floor(self, baseline: float) -> float:
        """The fewest complaints that can make a bucket expected to hold ``baseline`` anomalous, whatever its z:
        ``min_count``, and ``min_ratio`` times the baseline. The detector tests each count against it, and the
        threshold it stores for the charts (BucketScore.threshold) is the larger of it and ``upper``: a band drawn to
        ``upper`` alone put a quiet service's 4 complaints above it (baseline 0.2, upper 3.7), never anomalous."""
        return max(self.min_count, self.min_ratio * baseline)

    def validate(self) -> None:
        check_timezone(self.timezone)
        if self.bucket_minutes < 1:
            raise ValueError("bucket_minutes: must be at least 1")
        # Buckets are aligned to the Unix epoch and the baseline learns by the UTC hour and weekday a bucket starts
        # in. A width that does not divide a day puts every day's buckets on another grid, some across midnight
        # (counted in the day before), so each hour and weekday offset learns from buckets shifted day by day.
        if MINUTES_PER_DAY % self.bucket_minutes:
            raise ValueError(f"bucket_minutes: must divide a day ({MINUTES_PER_DAY} minutes) evenly, so every day has "
                             f"the same buckets from midnight UTC, e.g. {', '.join(map(str, _EXAMPLE_WIDTHS))}")
        for name in ("level_halflife_hours", "scale_halflife_hours", "season_halflife_days", "clip_sigmas",
                     "weekday_halflife_weeks",
                     "noise_floor", "z_open", "min_ratio", "max_freeze_hours"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be positive")
        for name in ("season_min_days", "weekday_min_days", "warmup_hours", "min_count", "quiet_minutes",
                     "cooldown_minutes", "max_fill_hours", "settle_minutes", "group_window_minutes",
                     "official_match_minutes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must not be negative")
        if not 0 < self.tail_quantile < 1:  # 1 has no normal quantile: every bucket's score would fail
            raise ValueError("tail_quantile: must be between 0 and 1 (0.5 or less turns the tail off)")
        if self.tail_rate < 0:
            raise ValueError("tail_rate: must not be negative (0 turns the tail off)")
        # persist_n first: `persist_n = 0` was reported as persist_k's error, at the [detector] line when the file
        # leaves persist_k out. The other value is shown, as it may be a default the file does not show.
        if not 1 <= self.persist_n <= 32:
            raise ValueError("persist_n: must be 1..32")
        # Of two keys that disagree, the one the file changed from its default is named (with its line): a lowered
        # persist_n or z_open was reported as persist_k's or z_close's error, at the [detector] header's line.
        if not 1 <= self.persist_k <= self.persist_n:
            if self.persist_k == DetectorParams.persist_k:
                raise Conflict(f"persist_n: must be at least persist_k ({self.persist_k}), got {self.persist_n}",
                               also=("persist_k",))
            raise Conflict(f"persist_k: must be between 1 and persist_n ({self.persist_n}), got {self.persist_k}",
                           also=("persist_n",))
        if self.z_close >= self.z_open:
            if self.z_close == DetectorParams.z_close:
                raise Conflict(f"z_open: must be above z_close ({self.z_close:g}) for hysteresis, "
                               f"got {self.z_open:g}", also=("z_close",))
            raise Conflict(f"z_close: must be below z_open ({self.z_open:g}) for hysteresis, got {self.z_close:g}",
                           also=("z_open",))
        if self.max_samples < 0:
            raise ValueError("max_samples: must not be negative")
        if self.update_peak_ratio < 1:
            raise ValueError("update_peak_ratio: must be at least 1")
        if self.group_min_services < 2:
            raise ValueError("group_min_services: must be at least 2")
        check_spans(self, {"bucket_minutes": 60, "season_min_days": 86400, "weekday_min_days": 86400,
                           "max_freeze_hours": 3600, "warmup_hours": 3600, "quiet_minutes": 60,
                           "cooldown_minutes": 60, "max_fill_hours": 3600, "settle_minutes": 60,
                           "official_match_minutes": 60, "group_window_minutes": 60})

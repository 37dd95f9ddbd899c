"""When the maintenance windows and silences of a service stop muting its alerts.

The planner mutes a service's alerts while any of its windows is in effect (AlertSettings.in_maintenance) or any
silence matching it holds (`miner silence add`), so a mute ends at the end of the last of a run of windows and
silences that overlap or follow on without a gap: a one-off window meeting another, a recurring one that starts
again before its last one ended (``cron = "*/30 * * * *"`` with ``duration_minutes = 60``), or a silence set to
outlast a window. `miner status` said each window's own end, when alerts stayed muted past it, and left the
silences out: a window ending at 04:00 under a silence until 06:00 said 04:00.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from miner.alerts.settings import MaintenanceWindow

# How far the run of windows is followed: windows that follow on without a gap for a week (a recurring window
# that always overlaps the next) mute for as long as the config stands, which no time says. The count bounds the
# work: a week of windows a minute long starting every minute is 10,080 (a few seconds); it is reached before the week
# only where one service's windows end less than half a minute apart all week.
HORIZON = timedelta(days=7)
MAX_WINDOWS = 20_160


def mute_end(windows: Iterable[MaintenanceWindow], service: str, at: datetime,
             silences: Iterable[tuple[datetime, datetime]]) -> datetime | None:
    """When the windows of ``service`` (in any case, as the planner matches them) and the ``silences`` (the spans,
    start and end, of those matching it: silence_matches) in effect at ``at`` stop muting its alerts: ``at`` itself
    where none is; None where they follow on without a gap past HORIZON (or MAX_WINDOWS)."""
    mine = [w for w in windows if _of(w, service)]
    held = list(silences)

    def ends(when: datetime) -> list[datetime]:
        """The ends of those in effect at ``when``."""
        return ([span[1] for w in mine if (span := span_at(w, when)) is not None]
                + [stop for start, stop in held if holds((start, stop), when)])

    end = at
    for _ in range(MAX_WINDOWS):
        if not (later := ends(end)):
            return end
        end = max(later)
        if end > at + HORIZON:
            # One that ends past it with none following on (a 30-day silence, a 10-day window) has its end: said
            # to have none, status added "by windows or silences following on" that there were none of.
            try:
                return None if ends(end) else end
            except OverflowError:  # a silence until 9999: a recurring window's span then is past the last date
                return None
    return None


def windows_in_effect(windows: Sequence[MaintenanceWindow], service: str, at: datetime
                      ) -> list[tuple[int, tuple[datetime, datetime]]]:
    """The windows of ``service`` muting its alerts at ``at``, as mute_end takes them: each one's index in
    ``windows`` (alerts.maintenance[N]) and its span in effect."""
    return [(i, span) for i, w in enumerate(windows) if _of(w, service) and (span := span_at(w, at)) is not None]


def span_at(window: MaintenanceWindow, at: datetime) -> tuple[datetime, datetime] | None:
    """The span of ``window`` in effect at ``at``, None when it mutes nothing then."""
    span = window.span(at)
    return span if span is not None and holds(span, at) else None


def holds(span: tuple[datetime, datetime], at: datetime) -> bool:
    """Whether a window's or silence's ``span`` (start, end) mutes at ``at``: from its start, up to its end. At
    ``end`` itself, one starting just as another ends keeps the alerts muted (it is in effect then)."""
    return span[0] <= at < span[1]


def _of(window: MaintenanceWindow, service: str) -> bool:
    return window.service.lower() == service.lower()

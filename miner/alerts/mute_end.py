"""When the maintenance windows and silences of a service stop muting its alerts.

The planner mutes a service's alerts while any of its windows is in effect (AlertSettings.in_maintenance) or any
silence matching it holds (`miner silence add`), so a mute ends at the end of the last of a run of windows and
silences that overlap or follow on without a gap: a one-off window meeting another, a recurring one that starts
again before its last one ended (``cron = "*/30 * * * *"`` with ``duration_minutes = 60``), or a silence set to
outlast a window. `miner status` said each window's own end, when alerts stayed muted past it, and left the
silences out: a window ending at 04:00 under a silence until 06:00 said 04:00.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from miner.alerts.settings import MaintenanceWindow

# How far the run of windows is followed: windows that follow on without a gap for a week (a recurring window
# that always overlaps the next) mute for as long as the config stands, which no time says. The count bounds the
# work: a week of windows a minute long starting every minute is 10,080 (a few seconds); it is reached before the week
# only where one service's windows end less than half a minute apart all week.
HORIZON = timedelta(days=7)
MAX_WINDOWS = 20_160


def mute_end(windows: Iterable[MaintenanceWindow], service: str, at: datetime,
             silences: Iterable[tuple[datetime, datetime]] = ()) -> datetime | None:
    """When the windows of ``service`` (in any case, as the planner matches them) and the ``silences`` (the spans,
    start and end, of those matching it: silence_matches) in effect at ``at`` stop muting its alerts: ``at`` itself
    where none is; None where they follow on without a gap past HORIZON (or MAX_WINDOWS)."""
    mine = [w for w in windows if w.service.lower() == service.lower()]
    held = list(silences)
    end = at
    for _ in range(MAX_WINDOWS):
        # At ``end`` itself: a window starting just as another ends keeps the alerts muted (it is in effect then).
        later = [span[1] for w in mine if (span := w.span(end)) is not None and span[0] <= end < span[1]]
        later += [stop for start, stop in held if start <= end < stop]
        if not later:
            return end
        end = max(later)
        if end > at + HORIZON:
            return None
    return None

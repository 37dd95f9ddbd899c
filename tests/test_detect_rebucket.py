"""An incident open while detector.bucket_minutes changes: the real pipeline over a real store, at pinned times."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from streams import T0, ReportsOnly

from miner.config import parse_config
from miner.pipeline import Pipeline
from miner.records import Post
from miner.store import Store
from miner.timeutil import iso


def _config(width: int, quiet: int = 60) -> str:
    return (f'[[services]]\nname = "Foonet"\n[detector]\nbucket_minutes = {width}\nwarmup_hours = 1\n'
            f'quiet_minutes = {quiet}\n')


def _reports(name: str, start: datetime, end: datetime, every: timedelta) -> list[Post]:
    count = int((end - start) / every)
    return [Post("reports", f"{name}-{i}", "Foonet is down", start + i * every, services=("Foonet",))
            for i in range(count)]


def _chatter(end: datetime) -> list[Post]:
    """A report every 20 minutes from T0: the baseline the relearning learns from."""
    return _reports("chatter", T0 + timedelta(minutes=1), end, timedelta(minutes=20))


def _run(pipe: Pipeline, posts: list[Post], at: datetime) -> None:
    pipe.ingest([p for p in posts if p.created_at < at], at)
    pipe.classify_pending(at)
    pipe.detect(at)


def _complaints(posts: list[Post], start: str | None, end: str | None) -> int:
    return sum(1 for p in posts if start is not None and end is not None and start <= iso(p.created_at) < end)


def test_the_bucket_right_after_the_last_hour_of_an_incident_resolves_it_with_its_complaints(store: Store) -> None:
    # Hourly buckets open Foonet's incident at 04:00-05:00; at 05:03 detector.bucket_minutes goes to 5, and the
    # 5-minute bucket from 05:00, with one report, resolves it (quiet_minutes = 0: at the first quiet bucket). That
    # bucket directly follows the incident's last hour, but was taken against the new width (05:00 is 60 minutes
    # after 04:00, past 5) for one after a gap: its complaint was left out of the total and the symptoms.
    hourly, fives = parse_config(_config(60, quiet=0)), parse_config(_config(5, quiet=0))
    start = T0 + timedelta(hours=3)
    posts = (_chatter(start) + _reports("outage", start, start + timedelta(hours=2), timedelta(seconds=30))
             + [Post("reports", "last", "Foonet is down", start + timedelta(hours=2, minutes=2), services=("Foonet",))])
    pipe = Pipeline(hourly, store, ReportsOnly())  # type: ignore[arg-type]
    for hours in range(6):
        _run(pipe, posts, T0 + timedelta(hours=hours, minutes=1))
    [incident] = store.incidents()
    assert incident["opened_at"] == iso(T0 + timedelta(hours=5)) and incident["total_complaints"] == 120
    pipe = Pipeline(fives, store, ReportsOnly())  # type: ignore[arg-type]
    _run(pipe, posts, T0 + timedelta(hours=5, minutes=3))
    _run(pipe, posts, T0 + timedelta(hours=5, minutes=6))
    [incident] = store.incidents()
    assert (incident["status"], incident["resolved_at"]) == ("resolved", iso(T0 + timedelta(hours=5, minutes=5)))
    assert incident["total_complaints"] == 121 == _complaints(posts, iso(T0 + timedelta(hours=4)),
                                                              incident["resolved_at"])
    assert sum(json.loads(incident["symptoms"]).values()) == 121
    assert [e["kind"] for e in store.incident_events(incident["id"])] == ["open", "resolve"]

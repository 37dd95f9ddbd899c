"""An incident open while detector.bucket_minutes changes: the real pipeline over a real store, at pinned times."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from streams import T0, ReportsOnly

from miner.alerts.content import incident_view
from miner.alerts.settings import AlertSettings
from miner.cli.summary import print_summary
from miner.config import parse_config
from miner.pipeline import Pipeline
from miner.read_api import ReadApi
from miner.records import Post
from miner.store import Store
from miner.timeutil import iso, parse_iso


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


def _through(store: Store, widths: list[tuple[datetime, int]], posts: list[Post], end: datetime,
             begin: datetime = T0 + timedelta(minutes=2)) -> None:
    """Run the pipeline every 5 minutes (2 minutes past, from ``begin``) up to ``end``, at the width of ``widths``
    (from, minutes) in force: feeds.toml reloaded at its time."""
    at, pipe, width = begin, None, 0
    while at < end:
        now = max(w for w in widths if w[0] <= at)[1]
        if pipe is None or now != width:
            pipe, width = Pipeline(parse_config(_config(now)), store, ReportsOnly()), now  # type: ignore[arg-type]
        _run(pipe, posts, at)
        at += timedelta(minutes=5)


def _one_incident(store: Store, posts: list[Post], opened: str, width: int, resolved: str) -> None:
    """One incident, opened at ``opened`` (the end of its opening bucket, ``width`` minutes) and resolved at
    ``resolved``, with every complaint from its opening bucket to the end of the one that resolved it, once."""
    [incident] = store.incidents()
    assert (incident["opened_at"], incident["bucket_minutes"]) == (opened, width)
    assert (incident["status"], incident["resolved_at"]) == ("resolved", resolved)
    first = iso(parse_iso(opened) - timedelta(minutes=width))
    assert incident["total_complaints"] == _complaints(posts, first, resolved)
    assert sum(json.loads(incident["symptoms"]).values()) == incident["total_complaints"]
    kinds = [e["kind"] for e in store.incident_events(incident["id"])]
    assert kinds[0] == "open" and kinds.count("open") == kinds.count("resolve") == 1 and kinds[-1] == "resolve", kinds
    assert all(e["details"] and "reopened" not in e["details"] for e in store.incident_events(incident["id"]))


def test_an_incident_open_when_buckets_widen_from_5_to_60_minutes_keeps_every_complaint(store: Store) -> None:
    # Foonet is down from 03:00 to 04:30; its incident opens in 5-minute buckets at 03:10. At 03:57 feeds.toml says
    # 60: the hour from 03:00 (not ended) held the incident's last 5-minute buckets, and was skipped as folded in
    # already, its complaints from 03:50 on with it.
    start = T0 + timedelta(hours=3)
    posts = _chatter(T0 + timedelta(hours=9)) + _reports("outage", start, start + timedelta(minutes=90),
                                                         timedelta(seconds=30))
    _through(store, [(T0, 5), (start + timedelta(minutes=57), 60)], posts, T0 + timedelta(hours=9))
    # The hour from 05:00 was the quiet one.
    _one_incident(store, posts, iso(start + timedelta(minutes=10)), 5, iso(T0 + timedelta(hours=6)))


@pytest.mark.parametrize(("first", "changes", "opened"), [
    (60, [(161, 5)], 120),  # opened in hours, narrowed at 05:41: 05:00-05:40 were learned again, never folded in
    (5, [(57, 60), (162, 5)], 10),  # widened at 03:57, narrowed again at 05:42
    (5, [(57, 60), (62, 5)], 10),  # and back at 04:02, before the detector had stepped one hour
])
def test_an_incident_open_when_buckets_narrow_to_5_minutes_keeps_every_complaint(
        store: Store, first: int, changes: list[tuple[int, int]], opened: int) -> None:
    # The outage goes on to 05:30; from 60 to 5 minutes, the buckets from the end of the incident's last hour to
    # the change were learned again, and never folded into the incident.
    start = T0 + timedelta(hours=3)
    posts = _chatter(T0 + timedelta(hours=9)) + _reports("outage", start, start + timedelta(minutes=150),
                                                         timedelta(seconds=30))
    widths = [(T0, first)] + [(start + timedelta(minutes=at), width) for at, width in changes]
    _through(store, widths, posts, T0 + timedelta(hours=9))
    # Resolved after an hour of quiet 5-minute buckets, from 05:30.
    _one_incident(store, posts, iso(start + timedelta(minutes=opened)), first, iso(start + timedelta(minutes=210)))


def test_an_incident_open_at_the_upgrade_keeps_every_complaint_when_buckets_widen_with_it(store: Store) -> None:
    # Foonet's incident opens in 5-minute buckets at 03:10; miner is upgraded at 03:57 with bucket_minutes = 60 in
    # feeds.toml at once. The draft the release before kept says not its last bucket's width, and the detector took
    # the new one for it: the hour from 03:00 was skipped as one the incident had, and from the hour after only the
    # complaints from 04:50 on were folded in.
    start = T0 + timedelta(hours=3)
    posts = _chatter(T0 + timedelta(hours=9)) + _reports("outage", start, start + timedelta(minutes=90),
                                                         timedelta(seconds=30))
    _through(store, [(T0, 5)], posts, start + timedelta(minutes=57))
    row = store.database.one("SELECT draft FROM detector_state WHERE service = 'Foonet'")
    assert row is not None
    draft = json.loads(row["draft"])
    assert draft.pop("last_minutes") == 5  # as the release before kept it
    with store.database.transaction() as conn:
        conn.execute("UPDATE detector_state SET draft = ? WHERE service = 'Foonet'", (json.dumps(draft),))
    _through(store, [(T0, 60)], posts, T0 + timedelta(hours=9), start + timedelta(minutes=57))
    _one_incident(store, posts, iso(start + timedelta(minutes=10)), 5, iso(T0 + timedelta(hours=6)))


def test_the_peak_of_an_incident_in_the_hour_its_opening_bucket_was_counted_again_in_is_set_against_that_hour(
        store: Store) -> None:
    # Foonet opens at 03:10 in 5-minute buckets; at 03:57 feeds.toml says 60, and its posts are counted again in
    # hours from midnight. Its peak is the hour from 03:00 (123), which holds its opening bucket: looked for from
    # that bucket's start (03:05), it was set against the opening bucket's baseline, "123 vs baseline 0.13", where
    # that hour expected 3, in the alerts, the read API's peak_baseline and the replay's summary.
    start = T0 + timedelta(hours=3)
    posts = _chatter(T0 + timedelta(hours=9)) + _reports("outage", start, start + timedelta(minutes=90),
                                                         timedelta(seconds=30))
    end = T0 + timedelta(hours=9)
    _through(store, [(T0, 5), (start + timedelta(minutes=57), 60)], posts, end)
    [incident] = store.incidents()
    assert (incident["bucket_minutes"], incident["peak_complaints"], incident["baseline"]) == (5, 123, 0.134)
    [hour] = [r for r in store.series("Foonet", start, start + timedelta(hours=1)) if r["complaints"] == 123]
    assert (hour["bucket_start"], hour["baseline"]) == (iso(start), 3.0)
    view = incident_view(store, AlertSettings(), incident["id"], end)
    assert view is not None and view.baseline == 3.0
    config = parse_config(_config(60))
    api = ReadApi(config, lambda: store, lambda: None, lambda: end)
    assert [i["peak_baseline"] for i in api.incidents(store, {"service": "Foonet", "since": iso(T0)})["incidents"]] \
        == [3.0]
    lines: list[str] = []
    print_summary(store, config, lines.append)
    [summary] = [line.split() for line in "\n".join(lines).splitlines() if line.startswith(" 1  Foonet")]
    assert (summary[6], summary[8]) == ("123", "3.0"), lines

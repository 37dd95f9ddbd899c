"""Push recorded posts through the pipeline with a simulated clock.

The clock advances one detector bucket at a time; at each tick the posts created before it are stored (as a
collector would have delivered them) and the pipeline runs with ``now`` = the tick, so a day of posts replays
in seconds and yields the incidents and notifications the live service would have produced.
"""

from __future__ import annotations

import codecs
import functools
import gzip
import json
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import IO, Any

from miner.collectors.normalise import SURROGATE, hash_author, lang_code, post_text
from miner.collectors.settings import CollectSettings
from miner.errors import InputError
from miner.jsonl import MAX_LINE_BYTES, json_refused, lines
from miner.records import Post
from miner.timeutil import floor_time, parse_iso
from miner.urls import link_id, stored_link

REQUIRED = ("id", "text", "created_at", "source")
# A recorded post cannot be dated after the wall clock; the collectors clamp such dates to the poll time, with
# the same slack for clock skew.
FUTURE_SLACK = timedelta(minutes=10)
# The clock steps through every silence between posts (hourly idle ticks, each writing a bucket row per
# service), so one misdated post, say 2099 or 1990, would step through decades. A longer gap than this is
# refused; separate captures replay as separate runs, where the detector takes the gap as collection downtime.
# Real streams have month-long gaps (the bundled SentiTel stream one of 33 days); a year of hourly ticks is a
# minute or so.
MAX_GAP = timedelta(days=366)
# No post is older than the Unix epoch; the detector's arithmetic on a misdated one near the year 1 overflows.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)


DEMO_SOURCE = "sentitel"  # the source of every post of the bundled stream

# (handle, source) -> the keyed hash a collector of that source stores for the handle (see replay_authors)
Authors = Callable[[str, str], str | None]


def demo_stream_path() -> Path:
    """The bundled real stream: 5,355 SentiTel posts (Uganda, 2019, public domain), times from snowflake ids."""
    return Path(str(resources.files("miner") / "data" / "sentitel-2019.jsonl.gz"))


@dataclass(frozen=True)
class Keeping:
    """What of a recorded post is stored, as a collector of its source would store it: ``authors`` hashes the
    ``author`` (without it, None is stored), ``secrets`` names per source what its links and ids must not hold
    (collectors.base.source_secrets), ``max_text`` is [collect].max_text_chars; ``from_env`` names the sources whose
    url is in the environment, whose links lose a host label that reads as a key (miner.urls.stored_link)."""

    authors: Authors | None = None
    secrets: Mapping[str, Sequence[str]] = field(default_factory=dict)
    max_text: int = CollectSettings.max_text_chars
    from_env: frozenset[str] = frozenset()


def read_posts(path: Path | str, keeping: Keeping = Keeping()) -> Iterator[Post]:
    """Stream posts from a JSONL file (UTF-8, optionally gzip-compressed): ``id``, ``text``, ``created_at``
    (ISO 8601), ``source``, optional ``url``, ``lang`` and ``author``. A bad line raises InputError naming the file
    and line. Each post is stored as a collector stores one (see :class:`Keeping`): its text folded and cut,
    contact details replaced, its link and link-made id without credentials, its author hashed."""
    for _, post in read_numbered(path, keeping):
        yield post


def replay_authors(key: Callable[[], bytes], spaces: dict[str, str]) -> Authors:
    """Hash an author as a collector of the post's source would: a live post and a replayed one of the same account
    count as one complainer. ``spaces``: the configured sources' author spaces (collectors.base.author_space); the
    name of a source not configured is its own space. ``key`` is read at the first author (it warns when unset)."""
    once = functools.cache(key)

    def hashed(handle: str, source: str) -> str | None:
        return hash_author(handle, once(), spaces.get(source, source))

    return hashed


def check_stream(path: Path | str, now: datetime, *, max_gap: timedelta = MAX_GAP) -> int:
    """Read the whole stream before anything is stored; returns the number of posts.

    Raises InputError naming the file and line for a line :func:`read_posts` rejects, a post older than the
    one before it, one dated after ``now`` (plus FUTURE_SLACK), or one more than ``max_gap`` after the one
    before it, so a bad file fails before any of it is stored rather than part-way.
    """
    def named() -> Iterator[tuple[str, str, Post]]:
        for lineno, post in read_numbered(path):
            where = f"{path}:{lineno}: post {post.external_id} ({post.created_at.isoformat()})"
            if post.created_at > now + FUTURE_SLACK:
                raise InputError(f"{where} is dated after the current time ({now:%Y-%m-%d %H:%M} UTC); a "
                                 "recorded post cannot be from the future: fix its created_at or drop the line")
            yield where, f"line {lineno}", post

    return sum(1 for _ in _in_sequence(named(), max_gap))


def _in_sequence(posts: Iterable[tuple[str, str, Post]], max_gap: timedelta) -> Iterator[Post]:
    """The posts, refusing one older than the post before it or more than ``max_gap`` after it.

    Each post comes with how an error names it and how the next post's error names it as the one before.
    """
    last: tuple[str, datetime] | None = None
    for where, label, post in posts:
        if last is not None:
            before, at = last
            if post.created_at < at:
                raise InputError(f"{where} is not in time order: it is older than {before} ({at.isoformat()}); "
                                 "sort the file by created_at")
            if post.created_at - at > max_gap:
                raise InputError(
                    f"{where} comes {(post.created_at - at).days} days after {before} ({at.isoformat()}): replay "
                    f"steps its clock through every gap, and one over {max_gap.days} days is almost always a "
                    "misdated post; fix the date, or split the file there and replay the parts one after another")
        last = (label, post.created_at)
        yield post


def read_numbered(path: Path | str, keeping: Keeping = Keeping()) -> Iterator[tuple[int, Post]]:
    """:func:`read_posts` with each post's line number."""
    p = Path(path)
    try:
        # Bytes, not text: a text stream's universal newlines end a line at a bare CR (whitespace to JSON), and
        # one bad byte would fail the file as a whole rather than name its line.
        file = p.open("rb")
    except OSError as exc:
        raise InputError(f"{p}: cannot open ({exc.strerror or exc})") from None
    with file:
        lineno = 0
        try:
            # Gzip by its magic bytes, as `miner classify` tells it, whatever the file's name
            packed = file.peek(2)[:2] == b"\x1f\x8b"
            handle: IO[bytes] | gzip.GzipFile = gzip.GzipFile(fileobj=file) if packed else file
            # At most so much of a line is read: a file that is not one post per line (a JSON array saved on one
            # line) was read, decoded and parsed whole, twice, several times its size in memory, before it failed.
            for lineno, raw in enumerate(lines(handle, MAX_LINE_BYTES), start=1):
                if raw is None:
                    raise InputError(f"{p}:{lineno}: longer than {MAX_LINE_BYTES >> 20} MiB: a post is one line of "
                                     "JSONL, an object per line")
                # Files saved by Windows tools start with one, and not only on line 1: `cat` of two such files has
                # one at the start of the second (`miner classify` takes it so too).
                raw = raw.removeprefix(codecs.BOM_UTF8)
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise InputError(f"{p}:{lineno}: not valid UTF-8") from None
                if line.strip():
                    yield lineno, _post_from_line(line, p, lineno, keeping)
        except (EOFError, OSError, zlib.error) as exc:  # a truncated or corrupt gzip, a failing disk
            raise InputError(f"{p}: unreadable after line {lineno} ({exc})") from None


def _post_from_line(line: str, path: Path, lineno: int, keeping: Keeping) -> Post:
    where = f"{path}:{lineno}"
    if refused := json_refused(line):  # before parsing it, as `miner classify` does
        raise InputError(f"{where}: {refused}")
    try:
        obj: Any = json.loads(line)
    except json.JSONDecodeError as exc:
        # exc.msg lacks the position, and some messages ("Invalid control character at") end waiting for it
        raise InputError(f"{where}: invalid JSON ({exc.msg.removesuffix(' at')} at column {exc.colno})") from None
    except RecursionError:
        raise InputError(f"{where}: invalid JSON (nested too deeply)") from None
    except ValueError:  # int() refuses numbers past its digit limit, which the decoder does not check
        raise InputError(f"{where}: invalid JSON (a number of more than {sys.get_int_max_str_digits()} digits)") \
            from None
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected a JSON object")
    for key in REQUIRED:
        value = obj.get(key)
        if value is None or value == "":
            raise InputError(f"{where}: missing or empty field {key!r}")
        # An integer id (or source, or epoch created_at, refused below) reads as its digits; true would read
        # as "True", and a text that is a number is no post.
        if isinstance(value, bool) or not isinstance(value, str if key == "text" else str | int):
            kind = "a string" if key == "text" else "a string or an integer"
            raise InputError(f"{where}: field {key!r} must be {kind}, not {_json_kind(value)}")
    try:
        created = parse_iso(str(obj["created_at"]))
    except ValueError:
        raise InputError(f"{where}: created_at {obj['created_at']!r} is not ISO 8601") from None
    except OverflowError:  # its offset moves it past what a datetime holds
        raise InputError(f"{where}: created_at {obj['created_at']!r} is out of range (in UTC it falls before the "
                         "year 1 or after 9999)") from None
    if created < EARLIEST:
        raise InputError(f"{where}: created_at {obj['created_at']!r} is before 1970: a recorded post cannot be "
                         "that old; fix its created_at or drop the line")
    url, author = obj.get("url"), obj.get("author")
    if author is not None and (isinstance(author, bool) or not isinstance(author, str | int)):
        raise InputError(f"{where}: field 'author' must be a string or an integer, not {_json_kind(author)}")
    for key in ("id", "source", "url", "lang", "author"):
        if isinstance(obj.get(key), str) and SURROGATE.search(obj[key]):
            raise InputError(f"{where}: {key} holds an unpaired UTF-16 surrogate escape")
    # As a collector stores a post: a capture of real posts is what one would have polled, line breaks, contact
    # details, a feed's key in its links and all (and SQLite cannot store a lone surrogate).
    source, authors = str(obj["source"]), keeping.authors
    secrets, lang, hosts = keeping.secrets.get(source, ()), obj.get("lang"), source in keeping.from_env
    text = post_text("", str(obj["text"]), keeping.max_text, plain=True, secrets=secrets)
    if not text:
        raise InputError(f"{where}: field 'text' holds only whitespace or invisible characters")
    return Post(source=source, external_id=link_id(str(obj["id"]), secrets, token_hosts=hosts), text=text,
                created_at=created, url=stored_link(url, secrets, token_hosts=hosts) if isinstance(url, str) else None,
                lang=lang_code(lang) if isinstance(lang, str) else None,
                author_hash=authors(str(author), source) if authors and author is not None else None)


def _json_kind(value: object) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int):
        return "a number"
    if isinstance(value, float):
        return "a number with a fraction or an exponent"
    return "an array" if isinstance(value, list) else "an object"


@dataclass
class ReplayStats:
    posts: int = 0
    ticks: int = 0
    start: datetime | None = None
    end: datetime | None = None
    opened: list[tuple[str, datetime]] = field(default_factory=list)
    resolved: list[tuple[str, datetime]] = field(default_factory=list)


def ticks_for(
    posts: Iterable[Post], step: timedelta, max_gap: timedelta = MAX_GAP, limit: int | None = None
) -> Iterator[tuple[datetime, list[Post]]]:
    """Group time-ordered posts by the tick at which they have all arrived: the end of their bucket. With
    ``limit``, a bucket of more posts comes in consecutive batches of at most that many, with the same tick.

    Raises InputError when the stream is not in time order (replay needs it to be causal), or when two
    consecutive posts are more than ``max_gap`` apart (see MAX_GAP).
    """
    batch: list[Post] = []
    tick: datetime | None = None
    named = ((f"post {p.external_id} ({p.created_at.isoformat()})", "the post before", p) for p in posts)
    for post in _in_sequence(named, max_gap):
        end = floor_time(post.created_at, step) + step
        if tick is not None and (end != tick or (limit is not None and len(batch) >= limit)):
            yield tick, batch
            batch = []
        tick = end
        batch.append(post)
    if tick is not None:
        yield tick, batch


def run_replay(
    posts: Iterable[Post],
    step: timedelta,
    on_tick: Callable[[datetime, list[Post]], object],
    *,
    speed: float | None = None,
    prefetch: Callable[[list[tuple[datetime, list[Post]]]], object] | None = None,
    chunk: int = 2000,
    idle_step: timedelta = timedelta(hours=1),
    tail: timedelta = timedelta(hours=6),
    progress: Callable[[int], None] | None = None,
    until: datetime | None = None,
    done_until: datetime | None = None,
) -> ReplayStats:
    """Call ``on_tick(now, arrived_posts)`` along a simulated clock.

    Between posts the clock still advances in ``idle_step`` strides, so incidents resolve and digests fall
    due as they would live, and for ``tail`` after the last post so open incidents can resolve. ``speed`` N
    paces the replay at N times real time; None runs as fast as possible.

    The clock never passes ``until`` (the current time): a tick after it runs at ``until``, and the tail ends
    there. A capture that ends now may end in an outage still going on: the tail's empty buckets resolved it hours
    ahead of time (its resolve notice written), and left the store's detector and alerts ahead of the real clock.

    With ``prefetch`` (and no pacing), up to ``chunk`` upcoming posts are handed to it before their ticks, as
    (the time of the tick they arrive at, its posts), and the ticks then get no posts of their own. Storing posts
    early changes nothing the detector sees (it reads only buckets that have ended by ``now``), and lets the
    classifier work in large batches; they are to be dated (fetched, classified) at their tick's time all the same.

    Ticks up to ``done_until`` (where the store's detector has got to, in a resumed replay: the pipeline only stores
    posts there) are not paced; the pace starts from the last of them. A resumed --speed 60 replay of a day waited
    out in real time every minute of what the run it resumes had done.

    A bad post (see :func:`ticks_for`) raises InputError saying how many posts before it were stored.
    """
    stats = ReplayStats()
    paced_from: tuple[datetime, float] | None = None  # (simulated, monotonic) time the pace counts from
    previous: datetime | None = None
    stored = 0

    def checked(ticks: Iterator[tuple[datetime, list[Post]]]) -> Iterator[tuple[datetime, list[Post]]]:
        try:
            yield from ticks
        except InputError as exc:
            raise InputError(f"{exc} ({_stored_note(stored)})") from None

    def advance(now: datetime, batch: list[Post]) -> None:
        nonlocal paced_from
        if speed and (done_until is None or now > done_until):
            if paced_from is None:
                paced_from = (stats.end or stats.start or now, time.monotonic())
            _pace(speed, *paced_from, now)
        on_tick(now, batch)
        stats.ticks += 1
        stats.end = now

    def idle_until(limit: datetime, inclusive: bool) -> None:
        assert previous is not None
        idle = previous + idle_step
        while (idle < limit or (inclusive and idle == limit)) and (until is None or idle <= until):
            advance(idle, [])
            idle += idle_step

    def arrival(tick: datetime) -> datetime:
        return tick if until is None else min(tick, until)

    def run(tick: datetime, batch: list[Post]) -> None:
        nonlocal previous, stored
        if previous is not None:
            idle_until(tick, inclusive=False)
        at = arrival(tick)
        stats.start = stats.start or min(tick - step, at)
        advance(at, batch)
        stored += len(batch)
        previous = tick

    early = prefetch is not None and not speed
    # Early, a bucket of more than ``chunk`` posts is stored in pieces (one of a million posts in the same second
    # was held whole), and a tick runs once the posts after its bucket have come: all of its own are stored.
    waiting: datetime | None = None
    for ticks in _chunks(checked(ticks_for(posts, step, limit=chunk if early else None)), chunk if early else 1):
        if early and prefetch is not None:
            prefetch([(arrival(tick), batch) for tick, batch in ticks])
            stored += sum(len(batch) for _, batch in ticks)
        for tick, batch in ticks:
            if not early:
                run(tick, batch)
            elif tick != waiting:
                if waiting is not None:
                    run(waiting, [])
                waiting = tick
            stats.posts += len(batch)
            if progress:
                progress(len(batch))
    if waiting is not None:
        run(waiting, [])
    if previous is not None:
        idle_until(previous + tail, inclusive=True)
        if until is not None and stats.end is not None and stats.end < until < previous + tail:
            advance(until, [])  # the tail up to the current time, not up to its last idle step before it
    return stats


def _stored_note(stored: int) -> str:
    if not stored:
        return "nothing was stored"
    # Safe because posts are deduplicated by (source, id) and ticks the store has already processed only
    # store posts: a resumed replay never re-opens or re-announces an incident.
    return (f"the {stored} posts before it were stored; replaying the corrected file into the same store is safe: "
            "stored posts are skipped and no incident is announced twice")


def _chunks(ticks: Iterator[tuple[datetime, list[Post]]], size: int) -> Iterator[list[tuple[datetime, list[Post]]]]:
    """Consecutive ticks holding about ``size`` posts together (at least one tick)."""
    group: list[tuple[datetime, list[Post]]] = []
    count = 0
    for item in ticks:
        group.append(item)
        count += len(item[1])
        if count >= size:
            yield group
            group, count = [], 0
    if group:
        yield group


def _pace(speed: float, start: datetime, wall0: float, now: datetime) -> None:
    due = (now - start).total_seconds() / speed
    # In slices: one sleep of a tiny speed's delay overflows. A single slice of at most 60 s made every tick come
    # within a minute of the one before, whatever the bucket width and the speed.
    while (delay := due - (time.monotonic() - wall0)) > 0:
        time.sleep(min(delay, 60.0))

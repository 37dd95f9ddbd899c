"""Operator commands on real stores: replay input errors, status, ui metadata, reclassify."""

from __future__ import annotations

import email
import email.policy
import gzip
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from fakeserver import FakeServer, Reply
from streams import CONFIG, capture_ending_now, write_stream

from miner import replay as replay_module
from miner.cli import main
from miner.config import Config, bundled_path
from miner.errors import InputError
from miner.records import Post
from miner.replay import check_stream, demo_stream_path, read_posts
from miner.status import shown_time
from miner.store import Store
from miner.store.catalog import TABLES
from miner.store.migrations import MIGRATIONS, apply_migrations, pending_migrations
from miner.timeutil import floor_time, iso, parse_iso, utcnow

ROOT = Path(__file__).resolve().parent.parent


def test_replay_rejects_bad_input_naming_the_line(tmp_path: Path, runner: CliRunner) -> None:
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "text": "x", "created_at": "2026-01-01T00:00:00Z", "source": "s"}\n'
                   '{"id": "2", "text": "y", "source": "s"}\n')
    result = runner.invoke(main, ["--config", str(cfg), "--db", str(tmp_path / "m.sqlite"), "replay", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:2: missing or empty field 'created_at'" in result.output
    unsorted = tmp_path / "unsorted.jsonl"
    unsorted.write_text('{"id": "1", "text": "x", "created_at": "2026-01-02T00:00:00Z", "source": "s"}\n'
                        '{"id": "2", "text": "y", "created_at": "2026-01-01T00:00:00Z", "source": "s"}\n')
    result = runner.invoke(main, ["--config", str(cfg), "--db", str(tmp_path / "n.sqlite"), "replay",
                                  str(unsorted)])
    assert result.exit_code == 1
    assert f"{unsorted}:2: post 2 (2026-01-01T00:00:00+00:00) is not in time order: it is older than line 1" \
        in result.output and "(nothing was stored)" in result.output
    deep = tmp_path / "deep.jsonl"
    deep.write_text("[" * 5000 + "]" * 5000 + "\n")
    result = runner.invoke(main, ["--config", str(cfg), "--db", str(tmp_path / "d.sqlite"), "replay", str(deep)])
    assert result.exit_code == 1 and f"{deep}:1: JSON nested deeper than 256 levels: a post is one flat object" in (
        result.output)
    deep.write_text("[" + "[[[[]]]]," * 30_000 + "[]]\n")  # 5 deep, but 150,000 lists to parse (before a word)
    result = runner.invoke(main, ["--config", str(cfg), "--db", str(tmp_path / "d.sqlite"), "replay", str(deep)])
    assert result.exit_code == 1 and f"{deep}:1: JSON of more than 100,000 values: a post is one flat object" in (
        result.output)


@pytest.mark.parametrize(("fields", "error"), [
    ({"id": True}, "field 'id' must be a string or an integer, not true or false"),
    ({"id": 1.5}, "field 'id' must be a string or an integer, not a number with a fraction or an exponent"),
    ({"id": None}, "missing or empty field 'id'"),
    ({"text": 5}, "field 'text' must be a string, not a number"),
    ({"text": ["x"]}, "field 'text' must be a string, not an array"),
    ({"source": {"name": "s"}}, "field 'source' must be a string or an integer, not an object"),
    ({"author": ["a"]}, "field 'author' must be a string or an integer, not an array"),
    ({"author": "\ud800"}, "author holds an unpaired UTF-16 surrogate escape"),
])
def test_replay_refuses_a_field_of_the_wrong_type_naming_it(tmp_path: Path, runner: CliRunner,
                                                            fields: dict[str, object], error: str) -> None:
    # true was stored as the id "True" and 5 as the text "5"; 1.5 was a "missing or empty" id.
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG)
    stream = tmp_path / "s.jsonl"
    post = {"id": 7, "text": "x", "created_at": "2026-01-01T00:00:00Z", "source": "s"}
    stream.write_text(json.dumps(post) + "\n" + json.dumps({**post, "id": 8, **fields}) + "\n")
    result = runner.invoke(main, ["--config", str(cfg), "--db", str(tmp_path / "m.sqlite"), "replay", str(stream)])
    assert result.exit_code == 1
    assert f"Error: {stream}:2: {error} (nothing was stored)\n" in result.output, result.output


def test_replay_refuses_a_misdated_post_before_storing_anything(tmp_path: Path, runner: CliRunner) -> None:
    # One post dated 2099 at the end (or 1990 at the start) made replay step hourly through the decades
    # between, writing a bucket row per service per 5 minutes: an hour and gigabytes.
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG)

    def line(n: int, at: str) -> str:
        return json.dumps({"id": str(n), "text": "x", "created_at": at, "source": "s"}) + "\n"

    good = [line(n, f"2026-01-01T00:{n:02d}:00Z") for n in range(1, 4)]
    db = tmp_path / "m.sqlite"
    future = tmp_path / "future.jsonl"
    future.write_text("".join(good) + line(9, "2099-01-01T00:00:00Z"))
    result = runner.invoke(main, ["--config", str(cfg), "--db", str(db), "replay", str(future)])
    assert result.exit_code == 1
    assert (f"{future}:4: post 9 (2099-01-01T00:00:00+00:00) is dated after the current time" in result.output
            and "(nothing was stored)" in result.output), result.output
    assert not db.exists()
    old = tmp_path / "old.jsonl"
    old.write_text(line(0, "1990-01-01T00:00:00Z") + "".join(good))
    result = runner.invoke(main, ["--config", str(cfg), "--db", str(db), "replay", str(old)])
    assert result.exit_code == 1
    assert (f"{old}:2: post 1 (2026-01-01T00:01:00+00:00) comes 13149 days after line 1 "
            "(1990-01-01T00:00:00+00:00)" in " ".join(result.output.split())), result.output
    assert not db.exists()
    # Within the bound, a quiet spell is stepped through as before.
    month = tmp_path / "month.jsonl"
    month.write_text("".join(good) + line(5, "2026-01-30T00:00:00Z"))
    result = runner.invoke(main, ["--config", str(cfg), "--db", str(db), "replay", str(month)])
    assert result.exit_code == 0 and "replayed 4 posts" in result.output, result.output
    # The bundled real stream has a 33-day silence (a 30-day bound refused it and broke `miner demo`).
    assert check_stream(demo_stream_path(), datetime.now(UTC)) > 5000


@pytest.mark.parametrize(("at", "error"), [
    ("0001-01-01T00:00:00Z", "is before 1970: a recorded post cannot be that old"),
    ("1969-12-31T23:59:59Z", "is before 1970: a recorded post cannot be that old"),
    ("0001-01-01T00:30:00+01:00", "is out of range (in UTC it falls before the year 1 or after 9999)"),
    ("9999-12-31T23:30:00-01:00", "is out of range (in UTC it falls before the year 1 or after 9999)"),
])
def test_replay_refuses_a_date_it_cannot_step_through_before_storing_anything(tmp_path: Path, runner: CliRunner,
                                                                             at: str, error: str) -> None:
    # A post of the year 1 passed the check and failed the detector part-way through the replay with an
    # internal OverflowError; an offset taking a date past the years 1-9999 did so while checking.
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG)
    stream = tmp_path / "s.jsonl"
    stream.write_text(json.dumps({"id": "1", "text": "x", "created_at": at, "source": "s"}) + "\n")
    db = tmp_path / "m.sqlite"
    result = runner.invoke(main, ["--config", str(cfg), "--db", str(db), "replay", str(stream)])
    assert result.exit_code == 1
    assert f"Error: {stream}:1: created_at {at!r} {error}" in result.output, result.output
    assert "(nothing was stored)" in result.output and not db.exists()


def test_replay_reads_files_saved_with_a_byte_order_mark(tmp_path: Path) -> None:
    line = b'{"id": "1", "text": "x", "created_at": "2026-01-01T00:00:00Z", "source": "s"}\n'
    plain, packed = tmp_path / "bom.jsonl", tmp_path / "bom.jsonl.gz"
    plain.write_bytes(b"\xef\xbb\xbf" + line)
    packed.write_bytes(gzip.compress(b"\xef\xbb\xbf" + line))
    assert [p.external_id for p in read_posts(plain)] == [p.external_id for p in read_posts(packed)] == ["1"]


def test_replay_reads_two_files_saved_with_a_byte_order_mark_joined_by_cat(tmp_path: Path, runner: CliRunner) -> None:
    # Only line 1's mark was taken: the second file's, mid-stream, failed the replay as "invalid JSON" (`miner
    # classify` takes the same file).
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG)

    def saved(n: int) -> bytes:
        return (b'\xef\xbb\xbf{"id": "%d", "text": "x", "created_at": "2026-01-01T00:0%d:00Z", "source": "s"}\r\n'
                % (n, n))

    joined = tmp_path / "joined.jsonl"
    joined.write_bytes(saved(1) + saved(2) + saved(3))
    assert [p.external_id for p in read_posts(joined)] == ["1", "2", "3"]
    db = tmp_path / "m.sqlite"
    result = runner.invoke(main, ["--config", str(cfg), "--db", str(db), "replay", str(joined)])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM posts").fetchone() == (3,)


def test_replay_refuses_a_line_longer_than_it_reads_naming_it(tmp_path: Path, runner: CliRunner,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # A file not one post per line (a JSON array saved on one line) was read, decoded and parsed whole, twice: a
    # 300 MB one peaked at 1.2 GB of memory (0.17 GB now), before failing as "expected a JSON object".
    monkeypatch.setattr(replay_module, "MAX_LINE_BYTES", 1 << 20)
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG)
    post = {"id": "1", "text": "x", "created_at": "2026-01-01T00:00:00Z", "source": "s"}
    stream = tmp_path / "array.jsonl"
    stream.write_text(json.dumps(post) + "\n" + json.dumps([{**post, "id": str(i)} for i in range(2, 20_000)]) + "\n")
    db = tmp_path / "m.sqlite"
    result = runner.invoke(main, ["--config", str(cfg), "--db", str(db), "replay", str(stream)])
    assert result.exit_code == 1
    assert f"Error: {stream}:2: longer than 1 MiB: a post is one line of JSONL" in result.output, result.output
    assert "(nothing was stored)" in result.output and not db.exists()


def test_replay_refuses_a_line_of_nested_json_longer_than_16_mib_unparsed(tmp_path: Path, runner: CliRunner) -> None:
    # Parsing nested arrays and objects costs up to 45 times their size: a line just under the former limit of
    # 64 MiB of `[{},{},...]` was read whole and parsed, 1.75 GB, before it failed as "expected a JSON object".
    stream = tmp_path / "nested.jsonl"
    stream.write_bytes(b"[" + b"{}," * ((16 << 20) // 3) + b"{}]\n")
    with pytest.raises(InputError, match=r"nested\.jsonl:1: longer than 16 MiB: a post is one line of JSONL"):
        list(read_posts(stream))
    help_text = " ".join(runner.invoke(main, ["replay", "--help"]).output.split())
    assert "a line longer than 16 MiB is refused" in help_text


def test_replay_reads_a_line_of_just_the_longest_length_with_its_newline_as_without(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Its newline counted towards the limit: such a line was refused where it ended with one, and read as the
    # file's last line without one.
    monkeypatch.setattr(replay_module, "MAX_LINE_BYTES", 1 << 20)  # as for 16 MiB, in a 1 MiB line

    def line(size: int, n: int) -> bytes:
        head = b'{"id": "%d", "created_at": "2026-01-01T00:0%d:00Z", "source": "s", "text": "x' % (n, n)
        return head + b" " * (size - len(head) - 2) + b'"}'

    stream = tmp_path / "s.jsonl"
    stream.write_bytes(line(1 << 20, 1) + b"\n" + line(1 << 20, 2))
    assert [p.external_id for p in read_posts(stream)] == ["1", "2"]
    stream.write_bytes(line(1 << 20, 1) + b"\n" + line((1 << 20) + 1, 2) + b"\n")
    with pytest.raises(InputError, match=r"s\.jsonl:2: longer than 1 MiB"):
        list(read_posts(stream))


def test_replay_names_the_line_of_invalid_utf8_and_a_bare_carriage_return_does_not_end_a_line(
        tmp_path: Path, runner: CliRunner) -> None:
    # The file was read as text: one bad byte made the whole file "unreadable" without a line number, and a
    # bare CR (JSON whitespace) ended a line, splitting a valid post in two and shifting every line number after.
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG)

    def line(n: int, text: bytes = b"x", gap: bytes = b" ") -> bytes:
        return (b'{"id": "%d",%b"text": "%b", "created_at": "2026-01-01T00:00:0%dZ", "source": "s"}\n'
                % (n, gap, text, n))

    stream = tmp_path / "s.jsonl"
    stream.write_bytes(line(1) + line(2, "caf\u00e9".encode(), gap=b"\r") + line(3).replace(b"\n", b"\r\n"))
    assert [(p.external_id, p.text) for p in read_posts(stream)] == [("1", "x"), ("2", "caf\u00e9"), ("3", "x")]
    for bad, error in [(line(2, b"caf\xe9"), "not valid UTF-8"),
                       (line(2, b"a\x01b"), "invalid JSON (Invalid control character at column 23)")]:
        stream.write_bytes(line(1, gap=b"\r") + bad + line(3))
        result = runner.invoke(main, ["--config", str(cfg), "--db", str(tmp_path / "m.sqlite"), "replay",
                                      str(stream)])
        assert result.exit_code == 1
        assert f"Error: {stream}:2: {error} (nothing was stored)\n" in result.output, result.output
    assert not (tmp_path / "m.sqlite").exists()


def test_replay_reads_gzip_by_its_content_and_a_truncated_one_names_the_last_line_read(
        tmp_path: Path, runner: CliRunner) -> None:
    # Only a name ending in .gz was unpacked: posts.jsonl holding gzip was "unreadable ('utf-8' codec can't
    # decode byte 0x8b...)"; and a cut-off download said neither how far it got.
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG)
    lines = b"".join(b'{"id": "%d", "text": "x", "created_at": "2026-01-01T00:00:00Z", "source": "s"}\n' % n
                     for n in range(1, 2001))
    packed = tmp_path / "posts.jsonl"
    packed.write_bytes(gzip.compress(lines))
    assert [p.external_id for p in read_posts(packed)] == [str(n) for n in range(1, 2001)]
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(gzip.compress(lines)[:-200])
    read = 0
    with pytest.raises(EOFError), gzip.open(cut, "rb") as damaged:
        for _ in damaged:
            read += 1
    assert 0 < read < 2000
    result = runner.invoke(main, ["--config", str(cfg), "--db", str(tmp_path / "m.sqlite"), "replay", str(cut)])
    assert result.exit_code == 1
    assert (f"Error: {cut}: unreadable after line {read} (Compressed file ended before the end-of-stream marker "
            "was reached) (nothing was stored)") in " ".join(result.output.split()), result.output
    assert not (tmp_path / "m.sqlite").exists()


def test_replay_names_the_line_of_a_number_too_long_for_python(tmp_path: Path, runner: CliRunner) -> None:
    # json.loads raises a bare ValueError for an integer past int()'s digit limit: an internal error, no line.
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG)
    stream = tmp_path / "s.jsonl"
    stream.write_text('{"id": "1", "text": "x", "created_at": "2026-01-01T00:00:00Z", "source": "s"}\n'
                      '{"id": 1' + "0" * 5000 + ', "text": "x", "created_at": "2026-01-01T00:00:00Z", "source": "s"}\n')
    result = runner.invoke(main, ["--config", str(cfg), "--db", str(tmp_path / "m.sqlite"), "replay", str(stream)])
    assert result.exit_code == 1
    assert (f"Error: {stream}:2: invalid JSON (a number of more than {sys.get_int_max_str_digits()} digits) "
            "(nothing was stored)\n") in result.output, result.output


def test_replay_refuses_a_pipe_or_standard_input_before_any_work(tmp_path: Path, runner: CliRunner) -> None:
    # `miner replay <(zcat posts.gz)`: the check read the pipe to its end, and the replay found nothing left to
    # read: "holds no posts", after creating the store. '-' was "File '-' does not exist".
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG)
    fifo = tmp_path / "posts.jsonl"
    os.mkfifo(fifo)
    db = tmp_path / "m.sqlite"
    post = '{"id": "1", "text": "x", "created_at": "2026-01-01T00:00:00Z", "source": "s"}\n'
    for name in (str(fifo), "-"):
        result = runner.invoke(main, ["--config", str(cfg), "--db", str(db), "replay", name], input=post)
        assert result.exit_code == 1
        shown = "standard input" if name == "-" else name
        assert (f"Error: {shown} is not a file: replay reads its posts twice, first to check them all so that a bad "
                "line stores nothing; save them to a file first (it may be gzip-compressed)\n") in result.output, \
            result.output
        assert not db.exists()


@pytest.mark.parametrize("speed", ["nan", "0", "-1"])
def test_replay_refuses_a_speed_that_is_no_pace(tmp_path: Path, runner: CliRunner, speed: str) -> None:
    # nan passed click's range check (every comparison with it is false) and replayed unpaced.
    stream = tmp_path / "s.jsonl"
    stream.write_text('{"id": "1", "text": "x", "created_at": "2026-01-01T00:00:00Z", "source": "s"}\n')
    db = tmp_path / "m.sqlite"
    result = runner.invoke(main, ["--config", str(ROOT / "feeds.toml"), "--db", str(db), "replay", str(stream),
                                  "--speed", speed])
    assert result.exit_code == 2 and "Invalid value for '--speed'" in result.output, result.output
    assert not db.exists()


def test_replay_stores_posts_with_half_an_emoji_and_names_an_id_with_one(tmp_path: Path, runner: CliRunner) -> None:
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG)
    stream = tmp_path / "s.jsonl"
    stream.write_text('{"id": "1", "text": "x \\ud83d", "created_at": "2026-01-01T00:00:00Z", "source": "s"}\n')
    db = tmp_path / "m.sqlite"
    result = runner.invoke(main, ["--config", str(cfg), "--db", str(db), "replay", str(stream)])
    assert result.exit_code == 0, result.output
    assert [p.text for p in read_posts(stream)] == ["x"]  # its space folded away, as by a collector
    stream.write_text('{"id": "3", "text": "down, a@b.org", "created_at": "2026-01-01T00:00:00Z", "source": "s"}\n')
    assert [p.text for p in read_posts(stream)] == ["down, [email]"]  # stored as the collectors would
    stream.write_text('{"id": "2\\udc00", "text": "x", "created_at": "2026-01-01T00:00:00Z", "source": "s"}\n')
    result = runner.invoke(main, ["--config", str(cfg), "--db", str(db), "replay", str(stream)])
    assert result.exit_code == 1
    assert f"{stream}:1: id holds an unpaired UTF-16 surrogate escape" in result.output
    # An optional lang with one passed the check and stopped the replay part-way: SQLite cannot store it.
    stream.write_text('{"id": "4", "text": "x", "created_at": "2026-01-01T00:00:00Z", "source": "s", '
                      '"lang": "en\\ud83d"}\n')
    result = runner.invoke(main, ["--config", str(cfg), "--db", str(db), "replay", str(stream)])
    assert result.exit_code == 1
    assert f"Error: {stream}:1: lang holds an unpaired UTF-16 surrogate escape (nothing was stored)" in result.output


@pytest.mark.parametrize(("column", "garbled"), [
    *(("sample_post_ids", v) for v in ("[1, 2", "7", "[[1], 9]", '{"id": 1}', "[99999999999999999999]")),
    *(("symptoms", v) for v in ('{"down": 1', "7", '["down"]')),
])
def test_replay_summary_of_an_incident_with_garbled_json_shows_it_without_samples(
        tmp_path: Path, runner: CliRunner, column: str, garbled: str) -> None:
    # The summary read the first incident's sample_post_ids as a JSON list of post ids, and its symptoms as a JSON
    # object: a row edited by hand failed the replay at its very end, once every post had been stored, with
    # "internal error".
    values = {"sample_post_ids": "[]", "symptoms": "{}", column: garbled}
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG)
    db = tmp_path / "m.sqlite"
    Store.open(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO posts (id, source, external_id, text, created_at, fetched_at) "
                     "VALUES (1, 's', 'old', 'mtn is down', '2025-12-01T00:00:00+00:00', '2025-12-01T00:00:00+00:00')")
        conn.execute("INSERT INTO incidents (service, status, opened_at, updated_at, resolved_at, sample_post_ids, "
                     "symptoms) VALUES ('MTN', 'resolved', '2025-12-01T00:00:00+00:00', '2025-12-01T01:00:00+00:00', "
                     "'2025-12-01T01:00:00+00:00', :sample_post_ids, :symptoms)", values)
    conn.close()
    stream = tmp_path / "s.jsonl"
    stream.write_text('{"id": "1", "text": "x", "created_at": "2026-01-01T00:00:00Z", "source": "s"}\n')
    result = runner.invoke(main, ["--config", str(cfg), "--db", str(db), "replay", str(stream)])
    assert result.exit_code == 0, result.output
    assert "1 incident detected" in result.output and "2025-12-01 00:00" in result.output
    assert "sample posts of incident" not in result.output


def test_replay_then_status_and_ui_metadata(tmp_path: Path, runner: CliRunner,
                                            real_posts: dict[str, list[str]]) -> None:
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG)
    posts = write_stream(real_posts, tmp_path / "posts.jsonl")
    db = tmp_path / "m.sqlite"
    base = ["--config", str(cfg), "--db", str(db)]
    result = runner.invoke(main, [*base, "replay", str(posts), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "1 incident detected" in result.output
    assert list((tmp_path / "out").glob("digest-*.html"))

    status = runner.invoke(main, [*base, "status", "--format", "json"])
    assert status.exit_code == 0, status.output
    data = json.loads(status.stdout)
    assert [s["service"] for s in data["services"]] == ["MTN", "Airtel"]

    ui = runner.invoke(main, [*base, "ui", "--metadata-only"])
    assert ui.exit_code == 0, ui.output
    meta = json.loads((tmp_path / "datasette-metadata.json").read_text())
    tables = meta["databases"]["m"]["tables"]
    assert set(tables) == set(TABLES)
    assert "open_incidents" in meta["databases"]["m"]["queries"]

    again = runner.invoke(main, [*base, "reclassify", "--since", "2026-02-03"])
    assert again.exit_code == 0, again.output
    assert "reclassified 0 posts" in again.output  # the current model already classified them
    assert "since 2026-02-03 00:00:00 UTC" in again.output
    # ... and it says so: "reclassified 0 posts" alone read as if no post was stored since --since.
    with sqlite3.connect(db) as conn:
        since_feb3 = conn.execute("SELECT count(*) FROM posts WHERE created_at >= '2026-02-03'").fetchone()[0]
    assert since_feb3 > 1
    assert re.search(rf"reclassified 0 posts since 2026-02-03 00:00:00 UTC in \d+\.\d s; {since_feb3} posts had "
                     "this model's verdict already and were left as they are", again.output), again.output
    # An offset is honoured (it was refused, as were "Z" and a time without seconds), and a duration counts back.
    for since, shown in (("2026-02-03T10:00+05:30", "since 2026-02-03 04:30:00 UTC"),
                         ("2026-02-03T04:30Z", "since 2026-02-03 04:30:00 UTC"),
                         ("2026-02-03 04:30", "since 2026-02-03 04:30:00 UTC")):
        again = runner.invoke(main, [*base, "reclassify", "--since", since])
        assert again.exit_code == 0 and shown in again.output, (since, again.output)
    before = datetime.now(UTC).replace(microsecond=0)
    again = runner.invoke(main, [*base, "reclassify", "--since", "1h30m"])
    assert again.exit_code == 0, again.output
    shown_at = datetime.strptime(again.output.split(" since ")[1][:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    assert before - timedelta(minutes=90) <= shown_at <= datetime.now(UTC) - timedelta(minutes=90)
    for since in ("yesterday", "2026-02-30", "0001-01-01T00:00+01:00"):
        again = runner.invoke(main, [*base, "reclassify", "--since", since])
        assert again.exit_code == 1 and f"--since {since!r} is " in again.output, (since, again.output)
    # A duration without its last unit was told only of ISO 8601, as if --since took no duration.
    again = runner.invoke(main, [*base, "reclassify", "--since", "1h30"])
    assert again.exit_code == 1, again.output
    assert "--since '1h30' is neither an ISO 8601 date or time" in again.output, again.output
    assert "nor a duration before now (e.g. 2h, 1d, 1h30m: each number with its unit)" in again.output, again.output


def test_reclassify_progress_bar_counts_the_posts_it_reclassifies(tmp_path: Path) -> None:
    # The bar's total was every post since --since: a user report, a post with no verdict yet (left to the service)
    # and one the current model had classified already counted too, and a run that did all its work ended at 50 %.
    import pty

    from miner.classify.meta import ModelMeta
    from miner.classify.model import default_model_dir
    from miner.records import Decision, Prediction

    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG)
    db = tmp_path / "m.sqlite"
    now = utcnow()
    store = Store.open(db)
    store.insert_posts([*(Post("feed", str(i), "mtn network is down", now - timedelta(minutes=i), services=("MTN",))
                          for i in range(4)),
                        Post("reports", "r", "MTN is down", now, services=("MTN",)),
                        Post("feed", "new", "mtn network is down", now, services=("MTN",))], now)
    verdict = Prediction(0.9, True, "general")
    store.save_classifications([(1, verdict), (2, verdict), (3, verdict)], "old-model", now)
    meta = ModelMeta.read(default_model_dir() / "model.json")  # the model decides at its own threshold, exits on
    store.save_classifications([(4, verdict)], meta.version, now, Decision(meta.threshold, early_exit=True))
    store.save_classifications([(5, verdict)], "reports", now)
    store.close()
    env = {k: v for k, v in os.environ.items() if k != "MINER_CONFIG"} | {"PYTHONPATH": str(ROOT)}
    master, slave = pty.openpty()  # the bar is drawn on a terminal only
    try:
        proc = subprocess.Popen([sys.executable, "-m", "miner", "--config", str(cfg), "--db", str(db), "reclassify",
                                 "--since", "1h"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        shown = b""
        while chunk := _read_pty(master):
            shown += chunk
        out, _ = proc.communicate(timeout=120)
    finally:
        os.close(master)
    assert proc.returncode == 0, shown
    assert out.decode().startswith("reclassified 3 posts since ")
    bars = [part for part in shown.decode().replace("\n", "\r").split("\r") if "reclassifying" in part]
    assert bars and "]  100%" in bars[-1], bars


def _read_pty(fd: int) -> bytes:
    try:
        return os.read(fd, 4096)
    except OSError:  # EIO: every process holding the terminal's other end has closed it
        return b""


def test_ui_that_cannot_write_its_metadata_says_so_in_one_line(tmp_path: Path, runner: CliRunner) -> None:
    # A folder it cannot write (read-only media; here a folder in the way, as root may write anywhere) was an
    # "internal error".
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG)
    db = tmp_path / "m.sqlite"
    Store.open(db).close()
    (tmp_path / "datasette-metadata.json").mkdir()
    result = runner.invoke(main, ["--config", str(cfg), "--db", str(db), "ui", "--metadata-only"])
    assert result.exit_code == 1, result.output
    assert result.output == (f"Error: cannot write {tmp_path / 'datasette-metadata.json'} (Is a directory): miner ui "
                             "writes Datasette's metadata beside the store; copy the store to a writable folder\n")


def test_ui_refuses_a_database_that_is_no_miner_store(tmp_path: Path, runner: CliRunner) -> None:
    # docs/operations.md: every command but query and backup refuses another program's SQLite file. `miner ui`
    # only checked that the file existed: it wrote miner's table descriptions beside it and served it.
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE moz_places (id INTEGER PRIMARY KEY, url TEXT)")
    conn.close()
    before = other.read_bytes()
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    for db, said in ((other, "is a SQLite database of something else, not a miner store"),
                     (empty, "is empty: no miner store was written to it yet")):
        result = runner.invoke(main, ["--config", str(cfg), "--db", str(db), "ui", "--metadata-only"])
        assert result.exit_code == 1 and f"store {db} {said}" in result.output, result.output
    assert other.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.sqlite", "feeds.toml", "other.db"]


def test_status_says_its_times_are_utc(tmp_path: Path, runner: CliRunner) -> None:
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG + '\n[[sources]]\nname = "forum"\ntype = "rss"\nurl = "http://127.0.0.1:9/forum.rss"\n')
    db = tmp_path / "m.sqlite"
    store = Store.open(db)
    store.database.execute("INSERT INTO sources (name, type, last_ok_at, next_poll_at) VALUES (?, ?, ?, ?)",
                           ("forum", "rss", "2026-02-02T23:40:05+00:00", "2026-02-02T23:45:05+00:00"))
    store.open_incident("MTN", datetime(2026, 2, 2, 23, 15, tzinfo=UTC), {}, {})
    store.close()
    base = ["--config", str(cfg), "--db", str(db)]
    result = runner.invoke(main, [*base, "status"])
    assert result.exit_code == 0, result.output
    # The stored times were cut before their offset: to an engineer in Kampala, 23:40 read as 23:40 in Kampala.
    assert "#1 since 2026-02-02 23:15:00 UTC" in result.output
    assert "2026-02-02 23:40:05 UTC" in result.output and "2026-02-02 23:45:05 UTC" in result.output
    data = json.loads(runner.invoke(main, [*base, "status", "--format", "json"]).stdout)
    # JSON has every time in ISO 8601 with its offset, as --help says; the incident's was the table's text.
    assert data["services"][0]["incident"] == {"id": 1, "opened_at": "2026-02-02T23:15:00+00:00"}
    assert data["sources"][0]["last_ok"] == "2026-02-02T23:40:05+00:00"
    assert data["sources"][0]["next_poll"] == "2026-02-02T23:45:05+00:00"


def test_status_says_how_many_stored_posts_wait_for_their_verdict(tmp_path: Path, runner: CliRunner) -> None:
    # Buckets count posts once the service has classified them: right after `miner collect --once` (the README's
    # quick start), status showed 0 posts for a service whose posts had just been stored, and said nothing of them.
    from miner.config import parse_config
    from miner.records import FetchResult, Prediction, SourceState

    text = CONFIG + '\n[[sources]]\nname = "feed"\ntype = "rss"\nurl = "http://127.0.0.1:9/feed.rss"\n'
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(text)
    db = tmp_path / "m.sqlite"
    store = Store.open(db)
    store.sync_sources(parse_config(text).sources)
    now = utcnow()
    posts = [Post(source="feed", external_id=f"p{i}", text=f"mtnug network down {i}", created_at=now,
                  services=("MTN",)) for i in range(2)]
    store.save_fetch("feed", FetchResult(posts=posts, state=SourceState()), now, now + timedelta(minutes=5))
    base = ["--config", str(cfg), "--db", str(db)]

    def shown() -> tuple[str, int]:
        result = runner.invoke(main, [*base, "status"])
        assert result.exit_code == 0, result.output
        data = json.loads(runner.invoke(main, [*base, "status", "--format", "json"]).stdout)
        return result.output, data["unclassified"]

    output, waiting = shown()
    assert waiting == 2 and "2 posts stored and not classified yet, in no count above: `miner run` classifies" in output
    [first, second] = [r["id"] for r in store.database.rows("SELECT id FROM posts ORDER BY id")]
    store.save_classifications([(first, Prediction(0.9, True, "connectivity"))], "m1", now)
    output, waiting = shown()
    assert waiting == 1 and "1 post stored and not classified yet" in output
    store.save_classifications([(second, Prediction(0.1, False, None))], "m1", now)
    output, waiting = shown()
    assert waiting == 0 and "not classified" not in output
    store.close()


def test_status_json_has_null_not_words_for_missing_times(tmp_path: Path, runner: CliRunner) -> None:
    # JSON said "never" for last_ok and "now" or "disabled" for next_poll, words in a time field that a script
    # parsing it as a timestamp fails on; a service without an incident had "", an infinite score Infinity.
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG + '\n[[sources]]\nname = "forum"\ntype = "rss"\nurl = "http://127.0.0.1:9/forum.rss"\n'
                   '\n[[sources]]\nname = "off"\ntype = "rss"\nurl = "http://127.0.0.1:9/off.rss"\nenabled = false\n'
                   '\n[[sources]]\nname = "old"\ntype = "rss"\nurl = "http://127.0.0.1:9/old.rss"\n')
    db = tmp_path / "m.sqlite"
    store = Store.open(db)
    bucket = iso(floor_time(datetime.now(UTC), timedelta(minutes=15)) - timedelta(minutes=15))  # the last ended
    store.database.execute("INSERT INTO buckets (service, bucket_start, posts, complaints, score, baseline) "
                           "VALUES ('MTN', ?, 5, 3, 1e999, 1e999)", (bucket,))
    store.database.execute("INSERT INTO sources (name, type, next_poll_at) VALUES ('off', 'rss', ?)",
                           ("2026-02-02T23:45:05+00:00",))
    # Without an offset (a hand edit): UTC, as every stored time is, and shown with its offset.
    store.database.execute("INSERT INTO sources (name, type, last_ok_at) VALUES ('old', 'rss', ?)",
                           ("2026-02-02T23:40:05",))
    store.close()
    base = ["--config", str(cfg), "--db", str(db)]
    result = runner.invoke(main, [*base, "status", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout, parse_constant=lambda name: pytest.fail(f"{name} is no JSON"))
    mtn, airtel = data["services"]
    assert (mtn["posts"], mtn["z"], mtn["baseline"], mtn["incident"]) == (5, None, None, None)
    assert (airtel["z"], airtel["baseline"], airtel["incident"]) == (None, None, None)
    sources = {s["source"]: s for s in data["sources"]}
    assert {k: sources["forum"][k] for k in ("enabled", "last_ok", "next_poll")} == \
        {"enabled": True, "last_ok": None, "next_poll": None}
    assert {k: sources["off"][k] for k in ("enabled", "last_ok", "next_poll")} == \
        {"enabled": False, "last_ok": None, "next_poll": None}
    assert sources["old"]["last_ok"] == "2026-02-02T23:40:05+00:00"
    # The table keeps its words.
    text = runner.invoke(main, [*base, "status"]).output
    forum = next(line for line in text.splitlines() if line.startswith("forum "))
    off = next(line for line in text.splitlines() if line.startswith("off "))
    assert forum.split()[2:4] == ["never", "now"] and off.split()[2:4] == ["never", "disabled"], text


def test_status_shows_a_sources_warning_with_its_time_until_a_poll_reads_it_without_one(
        tmp_path: Path, runner: CliRunner, server: FakeServer) -> None:
    # Warnings an operator must act on (a feed moved for good, a wrong encoding) were in the log and the store only.
    server.serve_fixture("/news.rss", "rss/wrong_encoding.rss", content_type="application/rss+xml")
    server.serve("/old.rss", Reply(301, headers={"Location": "/new.rss"}))
    server.serve_fixture("/new.rss", "rss/forum_latest.rss")
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG + f'\n[[sources]]\nname = "news"\ntype = "rss"\nurl = "{server.url}/news.rss"\n'
                   f'\n[[sources]]\nname = "moved"\ntype = "rss"\nurl = "{server.url}/old.rss"\n'
                   f'\n[[sources]]\nname = "quiet"\ntype = "rss"\nurl = "{server.url}/new.rss"\n')
    base = ["--config", str(cfg), "--db", str(tmp_path / "m.sqlite")]

    def collect() -> None:
        result = runner.invoke(main, [*base, "collect", "--once", "--all"])
        assert result.exit_code == 0, result.output

    def status() -> tuple[str, dict[str, dict[str, object]]]:
        result = runner.invoke(main, [*base, "status"])
        assert result.exit_code == 0, result.output
        data = json.loads(runner.invoke(main, [*base, "status", "--format", "json"]).stdout)
        return result.output, {s["source"]: s for s in data["sources"]}

    before = datetime.now(UTC).replace(microsecond=0)
    collect()
    after = datetime.now(UTC)
    text, sources = status()
    moved = (f"{server.url}/old.rss has moved for good (HTTP 301) to {server.url}/new.rss: update the source's url")
    assert sources["moved"]["warning"] == moved and len(moved) > 100
    assert "CharacterEncodingOverride" in str(sources["news"]["warning"]) and sources["quiet"]["warning"] == ""
    seen = {name: sources[name]["warning_at"] for name in ("news", "moved")}
    assert all(before <= parse_iso(str(at)) <= after for at in seen.values()), seen
    assert sources["quiet"]["warning_at"] is None
    # In a table of their own, cut to keep it readable, with the time each was last seen.
    lines = text.splitlines()
    header = lines.index(next(line for line in lines if line.startswith("source") and "warning seen" in line))
    shown = {line.split()[0]: line for line in lines[header + 2:header + 4]}
    assert sorted(shown) == ["moved", "news"] and not any(line.startswith("quiet ") for line in lines[header:])
    assert f"{shown_time(str(seen['news']))}  feed {server.url}/news.rss is not clean" in shown["news"]
    assert shown["moved"].endswith(moved[:99] + "…")
    assert "(warnings cut at 100 characters: --format json has them whole)" in text

    # Answered 304: the feed's content is what was warned about, so its warning stands, seen when it was.
    collect()
    assert server.requests_to("/news.rss")[-1].headers.get("if-none-match")
    _, sources = status()
    assert "CharacterEncodingOverride" in str(sources["news"]["warning"])
    assert sources["news"]["warning_at"] == seen["news"]
    assert sources["moved"]["warning"] == moved

    # Put right: the feed's encoding fixed, the source's url pointing where it moved to.
    fixed = server.fixture_bytes("rss/wrong_encoding.rss").replace(b'"us-ascii"', b'"utf-8"', 1)
    server.serve("/news.rss", Reply(200, fixed, content_type="application/rss+xml"))
    server.serve_fixture("/old.rss", "rss/forum_latest.rss", validators=False)
    collect()
    text, sources = status()
    assert [(s["warning"], s["warning_at"]) for s in sources.values()] == [("", None)] * 3
    assert "warning" not in text
    # The store keeps what it was and when it was last seen.
    store = Store.open(tmp_path / "m.sqlite")
    row = store.source_row("news") or {}
    store.close()
    assert "CharacterEncodingOverride" in row["last_warning"] and row["last_warning_at"] == seen["news"]


def test_status_reads_the_last_hour_on_the_bucket_grid(tmp_path: Path) -> None:
    from miner.config import parse_config
    from miner.status import service_status

    store = Store.open(tmp_path / "m.sqlite")
    for row in (("MTN", "2026-02-02T10:00:00+00:00", 9, 2, 0.5, 3.0),
                ("MTN", "2026-02-02T11:00:00+00:00", 40, 25, 6.5, 4.0),
                ("MTN", "2026-02-02T12:00:00+00:00", 3, 1, None, None)):
        store.database.execute("INSERT INTO buckets (service, bucket_start, posts, complaints, score, baseline) "
                               "VALUES (?, ?, ?, ?, ?, ?)", row)
    now = datetime(2026, 2, 2, 12, 7, tzinfo=UTC)
    store.save_detector_step("MTN", datetime(2026, 2, 2, 11, tzinfo=UTC), "{}", [], now)  # scored up to 11:00
    for width, posts, complaints, z in ((60, 43, 26, 6.5), (15, 43, 26, 6.5)):
        config = parse_config(CONFIG.replace("bucket_minutes = 15", f"bucket_minutes = {width}"))
        [mtn, _] = service_status(store, config, now, window=timedelta(hours=1))
        # Hourly buckets (the demo's) showed the 7 minutes of the bucket in progress and no score at all: the hour
        # scored last starts before now - 1 h.
        assert (mtn["posts"], mtn["complaints"], mtn["z"], mtn["baseline"]) == (posts, complaints, z, 4.0), width
    store.close()


def _hourly_feed(tmp_path: Path) -> tuple[Config, Store, Callable[[datetime], None]]:
    """The two services in hourly buckets with one RSS source, "feed"; its store (open), and poll(at), which stores
    a successful poll of the feed at ``at``."""
    from miner.config import parse_config
    from miner.records import FetchResult, SourceState

    text = CONFIG.replace("bucket_minutes = 15", "bucket_minutes = 60") + (
        '\n[[sources]]\nname = "feed"\ntype = "rss"\nurl = "http://127.0.0.1:9/feed.rss"\n')
    config = parse_config(text)
    store = Store.open(tmp_path / "m.sqlite")
    store.sync_sources(config.sources)

    def poll(at: datetime) -> None:
        store.save_fetch("feed", FetchResult(state=SourceState(cursor=iso(at))), at, at + timedelta(hours=1))

    return config, store, poll


def test_status_shows_the_score_of_the_last_bucket_scored_while_the_one_since_waits(tmp_path: Path) -> None:
    # With hourly buckets (the demo's) and the 1 h window, the bucket that ended last waits for the sources'
    # polls (detector.settle_minutes at most) every hour: status read from that bucket on, and showed no z and no
    # baseline while it waited, though the detector had scored the one before.
    from miner.pipeline import Pipeline
    from miner.status import service_status

    config, store, poll = _hourly_feed(tmp_path)
    hour = timedelta(hours=1)
    poll(datetime(2026, 2, 2, 11, 0, 30, tzinfo=UTC))
    Pipeline(config, store).detect(datetime(2026, 2, 2, 11, 1, tzinfo=UTC))
    # The feed last polled before 12:00: the bucket from 11:00 waits for its next poll.
    poll(datetime(2026, 2, 2, 11, 58, tzinfo=UTC))
    now = datetime(2026, 2, 2, 12, 7, tzinfo=UTC)
    Pipeline(config, store).detect(now)
    saved = store.detector_state("MTN")
    assert saved is not None and saved.last_bucket == datetime(2026, 2, 2, 11, 0, tzinfo=UTC) - hour
    [mtn, _] = service_status(store, config, now, window=hour)
    [scored] = store.series("MTN", saved.last_bucket, saved.last_bucket + hour)
    assert (mtn["last_bucket"], mtn["waiting_for"]) == (iso(saved.last_bucket), ["feed"])
    assert scored["score"] is not None
    assert (mtn["z"], mtn["baseline"]) == (round(scored["score"], 1), round(scored["baseline"], 2))
    store.close()


def test_status_says_a_service_the_detector_never_scored_waits_for_nothing(tmp_path: Path) -> None:
    # On a service's first run the detector scores the latest bucket its posts are collected for, and never waits:
    # status worked the wait out on its own (from the latest bucket ended) and said the service waited for its
    # sources' next poll, though the detector's next run scored a bucket.
    from miner.pipeline import Pipeline
    from miner.status import service_status

    config, store, poll = _hourly_feed(tmp_path)
    hour = timedelta(hours=1)
    poll(datetime(2026, 2, 2, 11, 58, tzinfo=UTC))
    now = datetime(2026, 2, 2, 12, 7, tzinfo=UTC)
    assert [(s["last_bucket"], s["waiting_for"]) for s in service_status(store, config, now, hour)] == \
        [(None, [])] * 2
    assert Pipeline(config, store).detect(now).buckets == 2
    # It scored the bucket from 10:00; the one from 11:00 waits for the feed's next poll.
    scored = iso(datetime(2026, 2, 2, 10, 0, tzinfo=UTC))
    assert [(s["last_bucket"], s["waiting_for"]) for s in service_status(store, config, now, hour)] == \
        [(scored, ["feed"])] * 2
    store.close()


def test_replay_into_a_used_folder_replaces_its_own_files_and_counts_true(tmp_path: Path, runner: CliRunner,
                                                                         real_posts: dict[str, list[str]]) -> None:
    posts = write_stream(real_posts, tmp_path / "posts.jsonl")
    out = tmp_path / "out"
    route = '\n[alerts]\ngroup_wait = 0\n\n[[alerts.routes]]\nname = "{}"\nemail = ["oncall@example.org"]\n'

    def run(db: str, route_name: str) -> str:
        cfg = tmp_path / "feeds.toml"
        cfg.write_text(CONFIG + route.format(route_name))
        result = runner.invoke(main, ["--config", str(cfg), "--db", str(tmp_path / db), "replay", str(posts),
                                      "--out", str(out)])
        assert result.exit_code == 0, result.output
        return result.output

    run("first.sqlite", "oncall")
    (out / "notes.txt").write_text("mine")
    (out / "outbox" / "notes.txt").write_text("mine too")
    first = sorted(p.name for p in (out / "outbox").glob("0*"))
    assert len(first) == 2  # the alert and the resolve notice

    output = run("second.sqlite", "team")
    conn = sqlite3.connect(tmp_path / "second.sqlite")
    sent = conn.execute("SELECT count(*) FROM outbox WHERE status = 'sent'").fetchone()[0]
    conn.close()
    assert sorted(p.name for p in (out / "outbox").glob("0*")) == first  # replaced, not numbered on from 0003
    assert f"{sent} notifications written to {out / 'outbox'} (a replay sends nothing)" in output
    assert not list(out.glob("digest-oncall*"))  # the first run's route is gone from the config
    assert list(out.glob("digest-team.*"))
    assert (out / "notes.txt").read_text() == "mine" and (out / "outbox" / "notes.txt").read_text() == "mine too"


def test_replay_and_demo_refuse_an_out_folder_they_cannot_write_before_any_work(tmp_path: Path,
                                                                                runner: CliRunner) -> None:
    # It was first written to at the first notification, which failed unseen (retried as if a mail server
    # were down), and then for the digest at the very end: an internal error after the whole replay.
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG)
    stream = tmp_path / "s.jsonl"
    stream.write_text('{"id": "1", "text": "x", "created_at": "2026-01-01T00:00:00Z", "source": "s"}\n')
    out = stream / "out"  # under a file
    db = tmp_path / "m.sqlite"
    for args in (["replay", str(stream), "--out", str(out)], ["demo", "--out", str(out)]):
        result = runner.invoke(main, ["--config", str(cfg), "--db", str(db), *args])
        assert result.exit_code == 1
        assert f"Error: cannot write to {out} ({stream} is a file, not a folder); nothing was stored\n" in (
            result.output), result.output
        assert not db.exists()



def test_replay_without_out_refuses_an_outbox_beside_the_store_it_cannot_write_before_any_work(
        tmp_path: Path, runner: CliRunner) -> None:
    # Checked only for --out: without it, each notification failed unseen, retried as if a mail server were down,
    # and the replay ended saying "0 notifications written".
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG)
    stream = tmp_path / "s.jsonl"
    stream.write_text('{"id": "1", "text": "x", "created_at": "2026-01-01T00:00:00Z", "source": "s"}\n')
    (tmp_path / "outbox").write_text("notes, not a folder")
    db = tmp_path / "m.sqlite"
    result = runner.invoke(main, ["--config", str(cfg), "--db", str(db), "replay", str(stream)])
    assert result.exit_code == 1
    said = f"Error: cannot write to {tmp_path / 'outbox'} (it is a file, not a folder); nothing was stored\n"
    assert said in result.output, result.output
    assert not db.exists()


@pytest.mark.skipif(os.geteuid() == 0 and not shutil.which("setpriv"), reason="root ignores permissions")
def test_replay_refuses_a_read_only_out_folder_before_any_work(tmp_path: Path) -> None:
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG)
    stream = tmp_path / "s.jsonl"
    stream.write_text('{"id": "1", "text": "x", "created_at": "2026-01-01T00:00:00Z", "source": "s"}\n')
    out = tmp_path / "out"
    (out / "outbox").mkdir(parents=True)
    drop = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"] if os.geteuid() == 0 else []
    for folder in (out, out / "outbox"):
        folder.chmod(0o555)
        try:
            res = subprocess.run([*drop, sys.executable, "-m", "miner", "--config", str(cfg), "--db",
                                  str(tmp_path / "m.sqlite"), "replay", str(stream), "--out", str(out)],
                                 capture_output=True, text=True, cwd=ROOT, timeout=60)
        finally:
            folder.chmod(0o755)
        assert res.returncode == 1
        assert (f"Error: cannot write to {folder} (Permission denied); nothing was stored\n" in res.stderr), \
            res.stderr
        assert not (tmp_path / "m.sqlite").exists()


def test_replay_of_posts_older_than_the_stores_detector_says_they_were_not_detected(
        tmp_path: Path, runner: CliRunner, real_posts: dict[str, list[str]]) -> None:
    # A capture replayed after a later one into the same store: its posts were stored and counted, but the
    # detector had already stepped past them, and its outage went unseen without a word.
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG)
    later = write_stream(real_posts, tmp_path / "later.jsonl")
    rows = [json.loads(line) for line in later.read_text().splitlines()]
    earlier = tmp_path / "earlier.jsonl"
    earlier.write_text("".join(json.dumps({**r, "id": f"e{r['id']}", "created_at": iso(
        datetime.fromisoformat(r["created_at"]) - timedelta(days=7))}) + "\n" for r in rows))
    base = ["--config", str(cfg), "--db", str(tmp_path / "m.sqlite"), "replay"]
    first = runner.invoke(main, [*base, str(later)])
    assert first.exit_code == 0 and "warning" not in first.output, first.output
    again = runner.invoke(main, [*base, str(later)])  # a rerun stores nothing new: nothing to say
    assert again.exit_code == 0 and "warning" not in again.output, again.output
    result = runner.invoke(main, [*base, str(earlier)])
    assert result.exit_code == 0, result.output
    assert "1 incident detected" in result.output  # the earlier burst is not among them
    clock = re.search(r"replayed \d+ posts from .* to (.*) UTC in", first.output)  # where the clock stopped
    assert clock is not None
    assert (f"warning: {len(rows)} posts of {earlier} are older than where the store's detector had got to "
            f"({clock[1]} UTC): they were stored, but no incident is detected from them; replay "
            "captures into one store in time order, or this one into a fresh store") \
        in " ".join(result.output.split()), result.output


def test_replay_into_a_pruned_store_stores_no_post_of_its_final_buckets_and_says_how_many(
        tmp_path: Path, runner: CliRunner, real_posts: dict[str, list[str]]) -> None:
    # Old posts replayed into a store pruned since: they were stored, but their buckets are final (a recount there
    # would lose the pruned posts' counts), so no bucket counted them.
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG)
    stream = write_stream(real_posts, tmp_path / "posts.jsonl")
    base = ["--config", str(cfg), "--db", str(tmp_path / "m.sqlite"), "replay"]
    assert runner.invoke(main, [*base, str(stream)]).exit_code == 0
    store = Store.open(tmp_path / "m.sqlite")
    cutoff = datetime(2026, 2, 3, tzinfo=UTC)  # a day into the stream
    pruned = store.prune_posts(cutoff)
    final = store.first_open_bucket(timedelta(minutes=15))
    assert pruned and final is not None and final <= cutoff
    buckets_sql = "SELECT * FROM buckets WHERE bucket_start < ? ORDER BY service, bucket_start"
    kept = store.database.rows(buckets_sql, (iso(final),))
    store.close()
    rows = [json.loads(line) for line in stream.read_text().splitlines()]
    old = tmp_path / "old.jsonl"
    old.write_text("".join(json.dumps({**r, "id": f"old{r['id']}"}) + "\n" for r in rows
                           if datetime.fromisoformat(r["created_at"]) < final))
    for paced in ([], ["--speed", "1e9"]):  # stored ahead of their ticks, and by their ticks
        result = runner.invoke(main, [*base, str(old), *paced])
        assert result.exit_code == 0, result.output
        assert (f"warning: {pruned} posts of {old} are dated before {final:%Y-%m-%d %H:%M} UTC: a prune of this "
                "store deleted its posts up to there and kept their bucket counts, which are final, so these were "
                "not stored (as a source's would not be); replay them into a fresh store to see them") \
            in " ".join(result.output.split()), result.output
    store = Store.open(tmp_path / "m.sqlite")
    assert store.database.one("SELECT count(*) AS n FROM posts WHERE external_id LIKE 'old%'") == {"n": 0}
    assert store.database.rows(buckets_sql, (iso(final),)) == kept
    store.close()


@pytest.mark.parametrize("paced", [[], ["--speed", "1e9"]], ids=["prefetched", "paced"])
def test_replay_says_how_many_posts_were_new_and_how_many_it_had(tmp_path: Path, runner: CliRunner,
                                                                 paced: list[str]) -> None:
    # "replayed 4 posts" counted a post repeated in the file, and a rerun said it replayed them all again, while
    # the store took one post the second time and none the third.
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG)

    def line(n: int, at: str) -> str:
        return json.dumps({"id": str(n), "text": "x", "created_at": at, "source": "s"}) + "\n"

    stream = tmp_path / "s.jsonl"
    stream.write_text(line(1, "2026-01-01T00:01:00Z") * 2 + line(2, "2026-01-01T00:02:00Z")
                      + line(3, "2026-01-01T00:03:00Z"))
    base = ["--config", str(cfg), "--db", str(tmp_path / "m.sqlite"), "replay", str(stream), *paced]
    first = runner.invoke(main, base)
    assert first.exit_code == 0, first.output
    assert "replayed 4 posts from" in first.output
    assert "3 new posts stored; 1 was already in the store or earlier in the file\n" in first.output, first.output
    again = runner.invoke(main, base)
    assert again.exit_code == 0, again.output
    assert "0 new posts stored; 4 were already in the store or earlier in the file\n" in again.output, again.output
    store = Store.open(tmp_path / "m.sqlite")
    assert store.database.one("SELECT count(*) AS n FROM posts") == {"n": 3}
    store.close()


@pytest.mark.parametrize("args", [
    ["status"], ["status", "--format", "json"], ["outbox"], ["outbox", "--all"], ["silence", "list"],
    ["silence", "list", "--all"], ["query", "SELECT 1"], ["ui", "--metadata-only"], ["digest", "--dry-run", "--out"],
    ["backup"],
], ids=" ".join)
def test_commands_that_only_look_refuse_a_missing_store_and_create_nothing(tmp_path: Path, runner: CliRunner,
                                                                          args: list[str]) -> None:
    missing = tmp_path / "no" / "such" / "miner.sqlite"
    if args[-1] in ("--out", "backup"):
        args = [*args, str(tmp_path / "out" / "copy.sqlite")]
    res = runner.invoke(main, ["--config", str(ROOT / "feeds.toml"), "--db", str(missing), *args])
    assert res.exit_code == 1, res.output
    assert (f"Error: store {missing} does not exist (`miner collect --once` creates it; `miner demo` writes its "
            "own, demo-out/miner.sqlite)") in res.output
    assert sorted(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", [
    ["prune"], ["reclassify", "--since", "1h"], ["digest"], ["outbox", "send"], ["outbox", "retry", "1"],
    ["silence", "add", "MTN", "--for", "1h"], ["silence", "remove", "1"],
], ids=" ".join)
def test_commands_that_change_a_store_refuse_a_missing_one(tmp_path: Path, runner: CliRunner,
                                                           args: list[str]) -> None:
    # They created an empty store at a mistyped --db and went on: `silence add` muted nothing the service reads,
    # and `prune` or `outbox send` in cron exited 0 on a store nobody uses.
    missing = tmp_path / "miner.sqlite"
    res = runner.invoke(main, ["--config", str(bundled_path("demo.toml")), "--db", str(missing), *args])
    assert res.exit_code == 1, res.output
    assert (f"Error: store {missing} does not exist (`miner collect --once` creates it; `miner demo` writes its "
            "own, demo-out/miner.sqlite)") in res.output
    assert sorted(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", [
    ["prune"], ["reclassify", "--since", "1h"], ["digest"], ["outbox", "send"], ["outbox", "retry", "1"],
    ["silence", "add", "MTN", "--for", "1h"], ["silence", "remove", "1"], ["backup"], ["query", "SELECT 1"],
], ids=" ".join)
def test_commands_that_need_a_store_refuse_an_empty_file_as_status_does(tmp_path: Path, runner: CliRunner,
                                                                        args: list[str]) -> None:
    # A 0-byte file is what SQLite takes for a new database: `status` said it was empty, while `prune`, `silence
    # add`, `reclassify` and `outbox send` made a store of it and succeeded on nothing, and `backup` copied it as a
    # 4 KB "backup".
    empty = tmp_path / "e.sqlite"
    empty.touch()
    if args == ["backup"]:
        args = [*args, str(tmp_path / "copy.sqlite")]
    res = runner.invoke(main, ["--config", str(bundled_path("demo.toml")), "--db", str(empty), *args])
    assert res.exit_code == 1, res.output
    assert res.output == (f"Error: store {empty} is empty: no miner store was written to it yet (`miner collect "
                          "--once` creates one; `miner demo` writes its own, demo-out/miner.sqlite)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.sqlite"] and empty.stat().st_size == 0


def test_an_empty_store_file_beside_a_wal_is_refused_saying_sqlite_would_delete_the_wal(
        tmp_path: Path, runner: CliRunner) -> None:
    # SQLite deletes a -wal beside an empty main file when it opens it: the commits of a store whose main file
    # was lost (a copy cut short) would go.
    empty = tmp_path / "e.sqlite"
    empty.touch()
    wal = tmp_path / "e.sqlite-wal"
    wal.write_bytes(b"\x37\x7f\x06\x82" + bytes(4092))
    res = runner.invoke(main, ["--config", str(bundled_path("demo.toml")), "--db", str(empty), "prune"])
    assert res.exit_code == 1, res.output
    assert (f"is empty: no miner store was written to it yet (`miner collect --once` creates one; `miner demo` writes "
            f"its own, demo-out/miner.sqlite); {wal} (4,096 bytes) beside it cannot be read without the store's main "
            "file, and SQLite deletes it when it opens the empty file: keep a copy of it\n") in res.output, res.output
    assert wal.stat().st_size == 4096


def test_an_empty_file_refused_by_prune_is_made_a_store_by_replay(tmp_path: Path, runner: CliRunner) -> None:
    # The commands that fill a store create it in an empty file as they create a missing one (docs/operations.md).
    empty = tmp_path / "e.sqlite"
    empty.touch()
    res = runner.invoke(main, ["--config", str(bundled_path("demo.toml")), "--db", str(empty), "prune"])
    assert res.exit_code == 1 and "is empty: no miner store was written to it yet" in res.output, res.output
    posts = tmp_path / "posts.jsonl"
    posts.write_text('{"id": "1", "text": "github down", "created_at": "2026-01-01T00:00:00Z", "source": "s"}\n')
    res = runner.invoke(main, ["--config", str(bundled_path("demo.toml")), "--db", str(empty), "replay", str(posts),
                               "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert empty.stat().st_size > 0
    res = runner.invoke(main, ["--config", str(bundled_path("demo.toml")), "--db", str(empty), "status"])
    assert res.exit_code == 0, res.output


LOOKING = [["status"], ["outbox"], ["silence", "list"], ["digest", "--dry-run", "--out"]]


@pytest.mark.parametrize("args", LOOKING, ids=" ".join)
def test_commands_that_only_look_leave_an_older_store_as_it_is(tmp_path: Path, runner: CliRunner,
                                                              args: list[str]) -> None:
    # They opened it read-write, so looking at a store from an older miner migrated it (and switched it to WAL).
    old = tmp_path / "old.sqlite"
    with sqlite3.connect(old, isolation_level=None) as conn:
        apply_migrations(conn, MIGRATIONS[:1])
    before = old.read_bytes()
    if args[-1] == "--out":
        args = [*args, str(tmp_path / "out")]
    base = ["--config", str(ROOT / "feeds.toml"), "--db", str(old)]
    res = runner.invoke(main, [*base, *args])
    assert res.exit_code == 1
    assert (f"Error: store {old} was made by an older version of miner and needs upgrading (migration "
            f"{', '.join(m.id for m in MIGRATIONS[1:])}); this command only reads it and does not upgrade it: "
            "run `miner run`"
            in res.output), res.output
    assert old.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["old.sqlite"]
    Store.open(old).close()  # what any writing command does first
    res = runner.invoke(main, [*base, *args])
    assert res.exit_code == 0, res.output


def test_backup_copies_an_older_store_as_it_is(tmp_path: Path, runner: CliRunner) -> None:
    # backup opened the store read-write, so a backup taken before an upgrade was of the upgraded store, and the
    # original was migrated by the very command meant to keep it.
    old = tmp_path / "old.sqlite"
    with sqlite3.connect(old, isolation_level=None) as conn:
        apply_migrations(conn, MIGRATIONS[:1])
    before = old.read_bytes()
    res = runner.invoke(main, ["--config", str(ROOT / "feeds.toml"), "--db", str(old), "backup",
                               str(tmp_path / "copy.sqlite")])
    assert res.exit_code == 0, res.output
    assert old.read_bytes() == before
    with sqlite3.connect(tmp_path / "copy.sqlite") as copy:
        assert pending_migrations(copy) == [m.id for m in MIGRATIONS[1:]]


def test_a_backup_to_a_full_disk_leaves_no_partial_copy(tmp_path: Path) -> None:
    # Written in place, the copy that failed half-way stayed at TARGET: a file the size of the space left that
    # looked like a backup, and blocked the next try ("exists").
    db = tmp_path / "m.sqlite"
    store = Store.open(db)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    store.insert_posts([Post("feed", str(i), f"post {i} " + "x" * 400, at) for i in range(3000)], at)
    store.close()
    target = tmp_path / "backups" / "b.sqlite"
    limit = 256 * 1024  # a file-size limit: writes past it fail as on a full disk (the store is over 1 MB)
    code = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
            "from miner.cli import main; sys.exit(main())")
    res = subprocess.run([sys.executable, "-c", code, "--config", str(ROOT / "feeds.toml"), "--db", str(db),
                          "backup", str(target)], capture_output=True, text=True, cwd=ROOT, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 1
    assert res.stderr.startswith(f"Error: cannot write the backup {target} (disk I/O error); free space there or "
                                 f"choose another folder; nothing was left at {target}\n"), res.stderr
    assert "Traceback" not in res.stderr
    assert list(target.parent.iterdir()) == []  # neither the target nor the temporary copy
    res = subprocess.run([sys.executable, "-m", "miner", "--config", str(ROOT / "feeds.toml"), "--db", str(db),
                          "backup", str(target)], capture_output=True, text=True, cwd=ROOT, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stderr
    assert [p.name for p in target.parent.iterdir()] == ["b.sqlite"]
    with sqlite3.connect(target) as copy:
        assert copy.execute("SELECT count(*) FROM posts").fetchone()[0] == 3000


def test_a_backup_keeps_the_store_files_permissions(tmp_path: Path, runner: CliRunner) -> None:
    # The copy was created as the umask had it (0644): a store kept from other users (its posts and author hashes)
    # left a backup any of them could read.
    db = tmp_path / "m.sqlite"
    Store.open(db).close()
    for mode in (0o600, 0o640):
        db.chmod(mode)
        target = tmp_path / "backups" / f"b{mode:o}.sqlite"
        res = runner.invoke(main, ["--config", str(ROOT / "feeds.toml"), "--db", str(db), "backup", str(target)])
        assert res.exit_code == 0, res.output
        assert target.stat().st_mode & 0o777 == mode


def test_a_backup_of_a_corrupt_store_is_refused(tmp_path: Path, runner: CliRunner) -> None:
    # The backup API copies pages as they are: a damaged page that no command had read yet went into a backup
    # that looked fine, and the corruption was found only when that backup was restored.
    db = tmp_path / "m.sqlite"
    store = Store.open(db)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    store.insert_posts([Post("feed", str(i), f"post {i} " + "x" * 400, at) for i in range(500)], at)
    store.close()
    page = 4096
    assert db.stat().st_size > 40 * page
    with db.open("r+b") as f:  # pages of the posts, stored last, far from the schema's at the start
        f.seek(db.stat().st_size - 10 * page)
        f.write(b"\0" * 4 * page)
    target = tmp_path / "b.sqlite"
    res = runner.invoke(main, ["--config", str(ROOT / "feeds.toml"), "--db", str(db), "backup", str(target)])
    assert res.exit_code == 1
    assert res.output.startswith(f"Error: store {db} is corrupt (")
    assert (f"so no backup was written: a copy of it would not restore a working store; restore an earlier backup, "
            f"or recover what it holds with `sqlite3 {db} .recover | sqlite3 recovered.sqlite`\n") in res.output
    assert not [p.name for p in tmp_path.iterdir() if "b.sqlite" in p.name]  # neither it nor a temporary copy


@pytest.mark.parametrize("args", [*LOOKING, ["query", "SELECT count(*) FROM posts"], ["backup"]], ids=" ".join)
def test_commands_that_only_look_leave_no_wal_or_shm_behind(tmp_path: Path, runner: CliRunner,
                                                            args: list[str]) -> None:
    # A read-only connection cannot remove the -wal and -shm it creates beside a WAL store that had none (the
    # service stopped): every `miner status` left them behind, owned by whoever ran it.
    db = tmp_path / "miner.sqlite"
    Store.open(db).close()

    def run(n: int) -> Result:
        out = str(tmp_path / "out" / (f"copy{n}.sqlite" if args[0] == "backup" else ""))
        return runner.invoke(main, ["--config", str(ROOT / "feeds.toml"), "--db", str(db), *args,
                                    *([out] if args[-1] in ("--out", "backup") else [])])

    res = run(1)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "out") == ["miner.sqlite"]
    # With the service running they are its own, and stay.
    writer = Store.open(db)
    res = run(2)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("miner.sqlite-")) == \
        ["miner.sqlite-shm", "miner.sqlite-wal"]
    writer.close()


@pytest.mark.skipif(os.geteuid() == 0 and not shutil.which("setpriv"), reason="root ignores permissions")
def test_commands_that_only_look_read_a_store_in_a_read_only_folder(tmp_path: Path) -> None:
    # A read-only copy: they opened it read-write and failed with "attempt to write a readonly database".
    folder = tmp_path / "copy"
    folder.mkdir()
    Store.open(folder / "miner.sqlite").close()  # WAL mode, as every store miner has written
    folder.chmod(0o555)
    # Without its capabilities root is held to the permission bits like anyone else.
    drop = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"] if os.geteuid() == 0 else []
    try:
        for args in [*LOOKING, ["backup", str(tmp_path / "copy.sqlite")]]:
            args = [*args, str(tmp_path / "out")] if args[-1] == "--out" else args
            res = subprocess.run([*drop, sys.executable, "-m", "miner", "--config", str(ROOT / "feeds.toml"),
                                  "--db", str(folder / "miner.sqlite"), *args],
                                 capture_output=True, text=True, cwd=ROOT, timeout=60)
            assert res.returncode == 0, (args, res.stderr)
    finally:
        folder.chmod(0o755)


def _read_only_mount() -> list[str] | None:
    """A command line running ``sh -c SCRIPT`` in a mount namespace of its own (a user namespace too, so that no root
    is needed), where the script may bind-mount a folder read-only; None where the kernel or the box allows none."""
    cmd = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c"]
    if not shutil.which("unshare"):
        return None
    probe = subprocess.run([*cmd, "mount -t tmpfs none /tmp"], capture_output=True, timeout=30)
    return cmd if probe.returncode == 0 else None


def test_commands_that_only_look_read_a_store_on_a_read_only_file_system(tmp_path: Path) -> None:
    # A copy of the store on a read-only mount (a snapshot, a forensic copy): SQLite says "unable to open database
    # file" for the -shm it cannot create there, not "readonly" as in a folder without write permission, and each
    # of them failed with "cannot open store ...; does the folder exist and is it writable?".
    folder = tmp_path / "copy"
    folder.mkdir()
    store = Store.open(folder / "miner.sqlite")  # WAL mode, as every store miner has written
    store.insert_posts([Post("feed", "1", "x", datetime(2026, 1, 1, tzinfo=UTC))], datetime(2026, 1, 1, tzinfo=UTC))
    store.close()
    if (cmd := _read_only_mount()) is None:
        pytest.skip("no mount namespace to mount a folder read-only in")
    for args in [*LOOKING, ["query", "SELECT count(*) FROM posts"], ["backup", str(tmp_path / "copy.sqlite")]]:
        args = [*args, str(tmp_path / "out")] if args[-1] == "--out" else args
        res = _miner_on_read_only_mount(cmd, folder, args)
        assert res.returncode == 0, (args, res.stderr)
        if args[0] == "query":
            assert res.stdout.split()[-1] == "1"


def _miner_on_read_only_mount(cmd: list[str], folder: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    """`miner --db FOLDER/miner.sqlite ARGS` with ``folder`` mounted read-only (``cmd``: _read_only_mount's)."""
    miner = [sys.executable, "-m", "miner", "--config", str(ROOT / "feeds.toml"), "--db", str(folder / "miner.sqlite"),
             *args]
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    return subprocess.run([*cmd, script, "sh", str(folder), *miner], capture_output=True, text=True, cwd=ROOT,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_commands_that_only_look_read_a_snapshot_whose_wal_holds_commits_on_a_read_only_file_system(
        tmp_path: Path) -> None:
    # A snapshot taken while the service ran, of the store and its -wal but no -shm: SQLite cannot create the -shm
    # it reads the -wal with there, and each command failed with "(unable to open database file); does the folder
    # exist and is it writable?" (opened immutable, the commits in the -wal would not be read at all).
    live = tmp_path / "live"
    live.mkdir()
    Store.open(live / "miner.sqlite").close()  # its schema checkpointed into the store file
    store = Store.open(live / "miner.sqlite")
    store.database.conn.execute("PRAGMA wal_autocheckpoint = 0")  # the post stays in the -wal
    store.insert_posts([Post("feed", "1", "x", datetime(2026, 1, 1, tzinfo=UTC))], datetime(2026, 1, 1, tzinfo=UTC))
    folder = tmp_path / "snapshot"
    folder.mkdir()
    for name in ("miner.sqlite", "miner.sqlite-wal"):
        shutil.copy(live / name, folder / name)
    store.close()
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert len(before["miner.sqlite-wal"]) > 0
    if (cmd := _read_only_mount()) is None:
        pytest.skip("no mount namespace to mount a folder read-only in")
    backup = tmp_path / "copy.sqlite"
    for args in [*LOOKING, ["query", "SELECT count(*) FROM posts"], ["backup", str(backup)]]:
        args = [*args, str(tmp_path / "out")] if args[-1] == "--out" else args
        res = _miner_on_read_only_mount(cmd, folder, args)
        assert res.returncode == 0, (args, res.stderr)
        if args[0] == "query":
            assert res.stdout.split()[-1] == "1", res.stdout
    with sqlite3.connect(backup) as conn:
        assert conn.execute("SELECT count(*) FROM posts").fetchone() == (1,)
    conn.close()
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


@pytest.mark.parametrize("args", [["status"], ["outbox"], ["silence", "list"], ["query", "SELECT count(*) FROM posts"]],
                         ids=" ".join)
def test_commands_that_only_look_read_a_store_on_a_full_disk(tmp_path: Path, args: list[str]) -> None:
    # With the service stopped there is no -shm index beside the store, and SQLite could not give the one it
    # creates its size: they failed with "disk full or I/O error", just when the operator looked at what was wrong.
    db = tmp_path / "miner.sqlite"
    store = Store.open(db)  # WAL mode, as every store miner has written; closed, so its -wal and -shm are gone
    store.insert_posts([Post("feed", "1", "x", datetime(2026, 1, 1, tzinfo=UTC))], datetime(2026, 1, 1, tzinfo=UTC))
    store.close()
    full_disk = [sys.executable, "-c", "import os, resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0)); "
                 "os.execv(sys.argv[1], sys.argv[1:])"]  # a file-size limit of 0: no write may add to a file
    res = subprocess.run([*full_disk, sys.executable, "-m", "miner", "--config", str(ROOT / "feeds.toml"), "--db",
                          str(db), *args], capture_output=True, text=True, cwd=ROOT, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stderr
    if args[0] == "query":
        assert res.stdout.split()[-1] == "1"


def test_demo_replaces_only_a_store_an_earlier_demo_wrote(tmp_path: Path, runner: CliRunner,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # `miner demo --out .` in the service's folder deleted its miner.sqlite (and -wal), and did so even with --db
    # naming another store for the demo.
    monkeypatch.delenv("MINER_CONFIG", raising=False)
    out = tmp_path / "out"
    out.mkdir()
    db = out / "miner.sqlite"
    store = Store.open(db)
    store.insert_posts([Post("status-feed", "1", "mtn down", datetime(2026, 1, 1, tzinfo=UTC))],
                       datetime(2026, 1, 1, tzinfo=UTC))
    store.close()
    result = runner.invoke(main, ["demo", "--out", str(out)])
    assert result.exit_code == 1
    assert (f"Error: {db} is not a store an earlier `miner demo` wrote, and the demo starts a fresh store in its "
            f"--out folder: give it another one, or add the demo to this store with miner --db {db} demo") \
        in result.output, result.output
    (tmp_path / "notes.txt").write_text("")
    other = tmp_path / "notes.txt" / "demo.sqlite"  # fails at its lock, which comes after the deletion
    result = runner.invoke(main, ["--db", str(other), "demo", "--out", str(out)])
    assert result.exit_code == 1 and f"Error: cannot create the service lock {other}.lock" in result.output, \
        result.output
    assert sqlite3.connect(db).execute("SELECT source FROM posts").fetchall() == [("status-feed",)]
    db.write_bytes(b"notes, not a store")
    assert runner.invoke(main, ["demo", "--out", str(out)]).exit_code == 1
    assert db.read_bytes() == b"notes, not a store"

    # An earlier demo's store is replaced (the run fails after that here, at the model).
    db.unlink()
    store = Store.open(db)
    store.insert_posts(list(read_posts(demo_stream_path()))[:3], datetime(2026, 1, 1, tzinfo=UTC))
    store.close()
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(f'[classifier]\nmodel_dir = "{tmp_path / "no-model"}"\n')
    result = runner.invoke(main, ["--config", str(cfg), "demo", "--out", str(out)])
    assert result.exit_code == 1 and "no-model" in result.output, result.output
    assert sqlite3.connect(db).execute("SELECT count(*) FROM posts").fetchone() == (0,)



def test_demo_keeps_a_services_store_that_has_no_posts_yet(tmp_path: Path, runner: CliRunner,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # A store without posts passed for a demo's: `miner demo --out .` beside a service whose sources had stored
    # nothing yet (failing, or not polled yet) deleted its store, with the silences set and the sources' state.
    monkeypatch.delenv("MINER_CONFIG", raising=False)
    out = tmp_path / "out"
    db = out / "miner.sqlite"
    cfg = tmp_path / "feeds.toml"
    cfg.write_text('[[services]]\nname = "MTN"\n\n[[sources]]\nname = "forum"\ntype = "rss"\n'
                   'url = "http://127.0.0.1:9/forum.rss"\n')
    service = ["--config", str(cfg), "--db", str(db)]
    assert runner.invoke(main, [*service, "collect", "--once"]).exit_code == 1  # the feed is down
    assert runner.invoke(main, [*service, "silence", "add", "MTN", "--for", "1d"]).exit_code == 0
    result = runner.invoke(main, ["demo", "--out", str(out)])
    assert result.exit_code == 1
    assert f"Error: {db} is not a store an earlier `miner demo` wrote" in result.output, result.output
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM silences").fetchone() == (1,)
    assert conn.execute("SELECT name FROM sources").fetchall() == [("forum",)]
    conn.close()

    # One holding nothing at all is a demo's stopped before it stored a post (here it fails at the model again).
    db.unlink()
    Store.open(db).close()
    bad_model = tmp_path / "demo.toml"
    bad_model.write_text(f'[classifier]\nmodel_dir = "{tmp_path / "no-model"}"\n')
    result = runner.invoke(main, ["--config", str(bad_model), "demo", "--out", str(out)])
    assert result.exit_code == 1 and "no-model" in result.output, result.output
    # That run began its replay (alert_state's mark) before its model failed to load: still a demo's store holding
    # nothing, not refused as a service's.
    assert sqlite3.connect(db).execute("SELECT key FROM alert_state").fetchall() == [("replay_outbox_after",)]
    result = runner.invoke(main, ["--config", str(bad_model), "demo", "--out", str(out)])
    assert result.exit_code == 1 and "no-model" in result.output, result.output


def test_demo_writes_its_own_store_whatever_miner_db_and_miner_config_say(tmp_path: Path, runner: CliRunner,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # MINER_DB exported for the service's store (to spare typing --db for `miner status`) took the README's first
    # command there: 5,355 posts of 2019 and their incident added to the service's store, without a word; and
    # MINER_CONFIG gave the demo the service's services, which match none of its posts.
    service_db = tmp_path / "service.sqlite"
    cfg = tmp_path / "feeds.toml"
    cfg.write_text('[[services]]\nname = "Slack"\n')
    Store.open(service_db).close()
    monkeypatch.setenv("MINER_DB", str(service_db))
    monkeypatch.setenv("MINER_CONFIG", str(cfg))
    out = tmp_path / "out"
    result = runner.invoke(main, ["demo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "replayed 5355 posts" in result.output and "1 incident detected" in result.output
    assert ("MINER_DB and MINER_CONFIG (from the environment) are not used by the demo: it writes its own store "
            "with its own config (--db and --config before the command say otherwise)") in result.output
    assert sqlite3.connect(service_db).execute("SELECT count(*) FROM posts").fetchone() == (0,)
    assert sqlite3.connect(out / "miner.sqlite").execute("SELECT count(*) FROM posts").fetchone() == (5355,)


def test_demo_replays_the_bundled_stream_end_to_end(tmp_path: Path, runner: CliRunner,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # The README's first command: offline, on the bundled real stream, into a fresh folder.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MINER_CONFIG", raising=False)
    result = runner.invoke(main, ["demo", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "replayed 5355 posts" in result.output and "1 incident detected" in result.output
    # Its progress on stderr, where there is no terminal (a CI log, `make demo > log`): the bar's label alone, and it
    # read "demo", a line that said nothing.
    assert "\nreplaying 5355 posts\n" in result.stderr and "\ndemo\n" not in result.stderr, result.stderr
    assert re.search(r"\nsample posts of incident 1 \(\w+\):\n  - .+\n  - .+\n  - .+\n", result.output), result.output
    # Its last line says what to do next: it ended on the digest's files.
    assert result.output.splitlines()[-1] == (
        "next, your own services: write a feeds.toml (its services, sources and an alert route: "
        "docs/configuration.md), check it with `miner config check`, then start the service, `miner run`")
    sent = sorted(p.name for p in (tmp_path / "out" / "outbox").iterdir())
    assert [name.split("-")[2] for name in sent] == ["OPEN", "RESOLVED", "Digest"], sent
    assert {p.suffix for p in (tmp_path / "out").glob("digest-*")} >= {".eml", ".html", ".txt"}
    # The table's baseline is the emails': the console said 0.4 (0.352 to one decimal) where they said 0.35.
    row = re.search(r"\n +1 +\w+ +\S+ \S+ +\S+ \S+ +(\d+) +(\S+) +(\S+) ", result.output)
    alert = email.message_from_bytes((tmp_path / "out" / "outbox" / sent[0]).read_bytes(), policy=email.policy.default)
    text = alert.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert row is not None and f"{row[1]} complaints per bucket vs baseline {row[3]} " in text, (result.output, text)



@pytest.mark.parametrize("paced", [[], ["--speed", "1e9"]], ids=["prefetched", "paced"])
def test_replay_runs_its_clock_up_to_now_and_no_further(tmp_path: Path, runner: CliRunner, paced: list[str],
                                                        real_posts: dict[str, list[str]]) -> None:
    # The clock ran 6 hours past the last post, however recent: a capture ending in an outage still going on had it
    # resolved by hours of empty buckets ahead of time (a resolve notice written, "resolved" in the summary), and the
    # store's detector and alert state were left hours ahead of the real clock.
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG + '\n[alerts]\ngroup_wait = 0\n\n[[alerts.routes]]\nname = "oncall"\n'
                            'email = ["oncall@example.org"]\n')
    capture = capture_ending_now(real_posts, tmp_path)
    out = tmp_path / "out"
    result = runner.invoke(main, ["--config", str(cfg), "--db", str(tmp_path / "m.sqlite"), "replay", str(capture),
                                  "--out", str(out), *paced])
    assert result.exit_code == 0, result.output
    end = re.search(r"replayed \d+ posts from .* to (.*) UTC in", result.output)
    assert end is not None and datetime.strptime(end[1], "%Y-%m-%d %H:%M").replace(tzinfo=UTC) <= utcnow()
    store = Store.open(tmp_path / "m.sqlite")
    clock = store.detector_clock()
    assert clock is not None and clock <= utcnow()
    assert [(i["service"], i["status"], i["resolved_at"]) for i in store.incidents()] == [("MTN", "open", None)]
    assert [r["kind"] for r in store.outbox_listing(["pending", "sending", "sent"])] == ["alert"]
    store.close()
    assert [p.name for p in (out / "outbox").iterdir() if "RESOLVED" in p.read_text()] == []


def test_a_paced_replay_into_a_store_that_has_it_all_takes_no_time(tmp_path: Path, runner: CliRunner) -> None:
    # Replaying a file again resumes it, but --speed waited out all the time the first run had replayed: here 27 s
    # (2 days and the 6 h after them at 7,200 times) to store nothing.
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG)
    t0 = floor_time(utcnow() - timedelta(days=10), timedelta(hours=1))
    stream = tmp_path / "s.jsonl"
    stream.write_text("".join(json.dumps({"id": str(n), "text": "MTN ok", "source": "s",
                                          "created_at": iso(t0 + timedelta(hours=n))}) + "\n" for n in range(48)))
    base = ["--config", str(cfg), "--db", str(tmp_path / "m.sqlite"), "replay", str(stream)]
    assert runner.invoke(main, base).exit_code == 0
    again = runner.invoke(main, [*base, "--speed", "7200"])
    assert again.exit_code == 0, again.output
    took = re.search(r"replayed 48 posts from .* UTC in ([\d.]+) s \(54 ticks\)", again.output)
    assert took is not None and float(took[1]) < 5, again.output


def test_replay_matches_a_configured_sources_posts_only_against_its_services(tmp_path: Path,
                                                                              runner: CliRunner) -> None:
    # A replayed post was matched against every service, though it names a source whose `services` limit the
    # matching of its posts, as a poll of it does: a replay of the source's capture counted what the service had not.
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG + '\n[[sources]]\nname = "mtn-forum"\ntype = "rss"\nurl = "http://127.0.0.1:9/f.rss"\n'
                            'services = ["mtn"]\n')
    stream = tmp_path / "s.jsonl"
    at = iso(utcnow() - timedelta(days=1))
    stream.write_text("".join(json.dumps({"id": n, "text": text, "created_at": at, "source": source}) + "\n"
                              for n, (source, text) in enumerate((("mtn-forum", "airtel is down"),
                                                                  ("mtn-forum", "mtn and airtel are down"),
                                                                  ("elsewhere", "mtn and airtel are down")))))
    result = runner.invoke(main, ["--config", str(cfg), "--db", str(tmp_path / "m.sqlite"), "replay", str(stream)])
    assert result.exit_code == 0, result.output
    conn = sqlite3.connect(tmp_path / "m.sqlite")
    matched = conn.execute("SELECT p.external_id, group_concat(s.service, ' ') FROM posts p LEFT JOIN post_services s "
                           "ON s.post_id = p.id GROUP BY p.id ORDER BY p.external_id").fetchall()
    conn.close()
    assert [(n, sorted(services.split()) if services else []) for n, services in matched] == \
        [("0", []), ("1", ["MTN"]), ("2", ["Airtel", "MTN"])]


def test_status_shows_the_last_bucket_scored_and_the_sources_the_buckets_since_wait_for(
        tmp_path: Path, runner: CliRunner) -> None:
    # A bucket waits for the sources polled for its service (their next poll, detector.settle_minutes at most), and
    # for a source behind (its last poll stopped before it had read everything new) the whole settle_minutes: an
    # operator wondering why the bucket just ended had no score saw neither the wait nor whom it was for.
    from miner.config import parse_config
    from miner.pipeline import Pipeline
    from miner.records import FetchResult, SourceState

    width = timedelta(minutes=5)
    # The test's clock and the command's must see the same buckets: with less than a minute of this one left (the
    # test takes a second, more on a loaded machine), on in the next one.
    left = (floor_time(utcnow(), width) + width - utcnow()).total_seconds()
    if left < 60:
        time.sleep(left + 1)
    text = CONFIG.replace("bucket_minutes = 15", "bucket_minutes = 5") + (
        '\n[[sources]]\nname = "masto"\ntype = "mastodon"\nurl = "http://127.0.0.1:9"\nquery = "#mtn"\n'
        'services = ["MTN"]\n\n[[sources]]\nname = "feed"\ntype = "rss"\nurl = "http://127.0.0.1:9/feed.rss"\n')
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(text)
    db = tmp_path / "m.sqlite"
    base = ["--config", str(cfg), "--db", str(db)]
    config = parse_config(text)
    now = utcnow()
    last_ended = floor_time(now, width) - width
    store = Store.open(db)
    store.sync_sources(config.sources)

    def poll(source: str, at: datetime, behind: bool = False) -> None:
        store.save_fetch(source, FetchResult(state=SourceState(cursor=iso(at)), behind=behind), at, at + width)

    def status() -> tuple[dict[str, dict[str, object]], dict[str, dict[str, object]], str]:
        result = runner.invoke(main, [*base, "status"])
        assert result.exit_code == 0, result.output
        data = json.loads(runner.invoke(main, [*base, "status", "--format", "json"]).stdout)
        return ({s["service"]: s for s in data["services"]}, {s["source"]: s for s in data["sources"]},
                result.output)

    # Both polled as the bucket before the last one ended, and that bucket scored.
    for source in ("masto", "feed"):
        poll(source, last_ended)
    Pipeline(config, store).detect(last_ended + timedelta(seconds=1))
    # Then the feed polled within the last bucket, before its end, and Mastodon since, its page cap cut short.
    poll("feed", last_ended + width - timedelta(minutes=1))
    poll("masto", now, behind=True)
    services, sources, shown = status()
    scored = iso(last_ended - width)
    assert {name: (s["last_bucket"], s["waiting_for"]) for name, s in services.items()} == {
        "MTN": (scored, ["feed", "masto"]), "Airtel": (scored, ["feed"])}
    assert (sources["masto"]["behind"], sources["feed"]["behind"]) == (True, False)
    lines = shown.splitlines()
    header = next(line for line in lines if line.startswith("service "))  # below the model's line
    assert "last bucket" in header and "waiting for" in header and "behind" in shown
    mtn = next(line for line in lines if line.startswith("MTN "))
    assert f"{shown_time(scored)}  feed, masto" in mtn, shown
    masto = next(line for line in lines if line.startswith("masto "))
    assert masto.split()[-1] == "yes" and not next(line for line in lines if line.startswith("feed ")).endswith(
        "yes"), shown

    # The feed polled again: Airtel's bucket waits for nothing but the detector's next run, MTN's for Mastodon.
    poll("feed", now)
    services, _, _ = status()
    assert {name: s["waiting_for"] for name, s in services.items()} == {"MTN": ["masto"], "Airtel": []}
    # Mastodon read the rest: nothing waits, and the detector's run scores the last bucket.
    poll("masto", now)
    services, sources, _ = status()
    assert {name: s["waiting_for"] for name, s in services.items()} == {"MTN": [], "Airtel": []}
    assert sources["masto"]["behind"] is False
    Pipeline(config, store).detect(now)
    store.close()
    services, _, shown = status()
    assert {name: (s["last_bucket"], s["waiting_for"]) for name, s in services.items()} == {
        "MTN": (iso(last_ended), []), "Airtel": (iso(last_ended), [])}
    assert f"{shown_time(iso(last_ended))}" in next(line for line in shown.splitlines() if line.startswith("MTN "))


def test_reclassify_with_a_model_it_refuses_leaves_an_older_store_as_it_was(tmp_path: Path, runner: CliRunner) -> None:
    # The store was opened, and so upgraded, before the model folder was read: a model refused on upgrade day left
    # a 0.1.0 store upgraded all the same, which the version that ran before refuses (as `miner run` once did).
    db = tmp_path / "m.sqlite"
    with sqlite3.connect(db, isolation_level=None) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        apply_migrations(conn, MIGRATIONS[:2])  # the schema of miner 0.1.0
    (tmp_path / "empty-models").mkdir()
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG + f'\n[classifier]\nmodel_dir = "{tmp_path / "empty-models"}"\n')
    result = runner.invoke(main, ["--config", str(cfg), "--db", str(db), "reclassify", "--since", "1d"])
    assert result.exit_code == 1
    assert "model.json: model metadata not found" in result.output, result.output
    with sqlite3.connect(db) as conn:
        assert [r[0] for r in conn.execute("SELECT id FROM schema_migrations")] == [m.id for m in MIGRATIONS[:2]]
    # A store that is not there is still told first, before a model is looked for.
    missing = runner.invoke(main, ["--config", str(cfg), "--db", str(tmp_path / "typo.sqlite"), "reclassify",
                                   "--since", "1d"])
    assert missing.exit_code == 1 and "typo.sqlite does not exist" in missing.output, missing.output


def _posts_judged_by_an_old_model(db: Path, count: int) -> None:
    """``count`` posts of the last hour that the model calls outage reports, each with an "old-model" verdict
    calling it none."""
    from miner.records import Prediction

    now = utcnow()
    store = Store.open(db)
    store.insert_posts([Post("feed", str(i), f"mtn network is down again {i}", now - timedelta(seconds=1 + i),
                             services=("MTN",)) for i in range(count)], now)
    store.save_classifications([(p.id, Prediction(0.1, False, None)) for p in store.posts_to_classify(count)],
                               "old-model", now)
    store.refresh_buckets(now - timedelta(hours=1), now, timedelta(minutes=5))
    store.close()


def test_reclassify_says_what_it_changed_and_refuses_a_since_after_now(tmp_path: Path, runner: CliRunner) -> None:
    # The run said only "reclassified 3 posts": not how the complaints counted changed, nor how long it took; a
    # --since in the future (a typo in the year) said "reclassified 0 posts since 2027-...", as if all was done; and
    # strftime wrote year 1 as "1-01-01".
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG)
    db = tmp_path / "m.sqlite"
    _posts_judged_by_an_old_model(db, 3)
    base = ["--config", str(cfg), "--db", str(db), "reclassify"]
    later = runner.invoke(main, [*base, "--since", (utcnow() + timedelta(days=1)).strftime("%Y-%m-%d")])
    assert later.exit_code == 1 and "UTC is after now (" in later.output and "no post is that new" in later.output
    result = runner.invoke(main, [*base, "--since", "0001-01-01"])
    assert result.exit_code == 0, result.output
    assert re.search(r"^reclassified 3 posts since 0001-01-01 00:00:00 UTC in \d+\.\d s$", result.stdout, re.M), \
        result.stdout
    assert "complaints counted since then: 0 before, 3 now; the service's next detector run learns its baselines " \
           "again" in result.stdout, result.stdout


def test_reclassify_interrupted_says_how_far_it_got_and_how_to_go_on(tmp_path: Path) -> None:
    # SIGTERM half-way said only "Interrupted by SIGTERM": not that the batches done keep their new verdicts, nor
    # how to do the rest (the same --since given as a duration, run later, covers another range).
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG + "\n[classifier]\nbatch_size = 1\n")  # 64 posts per batch
    db = tmp_path / "m.sqlite"
    _posts_judged_by_an_old_model(db, 3000)
    env = {k: v for k, v in os.environ.items() if k != "MINER_CONFIG"} | {"PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "miner", "--config", str(cfg), "--db", str(db), "reclassify",
                             "--since", "2h"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    version = "SELECT count(*) FROM classifications WHERE model_version != 'old-model'"
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        with sqlite3.connect(db) as conn:
            if conn.execute(version).fetchone()[0]:
                break
        time.sleep(0.05)
    proc.terminate()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    with sqlite3.connect(db) as conn:
        done = conn.execute(version).fetchone()[0]
    assert 0 < done < 3000
    assert re.search(rf"reclassified {done} of 3000 posts since \S+ \S+ UTC before the interruption; run `miner "
                     r"reclassify --since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00` again to do the rest",
                     err.decode()), err
    assert err.decode().rstrip().endswith("Interrupted by SIGTERM")

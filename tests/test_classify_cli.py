"""`miner classify` end to end on real model files, with odd input."""

from __future__ import annotations

import codecs
import gzip
import io
import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from miner.classify import Classifier
from miner.classify.model import default_model_dir
from miner.cli import main

ODD = Path(__file__).parent / "fixtures" / "classify" / "odd_input.jsonl"
ROOT = Path(__file__).resolve().parent.parent


def _rows(text: str) -> list[dict[str, object]]:
    return [json.loads(line, parse_constant=_refuse) for line in text.splitlines()]


def _refuse(name: str) -> None:
    raise AssertionError(f"{name} in output: not JSON")


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)  # no ./feeds.toml: classify needs no config
    monkeypatch.delenv("MINER_CONFIG", raising=False)
    return CliRunner()


def test_odd_input_to_file(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    result = runner.invoke(main, ["classify", str(ODD), "-o", str(out)])
    assert result.exit_code == 1, result.output
    assert "line 5: invalid JSON (Expecting property name enclosed in double quotes at column 2)" in result.stderr
    assert "line 6: missing 'text'" in result.stderr
    assert "line 7: missing or invalid 'id'" in result.stderr
    rows = _rows(out.read_text())
    assert len(rows) == len(ODD.read_text().splitlines())
    assert [r["id"] for r in rows] == ["a1", "a2", "a3", "a4", None, "a6", None, 8, "a9", "a10"]
    errors = [i for i, r in enumerate(rows) if "error" in r]
    assert errors == [4, 5, 6]
    for i, r in enumerate(rows):
        if i in errors:
            assert r["outage"] is None and r["score"] is None
            continue
        assert set(r) == {"id", "outage", "score", "symptom"}
        assert r["outage"] in (0, 1) and 0.0 <= float(r["score"]) <= 1.0  # type: ignore[arg-type]
        assert (r["symptom"] is None) == (r["outage"] == 0)
    assert rows[0]["outage"] == 1 and rows[8]["outage"] == 1 and rows[8]["symptom"] == "power"
    assert rows[9]["outage"] == 0


def test_stdin_to_stdout_all_valid(runner: CliRunner) -> None:
    lines = [json.dumps({"id": i, "text": t}) for i, t in enumerate(["calm down", "whatsapp is down"] * 40)]
    result = runner.invoke(main, ["classify", "-", "--batch-size", "3"], input="\n".join(lines) + "\n")
    assert result.exit_code == 0, result.output
    rows = _rows(result.stdout)
    assert [r["id"] for r in rows] == list(range(80))
    assert [r["outage"] for r in rows] == [0, 1] * 40
    assert result.stderr == ""


def test_windows_export_with_byte_order_mark_crlf_a_blank_line_and_half_an_emoji(
    runner: CliRunner, tmp_path: Path
) -> None:
    src = tmp_path / "export.jsonl"
    lines = [json.dumps({"id": "w1", "text": "whatsapp is down"}), "", json.dumps({"id": "w3", "text": "calm down"}),
             '{"id": "w4", "text": "whatsapp is down again \\ud83d"}']  # half an emoji, from a truncated post
    src.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    result = runner.invoke(main, ["classify", str(src)])
    assert result.exit_code == 1
    rows = _rows(result.stdout)
    assert [(r["id"], r["outage"]) for r in rows] == [("w1", 1), (None, None), ("w3", 0), ("w4", 1)]
    assert rows[1]["error"] == "line 2: empty line"
    assert result.stderr.count("error: ") == 1


def test_files_joined_with_cat_keep_the_second_byte_order_mark_out_of_the_json(
    runner: CliRunner, tmp_path: Path
) -> None:
    part = b"\xef\xbb\xbf" + json.dumps({"id": "w", "text": "whatsapp is down"}).encode() + b"\r\n"
    src = tmp_path / "joined.jsonl"
    src.write_bytes(part + part.replace(b'"w"', b'"x"'))
    result = runner.invoke(main, ["classify", str(src)])
    assert result.exit_code == 0, result.output
    assert [(r["id"], r["outage"]) for r in _rows(result.stdout)] == [("w", 1), ("x", 1)]


def test_a_utf16_export_is_refused_whole_saying_so_instead_of_an_error_row_per_line(
    runner: CliRunner, tmp_path: Path
) -> None:
    # Windows PowerShell 5's `>` writes UTF-16 with a byte-order mark: read as UTF-8, 3 posts gave 4 error rows (the
    # last newline's second byte a line of its own), "not valid UTF-8" then "invalid JSON", and the -o file replaced.
    # UTF-32 big-endian's mark (00 00 FE FF) was not looked for: a row per line, each "not valid UTF-8" or "invalid
    # JSON"; and UTF-32's were told to convert it as UTF-16, which makes a NUL of every other character.
    text = "".join(json.dumps({"id": i, "text": "whatsapp is down"}) + "\r\n" for i in range(3))
    src, packed, out = tmp_path / "ps.jsonl", tmp_path / "ps.jsonl.gz", tmp_path / "out.jsonl"
    for encoding, bom in [("utf-16-le", b"\xff\xfe"), ("utf-16-be", b"\xfe\xff"), ("utf-32-le", b"\xff\xfe\x00\x00"),
                          ("utf-32-be", b"\x00\x00\xfe\xff")]:
        src.write_bytes(bom + text.encode(encoding))
        packed.write_bytes(gzip.compress(src.read_bytes()))
        unicode = encoding[:6].upper()
        for name in (src, packed):
            out.write_text("rows of an earlier run\n")
            result = runner.invoke(main, ["classify", str(name), "-o", str(out)])
            assert result.exit_code == 1, result.output
            assert result.stderr.endswith(f"Error: the input is {unicode} (it starts with such a byte-order mark), "
                                          f"not UTF-8: convert it first (iconv -f {unicode} -t UTF-8)\n")
            assert out.read_text() == "rows of an earlier run\n"
            assert set(tmp_path.iterdir()) == {src, packed, out}


def test_input_compressed_other_than_with_gzip_is_refused_whole_naming_the_format(
    runner: CliRunner, tmp_path: Path
) -> None:
    # Read as text, each stray newline byte ended a "line": a row count unrelated to the posts, each row an error that
    # did not say why, and the -o file replaced.
    import bz2
    import lzma
    import zipfile

    text = "".join(json.dumps({"id": i, "text": f"whatsapp is down {i}"}) + "\n" for i in range(2000)).encode()
    src, out = tmp_path / "posts.jsonl.x", tmp_path / "out.jsonl"
    with zipfile.ZipFile(tmp_path / "posts.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("posts.jsonl", text)
    zipped = (tmp_path / "posts.zip").read_bytes()
    zstd = b"\x28\xb5\x2f\xfd" + lzma.compress(text)  # a zstd frame's magic number; no zstd module to make the rest
    for data, what in [(bz2.compress(text), "bzip2-compressed"), (lzma.compress(text), "xz-compressed"),
                       (zstd, "zstd-compressed"), (zipped, "a zip archive")]:
        src.write_bytes(data)
        out.write_text("rows of an earlier run\n")
        result = runner.invoke(main, ["classify", str(src), "-o", str(out)])
        assert result.exit_code == 1, result.output
        assert result.stderr.splitlines()[-1].startswith(f"Error: the input is {what}: only gzip is read; ")
        assert out.read_text() == "rows of an earlier run\n"
    # Text that starts as such a file does is not taken for one: a JSONL line starts with "{".
    src.write_text('{"id": "BZh", "text": "PK\\u0003\\u0004"}\n')
    result = runner.invoke(main, ["classify", str(src)])
    assert result.exit_code == 0 and _rows(result.stdout)[0]["id"] == "BZh"


def test_lines_that_parse_but_cannot_be_answered_are_errors_not_a_crash(runner: CliRunner) -> None:
    lines = ['{"id": NaN, "text": "whatsapp is down"}', "[" * 5000 + "]" * 5000, '{"id": 3, "text": "calm down"}']
    result = runner.invoke(main, ["classify", "-"], input="\n".join(lines) + "\n")
    assert result.exit_code == 1
    rows = _rows(result.stdout)  # every output line is strict JSON (NaN would not be)
    assert [r.get("error") for r in rows] == [
        "line 1: missing or invalid 'id'", "line 2: JSON nested deeper than 256 levels: a post is one flat object", None
    ]
    assert rows[2]["id"] == 3 and rows[2]["outage"] == 0


def test_a_line_of_too_many_values_or_nested_too_deep_is_refused_before_it_is_parsed(runner: CliRunner) -> None:
    # 16 MiB of `[[[[]]]],...` (5 deep) took a run from 0.13 GB to 0.80 GB to parse, in a post's field too; a field
    # nested 300 deep was parsed (json's own limit is about 1,000). Each is an error row naming its line, in order.
    text = "down again, " + "[x] {y}: z, " * 20_000  # brackets and commas in a text are no JSON's
    lines = ["[" + "[[[[]]]]," * 30_000 + "[]]", '{"id": 2, "text": "x", "junk": [' + "[[]]," * 60_000 + "[]]}",
             '{"id": 3, "text": "x", "junk": ' + "[" * 300 + "]" * 300 + "}",
             json.dumps({"id": 4, "text": text, "fine": [[[1]]] * 200, "deep": "[" * 5000}),
             '{"id": 5, "text": "whatsapp is down", "deep": ' + "[" * 250 + "]" * 250 + "}"]
    result = runner.invoke(main, ["classify", "-"], input="\n".join(lines) + "\n")
    assert result.exit_code == 1
    rows = _rows(result.stdout)
    assert [r.get("error") for r in rows] == [
        "line 1: JSON of more than 100,000 values: a post is one flat object",
        "line 2: JSON of more than 100,000 values: a post is one flat object",
        "line 3: JSON nested deeper than 256 levels: a post is one flat object", None, None]
    assert [r["id"] for r in rows] == [None, None, None, 4, 5] and rows[4]["outage"] == 1


def test_gzip_input_streams_and_a_truncated_one_keeps_the_lines_before_the_damage(
    runner: CliRunner, tmp_path: Path
) -> None:
    plain = runner.invoke(main, ["classify", str(ODD)])
    packed = tmp_path / "odd.jsonl.gz"
    packed.write_bytes(gzip.compress(ODD.read_bytes()))
    result = runner.invoke(main, ["classify", str(packed)])
    assert (result.exit_code, result.stdout) == (plain.exit_code, plain.stdout)
    lines = [json.dumps({"id": i, "text": f"post number {i}: whatsapp is down {i * 7919}"}) for i in range(3000)]
    whole = gzip.compress(("\n".join(lines) + "\n").encode())
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    result = runner.invoke(main, ["classify", str(cut)])
    assert result.exit_code == 1
    rows = _rows(result.stdout)
    assert 0 < len(rows) < 3000 and [r["id"] for r in rows] == list(range(len(rows)))
    assert f"input unreadable after line {len(rows)}" in result.stderr


def test_a_truncated_gzip_input_written_to_a_file_is_not_said_to_be_unwritten(
    runner: CliRunner, tmp_path: Path
) -> None:
    # The rows of the lines before the damage are the -o file's, as documented: the InputError that reports the
    # break went on to the handler of a run cut short, which said "not written (the file there is an earlier run's)".
    lines = [json.dumps({"id": i, "text": f"post number {i}: whatsapp is down {i * 7919}"}) for i in range(3000)]
    whole = gzip.compress(("\n".join(lines) + "\n").encode())
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    out = tmp_path / "out.jsonl"
    result = runner.invoke(main, ["classify", str(cut), "-o", str(out)])
    assert result.exit_code == 1
    rows = _rows(out.read_text())
    assert 0 < len(rows) < 3000 and f"input unreadable after line {len(rows)}" in result.stderr
    assert "not written" not in result.stderr
    assert set(tmp_path.iterdir()) == {cut, out}


def test_a_gzip_input_cut_within_its_header_is_said_to_break_off_not_taken_for_an_empty_file(
    runner: CliRunner, tmp_path: Path
) -> None:
    # Cut in its first 10 bytes, GzipFile read on as at the end of the file once the first look at it had failed:
    # no row, no message, exit status 0, as for an empty input.
    whole = gzip.compress(json.dumps({"id": 1, "text": "whatsapp is down"}).encode() + b"\n")
    broke = "Error: input unreadable after line 0 (Compressed file ended before the end-of-stream marker was reached)"
    for size in (2, 5, 9):
        cut, out = tmp_path / f"cut{size}.jsonl.gz", tmp_path / f"out{size}.jsonl"
        cut.write_bytes(whole[:size])
        result = runner.invoke(main, ["classify", str(cut), "-o", str(out)])
        assert (result.exit_code, result.stderr.splitlines()[-1]) == (1, broke), size
        assert out.read_bytes() == b""  # the rows before the break, as for a cut further on
    # Standard input is looked at the same way (CliRunner's in-memory one cannot be peeked at: a real pipe)
    env = {k: v for k, v in os.environ.items() if k != "MINER_CONFIG"} | {"PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "miner", "classify", "-"], input=whole[:5], capture_output=True,
                          cwd=tmp_path, env=env, timeout=120)
    assert (proc.returncode, proc.stdout, proc.stderr.decode().splitlines()[-1]) == (1, b"", broke)


class _OneByteAtATime(io.RawIOBase):
    """A pipe whose writer sends a byte at a time (each read gets one), as a slow producer's can."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self.data = data

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        n = min(1, len(self.data))
        buf[:n], self.data = self.data[:n], self.data[n:]
        return n


def test_a_gzip_or_utf16_pipe_written_a_byte_at_a_time_is_told_by_its_first_bytes(classifier: Classifier) -> None:
    # peek() reads once: it saw one byte, so gzip went on as lines of text (an error row each, exit status 1) and
    # UTF-16 was not refused.
    from miner.cli.classify_cmds import _classify_all

    plain = b'{"id": 1, "text": "whatsapp is down"}\n{"id": 2, "text": "calm down"}\n'
    for data in (plain, gzip.compress(plain)):
        out = io.StringIO()
        assert _classify_all(classifier, io.BufferedReader(_OneByteAtATime(data)), out, "-") == (0, None)
        assert [(r["id"], r["outage"]) for r in _rows(out.getvalue())] == [(1, 1), (2, 0)]
    utf16 = codecs.BOM_UTF16_LE + plain.decode().encode("utf-16-le")
    with pytest.raises(click.ClickException, match=r"^the input is UTF-16"):
        _classify_all(classifier, io.BufferedReader(_OneByteAtATime(utf16)), io.StringIO(), "-")


def test_an_input_that_breaks_off_after_invalid_lines_says_both(runner: CliRunner, tmp_path: Path) -> None:
    # The break's message took the place of the closing count: a reader told only "input unreadable after line N"
    # took the rows before it for good ones, two of them error rows.
    lines = ["not json", json.dumps({"id": "x"})]
    lines += [json.dumps({"id": i, "text": f"post number {i}: whatsapp is down {i * 7919}"}) for i in range(3000)]
    whole = gzip.compress(("\n".join(lines) + "\n").encode())
    cut, out = tmp_path / "cut.jsonl.gz", tmp_path / "out.jsonl"
    cut.write_bytes(whole[: len(whole) // 2])
    result = runner.invoke(main, ["classify", str(cut), "-o", str(out)])
    assert result.exit_code == 1
    rows = _rows(out.read_text())
    assert 2 < len(rows) < 3002
    assert [r["error"] for r in rows[:2]] == ["line 1: invalid JSON (Expecting value at column 1)",
                                               "line 2: missing 'text' or not a string"]
    assert result.stderr.splitlines()[-1] == (
        f"Error: input unreadable after line {len(rows)} (Compressed file ended before the end-of-stream marker was "
        "reached); before it, 2 invalid input lines; their output lines carry an 'error' field"
    )


@pytest.mark.parametrize(("bad", "said"), [(1, "1 invalid input line; its output line carries"),
                                           (2, "2 invalid input lines; their output lines carry")])
def test_the_closing_count_of_invalid_lines_is_in_the_singular_for_one(runner: CliRunner, bad: int,
                                                                       said: str) -> None:
    # It said "1 invalid input line(s)" whatever the count, then "1 invalid input line; their output lines carry".
    lines = ["not json"] * bad + [json.dumps({"id": 1, "text": "whatsapp is down"})]
    result = runner.invoke(main, ["classify", "-"], input="\n".join(lines) + "\n")
    assert result.exit_code == 1, result.output
    assert len(_rows(result.stdout)) == bad + 1
    assert result.stderr.splitlines()[-1] == f"Error: {said} an 'error' field"


def test_missing_model_dir_is_one_line_error(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["classify", str(ODD), "--model-dir", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert "model directory not found" in result.stderr
    assert "Traceback" not in result.output


def test_nan_exit_bias_is_a_model_error_not_nan_in_the_output(runner: CliRunner, tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    shutil.copytree(default_model_dir(), model_dir)
    meta = json.loads((model_dir / "model.json").read_text())
    meta["exits"][0]["bias"] = float("nan")  # written as NaN, which JSON readers in Python accept
    (model_dir / "model.json").write_text(json.dumps(meta))
    result = runner.invoke(main, ["classify", str(ODD), "--model-dir", str(model_dir)])
    assert result.exit_code == 1 and result.stdout == ""
    assert f"{model_dir / 'model.json'}: 'exits[0].bias' is nan, not a finite number" in result.stderr


def test_output_that_is_the_input_under_any_name_is_refused_before_anything_is_written(
    runner: CliRunner, tmp_path: Path
) -> None:
    src = tmp_path / "same.jsonl"
    lines = [json.dumps({"id": i, "text": "whatsapp is down"}) for i in range(5000)]  # more than one chunk
    src.write_text("\n".join(lines) + "\n")
    before = src.read_bytes()
    (tmp_path / "link.jsonl").symlink_to(src)
    for inp, out in [(src, src), ("same.jsonl", "./same.jsonl"), ("link.jsonl", "same.jsonl"), (src, "link.jsonl")]:
        result = runner.invoke(main, ["classify", str(inp), "-o", str(out)])
        assert result.exit_code == 2, result.output
        assert "is the input file" in result.stderr
        assert src.read_bytes() == before


def test_output_in_a_missing_folder_fails_before_the_model_loads_and_empty_input_makes_an_empty_file(
    runner: CliRunner, tmp_path: Path
) -> None:
    # A missing model folder would fail too: the -o error coming first shows the output is checked before it.
    result = runner.invoke(main, ["classify", str(ODD), "-o", "nope/out.jsonl", "--model-dir", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert "'nope/out.jsonl': No such file or directory" in result.stderr
    assert "model directory" not in result.stderr
    empty, out = tmp_path / "empty.jsonl", tmp_path / "out.jsonl"
    empty.write_bytes(b"")
    result = runner.invoke(main, ["classify", str(empty), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == b""


def test_an_empty_output_name_or_one_ending_in_a_slash_is_refused_as_open_would_before_the_model_loads(
    runner: CliRunner, tmp_path: Path
) -> None:
    # Written through a temporary file beside it, "" was the current folder: the whole run, then "cannot write : Is a
    # directory" (an unset "$OUT" in a script); "new/" wrote the results to a file named "new".
    before = set(tmp_path.iterdir())
    for name, why in [("", "an empty path names no file or folder"), ("new/", "'new/': Is a directory")]:
        result = runner.invoke(main, ["classify", str(ODD), "-o", name, "--model-dir", str(tmp_path / "none")])
        assert result.exit_code == 2, result.output
        assert f"Invalid value for '-o' / '--output': {why}" in result.stderr
        assert "model directory" not in result.stderr
    assert set(tmp_path.iterdir()) == before and not list(tmp_path.parent.glob(f".{tmp_path.name}.*.tmp"))


@pytest.mark.skipif(os.geteuid() == 0 and not shutil.which("setpriv"), reason="root ignores permissions")
def test_a_read_only_output_file_is_refused_as_a_shell_redirect_refuses_it(tmp_path: Path) -> None:
    # Written through a temporary file renamed over it, which needs only the folder's permission, a file made read-only
    # to keep it was replaced by the run's results (with its mode, read-only still); `> out.jsonl` is refused.
    out = tmp_path / "out.jsonl"
    out.write_text("results to keep\n")
    out.chmod(0o444)
    drop = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"] if os.geteuid() == 0 else []  # root, held to modes
    env = {k: v for k, v in os.environ.items() if k != "MINER_CONFIG"} | {"PYTHONPATH": str(ROOT)}
    proc = subprocess.run([*drop, sys.executable, "-m", "miner", "classify", str(ODD), "-o", str(out)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert f"Invalid value for '-o' / '--output': {str(out)!r}: Permission denied" in proc.stderr
    assert out.read_text() == "results to keep\n" and set(tmp_path.iterdir()) == {out}


def test_a_bare_carriage_return_does_not_end_a_line(runner: CliRunner, tmp_path: Path) -> None:
    data = (b'{"id": 1,\r"text": "whatsapp is down"}\n'  # a CR between tokens is JSON whitespace
            b'{"id": 2, "text": "calm\rdown"}\r\n'  # one inside a string is a control character: an error
            b'{"id": 3, "text": "calm down"}\r\n')
    src, packed = tmp_path / "cr.jsonl", tmp_path / "cr.jsonl.gz"
    src.write_bytes(data)
    packed.write_bytes(gzip.compress(data))
    for args, stdin in [([str(src)], None), ([str(packed)], None), (["-"], data)]:
        result = runner.invoke(main, ["classify", *args], input=stdin)
        assert result.exit_code == 1, result.output
        rows = _rows(result.stdout)
        assert [(r["id"], r["outage"]) for r in rows] == [(1, 1), (None, None), (3, 0)]
        assert rows[1]["error"] == "line 2: invalid JSON (Invalid control character at column 24)"


def test_a_line_cut_short_is_told_where_it_breaks_whether_or_not_a_newline_ends_it(
    runner: CliRunner, tmp_path: Path
) -> None:
    # Parsed with its newline, a line cut short within its text was an "Invalid control character" no one could
    # see, and one cut after a value was at "column 1": the next line's, not this one's.
    cut = ['{"id": 1, "text": "whatsapp is d', '{"id": 2, "text": "whatsapp is down"', '{"id": 3,']
    said = ["Unterminated string starting at column 19", "Expecting ',' delimiter at column 37",
            "Expecting property name enclosed in double quotes at column 10"]
    for end in ["\n", "\r\n", ""]:  # "": each the last line of its own file
        for line, why in zip(cut, said, strict=True):
            src = tmp_path / "cut.jsonl"
            src.write_bytes((f'{{"id": 0, "text": "calm down"}}\n{line}{end}').encode())
            result = runner.invoke(main, ["classify", str(src)])
            assert result.exit_code == 1, result.output
            assert _rows(result.stdout)[1]["error"] == f"line 2: invalid JSON ({why})", (end, line)


def test_invalid_utf8_is_an_error_for_its_line_only(runner: CliRunner, tmp_path: Path) -> None:
    data = (b'{"id": "ab\xff", "text": "whatsapp is down"}\n'
            b'{"id": "a2", "text": "whatsapp is down"}\n'
            b'{"id": "a3", "text": "caf\xc3 down"}\n'  # a cut multi-byte character
            b'{"id": "a4", "text": "calm down"}\n')
    src, packed = tmp_path / "bad.jsonl", tmp_path / "bad.jsonl.gz"
    src.write_bytes(b"\xef\xbb\xbf" + data)
    packed.write_bytes(gzip.compress(data))
    for args, stdin in [([str(src)], None), ([str(packed)], None), (["-"], data)]:
        result = runner.invoke(main, ["classify", *args], input=stdin)
        assert result.exit_code == 1, result.output
        rows = _rows(result.stdout)
        assert [(r["id"], r["outage"], r.get("error")) for r in rows] == [
            (None, None, "line 1: not valid UTF-8"), ("a2", 1, None), (None, None, "line 3: not valid UTF-8"),
            ("a4", 0, None),
        ]
        assert "error: line 3: not valid UTF-8" in result.stderr


def test_an_id_with_half_an_emoji_is_an_error_row_not_a_crash(runner: CliRunner) -> None:
    lines = ['{"id": "\\ud83d", "text": "whatsapp is down"}', '{"id": "ok\\ud83d"}',  # no text: error row echoes id
             '{"id": "\\ud83d\\ude00", "text": "whatsapp is down"}', '{"id": 4, "text": "calm down"}']
    result = runner.invoke(main, ["classify", "-"], input="\n".join(lines) + "\n")
    assert result.exit_code == 1, result.output
    rows = _rows(result.stdout)
    assert [(r["id"], r["outage"], r.get("error")) for r in rows] == [
        (None, None, "line 1: 'id' holds an unpaired UTF-16 surrogate escape"),
        (None, None, "line 2: 'id' holds an unpaired UTF-16 surrogate escape"),
        ("\U0001f600", 1, None), (4, 0, None),
    ]


def test_a_number_too_long_for_python_is_an_error_row_not_a_crash(runner: CliRunner) -> None:
    lines = ['{"id": 1, "text": "whatsapp is down"}', '{"id": 2, "text": "b", "meta": ' + "9" * 5000 + "}",
             '{"id": 3, "text": "calm down"}']
    result = runner.invoke(main, ["classify", "-"], input="\n".join(lines) + "\n")
    assert result.exit_code == 1, result.output
    rows = _rows(result.stdout)
    assert [(r["id"], r["outage"], r.get("error")) for r in rows] == [
        (1, 1, None), (None, None, "line 2: invalid JSON (a number of more than 4300 digits)"), (3, 0, None)
    ]


def test_output_streams_before_the_input_ends_even_with_a_huge_batch_size(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    env = {k: v for k, v in os.environ.items() if k != "MINER_CONFIG"} | {"PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "miner", "classify", "-", "-o", str(out), "--batch-size", "8192"],
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path, env=env)
    assert proc.stdin is not None
    try:
        first = 5000  # more than one chunk: the first one's rows must be written while the input is still open
        proc.stdin.write(b"".join(b'{"id": %d, "text": "down %d"}\n' % (i, i) for i in range(first)))
        proc.stdin.flush()
        deadline = time.monotonic() + 120

        def written() -> int:  # to a temporary file beside the -o one, renamed to it when the run ends
            return sum(p.read_bytes().count(b"\n") for p in tmp_path.glob(".out.jsonl.*.tmp"))

        while (done := written()) == 0 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.2)
        assert 0 < done < first
        assert not out.exists()
        proc.stdin.write(b'{"id": "last", "text": "whatsapp is down"}\n')
        proc.stdin.close()
        assert proc.wait(timeout=120) == 0
    finally:
        proc.kill()
    rows = _rows(out.read_text())
    assert [r["id"] for r in rows] == [*range(first), "last"]


def test_rows_of_posts_piped_in_come_out_while_the_pipe_stays_open(tmp_path: Path) -> None:
    # `tail -f posts.jsonl | miner classify -`, or posts typed in: no row came out before 4,096 lines had come in,
    # or the input had ended.
    env = {k: v for k, v in os.environ.items() if k != "MINER_CONFIG"} | {"PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "miner", "classify", "-"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path, env=env)
    assert proc.stdin is not None and proc.stdout is not None
    got = b""

    def rows_out(count: int) -> list[object]:
        nonlocal got
        deadline = time.monotonic() + 60
        while got.count(b"\n") < count and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            if select.select([proc.stdout], [], [], 0.2)[0]:
                got += os.read(proc.stdout.fileno(), 1 << 16)
        return [row["id"] for row in _rows(got.decode())]

    try:
        proc.stdin.write(b'{"id": 1, "text": "whatsapp is down"}\n{"id": 2, "text": "calm down"}\n')
        proc.stdin.flush()  # and left open
        assert rows_out(2) == [1, 2]
        proc.stdin.write(b'{"id": 3, "text": "power is out again"}\n')
        proc.stdin.flush()
        assert rows_out(3) == [1, 2, 3]
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()


def test_each_row_reads_outage_as_printed_score_at_least_threshold(runner: CliRunner, tmp_path: Path) -> None:
    from miner.classify import load_classifier
    from miner.classify.settings import ClassifierSettings

    # Exits off, so that the threshold set below cannot change which layers score the post.
    clf = load_classifier(ClassifierSettings(early_exit=False))
    texts = ["whatsapp is down", "calm down", "power is out", "meh", "is the internet down for anyone",
             "lovely weather", "my bank app will not load", "new phone who dis", "no signal at all today", "ok",
             "the website is broken again", "coffee time", "gmail not loading", "good morning everyone"]
    scores = {t: clf.predict([t])[0].score for t in texts}  # one post per run, as the CLI scores one line below
    down = next(t for t, s in scores.items() if round(s, 5) < s)  # printed below the score: outage on the model's
    up = next(t for t, s in scores.items() if round(s, 5) > s)  # printed above: no outage at a threshold between
    for text, threshold in [(down, scores[down]), (up, (scores[up] + round(scores[up], 5)) / 2)]:
        (tmp_path / "feeds.toml").write_text(f"[classifier]\nearly_exit = false\nthreshold = {threshold!r}\n")
        result = runner.invoke(main, ["classify", "-"], input=json.dumps({"id": 1, "text": text}) + "\n")
        assert result.exit_code == 0, result.output
        [row] = _rows(result.stdout)
        assert row["outage"] == (scores[text] >= threshold)  # the model's decision stands
        assert row["outage"] == (float(row["score"]) >= threshold), (row, threshold)  # type: ignore[arg-type]
        assert abs(float(row["score"]) - scores[text]) < 1.5e-5  # type: ignore[arg-type]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_is_one_clear_error(runner: CliRunner) -> None:
    result = runner.invoke(main, ["classify", str(ODD), "-o", "/dev/full"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == "Error: cannot write /dev/full: No space left on device"
    assert "internal error" not in result.stderr


def test_a_run_that_fails_part_way_keeps_the_earlier_output_file(runner: CliRunner, tmp_path: Path) -> None:
    # A file size limit makes a real write fail part way (EFBIG), as a full disk would: the rows written before it,
    # the last cut short, were left in the -o file. The -o file was emptied before the model loaded and deleted when
    # the run failed: the results of an earlier run there were lost.
    src = tmp_path / "posts.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": f"whatsapp is down {i}"}) + "\n" for i in range(3000)))
    out = tmp_path / "out.jsonl"

    def small_files() -> None:
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, 10_000))

    env = {k: v for k, v in os.environ.items() if k != "MINER_CONFIG"} | {"PYTHONPATH": str(ROOT)}
    for earlier in (None, "rows of an earlier run\n"):
        if earlier is not None:
            out.write_text(earlier)
        proc = subprocess.run([sys.executable, "-m", "miner", "classify", str(src), "-o", str(out)], cwd=tmp_path,
                              env=env, preexec_fn=small_files, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1, proc.stderr
        assert f"Error: cannot write {out}: File too large" in proc.stderr
        kept = "the file there is an earlier run's" if earlier else "no file made"
        assert f"{out}: not written ({kept})\n" in proc.stderr
        assert (out.read_text() if out.exists() else None) == earlier
        assert set(tmp_path.iterdir()) == {src, *([out] if earlier else [])}  # no temporary file left
    result = runner.invoke(main, ["classify", str(src), "-o", str(out), "--model-dir", str(tmp_path / "none")])
    assert result.exit_code == 1 and "model directory not found" in result.stderr
    assert out.read_text() == "rows of an earlier run\n"
    assert set(tmp_path.iterdir()) == {src, out}
    # A run that ends replaces the file: through a symlink, the file it names, keeping its mode.
    src.write_text('{"id": 1, "text": "whatsapp is down"}\n')
    link = tmp_path / "link.jsonl"
    out.chmod(0o640)
    link.symlink_to(out)
    result = runner.invoke(main, ["classify", str(src), "-o", str(link)])
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in _rows(out.read_text())] == [1]
    assert link.is_symlink() and (out.stat().st_mode & 0o777) == 0o640
    assert set(tmp_path.iterdir()) == {link, out, src}
    new = tmp_path / "new.jsonl"
    umask = os.umask(0o027)
    try:
        assert runner.invoke(main, ["classify", str(src), "-o", str(new)]).exit_code == 0
    finally:
        os.umask(umask)
    assert (new.stat().st_mode & 0o777) == 0o640  # as a file opened for writing is made: 0o666 less the umask


def test_onnx_runtime_telemetry_is_off(tmp_path: Path) -> None:
    # ONNX Runtime 1.29+ sends usage events to Microsoft and writes a device id under ~/.cache; off, it writes none.
    posts = tmp_path / "posts.jsonl"
    posts.write_text('{"id": 1, "text": "whatsapp is down again"}\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}  # this process set it already
    home = tmp_path / "home"
    home.mkdir()
    proc = subprocess.run([sys.executable, "-m", "miner", "classify", str(posts), "-o", str(tmp_path / "out.jsonl")],
                          cwd=ROOT, env={**env, "HOME": str(home), "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "out.jsonl").read_text())["outage"] == 1
    assert not [p for p in home.rglob("*") if p.is_file()]


def test_an_id_holding_a_unicode_line_break_stays_on_its_output_line(runner: CliRunner) -> None:
    # JSON writes U+2028, U+2029 and U+0085 raw; str.splitlines() (and JavaScript before ES2019) ends a line there.
    ids = ["a\u2028b", "c\u2029d", "e\x85f", "g\x1ch"]
    lines = [json.dumps({"id": i, "text": "whatsapp is down"}) for i in ids]
    result = runner.invoke(main, ["classify", "-"], input="\n".join(lines) + "\n")
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in _rows(result.stdout)] == ids


def test_ids_are_echoed_as_read_and_other_fields_ignored_as_the_help_says(runner: CliRunner) -> None:
    lines = ['{"id": "a", "text": "whatsapp is down", "label": 1, "outage": 0, "error": "x"}',
             '{"id": 1E2, "text": "whatsapp is down"}', '{"id": "a", "text": "calm down"}',
             '{"id": 12345678901234567890123, "text": ""}']
    result = runner.invoke(main, ["classify", "-"], input="\n".join(lines) + "\n")
    assert result.exit_code == 0, result.output
    rows = _rows(result.stdout)
    assert all(set(r) == {"id", "outage", "score", "symptom"} for r in rows)
    assert [(r["id"], r["outage"]) for r in rows] == [("a", 1), (100.0, 1), ("a", 0), (12345678901234567890123, 0)]
    assert '"id": 100.0,' in result.stdout
    help_text = " ".join(runner.invoke(main, ["classify", "--help"]).output.split())
    assert "other fields are ignored" in help_text and "1E2 as 100.0; ids need not be unique" in help_text


def test_a_reader_of_stderr_that_stopped_does_not_cut_the_output_short(tmp_path: Path) -> None:
    # `miner classify in.jsonl -o out.jsonl 2>&1 | head`: once head exits, each message to stderr fails (EPIPE).
    # The first one ended the run as a stdout reader that stopped does: exit status 0, the -o file cut short.
    src = tmp_path / "posts.jsonl"
    lines = [json.dumps({"id": i, "text": "whatsapp is down"}) if i % 2 else "not json" for i in range(5000)]
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    env = {k: v for k, v in os.environ.items() if k != "MINER_CONFIG"} | {"PYTHONPATH": str(ROOT)}
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([sys.executable, "-m", "miner", "classify", str(src), "-o", str(out)], cwd=tmp_path,
                              env=env, stderr=write, timeout=120)
    finally:
        os.close(write)
    assert proc.returncode == 1  # 2,500 invalid lines, as with a stderr that reads on
    rows = _rows(out.read_text())
    assert [r["id"] for r in rows] == [i if i % 2 else None for i in range(5000)]
    assert rows[1]["outage"] == 1 and rows[0]["error"] == "line 1: invalid JSON (Expecting value at column 1)"


def test_long_posts_are_read_a_few_megabytes_at_a_time_not_4096_lines_at_once(tmp_path: Path) -> None:
    # Chunks were 4,096 lines whatever their size: a file of fewer long posts was read, decoded and parsed whole,
    # about 4.5 times its size in memory (a 500 MB file of 2,000 posts of 250 KB peaked at 2.3 GB, now 0.5 GB).
    from miner.cli.classify_input import CHUNK_BYTES, CHUNK_LINES, chunks

    src = tmp_path / "wide.jsonl"
    line = json.dumps({"id": 0, "text": "whatsapp is down " * 12000}).encode() + b"\n"  # 200 KB
    count = 3 * CHUNK_BYTES // len(line)
    src.write_bytes(line * count)
    with src.open("rb") as fh:
        read = list(chunks(fh, CHUNK_LINES))
    assert [n for chunk in read for n, _ in chunk] == list(range(1, count + 1))
    assert max(sum(len(raw) for _, raw in chunk) for chunk in read) < CHUNK_BYTES + len(line)


def test_a_line_longer_than_16_mib_is_an_error_row_not_read_whole(runner: CliRunner, tmp_path: Path) -> None:
    # Such a line was read, decoded and parsed whole: about 3.6 times its size in memory (a 1 GB line, 3.6 GB).
    src = tmp_path / "posts.jsonl"
    with src.open("wb") as fh:
        fh.write(b'{"id": 1, "text": "whatsapp is down"}\n{"id": 2, "text": "')
        fh.write(b"down " * ((17 << 20) // 5) + b'"}\n')  # 17 MiB
        fh.write(b'{"id": 3, "text": "whatsapp is down"}\n{"id": 4, "text": "')
        fh.write(b"down " * ((17 << 20) // 5))  # and one cut off at the end of the file
    result = runner.invoke(main, ["classify", str(src)])
    assert result.exit_code == 1
    rows = _rows(result.stdout)
    assert [(r["id"], r["outage"], r.get("error")) for r in rows] == [
        (1, 1, None), (None, None, "line 2: longer than 16 MiB"), (3, 1, None),
        (None, None, "line 4: longer than 16 MiB")]


def test_a_line_of_nested_json_longer_than_16_mib_is_refused_unparsed(runner: CliRunner, tmp_path: Path) -> None:
    # Parsing nested arrays and objects costs up to 45 times their size: a line just under the former limit of
    # 64 MiB of `[{},{},...]` took a run to 1.85 GB, and one of `[[[[]]]],...` to 3.15 GB.
    src = tmp_path / "nested.jsonl"
    src.write_bytes(b"[" + b"{}," * ((16 << 20) // 3) + b"{}]\n" + b'{"id": 2, "text": "whatsapp is down"}\n')
    result = runner.invoke(main, ["classify", str(src)])
    assert result.exit_code == 1, result.output
    assert [(r["id"], r["outage"], r.get("error")) for r in _rows(result.stdout)] == [
        (None, None, "line 1: longer than 16 MiB"), (2, 1, None)]
    help_text = " ".join(runner.invoke(main, ["classify", "--help"]).output.split())
    assert "longer than 16 MiB" in help_text


def test_a_line_of_just_the_longest_length_is_read_with_its_newline_as_without(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import miner.cli.classify_cmds as classify_cmds
    import miner.cli.classify_input as classify_input

    for module in (classify_input, classify_cmds):  # the reader's limit, and the error's message
        monkeypatch.setattr(module, "MAX_LINE_BYTES", 1 << 20)  # as for 16 MiB, in a 1 MiB line

    def line(size: int, post_id: int) -> bytes:
        head = b'{"id": %d, "text": "whatsapp is down' % post_id
        return head + b" " * (size - len(head) - 2) + b'"}'

    src = tmp_path / "posts.jsonl"
    src.write_bytes(line(1 << 20, 1) + b"\n" + line((1 << 20) + 1, 2) + b"\n" + line(1 << 20, 3))
    result = runner.invoke(main, ["classify", str(src)])
    assert result.exit_code == 1, result.output
    assert [(r["id"], r["outage"], r.get("error")) for r in _rows(result.stdout)] == [
        (1, 1, None), (None, None, "line 2: longer than 1 MiB"), (3, 1, None)]


@pytest.mark.parametrize("stdin", ["closed", "write-only"])
def test_standard_input_closed_or_not_readable_is_said_so_before_anything_is_written(tmp_path: Path,
                                                                                      stdin: str) -> None:
    # Under a supervisor that closes it, or with `0>file`: "internal error: RuntimeError: Was not able to determine
    # binary stream for sys.stdin", and "internal error: OSError: [Errno 9] Bad file descriptor".
    out = tmp_path / "out.jsonl"
    env = {k: v for k, v in os.environ.items() if k != "MINER_CONFIG"} | {"PYTHONPATH": str(ROOT)}
    with (tmp_path / "w").open("wb") as write_only:
        proc = subprocess.run([sys.executable, "-m", "miner", "classify", "-", "-o", str(out)], cwd=tmp_path, env=env,
                              stdin=write_only, preexec_fn=(lambda: os.close(0)) if stdin == "closed" else None,
                              capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    why = "closed" if stdin == "closed" else "not open for reading"
    assert proc.stderr.endswith(f"Error: Invalid value for 'INPUT.jsonl': standard input is {why}: give a file, or "
                                "redirect or pipe the posts into it\n"), proc.stderr
    assert not out.exists()


def test_standard_output_closed_is_said_so_before_the_model_loads(tmp_path: Path) -> None:
    # Under a supervisor that closes it, or with `>&-`: "internal error: AttributeError: 'NoneType' object has no
    # attribute 'close'".
    src = tmp_path / "posts.jsonl"
    src.write_text('{"id": 1, "text": "whatsapp is down"}\n')
    env = {k: v for k, v in os.environ.items() if k != "MINER_CONFIG"} | {"PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "miner", "classify", str(src)], cwd=tmp_path, env=env,
                          preexec_fn=lambda: os.close(1), stderr=subprocess.PIPE, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.endswith("Error: Invalid value for '-o' / '--output': standard output is closed: give a file "
                                "to write to\n"), proc.stderr


def test_standard_output_appending_to_the_input_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    # `miner classify in.jsonl >> in.jsonl`: past the first chunk, the run read its own rows back as input lines,
    # each an error row appended in turn, and went on until the disk was full (200 MB in 20 s).
    src = tmp_path / "posts.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": "whatsapp is down"}) + "\n" for i in range(5000)))
    before = src.read_bytes()
    env = {k: v for k, v in os.environ.items() if k != "MINER_CONFIG"} | {"PYTHONPATH": str(ROOT)}
    for args in (["classify", str(src)], ["classify", "-", "-o", "-"]):
        with src.open("rb") as stdin, src.open("ab") as stdout:
            proc = subprocess.run([sys.executable, "-m", "miner", *args], cwd=tmp_path, env=env, stdin=stdin,
                                  stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=30)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.endswith("Error: Invalid value for '-o' / '--output': standard output is the input file; "
                                    "write the output elsewhere\n"), proc.stderr
        assert src.read_bytes() == before

"""`miner classify`: score a JSONL of posts."""

from __future__ import annotations

import codecs
import contextlib
import json
import math
import os
import sys
import zlib
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TextIO, cast

import click

from miner.cli.app import AppContext, PathParam, main, pass_app
from miner.cli.classify_input import CHUNK_LINES, chunks, foreign, reader, with_head
from miner.cli.output_file import input_stat, open_output, write_rows
from miner.cli.stdio import stdin_unreadable
from miner.cli.stopping import raise_on_hangup
from miner.errors import InputError
from miner.jsonl import MAX_LINE_BYTES, json_refused
from miner.timeutil import counted
from miner.urls import json_escape_controls

if TYPE_CHECKING:
    from miner.classify import Classifier
    from miner.classify.settings import ClassifierSettings



def _settings(
    app: AppContext, model_dir: Path | None, batch_size: int | None
) -> tuple[ClassifierSettings, Path | None]:
    from dataclasses import replace

    from miner.classify.settings import ClassifierSettings
    from miner.config import default_config_path

    settings, base = ClassifierSettings(), None
    # No feeds.toml at all is fine for a one-off classify: the shipped model needs no config.
    if app.config_path is not None or default_config_path().is_file():
        settings = app.config.classifier
        base = Path(app.config.path).parent if app.config.path else None
    if model_dir is not None:
        settings, base = replace(settings, model_dir=str(model_dir)), Path.cwd()
    if batch_size is not None:
        settings = replace(settings, batch_size=batch_size)
    return settings, base


def _parse(raw: bytes | None, n: int) -> tuple[Any, str | None, str | None]:
    """(id, text, error) for one input line (None: one longer than MAX_LINE_BYTES); error names the line."""
    from miner.collectors.normalise import SURROGATE

    if raw is None:
        return None, None, f"line {n}: longer than {MAX_LINE_BYTES >> 20} MiB"
    # Not only on line 1: `cat` of two files saved by Windows tools has one at the start of the second.
    raw = raw.removeprefix(codecs.BOM_UTF8)
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:  # replacing the bytes would silently change an id
        return None, None, f"line {n}: not valid UTF-8"
    if not line.strip():
        return None, None, f"line {n}: empty line"
    # The line end is no part of the JSON: parsed with it, a line cut short was "Invalid control character" (the
    # newline, in its unclosed string) or "Expecting ',' delimiter at column 1" (of the next line), where the same
    # line last in the file, with no newline, was "Unterminated string starting at column 19".
    line = line.removesuffix("\n").removesuffix("\r")
    if refused := json_refused(line):  # before parsing it: 16 MiB of `[[[[]]]],...` took the run to 0.8 GB
        return None, None, f"line {n}: {refused}"
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        # exc.msg lacks the position, and some messages ("Invalid control character at") end waiting for it
        return None, None, f"line {n}: invalid JSON ({exc.msg.removesuffix(' at')} at column {exc.colno})"
    except RecursionError:
        return None, None, f"line {n}: invalid JSON (nested too deeply)"
    except ValueError:  # int() refuses numbers past its digit limit, which the decoder does not check
        return None, None, f"line {n}: invalid JSON (a number of more than {sys.get_int_max_str_digits()} digits)"
    if not isinstance(row, dict):
        return None, None, f"line {n}: expected a JSON object"
    post_id, text = row.get("id"), row.get("text")
    # NaN and Infinity parse, but would make the output line invalid JSON
    if post_id is None or isinstance(post_id, (dict, list, bool)) or (
        isinstance(post_id, float) and not math.isfinite(post_id)
    ):
        return None, None, f"line {n}: missing or invalid 'id'"
    if isinstance(post_id, str) and SURROGATE.search(post_id):  # not UTF-8: the output line could not be written
        return None, None, f"line {n}: 'id' holds an unpaired UTF-16 surrogate escape"
    if not isinstance(text, str):
        return post_id, None, f"line {n}: missing 'text' or not a string"
    return post_id, text, None


class _InputFile(click.File):
    """click.File("rb"), saying so where '-' is a standard input closed or opened for writing only: click's
    RuntimeError, or the first read's EBADF, was an internal error."""

    def __init__(self) -> None:
        super().__init__("rb")

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value == "-" and (why := stdin_unreadable()):
            self.fail(f"standard input is {why}: give a file, or redirect or pipe the posts into it", param, ctx)
        return super().convert(value, param, ctx)


@main.command("classify")
@click.argument("input_file", metavar="INPUT.jsonl", type=_InputFile())
@click.option(
    "-o",
    "--output",
    type=PathParam(dir_okay=False, allow_dash=True),
    default="-",
    show_default=True,
    help="Where to write results ('-' = stdout), never the input.",
)
@click.option(
    "--model-dir",
    type=PathParam(path_type=Path, file_okay=False),
    help="Model folder (default: [classifier].model_dir, else the shipped models/).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    help=f"Posts per model run (default from config: 32; at most {CHUNK_LINES}, the lines read at a time).",
)
@pass_app
def classify_cmd(
    app: AppContext, input_file: IO[bytes], output: str, model_dir: Path | None, batch_size: int | None
) -> None:
    """Label each post of INPUT.jsonl ('-' = stdin) as outage report or not.

    Each input line is a JSON object with at least "id" (a string or a number) and "text" (a string: empty,
    emoji-only or in any language, it is scored; a long one is cut to the model's max_length tokens); other
    fields are ignored. Input is UTF-8, or gzip-compressed UTF-8; a byte-order mark at the start of any line and
    CRLF line ends are accepted (an input that starts with a UTF-16 or UTF-32 one, or with a '{' in UTF-16 or UTF-32
    without it, or is bzip2, xz, zstd or zip compressed, is refused whole, no row written). Rows are written 4,096
    lines at a time; from a pipe (gzip-compressed or not), lines read wait at most a second for more before their
    rows are written (`tail -f posts.jsonl | miner classify -`). Each output line, in input order, is {"id",
    "outage": 0|1, "score": 0..1, "symptom": str|null}, with the id as read (a number as Python writes it: 1E2 as
    100.0; ids need not be unique); outage is 1 exactly when the score (printed to 5 decimals) is at least the threshold
    ([classifier].threshold, else the model's). A line that is empty, longer than 16 MiB, not valid UTF-8, not a
    JSON object, one nested deeper than 256 levels or holding more than 100,000 JSON values (refused unparsed: a
    post is one flat object), or lacks a valid id or text gets an output line with an "error" field naming the
    line (and null verdict; the id, if valid), a message on stderr, and the run goes on; the exit status is 1 if
    any line was invalid or the input broke off (a truncated gzip file: the lines before the break keep their
    rows), 0 otherwise. An -o file is written as a temporary file beside it (.NAME.XXXXXXXX.tmp), renamed to it as the
    run ends (not one named by a descriptor, as /dev/stdout, /dev/stderr or /dev/fd/N are: written through it as
    opened, `>> log.jsonl` appended to): a run cut short otherwise (SIGINT, SIGTERM, SIGHUP: exit status 130,
    143, 129; a write error; a model that does not load) leaves the -o file as it was (or absent), never part of
    the results or none, and says so on stderr. On standard output, the rows written before such a signal end with a
    whole line: one that lands while a slow reader holds up the write lets the line in progress finish (a second
    signal stops at once).

    The model's dynamic int8 quantization scales activations per batch, so a post's score can move with the
    posts batched beside it: by less than 0.01 on average, but by up to 0.95 for a post near an early exit's
    threshold, which stops there in one batch and not in another; 2 to 4 decisions in 1,000 flip, depending on
    the CPU (models/MODEL_CARD.md). --batch-size 1 scores each post alone (slower).
    """
    # A closed terminal or ended session (SIGHUP) killed the run outright, its temporary -o file left behind.
    with raise_on_hangup():
        _classify_cmd(app, input_file, output, model_dir, batch_size)


def _classify_cmd(
    app: AppContext, input_file: IO[bytes], output: str, model_dir: Path | None, batch_size: int | None
) -> None:
    from miner.classify import load_classifier

    out, target = open_output(output, input_stat(input_file))  # before the model loads: a bad -o fails at once
    try:
        settings, base = _settings(app, model_dir, batch_size)
        bad, broke = _classify_all(load_classifier(settings, base), input_file, out, output)
        if target is not None:
            target.commit(out)
    except BaseException:
        # SIGINT, SIGTERM or SIGHUP (miner.cli.stopping), a failed write (its row cut short), a model that did not load:
        # the rows so far, or none, would pass for all of them. The -o file keeps what an earlier run left there.
        if target is not None:
            click.echo(target.discard(out), file=cast(TextIO, _Stderr()))
        raise
    carry = "its output line carries" if bad == 1 else "their output lines carry"
    invalid = f"{counted(bad, 'invalid input line')}; {carry} an 'error' field"
    if broke is not None:
        # Raised once the file is in place, past the handler above (it said the file was not written); with the
        # count of invalid lines before the break, which its message alone left out.
        raise InputError(f"{broke}; before it, {invalid}" if bad else str(broke))
    if bad:
        raise InputError(invalid)


class _Stderr:
    """Standard error for the messages and the progress bar, which go quiet once writing to it fails.

    Once a reader of stderr stops (`2>&1 | head`), each message raises BrokenPipeError, which the CLI takes
    for a stdout reader that stopped: the run would end there, the -o file cut short.
    """

    def __init__(self) -> None:
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken and sys.stderr is not None:
            try:
                sys.stderr.write(text)
            except OSError:
                self.broken = True
        return len(text)

    def flush(self) -> None:
        if not self.broken and sys.stderr is not None:
            try:
                sys.stderr.flush()
            except OSError:
                self.broken = True

    def isatty(self) -> bool:
        return sys.stderr is not None and sys.stderr.isatty()


def _classify_all(clf: Classifier, input_file: IO[bytes], out: IO[str], output: str) -> tuple[int, InputError | None]:
    """Write a row per input line to ``out``, a chunk at a time; returns how many lines were invalid, and the
    InputError of an input that broke off (the lines before the damage have their rows, as documented)."""
    bad = 0
    show = output != "-"
    source = with_head(input_file)
    stream, packed = reader(source, input_file)
    try:
        what = foreign(stream)
    except (EOFError, OSError, zlib.error) as exc:
        # A gzip header cut short (a file of its first 2 to 9 bytes): GzipFile, once it failed there, read on as
        # at the end of a file, so the run ended with no row, no message and exit status 0.
        return bad, InputError(f"input unreadable after line 0 ({exc})")
    if what:
        raise click.ClickException(f"the input is {what}")
    size = None if packed else _size(input_file)  # the bar counts text bytes, not compressed ones
    stderr = cast(TextIO, _Stderr())  # duck-typed: write, flush and isatty are all click uses
    with click.progressbar(length=size or 0, label="classifying", file=stderr, hidden=not show or not size) as bar:
        try:
            for chunk in chunks(stream, CHUNK_LINES):
                rows, invalid = _answered(clf, chunk, stderr)
                bad += invalid
                _write(out, rows, output)
                bar.update(sum(len(line or b"") for _, line in chunk))
        except InputError as exc:  # from chunks(): the count of invalid lines before the break is told with it
            return bad, exc
    return bad, None


def _answered(clf: Classifier, chunk: list[tuple[int, bytes | None]], stderr: TextIO) -> tuple[str, int]:
    """The output lines of ``chunk``, and how many of its lines were invalid (each said on ``stderr``)."""
    bad = 0
    parsed = [(n, *_parse(line, n)) for n, line in chunk]
    texts = [t for _, _, t, err in parsed if err is None and t is not None]
    preds = iter(clf.predict(texts))
    rows: list[str] = []
    for _n, post_id, _text, err in parsed:
        if err is not None:
            bad += 1
            click.echo(f"error: {err}", file=stderr)
            row: dict[str, Any] = {"id": post_id, "outage": None, "score": None, "symptom": None, "error": err}
        else:
            p = next(preds)
            score = _printed(p.score, p.outage, clf.threshold)
            row = {"id": post_id, "outage": int(p.outage), "score": score, "symptom": p.symptom}
        # JSON leaves U+0085, U+2028 and U+2029 raw, and str.splitlines() and other line readers end a line at
        # each: an id holding one split its row in two. Escaped, they read back as the same characters.
        rows.append(json_escape_controls(json.dumps(row, ensure_ascii=False)) + "\n")
    return "".join(rows), bad


def _write(out: IO[str], text: str, name: str) -> None:
    """Write and flush ``text``; a full disk or other write failure is one clear error, not an internal one."""
    try:
        write_rows(out, text, name)
    except BrokenPipeError:  # a reader that stopped early (`| head`): the CLI ends quietly
        raise
    except OSError as exc:
        with contextlib.suppress(OSError):
            out.close()  # gives up the unwritten buffer, which closing at exit would fail to write again
        where = "standard output" if name == "-" else name
        raise click.ClickException(f"cannot write {where}: {exc.strerror or exc}") from None


def _printed(score: float, outage: bool, threshold: float) -> float:
    """``score`` to 5 decimals, on the model's side of ``threshold``: each row reads outage = score >= threshold."""
    shown = round(score, 5)
    if outage and shown < threshold:  # rounding went down past a threshold with more decimals
        shown = round(shown + 1e-5, 5)
    elif not outage and shown >= threshold:
        shown = round(shown - 1e-5, 5)
    return shown


def _size(fh: IO[bytes]) -> int | None:
    try:
        return os.fstat(fh.fileno()).st_size or None
    except (OSError, ValueError, AttributeError):  # stdin pipes and in-memory streams have no size
        return None

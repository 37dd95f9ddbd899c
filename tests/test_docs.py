"""Docs stay true to the code: every command, config key, module, table, column and metric is documented."""

from __future__ import annotations

import ast
import dataclasses
import re
import shlex
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from miner.config import Config, _stage_settings
from miner.store.catalog import TABLES

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import gen_docs  # noqa: E402


def config_keys(cls: Any, prefix: str = "") -> list[str]:
    """Dotted key paths of every setting (arrays of tables use their name: `sources.interval`)."""
    keys = []
    hints = get_type_hints(cls, localns=_stage_settings())
    for f in dataclasses.fields(cls):
        if not f.init or not f.metadata.get("setting", True):  # filled in by code, not read from the file
            continue
        path = f"{prefix}{f.name}"
        tp = hints[f.name]
        inner = get_args(tp)[0] if get_origin(tp) is tuple else tp
        if get_origin(inner) in (typing.Union, types.UnionType):
            inner = next(a for a in get_args(inner) if a is not type(None))
        if dataclasses.is_dataclass(inner):
            keys.extend(config_keys(inner, f"{path}."))
        else:
            keys.append(path)
    return keys


def test_every_config_key_is_documented() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = [k for k in config_keys(Config) if f"`{k}`" not in doc]
    assert not missing, f"docs/configuration.md lacks: {', '.join(missing)}"


def test_every_table_and_column_is_in_the_catalog() -> None:
    live = gen_docs.live_schema()
    assert set(live) == set(TABLES), "miner/store/catalog.py and the migrations disagree on tables"
    for table, columns in live.items():
        assert list(TABLES[table][1]) == columns, f"catalog columns of {table} differ from the schema"


def test_every_key_the_service_records_in_store_state_is_described(tmp_path: Path) -> None:
    # What a started service leaves there, on a real store: docs/schema.md named three of its four model keys.
    from datetime import UTC, datetime

    from miner.records import Decision
    from miner.store import Store

    store = Store.open(tmp_path / "miner.sqlite")
    store.set_bucket_minutes(5)
    store.record_serving_model("m-1", datetime(2026, 11, 27, tzinfo=UTC), Decision(0.4, True))
    keys = [r["key"] for r in store.database.rows("SELECT key FROM store_state ORDER BY key")]
    store.close()
    described = set(re.findall(r"[a-z_]+", TABLES["store_state"][1]["key"]))
    assert len(keys) == 5 and not [k for k in keys if k not in described], keys


def test_generated_docs_are_up_to_date() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_docs.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_api_examples_are_what_the_api_answers_after_the_demo_stream() -> None:
    # They were written by hand from a replay that cannot be made again (a replay runs six hours past its last post,
    # and the demo's resolved the outage they show): nothing said when a change of the API or the model made them
    # untrue.
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "api_examples.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_reference_is_what_help_prints() -> None:
    from click.testing import CliRunner

    from miner.cli import main

    doc = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    pages = dict(re.findall(r"^## `miner ?([^`]*)`\n\n```\n(.*?)\n```$", doc, re.M | re.S))
    for path in [(), *(p for p, _cmd in gen_docs._commands(main, ()))]:
        # A real invocation, in a terminal as wide as the generator assumes.
        result = CliRunner().invoke(main, [*path, "--help"], prog_name="miner", terminal_width=gen_docs.WIDTH,
                                    max_content_width=gen_docs.WIDTH)
        assert result.exit_code == 0, result.output
        title = " ".join(("miner", *path))
        assert result.output.rstrip() == pages[" ".join(path)], f"docs/cli.md differs from `{title} --help`"


def test_run_http_help_names_what_the_endpoint_serves() -> None:
    # configuration.md's server.enabled lists what the endpoint serves; `miner run --help` left out the status board.
    from click.testing import CliRunner

    from miner.cli import main

    row = next(line for line in (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8").splitlines()
               if line.startswith("| `server.enabled`"))
    served = re.findall(r"`(/[^`]*)`", row)
    assert {"/healthz", "/metrics", "/api/v1/", "/"} <= set(served) and "status board" in row
    result = CliRunner().invoke(main, ["run", "--help"], terminal_width=1000, max_content_width=1000)
    http_help = next(line for line in result.output.splitlines() if "--http" in line).partition("Serve")[2]
    for path in served:
        assert re.search(rf"(^|[\s(]){re.escape(path)}($|[\s),])", http_help), (path, http_help)
    assert "status board" in http_help


def test_every_command_is_in_the_reference() -> None:
    doc = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for path, _cmd in gen_docs._commands(gen_docs.main, ()):
        assert f"## `miner {' '.join(path)}`" in doc


def doc_commands() -> list[tuple[str, str]]:
    """(file, command line) of every `miner ...` in README.md and docs/: inline code spans and lines of code blocks."""
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        lines = [m.group(1) for m in re.finditer(r"`(miner [^`\n]+)`", text)]
        for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, re.M | re.S):
            lines += [m.group(1) for m in re.finditer(r"^(?:\$ |ExecStart=\S*/)?(miner .+)$", block, re.M)]
        found += [(doc.name, line.split(" #")[0].split(" | ")[0].strip()) for line in lines]
    return found


def test_every_documented_command_line_parses() -> None:
    from click.testing import CliRunner

    from miner.cli import main

    checked = 0
    for doc, line in doc_commands():
        args = [a.strip("[]") for a in shlex.split(line)[1:]]
        if not args or not (args[0].startswith("-") or args[0] in main.commands):
            continue  # prose that starts with the word, or an address like `miner <miner@localhost>`
        # --help after the arguments: an option in the wrong place (`miner replay X --db Y`) is still an error.
        result = CliRunner().invoke(main, [*args, "--help"])
        assert result.exit_code == 0, f"{doc}: `{line}`: {result.output.strip().splitlines()[-1]}"
        checked += 1
    assert checked > 40


def test_docs_point_to_no_path_on_the_developers_machine() -> None:
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        local = re.findall(r"\S*(?:/work/|shared/data)\S*", text)
        assert not local, f"{doc.name}: {local}: name the data set and its upstream source instead"


def test_architecture_names_every_module_and_only_modules_that_exist() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`(miner/[\w./]*)", doc))
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "miner").rglob("*.py") if p.name != "__init__.py"}
    missing = sorted(modules - named)
    assert not missing, f"docs/architecture.md does not name: {', '.join(missing)}"
    gone = sorted(path for path in named if not (ROOT / path).exists())
    assert not gone, f"docs/architecture.md names what does not exist: {', '.join(gone)}"


def test_stages_never_import_each_other() -> None:
    """docs/architecture.md: the stages talk through the store, never to each other."""
    stages = ("collectors", "classify", "detect", "alerts")
    crossing = []
    for stage in stages:
        others = {f"miner.{other}" for other in stages if other != stage}
        for path in sorted((ROOT / "miner" / stage).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
                crossing += [f"{path.relative_to(ROOT)} imports {name}" for name in names
                             if ".".join(name.split(".")[:2]) in others]
    assert not crossing, "; ".join(crossing)



def test_no_sql_is_run_outside_the_store() -> None:
    """docs/architecture.md: miner/store/ is the only code that writes SQL (but miner ui's canned queries, which
    Datasette runs). A command's SQL run on ``store.database`` was SQL the store's schema changes could not see."""
    runs = {"one", "rows", "execute", "executemany", "executescript"}
    outside = []
    for path in sorted((ROOT / "miner").rglob("*.py")):
        if path.is_relative_to(ROOT / "miner" / "store"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in runs
                    and isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "database"):
                outside.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not outside, f"SQL run outside miner/store/: {', '.join(outside)}"

def test_every_metric_is_documented_and_every_documented_metric_exists() -> None:
    from miner.metrics import HELP

    doc = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"\b(miner_[a-z_]+)", doc))
    used = {name for path in (ROOT / "miner").rglob("*.py")
            for name in re.findall(r"[\"'](miner_[a-z_]+)[\"']", path.read_text(encoding="utf-8"))}
    exported = used | set(HELP)
    assert not exported - documented, f"docs/operations.md lacks metrics: {sorted(exported - documented)}"
    assert not documented - exported, f"docs/operations.md names unknown metrics: {sorted(documented - exported)}"


def test_the_systemd_unit_puts_no_comment_after_a_value() -> None:
    """systemd has no end-of-line comments: `EnvironmentFile=/x   # ...` names a file called "/x   # ...", which
    does not exist, so the service would not start."""
    doc = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    units = re.findall(r"^```ini\n(.*?)^```", doc, re.M | re.S)
    assert units, "docs/operations.md has no systemd unit"
    for unit in units:
        for line in unit.splitlines():
            if "=" in line and not line.lstrip().startswith(("#", ";")):
                assert "#" not in line.partition("=")[2], f"systemd reads the comment as part of the value: {line}"


def test_the_config_error_example_is_what_config_check_says_of_the_shipped_file(tmp_path: Path,
                                                                                  monkeypatch: Any) -> None:
    """docs/configuration.md shows the error for `type = "hn"` in the shipped feeds.toml's fifth source."""
    from click.testing import CliRunner

    from miner.cli import main

    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    shown = re.search(r"^\$ miner config check\n(Error: .*)$", doc, re.M)
    assert shown, "docs/configuration.md lost its `miner config check` example"
    head, _, tail = shown.group(1).partition(" ... ")
    text = (ROOT / "feeds.toml").read_text(encoding="utf-8")
    fifth = [m.start() for m in re.finditer(r"^\[\[sources\]\]$", text, re.M)][4]
    typed = re.compile(r'^type = "\w+"', re.M).search(text, fifth)
    assert typed
    (tmp_path / "feeds.toml").write_text(text[:typed.start()] + 'type = "hn"' + text[typed.end():], encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MINER_CONFIG", raising=False)  # it would name another file than ./feeds.toml
    result = CliRunner().invoke(main, ["config", "check"])
    said = result.output.strip()
    assert result.exit_code == 1 and said.startswith(head) and said.endswith(tail), said


def test_the_alerts_example_passes_config_check_in_the_shipped_feeds_toml(tmp_path: Path) -> None:
    """docs/alerts.md's [alerts] example is what a user pastes into feeds.toml: the services it names are there."""
    from click.testing import CliRunner

    from miner.cli import main

    doc = (ROOT / "docs" / "alerts.md").read_text(encoding="utf-8")
    example = next(block for block in re.findall(r"^```toml\n(.*?)^```", doc, re.M | re.S) if "[alerts]" in block)
    config = tmp_path / "feeds.toml"
    config.write_text((ROOT / "feeds.toml").read_text(encoding="utf-8") + "\n" + example, encoding="utf-8")
    result = CliRunner().invoke(main, ["config", "check", str(config)])
    assert result.exit_code == 0, result.output


def test_the_support_questions_answer_as_docs_queries_says_on_the_demo_store(tmp_path: Path) -> None:
    """docs/queries.md: each statement runs on the store `miner demo` leaves and gives the answers it quotes there,
    which agree with the incidents and buckets tables (the questions had no documented answer before)."""
    import json

    from click.testing import CliRunner

    from miner.cli import main

    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    db = str(tmp_path / "miner.sqlite")

    def ask(sql: str, **params: object) -> list[dict[str, Any]]:
        bound = [a for name, value in params.items() for a in ("-p", f"{name}={value}")]
        answer = CliRunner().invoke(main, ["--db", db, "query", "--format", "json", *bound, "-"], input=sql)
        assert answer.exit_code == 0, (sql, answer.output)
        return list(json.loads(answer.stdout))

    doc = (ROOT / "docs" / "queries.md").read_text(encoding="utf-8")
    per_hour, people, made, verdicts, failed, symptoms, export = re.findall(r"^```sql\n(.*?)^```", doc, re.M | re.S)
    incident = ask("SELECT * FROM incidents WHERE id = 1")[0]
    rows = ask(per_hour, service="MTN", day="2019-06-03")
    busiest = max(rows, key=lambda r: r["complaints"])
    assert len(rows) == 24 and (busiest["bucket_start"], busiest["posts"], busiest["complaints"]) == (
        "2019-06-03T16:00:00+00:00", 18, 17)
    assert {r["hour"]: r["complainers"] for r in ask(people, service="MTN", day="2019-06-03", offset=0)} == {
        r["bucket_start"][:10] + " " + r["bucket_start"][11:16]: r["complaints"] for r in rows if r["complaints"]}
    kampala = ask(people, service="MTN", day="2019-06-03", offset=180)
    assert max(kampala, key=lambda r: r["complainers"]) == {"hour": "2019-06-03 19:00", "complainers": 17}
    assert len(ask(made, id=1)) == incident["total_complaints"] == 36
    serving = ask("SELECT value FROM store_state WHERE key = 'serving_model'")[0]["value"]
    said = ask(verdicts, post=3598)
    assert [(r["model_version"], r["outage"], r["symptom"], r["counted"]) for r in said] == [(serving, 1, "calls", 1)]
    assert ask(failed, since="2026-12-06T18:00") == []
    counted = ask(symptoms, id=1)
    assert (counted[0]["symptom"], counted[0]["complaints"], counted[0]["percent"]) == ("connectivity", 15, 42.0)
    assert sum(r["complaints"] for r in counted) == incident["total_complaints"]
    assert ask(export) == []  # the demo's posts are from 2019
    since = "2019-06-03T00:00:00+00:00"
    exported = ask(export.replace("'now', '-7 days'", "'2019-06-03'"))
    buckets = ask("SELECT sum(complaints) AS n FROM buckets WHERE bucket_start >= :since", since=since)
    assert exported and len(exported) == buckets[0]["n"]  # none of the demo's posts has an author


def test_the_failed_sources_question_finds_a_source_that_recovered_and_one_that_fails(tmp_path: Path,
                                                                                       server: Any) -> None:
    """docs/queries.md: the failures stay in poll_failures after a success empties `last_error`, with the poll that
    ended them; real polls of a real local server, one source failing then read, one failing still."""
    import json

    from click.testing import CliRunner

    from miner.cli import main

    config = tmp_path / "feeds.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "m.sqlite"}"\nretention_days = 3650\n'
                      '[[services]]\nname = "Fibre"\n'
                      f'[[sources]]\nname = "later"\ntype = "rss"\nurl = "{server.url}/later.rss"\n'
                      f'[[sources]]\nname = "gone"\ntype = "rss"\nurl = "{server.url}/gone.rss"\n', encoding="utf-8")
    for _ in range(2):  # both answered 404 the first time; then `later` is there
        CliRunner().invoke(main, ["--config", str(config), "collect", "--once", "--all"])
        server.serve_fixture("/later.rss", "rss/forum_latest.rss", "application/rss+xml")
    # `gone` moved to another url that fails too: its failures since are another endpoint's, another outage.
    config.write_text(config.read_text(encoding="utf-8").replace("/gone.rss", "/moved.rss"), encoding="utf-8")
    CliRunner().invoke(main, ["--config", str(config), "collect", "--once", "--all"])
    doc = (ROOT / "docs" / "queries.md").read_text(encoding="utf-8")
    failed = re.findall(r"^```sql\n(.*?)^```", doc, re.M | re.S)[4]
    answer = CliRunner().invoke(main, ["--config", str(config), "query", "--format", "json", "-p",
                                       "since=2026-01-01", "-"], input=failed)
    assert answer.exit_code == 0, answer.output
    # The three rounds may fall in one second: ordered by source, the one ended first.
    rows = sorted(json.loads(answer.stdout), key=lambda r: (r["source"], r["ended_by"] is None))
    assert [r["source"] for r in rows] == ["gone", "gone", "later"]
    gone, moved, later = rows
    assert (gone["failed_polls"], gone["in_a_row"], gone["http_statuses"], gone["ended_by"]) == (2, 2, "404", "reset")
    assert gone["last_error"].startswith("HTTP 404 from 127.0.0.1") and gone["first_failed"] <= gone["last_failed"]
    assert "/gone.rss" in gone["last_error"] and "/moved.rss" in moved["last_error"]
    assert (moved["failed_polls"], moved["in_a_row"], moved["ended_at"], moved["ended_by"]) == (1, 1, None, None)
    assert (later["failed_polls"], later["in_a_row"], later["http_statuses"], later["ended_by"]) == (1, 1, "404",
                                                                                                   "recovered")
    assert later["last_error"].startswith("HTTP 404 from 127.0.0.1") and later["ended_at"] >= later["last_failed"]
    # Once it has recovered, the source's own row no longer says why it failed.
    answer = CliRunner().invoke(main, ["--config", str(config), "query", "--format", "json", "-"],
                                input="SELECT last_error FROM sources WHERE name = 'later'")
    assert json.loads(answer.stdout) == [{"last_error": None}]


def test_the_readme_says_the_default_warm_up() -> None:
    # A newcomer's first hour: 35 complaints, z 4.2 and no incident. The quick start says why, with the default.
    from miner.detect import DetectorParams

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    said = re.search(r"no incident\s+opens during its first (\d+) hours \(`detector.warmup_hours`\)", readme)
    assert said is not None and float(said.group(1)) == DetectorParams().warmup_hours

"""The CLI as a user meets it: help for every command, one-line errors, read-only query, config check."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from miner.cli import main
from miner.cli.output import TABLE_ROWS
from miner.config import SourceConfig
from miner.records import Post
from miner.store import Store
from miner.store.outbox import Finish
from miner.timeutil import iso

ROOT = Path(__file__).resolve().parent.parent


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, cmd in group.commands.items():
        out.append((*prefix, name))
        if isinstance(cmd, click.Group):
            out.extend(all_commands(cmd, (*prefix, name)))
    return out


def test_every_command_has_help(runner: CliRunner) -> None:
    top = runner.invoke(main, ["--help"])
    assert top.exit_code == 0
    for name in main.commands:
        assert name in top.output
    for path in all_commands(main):
        result = runner.invoke(main, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output


def test_config_check_ok_and_broken(runner: CliRunner, tmp_path: Path) -> None:
    ok = runner.invoke(main, ["config", "check", str(ROOT / "feeds.toml")])
    assert ok.exit_code == 0, ok.output
    assert "OK" in ok.output and "status:github" in ok.output
    broken = tmp_path / "feeds.toml"
    broken.write_text("[[services]]\nname = 'A'\n\n[[sources]]\nname = 's'\ntype = 'rss'\n"
                      "url = 'https://example.org/rss'\nservices = ['A']\ninterval = 'often'\n")
    result = runner.invoke(main, ["config", "check", str(broken)])
    assert result.exit_code == 1
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1
    assert f"{broken}:9: sources[0].interval: expected an integer" in lines[0]
    assert "Traceback" not in result.output


def test_config_check_of_an_empty_file_says_what_it_lacks(runner: CliRunner, tmp_path: Path) -> None:
    # An empty file is valid; its summary read "0 services: " and "0 sources:" over a table of headers only.
    cfg = tmp_path / "feeds.toml"
    cfg.write_text("")
    result = runner.invoke(main, ["config", "check", str(cfg)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1:3] == ["0 services (posts that name no configured service never reach the detector)",
                          "0 sources (`miner run` polls nothing)"], result.output
    assert "source  type" not in result.output


def test_config_check_counts_one_service_group_and_source_in_the_singular(runner: CliRunner, tmp_path: Path) -> None:
    # It said "1 services: Slack", "1 groups: ..." and "1 sources:".
    cfg = tmp_path / "feeds.toml"
    one = ('[[services]]\nname = "A"\n[[groups]]\nname = "G"\nservices = ["A", "B"]\n'
           '[[sources]]\nname = "hn"\ntype = "hackernews"\nquery = "outage"\n')
    cfg.write_text(one + '[[services]]\nname = "B"\n')
    result = runner.invoke(main, ["config", "check", str(cfg)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1:4] == ["2 services: A, B", "1 group: G (A, B)", "1 source:"], result.output
    cfg.write_text('[[services]]\nname = "A"\n')
    result = runner.invoke(main, ["config", "check", str(cfg)])
    assert result.output.splitlines()[1] == "1 service: A", result.output


def test_config_check_and_miner_run_warn_of_services_no_alert_route_tells_anyone_of(
        runner: CliRunner, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A file without [[alerts.routes]] (the shipped one), or a service added beside routes that list theirs, passed
    # with "OK" and nothing else: its incidents were detected and stored, and no alert or digest ever named them.
    import logging

    from miner.config import load_config
    from miner.config_files import warn_unalerted

    cfg = tmp_path / "feeds.toml"
    services = '[[services]]\nname = "Vodafone"\n[[services]]\nname = "WhatsApp"\n[[services]]\nname = "Telekom"\n'
    route = '[[alerts.routes]]\nname = "noc"\nemail = ["noc@example.org"]\n'
    said = {}
    for case, text in {"none": services,
                       "left": services + route + 'services = ["vodafone", "WhatsApp"]\n',
                       "all": services + route,
                       "listed": services + route + 'services = ["Vodafone", "WhatsApp", "Telekom"]\n',
                       "disabled": services + "[alerts]\nenabled = false\n"}.items():
        cfg.write_text(text)
        result = runner.invoke(main, ["config", "check", str(cfg)])
        assert result.exit_code == 0, result.output
        said[case] = [line for line in result.output.splitlines() if line.startswith("warning: ")]
        caplog.clear()
        warn_unalerted(load_config(cfg), logging.getLogger("miner.test"))
        assert [r.getMessage() for r in caplog.records] == [line.removeprefix("warning: ") for line in said[case]]
    assert said["none"] == ["warning: no [[alerts.routes]]: incidents are detected and stored, but no one is told of "
                            "them; add a route with email recipients or webhooks (docs/alerts.md)"]
    assert said["left"] == ["warning: alerts.routes: no route lists Telekom in its services: their incidents alert no "
                            "one and are in no digest; add them to a route's services (or leave a route's services "
                            "out: it hears of all)"]
    assert said["all"] == said["listed"] == said["disabled"] == []


def test_config_check_names_the_store_that_db_or_miner_db_puts_in_place_of_store_path(
        runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # It said "store: miner.sqlite" under MINER_DB=/var/lib/miner/miner.sqlite, the store every command then used.
    cfg = tmp_path / "feeds.toml"
    cfg.write_text('[store]\npath = "miner.sqlite"\n')
    monkeypatch.delenv("MINER_DB", raising=False)
    plain = runner.invoke(main, ["config", "check", str(cfg)])
    assert plain.exit_code == 0 and "store: miner.sqlite; detector bucket" in plain.output, plain.output
    for args, env in ((["--db", "/srv/m.sqlite"], {}), ([], {"MINER_DB": "/srv/m.sqlite"})):
        result = runner.invoke(main, [*args, "config", "check", str(cfg)], env=env)
        assert result.exit_code == 0, result.output
        assert "store: miner.sqlite (not used: --db or MINER_DB names /srv/m.sqlite); detector bucket" in result.output
    same = runner.invoke(main, ["--db", "miner.sqlite", "config", "check", str(cfg)])
    assert "store: miner.sqlite; detector bucket" in same.output, same.output
    # The same file by its full path (a unit's MINER_DB beside its WorkingDirectory) is not another store.
    monkeypatch.chdir(tmp_path)
    full = runner.invoke(main, ["config", "check", str(cfg)], env={"MINER_DB": str(tmp_path / "miner.sqlite")})
    assert "store: miner.sqlite; detector bucket" in full.output, full.output


def test_config_check_lists_environment_variables_unset_or_empty(runner: CliRunner, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # An empty variable counted as set, though a collector reads it as unset; alert secrets were not looked at.
    cfg = tmp_path / "feeds.toml"
    cfg.write_text('[store]\nhash_key_env = "T_HASH"\n[alerts.smtp]\nusername_env = "T_USER"\n'
                   'password_env = "T_PASS"\n[[alerts.webhooks]]\nname = "ops"\nurl_env = "T_OPS"\n\n'
                   '[[sources]]\nname = "r"\ntype = "reddit"\nquery = "down"\n'
                   'env = { client_id = "T_ID", client_secret = "T_SECRET" }\n')
    for var, value in {"T_HASH": "k", "T_USER": "u", "T_PASS": "", "T_ID": "", "T_SECRET": "s"}.items():
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("T_OPS", raising=False)
    result = runner.invoke(main, ["config", "check", str(cfg)])
    assert result.exit_code == 0, result.output
    assert "env not set: T_ID" in next(ln for ln in result.output.splitlines() if ln.startswith("r "))
    assert ("warning: alerts.smtp.password_env: T_PASS is not set: every email fails until miner is started with "
            "it\nwarning: alerts.webhooks[0].url_env: T_OPS is not set: every alert to this webhook fails until miner "
            "is started with it\n") in result.output
    assert "T_HASH" not in result.output and "T_USER" not in result.output and "T_SECRET" not in result.output


def test_config_check_says_what_an_unset_hash_key_means_and_how_to_make_one(runner: CliRunner, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # `env not set: MINER_HASH_KEY (store.hash_key_env)` was all a newcomer's first check said: whether the service
    # could start without it, and what to set it to, were in docs/configuration.md only.
    cfg = tmp_path / "feeds.toml"
    cfg.write_text('[[services]]\nname = "A"\n')
    monkeypatch.delenv("MINER_HASH_KEY", raising=False)
    result = runner.invoke(main, ["config", "check", str(cfg)])
    assert result.exit_code == 0, result.output
    assert ("env not set: MINER_HASH_KEY (store.hash_key_env): author handles are hashed with a fixed public salt, so "
            "a known handle can be matched to its hash; set it to a long random secret, made once and kept (python3 -c "
            "'import secrets; print(secrets.token_hex(32))')") in result.output.splitlines()


def test_config_check_says_what_follows_an_unset_alert_variable_as_miner_run_warns_of_it(
        runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # `env not set: T_PASS (alerts.smtp.password_env)` said nothing of what follows, where `miner run`'s start said
    # that every email fails until it is set: the one who ran the check started the service and lost the alerts.
    from miner.config import load_config
    from miner.config_files import warn_unset_alert_env

    cfg = tmp_path / "feeds.toml"
    cfg.write_text('[alerts.smtp]\nusername_env = "T_USER"\npassword_env = "T_PASS"\n[[alerts.webhooks]]\n'
                   'name = "ops"\nurl_env = "T_OPS"\n[[alerts.routes]]\nname = "r"\nemail = ["a@example.org"]\n'
                   'webhooks = ["ops"]\n')
    monkeypatch.setenv("T_USER", "u")
    monkeypatch.setenv("MINER_HASH_KEY", "k")
    for var in ("T_PASS", "T_OPS"):
        monkeypatch.delenv(var, raising=False)
    result = runner.invoke(main, ["config", "check", str(cfg)])
    assert result.exit_code == 0, result.output
    with caplog.at_level("WARNING", logger="miner.test"):
        warn_unset_alert_env(load_config(cfg), logging.getLogger("miner.test"))
    logged = [r.getMessage() for r in caplog.records if r.name == "miner.test"]
    assert logged == ["alerts.smtp.password_env: T_PASS is not set: every email fails until miner is started with it",
                      "alerts.webhooks[0].url_env: T_OPS is not set: every alert to this webhook fails until miner is "
                      "started with it"]
    assert [line.removeprefix("warning: ") for line in result.output.splitlines()
            if "is not set" in line or "env not set" in line] == logged


def test_config_check_does_not_echo_an_unset_env_name_that_reads_as_the_secret(runner: CliRunner, tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # A password or token is a valid variable name: `env not set: hunter2 (alerts.smtp.password_env)` put it in
    # the terminal's or CI job's log.
    secrets = {"hunter2": "alerts.smtp.password_env", "ghp_16C7e42F292c6912E7710c838347Ae178B4a": "store.hash_key_env",
               "AKIAIOSFODNN7EXAMPLE": "sources[0].env.client_secret"}
    cfg = tmp_path / "feeds.toml"
    cfg.write_text('[store]\nhash_key_env = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"\n'
                   '[alerts.smtp]\nusername_env = "T_USER"\npassword_env = "hunter2"\n'
                   'host = "mail.example.org"\nsecurity = "none"\n'  # the warning that the login goes in clear too
                   '[[sources]]\nname = "r"\ntype = "reddit"\nquery = "down"\n'
                   'env = { client_id = "T_ID", client_secret = "AKIAIOSFODNN7EXAMPLE" }\n')
    for var in ("T_USER", "T_ID", *secrets):
        monkeypatch.delenv(var, raising=False)
    result = runner.invoke(main, ["config", "check", str(cfg)])
    assert result.exit_code == 0, result.output
    assert not [secret for secret in secrets if secret in result.output], result.output
    assert "env not set: T_ID, [not shown]" in next(ln for ln in result.output.splitlines() if ln.startswith("r "))
    assert "warning: alerts.smtp.username_env: T_USER is not set: every email fails" in result.output
    assert ("warning: alerts.smtp.password_env: a variable whose name is not shown (it reads as the secret itself) is "
            "not set: every email fails") in result.output
    for key in secrets.values():
        assert f"warning: {key} does not read as the name of an environment variable" in result.output
    assert 'security = "none" sends the login ([not shown]) to mail.example.org' in result.output
    # Set, it is a variable whatever its name: nothing to warn about.
    monkeypatch.setenv("hunter2", "x")
    assert "alerts.smtp.password_env does not" not in runner.invoke(main, ["config", "check", str(cfg)]).output

def seeded_store(path: Path) -> None:
    s = Store.open(path)
    s.insert_posts([Post("feed", str(i), f"post {i} <b>", datetime(2026, 1, 1, tzinfo=UTC), services=("GitHub",))
                     for i in range(3)], datetime(2026, 1, 1, tzinfo=UTC))
    s.close()


def test_query_formats_and_refuses_writes(runner: CliRunner, tmp_path: Path) -> None:
    db = tmp_path / "m.sqlite"
    seeded_store(db)
    base = ["--config", str(ROOT / "feeds.toml"), "--db", str(db), "query"]
    table = runner.invoke(main, [*base, "SELECT external_id, text FROM posts ORDER BY id"])
    assert table.exit_code == 0, table.output
    assert "post 2 <b>" in table.output
    as_json = runner.invoke(main, [*base, "--format", "json", "SELECT count(*) AS n FROM posts"])
    assert json.loads(as_json.stdout) == [{"n": 3}]
    as_csv = runner.invoke(main, [*base, "--format", "csv", "SELECT external_id FROM posts WHERE id = :i",
                                  "-p", "i=1"])
    assert as_csv.stdout.splitlines() == ["external_id", "0"]
    # A name bound twice was bound to the last value without a word.
    twice = runner.invoke(main, [*base, "SELECT :i AS i", "-p", "i=1", "-p", "i=2"])
    assert twice.exit_code == 2, twice.output
    assert "Invalid value for --param: i given twice (i=1, i=2): bind each :NAME once" in twice.output
    # A name as the SQL writes it, with its colon, was "You did not supply a value for binding parameter :i"; and
    # one with no name at all bound nothing, without a word.
    for given in (":i=1", "@i=1", "$i=1"):
        colon = runner.invoke(main, [*base, "--format", "csv", "SELECT :i AS i", "-p", given])
        assert colon.exit_code == 0 and colon.stdout.splitlines() == ["i", "1"], colon.output
    nameless = runner.invoke(main, [*base, "SELECT 1", "-p", "=1"])
    assert nameless.exit_code == 2 and "Invalid value for --param: expected NAME=VALUE, got '=1'" in nameless.output
    refused = runner.invoke(main, [*base, "DELETE FROM posts"])
    assert refused.exit_code == 1
    assert "read-only" in refused.output and "DELETE" in refused.output
    bad = runner.invoke(main, [*base, "SELEC nothing"])
    assert bad.exit_code == 1 and "SQL error" in bad.output and "Traceback" not in bad.output
    # The user's SQL, not the store file: each read "Error: store <path>: ..."
    two = runner.invoke(main, [*base, "SELECT 1; SELECT 2"])
    assert two.exit_code == 1 and "Error: run one statement at a time" in two.output, two.output
    # One statement ending in more than one semicolon, as the sqlite3 shell takes it: it was "run one statement
    # at a time".
    for trailing in (";;", "; ;\n", ";\n;\n"):
        one = runner.invoke(main, [*base, "--format", "json", f"SELECT count(*) AS n FROM posts{trailing}"])
        assert one.exit_code == 0 and json.loads(one.stdout) == [{"n": 3}], one.output
    assert "run one statement at a time" in runner.invoke(main, [*base, "SELECT 1;; SELECT 2;;"]).output
    unbound = runner.invoke(main, [*base, "SELECT :missing"])
    assert unbound.exit_code == 1 and "Error: SQL error:" in unbound.output and ":missing" in unbound.output
    assert "-p NAME=VALUE" in unbound.output and "store" not in unbound.output, unbound.output
    # A join's two "id" columns: the object kept only the last, without a word.
    twice = runner.invoke(main, [*base, "--format", "json", "SELECT p.id, p.id + 100 AS id FROM posts p"])
    assert twice.exit_code == 1 and "Error: more than one column named 'id'" in twice.output, twice.output
    assert twice.stdout == ""
    still = runner.invoke(main, [*base, "--format", "json", "SELECT count(*) AS n FROM posts"])
    assert json.loads(still.stdout) == [{"n": 3}]
    # A saved .sql file, which often starts with a comment, read from standard input: "-" ran as SQL of its own.
    piped = runner.invoke(main, [*base, "--format", "json", "-"], input="-- weekly\nSELECT count(*) AS n FROM posts\n")
    assert piped.exit_code == 0 and json.loads(piped.stdout) == [{"n": 3}], piped.output
    # Saved in another encoding (Latin-1, an accented letter in a comment): an "internal error: UnicodeDecodeError".
    latin = runner.invoke(main, [*base, "-"], input="-- café\nSELECT count(*) AS n FROM posts\n".encode("latin-1"))
    assert latin.exit_code == 1, latin.output
    assert "Error: the SQL on standard input is not UTF-8 text (byte 0xe9 at offset 6)" in latin.output, latin.output
    bom = runner.invoke(main, [*base, "--format", "json", "-"], input=b"\xef\xbb\xbfSELECT count(*) AS n FROM posts\n")
    assert bom.exit_code == 0 and json.loads(bom.stdout) == [{"n": 3}], bom.output
    # An empty file, or one of comments only, ran no statement: "(0 rows)", exit 0, as if nothing was found.
    for nothing in ("", "-- weekly report\n\n", "/* draft */ ;\n"):
        empty = runner.invoke(main, [*base, "-"], input=nothing)
        assert empty.exit_code == 1, empty.output
        assert "Error: no SQL statement to run: the SQL given is empty or only comments" in empty.output, empty.output
    assert runner.invoke(main, [*base, ""]).exit_code == 1
    kept = runner.invoke(main, [*base, "--format", "json", "-"], input="SELECT '--' AS a, '/*' AS b -- c\n")
    assert kept.exit_code == 0 and json.loads(kept.stdout) == [{"a": "--", "b": "/*"}], kept.output


def test_query_writes_csv_and_json_rows_as_it_reads_them(runner: CliRunner, tmp_path: Path) -> None:
    # Every row was read into memory before the first was written: an export of a store's posts took 3 GB per
    # million. A statement that fails at its 1,500th row shows it: the rows read before it are out already. (Of the
    # row, not a constant: SQLite 3.26 ran json('not json') once, before the first row.)
    db = tmp_path / "m.sqlite"
    seeded_store(db)
    base = ["--config", str(ROOT / "feeds.toml"), "--db", str(db), "query"]
    failing = ("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 2000) "
               "SELECT x, CASE WHEN x < 1500 THEN 'ok' ELSE json('not json ' || x) END AS y FROM n")
    as_csv = runner.invoke(main, [*base, "--format", "csv", failing])
    assert as_csv.exit_code == 1 and "malformed JSON" in as_csv.stderr
    assert as_csv.stdout.splitlines()[:2] == ["x,y", "1,ok"] and "1000,ok" in as_csv.stdout.splitlines()
    as_json = runner.invoke(main, [*base, "--format", "json", failing])
    assert as_json.exit_code == 1 and as_json.stdout.startswith('[\n  {\n    "x": 1,\n    "y": "ok"\n  },')
    whole = runner.invoke(main, [*base, "--format", "json", failing.replace("json('not json ' || x)", "'ok'")])
    assert json.loads(whole.stdout) == [{"x": i, "y": "ok"} for i in range(1, 2001)]
    empty = runner.invoke(main, [*base, "--format", "csv", "SELECT id FROM posts WHERE id < 0"])
    assert empty.stdout == "id\n"


def test_query_answers_the_pragmas_that_check_the_store_and_leaves_it_as_it_was(runner: CliRunner,
                                                                               tmp_path: Path) -> None:
    # `miner query "PRAGMA quick_check"` and `"PRAGMA journal_mode"`, an operator checking the store, were refused as
    # writes "(PRAGMA)".
    db = tmp_path / "m.sqlite"
    seeded_store(db)
    before = (db.read_bytes(), db.stat().st_mtime_ns, sorted(p.name for p in tmp_path.iterdir()))
    base = ["--config", str(ROOT / "feeds.toml"), "--db", str(db), "query", "--format", "csv"]
    for sql, out in (("PRAGMA quick_check", "quick_check\nok\n"), ("PRAGMA integrity_check", "integrity_check\nok\n"),
                     ("PRAGMA foreign_key_check", "table,rowid,parent,fkid\n"),
                     ("PRAGMA journal_mode", "journal_mode\nwal\n"), ("PRAGMA freelist_count", "freelist_count\n0\n")):
        result = runner.invoke(main, [*base, sql])
        assert result.exit_code == 0 and result.stdout == out, (sql, result.output)
    assert runner.invoke(main, [*base, "PRAGMA compile_options"]).exit_code == 0
    refused = runner.invoke(main, [*base, "PRAGMA journal_mode=DELETE"])
    assert refused.exit_code == 1 and "would write (PRAGMA)" in refused.output, refused.output
    assert (db.read_bytes(), db.stat().st_mtime_ns, sorted(p.name for p in tmp_path.iterdir())) == before



@pytest.mark.parametrize(("sql", "error"), [
    # A pragma function's argument names the database to read the pragma of: SQLite's "unknown database 'delete'"
    # read as "Error: store <path>: ...", as if the store were damaged.
    ("select * from pragma_journal_mode('delete')",
     "Error: refused: `miner query` runs read-only SQL and sets no pragma: pragma_journal_mode('delete') only reads "
     "journal_mode, and the argument of a pragma function names a database or a table, never a value to set "
     "(unknown database 'delete'); pragma_journal_mode() reads the store's"),
    ("SELECT * FROM pragma_foreign_keys(1)",
     "Error: refused: `miner query` runs read-only SQL and sets no pragma: pragma_foreign_keys(1) only reads "
     "foreign_keys, and the argument of a pragma function names a database or a table, never a value to set "
     "(too many arguments on pragma_foreign_keys() - max 0); pragma_foreign_keys() reads the store's"),
    # The SQL's own mistakes, not the file's.
    ("select abs(1, 2)", "Error: SQL error: wrong number of arguments to function abs()"),
    ("select * from pragma_table_info('posts') join pragma_index_list('posts', 'x')",
     "Error: SQL error: unknown database 'x'"),
])
def test_query_names_what_is_wrong_with_the_sql_not_the_store(runner: CliRunner, tmp_path: Path, sql: str,
                                                              error: str) -> None:
    db = tmp_path / "m.sqlite"
    seeded_store(db)
    before = (db.read_bytes(), sorted(p.name for p in tmp_path.iterdir()))
    result = runner.invoke(main, ["--config", str(ROOT / "feeds.toml"), "--db", str(db), "query", sql])
    assert result.exit_code == 1 and result.output == f"{error}\n", result.output
    assert (db.read_bytes(), sorted(p.name for p in tmp_path.iterdir())) == before

@pytest.mark.parametrize("fmt", ["table", "wide"])
def test_query_tables_stop_at_their_row_cap(runner: CliRunner, tmp_path: Path, fmt: str) -> None:
    # A table is lined up from every row, so all were held in memory: a recursive CTE without an end (or every post
    # of a large store) grew the command until the box ran out of memory, beside the service.
    db = tmp_path / "m.sqlite"
    seeded_store(db)
    base = ["--config", str(ROOT / "feeds.toml"), "--db", str(db), "query", "--format", fmt]
    endless = runner.invoke(main, [*base, "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) "
                                          "SELECT x FROM n"])
    assert endless.exit_code == 0, endless.output
    lines = endless.stdout.splitlines()
    assert len(lines) == 2 + TABLE_ROWS and lines[-1].strip() == f"{TABLE_ROWS}"
    assert endless.stderr.startswith(f"(first {TABLE_ROWS:,} rows shown; there are more:"), endless.stderr
    assert "--format csv or json" in endless.stderr
    whole = runner.invoke(main, [*base, f"WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n "
                                        f"WHERE x < {TABLE_ROWS}) SELECT x FROM n"])
    assert len(whole.stdout.splitlines()) == 2 + TABLE_ROWS and whole.stderr == f"({TABLE_ROWS} rows)\n"


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def test_query_json_is_valid_json_for_infinite_numbers(runner: CliRunner, tmp_path: Path) -> None:
    # json.dumps wrote SQLite's infinite REALs as Infinity, which jq and every strict JSON parser refuse.
    db = tmp_path / "m.sqlite"
    seeded_store(db)
    result = runner.invoke(main, ["--config", str(ROOT / "feeds.toml"), "--db", str(db), "query", "--format", "json",
                                  "SELECT 1e999 AS up, -1e999 AS down, 1.5 AS x, 9e999 * 0 AS nan"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout, parse_constant=_no_constants) == [{"up": None, "down": None, "x": 1.5,
                                                                        "nan": None}]


def test_query_writes_blobs_in_a_form_other_programs_read_in_every_format(runner: CliRunner, tmp_path: Path) -> None:
    # A BLOB was Python's repr, "b'\\x00'", in every format: neither its bytes nor a form a program reads back.
    import base64
    import csv
    import io

    from sqlite_utils.utils import decode_base64_values

    db = tmp_path / "m.sqlite"
    seeded_store(db)
    base = ["--config", str(ROOT / "feeds.toml"), "--db", str(db), "query"]
    sql = "SELECT x'00ff41' AS b, x'' AS e, 'X''00''' AS t"
    result = runner.invoke(main, [*base, "--format", "json", sql])
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)[0]
    assert row["b"] == {"$base64": True, "encoded": base64.b64encode(b"\x00\xffA").decode()}
    assert decode_base64_values(row) == {"b": b"\x00\xffA", "e": b"", "t": "X'00'"}  # as sqlite-utils reads it
    for raw in ([], ["--csv-raw"]):
        result = runner.invoke(main, [*base, "--format", "csv", *raw, sql])
        assert list(csv.reader(io.StringIO(result.stdout))) == [["b", "e", "t"], ["X'00ff41'", "X''", "X'00'"]]
    for fmt in ("table", "wide"):
        result = runner.invoke(main, [*base, "--format", fmt, sql])
        assert result.stdout.splitlines()[2].split() == ["X'00ff41'", "X''", "X'00'"]


def test_query_reads_a_store_whose_name_has_uri_characters(runner: CliRunner, tmp_path: Path) -> None:
    db = tmp_path / "ops?2026#1 %41.sqlite"  # read as a URI, "?" would start its query and "#" its fragment
    seeded_store(db)
    result = runner.invoke(main, ["--config", str(ROOT / "feeds.toml"), "--db", str(db), "query", "--format", "json",
                                  "SELECT count(*) AS n FROM posts"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [{"n": 3}]


def test_backup_command(runner: CliRunner, tmp_path: Path) -> None:
    db = tmp_path / "m.sqlite"
    seeded_store(db)
    result = runner.invoke(main, ["--config", str(ROOT / "feeds.toml"), "--db", str(db), "backup",
                                  str(tmp_path / "b.sqlite")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "b.sqlite").stat().st_size > 0


@pytest.mark.parametrize(("args", "named"), [
    (["backup", ""], "'TARGET'"),
    (["--config", "", "status"], "'--config'"),
    (["--db", "", "status"], "'--db'"),
    (["detect", ""], "'SERIES'"),
    (["classify", "-", "-o", ""], "'-o' / '--output'"),
    (["digest", "--dry-run", "--out", ""], "'--out'"),
])
def test_an_empty_path_is_refused_naming_its_option(runner: CliRunner, tmp_path: Path, args: list[str],
                                                     named: str) -> None:
    # "" was the current folder: `backup ""` said "backup target . exists", `--config ""` "cannot read: [Errno 21]
    # Is a directory: '.'".
    db = tmp_path / "m.sqlite"
    seeded_store(db)
    base = [] if "--db" in args else ["--config", str(ROOT / "feeds.toml"), "--db", str(db)]
    result = runner.invoke(main, [*base, *args], input="")
    assert result.exit_code == 2, result.output
    assert result.output.splitlines()[-1] == f"Error: Invalid value for {named}: an empty path names no file or folder"


def test_a_file_where_a_folder_should_be_is_named(runner: CliRunner, tmp_path: Path) -> None:
    # mkdir's "File exists" (or "Not a directory") named no file, and read as if the store or backup were there
    # already: `--db notes.txt/miner.sqlite collect` said "store ...: [Errno 17] File exists: '.../notes.txt'".
    db = tmp_path / "m.sqlite"
    seeded_store(db)
    notes = tmp_path / "notes.txt"
    notes.write_text("")
    config = tmp_path / "feeds.toml"
    config.write_text('[[services]]\nname = "GitHub"\n')
    posts = tmp_path / "posts.jsonl"
    posts.write_text('{"id": "1", "text": "github down", "created_at": "2026-01-01T00:00:00Z", "source": "s"}\n')
    cases = [
        (["--db", str(db), "backup", str(notes / "sub" / "b.sqlite")],
         f"Error: cannot write the backup {notes}/sub/b.sqlite ({notes} is a file, not a folder); nothing was left at "
         f"{notes}/sub/b.sqlite\n"),
        (["--db", str(notes / "m.sqlite"), "collect", "--once"],
         f"Error: cannot create store {notes}/m.sqlite: {notes} is a file, not a folder\n"),
        (["--db", str(tmp_path / "r.sqlite"), "replay", str(posts), "--out", str(notes / "out")],
         f"Error: cannot write to {notes}/out ({notes} is a file, not a folder); nothing was stored\n"),
        (["--db", str(notes / "r.sqlite"), "replay", str(posts)],
         f"Error: cannot write to {notes} (it is a file, not a folder); nothing was stored\n"),
    ]
    for args, said in cases:
        result = runner.invoke(main, ["--config", str(config), *args])
        assert result.exit_code == 1 and result.stderr == said, (args, result.output)
    assert notes.read_text() == ""


def test_prune_deletes_the_bucket_rows_older_than_their_retention(runner: CliRunner, tmp_path: Path) -> None:
    # Bucket rows were kept for good: the store grew without bound whatever retention_days said.
    db = tmp_path / "m.sqlite"
    now = datetime.now(UTC).replace(microsecond=0)
    store = Store.open(db)
    times = [now - timedelta(days=d) for d in (500, 401, 399, 100, 1)]
    store.insert_posts([Post("feed", f"p{i}", "whatsapp is down", at, services=("WhatsApp",))
                        for i, at in enumerate(times)], now)
    for at in times:
        store.refresh_buckets(at, at, timedelta(minutes=5))
    # So were the notifications sent and the silences ended: the alert history goes with the bucket rows.
    for i, at in enumerate(times[1:]):
        store.enqueue_digest(f"digest:{i}", "oncall", f"<{i}@example.org>", {}, at, "digest_anchor:oncall", iso(at))
        assert store.claim_due(i + 1, "test", at, at) is not None
        assert store.finish_notification(i + 1, "test", at, Finish("sent"))
    for at in times[:2]:  # the newer of the two is the newest silence: kept, so that no other takes its id
        store.add_silence("WhatsApp", at - timedelta(hours=1), at, "", at)
    store.close()
    result = runner.invoke(main, ["--config", str(ROOT / "feeds.toml"), "--db", str(db), "prune"])
    assert result.exit_code == 0, result.output
    assert ("pruned 4 posts older than 30 days, and 2 bucket rows, 1 notification, 1 silence and 0 failed poll "
            "records older than 400 days") in result.output
    store = Store.open(db)
    left = [r["bucket_start"][:10] for r in store.database.rows("SELECT bucket_start FROM buckets ORDER BY 1")]
    assert left == [f"{at:%Y-%m-%d}" for at in times[2:]]
    assert [r["dedupe_key"] for r in store.database.rows("SELECT dedupe_key FROM outbox ORDER BY id")] == [
        "digest:1", "digest:2", "digest:3"]
    assert [s["ends_at"][:10] for s in store.silences()] == [f"{times[1]:%Y-%m-%d}"]
    store.close()


def test_prune_deletes_nothing_when_its_cutoff_is_after_every_post_a_source_dated(runner: CliRunner,
                                                                                    tmp_path: Path) -> None:
    # Run with a clock ahead by more than the days kept, it deleted every post. Posts dated by our own clock (a user
    # report, an item without a time) tell nothing: that clock dated them ahead too.
    db = tmp_path / "m.sqlite"
    now = datetime.now(UTC).replace(microsecond=0)
    store = Store.open(db)
    store.insert_posts([Post("feed", "old", "whatsapp is down", now - timedelta(days=40), services=("WhatsApp",)),
                        Post("reports", "r", "User report: problem with WhatsApp", now, services=("WhatsApp",)),
                        Post("feed", "undated", "whatsapp is down", now, services=("WhatsApp",), undated="new")], now)
    store.close()
    base = ["--config", str(ROOT / "feeds.toml"), "--db", str(db)]
    refused = runner.invoke(main, [*base, "prune"])
    assert refused.exit_code == 1, refused.output
    assert refused.output.startswith("Error: retention: nothing pruned at ")
    assert f"is after the newest post a source dated ({iso(now - timedelta(days=40))})" in refused.output
    status = runner.invoke(main, [*base, "status"])
    assert status.exit_code == 0 and "\nretention: nothing pruned at " in status.output, status.output
    assert runner.invoke(main, [*base, "prune", "--days", "41"]).exit_code == 0  # its cutoff is before that post
    assert "retention: nothing pruned" not in runner.invoke(main, [*base, "status"]).output
    forced = runner.invoke(main, [*base, "prune", "--force"])
    assert forced.exit_code == 0, forced.output
    assert "pruned 1 post older than 30 days, and 0 bucket rows" in forced.output, forced.output
    store = Store.open(db)
    assert [r["external_id"] for r in store.database.rows("SELECT external_id FROM posts ORDER BY id")] == [
        "r", "undated"]
    store.close()


def test_prune_refuses_more_days_than_a_date_can_go_back(runner: CliRunner, tmp_path: Path) -> None:
    db = tmp_path / "m.sqlite"
    seeded_store(db)
    base = ["--config", str(ROOT / "feeds.toml"), "--db", str(db), "prune", "--days"]
    result = runner.invoke(main, [*base, "1000000"])
    assert result.exit_code == 1 and "Error: --days 1000000: at most 36500" in result.output, result.output
    result = runner.invoke(main, [*base, "36500"])
    assert result.exit_code == 0 and "pruned 0 posts older than 36500 days" in result.output, result.output


OUT_OF_RANGE = [
    (["outbox", "retry", str(2**63)], "Invalid value for 'OUTBOX_ID': 9223372036854775808 is not in the range"),
    (["silence", "remove", str(2**63)], "Invalid value for 'SILENCE_ID': 9223372036854775808 is not in the range"),
    (["silence", "remove", "0"], "Invalid value for 'SILENCE_ID': 0 is not in the range 1<=x<="),
    (["outbox", "--limit", "0"], "Invalid value for '--limit': 0 is not in the range x>=1"),
    (["outbox", "--limit", "-1"], "Invalid value for '--limit': -1 is not in the range x>=1"),
    (["ui", "--port", "70000", "--metadata-only"], "Invalid value for '--port': 70000 is not in the range 0<=x<=65535"),
]


@pytest.mark.parametrize(("args", "said"), OUT_OF_RANGE, ids=[" ".join(args) for args, _ in OUT_OF_RANGE])
def test_numbers_out_of_range_are_usage_errors(runner: CliRunner, tmp_path: Path, args: list[str], said: str) -> None:
    # An id past SQLite's integers failed in the driver as an "internal error"; --limit 0 listed nothing and said
    # that nothing was pending, and -1 listed everything; ui took any port and left it to Datasette.
    db = tmp_path / "m.sqlite"
    seeded_store(db)
    result = runner.invoke(main, ["--config", str(ROOT / "feeds.toml"), "--db", str(db), *args])
    assert result.exit_code == 2 and said in result.output, result.output
    assert not (tmp_path / "datasette-metadata.json").exists()


def test_outbox_limit_past_sqlite_integers_lists_everything(runner: CliRunner, tmp_path: Path) -> None:
    db = tmp_path / "m.sqlite"
    seeded_store(db)
    result = runner.invoke(main, ["--config", str(ROOT / "feeds.toml"), "--db", str(db), "outbox", "--limit",
                                  str(2**64)])
    assert result.exit_code == 0 and "outbox is empty" in result.output, result.output


@pytest.mark.parametrize("dry_run", [["--dry-run", "--out"], []], ids=["dry-run", "queue"])
def test_digest_at_before_1970_is_one_line(runner: CliRunner, tmp_path: Path, dry_run: list[str]) -> None:
    # A digest looks back from --at: near year 1 that overflowed a date, an "internal error".
    db = tmp_path / "m.sqlite"
    seeded_store(db)
    out = [str(tmp_path / "out")] if dry_run else []
    result = runner.invoke(main, ["--config", str(ROOT / "feeds.toml"), "--db", str(db), "digest", *dry_run, *out,
                                  "--at", "0001-01-01"])
    assert result.exit_code == 1, result.output
    assert result.output == "Error: --at '0001-01-01' is before 1970: no store holds anything to digest then\n"
    assert not (tmp_path / "out").exists()


def test_digest_queued_at_a_time_to_come_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    # Queued as of --at, a digest is due then: `--at 3000-01-01` left one pending for good, that nothing could
    # send or retry. Rendered (--dry-run), it is only a preview.
    db = tmp_path / "m.sqlite"
    seeded_store(db)
    config = tmp_path / "feeds.toml"
    config.write_text('[[services]]\nname = "GitHub"\n\n[[alerts.routes]]\nname = "oncall"\n'
                      'email = ["oncall@example.org"]\n')
    base = ["--config", str(config), "--db", str(db), "digest"]
    queued = runner.invoke(main, [*base, "--at", "3000-01-01"])
    assert queued.exit_code == 1, queued.output
    assert queued.output.startswith("Error: --at '3000-01-01' is after now (") and queued.output.endswith(
        "): a digest queued as of then would wait until then to go out; --dry-run renders it\n"), queued.output
    assert Store.open(db).outbox_counts() == {}
    preview = runner.invoke(main, [*base, "--dry-run", "--out", str(tmp_path / "out"), "--at", "3000-01-01"])
    assert preview.exit_code == 0, preview.output
    past = runner.invoke(main, [*base, "--at", "2026-01-02"])
    assert past.exit_code == 0 and Store.open(db).outbox_counts() == {"pending": 1}, past.output


def test_with_alerts_disabled_digest_and_outbox_send_say_so(runner: CliRunner, tmp_path: Path) -> None:
    # enabled = false plans and sends nothing: `miner digest` queued one anyway, saying the service would send it,
    # and `miner outbox send` answered "sent 0" with notifications pending, as if nothing were due.
    db = tmp_path / "m.sqlite"
    seeded_store(db)
    config = tmp_path / "feeds.toml"
    config.write_text('[[services]]\nname = "GitHub"\n\n[alerts]\nenabled = false\n\n[[alerts.routes]]\n'
                      'name = "oncall"\nemail = ["oncall@example.org"]\ndigest = "0 8 * * *"\n')
    base = ["--config", str(config), "--db", str(db)]
    queued = runner.invoke(main, [*base, "digest"])
    assert queued.exit_code == 1, queued.output
    assert queued.output == ("Error: alerts are disabled ([alerts] enabled = false): nothing is planned or sent, and "
                             "the outbox is left as it is; --dry-run renders it\n")
    assert Store.open(db).outbox_counts() == {}
    sent = runner.invoke(main, [*base, "outbox", "send"])
    assert sent.exit_code == 0 and sent.output.startswith("alerts are disabled ([alerts] enabled = false)"), sent.output
    rendered = runner.invoke(main, [*base, "digest", "--dry-run", "--out", str(tmp_path / "out")])
    assert rendered.exit_code == 0 and (tmp_path / "out" / "digest-oncall.eml").exists(), rendered.output


def test_digest_dry_run_into_a_folder_it_cannot_make_is_one_line(runner: CliRunner, tmp_path: Path) -> None:
    db = tmp_path / "m.sqlite"
    seeded_store(db)
    (tmp_path / "a-file").touch()
    out = tmp_path / "a-file" / "digest"
    result = runner.invoke(main, ["--config", str(ROOT / "feeds.toml"), "--db", str(db), "digest", "--dry-run",
                                  "--out", str(out)])
    # mkdir's "(Not a directory)" named no file.
    assert result.exit_code == 1 and result.output == (
        f"Error: cannot write to {out} ({tmp_path / 'a-file'} is a file, not a folder)\n"), result.output


def test_outbox_says_when_limit_leaves_rows_out(runner: CliRunner, tmp_path: Path) -> None:
    db = tmp_path / "m.sqlite"
    seeded_store(db)
    store = Store.open(db)
    for i, status in enumerate(("failed", "pending", "failed", "sent")):
        store.database.execute(
            "INSERT INTO outbox (dedupe_key, route, channel, kind, status, message_id, created_at, next_attempt_at) "
            "VALUES (?, 'oncall', 'email', 'alert', ?, ?, '2026-11-28T04:50:00+00:00', '2026-11-28T04:50:00+00:00')",
            (f"k{i}", status, f"<m{i}@x>"))
    store.close()
    base = ["--config", str(ROOT / "feeds.toml"), "--db", str(db), "outbox"]
    cut = runner.invoke(main, [*base, "--limit", "2"])
    assert cut.exit_code == 0, cut.output
    assert [line.split()[0] for line in cut.stdout.splitlines()[2:]] == ["3", "2"]
    assert cut.stderr == "(the newest 2 of 3; --limit 3 lists them all)\n"
    whole = runner.invoke(main, [*base, "--all", "--limit", "4"])
    assert whole.exit_code == 0 and whole.stderr == "" and len(whole.stdout.splitlines()) == 6, whole.output


def test_outbox_shows_when_a_sending_row_was_claimed_and_its_lease(runner: CliRunner, tmp_path: Path) -> None:
    # A row left 'sending' showed only when it had been due: the on-call could not tell a send in progress from one
    # a killed `miner outbox send` left, which goes back to pending at the next send once its lease has ended.
    db = tmp_path / "m.sqlite"
    seeded_store(db)
    config = tmp_path / "feeds.toml"
    config.write_text('[[services]]\nname = "GitHub"\n\n[alerts]\nlease_seconds = 86400\n')
    now = datetime.now(UTC).replace(microsecond=0)
    store = Store.open(db)
    for i in range(3):
        store.database.execute(
            "INSERT INTO outbox (dedupe_key, route, channel, kind, status, message_id, created_at, next_attempt_at) "
            "VALUES (?, 'oncall', 'email', 'alert', 'pending', ?, '2026-11-28T04:50:00+00:00', "
            "'2026-11-28T04:50:00+00:00')", (f"k{i}", f"<m{i}@x>"))
    left = now - timedelta(days=2)
    assert store.claim_notification(1, "cli-host-4242", left)
    assert store.claim_notification(2, "service-host-7", now)
    store.close()
    base = ["--config", str(config), "--db", str(db), "outbox"]
    result = runner.invoke(main, base)
    assert result.exit_code == 0, result.output
    cells = {int(line.split()[0]): line.split(None, 6)[6].strip() for line in result.stdout.splitlines()[2:]}
    assert cells == {
        3: "2026-11-28T04:50:00+00:00",
        2: f"claimed {iso(now)} by service-host-7, lease until {iso(now + timedelta(days=1))}",
        1: f"claimed {iso(left)} by cli-host-4242, lease ended {iso(left + timedelta(days=1))}: its sender stopped "
           "or hung, and the next send (the service's, `miner outbox send`) takes it back"}
    # Without a feeds.toml to read the lease from, the claim alone.
    bare = runner.invoke(main, ["--config", str(tmp_path / "none.toml"), "--db", str(db), "outbox"])
    assert bare.exit_code == 0, bare.output
    assert f"claimed {iso(now)} by service-host-7\n" in bare.stdout and "lease" not in bare.stdout, bare.output

def test_corrupt_store_is_one_line(runner: CliRunner, tmp_path: Path) -> None:
    db = tmp_path / "bad.sqlite"
    db.write_bytes(b"garbage" * 1000)
    result = runner.invoke(main, ["--config", str(ROOT / "feeds.toml"), "--db", str(db), "prune"])
    assert result.exit_code == 1
    assert "corrupt" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(("host", "security", "warned"), [
    ("smtp.example.org", "none", True), ("10.0.0.5", "none", True), ("localhost", "none", False),
    ("127.0.0.1", "none", False), ("::1", "none", False), ("smtp.example.org", "starttls", False),
])
def test_config_check_warns_of_an_smtp_login_sent_unencrypted(runner: CliRunner, tmp_path: Path, host: str,
                                                              security: str, warned: bool) -> None:
    # smtplib logs in wherever the server offers AUTH, with or without TLS: with security = "none" to another
    # machine, the password crossed the network in the clear and nothing said so.
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(f'[alerts.smtp]\nhost = "{host}"\nsecurity = "{security}"\nusername_env = "T_USER"\n'
                   'password_env = "T_PASS"\n')
    result = runner.invoke(main, ["config", "check", str(cfg)])
    assert result.exit_code == 0, result.output
    warning = (f'warning: alerts.smtp: security = "none" sends the login (T_PASS) to {host} unencrypted; use starttls '
               "or ssl (none is for a relay on this machine)")
    assert (warning in result.output) == warned


@pytest.mark.parametrize(("smtp", "warning"), [
    ('port = 587\nsecurity = "ssl"', '4: alerts.smtp.security: security = "ssl" with port 587, where servers expect '
     'starttls: every email is likely to fail at its send; use security = "starttls", or port 465 for ssl'),
    ('port = 25\nsecurity = "ssl"', '4: alerts.smtp.security: security = "ssl" with port 25, where servers expect '
     'starttls'),
    ('port = 465\nsecurity = "starttls"', '4: alerts.smtp.security: security = "starttls" with port 465, where servers '
     'expect ssl: every email is likely to fail at its send; use security = "ssl", or port 587 for starttls'),
    ("port = 465", '3: alerts.smtp.port: security = "starttls" with port 465, where servers expect ssl'),
    # Plain text to an implicit-TLS port waits for a greeting that never comes, as starttls does.
    ('port = 465\nsecurity = "none"', '4: alerts.smtp.security: security = "none" with port 465, where servers expect '
     'ssl: every email is likely to fail at its send; use security = "ssl", or port 25 for none'),
    ('security = "none"\nport = 465', '3: alerts.smtp.security: security = "none" with port 465'),
    ('port = 25\nsecurity = "none"', None), ('port = 587\nsecurity = "none"', None),
    ('port = 465\nsecurity = "none"\n[alerts]\nenabled = false', None),
    ('port = 465\nsecurity = "ssl"', None), ('port = 587\nsecurity = "starttls"', None), ("port = 2525", None),
    ('port = 587\nsecurity = "ssl"\n[alerts]\nenabled = false', None),
])
def test_config_check_warns_of_an_smtp_security_the_port_does_not_speak(runner: CliRunner, tmp_path: Path, smtp: str,
                                                                       warning: str | None) -> None:
    # ssl to 587 (a TLS error) or starttls to 465 (a wait for a greeting that never comes) fails every email at its
    # send, while `config check` said OK: the first alert of an outage was the first sign.
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(f'[alerts.smtp]\nhost = "mail.example.org"\n{smtp}\n')
    result = runner.invoke(main, ["config", "check", str(cfg)])
    assert result.exit_code == 0, result.output
    warned = [line for line in result.output.splitlines() if "where servers expect" in line]
    if warning is None:
        assert warned == []
    else:
        assert len(warned) == 1 and warned[0].startswith(f"warning: {cfg}:{warning}"), result.output


@pytest.mark.parametrize(("recipients", "lease", "warned"), [(1, 300, False), (5, 300, True), (5, 600, False)])
def test_config_check_warns_of_a_lease_shorter_than_a_slow_send(runner: CliRunner, tmp_path: Path, recipients: int,
                                                               lease: int, warned: bool) -> None:
    # smtp.timeout bounds each SMTP command, not the send: at 30 s, 9 commands and 5 RCPTs outlast a 300 s lease,
    # after which another dispatch takes the notification over and sends it again.
    emails = ", ".join(f'"p{i}@example.org"' for i in range(recipients))
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(f'[alerts]\nlease_seconds = {lease}\n[alerts.smtp]\ntimeout = 30\n'
                   f'[[alerts.routes]]\nname = "oncall"\nemail = [{emails}]\n')
    result = runner.invoke(main, ["config", "check", str(cfg)])
    assert result.exit_code == 0, result.output
    assert ("warning: alerts.lease_seconds" in result.output) == warned
    if warned:
        assert f"({lease}) is shorter than a send to a slow server may take (420 s" in result.output


@pytest.mark.parametrize(("recipients", "warned"), [(2, False), (5, False), (11, False), (12, True)])
def test_config_check_default_lease_outlasts_a_slow_send_to_a_few_recipients(
        runner: CliRunner, tmp_path: Path, recipients: int, warned: bool) -> None:
    # With the defaults (smtp.timeout 30 s, a 300 s lease), any route of 2 or more recipients warned: 30 x (9 + 2)
    # = 330 s. The 600 s lease outlasts a slow send to up to 11 recipients (30 x 20 = 600 s); a route of more still
    # warns.
    emails = ", ".join(f'"p{i}@example.org"' for i in range(recipients))
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(f'[[alerts.routes]]\nname = "oncall"\nemail = [{emails}]\n')
    result = runner.invoke(main, ["config", "check", str(cfg)])
    assert result.exit_code == 0, result.output
    assert ("warning: alerts.lease_seconds" in result.output) == warned, result.output
    if warned:
        assert "(600) is shorter than a send to a slow server may take (630 s" in result.output


def test_the_service_logs_in_utc_whatever_the_machine_time_zone() -> None:
    # The text log used the machine's local time with no zone: in Kolkata, 5 h 30 off the times in its messages.
    code = ("import logging; from miner.logsetup import setup_logging; setup_logging(); "
            "logging.getLogger('miner').warning('x')")
    env = {**os.environ, "TZ": "Asia/Kolkata",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    before = datetime.now(UTC)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=60)
    stamp, rest = out.stderr.split(" ", 1)
    assert rest == "WARNING miner: x\n" and stamp.endswith("Z"), out.stderr
    at = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert before - timedelta(seconds=1) <= at <= datetime.now(UTC)


HOSTILE = ("WhatsApp down \x1b[2J\x1b]8;;https://evil.example\x1b\\link\x1b]8;;\x1b\\ \x1b]52;c;ZXZpbA==\x07 "
           "\x9b31m \u202egnp.exe\u202c\nnext line")


def test_tables_show_terminal_controls_in_post_text_escaped_json_and_csv_keep_them(runner: CliRunner,
                                                                                  tmp_path: Path) -> None:
    # A post that clears the screen, writes the operator's clipboard (OSC 52), hides a link (OSC 8) or reverses
    # text (U+202E) did so in `miner query`'s and `miner status`'s tables; json and csv are data, kept as stored.
    db = tmp_path / "m.sqlite"
    s = Store.open(db)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    s.insert_posts([Post("feed", "1", HOSTILE, at, services=("GitHub",))], at)
    s.sync_sources([SourceConfig(name="status:github", type="statuspage", url="https://www.githubstatus.com")])
    s.record_poll_failure("status:github", "HTTP 500: \x1b]52;c;ZXZpbA==\x07 \u2066boom", at, at)
    s.close()
    base = ["--config", str(ROOT / "feeds.toml"), "--db", str(db)]
    for fmt in ("table", "wide"):
        out = runner.invoke(main, [*base, "query", "--format", fmt, "SELECT text FROM posts"])
        assert out.exit_code == 0, out.output
        assert not any(ch in out.stdout for ch in "\x1b\x07\x9b\u202e\u202c"), repr(out.stdout)
        assert "WhatsApp down \\x1b[2J\\x1b]8;;https://evil.example" in out.stdout
        assert len(out.stdout.splitlines()) == 3  # header, rule, one row
    assert "\\x9b31m \\u202egnp.exe\\u202c next line" in out.stdout  # wide: the whole text
    status = runner.invoke(main, [*base, "status"])
    assert status.exit_code == 0, status.output
    assert "\\x1b]52;c;ZXZpbA==\\x07 \\u2066boom" in status.stdout
    assert not any(ch in status.stdout for ch in "\x1b\x07\u2066")
    as_json = runner.invoke(main, [*base, "query", "--format", "json", "SELECT text FROM posts"])
    assert json.loads(as_json.stdout) == [{"text": HOSTILE}]
    assert not any(ch in as_json.stdout for ch in "\x1b\x07\x9b\u202e\u202c")  # JSON escapes: \u009b


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("args", [["status"], ["query", "--format", "csv", "SELECT * FROM posts"]], ids=" ".join)
def test_output_to_a_full_disk_is_one_error_not_an_internal_one(tmp_path: Path, args: list[str]) -> None:
    # `miner query --format csv ... > export.csv` on a full disk said "internal error: OSError: [Errno 28] No space
    # left on device (set MINER_DEBUG=1 for a traceback)", as if miner were at fault.
    db = tmp_path / "m.sqlite"
    Store.open(db).close()
    with open("/dev/full", "w") as full:
        res = subprocess.run([sys.executable, "-m", "miner", "--config", str(ROOT / "feeds.toml"), "--db", str(db),
                              *args], stdout=full, stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=60,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 1
    assert res.stderr == "Error: cannot write the output: No space left on device\n"


@pytest.mark.parametrize("args", [["status"], ["status", "--format", "json"], ["query", "SELECT 1"], ["outbox"],
                                  ["silence", "list"], ["config", "check"], ["detect", "series.csv"]], ids=" ".join)
@pytest.mark.parametrize("stdout", ["closed", "read-only"])
def test_a_command_that_prints_refuses_a_standard_output_it_cannot_write(tmp_path: Path, args: list[str],
                                                                         stdout: str) -> None:
    # `miner status >&-` printed nothing and exited 0, as if the status had been shown (click.echo writes nothing to a
    # closed stdout); one open for reading only was "internal error: OSError: [Errno 9] Bad file descriptor".
    db = tmp_path / "m.sqlite"
    seeded_store(db)
    (tmp_path / "series.csv").write_text("timestamp,value\n2025-03-03 00:00,1\n2025-03-03 00:05,2\n", encoding="utf-8")
    with open(os.devnull) as read_only:
        res = subprocess.run([sys.executable, "-m", "miner", "--config", str(ROOT / "feeds.toml"), "--db", str(db),
                              *args], stderr=subprocess.PIPE, text=True, cwd=tmp_path, timeout=60,
                             env={**os.environ, "PYTHONPATH": str(ROOT)},
                             **({"preexec_fn": lambda: os.close(1)} if stdout == "closed" else {"stdout": read_only}))
    assert res.returncode == 1, res.stderr
    why = "closed" if stdout == "closed" else "not open for writing"
    assert res.stderr == (f"Error: standard output is {why}: there is nowhere to write what this command prints; "
                          "redirect it to a file (> FILE) or a pipe\n")


def test_tables_line_up_text_of_wide_characters(runner: CliRunner, tmp_path: Path) -> None:
    # A column was as wide as its longest text in characters: a Japanese post (two terminal columns a character)
    # pushed the cells after it out of line with their header, and a cell cut at 60 characters took 120 columns.
    db = tmp_path / "m.sqlite"
    s = Store.open(db)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    texts = ["LINEが落ちてる", "e\u0301 ok", "down 😀", "障害" * 40]
    s.insert_posts([Post("feed", str(i), text, at) for i, text in enumerate(texts)], at)
    s.close()
    out = runner.invoke(main, ["--config", str(ROOT / "feeds.toml"), "--db", str(db), "query",
                               "SELECT text, source FROM posts ORDER BY id"])
    assert out.exit_code == 0, out.output

    def column(line: str, word: str) -> int:  # the terminal column where word starts
        return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 0 if unicodedata.combining(ch) else 1
                   for ch in line[:line.rindex(word)])

    lines = out.stdout.splitlines()
    assert lines[5].startswith(("障害" * 15)[:29] + "…  ")  # 58 columns and the "…"
    assert {column(line, "source" if n == 0 else "feed") for n, line in enumerate(lines) if n != 1} == {61}


def test_query_csv_into_a_pipe_keeps_escape_sequences_in_the_text(runner: CliRunner, tmp_path: Path) -> None:
    # click.echo strips what looks like an ANSI colour code when stdout is no terminal: `miner query --format csv
    # > posts.csv` lost the ESC [2J and ESC [31m of a post's text.
    db = tmp_path / "m.sqlite"
    s = Store.open(db)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    s.insert_posts([Post("feed", "1", HOSTILE, at, services=("GitHub",))], at)
    s.close()
    as_csv = runner.invoke(main, ["--config", str(ROOT / "feeds.toml"), "--db", str(db), "query", "--format", "csv",
                                  "SELECT text FROM posts"])
    assert as_csv.exit_code == 0, as_csv.output
    assert as_csv.stdout == f'text\n"{HOSTILE}"\n'

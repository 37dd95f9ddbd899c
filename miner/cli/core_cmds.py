"""Foundation commands: config check, query, backup, prune."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from itertools import islice
from pathlib import Path

import click

from miner.cli.app import AppContext, PathParam, main, pass_app
from miner.cli.output import STREAMED, TABLE_ROWS, render, stream, table
from miner.cli.stdio import acts, prints
from miner.cli.stopping import raise_on_hangup
from miner.timeutil import counted


@main.group()
def config() -> None:
    """Inspect and validate feeds.toml."""


@config.command("check")
@click.argument("path", required=False, type=PathParam(path_type=Path, dir_okay=False))
@pass_app
@prints
def config_check(app: AppContext, path: Path | None) -> None:
    """Validate a feeds.toml (default: the --config file) and print a summary.

    Unknown keys, wrong types and bad references are reported with the key path and the line, and so are a
    classifier.model_dir that is not there and an alerts.smtp.ca_file that cannot be read. Environment variables it
    names that are unset or empty (as the service would find them) are listed, an alert's in a warning of its own saying
    what follows, as `miner run` warns at its start (every email, or every alert to that webhook, fails until miner is
    started with it); not a name that reads as the secret itself (lower case, or a token such as AKIA...): a warning
    names its key instead. A source url that holds what looks like a credential (a user name, a query parameter such as
    api_key) is warned about, as are an SMTP login that would cross the network unencrypted, an SMTP security that the
    server on its port usually does not speak (ssl with 587 or 25, starttls or none with 465), an alerts lease shorter
    than a slow send may take, and a proxy in the environment (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY) that miner's HTTP
    cannot use (a SOCKS proxy without the socksio package, a scheme other than http, https or socks5, a bad port). So
    are services that no alert route tells anyone of (no [[alerts.routes]], or none listing them in its services).
    """
    from miner.config_files import alert_env, load_checked, smtp_port_mismatch, unalerted, unset_alert_env
    from miner.env_names import secret_like as is_secret_like
    from miner.urls import credentials_in_url

    cfg = load_checked(path or app.config_path)
    click.echo(f"{cfg.path}: OK")
    rows = []
    secret_like: list[str] = []  # keys whose unset variable's "name" may be the secret itself: never shown

    def shown(var: str, key: str) -> str:
        if not is_secret_like(var):
            return var
        secret_like.append(key)
        return "[not shown]"

    for i, src in enumerate(cfg.sources):
        watched = ", ".join(src.services) if src.services else "all services"
        its_vars = [*((var, f"sources[{i}].env.{name}") for name, var in src.env.items()),
                    *([(src.url_env, f"sources[{i}].url_env")] if src.url_env else [])]
        # Empty is unset to a collector.
        missing = [shown(var, key) for var, key in its_vars if not os.environ.get(var)]
        note = "disabled" if not src.enabled else (f"env not set: {', '.join(missing)}" if missing else "")
        rows.append((src.name, src.type, src.interval, watched, note))
    # An empty file is valid: "0 services: " and a table of headers only read as output cut short.
    names = ", ".join(s.name for s in cfg.services)
    click.echo(f"{counted(len(cfg.services), 'service')}: {names}" if cfg.services
               else "0 services (posts that name no configured service never reach the detector)")
    if cfg.groups:
        click.echo(f"{counted(len(cfg.groups), 'group')}: "
                   + "; ".join(f"{g.name} ({', '.join(g.services)})" for g in cfg.groups))
    if rows:
        click.echo(f"{counted(len(cfg.sources), 'source')}:")
        click.echo(table(("source", "type", "interval s", "watches", "note"), rows))
    else:
        click.echo("0 sources (`miner run` polls nothing)")
    # The store the other commands use: --db (or MINER_DB, as a systemd unit sets it) wins over store.path. The same
    # file by another spelling (its full path beside a relative store.path) is no other store.
    store = (f"{cfg.store.path} (not used: --db or MINER_DB names {app.db_path})"
             if app.db_path is not None and app.db_path.resolve() != Path(cfg.store.path).resolve()
             else str(cfg.store.path))
    click.echo(f"store: {store}; detector bucket: {cfg.detector.bucket_minutes} min")
    if (var := cfg.store.hash_key_env) and not os.environ.get(var):
        # What follows, as `miner run`'s start logs it: "env not set" alone read as an error to fix before starting,
        # or as nothing at all, and said neither that the service runs without it nor what to put in it.
        click.echo(f"env not set: {shown(var, 'store.hash_key_env')} (store.hash_key_env): author handles are hashed "
                   "with a fixed public salt, so a known handle can be matched to its hash; set it to a long random "
                   "secret, made once and kept (python3 -c 'import secrets; print(secrets.token_hex(32))')")
    # An alert's, as `miner run` warns of it at its start: with what follows (every email failing for good). A name
    # that reads as the secret itself is not shown there, and is warned of below.
    secret_like += [key for var, key in alert_env(cfg) if not os.environ.get(var) and is_secret_like(var)]
    for line in unset_alert_env(cfg):
        click.echo(f"warning: {line}")
    for key in secret_like:
        # hunter2 or ghp_... passes as a name; echoed here it would end up in a terminal's or CI job's log.
        click.echo(f"warning: {key} does not read as the name of an environment variable (those are usually "
                   "upper case, like MINER_HASH_KEY) and no variable of that name is set: if it is the secret "
                   "itself, put the secret in an environment variable and name that here")
    if (said := smtp_port_mismatch(cfg)) is not None:
        click.echo(f"warning: {said}")
    smtp = cfg.alerts.smtp
    if cfg.alerts.enabled and smtp.login_in_clear:
        # Unset, a "name" that reads as the password itself was left out above (and warned of): here too.
        hidden = is_secret_like(smtp.password_env) and not os.environ.get(smtp.password_env)
        login = "[not shown]" if hidden else smtp.password_env
        click.echo(f"warning: alerts.smtp: security = \"none\" sends the login ({login}) to {smtp.host} "
                   "unencrypted; use starttls or ssl (none is for a relay on this machine)")
    if cfg.alerts.enabled and cfg.alerts.slowest_send > cfg.alerts.lease_seconds:
        click.echo(f"warning: alerts.lease_seconds ({cfg.alerts.lease_seconds:g}) is shorter than a send to a slow "
                   f"server may take ({cfg.alerts.slowest_send:g} s: smtp.timeout per SMTP command, or a webhook's "
                   "timeout): a notification still being sent when its lease ends can be sent twice; raise "
                   "lease_seconds or lower the timeouts")
    if cfg.sources or (cfg.alerts.enabled and cfg.alerts.webhooks):
        from miner.proxy_env import proxy_problems  # imports httpx

        for problem in proxy_problems():
            click.echo(f"warning: {problem}; until then the sources and webhooks it would carry fail")
    for src in cfg.sources:
        if src.url and (found := credentials_in_url(src.url)):
            click.echo(f"warning: source {src.name}: its url holds what looks like a credential ({', '.join(found)}); "
                       "secrets belong in the environment: put the URL in an environment variable and name it in "
                       "url_env")
    if (said := unalerted(cfg)) is not None:
        click.echo(f"warning: {said}")


# Comments, which SQLite skips as it does whitespace.
_NOT_SQL = re.compile(r"--[^\n]*|/\*.*?(\*/|$)", re.DOTALL)


def _stdin_sql() -> str:
    """The SQL on standard input, as UTF-8 text: a file saved in another encoding (Latin-1, with an accented letter in
    a comment) was an "internal error: UnicodeDecodeError"."""
    from miner.cli.stdio import read_stdin
    from miner.errors import MinerError

    data = read_stdin()
    try:
        return str(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise MinerError(f"the SQL on standard input is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                         f"{exc.start}): save the file as UTF-8") from None


@main.command()
@click.argument("sql")
@click.option("--format", "fmt", type=click.Choice(["table", "wide", "json", "csv"]), default="table",
              show_default=True,
              help="Output format; `wide` does not cut long cells, json is one array with an object per row (an "
                   "infinite number is null; columns need names of their own, as a join's two \"id\" need AS). "
                   "A BLOB is written in hex as an SQL literal (X'00ff') in table, wide and csv, and in json as "
                   "the object sqlite-utils and Datasette write, {\"$base64\": true, \"encoded\": \"AP8=\"}. "
                   "table and wide show control and bidi characters escaped (\\x1b, \\u202e), so that a post "
                   "cannot drive the terminal; json (escaping them as JSON does, \\u009b) and csv keep text as "
                   "stored, but csv writes a text that a spreadsheet would run as a formula after a ' (see "
                   f"--csv-raw). table and wide show the first {TABLE_ROWS:,} rows (they hold them in memory to line "
                   "them up); csv and json write every row as they read it.")
@click.option("--csv-raw", is_flag=True,
              help="With --format csv, write every text as stored, for programs reading the file. By default a "
                   "text that starts with =, +, - or @ (after any spaces; their full-width forms, as ＝, too), a tab "
                   "or a carriage return, which Excel, "
                   "LibreOffice or Google Sheets would open as a formula (=HYPERLINK(...) in a post's text sending "
                   "the sheet away), is written after a ' that makes it text; numbers, and text that is one (-1.5), "
                   "are written as they are.")
@click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE",
              help="Bind :NAME in the SQL to VALUE (repeatable, once per NAME; NAME with or without its colon). "
                   "VALUE is text, as Datasette and sqlite-utils bind it: compared with a column, SQLite reads it as "
                   "the column's type (complaints > :n), but compared with a count or another expression it stays "
                   "text, which every number sorts before (HAVING count(*) > :n matches nothing, < :n everything): "
                   "write CAST(:n AS INTEGER) (or REAL) there.")
@pass_app
@prints
def query(app: AppContext, sql: str, fmt: str, csv_raw: bool, params: tuple[str, ...]) -> None:
    """Run one read-only SQL statement on the store and print the rows.

    Writes (INSERT, UPDATE, DELETE, DDL, PRAGMA, ATTACH) are refused; PRAGMAs that only describe or check the
    store (table_info, index_list, user_version, journal_mode, quick_check, integrity_check, foreign_key_check...)
    are not, but for one given a value (journal_mode=DELETE, or pragma_journal_mode('delete'), whose argument
    SQLite reads as a database's name). An error of the SQL's own says "SQL error"; one of the store file names
    it. The store is opened read-only. Example:

        miner query "SELECT service, count(*) FROM post_services GROUP BY 1"

    SQL given as - is read from standard input, as a saved file is best given: miner query - < report.sql.
    SQL that starts with a comment (--) on the command line goes after a -- of its own, which ends the options:
    miner query -- "$(cat report.sql)". Without it, it is taken for an unknown option.
    """
    from miner.errors import MinerError
    from miner.store import stream_readonly

    if csv_raw and fmt != "csv":  # the other formats are no spreadsheet's: it would change nothing, without a word
        raise click.BadParameter(f"applies to --format csv only, not {fmt}", param_hint="--csv-raw")
    bound: dict[str, str] = {}
    for item in params:
        name, sep, value = item.partition("=")
        # As the SQL writes it (:since, @since, $since): SQLite names it without that mark, and `-p :since=2d` was
        # told "You did not supply a value for binding parameter :since".
        name = name[1:] if name[:1] in (":", "@", "$") else name
        if not sep or not name:  # "=x" bound nothing, without a word
            raise click.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint="--param")
        if name in bound:  # the last one was bound without a word, and the query ran on half of what was meant
            raise click.BadParameter(f"{name} given twice ({name}={bound[name]}, {item}): bind each :NAME once",
                                     param_hint="--param")
        bound[name] = value
    if sql == "-":  # "-" is no SQL: it was run as such, "near "-": syntax error"
        sql = _stdin_sql()
    # SQLite runs no statement at all without a word: an empty file (or one of comments only) printed "(0 rows)" and
    # exited 0, as if the report's query had found nothing.
    if not _NOT_SQL.sub("", sql).strip(" \t\r\n\f;"):
        raise MinerError("no SQL statement to run: the SQL given is empty or only comments")
    path = str(app.db_path or app.config.store.path)
    with stream_readonly(path, sql, bound) as (columns, read):
        # An object holds a name once: a join's two "id" columns kept only the last, without a word.
        if fmt == "json" and (twice := sorted({c for c in columns if columns.count(c) > 1})):
            raise MinerError(f"more than one column named {', '.join(map(repr, twice))}: --format json "
                             "writes an object per row, which holds a name once; name each column with AS")
        if fmt in STREAMED:
            for piece in stream(columns, read, fmt, csv_raw=csv_raw):
                # color=True: into a file or a pipe click.echo strips what looks like an ANSI colour code, which
                # in a csv is a post's own text (json escapes ESC itself).
                click.echo(piece, nl=False, color=True)
            return
        rows = list(islice(read, TABLE_ROWS + 1))  # one more tells whether there are more
    click.echo(render(columns, rows[:TABLE_ROWS], fmt))
    if len(rows) > TABLE_ROWS:
        click.echo(f"(first {TABLE_ROWS:,} rows shown; there are more: a table holds its rows in memory to line them "
                   "up, so add a LIMIT, or use --format csv or json, which write every row as they read it)", err=True)
    else:
        click.echo(f"({len(rows)} row{'s' if len(rows) != 1 else ''})", err=True)


@main.command()
@click.argument("target", type=PathParam(path_type=Path, dir_okay=False))
@pass_app
@acts
def backup(app: AppContext, target: Path) -> None:
    """Copy the store to TARGET with SQLite's online backup API (safe while the service runs).

    The store is opened read-only and copied as it is: a store from an older miner is not upgraded first, so a
    backup taken before an upgrade can restore the old version. The copy is checked (SQLite's quick_check): a copy
    of a corrupt store is not kept, and the command fails naming the damage. The copy is written to a hidden
    temporary file beside TARGET and renamed to it once complete: a backup that fails, or that SIGINT, SIGTERM or
    SIGHUP stops before then (exit status 130, 143, 129), writes nothing at TARGET and removes that file.
    """
    # A closed terminal or ended session (SIGHUP) killed the copy outright, its temporary file left beside TARGET.
    with raise_on_hangup():
        size = app.store(readonly=True, must_exist=True, any_schema=True).backup(target)
    click.echo(f"backed up {app.store().path} to {target} ({size:,} bytes)")


@main.command()
@click.option("--days", type=click.IntRange(min=1), default=None,
              help="Keep posts newer than this many days (default: [store].retention_days).")
@click.option("--force", is_flag=True,
              help="Prune even when no post a source dated is newer than the cutoff (every post goes).")
@pass_app
@acts
def prune(app: AppContext, days: int | None, force: bool) -> None:
    """Delete raw posts past the retention period, and bucket rows and alert history past theirs; incidents are kept.

    The bucket counts of the pruned period (up to the bucket holding the newest post deleted) are final from then
    on, and a source's post older than that is not stored again. Bucket rows older than
    [store].bucket_retention_days (and than the posts deleted) are deleted, and so are the notifications finished
    (sent, failed, suppressed) and the silences ended before then (those about an incident still open are kept), and
    the record of the failed polls made before then.

    Nothing is pruned (exit 1) when the cutoff is after the newest post a source dated, as the retention job
    holds back then: the clock is likely ahead, and every post would go for good. --force prunes all the same.
    """
    from miner.errors import InputError, MinerError
    from miner.store.maintenance import held_prune_message
    from miner.store_settings import MAX_RETENTION_DAYS
    from miner.timeutil import utcnow

    if days is not None and days > MAX_RETENTION_DAYS:  # the cutoff would overflow a datetime: an internal error
        raise InputError(f"--days {days}: at most {MAX_RETENTION_DAYS} (100 years), as [store].retention_days")
    keep = days or app.config.store.retention_days
    now, settings = utcnow(), app.config.store
    cutoff = now - timedelta(days=keep)
    if (held := app.store(must_exist=True).hold_prune(cutoff, now, check=not force)) is not None:
        raise MinerError(held_prune_message(held))
    removed = app.store().prune_posts(cutoff)
    buckets = app.store().prune_buckets(now - timedelta(days=settings.bucket_days))
    notifications, silences = app.store().prune_alert_history(now - timedelta(days=settings.bucket_days))
    polls = app.store().prune_poll_failures(now - timedelta(days=settings.bucket_days))
    click.echo(f"pruned {counted(removed, 'post')} older than {counted(keep, 'day')}, and "
               f"{counted(buckets, 'bucket row')}, {counted(notifications, 'notification')}, "
               f"{counted(silences, 'silence')} and {counted(polls, 'failed poll record')} older than "
               f"{counted(settings.bucket_days, 'day')}")

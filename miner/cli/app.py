"""The click group, the shared context, and the one place where errors become command-line messages."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from miner import __version__
from miner.cli.stdio import READER_STOPPED, quiet_stdout, stdout_unwritable
from miner.cli.stopping import Interrupted, interrupted_by, raise_on_signals
from miner.entry import release_hup
from miner.errors import MinerError
from miner.logsetup import escape_last_resort

if TYPE_CHECKING:
    from miner.config import Config
    from miner.store import Store

F = TypeVar("F", bound=Callable[..., Any])


class MinerGroup(click.Group):
    """A group whose commands report :class:`MinerError` as one line and a non-zero exit, SIGINT or SIGTERM
    (see :mod:`miner.cli.stopping`) as one line and exit 130 or 143, and a reader of their output that stopped early
    with no line and exit 141 (stdio.READER_STOPPED)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with raise_on_signals():
                return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            _interrupted(exc if isinstance(exc, Interrupted) else Interrupted(signal.SIGINT))
        except MinerError as exc:
            if stopped := interrupted_by():  # e.g. a statement a signal interrupted fails as "interrupted"
                _interrupted(stopped)
            raise click.ClickException(str(exc)) from exc
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except BrokenPipeError:
            # `miner query ... | head` closes stdout early: no error to tell, but an output cut short (stdio.acting
            # has the commands that change something finish first). Closing stderr instead of quieting stdout hid
            # every message after.
            quiet_stdout()
            raise click.exceptions.Exit(READER_STOPPED) from None
        except Exception as exc:
            if stopped := interrupted_by():
                _interrupted(stopped)
            if isinstance(exc, OSError) and exc.filename is None and exc.errno in _FULL:
                # What writing to standard output raises (`miner query ... > export.csv` on a full disk): it was
                # an "internal error" asking for a traceback, as if miner were at fault.
                raise click.ClickException(f"cannot write the output: {exc.strerror}") from exc
            if isinstance(exc, OSError) and exc.errno == errno.EBADF and (why := stdout_unwritable()):
                # A write to a standard output open for reading only (`1< file`) by a command that checks it at no
                # start: those run for their output (stdio.prints) and those that act and report (stdio.acts) do.
                raise click.ClickException(f"cannot write the output: standard output is {why}") from exc
            if os.environ.get("MINER_DEBUG"):
                raise
            raise click.ClickException(
                f"internal error: {type(exc).__name__}: {exc} (set MINER_DEBUG=1 for a traceback)"
            ) from exc

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.commands)


# A write that failed for want of room (a full disk, a quota, a file-size limit): only a write fails so, where an
# EIO may as well be a read of the input.
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _interrupted(stopped: Interrupted) -> NoReturn:
    # A SIGHUP comes as the terminal closes, and writing to it fails then (EIO): that failure ended the command with
    # status 1, not 129, as if the work had failed rather than been stopped. A closed stderr is told nothing either.
    with contextlib.suppress(OSError, ValueError):
        click.echo(stopped.message(), err=True)
    raise click.exceptions.Exit(stopped.exit_code) from None


@dataclass
class AppContext:
    """Lazily loaded config and store, shared by every command of one invocation."""

    config_path: Path | None
    db_path: Path | None
    _config: Config | None = field(default=None, repr=False)
    _store: Store | None = field(default=None, repr=False)

    @property
    def config(self) -> Config:
        if self._config is None:
            from miner.config import load_config

            self._config = load_config(self.config_path)
        return self._config

    def store(self, *, readonly: bool = False, must_exist: bool = False, any_schema: bool = False) -> Store:
        """The store, opened on first use. ``must_exist``: for every command but those that fill a store (collect,
        run, replay, demo), which refuse a missing file instead of creating an empty one: a typo in --db made
        `silence add` mute nothing the service sees, and `prune` or `outbox send` in cron succeed on nothing.
        ``any_schema``: see ``Store.open``."""
        if self._store is None:
            from miner.store import Store, require_store

            path = self.db_path or self.config.store.path
            if must_exist:
                require_store(path)
            self._store = Store.open(path, readonly=readonly, any_schema=any_schema)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


pass_app = click.make_pass_decorator(AppContext)


class PathParam(click.Path):
    """click.Path, refusing an empty one: "" was taken for the current folder (`backup ""` said "backup target .
    exists", `--config ""` "cannot read: [Errno 21] Is a directory: '.'"), a quoting slip or an unset variable's
    "$X" that names no file."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, (str, bytes)) and not value:
            self.fail("an empty path names no file or folder", param, ctx)
        return super().convert(value, param, ctx)


# A row id as SQLite stores it: a larger number failed in the driver as an internal error.
ROW_ID = click.IntRange(1, 2**63 - 1)
PORT = click.IntRange(0, 65535)


@click.group(cls=MinerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="miner")
@click.option(
    "--config",
    "config_path",
    type=PathParam(path_type=Path, dir_okay=False),
    envvar="MINER_CONFIG",
    help="feeds.toml to use (default: ./feeds.toml). Env: MINER_CONFIG.",
)
@click.option(
    "--db",
    "db_path",
    type=PathParam(path_type=Path, dir_okay=False),
    envvar="MINER_DB",
    help="SQLite store to use (default: [store].path from the config). Env: MINER_DB.",
)
@click.pass_context
def main(ctx: click.Context, config_path: Path | None, db_path: Path | None) -> None:
    """miner: find service outages in what people post.

    Collectors fetch posts and status pages, a small transformer labels outage reports, a rolling z-score
    detector opens incidents, and alerts go out by email and webhook. Everything is kept in one SQLite file.

    The global --config and --db go before the command: miner --db x.sqlite status.
    """
    if ctx.invoked_subcommand != "run":  # `miner run` takes a SIGHUP held since the start as a reload
        release_hup()
    escape_last_resort()
    app = AppContext(config_path=config_path, db_path=db_path)
    ctx.obj = app
    ctx.call_on_close(app.close)

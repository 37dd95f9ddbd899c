"""Regenerate the reference docs that are derived from the code: docs/cli.md and docs/schema.md.

    python tools/gen_docs.py          # rewrite both files
    python tools/gen_docs.py --check  # exit 1 if either is out of date (tests/test_docs.py does this too)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from miner.cli import main  # noqa: E402
from miner.store import Store  # noqa: E402
from miner.store.catalog import TABLES  # noqa: E402


def _commands(group: click.Group, prefix: tuple[str, ...]) -> list[tuple[tuple[str, ...], click.Command]]:
    out: list[tuple[tuple[str, ...], click.Command]] = []
    for name in sorted(group.commands):
        cmd = group.commands[name]
        out.append(((*prefix, name), cmd))
        if isinstance(cmd, click.Group):
            out.extend(_commands(cmd, (*prefix, name)))
    return out


WIDTH = 100


def help_text(path: tuple[str, ...]) -> str:
    """What `miner PATH --help` prints in a terminal WIDTH columns wide."""
    # The contexts a real invocation builds: each with its command's context_settings and its parent's, so that
    # settings such as the group's help_option_names reach the page as they reach --help.
    ctx = click.Context(main, info_name="miner", terminal_width=WIDTH, max_content_width=WIDTH, **main.context_settings)
    for name in path:
        assert isinstance(ctx.command, click.Group)
        cmd = ctx.command.commands[name]
        ctx = click.Context(cmd, parent=ctx, info_name=name, **cmd.context_settings)
    return ctx.command.get_help(ctx).rstrip()


def cli_markdown() -> str:
    parts = ["# Command reference", "",
             "Generated from the code by `python tools/gen_docs.py`; do not edit by hand.", ""]
    for path in [(), *(p for p, _cmd in _commands(main, ()))]:
        parts += [f"## `{' '.join(('miner', *path))}`", "", "```", help_text(path), "```", ""]
    return "\n".join(parts)


def schema_markdown() -> str:
    parts = ["# Store schema", "",
             "One SQLite file (WAL mode). Generated from `miner/store/catalog.py` by `python tools/gen_docs.py`;",
             "times are ISO 8601 UTC text (`2026-11-28T04:50:00+00:00`), JSON columns hold JSON text.",
             "Times compare as text only with times in that form: SQLite's `datetime('now', '-30 days')` gives",
             "`2026-10-29 04:50:00`, which sorts before every stored time of that day (`T` after the space), so",
             "write `strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now', '-30 days')`; for a duration in minutes,",
             "`(strftime('%s', resolved_at) - strftime('%s', opened_at)) / 60`.", ""]
    for table, (desc, columns) in TABLES.items():
        parts += [f"## `{table}`", "", desc, "", "| column | meaning |", "|---|---|"]
        parts += [f"| `{col}` | {text} |" for col, text in columns.items()]
        parts.append("")
    return "\n".join(parts)


def live_schema() -> dict[str, list[str]]:
    """Tables and columns of a freshly migrated store."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "s.sqlite")
        tables = [r["name"] for r in store.database.rows(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        out = {t: [r["name"] for r in store.database.rows(f'PRAGMA table_info("{t}")')] for t in tables}
        store.close()
    return out


TARGETS = {ROOT / "docs" / "cli.md": cli_markdown, ROOT / "docs" / "schema.md": schema_markdown}


def main_() -> int:
    check = "--check" in sys.argv[1:]
    stale = []
    for path, render in TARGETS.items():
        text = render()
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(path)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print("out of date (run `python tools/gen_docs.py`): " + ", ".join(str(p) for p in stale))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main_())

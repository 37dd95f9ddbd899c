"""What the docs name exists: every relative link and #anchor, config key, default, command option and repository
file the hand-kept docs give is the code's (test_docs.py checks the other way: everything in the code is documented)."""

from __future__ import annotations

import dataclasses
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from test_docs import ROOT, config_keys

from miner.config import Config, _stage_settings
from miner.store.catalog import TABLES

# The docs a maintainer keeps by hand that say what the code does now (docs/cli.md and docs/schema.md are generated;
# classifier-experiments.md and CHANGELOG.md record what was so then: a key renamed since is named there on purpose).
KEPT_DOCS = [ROOT / "README.md", ROOT / "models" / "MODEL_CARD.md", ROOT / "bench" / "README.md",
             *sorted(p for p in (ROOT / "docs").glob("*.md")
                     if p.name not in ("cli.md", "schema.md", "classifier-experiments.md"))]


def prose(text: str) -> str:
    """``text`` without its fenced code blocks (a `[x](y)` or a heading there is code, not markup)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def anchors(doc: Path) -> set[str]:
    """The #fragments GitHub gives the headings of ``doc``: lower case, punctuation but `-` and `_` dropped, spaces
    as `-`, a repeated one numbered from `-1`."""
    slugs, seen = set(), dict[str, int]()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", prose(doc.read_text(encoding="utf-8")), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        slugs.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return slugs


def test_every_relative_link_and_anchor_resolves() -> None:
    # A section renamed or a file moved left links that land at the top of a page, or nowhere.
    broken = []
    for doc in [*KEPT_DOCS, ROOT / "CHANGELOG.md", ROOT / "docs" / "classifier-experiments.md"]:
        text = re.sub(r"`[^`\n]*`", "", prose(doc.read_text(encoding="utf-8")))
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z][a-z+.-]*:", target):
                continue  # https:, mailto:
            path, _, fragment = target.partition("#")
            linked = (doc.parent / path).resolve() if path else doc
            if not linked.exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such file)")
            elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such section)")
    assert not broken, "; ".join(broken)


def test_every_config_key_the_docs_name_exists(tmp_path: Path) -> None:
    # configuration.md documents every key (above); this is the other way round: a key renamed or removed in the code
    # stayed in the prose (`[server].port`, `detector.settle_minutes`, `[alerts.smtp]`) and in the TOML examples.
    keys = set(config_keys(Config))
    known = {".".join(k.split(".")[:i]) for k in keys for i in range(1, k.count(".") + 2)}
    sections = {k.split(".")[0] for k in keys}
    columns = {f"{table}.{column}" for table, (_doc, cols) in TABLES.items() for column in cols}
    named: list[tuple[str, str]] = []
    for doc in KEPT_DOCS:
        text = doc.read_text(encoding="utf-8")
        for span in re.findall(r"`([^`\n]+)`", prose(text)):
            whole = re.fullmatch(r"\[\[?([a-z_.]+)\]\]?(?:\.([a-z_.]+))?|([a-z_]+(?:\[\d*\])?(?:\.[a-z_]+)+)(?: = .*)?",
                                 span)
            if whole:
                key = ".".join(p for p in whole.groups() if p)
                named.append((doc.name, re.sub(r"\[\d*\]", "", key)))
        for block in re.findall(r"^```toml\n(.*?)^```", text, re.M | re.S):
            named += [(doc.name, key) for key in toml_keys(tomllib.loads(block))]
    unknown = sorted({f"{doc}: {key}" for doc, key in named
                      if key.split(".")[0] in sections and key not in known and key not in columns})
    assert not unknown, f"no such config key: {', '.join(unknown)}"


def toml_keys(table: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of a parsed TOML example's keys, as config_keys names them (the tables a key holds as its value,
    a source's `env`, are one key)."""
    found = []
    for name, value in table.items():
        path = f"{prefix}{name}"
        found.append(path)
        if path in ("sources.env",):
            continue
        for sub in value if isinstance(value, list) else [value]:
            if isinstance(sub, dict):
                found += toml_keys(sub, f"{path}.")
    return found


def test_the_documented_defaults_are_the_code_defaults() -> None:
    # A default changed in the code and left in the table is what a user who leaves the key out is told he gets.
    defaults = {f"{prefix}{f.name}": f.default if f.default is not dataclasses.MISSING else f.default_factory()
                for prefix, cls in config_classes(Config)
                for f in dataclasses.fields(cls) if f.init and (f.default is not dataclasses.MISSING
                                                                or f.default_factory is not dataclasses.MISSING)}
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    checked, wrong = 0, []
    for key, shown in re.findall(r"^\| `([a-z_.]+)` \| `([^`]+)` \|", doc, re.M):
        if key not in defaults or re.fullmatch(r"[a-z_]+\.[a-z_.]+", shown):
            continue  # `detector.timezone`: another key's value
        code = defaults[key]
        if code is None:
            continue  # worked out by the code (`sources.max_entries`: 500), which the row's text says
        if "..." in shown:  # `"miner/0.1 (...)"`: its start
            checked += 1
            if not isinstance(code, str) or not code.startswith(shown.strip('"').partition("...")[0]):
                wrong.append(f"{key}: docs say {shown}, the code has {code!r}")
            continue
        value = tomllib.loads(f"v = {shown}")["v"]
        same = (list(code) == value if isinstance(code, tuple) else dict(code) == value if hasattr(code, "keys")
                else code == value and type(code) is type(value))
        checked += 1
        if not same:
            wrong.append(f"{key}: docs say {shown}, the code has {code!r}")
    assert not wrong, "; ".join(wrong)
    assert checked > 80, checked


def config_classes(cls: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(key prefix, dataclass) of every table of the config, as config_keys walks it."""
    found = [(prefix, cls)]
    hints = get_type_hints(cls, localns=_stage_settings())
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        inner = get_args(tp)[0] if get_origin(tp) is tuple else tp
        if get_origin(inner) in (typing.Union, types.UnionType):
            inner = next(a for a in get_args(inner) if a is not type(None))
        if f.init and dataclasses.is_dataclass(inner):
            found += config_classes(inner, f"{prefix}{f.name}.")
    return found


def test_every_option_named_with_its_command_exists() -> None:
    # test_every_documented_command_line_parses reads `miner ...` lines; the prose names options by their command
    # alone (`reclassify --since`, `silence add --provider`, `outbox send`'s), which nothing checked.
    import click

    from miner.cli import main

    def options(cmd: click.Command) -> set[str]:
        return {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"-h", "--help"}

    checked, unknown = 0, []
    for doc in KEPT_DOCS:
        text = re.sub(r"\n *", " ", prose(doc.read_text(encoding="utf-8")))
        for span in re.findall(r"(?<!`)`(?:miner )?([a-z][a-z-]*(?: [^`]*)?)`", text):
            words = span.split()
            cmd = main.commands.get(words[0])
            if cmd is None:
                continue
            if isinstance(cmd, click.Group) and len(words) > 1 and words[1] in cmd.commands:
                cmd = cmd.commands[words[1]]
            for option in re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", span):
                checked += 1
                if option not in options(cmd) | options(main):
                    unknown.append(f"{doc.name}: `{span}`: {option}")
    assert not unknown, "; ".join(unknown)
    assert checked > 30, checked


def test_every_file_of_the_repository_the_docs_name_exists() -> None:
    # A script or module renamed (bench/..., tools/..., miner/...) left the docs pointing at nothing.
    missing = []
    named = re.compile(r"(?<![\w/.-])((?:miner|tests|bench|tools|data|models|docs|\.ci)/[\w./-]*"
                       r"\.(?:py|md|toml|json|jsonl|gz|txt|onnx|html|png|csv))\b")
    for doc in KEPT_DOCS:
        for path in named.findall(doc.read_text(encoding="utf-8")):
            if not (ROOT / path).exists() and not (ROOT / "miner" / path).exists():  # models/: miner/models/ installed
                missing.append(f"{doc.relative_to(ROOT)}: {path}")
    assert not missing, "; ".join(sorted(set(missing)))

"""Where a key path such as ``sources[2].interval`` starts in a feeds.toml's text, so errors can name the line.

tomllib gives values, not positions: this follows just enough of TOML (headers, dotted and quoted keys, inline
tables and arrays over several lines, multi-line strings) to map each key path to its line.
"""

from __future__ import annotations

import bisect
import contextlib
import re
import tomllib
from collections.abc import Collection


def locate(text: str, key: str, *, exact: bool = False) -> int | None:
    """The 1-based line of dotted key path ``key`` (e.g. ``sources[2].interval``) in TOML ``text``.

    Falls back to the nearest enclosing table or key that exists, so every error gets a useful line; with ``exact``,
    None where the text does not set ``key`` itself.
    """
    lines = _KeyLines(text).scan()
    if exact:
        return lines.get(key)
    probe = key
    while probe:
        if probe in lines:
            return lines[probe]
        shorter = re.sub(r"(\[\d+\]|\.[^.\[\]]+)$", "", probe)
        if shorter == probe:
            break
        probe = shorter
    return None


def unclosed(text: str) -> int | None:
    """The 1-based line where a string, array or inline table opens that ``text`` never closes (tomllib says only
    "at end of document"), or None when none is open at the end."""
    scanner = _KeyLines(text)
    scanner.scan()
    return scanner.unclosed


class _Stop(Exception):
    """Text the scanner does not follow; what it found so far still serves."""


_BARE_KEY = re.compile(r"[A-Za-z0-9_\-]+")
_STRINGS = (  # longest opening first: a multi-line string may hold anything that looks like a key or a header
    ('"""', re.compile(r'"""(?:\\.|[^\\])*?"""(?!")', re.S)),
    ("'''", re.compile(r"'''.*?'''(?!')", re.S)),
    ('"', re.compile(r'"(?:\\.|[^"\\\n])*"')),
    ("'", re.compile(r"'[^'\n]*'")),
)
_SCALAR = re.compile(r"[^,\]}\n#]*")


class _KeyLines:
    """Just enough of TOML to know the line where each key path starts, in text tomllib has accepted.

    Paths are spelled as the settings loader spells them: ``alerts.routes[1].timezone``, ``services[0]`` for an
    inline table in an array. Dotted keys, quoted keys, inline tables and arrays over several lines, and
    multi-line strings (whose lines are not keys) are followed.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.newlines = [i for i, ch in enumerate(text) if ch == "\n"]
        self.lines: dict[str, int] = {}
        self.counters: dict[str, int] = {}  # array-of-tables path -> index of its latest entry
        self.opened: list[int] = []  # lines of the arrays and inline tables open where the scanner is
        self.unclosed: int | None = None  # where a string, array or inline table opens that the text never closes

    def scan(self) -> dict[str, int]:
        with contextlib.suppress(_Stop, IndexError, RecursionError, tomllib.TOMLDecodeError):
            self._document()
        return self.lines

    def _line(self) -> int:
        return bisect.bisect_right(self.newlines, self.pos - 1) + 1

    def _at(self, token: str) -> bool:
        return self.text.startswith(token, self.pos)

    def _skip(self, *, newlines: bool) -> None:
        """Past spaces and comments, and line ends too when ``newlines``."""
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "#":
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            elif ch in " \t" or (newlines and ch in "\r\n"):
                self.pos += 1
            else:
                return

    def _record(self, path: str, line: int) -> None:
        self.lines.setdefault(path, line)

    def _document(self) -> None:
        table = ""
        while True:
            self._skip(newlines=True)
            if self.pos >= len(self.text):
                return
            line = self._line()
            if self._at("[["):
                self.pos += 2
                *parent, leaf = self._key()
                self._expect("]]")
                # An entry of an array of tables nested in another belongs to the latest entry of its parent.
                full = _join(self._resolve(parent), leaf)
                self.counters[full] = self.counters.get(full, -1) + 1
                table = f"{full}[{self.counters[full]}]"
                self._record(full, line)  # for an error about the array as a whole (`[[store]]` for `[store]`)
            elif self._at("["):
                self.pos += 1
                table = self._resolve(self._key())
                self._expect("]")
            else:
                self._key_value(table)
                continue
            self._record(table, line)

    def _key_value(self, table: str) -> None:
        line = self._line()
        path = table
        for part in self._key():
            path = _join(path, part)
            self._record(path, line)
        self._expect("=")
        self._skip(newlines=False)
        self._value(path)

    def _key(self) -> list[str]:
        parts = []
        while True:
            self._skip(newlines=False)
            if self._at('"') or self._at("'"):
                literal = self._string()
                parts.append(tomllib.loads(f"k = {literal}")["k"])
            else:
                match = _BARE_KEY.match(self.text, self.pos)
                if not match:
                    raise _Stop
                parts.append(match.group())
                self.pos = match.end()
            self._skip(newlines=False)
            if not self._at("."):
                return parts
            self.pos += 1

    def _expect(self, token: str) -> None:
        self._skip(newlines=False)
        if not self._at(token):
            raise _Stop
        self.pos += len(token)

    def _string(self) -> str:
        for opening, pattern in _STRINGS:
            if self._at(opening):
                match = pattern.match(self.text, self.pos)
                if not match:
                    self.unclosed = self._line()
                    raise _Stop
                self.pos = match.end()
                return match.group()
        raise _Stop

    def _value(self, path: str) -> None:
        if self._at('"') or self._at("'"):
            self._string()
        elif self._at("["):
            self.pos += 1
            self.opened.append(self._line())
            index = 0
            while True:
                self._skip(newlines=True)
                if self.pos >= len(self.text):
                    self.unclosed = self.opened[-1]
                    raise _Stop
                if self._at("]"):
                    self.pos += 1
                    self.opened.pop()
                    return
                item = f"{path}[{index}]"
                self._record(item, self._line())
                self._value(item)
                self._skip(newlines=True)
                if self._at(","):
                    self.pos += 1
                    index += 1
                elif not self._at("]"):
                    raise _Stop
        elif self._at("{"):
            self.pos += 1
            self.opened.append(self._line())
            while True:
                self._skip(newlines=True)
                if self.pos >= len(self.text):
                    self.unclosed = self.opened[-1]
                    raise _Stop
                if self._at("}"):
                    self.pos += 1
                    self.opened.pop()
                    return
                if self._at(","):
                    self.pos += 1
                    continue
                self._key_value(path)
        else:
            scalar = _SCALAR.match(self.text, self.pos)
            if scalar is None or scalar.end() == self.pos:
                raise _Stop
            self.pos = scalar.end()

    def _resolve(self, parts: list[str]) -> str:
        """Header parts as a path: `a.b` is `a[i].b` inside entry i of the array of tables `a`."""
        out = ""
        for part in parts:
            out = _join(out, part)
            if out in self.counters:
                out = f"{out}[{self.counters[out]}]"
        return out


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def given_twice(message: str, statement: str, above: list[str] | None = None,
                arrays: Collection[str] = ()) -> str:
    """What tomllib's "Cannot overwrite a value" and "Cannot declare ... twice" are about, by the statement on the
    error's line (and the lines ``above`` it): neither names the key or table that is given twice. ``arrays``: the
    tables feeds.toml writes as arrays of tables (``sources``), whose entries all start with two brackets."""
    statement = statement.strip()
    if message.startswith("Cannot declare"):
        table = statement.strip("[").partition("]")[0].strip()
        if not statement.startswith("[["):
            # `[sources]` for one more entry after `[[sources]]` ones: one bracket dropped. "A table is written in
            # one place" sent the writer to merge the entries into one table.
            for number, line in enumerate(above or [], 1):
                if "".join(line.strip().partition("]]")[0].split()) == f"[[{''.join(table.split())}":
                    return (f"; {table} is an array of tables ([[{table}]] on line {number}): each of its entries "
                            f"starts with [[{table}]], in two brackets, not [{table}]")
        return (f"; {table} is already defined above (by a [{table}] or [[{table}]] header, a dotted key or an "
                "inline table): a table is written in one place")
    if not message.startswith("Cannot overwrite a value"):
        return ""
    if statement.startswith("[["):
        table = statement[2:].partition("]]")[0].strip()
        # `[sources]` for the first entry, `[[sources]]` for the next: the line to fix is the first one, above.
        for number, line in enumerate((above or []) if "".join(table.split()) in arrays else [], 1):
            header = "".join(line.strip().partition("]")[0].split())
            if header == f"[{''.join(table.split())}" and not line.strip().startswith("[["):
                return (f"; [{table}] on line {number} makes {table} one table, so [[{table}]] cannot add an entry "
                        f"to it: start each entry with [[{table}]], in two brackets, line {number}'s too")
        return f"; {table} is already a table or a value above, so [[{table}]] cannot add an entry to it"
    key = statement.partition("=")[0].strip()
    return f"; {key} is set twice, or is already a table" if key else ""

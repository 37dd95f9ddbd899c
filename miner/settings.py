"""Build frozen, typed settings dataclasses from parsed TOML tables.

Each stage owns the dataclass of its own settings (fields with defaults and a docstring); this module turns a
TOML table into one, rejecting unknown keys and wrong types with the dotted key path, so the loader in
:mod:`miner.config` can add the line number.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import json
import math
import re
import types
import typing
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T")
MAX_NAMES_SHOWN = 10  # an error listing the declared names: a feeds.toml of 200 services would fill a screen


class SettingsError(ValueError):
    """A bad value at ``key`` (a dotted path such as ``sources[2].interval``).

    ``also``: the keys (paths as ``key`` is) of the settings it conflicts with, whose lines the loader adds to the
    message where the file sets them: the file may set either one wrong, and the error is at one line only.
    """

    def __init__(self, key: str, message: str, also: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.key = key
        self.message = message
        self.also = also


class Conflict(ValueError):
    """An error of a ``validate()``, "field: reason" as its ValueErrors are, about a field out of step with the
    fields ``also`` of the same table: the loader adds their lines where the file sets them."""

    def __init__(self, message: str, also: tuple[str, ...]) -> None:
        super().__init__(message)
        self.also = also


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp) if a is not type(None))
    if origin is tuple:
        return "a list"
    if origin in (dict, Mapping) or dataclasses.is_dataclass(tp):
        return "a table"
    # As the errors of a plain setting say it: "expected str" read as Python, not as the file's "a string".
    return _NAMES.get(tp, getattr(tp, "__name__", str(tp)))


_NAMES_A_SECRET = re.compile(r"(_env|(^|\.)env\.[^.]+)$")  # keys that hold the name of a variable with a secret
_NAMES: dict[Any, str] = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _show(value: Any) -> str:
    """``value`` as the file spells it (true, not True; a date-time, not datetime.datetime(...)), kept short."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime.date | datetime.time):  # datetime is a date
        return f"the date-time {value.isoformat()} (in quotes it is a string)"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return "an array of tables ([[...]])"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def guess(value: Any, options: Iterable[Any]) -> str:
    """The option a string was probably meant to be (``RSS``, ``Slack``, ``statuspag``, the service ``Slak``), as
    a hint to add to an error, or ""."""
    near = closest(value, options)
    if (near is not None and isinstance(value, str) and value.strip().lower() != near.lower()
            and _nfc(value.strip()).lower() == _nfc(near).lower()):
        # "cafe\u0301" pasted from a Mac is "café" on screen: "unknown service 'café'" alone read as nonsense.
        return f" (did you mean {near!r}? it looks the same, but its accents are written with other Unicode characters)"
    return f" (did you mean {near!r}?)" if near is not None else ""


def unknown_service(value: str, declared: Sequence[str]) -> str:
    """The error of a name that no [[services]] entry has: the one it was probably meant to be, or else the names
    there are. "unknown service 'Fibrenet Business'" alone left a newcomer to guess whether the name was wrong or the
    service had to be declared first (and where)."""
    hint = guess(value, declared)
    if hint:
        return f"unknown service {value!r}{hint}"
    if not declared:
        return f"unknown service {value!r}: no [[services]] entry is declared; add one with name = {value!r}"
    shown = ", ".join(repr(name) for name in declared[:MAX_NAMES_SHOWN])
    more = f" and {len(declared) - MAX_NAMES_SHOWN} more" if len(declared) > MAX_NAMES_SHOWN else ""
    return (f"unknown service {value!r}: it is none of the [[services]] names ({shown}{more}); use one of them, or "
            f"add a [[services]] entry with name = {value!r}")


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def closest(value: Any, options: Iterable[Any]) -> str | None:
    """The option a string was probably meant to be, or None: the same in another case, or one spelled closely."""
    words = {_nfc(o).lower(): o for o in options if isinstance(o, str)}
    if not isinstance(value, str) or not words:
        return None
    wanted = _nfc(value.strip()).lower()
    near = [wanted] if wanted in words else difflib.get_close_matches(wanted, list(words), n=1, cutoff=0.7)
    return words[near[0]] if near else None


def convert(tp: Any, value: Any, key: str) -> Any:
    """Convert one TOML value to the annotated type ``tp`` or raise SettingsError naming ``key``."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return convert(option, value, key)
            except SettingsError as exc:
                errors.append(exc)
        # An optional choice (a route's group_by) is refused as a required one is, naming the choice it was
        # probably meant to be.
        if all(get_origin(option) is Literal for option in options if option is not type(None)):
            choices = [a for option in options for a in get_args(option) if option is not type(None)]
            raise SettingsError(key, f"must be one of {_describe(tp)}, got {_show(value)}{guess(value, choices)}")
        raise SettingsError(key, f"expected {_describe(tp)}, got {_show(value)}")
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise SettingsError(key, f"must be one of {_describe(tp)}, got {_show(value)}{guess(value, get_args(tp))}")
    if origin is tuple:
        (item_tp, *_rest) = get_args(tp)
        if not isinstance(value, list) and dataclasses.is_dataclass(item_tp):
            raise SettingsError(key, f"expected an array of tables ([[{key}]] for each entry), got {_show(value)}")
        if not isinstance(value, list):
            # services = "FibreNet" for ["FibreNet"]: the fix is two brackets, which the error now shows.
            one = json.dumps(value, ensure_ascii=False) if isinstance(value, str | int | float) else ""
            fix = f" (a list of one is written in brackets: [{one if len(one) <= 80 else '...'}])" \
                if one and not isinstance(value, bool) else ""
            raise SettingsError(key, f"expected a list, got {_show(value)}{fix}")
        return tuple(convert(item_tp, item, f"{key}[{i}]") for i, item in enumerate(value))
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        if not isinstance(value, dict):
            raise SettingsError(key, f"expected a table, got {_show(value)}")
        args = get_args(tp)
        val_tp = args[1] if args else Any
        return types.MappingProxyType({k: convert(val_tp, v, _join(key, k)) for k, v in value.items()})
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise SettingsError(key, f"expected a table, got {_show(value)}")
        return build(tp, value, key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise SettingsError(key, f"expected true or false, got {_show(value)}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            # TOML allows inf and nan; no setting means either, and each would fail far from the file.
            if isinstance(value, float) and not math.isfinite(value):
                raise SettingsError(key, f"expected a finite number, got {_show(value)}")
            try:
                return float(value)
            except OverflowError:  # an integer of 309 digits or more: OverflowError crashed `config check`
                digits = len(str(value))
                raise SettingsError(key, f"expected a finite number, got an integer of {digits} digits") from None
        raise SettingsError(key, f"expected a number, got {_show(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise SettingsError(key, f"expected an integer, got {_show(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        if _NAMES_A_SECRET.search(key) and not isinstance(value, list | dict):
            # password_env = 20240101 is the secret itself, as a string would be: refused without echoing it.
            raise SettingsError(key, "expected the name of an environment variable, as a string; the value is not "
                                     "shown, as it may be the secret itself")
        raise SettingsError(key, f"expected a string, got {_show(value)}")
    raise SettingsError(key, f"unsupported setting type {tp!r}")  # a programming error in a settings class


def build(cls: type[T], table: Mapping[str, Any], prefix: str = "", localns: Mapping[str, Any] | None = None) -> T:
    """Build dataclass ``cls`` from ``table``. Unknown keys and missing required keys are errors.

    After construction, a ``validate()`` method on the dataclass (if any) may raise ``ValueError``; the
    message is reported at ``prefix``. A message of the form ``"field: reason"`` (or ``"field.key: reason"``) is
    reported at that field, and a ``SettingsError`` at its key below ``prefix`` (for an entry of a list:
    ``routes[0].webhooks[1]``).
    ``localns`` resolves annotations naming classes the module of ``cls`` does not import at run time.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = get_type_hints(cls, localns=dict(localns) if localns else None)
    # A field with metadata {"setting": False} is filled in by code, never from the file.
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.metadata.get("setting", True)}
    unknown = [k for k in table if k not in fields]
    if unknown:
        allowed = ", ".join(sorted(fields))
        # A typo (retention_day, intervall, smtp.hots) is the usual cause: name the key it was probably meant to be.
        near = difflib.get_close_matches(unknown[0], list(fields), n=1, cutoff=0.7)
        guess = f"did you mean {near[0]!r}? " if near else ""
        raise SettingsError(_join(prefix, unknown[0]), f"unknown key ({guess}allowed here: {allowed})")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name in table:
            kwargs[name] = convert(hints[name], table[name], _join(prefix, name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise SettingsError(_join(prefix, name), "required key is missing")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except SettingsError as exc:
            raise SettingsError(_join(prefix, exc.key), exc.message,
                                tuple(_join(prefix, other) for other in exc.also)) from exc
        except ValueError as exc:
            msg = str(exc)
            field_name, sep, reason = msg.partition(": ")
            if sep and field_name.split(".")[0] in fields:  # "env.client_id: ..." is reported at that key
                also = tuple(_join(prefix, other) for other in getattr(exc, "also", ()))
                raise SettingsError(_join(prefix, field_name), reason, also) from exc
            raise SettingsError(prefix or "(top level)", msg) from exc
    return typing.cast(T, obj)


_TOP = "the top level"


def key_homes(cls: type, localns: Mapping[str, Any] | None = None, prefix: str = "",
              where: str = _TOP) -> dict[str, list[str]]:
    """Each key name of ``cls`` and the settings dataclasses below it -> the tables that take it, as the file
    writes their headers: ``{"group_wait": ["[alerts]", "[[alerts.routes]]"], "path": ["[store]"], ...}``."""
    homes: dict[str, list[str]] = {}
    hints = get_type_hints(cls, localns=dict(localns) if localns else None)
    for f in dataclasses.fields(cls):
        if not (f.init and f.metadata.get("setting", True)):
            continue
        homes.setdefault(f.name, []).append(where)
        tp, args, path = hints[f.name], get_args(hints[f.name]), _join(prefix, f.name)
        below: dict[str, list[str]] = {}
        if get_origin(tp) is tuple and args and dataclasses.is_dataclass(args[0]) and isinstance(args[0], type):
            below = key_homes(args[0], localns, path, f"[[{path}]]")
        elif dataclasses.is_dataclass(tp) and isinstance(tp, type):
            below = key_homes(tp, localns, path, f"[{path}]")
        for name, tables in below.items():
            homes.setdefault(name, []).extend(tables)
    return {name: sorted(tables, key=lambda t: (t != _TOP, t.count("."))) for name, tables in homes.items()}


def misplaced(exc: SettingsError, homes: Mapping[str, list[str]]) -> SettingsError:
    """An unknown key that another table takes (``group_wait`` under ``[detector]``, ``retention_days`` after a
    ``[[sources]]`` entry but meant for ``[store]``): the error says where it goes, which "allowed here" does not."""
    if not exc.message.startswith("unknown key (") or "did you mean" in exc.message:
        return exc
    parent, _, leaf = exc.key.rpartition(".")
    table = re.sub(r"\[\d+\]", "", parent)
    here = f"[[{table}]]" if parent.endswith("]") else f"[{table}]" if table else _TOP
    elsewhere = [t for t in homes.get(leaf, ()) if t != here]
    if not elsewhere:
        return exc
    shown = [f"{_TOP} (above the first table header)" if t == _TOP else t for t in elsewhere]
    hint = f"it belongs to {' or '.join(shown)}, not to {here}; "
    return SettingsError(exc.key, exc.message.replace("unknown key (", f"unknown key ({hint}", 1))

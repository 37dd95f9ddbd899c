"""The status board's pages rendered from their Jinja2 templates (miner/board_templates/), every value autoescaped,
with the filters they use for times and long text, and the API's answer each page links to."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from importlib.resources import files
from typing import Any
from urllib.parse import quote

import jinja2
from markupsafe import Markup

from miner.alerts.mute_end import HORIZON
from miner.timeutil import counted, iso, parse_iso
from miner.urls import escape_controls

REFRESH = 60  # seconds between a page's reloads
STYLE = (files("miner") / "board_templates" / "board.css").read_text(encoding="utf-8")


def when(at: datetime | str | None) -> str:
    if at is None:
        return ""
    return (parse_iso(at) if isinstance(at, str) else at).strftime("%Y-%m-%d %H:%M UTC")


def clip(text: str, most: int = 80) -> str:
    return text if len(text) <= most else text[:most] + "…"


def quoted(text: str) -> str:
    """Anyone's text (a silence's comment) in a line of the page: autoescape takes care of its markup, not of its
    bidi overrides (one reversed the words after it) or line breaks, written ``\u202e`` as a 404 writes them."""
    return clip(escape_controls(text), 160)


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("miner", "board_templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    env.filters.update(when=when, plural=counted, clip=clip, iso=iso, quoted=quoted)
    env.globals.update(reload_every=REFRESH, mute_horizon_days=HORIZON.days)
    return env


def render(template: str, **context: Any) -> str:
    """``keep`` and ``toggle`` (status_board._links): an error page's links carry nothing, and it has no toggle.
    ``json_path`` and ``json_query``: the API's answer the page shows, every service's state but on a service
    page."""
    return _environment().get_template(template).render(style=Markup(STYLE), **{
        "keep": "", "toggle": None, "json_path": "api/v1/services", "json_query": "", **context})


def series_path(name: str) -> str:
    """The API's series of service ``name``, the page's numbers as JSON (its footer linked every service's state):
    the name encoded whole, a "/" in it too, as the API reads it."""
    return f"api/v1/services/{quote(name, safe='')}/series"

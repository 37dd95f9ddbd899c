"""Alerts as files: the rendered digest for a folder, and senders that write .eml/.json instead of sending.

The demo and `miner digest --dry-run` use these to show exactly what the service would have sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any

from miner.alerts.channel_settings import WebhookSettings
from miner.alerts.delivery import Senders
from miner.alerts.digests import digest_since
from miner.alerts.render import Rendered, render_digest
from miner.alerts.settings import AlertSettings, RouteSettings
from miner.errors import MinerError

if TYPE_CHECKING:
    from miner.store import Store


def _stem(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:80] or "message"


def save_rendered(rendered: Rendered, out_dir: Path, stem: str) -> list[Path]:
    """``stem``.eml (the exact message), ``stem``.html (charts rewritten to the PNG files beside it), PNGs; an
    earlier rendering's charts of ``stem`` are deleted first."""
    out_dir.mkdir(parents=True, exist_ok=True)
    # The .eml, .html and .txt are overwritten, but the charts are named after their incidents: a second
    # `miner digest --dry-run` into the folder left the first one's charts of incidents it no longer shows beside it,
    # read as part of this preview. Only this stem's charts go: another route's preview there stays whole.
    for old in _own_files(out_dir, re.compile(re.escape(stem) + r"-chart-\d+\.png")):
        old.unlink()
    paths = [out_dir / f"{stem}.eml", out_dir / f"{stem}.html", out_dir / f"{stem}.txt"]
    paths[0].write_bytes(bytes(rendered.message))
    html = rendered.html
    # Named after the incident: the Content-ID also holds the message's id, which changes with every rendering.
    names = {v.cid: f"chart-{v.id}" for v in rendered.incidents}
    for cid, png in rendered.images.items():
        png_path = out_dir / f"{stem}-{names.get(cid) or _stem(cid)}.png"
        png_path.write_bytes(png)
        html = html.replace(f'src="cid:{cid}"', f'src="{png_path.name}"')
        paths.append(png_path)
    paths[1].write_text(html, encoding="utf-8")
    paths[2].write_text(rendered.text, encoding="utf-8")
    return paths


# What the senders and write_digest_files() name their files; a replay into a used folder replaces only these.
_SENT_FILE = re.compile(r"\d{4}-.+\.(?:eml|json)")
_DIGEST_FILE = re.compile(r"digest-.+\.(?:eml|html|txt|png)")


def _own_files(out_dir: Path, pattern: re.Pattern[str]) -> list[Path]:
    if not out_dir.is_dir():
        return []
    return sorted(p for p in out_dir.iterdir() if pattern.fullmatch(p.name) and p.is_file())


def remove_digest_files(out_dir: Path | str) -> int:
    """Delete the digest files an earlier write_digest_files() left in ``out_dir`` (its routes may have changed)."""
    paths = _own_files(Path(out_dir), _DIGEST_FILE)
    for path in paths:
        path.unlink()
    return len(paths)


def write_digest_files(store: Store, settings: AlertSettings, now: datetime, out_dir: Path | str,
                       route: str | None = None, *, since: datetime | None = None, as_queued: bool = False,
                       sources: Collection[str] | None = None) -> list[Path]:
    """Render the digest of ``route`` (default: every route with email) as of ``now`` into ``out_dir``.

    ``since``: where its period starts (default: a day back). ``as_queued``: over the period `miner digest` would
    queue for each route at ``now`` instead (since the schedule's last digest), so a dry run shows what it sends.
    """
    routes: list[RouteSettings]
    if route is not None:
        found = settings.route(route)
        if found is None:
            raise MinerError(f"no alert route named {route!r} in [alerts]")
        if not found.email:
            # Rendered all the same, the preview read as the digest this route gets, which `miner digest` refuses
            # to queue: a route's digest goes to its email alone.
            raise MinerError(f"route {route!r} has no email: digests go by email only, so it gets none (its webhooks "
                             "get its alerts and resolve notices)")
        routes = [found]
    else:
        routes = [r for r in settings.routes if r.email]
    if not routes:
        # No routes configured (e.g. a bare demo config): show the digest an all-services route would get.
        routes = [RouteSettings(name="digest", email=("you@example.org",))]
    paths: list[Path] = []
    for r in routes:
        start = digest_since(store, r, now) if as_queued else since
        rendered = render_digest(store, settings, now, r, since=start, sources=sources)
        paths += save_rendered(rendered, Path(out_dir), f"digest-{_stem(r.name)}")
    return paths


class FileSenders:
    """Senders that write each message to ``out_dir`` (numbered in send order) instead of sending it."""

    def __init__(self, out_dir: Path | str, *, replace: bool = False) -> None:
        """``replace``: delete the numbered files already there (an earlier run's, of a store that has sent
        nothing yet); otherwise continue their numbering, as a resumed replay must not overwrite what was "sent"."""
        self.out_dir = Path(out_dir)
        if replace:
            for path in self.files():
                path.unlink()
        self.count = len(self.files())

    def files(self) -> list[Path]:
        """The notifications written to ``out_dir``, in send order."""
        return _own_files(self.out_dir, _SENT_FILE)

    def email(self, message: EmailMessage, recipients: list[str]) -> str:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.count += 1
        path = self.out_dir / f"{self.count:04d}-{_stem(str(message['Subject']))}.eml"
        path.write_bytes(bytes(message))
        return f"written to {path}"

    def webhook(self, webhook: WebhookSettings, body: dict[str, Any]) -> str:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.count += 1
        path = self.out_dir / f"{self.count:04d}-webhook-{_stem(webhook.name)}.json"
        path.write_text(json.dumps(body, indent=2, ensure_ascii=False), encoding="utf-8")
        return f"written to {path}"

    def senders(self) -> Senders:
        return Senders(email=self.email, webhook=self.webhook)

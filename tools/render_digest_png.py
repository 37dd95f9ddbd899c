"""Render a store's digest email to a PNG in headless Chromium, as a mail client would show it.

    PYTHONPATH=. .venv/bin/python tools/render_digest_png.py --db demo-out/miner.sqlite \
        --config miner/defaults/demo.toml --at 2019-03-05T18:00Z --out docs/example-digest.png

Needs a `chromium` (or `chromium-browser`/`google-chrome`) binary; the test suite never does.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from PIL import Image

from miner.alerts import write_digest_files
from miner.alerts.settings import AlertSettings, RouteSettings
from miner.config import load_config
from miner.store import Store
from miner.timeutil import parse_iso, utcnow

BACKGROUND = (245, 247, 249)  # the email's page colour (#f5f7f9): trailing rows of it are cropped


def find_browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit("no chromium found: apt-get install -y chromium")


def screenshot(html: Path, png: Path, width: int, height: int) -> None:
    cmd = [find_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--hide-scrollbars", "--force-device-scale-factor=1", f"--window-size={width},{height}",
           f"--screenshot={png}", html.resolve().as_uri()]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)


def crop_and_shrink(src: Path, dst: Path, max_bytes: int) -> None:
    img = Image.open(src).convert("RGB")
    pixels = img.load()
    assert pixels is not None
    bottom = img.height
    while bottom > 1 and all(pixels[x, bottom - 1] == BACKGROUND for x in range(0, img.width, 4)):
        bottom -= 1
    img = img.crop((0, 0, img.width, min(img.height, bottom + 16)))
    img.save(dst, optimize=True)
    if dst.stat().st_size > max_bytes:
        # A 256-colour palette keeps text and charts crisp at a fraction of the size.
        img.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(dst, optimize=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--db", required=True, type=Path, help="the store to summarise")
    ap.add_argument("--config", type=Path, help="feeds.toml with [alerts] routes (default: one all-services route)")
    ap.add_argument("--route", help="route name (default: the first)")
    ap.add_argument("--at", help="render as of this ISO time (default: now)")
    ap.add_argument("--since", help="include incidents resolved since this ISO time (default: a day before --at)")
    ap.add_argument("--out", type=Path, default=Path("docs/example-digest.png"))
    ap.add_argument("--width", type=int, default=720)
    ap.add_argument("--height", type=int, default=4000, help="viewport height before cropping")
    ap.add_argument("--max-kb", type=int, default=400)
    args = ap.parse_args(argv)

    settings = load_config(args.config).alerts if args.config else AlertSettings()
    if not settings.routes:
        settings = AlertSettings(routes=(RouteSettings(name="oncall", email=("oncall@example.org",)),))
    now: datetime = parse_iso(args.at) if args.at else utcnow()
    since = parse_iso(args.since) if args.since else None
    store = Store.open(args.db)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            paths = write_digest_files(store, settings, now, tmp, args.route or settings.routes[0].name, since=since)
            html = next(p for p in paths if p.suffix == ".html")
            raw = Path(tmp) / "raw.png"
            screenshot(html, raw, args.width, args.height)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            crop_and_shrink(raw, args.out, args.max_kb * 1024)
    finally:
        store.close()
    print(f"{args.out}: {args.out.stat().st_size // 1024} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

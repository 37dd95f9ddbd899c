"""Render a store's digest email to a PNG in headless Chromium, as a mail client would show it.

    PYTHONPATH=. .venv/bin/python tools/render_digest_png.py --db demo-out/miner.sqlite --at 2019-03-05T18:00Z
    PYTHONPATH=. .venv/bin/python tools/render_digest_png.py --example --out docs/example-digest.png

``--example`` builds a small synthetic store (invented posts and counts, see ``build_example``) so the layout can
be checked with every section filled: grouped open incidents, a provider status post, a resolved incident and a
failing source.

Needs a `chromium` (or `chromium-browser`/`google-chrome`) binary; the test suite never does.
"""

from __future__ import annotations

import argparse
import math
import random
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from PIL import Image

from miner.alerts import write_digest_files
from miner.alerts.settings import AlertSettings, RouteSettings
from miner.config import SourceConfig, load_config
from miner.detect.params import DetectorParams
from miner.records import FetchResult, OfficialIncident, Post, Prediction
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


EXAMPLE_AT = datetime(2026, 11, 27, 18, 40, tzinfo=UTC)
EXAMPLE_POSTS = {
    "WhatsApp": [
        ("whatsapp down again?? messages stuck on one grey tick for 20 minutes", "messaging"),
        ("Is WhatsApp down for anyone else? Can't send voice notes in Nairobi", "media"),
        ("whatsapp web keeps saying 'phone not connected' even though my phone is online", "connectivity"),
        ("WhatsApp not working. Group chats not loading at all <script>alert(1)</script>", "messaging"),
        ("cant make whatsapp calls, keeps saying reconnecting", "calls"),
    ],
    "Instagram": [
        ("instagram feed won't refresh, 'couldn't refresh feed' every time", "app"),
        ("Instagram DMs not sending, is it down?", "messaging"),
        ("insta logged me out and now I can't log back in", "login"),
    ],
    "MTN": [
        ("MTN data not working in Kampala since morning, no internet at all", "connectivity"),
        ("@MTNUG my mobile money transaction failed twice and money deducted", "payments"),
        ("mtn network down in Ntinda, no signal", "connectivity"),
    ],
}


def _series(store: Store, service: str, start: datetime, spike: tuple[datetime, datetime], peak: int,
            rng: random.Random) -> None:
    """Five-minute buckets with a daily rhythm, noise around it, and a spike, as the detector stores them."""
    steps, counts = [], {}
    t = start
    while t < EXAMPLE_AT + timedelta(minutes=5):
        expected = 3.0 + 2.0 * math.sin((t.hour + t.minute / 60 - 9) / 24 * 2 * math.pi)
        n = max(0, round(rng.gauss(expected, math.sqrt(expected))))
        if spike[0] <= t < spike[1]:
            rise = min(1.0, (t - spike[0]) / timedelta(minutes=20))
            n = round(expected + (peak - expected) * rise * rng.uniform(0.8, 1.0))
        upper = expected + 3 * math.sqrt(expected)
        steps.append((t, 0.0, expected, upper, max(upper, DetectorParams().count_floor(expected))))
        counts[t] = n
        t += timedelta(minutes=5)
    store.save_detector_step(service, t, "{}", steps, EXAMPLE_AT)
    with store.database.transaction() as conn:  # counts normally come from classified posts; set directly here
        conn.executemany("UPDATE buckets SET posts = ?, complaints = ? WHERE service = ? AND bucket_start = ?",
                         [(n + 4, n, service, b.isoformat(timespec="seconds")) for b, n in counts.items()])


def _posts(store: Store, service: str, at: datetime) -> None:
    posts = [Post(source="mastodon:mastodon.social", external_id=f"{service}-{i}", text=text,
                  created_at=at + timedelta(minutes=3 * i), url=f"https://mastodon.social/@user{i}/1130{i}",
                  services=(service,)) for i, (text, _) in enumerate(EXAMPLE_POSTS[service])]
    store.insert_posts(posts, at)
    todo = store.posts_to_classify(100)
    symptoms = dict(EXAMPLE_POSTS[service])
    store.save_classifications([(p.id, Prediction(0.97 - 0.02 * i, True, symptoms.get(p.text, "general")))
                                for i, p in enumerate(todo)], "example", at)


def build_example(path: Path) -> Store:
    rng = random.Random(7)
    store = Store.open(path)
    start = EXAMPLE_AT - timedelta(hours=12)
    wa_open, ig_open = EXAMPLE_AT - timedelta(minutes=55), EXAMPLE_AT - timedelta(minutes=50)
    mtn_open, mtn_end = EXAMPLE_AT - timedelta(hours=7), EXAMPLE_AT - timedelta(hours=5, minutes=35)
    _series(store, "WhatsApp", start, (wa_open - timedelta(minutes=10), EXAMPLE_AT + timedelta(hours=1)), 48, rng)
    _series(store, "Instagram", start, (ig_open - timedelta(minutes=10), EXAMPLE_AT + timedelta(hours=1)), 21, rng)
    _series(store, "MTN", start, (mtn_open - timedelta(minutes=10), mtn_end - timedelta(minutes=30)), 17, rng)
    for service, at in (("WhatsApp", wa_open), ("Instagram", ig_open), ("MTN", mtn_open)):
        _posts(store, service, at - timedelta(minutes=8))
    wa = store.open_incident("WhatsApp", wa_open, {"peak_complaints": 48, "peak_score": 11.6, "baseline": 4.1,
                             "total_complaints": 412, "symptoms": {"messaging": 214, "connectivity": 96,
                                                                   "media": 58, "calls": 44}}, {})
    ig = store.open_incident("Instagram", ig_open, {"peak_complaints": 21, "peak_score": 6.3, "baseline": 3.8,
                             "total_complaints": 133, "symptoms": {"app": 61, "messaging": 47, "login": 25}}, {})
    store.create_group("Meta", "Meta platform outage", ["WhatsApp", "Instagram"], ig_open, [wa, ig])
    mtn = store.open_incident("MTN", mtn_open, {"peak_complaints": 17, "peak_score": 5.2, "baseline": 3.1,
                              "total_complaints": 88, "symptoms": {"connectivity": 63, "payments": 25}}, {})
    store.update_incident(mtn, mtn_end, {"status": "resolved", "resolved_at": mtn_end}, kind="resolve")
    store.sync_sources([SourceConfig(name="status:whatsapp", type="statuspage", url="https://status.example.com"),
                        SourceConfig(name="reddit:uganda", type="reddit", query="mtn OR airtel")])
    official = OfficialIncident(
        source="status:whatsapp", external_id="x1", service="WhatsApp", title="Degraded message delivery",
        status="investigating", started_at=wa_open + timedelta(minutes=24), updated_at=wa_open + timedelta(minutes=24),
        impact="major", url="https://status.example.com/incidents/x1")
    store.save_fetch("status:whatsapp", FetchResult(incidents=[official]), EXAMPLE_AT, EXAMPLE_AT)
    store.record_poll_failure("reddit:uganda", "HTTP 429 Too Many Requests (retry after 600 s)",
                              EXAMPLE_AT - timedelta(minutes=4), EXAMPLE_AT + timedelta(minutes=6))
    return store


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--db", type=Path, help="the store to summarise")
    ap.add_argument("--example", action="store_true", help="summarise a synthetic example store instead")
    ap.add_argument("--config", type=Path, help="feeds.toml with [alerts] routes (default: one all-services route)")
    ap.add_argument("--route", help="route name (default: the first)")
    ap.add_argument("--at", help="render as of this ISO time (default: now)")
    ap.add_argument("--since", help="include incidents resolved since this ISO time (default: a day before --at)")
    ap.add_argument("--out", type=Path, default=Path("docs/example-digest.png"))
    ap.add_argument("--width", type=int, default=720)
    ap.add_argument("--height", type=int, default=4000, help="viewport height before cropping")
    ap.add_argument("--max-kb", type=int, default=400)
    args = ap.parse_args(argv)
    if bool(args.db) == bool(args.example):
        ap.error("give exactly one of --db and --example")

    settings = load_config(args.config).alerts if args.config else AlertSettings()
    if not settings.routes:
        settings = AlertSettings(routes=(RouteSettings(name="oncall", email=("oncall@example.org",)),))
    now: datetime = parse_iso(args.at) if args.at else (EXAMPLE_AT if args.example else utcnow())
    since = parse_iso(args.since) if args.since else None
    with tempfile.TemporaryDirectory() as tmp:
        store = build_example(Path(tmp) / "example.sqlite") if args.example else Store.open(args.db)
        try:
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

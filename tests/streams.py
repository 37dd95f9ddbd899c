"""Test streams built from real posts (the bundled SentiTel texts), timed to make the detector fire."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from miner.classify import Classifier
from miner.config import parse_config
from miner.pipeline import Pipeline
from miner.records import Post
from miner.replay import demo_stream_path, read_posts
from miner.store import Store
from miner.timeutil import iso, parse_iso, utcnow

CONFIG = """
[[services]]
name = "MTN"
aliases = ["mtnug", "mtn uganda"]

[[services]]
name = "Airtel"
aliases = ["airtelug", "airtel uganda"]

[detector]
bucket_minutes = 15
"""
T0 = datetime(2026, 2, 2, 0, 0, tzinfo=UTC)


def split_by_model(classifier: Classifier) -> dict[str, list[str]]:
    """Real texts from the bundled stream, split by what the shipped model says about them."""
    texts = [p.text for p in read_posts(demo_stream_path())]
    mtn = [t for t in texts if "mtn" in t.lower() and "airtel" not in t.lower()][:1500]
    airtel = [t for t in texts if "airtel" in t.lower() and "mtn" not in t.lower()][:600]
    mtn_preds = classifier.predict(mtn)
    airtel_preds = classifier.predict(airtel)
    out = {
        "mtn_outage": [t for t, p in sorted(zip(mtn, mtn_preds, strict=True), key=lambda tp: -tp[1].score)
                       if p.outage],
        "mtn_other": [t for t, p in zip(mtn, mtn_preds, strict=True) if not p.outage],
        "airtel_other": [t for t, p in zip(airtel, airtel_preds, strict=True) if not p.outage],
        "airtel_outage": [t for t, p in sorted(zip(airtel, airtel_preds, strict=True), key=lambda tp: -tp[1].score)
                          if p.outage],
    }
    assert len(out["mtn_outage"]) >= 30, "the shipped model finds too few outage reports in the stream"
    return out


def write_stream(real: dict[str, list[str]], path: Path, both: bool = False) -> Path:
    """Two quiet days of real chatter about both networks, then a burst of real MTN outage reports (and of
    Airtel ones at the same time with ``both``)."""
    rng = random.Random(5)
    rows = []
    t = T0
    end = T0 + timedelta(days=2)
    i = 0
    while t < end:
        svc = "mtn_other" if i % 2 == 0 else "airtel_other"
        rows.append((t, real[svc][i % len(real[svc])]))
        t += timedelta(minutes=rng.uniform(20, 70))
        i += 1
    burst_start = end + timedelta(minutes=5)
    for k in range(30):
        rows.append((burst_start + timedelta(minutes=1.5 * k), real["mtn_outage"][k]))
        if both:
            airtel = real["airtel_outage"]
            rows.append((burst_start + timedelta(minutes=1.5 * k + 0.5), airtel[k % len(airtel)]))
    rows.append((burst_start + timedelta(hours=5), real["airtel_other"][0]))
    rows.sort()
    with path.open("w", encoding="utf-8") as f:
        for n, (when, text) in enumerate(rows):
            f.write(json.dumps({"id": f"t{n}", "text": text, "created_at": when.isoformat(), "source": "test",
                                "url": f"https://example.org/{n}"}) + "\n")
    return path



def capture_ending_now(real: dict[str, list[str]], folder: Path) -> Path:
    """write_stream's stream without its last post, moved in time so that the burst of outage reports ends 2 minutes
    before now: a capture taken during an outage still going on."""
    rows = [json.loads(line) for line in write_stream(real, folder / "s.jsonl").read_text().splitlines()]
    rows = rows[:-1]  # the burst ends the capture
    shift = utcnow() - timedelta(minutes=2) - parse_iso(rows[-1]["created_at"])
    capture = folder / "capture.jsonl"
    capture.write_text("".join(json.dumps({**r, "created_at": iso(parse_iso(r["created_at"]) + shift)}) + "\n"
                               for r in rows))
    return capture

class ReportsOnly:
    """A classifier for streams of user reports, which are complaints without the model: it is never asked."""

    version = "unused"

    def predict(self, texts: list[str]) -> list[object]:
        raise AssertionError("reports must not be sent to the model")


def outage_reports(service: str, start: datetime, end: datetime) -> list[Post]:
    """A user report every 30 seconds: 30 complaints per 15-minute bucket."""
    count = int((end - start) / timedelta(seconds=30))
    return [Post("reports", f"{service}-{start.timestamp()}-{i}", f"{service} is down",
                 start + timedelta(seconds=30 * i), services=(service,)) for i in range(count)]


def warmed_pipeline(config: str, store: Store) -> Pipeline:
    """A pipeline of ``config`` over reports only, its detectors warmed on quiet hours up to T0 + 3 h."""
    pipe = Pipeline(parse_config(config), store, ReportsOnly())  # type: ignore[arg-type]
    for hours in range(4):
        pipe.detect(T0 + timedelta(hours=hours))
    return pipe

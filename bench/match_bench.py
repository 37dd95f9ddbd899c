"""Service matching on real posts: how fast, and how often it agrees with the hand labels.

    PYTHONPATH=. .venv/bin/python bench/match_bench.py [--config feeds.toml] [--show]

Posts: the 2,399 labelled posts (labels/train.jsonl) and the 5,355 SentiTel posts (sentitel/*.json) in
/work/shared/data (or $MINER_SHARED_DATA); see that folder's README.md for their sources.

* speed: the first 10,000 of those posts (repeated as needed) against the configured services, then against
  the configured ones plus made-up ones up to 50, 150 and 400 services (3 terms each);
* labels: of the posts whose hand-labelled ``service`` is a configured service (``LABELLED``, a few spellings
  folded by hand), how many the matcher gives that service; and how many posts labelled with another service
  (or with none: a power cut shared with an Instagram link) match a configured one;
* sentitel: of the posts' annotated target operators (MTN, Airtel, Africell), how many are matched.

``--show`` prints every miss and every extra match, to read them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import describe  # noqa: E402

from miner.collectors.matching import ServiceMatcher  # noqa: E402
from miner.config import ServiceConfig, load_config  # noqa: E402

DATA = Path(os.environ.get("MINER_SHARED_DATA", "/work/shared/data"))
# Hand-labelled service (lower case) -> the feeds.toml service it is; labels of other services map to nothing.
LABELLED = {
    "airtel": "Airtel", "airtel uganda": "Airtel", "mtn": "MTN", "mtn uganda": "MTN", "mtn mobile money": "MTN",
    "mtn uganda app": "MTN", "africell": "Africell", "africell uganda": "Africell", "whatsapp": "WhatsApp",
    "comcast": "Comcast Xfinity", "xfinity": "Comcast Xfinity", "virgin media": "Virgin Media", "aws": "AWS",
    "facebook": "Facebook", "instagram": "Instagram", "gmail": "Gmail", "slack": "Slack", "discord": "Discord",
    "github": "GitHub", "cloudflare": "Cloudflare",
}
OPERATORS = {"Airtel": "Airtel", "MTN": "MTN", "Africel": "Africell"}  # SentiTel's spelling -> feeds.toml


def load_posts() -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    with (DATA / "labels" / "train.jsonl").open(encoding="utf-8") as f:
        labelled = [json.loads(line) for line in f]
    sentitel: list[dict[str, object]] = []
    for part in ("train", "dev", "test"):
        sentitel += json.loads((DATA / "sentitel" / f"sentitel_{part}.json").read_text(encoding="utf-8"))
    return labelled, sentitel


def speed(services: list[ServiceConfig], texts: list[str]) -> None:
    made_up = [ServiceConfig(f"Service{i}net", (f"svc{i}app", f"service {i} cloud")) for i in range(400)]
    for n in (len(services), 50, 150, 400):
        if n < len(services):
            continue
        matcher = ServiceMatcher((services + made_up)[:n])
        matcher.match("warm up: compile")
        start = time.perf_counter()
        for text in texts:
            matcher.match(text)
        took = time.perf_counter() - start
        print(f"speed: {len(texts):,} posts x {n} services: {took:.2f} s ({len(texts) / took:,.0f} posts/s)")


def agreement(matcher: ServiceMatcher, labelled: list[dict[str, object]], sentitel: list[dict[str, object]],
              show: bool) -> None:
    hit = total = other = unlabelled = 0
    notes: list[str] = []
    for post in labelled:
        text, label = str(post["text"]), post["service"]
        want = LABELLED.get(str(label or "").lower())
        got = matcher.match(text)
        if want:
            total += 1
            hit += want in got
            if want not in got:
                notes.append(f"MISS   {want}: {got} {text!r}")
        elif got and label:
            other += 1
            notes.append(f"OTHER  {label}: {got} {text!r}")
        elif got and post["label"] == 1:
            unlabelled += 1
            notes.append(f"NOSVC  {got} {text!r}")
    print(f"labels: {hit}/{total} posts labelled with a configured service get it ({hit / total:.1%}); "
          f"{other} labelled with another service and {unlabelled} outage reports labelled with none match one")
    hit = total = extra = 0
    for post in sentitel:
        text = str(post["text"])
        want = {OPERATORS[str(o["target_entity"])] for o in post["opinions"]}  # type: ignore[attr-defined]
        got = set(matcher.match(text))
        total += len(want)
        hit += len(want & got)
        extra += bool(got - want)
        notes += [f"SMISS  {s}: {text!r}" for s in sorted(want - got)]
    print(f"sentitel: {hit}/{total} target operators matched ({hit / total:.1%}); "
          f"{extra} posts also match an operator that is not a target")
    if show:
        print("\n".join(notes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(ROOT / "feeds.toml"), help="feeds.toml with the [[services]]")
    parser.add_argument("--show", action="store_true", help="print every miss and extra match")
    args = parser.parse_args()
    print(f"machine: {describe()}")
    services = list(load_config(args.config).services)
    labelled, sentitel = load_posts()
    texts = [str(p["text"]) for p in labelled + sentitel]
    texts = (texts * (10_000 // len(texts) + 1))[:10_000]
    speed(services, texts)
    agreement(ServiceMatcher(services), labelled, sentitel, args.show)


if __name__ == "__main__":
    main()

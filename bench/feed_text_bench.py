"""What taking a site's feed boilerplate out of an entry costs beside the post's stored text being made.

    PYTHONPATH=. .venv/bin/python bench/feed_text_bench.py [--rounds 5]

Texts: the first 10,000 of the 2,399 labelled posts (labels/train.jsonl) and the 5,355 SentiTel posts
(sentitel/*.json) in /work/shared/data (or $MINER_SHARED_DATA). Each is made an entry of each kind of feed, as the
site writes it (`miner.collectors.feed_boilerplate`): a forum's (none to take out), Lemmy's, hnrss.org's story and
comment, Reddit's post and comment, Discourse's topic and bsky.app's. For each kind, the median of ``--rounds``
rounds, each running the three in turn: `post_text` of the entry as it came (the text stored before),
`feed_entry_text` alone, and the two as an `rss` poll makes the stored text now.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import describe  # noqa: E402

from miner.collectors.canonical import SiteIdentity, site_identity  # noqa: E402
from miner.collectors.feed_boilerplate import feed_entry_text  # noqa: E402
from miner.collectors.normalise import post_text  # noqa: E402

DATA = Path(os.environ.get("MINER_SHARED_DATA", "/work/shared/data"))
LIMIT = 2000
Entry = tuple[dict[str, Any], SiteIdentity | None, str, str, str]


def load_texts(n: int) -> list[str]:
    with (DATA / "labels" / "train.jsonl").open(encoding="utf-8") as f:
        texts = [str(json.loads(line)["text"]) for line in f]
    for part in ("train", "dev", "test"):
        texts += [str(p["text"]) for p in json.loads((DATA / "sentitel" / f"sentitel_{part}.json").read_text("utf-8"))]
    return (texts * (n // len(texts) + 1))[:n]


def _entry(fields: dict[str, Any], title: str, body: str) -> Entry:
    fields = {**fields, "title": title}
    return fields, site_identity(fields, False), title, body, str(fields.get("link") or "")


def entries(kind: str, texts: list[str]) -> list[Entry]:
    made: list[Entry] = []
    for n, text in enumerate(texts):
        words, para = text.split(), f"<p>{html.escape(text)}</p>"
        title = " ".join(words[:8]) or "untitled"
        if kind == "forum":
            made.append(_entry({"link": f"https://forum.example.net/t/{n}", "author": "ann"}, title, para))
        elif kind == "lemmy":
            actor, post = f"https://lemmy.world/u/user{n}", f"https://lemmy.world/post/{n}"
            made.append(_entry({"link": post, "id": post, "author": actor}, title, (
                f'submitted by <a href="{actor}">user{n}</a> to <a href="https://lemmy.world/c/technology">'
                f'technology</a><br />{n % 90} points | <a href="{post}">{n % 40} comments</a>{para}')))
        elif kind in ("hnrss", "hnrss_comment"):
            item = f"https://news.ycombinator.com/item?id={n}"
            fields = {"link": item, "id": item, "comments": item, "author": f"user{n}"}
            if kind == "hnrss":
                made.append(_entry(fields, title, (f'{para}\n<hr />\n<p>Comments URL: <a href="{item}">{item}</a></p>\n'
                                                   f"<p>Points: {n % 90}</p>\n<p># Comments: {n % 40}</p>")))
            else:
                made.append(_entry(fields, f'New comment by user{n} in "{title}"', para))
        elif kind == "reddit":
            link = f"https://www.reddit.com/r/sub/comments/x{n}/slug/"
            made.append(_entry({"link": link, "id": f"t3_x{n}", "author": f"/u/user{n}"}, title, (
                f'<!-- SC_OFF --><div class="md">{para} </div><!-- SC_ON --> &#32; submitted by &#32; '
                f'<a href="https://www.reddit.com/user/user{n}"> /u/user{n} </a> <br /> <span><a href="{link}">'
                f'[link]</a></span> &#32; <span><a href="{link}">[comments]</a></span>')))
        elif kind == "reddit_comment":
            link = f"https://www.reddit.com/r/sub/comments/x{n}/slug/c{n}/"
            made.append(_entry({"link": link, "id": f"t1_c{n}", "author": f"/u/user{n}"}, f"/u/user{n} on {title}",
                               f'<!-- SC_OFF --><div class="md">{para} </div><!-- SC_ON -->'))
        elif kind == "discourse":
            link = f"https://forum.example.net/t/slug/{n}"
            made.append(_entry({"link": link, "id": f"forum.example.net-topic-{n}", "author": f"user{n}"}, title, (
                f'\n<p><a href="https://forum.example.net/u/user{n}">User {n}</a> wrote:</p>\n<blockquote>\n{para}\n'
                f"</blockquote>\n<p><small>{n % 40} posts - {n % 9} participants</small></p>\n"
                f'<p><a href="{link}">Read full topic</a></p>\n')))
        else:
            made.append(_entry({"link": f"https://bsky.app/profile/user{n}.bsky.social/post/3l{n}",
                                "id": f"at://did:plc:user{n}/app.bsky.feed.post/3l{n}"},
                               f"@user{n}.bsky.social post", html.escape(text)))
    return made


def _timed(runs: list[Callable[[], None]], rounds: int) -> list[float]:
    """The median time of each of ``runs``, run in turn each round: the box's load, which moves, falls on all."""
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(rounds):
        for run, taken in zip(runs, times, strict=True):
            start = time.perf_counter()
            run()
            taken.append(time.perf_counter() - start)
    return [statistics.median(taken) for taken in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    texts = load_texts(args.posts)
    print(f"machine: {describe()}")
    print(f"{args.posts:,} real texts, median of {args.rounds} rounds, us per entry")
    print(f"{'feed':<14} {'post_text before':>17} {'feed_entry_text':>16} {'both now':>9} {'added':>7}")
    for kind in ("forum", "lemmy", "hnrss", "hnrss_comment", "reddit", "reddit_comment", "discourse", "bluesky"):
        made = entries(kind, texts)

        def before(made: list[Entry] = made) -> None:
            for _fields, _site, title, body, _url in made:
                post_text(title, body, LIMIT)

        def strip(made: list[Entry] = made) -> None:
            for fields, site, title, body, url in made:
                feed_entry_text(fields, site, title, body, url)

        def now(made: list[Entry] = made) -> None:
            for fields, site, title, body, url in made:
                text = feed_entry_text(fields, site, title, body, url)
                post_text(text.title, text.body, LIMIT)

        old, alone, new = (t * 1e6 / len(made) for t in _timed([before, strip, now], args.rounds))
        print(f"{kind:<14} {old:>17.1f} {alone:>16.2f} {new:>9.1f} {(new - old) / old:>+7.1%}")


if __name__ == "__main__":
    main()

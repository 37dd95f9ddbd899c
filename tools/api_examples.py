"""Regenerate the answers shown under "Examples" in docs/api.md from a real run: the bundled demo stream replayed,
as `miner demo` replays it, up to 19:00 UTC on 3 June 2019 (during its MTN outage), then the read API asked at 19:05
on that clock. Each `$ curl -s 'http://127.0.0.1:8787/...'` line there is followed by the answer to that request.

    python tools/api_examples.py          # rewrite the answers in docs/api.md
    python tools/api_examples.py --check  # exit 1 if they are out of date

The replay's clock stops at 19:00 with the last post before it: a replay runs on for six hours after its last post
(so that its incidents can resolve), and `miner demo` had resolved the outage by then. Posts are cut before 19:00, as
the service would not have seen later ones yet. Answers with a `-i` or `-X` (headers, methods) are left as written.
"""

from __future__ import annotations

import re
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from miner.alerts import FileSenders  # noqa: E402
from miner.cli.pipeline_cmds import _keeping  # noqa: E402
from miner.config import bundled_path, load_config  # noqa: E402
from miner.http_cache import json_text  # noqa: E402
from miner.pipeline import Pipeline  # noqa: E402
from miner.read_api import ReadApi  # noqa: E402
from miner.records import Post  # noqa: E402
from miner.replay import demo_stream_path, read_posts, run_replay  # noqa: E402
from miner.replay_sends import flush, send_due_before  # noqa: E402
from miner.store import Store  # noqa: E402

DOC = ROOT / "docs" / "api.md"
REPLAYED_TO = datetime(2019, 6, 3, 19, 0, tzinfo=UTC)
ASKED_AT = datetime(2019, 6, 3, 19, 5, tzinfo=UTC)
_CURL = re.compile(r"^\$ curl -s '(http://127\.0\.0\.1:8787(/[^'?]*)(?:\?([^']*))?)'\s*$")


def replayed(folder: Path) -> tuple[ReadApi, Store]:
    """The read API over a store the demo stream was replayed into, up to REPLAYED_TO, its clock at ASKED_AT."""
    config = load_config(bundled_path("demo.toml"))
    store = Store.open(folder / "miner.sqlite")
    pipeline = Pipeline(config, store, senders=FileSenders(folder / "outbox", replace=True).senders())
    posts = (p for p in read_posts(demo_stream_path(), _keeping(config)) if p.created_at < REPLAYED_TO)

    def tick(now: datetime, arrived: list[Post]) -> None:
        send_due_before(pipeline, now)
        pipeline.tick(now, arrived)

    # As `miner replay` runs it: posts stored ahead of their ticks, the clock stopping at ``until``.
    stats = run_replay(posts, pipeline.bucket, tick, prefetch=pipeline.ingest_ahead, until=REPLAYED_TO)
    assert stats.end == REPLAYED_TO, stats.end
    flush(pipeline, REPLAYED_TO)
    return ReadApi(config, lambda: store, lambda: None, lambda: ASKED_AT), store


def shown(value: Any, indent: str = "") -> str:
    """``value`` as the doc shows an answer (as `jq .` indents it, but that an object of plain values, or one in a
    list of such, stays on one line), escaped as the endpoint escapes it."""
    inner = indent + "  "
    if isinstance(value, dict) and (not indent or any(isinstance(v, dict | list) and v for v in value.values())):
        items = [f"{inner}{json_text({k: 0})[1:-4]}: {shown(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}" if items else "{}"
    if isinstance(value, list) and value:
        return "[\n" + ",\n".join(inner + shown(v, inner) for v in value) + f"\n{indent}]"
    if isinstance(value, dict):
        return json_text(value)
    return json_text({"": value})[5:-1]  # a plain value, escaped as in an answer


def examples(text: str, api: ReadApi) -> str:
    """``text`` (docs/api.md) with the answer after each plain `curl -s` line replaced by the API's."""
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        out.append(lines[i])
        match = _CURL.match(lines[i])
        i += 1
        if match is None:
            continue
        while i < len(lines) and lines[i] and not lines[i].startswith("```"):
            i += 1  # the answer written before
        path, query = match.group(2), match.group(3) or ""
        answer = api.answer(path, query)
        if answer is None:
            raise SystemExit(f"docs/api.md: {match.group(1)} is no endpoint of the read API")
        status, body = answer
        out.append(shown(body) if status == 200 else json_text(body))
    return "\n".join(out)


def main() -> int:
    check = "--check" in sys.argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        api, store = replayed(Path(tmp))
        try:
            text = DOC.read_text(encoding="utf-8")
            new = examples(text, api)
        finally:
            store.close()
    if check:
        if new != text:
            print("out of date (run `python tools/api_examples.py`): docs/api.md")
            return 1
        return 0
    DOC.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

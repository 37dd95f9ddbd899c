"""A failed poll's error as the source's row, `miner status` and the log keep it: without e-mail addresses, and an
internal error (a collector's bug) without the source's secrets."""

from __future__ import annotations

import contextlib
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakeserver import FakeServer, Reply

from miner.cli import main
from miner.collectors.base import PollContext
from miner.collectors.poller import Poller
from miner.config import SourceConfig, parse_config
from miner.pipeline import Pipeline
from miner.records import FetchResult, SourceState
from miner.store import Store

pytestmark = pytest.mark.usefixtures("no_proxy_nor_trust")

T0 = datetime(2026, 12, 6, 18, 0, tzinfo=UTC)


def _status(cfg: Path, db: Path) -> tuple[str, str]:
    base = ["--config", str(cfg), "--db", str(db), "status"]
    text, data = CliRunner().invoke(main, base), CliRunner().invoke(main, [*base, "--format", "json"])
    assert text.exit_code == 0 and data.exit_code == 0, (text.output, data.output)
    return text.output, data.output


def test_last_error_status_and_the_log_keep_no_email_address_an_error_quotes(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A list's feed redirected to a page named by a person's address, which answered HTML: poll_failures kept it as
    # [email], but the source's last_error (shown by `miner status`, as text and JSON) and the log line kept it.
    cfg, db = tmp_path / "feeds.toml", tmp_path / "miner.sqlite"
    with FakeServer() as server:
        server.serve("/list.rss", Reply(302, b"", headers={"Location": f"{server.url}/by/alice.victim@example.org/f"}))
        server.serve("/by/alice.victim@example.org/f", Reply(200, b"<html>moved</html>", content_type="text/html"))
        cfg.write_text(f'[[services]]\nname = "Fibre"\n[[sources]]\nname = "list"\ntype = "rss"\n'
                       f'url = "{server.url}/list.rss"\n')
        config = parse_config(cfg.read_text())
        with contextlib.closing(Store.open(db)) as store, Poller(config.collect, hash_key=b"k", environ={}) as poller, \
                caplog.at_level(logging.WARNING, logger="miner"):
            reports = Pipeline(config, store).collect(T0, poller, due_only=False)
            row = store.database.one("SELECT last_error FROM sources WHERE name = 'list'")
        base = server.url
    assert reports[0].error is not None
    expected = f"expected a feed from {base}/by/[email]/f, got an HTML page (text/html)"
    assert row is not None and row["last_error"] == expected, row
    text, data = _status(cfg, db)
    assert "alice" not in text and "[email]" in text, text
    assert "alice" not in data and [s["last_error"] for s in json.loads(data)["sources"]] == [expected], data
    logged = [r.getMessage() for r in caplog.records if "list" in r.getMessage()]
    assert logged and not [m for m in logged if "alice" in m], logged


class _Exploding:
    """A collector with a bug whose exception quotes what it was given: the URL from url_env (its key a path
    segment, a query value and a host label), a link with a login, a credential of the environment, an address."""

    def poll(self, source: SourceConfig, state: SourceState, ctx: PollContext) -> FetchResult:
        raise ValueError(f"cannot read {source.url} (via https://admin:hunter2pass@mirror.example/x?token=q9w8e7r6t5y4 "
                         f"for jane.doe@example.com, sent {[ctx.environ[v] for v in source.env.values()]})")


def test_an_internal_error_stores_and_logs_none_of_the_sources_secrets(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg, db = tmp_path / "feeds.toml", tmp_path / "miner.sqlite"
    key, label = "0f3a9c2e7b4d4e1f8a6b5c4d3e2f1a0b", "a1b2c3d4e5f60718"
    env = {"FEED_URL": f"http://{label}.feeds.example/feeds/{key}/rss?k=Zx81Qw72Er63Ty54",
           "BSKY_ID": "quill.bsky.social", "BSKY_PASSWORD": "abcd-efgh-ijkl-mnop"}
    cfg.write_text('[[services]]\nname = "Fibre"\n[[sources]]\nname = "private"\ntype = "rss"\nurl_env = "FEED_URL"\n'
                   '[[sources]]\nname = "sky"\ntype = "bluesky"\nquery = "fibre"\n'
                   'env = { identifier = "BSKY_ID", password = "BSKY_PASSWORD" }\n')
    config = parse_config(cfg.read_text())
    with contextlib.closing(Store.open(db)) as store, Poller(config.collect, hash_key=b"k", environ=env) as poller, \
            caplog.at_level(logging.WARNING, logger="miner"):
        poller.collectors["rss"] = poller.collectors["bluesky"] = _Exploding()
        reports = Pipeline(config, store).collect(T0, poller, due_only=False)
        stored = [r["last_error"] for r in store.database.rows("SELECT last_error FROM sources ORDER BY name")]
        failures = [r["error"] for r in store.database.rows("SELECT error FROM poll_failures ORDER BY source")]
    assert [str(r.error) for r in sorted(reports, key=lambda r: r.source)] == stored == failures, (reports, stored)
    text, data = _status(cfg, db)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "ValueError: cannot read" in logged and "Traceback" in logged, logged
    for said in (*stored, text, data, logged):
        for secret in (key, label, "Zx81Qw72Er63Ty54", "hunter2pass", "q9w8e7r6t5y4", "jane.doe", "abcd-efgh-ijkl-mnop",
                       "quill.bsky.social"):
            assert secret not in said, (secret, said)
    assert stored[0].startswith("internal error in the rss collector: ValueError: cannot read [redacted]"), stored
    assert "[email]" in stored[1] and "sent ['[redacted]', '[redacted]'])" in stored[1], stored

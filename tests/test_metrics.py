"""/metrics as Prometheus reads it: the text exposition format (version 0.0.4), parsed strictly by a parser of the
format's rules written here (no Prometheus parser is installed), from the counters themselves and from a real
service on a loopback port."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from fakeserver import FakeServer, Reply

from miner.metrics import HELP, Metrics
from miner.store import Store
from miner.timeutil import utcnow

METRIC_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
# Go's float syntax as the format has it, NaN and infinities spelt its way.
VALUE = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|NaN|[+-]Inf"
LABEL_VALUE = r'(?:[^"\\\n]|\\[\\"n])*'  # a backslash, a double quote and a line break escaped, nothing else
SAMPLE = re.compile(rf"({METRIC_NAME})(?:\{{(.*)\}})? ({VALUE})(?: -?[0-9]+)?")
LABEL = re.compile(rf'({LABEL_NAME})="({LABEL_VALUE})"(?:,|$)')
HELP_LINE = re.compile(rf"# HELP ({METRIC_NAME})(?: ((?:[^\\\n]|\\[\\n])*))?")
TYPE_LINE = re.compile(rf"# TYPE ({METRIC_NAME}) (counter|gauge|histogram|summary|untyped)")
Labels = tuple[tuple[str, str], ...]


@dataclass
class Family:
    help: str | None = None
    type: str | None = None
    samples: dict[Labels, float] = field(default_factory=dict)


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"\\": "\\", '"': '"', "n": "\n"}[m[1]], text)


def parse(text: str) -> dict[str, Family]:
    """The families of an exposition, or AssertionError at the first line that breaks the format's rules: one HELP
    and one TYPE per family, before its samples; a family's lines together; no series twice, no label twice in one,
    no label name Prometheus keeps for itself (__*)."""
    assert text.endswith("\n") and "\r" not in text
    families: dict[str, Family] = {}
    current: str | None = None
    for n, line in enumerate(text[:-1].split("\n"), 1):
        where = f"line {n}: {line!r}"
        if line.startswith("#"):
            match = HELP_LINE.fullmatch(line) or TYPE_LINE.fullmatch(line)
            assert match is not None, f"{where}: not a HELP or TYPE line"
            name, kind = match[1], "help" if line.startswith("# HELP ") else "type"
        else:
            match = SAMPLE.fullmatch(line)
            assert match is not None, f"{where}: not a sample"
            name, kind = match[1], "sample"
        if name != current:
            assert name not in families, f"{where}: {name}'s lines are not all together"
            families[name] = Family()
            current = name
        family = families[name]
        if kind == "help":
            assert family.help is None and not family.samples, f"{where}: a second HELP, or one after samples"
            family.help = _unescape(match[2] or "")
        elif kind == "type":
            assert family.type is None and not family.samples, f"{where}: a second TYPE, or one after samples"
            family.type = match[2]
        else:
            body = match[2] or ""
            pairs = [(m[1], _unescape(m[2])) for m in LABEL.finditer(body)]
            assert "".join(m[0] for m in LABEL.finditer(body)) == body, f"{where}: labels not name=\"value\",..."
            names = [k for k, _ in pairs]
            assert len(set(names)) == len(names), f"{where}: a label twice"
            assert not any(k.startswith("__") for k in names), f"{where}: a reserved label name"
            key = tuple(sorted(pairs))
            assert key not in family.samples, f"{where}: the same series twice"
            family.samples[key] = float(match[3].replace("Inf", "inf"))
    return families


def test_label_values_and_numbers_are_written_as_the_format_has_them() -> None:
    metrics = Metrics()
    odd = ['say "hi"', "back\\slash", "two\nlines", "\\n not a line break", "tail\\", "naïve ☃", ""]
    for value in odd:
        metrics.set("miner_open_incidents", 1.0, service=value)
    # Python writes these nan, inf and -inf, which the format does not: they are NaN, +Inf and -Inf.
    metrics.set("miner_source_late_seconds", float("nan"), source="a")
    metrics.set("miner_source_late_seconds", float("inf"), source="b")
    metrics.set("miner_source_late_seconds", float("-inf"), source="c")
    metrics.set("miner_source_late_seconds", 1.5e-7, source="d")
    metrics.set("miner_source_late_seconds", 1e21, source="e")
    families = parse(metrics.render())
    assert families["miner_open_incidents"].samples == {(("service", v),): 1.0 for v in odd}
    late = families["miner_source_late_seconds"].samples
    assert late[(("source", "a"),)] != late[(("source", "a"),)]  # NaN
    assert [late[(("source", s),)] for s in "bcde"] == [float("inf"), float("-inf"), 1.5e-7, 1e21]
    assert set(families) == set(HELP)  # every family declared, with its HELP and TYPE, samples or none
    assert all(f.type in ("counter", "gauge") and f.help for f in families.values())


CONFIG = """
[store]
path = "{db}"

[server]
report_rate_per_hour = 5

[[services]]
name = 'Say "hi" \\ co'
aliases = ["sayhi"]

[[services]]
name = "MTN"

[[sources]]
name = "feed"
type = "rss"
url = "{url}"
interval = 3600
"""


@pytest.fixture
def feed() -> Iterator[str]:
    items = "".join(f"<item><guid>p{n}</guid><title>sayhi is down {n}</title><link>https://example.org/{n}</link>"
                    "</item>" for n in range(3))
    with FakeServer() as server:
        server.serve("/feed.rss", Reply(200, f'<rss version="2.0"><channel><title>t</title>{items}</channel></rss>'
                                        .encode(), content_type="application/rss+xml"))
        yield f"{server.url}/feed.rss"


def test_the_service_scrape_parses_strictly(tmp_path: Path, feed: str) -> None:
    from miner.config import load_config
    from miner.service import JobSpec, Service, ServiceOptions

    db = tmp_path / "miner.sqlite"
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(CONFIG.format(db=db, url=feed))
    store = Store.open(db)
    store.open_incident('Say "hi" \\ co', utcnow(), {}, {})
    store.open_incident("a name\nthe store holds", utcnow(), {}, {})  # of a service since removed, say
    service = Service(load_config(cfg), db, ServiceOptions(jobs=(JobSpec("collect", 3600.0), JobSpec(
        "retention", 3600.0)), http=True, http_port=0))
    service.start()
    try:
        assert service._http is not None
        base = f"http://127.0.0.1:{service._http.address[1]}"
        deadline = time.monotonic() + 60
        while not all(h.runs for h in service.health.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert httpx.post(f"{base}/report", json={"service": "sayhi"}).status_code == 202
        assert httpx.post(f"{base}/report", json={"service": "nobody"}).status_code == 400
        reply = httpx.get(f"{base}/metrics")
    finally:
        service.stop()
        store.close()
    assert reply.status_code == 200
    assert reply.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = parse(reply.text)
    assert set(families) == set(HELP)
    assert all(f.type == HELP[name][0] and f.help == HELP[name][1] for name, f in families.items())
    # A configured service with none open is written at 0: a dashboard's sum() said "no data" when all was well.
    assert families["miner_open_incidents"].samples == {(("service", 'Say "hi" \\ co'),): 1.0,
                                                         (("service", "MTN"),): 0.0,
                                                         (("service", "a name\nthe store holds"),): 1.0}
    assert families["miner_posts_stored_total"].samples == {(("source", "feed"),): 3.0}
    # Each source's counters at 0 before anything was counted, as its failed polls': the first gap or late post
    # after a start began its series at 1, where an alert on its increase saw nothing.
    for counter in ("miner_poll_gaps_total", "miner_posts_late_total"):
        assert families[counter].samples == {(("source", "feed"),): 0.0}, counter
    # No process job ran: the classifier's counters are at 0, not missing (a dashboard's rate() said "no data").
    assert families["miner_posts_classified_total"].samples == {(): 0.0}
    assert families["miner_classify_seconds_total"].samples == {(): 0.0}
    # Every label value known at the start is written at 0 (as the notifications' counters below): begun at 1 with
    # the first failed poll, skipped run or refused report after a start or reload, the series showed no increase().
    assert families["miner_reports_total"].samples == {(("result", "accepted"),): 1.0, (("result", "invalid"),): 1.0,
                                                       (("result", "rate_limited"),): 0.0,
                                                       (("result", "unavailable"),): 0.0}
    assert families["miner_poll_errors_total"].samples == {(("source", "feed"),): 0.0}
    # Prometheus sets job and instance on every series it scrapes: a label of the same name arrives renamed
    # exported_job (honor_labels false, the default), and a rule or dashboard asking for it finds nothing.
    names = {k for f in families.values() for labels in f.samples for k, _ in labels}
    assert not names & {"job", "instance"}
    assert families["miner_job_runs_total"].samples == {
        **{(("outcome", outcome), ("stage", stage)): 0.0 for outcome in ("error", "skipped")
           for stage in ("collect", "retention")},
        (("outcome", "ok"), ("stage", "collect")): 1.0, (("outcome", "ok"), ("stage", "retention")): 1.0}
    assert set(families["miner_job_last_success_timestamp_seconds"].samples) == {(("stage", "collect"),),
                                                                                 (("stage", "retention"),)}
    # At 0 before anything failed: begun at 1 with the first failure after a start or reload, the series showed no
    # increase() to the rule the docs give ("alert on its increase"), and that failure went unalerted.
    assert families["miner_notifications_failed_total"].samples == {(): 0.0}
    assert families["miner_notifications_sent_total"].samples == {(): 0.0}


@pytest.mark.parametrize("text", [
    'm{a="say "hi""} 1\n', 'm{a="back\\slash"} 1\n', 'm{a="two\nlines"} 1\n', "m nan\n", "m inf\n", "m 1",
    "# TYPE m gauge\n# TYPE m gauge\nm 1\n", "# HELP m x\n# HELP m y\nm 1\n", "m 1\n# TYPE m gauge\n",
    "m 1\nn 1\nm 2\n", 'm{a="1"} 1\nm{a="1"} 2\n', 'm{a="1",a="2"} 1\n', 'm{__name__="x"} 1\n',
    'm{a=1} 1\n', "# HELP m a\\tb\nm 1\n", "# TYPE m number\nm 1\n", "m 1\r\n",
])
def test_the_parser_refuses_what_the_format_does(text: str) -> None:
    with pytest.raises(AssertionError):
        parse(text)

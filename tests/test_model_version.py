"""Which model the service runs, and the recent posts that still count another model's verdict: `miner status`,
/healthz and /metrics show both."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import httpx
from click.testing import CliRunner
from ports import bound_port
from reclassify_support import write_config
from sqlplan import query_plan

from miner.cli import main
from miner.config import load_config
from miner.model_dir import default_model_dir
from miner.records import FetchResult, Post, Prediction
from miner.service import Service, ServiceOptions
from miner.store import Store
from miner.store.model_state import OTHER_MODEL_SQL
from miner.timeutil import utcnow

VERSION = json.loads((default_model_dir() / "model.json").read_text(encoding="utf-8"))["version"]


def _status(cfg: Path, *args: str) -> str:
    res = CliRunner().invoke(main, ["--config", str(cfg), "status", *args])
    assert res.exit_code == 0, res.output
    return res.output


def _model_text(cfg: Path) -> str:
    """Status in text from its model line on: after the paragraph saying whether a service is running."""
    return _status(cfg).split("\n\n", 1)[1]


def test_status_healthz_and_metrics_show_the_model_and_the_posts_left_with_another_models_verdict(
    tmp_path: Path,
) -> None:
    # A model update whose reclassify was forgotten: only `miner query` on the classifications showed it.
    cfg = write_config(tmp_path)
    config = load_config(cfg)
    now = utcnow()
    store = Store.open(config.store.path)
    store.sync_sources(config.sources)
    posts = [Post(source="telecom-feed", external_id=str(i), text="mtn is down", created_at=now - timedelta(hours=h),
                  services=("MTN",), author_hash=f"author-{i}") for i, h in enumerate((1, 2, 3, 30))]
    store.save_fetch("telecom-feed", FetchResult(posts=posts), now, now)
    ids = [p.id for p in store.posts_to_classify(10)]
    verdict = Prediction(0.9, True, "connectivity")
    store.save_classifications([(ids[0], verdict)], VERSION, now)
    store.save_classifications([(i, verdict) for i in ids[1:]], "minilm-outage-old", now)
    store.save_classifications([(ids[1], verdict)], VERSION, now + timedelta(seconds=1))  # reclassified since
    store.close()
    # ids[2]: the old model's, a day old at most; ids[3] is older than that, and ids[0], ids[1] count this model's.

    assert json.loads(_status(cfg, "--format", "json"))["model"] == {
        "version": None, "loaded_at": None, "loaded_by": None, "threshold": None, "early_exit": None,
        "verdicts_other_model": None, "verdicts_other_settings": None, "on_disk": VERSION, "config_threshold": 0.37,
        "config_early_exit": True}
    assert _model_text(cfg).startswith("model: none recorded yet")

    service = Service(config, Path(config.store.path), ServiceOptions(jobs=(), http=True, http_port=0))
    service.start()
    try:
        base = f"http://127.0.0.1:{bound_port(service)}"
        health = httpx.get(f"{base}/healthz", timeout=30)
        assert health.status_code == 200 and health.json()["model"] == VERSION
        lines = httpx.get(f"{base}/metrics", timeout=30).text.splitlines()
        assert f'miner_model_info{{version="{VERSION}"}} 1' in lines
        assert "miner_verdicts_other_model 1" in lines
        shown = json.loads(_status(cfg, "--format", "json"))["model"]
        assert shown["version"] == VERSION and shown["verdicts_other_model"] == 1 and shown["loaded_at"]
        assert shown["loaded_by"] == "miner run"
        text = _model_text(cfg).splitlines()
        assert text[0].startswith(f"model {VERSION} (loaded by `miner run` at ")
        assert text[1].startswith("1 post of the last 24 h counts another model's verdict")
    finally:
        service.stop()


def test_status_names_the_model_a_replay_gave_its_verdicts_with(tmp_path: Path) -> None:
    # `miner status` on the store `miner demo --out DIR` built said "model: none recorded yet", though the demo had
    # classified every post: only the service recorded its model. The demo is a replay of the bundled stream.
    cfg = write_config(tmp_path)
    stream = tmp_path / "posts.jsonl"
    start = utcnow() - timedelta(hours=3)
    stream.write_text("".join(json.dumps({"id": str(i), "text": text, "source": "telecom-feed",
                                          "created_at": (start + timedelta(minutes=10 * i)).isoformat()}) + "\n"
                              for i, text in enumerate(("mtn is down again", "no network on mtn", "mtn data ok"))))
    res = CliRunner().invoke(main, ["--config", str(cfg), "replay", str(stream), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    model = json.loads(_status(cfg, "--format", "json"))["model"]
    assert (model["version"], model["loaded_by"], model["verdicts_other_model"]) == (VERSION, "miner replay", 0)
    assert model["loaded_at"]
    assert _model_text(cfg).startswith(f"model {VERSION} (loaded by `miner replay` at ")
    # A service started on the store records its own, as before.
    config = load_config(cfg)
    service = Service(config, Path(config.store.path), ServiceOptions(jobs=()))
    service.start()
    try:
        assert _model_text(cfg).startswith(f"model {VERSION} (loaded by `miner run` at ")
    finally:
        service.stop()


def test_status_says_a_model_put_in_place_since_the_service_started_is_not_served_until_it_restarts(
        tmp_path: Path) -> None:
    # classifier.model_dir "model", beside feeds.toml: the shipped model's files, model.json a copy of its own.
    folder = tmp_path / "model"
    folder.mkdir()
    for path in default_model_dir().iterdir():
        (folder / path.name).symlink_to(path)
    (folder / "model.json").unlink()
    (folder / "model.json").write_text((default_model_dir() / "model.json").read_text(encoding="utf-8"),
                                       encoding="utf-8")
    cfg = write_config(tmp_path, 'model_dir = "model"')
    config = load_config(cfg)
    service = Service(config, Path(config.store.path), ServiceOptions(jobs=()))
    service.start()
    try:
        assert json.loads(_status(cfg, "--format", "json"))["model"]["on_disk"] == VERSION
        assert len(_model_text(cfg).split("\n\n")[0].splitlines()) == 1  # the model served is the one on disk
        # `miner train --out` over it: the service gives the old model's verdicts until it restarts, and status showed
        # the old version alone, as if served.
        meta = json.loads((folder / "model.json").read_text(encoding="utf-8"))
        (folder / "model.json").write_text(json.dumps({**meta, "version": "minilm-outage-next"}), encoding="utf-8")
        model = json.loads(_status(cfg, "--format", "json"))["model"]
        assert (model["version"], model["on_disk"]) == (VERSION, "minilm-outage-next")
        text = _model_text(cfg).splitlines()
        assert text[0].startswith(f"model {VERSION} (loaded by `miner run` at ")
        assert text[1] == ("the model.json on disk is minilm-outage-next: restart or reload (SIGHUP) the service to "
                           "serve it")
        (folder / "model.json").write_text("{", encoding="utf-8")  # half written: nothing said of it
        model = json.loads(_status(cfg, "--format", "json"))["model"]
        assert (model["on_disk"], model["config_threshold"], model["config_early_exit"]) == (None, None, None)
        assert len(_model_text(cfg).split("\n\n")[0].splitlines()) == 1
    finally:
        service.stop()


def test_the_count_of_posts_with_another_models_verdict_reads_a_day_of_posts_by_their_index(tmp_path: Path) -> None:
    # /metrics counts them (once a minute), and `miner status` at each run: SQLite took the condition on the highest
    # classified id for a range of the posts' rowid and walked every post stored, each with its lookups in the
    # classifications.
    store = Store.open(tmp_path / "miner.sqlite")
    plan = query_plan(store.database.conn, OTHER_MODEL_SQL, ("2026-01-01T00:00:00+00:00", "reports", VERSION))
    assert plan[0].startswith("SEARCH p USING INDEX posts_created_at (created_at>?)"), plan
    assert not [step for step in plan if step.startswith("SCAN")], plan


def test_metrics_count_the_posts_with_another_models_verdict_once_a_minute_and_again_for_another_model(
        tmp_path: Path) -> None:
    # Each /metrics scrape counted them: a day of posts with their latest verdict, 65-120 ms at 100,000 posts a day,
    # under the scrape lock, at every scrape of every Prometheus server, for a number that moves slowly.
    cfg = write_config(tmp_path)
    config = load_config(cfg)
    start = utcnow()
    clock = [start]
    store = Store.open(config.store.path)
    store.sync_sources(config.sources)
    posts = [Post(source="telecom-feed", external_id=str(i), text="mtn is down", created_at=start - timedelta(hours=h),
                  services=("MTN",), author_hash=f"author-{i}") for i, h in enumerate((1, 2, 3))]
    store.save_fetch("telecom-feed", FetchResult(posts=posts), start, start)
    ids = [p.id for p in store.posts_to_classify(10)]
    verdict = Prediction(0.9, True, "connectivity")
    store.save_classifications([(ids[0], verdict)], VERSION, start)
    store.save_classifications([(i, verdict) for i in ids[1:]], "minilm-outage-old", start)

    def scrape(port: int) -> int:
        lines = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text.splitlines()
        return int(next(line for line in lines if line.startswith("miner_verdicts_other_model "))
                   .split()[1].removesuffix(".0"))

    service = Service(config, Path(config.store.path), ServiceOptions(jobs=(), http=True, http_port=0,
                                                                      clock=lambda: clock[0]))
    service.start()
    try:
        port = bound_port(service)
        assert scrape(port) == 2
        store.save_classifications([(ids[1], verdict)], VERSION, start + timedelta(seconds=1))  # reclassified
        assert scrape(port) == 2  # counted a moment ago: not read again
        clock[0] = start + timedelta(seconds=59)
        assert scrape(port) == 2
        clock[0] = start + timedelta(minutes=1)
        assert scrape(port) == 1
        store.save_classifications([(ids[2], verdict)], VERSION, start + timedelta(seconds=2))
        clock[0] = start + timedelta(seconds=30)  # set back: counted again, not kept until the clock catches up
        assert scrape(port) == 0
    finally:
        service.stop()

    # A reload with a model of another version (restarted, as a reload does): counted for it at its first scrape,
    # every post of the day giving this model's verdict now being another model's.
    folder = tmp_path / "model"
    folder.mkdir()
    for path in default_model_dir().iterdir():
        (folder / path.name).symlink_to(path)
    (folder / "model.json").unlink()
    meta = json.loads((default_model_dir() / "model.json").read_text(encoding="utf-8"))
    (folder / "model.json").write_text(json.dumps({**meta, "version": "minilm-outage-next"}), encoding="utf-8")
    cfg.write_text(cfg.read_text() + 'model_dir = "model"\n')  # in the [classifier] table the config ends with
    service = Service(load_config(cfg), Path(config.store.path), ServiceOptions(jobs=(), http=True, http_port=0,
                                                                                clock=lambda: clock[0]))
    service.start()
    try:
        assert scrape(bound_port(service)) == 3
    finally:
        service.stop()
        store.close()

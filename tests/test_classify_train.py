"""Training-side pieces: data loading and joining, metrics, folds, and a one-step build smoke test."""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from miner.classify.data import LabelledPost, data_hash, load_extra, load_labelled, weak_labels
from miner.classify.metrics import best_threshold, prf, report
from miner.classify.tokenize import TEXT_PREP
from miner.errors import InputError

ROWS = [
    ("t1", "whatsapp is down, messages won't send", 1, "messaging", "apps/waplay"),
    ("t2", "calm down everyone", 0, None, "tweeteval"),
    ("t3", "no network in Kampala since morning", 1, "connectivity", "sentitel"),
    ("t4", "my order is late again", 0, None, "complaints2019/retail"),
    ("t5", "just lost power", 1, "power", "wa_power/1"),
    ("t6", "I love the new stickers", 0, None, "apps/waplay"),
    ("t7", "is gmail down for anyone else", 1, None, "tweeteval"),
    ("t8", "stocks down again today", 0, None, "tweeteval"),
]
# Every post twice, as a second post of its own: enough rows for a batch of 8 and two folds.
TWICE = ROWS + [(f"{i}b", t, y, s, src) for i, t, y, s, src in ROWS]


def _write(path: Path, rows: list[tuple[str, str, int, str | None, str]]) -> Path:
    lines = [
        json.dumps({"id": i, "text": t, "label": y, "symptom": s, "service": None, "source": src})
        for i, t, y, s, src in rows
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_load_labelled_fills_general_and_rejects_bad_rows(tmp_path: Path) -> None:
    posts = load_labelled(_write(tmp_path / "t.jsonl", ROWS))
    assert [p.id for p in posts] == [r[0] for r in ROWS]
    assert posts[6].symptom == "general" and posts[1].symptom is None
    bad = tmp_path / "bad.jsonl"
    for text, error in [
        ('{"id": "x", "text": "a", "label": 1, "symptom": "weather"}\n', r"bad\.jsonl:1: unknown symptom"),
        ('{"id": "x", "text": "a"}\nnot json\n', r"bad\.jsonl:1"),
        ('{"id": "x", "text": "a", "label": 1}\n\n{"id": "x", "text": "a", "label": 0}\n',
         r"bad\.jsonl:3: id 'x' is also on line 1"),
        ('{"id": "x", "text": null, "label": 0}\n', r"bad\.jsonl:1: text must be a string, got null"),
        ('{"id": null, "text": "a", "label": 0}\n', r"bad\.jsonl:1: id must not be empty"),
        # an array: valid JSON, not a row
        ('{"id": "x", "text": "a", "label": 1}\n["y", "b", 0]\n', r"bad\.jsonl:2: not a JSON object"),
        ("[" * 5000 + "]" * 5000 + "\n", r"bad\.jsonl:1: invalid JSON \(nested too deeply\)"),
    ]:
        bad.write_text(text)
        with pytest.raises(InputError, match=error):
            load_labelled(bad)
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + (tmp_path / "t.jsonl").read_bytes())
    assert load_labelled(bom) == posts
    bad.write_bytes('{"id": "x", "text": "caf\u00e9", "label": 0}\n'.encode("latin-1"))
    with pytest.raises(InputError, match=r"bad\.jsonl: not UTF-8 text"):
        load_labelled(bad)


def test_data_hash_depends_on_content_not_order() -> None:
    a = [LabelledPost(*r) for r in ROWS]
    assert data_hash(a) == data_hash(list(reversed(a)))
    changed = [*a[:-1], LabelledPost("t8", "stocks down again today", 1, "general", "tweeteval")]
    assert data_hash(changed) != data_hash(a)


def _shared(root: Path) -> Path:
    """A miniature copy of the shared data: the three files extra and weak labels read."""
    shared = root / "shared"
    for sub in ("complaints", "sentitel", "power"):
        (shared / sub).mkdir(parents=True)
    with (shared / "complaints" / "complaints-data.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows(
            [
                ["tweet_id", "text", "label", "domain"],
                ["111", "@isp no internet again", "1", "x"],
                ["112", "@shop where is my refund", "0", "x"],
            ]
        )
    network = [{"aspect": "Network", "sentiment": "Negative"}]
    dev = [
        {"id": 222, "text": "mtn network is off", "opinions": []},
        {"id": 223, "text": "no network since morning", "opinions": network},
        {
            "id": 224,
            "text": "network off and data expensive",
            "opinions": [*network, {"aspect": "Data", "sentiment": "Negative"}],
        },
        {"id": 225, "text": "airtel network down again", "opinions": network * 2},
    ]
    for split in ("train", "dev", "test"):
        (shared / "sentitel" / f"sentitel_{split}.json").write_text(json.dumps(dev if split == "dev" else []))
    with (shared / "power" / "wa_tweets.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows(
            [["row", "event_row_or_county", "timestamp", "text", "outage"]]
            + [["7", "0", "t", "power out", "1"]]
            + [[str(r), "0", "t", f"storm photo {r}", "0"] for r in range(10, 15)]
        )
    return shared


def test_extra_labels_join_shared_texts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    shared = _shared(tmp_path)
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "a.jsonl").write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"id": "pc-111", "label": 1, "symptom": "connectivity", "source": "complaints2019/services"},
                {"id": "st-222", "label": 1, "symptom": "connectivity", "source": "sentitel"},
                {"id": "wa-7", "label": 1, "symptom": "power", "source": "wa_power/1"},
                {"id": "wa-999", "label": 1, "symptom": "power", "source": "wa_power/1"},  # no text: skipped
                {"id": "st-222", "label": 0, "symptom": None, "source": "sentitel"},  # duplicate: first wins
            ]
        )
        + "\nnot json\n[1, 2]\n"
    )
    posts = load_extra(extra, shared, exclude={"wa-7"})
    assert "a.jsonl: 1 labels name posts not in the shared data" in caplog.text  # wa-999: said, not silent
    assert [(p.id, p.text, p.label) for p in posts] == [
        ("pc-111", "@isp no internet again", 1),
        ("st-222", "mtn network is off", 1),
    ]


def test_weak_rules_label_only_posts_nobody_labelled(tmp_path: Path) -> None:
    shared = _shared(tmp_path)
    weak = weak_labels(shared, exclude={"wa-10", "pc-112", "st-225"}, per_rule=3, seed=13)
    by_rule: dict[str, list[tuple[str, int, str | None]]] = {}
    for p in weak:
        by_rule.setdefault(p.source, []).append((p.id, p.label, p.symptom))
    # Power tweets with outage=0 are 0: four left after the exclusion, capped at 3, drawn by the seed.
    assert len(by_rule["weak/wa_power"]) == 3
    assert {i for i, _, _ in by_rule["weak/wa_power"]} <= {"wa-11", "wa-12", "wa-13", "wa-14"}
    assert {(y, s) for _, y, s in by_rule["weak/wa_power"]} == {(0, None)}
    # The only "not a complaint" row is excluded (already labelled): the rule finds nothing.
    assert "weak/complaints" not in by_rule
    # Only a post whose single opinion is a negative Network one counts as an outage.
    assert by_rule["weak/sentitel"] == [("st-223", 1, "connectivity")]
    assert weak_labels(shared, {"wa-10", "pc-112", "st-225"}, 3, 13) == weak
    assert weak_labels(shared, {"wa-10", "pc-112", "st-225"}, 3, 14) != weak  # another draw of 3 of 4
    with pytest.raises(InputError, match=r"wa_tweets\.csv: cannot read shared data"):
        weak_labels(tmp_path / "missing", set(), 3, 13)


def test_metrics_and_threshold() -> None:
    y = np.array([1, 1, 0, 0, 1, 0])
    scores = np.array([0.9, 0.7, 0.6, 0.1, 0.2, 0.3], dtype=np.float32)
    m = prf(y, (scores >= 0.5).astype(np.int64))
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 2)
    assert m["f1"] == pytest.approx(2 / 3, abs=1e-4)
    t = best_threshold(y, scores)
    assert 0.6 < t <= 0.7  # only above 0.6 is the false positive gone while both top scores stay
    r = report(
        y,
        scores,
        ["power", "app", None, None, "app", None],
        ["power", "login", "app", "app", "app", "app"],
        ["a/x", "a/y", "b", "b", "a/x", "b"],
        0.5,
    )
    assert r["per_source"]["a"]["n"] == 3 and r["per_source"]["a/x"]["n"] == 2
    assert r["per_symptom"]["app"] == {"n": 2, "outage_recall": 0.5, "symptom_accuracy": 0.5}


def test_one_step_build_writes_a_loadable_model(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from miner.classify import ClassifierSettings, load_classifier
    from miner.classify.build import build
    from miner.classify.export import EXIT_LAYERS
    from miner.classify.recipe import TrainConfig

    data = _write(tmp_path / "t.jsonl", TWICE)
    out = _previous_model(tmp_path / "model")
    old = _loaded_version(out)
    (out / "layers1-3.int8.onnx").write_bytes((out / "layers1-1.int8.onnx").read_bytes())  # another layout's
    card = (out / "MODEL_CARD.md").read_bytes()
    cfg = TrainConfig(epochs=1, batch_size=8)
    result = build(data, out, cfg, folds=0, shared=tmp_path / "none", max_steps=1, weak_per_rule=0)
    assert _loaded_version(out) == result.version != old
    assert (out / "MODEL_CARD.md").read_bytes() == card  # not the build's: it stays
    assert not (out / "oof.jsonl").exists()  # the previous model's: no CV ran for this one
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # the staging folder is gone
    meta = json.loads((out / "model.json").read_text())
    assert meta["version"] == result.version and meta["threshold"] == 0.5
    assert meta["text_prep"] == TEXT_PREP
    assert len(meta["graphs"]) == len(EXIT_LAYERS) + 1 and all((out / g).is_file() for g in meta["graphs"])
    assert sorted(p.name for p in out.glob("*.onnx")) == sorted(meta["graphs"])
    assert meta["graph_sha256"] == {g: hashlib.sha256((out / g).read_bytes()).hexdigest() for g in meta["graphs"]}
    assert meta["tokenizer_sha256"] == hashlib.sha256((out / meta["tokenizer"]).read_bytes()).hexdigest()
    # No unlabelled posts to choose exit thresholds on: the model ships without exits, and says so.
    assert meta["exits"] == [None] * len(EXIT_LAYERS)
    assert json.loads((out / "metrics.json").read_text())["early_exit"]["n"] == 0
    preds = load_classifier(ClassifierSettings(model_dir=str(out))).predict(["whatsapp is down", ""])
    assert len(preds) == 2 and all(0.0 <= p.score <= 1.0 for p in preds)


def test_shared_data_that_cannot_be_read_fails_the_build_before_training(tmp_path: Path) -> None:
    # Trained on --data alone (--no-extra --weak 0), nothing read the shared posts (those the exits are fitted on)
    # until the model was trained: a shared folder lacking a file failed the build after the hour of training.
    pytest.importorskip("torch")
    from miner.classify.build import build
    from miner.classify.recipe import TrainConfig

    data = _write(tmp_path / "t.jsonl", TWICE)
    (tmp_path / "shared").mkdir()  # there, but empty
    steps: list[tuple[int, int, str]] = []
    with pytest.raises(InputError, match=r"shared/complaints/complaints-data\.csv: cannot read shared data"):
        build(data, tmp_path / "model", TrainConfig(epochs=1, batch_size=8), folds=0, shared=tmp_path / "shared",
              progress=lambda done, total, what: steps.append((done, total, what)), max_steps=1, weak_per_rule=0)
    assert steps == []  # no training step ran
    assert not (tmp_path / "model").exists()


def _previous_model(out: Path) -> Path:
    """A copy of the shipped model at ``out``: what a build must replace whole or leave untouched."""
    from miner.classify.model import default_model_dir

    shutil.copytree(default_model_dir(), out)
    return out


def _loaded_version(model_dir: Path) -> str:
    from miner.classify import ClassifierSettings, load_classifier

    return load_classifier(ClassifierSettings(model_dir=str(model_dir))).meta.version


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir" for p in folder.iterdir()}


@pytest.mark.parametrize(
    ("step", "failure"),
    [("export_all", OSError(errno.ENOSPC, "No space left on device")), ("fit_exits", KeyboardInterrupt())],
)
def test_a_build_that_fails_late_leaves_the_previous_model_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str, failure: BaseException
) -> None:
    # Training runs for hours before these steps; a disk filling up or a Ctrl-C there deleted the old graphs or
    # put new ones beside the old model.json (sha256 mismatch): no model loaded until models/ was restored.
    pytest.importorskip("torch")
    from miner.classify import build as build_module
    from miner.classify.recipe import TrainConfig

    data = _write(tmp_path / "t.jsonl", TWICE)
    oof = tmp_path / "earlier-oof.jsonl"  # an earlier run's out-of-fold scores, copied into the new model
    oof.write_text("".join(json.dumps({"id": r[0], "score": 0.7 * r[2] + 0.1, "pred_symptom": "general",
                                       "fold": n % 2}) + "\n" for n, r in enumerate(TWICE)))
    out = _previous_model(tmp_path / "model")
    before, old = _digests(out), _loaded_version(out)

    def fail(*args: object, **kwargs: object) -> None:
        raise failure

    monkeypatch.setattr(build_module, step, fail)
    with pytest.raises(type(failure)):
        build_module.build(data, out, TrainConfig(epochs=1, batch_size=8), folds=0, shared=tmp_path / "none",
                           max_steps=1, weak_per_rule=0, reuse_oof=oof)
    assert _digests(out) == before  # every file as it was (oof.jsonl too), and no staging folder left
    assert _loaded_version(out) == old


def test_reused_out_of_fold_scores_must_be_well_formed_and_of_these_labels(tmp_path: Path) -> None:
    # --reuse-oof skips hours of CV: a damaged file was an internal error, NaN scores (a fold never run) or a
    # data set relabelled since picked the threshold and filled the card without a word.
    pytest.importorskip("torch")
    from miner.classify.build import _write_oof, read_oof

    posts = load_labelled(_write(tmp_path / "t.jsonl", ROWS))
    oof = tmp_path / "oof.jsonl"
    scores = np.linspace(0.1, 0.9, len(posts), dtype=np.float32)
    _write_oof(oof, posts, scores, ["general"] * len(posts), np.arange(len(posts)) % 2)
    got, sym, fold = read_oof(oof, posts)
    assert np.allclose(got, scores, atol=1e-5) and sym == ["general"] * len(posts) and fold.tolist()[:3] == [0, 1, 0]
    good = oof.read_text().splitlines()

    def refused(line3: str) -> str:
        oof.write_text("\n".join([*good[:2], line3, *good[3:]]) + "\n")
        with pytest.raises(InputError) as err:
            read_oof(oof, posts)
        return str(err.value)

    row = json.loads(good[2])
    assert "oof.jsonl:3: not an out-of-fold row" in refused(json.dumps({k: v for k, v in row.items() if k != "score"}))
    assert "oof.jsonl:3: not an out-of-fold row" in refused("[1, 2]")
    assert "oof.jsonl:3: score nan" in refused(json.dumps({**row, "score": float("nan")}))
    assert f"post {row['id']} is labelled otherwise" in refused(json.dumps({**row, "label": 1 - row["label"]}))


@pytest.mark.usefixtures("sigint_as_from_a_terminal")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP], ids=["SIGINT", "SIGHUP"])
def test_a_signal_while_the_model_is_moved_into_place_waits_for_the_move(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sig: int
) -> None:
    # Ctrl-C between two of the moves left the first new graph beside the old model.json: no model loaded. So did a
    # SIGHUP, once `miner train` took it as SIGTERM (raise_on_hangup) rather than be killed by it.
    pytest.importorskip("torch")
    from miner.classify import build as build_module
    from miner.classify.recipe import TrainConfig
    from miner.cli.stopping import raise_on_hangup

    data = _write(tmp_path / "t.jsonl", TWICE)
    out = _previous_model(tmp_path / "model")
    old = _loaded_version(out)
    replace = os.replace

    def interrupted_after(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        replace(src, dst)
        if str(dst).endswith(".onnx"):  # the first new graph is in place
            monkeypatch.setattr(os, "replace", replace)
            signal.raise_signal(sig)  # its handler raises KeyboardInterrupt (Interrupted, for SIGHUP) at once

    real_install = build_module._install

    def install(*args: object) -> None:
        monkeypatch.setattr(os, "replace", interrupted_after)
        real_install(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(build_module, "_install", install)
    # SIGHUP's default action, as a terminal's session starts `miner train` (a suite under `nohup` ignores it).
    before = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        with pytest.raises(KeyboardInterrupt), raise_on_hangup():
            build_module.build(data, out, TrainConfig(epochs=1, batch_size=8), folds=0, shared=tmp_path / "none",
                               max_steps=1, weak_per_rule=0)
    finally:
        signal.signal(signal.SIGHUP, before)
    assert _loaded_version(out) != old  # the new model, whole


@pytest.mark.usefixtures("sigint_as_from_a_terminal")
def test_a_signal_just_after_the_staging_folder_is_made_removes_it(tmp_path: Path) -> None:
    # The folder was removed only from the start of the block that used it: a Ctrl-C (or a SIGTERM or SIGHUP, which
    # `miner train` takes as one) while the build named the folders earlier builds left, just after making its own,
    # left its own behind too.
    pytest.importorskip("torch")
    import logging

    from miner.classify import build as build_module
    from miner.classify.recipe import TrainConfig

    data = _write(tmp_path / "t.jsonl", TWICE)
    out = _previous_model(tmp_path / "model")
    (out / f"{build_module.STAGING_PREFIX}killed").mkdir()  # a build killed outright left it: this one names it
    before = _digests(out)

    class Interrupting(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "left by an interrupted or concurrent build" in record.getMessage():
                signal.raise_signal(signal.SIGINT)  # Python's handler raises KeyboardInterrupt at once

    handler = Interrupting()
    build_module.log.addHandler(handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            build_module.build(data, out, TrainConfig(epochs=1, batch_size=8), folds=0, shared=tmp_path / "none",
                               max_steps=1, weak_per_rule=0)
    finally:
        build_module.log.removeHandler(handler)
    assert _digests(out) == before  # the folder left before is named, not removed, and this build's is gone


@pytest.mark.usefixtures("sigint_as_from_a_terminal")
def test_a_signal_while_the_checkpoint_is_saved_leaves_no_part_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The checkpoint is written to .NAME.part and renamed: a Ctrl-C (or a SIGTERM or SIGHUP, which `miner train` takes
    # as one) while torch wrote it left the .part file behind, only an OSError or RuntimeError removing it.
    torch = pytest.importorskip("torch")
    from miner.classify import build as build_module
    from miner.classify.recipe import TrainConfig

    data = _write(tmp_path / "t.jsonl", TWICE)
    out = _previous_model(tmp_path / "model")
    before = _digests(out)
    checkpoint = tmp_path / "final.pt"

    def save(obj: object, path: Path) -> None:
        path.write_bytes(b"the first bytes of the weights")
        signal.raise_signal(signal.SIGINT)  # Python's handler raises KeyboardInterrupt at once

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(KeyboardInterrupt):
        build_module.build(data, out, TrainConfig(epochs=1, batch_size=8), folds=0, shared=tmp_path / "none",
                           max_steps=1, weak_per_rule=0, checkpoint=checkpoint)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "t.jsonl"]  # neither final.pt nor .final.pt.part
    assert _digests(out) == before


@pytest.mark.skipif(os.geteuid() == 0 and not shutil.which("setpriv"), reason="root ignores permissions")
def test_train_cli_refuses_an_unwritable_out_before_training(tmp_path: Path) -> None:
    data = _write(tmp_path / "t.jsonl", TWICE)
    out = _previous_model(tmp_path / "model")
    final = tmp_path / "final.pt"  # written once the final fit is done: it must not be
    args = ["train", "--data", str(data), "--out", str(out), "--no-extra", "--weak", "0", "--folds", "0",
            "--max-steps", "1", "--checkpoint", str(final)]
    # Without its capabilities root is held to the permission bits like anyone else.
    drop = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"] if os.geteuid() == 0 else []
    env = {**os.environ, "MINER_SHARED_DATA": str(tmp_path / "none"), "PYTHONPATH": str(Path(__file__).parents[1])}
    out.chmod(0o555)
    try:
        res = subprocess.run([*drop, sys.executable, "-m", "miner", *args], capture_output=True, text=True,
                             env=env, timeout=120)
    finally:
        out.chmod(0o755)
    assert res.returncode == 1
    assert f"Error: {out}: cannot write the model there (Permission denied)\n" in res.stderr
    assert "Traceback" not in res.stderr and not final.exists()


def test_train_cli_reads_weak_labels_by_default_and_names_missing_shared_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    from click.testing import CliRunner

    from miner.cli import main

    data = _write(tmp_path / "t.jsonl", ROWS)
    monkeypatch.setenv("MINER_SHARED_DATA", str(tmp_path / "missing"))
    args = ["train", "--data", str(data), "--out", str(tmp_path / "model"), "--no-extra", "--folds", "0"]
    # With the extra labels off, only the weak rules (on by default, as in the shipped model) read the shared data.
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "missing/power/wa_tweets.csv: cannot read shared data" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "model").exists()


def test_train_cli_passes_the_rdrop_weight_into_the_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    from click.testing import CliRunner

    from miner.cli import main

    data = _write(tmp_path / "t.jsonl", TWICE)
    monkeypatch.setenv("MINER_SHARED_DATA", str(tmp_path / "none"))
    out = tmp_path / "model"
    args = ["train", "--data", str(data), "--out", str(out), "--no-extra", "--weak", "0", "--folds", "0"]
    result = CliRunner().invoke(main, [*args, "--rdrop", "0", "--max-steps", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "model.json").read_text())["train_config"]["rdrop"] == 0.0
    assert CliRunner().invoke(main, [*args, "--rdrop", "-1"]).exit_code == 2  # a usage error, nothing trained
    no_extra = CliRunner().invoke(main, [*args, "--extra", str(tmp_path / "mistyped")])  # trained without them
    assert no_extra.exit_code == 2 and "does not exist" in no_extra.output
    one_fold = CliRunner().invoke(main, [*args, "--folds", "1"])  # the last --folds counts
    assert one_fold.exit_code == 2 and "one fold leaves no posts to train on" in one_fold.output


def test_train_cli_refuses_a_seed_or_rate_it_cannot_train_with_before_reading_the_data(tmp_path: Path) -> None:
    # --seed -1 failed as "internal error: ValueError: Seed must be between 0 and 2**32 - 1" once the data was read; a
    # negative or nan --lr as an internal error in torch's optimizer; an inf --lr or a nan --rdrop trained to nan.
    from click.testing import CliRunner

    from miner.cli import main

    out = tmp_path / "model"
    args = ["train", "--data", str(tmp_path / "missing.jsonl"), "--out", str(out), "--no-extra", "--weak", "0",
            "--folds", "0", "--max-steps", "1"]
    for option, value, why in [("--seed", "-1", "not in the range 0<=x<=4294967295"),
                               ("--seed", str(2**32), "not in the range 0<=x<=4294967295"),
                               ("--lr", "-1", "not in the range x>=0.0"), ("--lr", "nan", "nan is not a finite number"),
                               ("--lr", "inf", "inf is not a finite number"),
                               ("--rdrop", "nan", "nan is not a finite number"),
                               ("--rdrop", "inf", "inf is not a finite number")]:
        # The options come first: --data names a missing file, which click names only after them.
        result = CliRunner().invoke(main, ["train", option, value, *args[1:]])
        assert result.exit_code == 2, (option, value, result.output)
        assert f"Invalid value for '{option}': " in result.output and why in result.output, result.output
        assert not out.exists()


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_train_cli_shows_the_final_fits_progress_after_cross_validation(tmp_path: Path) -> None:
    # The bar, full once the folds were done, showed nothing more through the final fit (an hour of the build).
    pytest.importorskip("torch")
    data = _write(tmp_path / "t.jsonl", ROWS)
    args = ["train", "--data", str(data), "--out", str(tmp_path / "model"), "--no-extra", "--weak", "0",
            "--folds", "2", "--epochs", "2"]
    env = {**os.environ, "MINER_SHARED_DATA": str(tmp_path / "none"), "PYTHONPATH": str(Path(__file__).parents[1]),
           "COLUMNS": "200"}
    master, slave = os.openpty()  # click draws the bar only on a terminal
    try:
        proc = subprocess.Popen([sys.executable, "-m", "miner", *args], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=slave, env=env)
        os.close(slave)
        shown = b""
        with contextlib.suppress(OSError):  # EIO once the child has closed the terminal
            while chunk := os.read(master, 65536):
                shown += chunk
        assert proc.wait(timeout=120) == 0
    finally:
        os.close(master)
    bars = [part.removeprefix("\x1b[?25l") for part in shown.decode(errors="replace").split("\r")]
    assert any(b.startswith("fold 2/2 epoch 2/2 ") and "100%" in b for b in bars)
    assert any(b.startswith("epoch 1/2 ") and " 50%" in b for b in bars)  # the final fit, halfway


def test_recipe_defaults_are_the_shipped_models_recipe() -> None:
    """TrainConfig(), build() and `miner train` with no options train what models/ says the model was."""
    from miner.classify.model import default_model_dir
    from miner.classify.recipe import FOLDS, WEAK_PER_RULE, TrainConfig

    meta = json.loads((default_model_dir() / "model.json").read_text(encoding="utf-8"))
    metrics = json.loads((default_model_dir() / "metrics.json").read_text(encoding="utf-8"))
    assert TrainConfig().as_dict() == meta["train_config"]
    assert f"weak:{WEAK_PER_RULE}" in meta["training_data"] and metrics["folds"] == FOLDS


def test_checkpoint_of_a_model_trained_on_other_text_cleaning_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    from miner.classify import build as build_module
    from miner.classify.recipe import TrainConfig

    posts = load_labelled(_write(tmp_path / "t.jsonl", ROWS))
    cfg = TrainConfig(epochs=1, batch_size=8)
    saved = tmp_path / "final.pt"
    build_module._final_model(posts, cfg, None, 1, saved)
    build_module._final_model(posts, cfg, None, 1, saved)  # same recipe: loads without complaint
    monkeypatch.setattr(build_module, "TEXT_PREP", "some-other-cleaning")
    with pytest.raises(InputError, match="checkpoint was trained on other data or options"):
        build_module._final_model(posts, cfg, None, 1, saved)


def test_a_checkpoint_that_cannot_serve_is_refused_before_any_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Cross-validation and the final fit take hours: a stale, damaged or unwritable checkpoint was found after them.
    torch = pytest.importorskip("torch")
    from miner.classify import build as build_module
    from miner.classify.recipe import TrainConfig

    def trained(*args: object, **kwargs: object) -> None:
        raise AssertionError("trained before the checkpoint was checked")

    monkeypatch.setattr(build_module, "cross_validate", trained)
    monkeypatch.setattr(build_module, "train_model", trained)
    data = _write(tmp_path / "t.jsonl", TWICE)
    cfg = TrainConfig(epochs=1, batch_size=8)
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(b"PK\x03\x04 cut short")  # a save killed midway
    stale = tmp_path / "stale.pt"
    torch.save({"key": "an earlier run's data and options", "state": {}}, stale)
    cases = {
        tmp_path / "no-such-folder" / "final.pt": "cannot write the checkpoint there",
        damaged: "not a readable checkpoint",
        stale: "checkpoint was trained on other data or options",
    }
    for checkpoint, error in cases.items():
        with pytest.raises(InputError, match=error):
            build_module.build(data, tmp_path / "model", cfg, folds=2, shared=tmp_path / "none", max_steps=1,
                               weak_per_rule=0, checkpoint=checkpoint)
        assert not (tmp_path / "model").exists()


def test_exit_threshold_keeps_within_the_loss_budget() -> None:
    pytest.importorskip("torch")
    from miner.classify.early_exit import choose_threshold

    rng = np.random.default_rng(0)
    probe = rng.uniform(0.0, 0.4, 1000).astype(np.float32)
    positive = np.zeros(1000, dtype=bool)
    positive[np.argsort(probe)[-400:]] = True  # the full network's outages are the posts the probe ranks highest
    positive[np.argsort(probe)[50]] = True  # ... but one it ranks low
    t = choose_threshold(probe, positive, decision=0.35, max_loss=0.005)
    assert (positive & (probe < t)).sum() <= 2  # 0.5 % of 401 allows 2 dropped outages
    assert t > np.sort(probe)[50]  # the lone low one is within budget, so the threshold passes it
    assert choose_threshold(probe, positive, decision=0.35, max_loss=0.0) <= np.sort(probe)[50] + 0.005
    assert choose_threshold(probe, positive, decision=0.004) == 0.0  # below the first grid step: exit off


def test_weight_average_is_the_mean_of_the_snapshots_and_spares_integer_buffers() -> None:
    torch = pytest.importorskip("torch")
    from miner.classify.train import _WeightAverage

    model = torch.nn.Linear(3, 2)
    model.register_buffer("steps", torch.tensor([7]))
    avg = _WeightAverage()
    avg.load_into(model)  # nothing added: the weights stay as they are
    for value in (1.0, 2.0, 6.0):
        with torch.no_grad():
            model.weight.fill_(value)
            model.steps.fill_(int(value))
        avg.add(model)
    avg.load_into(model)
    assert torch.equal(model.weight, torch.full((2, 3), 3.0))  # (1 + 2 + 6) / 3
    assert int(model.steps) == 6  # integer buffers keep the last value


def test_training_ships_the_averaged_weights(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    import torch

    from miner.classify.recipe import TrainConfig
    from miner.classify.train import train_model

    posts = load_labelled(_write(tmp_path / "t.jsonl", ROWS))
    last = train_model(posts, TrainConfig(epochs=2, batch_size=8, average_from=0))
    mean = train_model(posts, TrainConfig(epochs=2, batch_size=8, average_from=1))
    only_last = train_model(posts, TrainConfig(epochs=2, batch_size=8, average_from=2))  # one snapshot: the last
    w = "outage.weight"
    assert torch.equal(only_last.state_dict()[w], last.state_dict()[w])
    assert not torch.allclose(mean.state_dict()[w], last.state_dict()[w])


def test_exits_fitted_on_real_posts_share_one_threshold_within_the_loss_budget() -> None:
    pytest.importorskip("torch")
    import gzip

    from miner.classify.early_exit import MAX_LOSS, fit_exits
    from miner.classify.export import full_classifier
    from miner.classify.meta import ModelMeta
    from miner.classify.model import default_model_dir

    models = default_model_dir()
    meta = ModelMeta.read(models / "model.json")
    with gzip.open(Path(__file__).resolve().parents[1] / "miner" / "data" / "sentitel-2019.jsonl.gz", "rt") as fh:
        texts = [json.loads(line)["text"] for line in fh]  # 5,355 real posts; fewer fit probes too poor to use
    full = full_classifier(models, meta.graphs, models / "tokenizer.json", meta.max_length)
    layers = [e.layer for e in meta.exits if e is not None]
    exits, check = fit_exits(full, texts[:2355], texts[2355:], meta.threshold, layers, 6, seed=13)
    assert check.n == 1500 and check.layers == tuple(layers) and len(exits) == len(layers)
    assert all(e is not None and e.threshold == check.thresholds[0] > 0 for e in exits)
    assert check.dropped <= int(MAX_LOSS * check.full_positives)
    assert sum(check.stop_rates) == pytest.approx(check.exit_rate) and 0 < check.exit_rate < 1
    assert layers[0] < check.layers_per_post < 6  # every post runs the first stage, few run them all


def test_export_ships_fp32_graphs_when_int8_disagrees_too_often(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from miner.classify.export import export_all, full_classifier
    from miner.classify.train import base_model_dir, new_model

    tok = base_model_dir() / "tokenizer.json"
    texts = [text for _, text, *_ in ROWS]
    # No agreement can reach 1.01, so the fp32 fallback always runs.
    names, check = export_all(new_model(13), tmp_path, tok, 64, texts, 0.5, min_agreement=1.01)
    assert check.n == len(texts) and all(".fp32." in n for n in names)
    assert sorted(p.name for p in tmp_path.glob("*.onnx")) == sorted(names)  # the int8 files are gone
    scores, _ = full_classifier(tmp_path, names, tok, 64).scores(texts)
    assert scores.shape == (len(texts),) and np.all((scores >= 0) & (scores <= 1))


def test_rdrop_consistency_is_a_symmetric_bernoulli_kl() -> None:
    pytest.importorskip("torch")
    import math

    import torch

    from miner.classify.train import bernoulli_sym_kl

    p, q = torch.tensor([0.9, 0.2]), torch.tensor([0.6, 0.2])
    first = 0.9 * math.log(0.9 / 0.6) + 0.1 * math.log(0.1 / 0.4)  # KL(p1 || q1); the second pair is equal
    second = 0.6 * math.log(0.6 / 0.9) + 0.4 * math.log(0.4 / 0.1)  # KL(q1 || p1)
    by_hand = 0.5 * (first + second) / 2
    assert float(bernoulli_sym_kl(p, q)) == pytest.approx(by_hand, rel=1e-4)
    assert float(bernoulli_sym_kl(q, p)) == pytest.approx(by_hand, rel=1e-4)
    assert float(bernoulli_sym_kl(p, p)) == pytest.approx(0.0, abs=1e-6)


def test_rdrop_option_changes_what_training_learns(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    import torch

    from miner.classify.recipe import TrainConfig
    from miner.classify.train import train_model

    posts = load_labelled(_write(tmp_path / "t.jsonl", ROWS))
    plain = train_model(posts, TrainConfig(epochs=1, batch_size=8, rdrop=0.0))
    again = train_model(posts, TrainConfig(epochs=1, batch_size=8, rdrop=0.0))
    rdrop = train_model(posts, TrainConfig(epochs=1, batch_size=8, rdrop=1.0))
    w = "outage.weight"
    assert torch.equal(plain.state_dict()[w], again.state_dict()[w])  # same seed, same path
    assert not torch.allclose(plain.state_dict()[w], rdrop.state_dict()[w])


def test_train_cli_writes_to_the_models_the_classifier_reads_by_default(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # The default was "models" in the current folder: from any other folder than the project's, a model the
    # classifier never read (its default is the project's models/, as --extra's is the project's labels).
    import click

    from miner.classify.model import default_model_dir
    from miner.cli.train_cmds import train_cmd

    monkeypatch.chdir(tmp_path)
    [out] = [p for p in train_cmd.params if p.name == "out"]
    assert Path(str(out.get_default(click.Context(train_cmd)))) == default_model_dir()

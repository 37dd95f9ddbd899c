"""A wheel built from the project installs with the shipped model and classifies away from the checkout."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# What pyproject.toml builds from (readme, license-files, the packages, miner.models' folder). The build runs on a
# copy: it leaves build/ and miner.egg-info/ where it runs, and a stale build/ of the checkout would go into the wheel.
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "NOTICE", "miner", "models")
# Offline and deaf to the user's pip configuration (an extra index, a cache): nothing here may be fetched.
PIP_ENV = {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}


def _cannot_build() -> str | None:
    """Why this Python cannot build the wheel without a network, or None."""
    if importlib.util.find_spec("pip") is None:
        return "pip is not installed in this Python: cannot build or install the wheel"
    try:
        version = metadata.version("setuptools")
    except metadata.PackageNotFoundError:
        return "setuptools is not installed in this Python: cannot build the wheel offline (--no-build-isolation)"
    if int(version.split(".")[0]) < 77:
        return f"setuptools {version} is older than pyproject.toml's build requirement (setuptools>=77)"
    return None


def _pip(*args: str) -> None:
    res = subprocess.run([sys.executable, "-m", "pip", *args, "--no-index", "--no-cache-dir", "-q"],
                         capture_output=True, text=True, env={**os.environ, **PIP_ENV}, timeout=180)
    assert res.returncode == 0, f"pip {args[0]} failed:\n{res.stdout}\n{res.stderr}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if reason := _cannot_build():
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, src / name)
    _pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(src))
    (built,) = (tmp / "dist").glob("miner-*.whl")
    return built


@pytest.fixture(scope="module")
def site_dir(wheel: Path) -> Path:
    target = wheel.parent.parent / "site"
    _pip("install", "--no-deps", "--target", str(target), str(wheel))
    return target


def _run(site_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -S ARGS`` in a folder outside the checkout, importing miner from ``site_dir`` only.

    -S leaves site-packages (and its .pth files, such as an editable install's finder pointing at a checkout) out;
    the dependencies come from this Python's site-packages, after the installed wheel on the path.
    """
    deps = [*site.getsitepackages(), site.getusersitepackages()]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MINER_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(site_dir), *deps])
    work = site_dir.parent / "elsewhere"
    work.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-S", *args], cwd=work, capture_output=True, text=True, env=env,
                          timeout=120)


def test_wheel_ships_the_serving_files_and_every_module(wheel: Path) -> None:
    meta = json.loads((ROOT / "models" / "model.json").read_text(encoding="utf-8"))
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    models = {n.removeprefix("miner/models/") for n in names if n.startswith("miner/models/")}
    assert models >= {"model.json", meta["tokenizer"], *meta["graphs"], "MODEL_CARD.md"}
    assert "oof.jsonl" not in models  # training's out-of-fold scores: not served
    with zipfile.ZipFile(wheel) as zf:  # the packaged copy's tokenizer is the one its model.json records
        packaged = json.loads(zf.read("miner/models/model.json"))
        tokenizer = zf.read(f"miner/models/{meta['tokenizer']}")
    assert packaged["tokenizer_sha256"] == hashlib.sha256(tokenizer).hexdigest()
    # pyproject.toml lists the packages (miner.models is mapped, so not found): a new subpackage left out of the
    # list would be missing from every install but a checkout's.
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "miner").rglob("*.py")}
    assert modules - names == set()


def test_installed_wheel_classifies_with_its_own_model(site_dir: Path) -> None:
    code = ("import json, miner; from miner.classify import ClassifierSettings, load_classifier; "
            "from miner.classify.model import default_model_dir; "
            "clf = load_classifier(ClassifierSettings()); "
            "print(json.dumps([miner.__file__, str(default_model_dir()), clf.version]))")
    res = _run(site_dir, "-c", code)
    assert res.returncode == 0, res.stderr
    package, model_dir, version = json.loads(res.stdout)
    assert Path(package) == site_dir / "miner" / "__init__.py"
    assert Path(model_dir) == site_dir / "miner" / "models"
    assert version == json.loads((ROOT / "models" / "model.json").read_text(encoding="utf-8"))["version"]

    posts = site_dir.parent / "elsewhere" / "posts.jsonl"
    posts.write_text("".join(json.dumps({"id": i, "text": t}) + "\n"
                             for i, t in enumerate(["whatsapp is down again, no messages going out", "calm down"])))
    res = _run(site_dir, "-m", "miner", "classify", posts.name)
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [(r["id"], r["outage"]) for r in rows] == [(0, 1), (1, 0)]
    assert rows[0]["symptom"] is not None and rows[1]["symptom"] is None

"""Shared fixtures: a real SQLite store in a temporary folder, the CLI runner, an HTTP server on 127.0.0.1."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakeserver import FakeServer

from miner.classify import Classifier, load_classifier
from miner.classify.settings import ClassifierSettings
from miner.store import Store

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        yield fake


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "miner.sqlite")
    yield s
    s.close()


@pytest.fixture
def sigint_as_from_a_terminal() -> Iterator[None]:
    """SIGINT handled as Python starts it (KeyboardInterrupt here, the default in the commands started), as a
    terminal's Ctrl-C finds it, whatever the suite started with or an earlier test left. Tests run in the background
    of a shell without job control (a CI script's `make test &`) start with SIGINT ignored, which the commands would
    inherit and, rightly, keep: a SIGINT would do nothing."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if before is None else before)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="session")
def classifier() -> Classifier:
    """The shipped model, loaded once."""
    return load_classifier(ClassifierSettings())


@pytest.fixture(scope="session")
def real_posts(classifier: Classifier) -> dict[str, list[str]]:
    from streams import split_by_model

    return split_by_model(classifier)

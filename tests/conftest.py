"""Shared fixtures: a real SQLite store in a temporary folder, the CLI runner, an HTTP server on 127.0.0.1."""

from __future__ import annotations

import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fakeserver import FakeServer

from miner.classify import Classifier, load_classifier
from miner.classify.settings import ClassifierSettings
from miner.store import Store

ROOT = Path(__file__).resolve().parent.parent


# SQLite before 3.32 (Ubuntu 20.04's 3.31, RHEL 8's 3.26) refuses a statement with more than 999 bound variables.
OLD_VARIABLE_LIMIT = 999


@pytest.fixture(autouse=True, scope="session")
def old_sqlite_variable_limit() -> Iterator[None]:
    """Every connection opened in the tests' process allows OLD_VARIABLE_LIMIT bound variables, as those libraries
    do: a statement with a mark per value of a long list then fails in this suite, on any SQLite, and not only for
    the users of such a system."""
    connect = sqlite3.connect

    def limited(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = connect(*args, **kwargs)
        conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, OLD_VARIABLE_LIMIT)
        return conn

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sqlite3, "connect", limited)
        yield


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
def no_proxy_nor_trust(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy and no CA file or folder from the environment (either case: httpx and urllib read both): a test of
    what a network failure says must reach its 127.0.0.1 server directly, trusting certifi's CAs alone."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


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

"""Command-line interface. Each stage's commands live in their own module and register on ``main``."""

from miner.cli.app import main

# Imported for their side effect of registering commands on `main`.
from miner.cli import core_cmds  # noqa: F401  isort: skip
from miner.cli import pipeline_cmds  # noqa: F401  isort: skip
from miner.cli import reclassify_cmd  # noqa: F401  isort: skip
from miner.cli import service_cmds  # noqa: F401  isort: skip
from miner.cli import detect_cmds  # noqa: F401  isort: skip
from miner.cli import classify_cmds  # noqa: F401  isort: skip
from miner.cli import train_cmds  # noqa: F401  isort: skip
from miner.cli import alert_cmds  # noqa: F401  isort: skip

__all__ = ["main"]

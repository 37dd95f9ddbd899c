"""What `miner run` does before it listens: the command line's imports, in a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_command_line_loads_without_the_collectors_the_store_or_the_detector() -> None:
    # Each command module imported what its commands use at its top, and the command line loads every module: any
    # command, `miner run` included, waited 0.55 s for the collectors (httpx), the store and the detector before it
    # did anything, 0.3 s of it for modules that only `classify`, `digest`, `silence` and `detect` use.
    loaded = subprocess.run([sys.executable, "-c", "import sys, miner.cli; print(' '.join(sorted(sys.modules)))"],
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, check=True)
    modules = set(loaded.stdout.split())
    assert "miner.cli" in modules
    assert not (heavy := modules & {"miner.collectors", "miner.store", "miner.detect", "miner.replay", "httpx"}), heavy

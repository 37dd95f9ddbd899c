"""Running a script that steps a signal through each point of a wait or a handler where the main thread runs pending
handlers (test_first_signal, test_second_signal, test_service_stop_signal): in a subprocess, so that a handler
waiting for ever fails the test rather than hanging the suite.

The script prints "alone: OUTCOME" (no signal raised), then "STEP/LAST: OUTCOME" for each step."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def stepped(script: str, *args: str) -> tuple[str, list[str]]:
    """The outcome of ``script`` run with ``args`` alone, and of each step."""
    try:
        proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=ROOT,
                              timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    except subprocess.TimeoutExpired as exc:  # killed: the step after the last printed never ended
        raise AssertionError(f"a handler waited for ever; the steps before:\n{exc.stdout!r}") from None
    assert proc.returncode == 0, proc.stderr
    alone, *steps = proc.stdout.splitlines()
    assert alone.startswith("alone: "), proc.stdout
    assert len(steps) >= 10, proc.stdout  # the wait's or the handler's calls (the lock, is_set, set...), each a step
    return alone.removeprefix("alone: "), steps


def not_ending(steps: list[str], outcome: str) -> list[str]:
    """The steps whose outcome is not ``outcome``."""
    return [step for step in steps if not step.endswith(f": {outcome}")]

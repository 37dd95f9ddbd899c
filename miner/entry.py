"""The `miner` command's entry point (and `python -m miner`'s).

Loading the command line takes most of a second (numpy, httpx, ONNX Runtime's bindings), before the commands'
own SIGINT handling (miner/cli/stopping.py) is in place: a Ctrl-C then ended in a KeyboardInterrupt traceback.
It ends as an interrupted command does: one line and exit 130.
"""

from __future__ import annotations

import signal
import sys


def main() -> None:
    try:
        from miner.cli import main as cli
    except KeyboardInterrupt:
        sys.stderr.write(f"Interrupted by {signal.Signals.SIGINT.name}\n")
        raise SystemExit(128 + signal.SIGINT) from None
    cli()

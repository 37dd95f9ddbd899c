"""The `miner` command's entry point (and `python -m miner`'s).

Loading the command line takes most of a second (numpy, httpx, ONNX Runtime's bindings), before the commands'
own SIGINT handling (miner/cli/stopping.py) is in place: a Ctrl-C then ended in a KeyboardInterrupt traceback.
It ends as an interrupted command does: one line and exit 130.

A SIGHUP in that time is held until the command is known: `miner run` reloads at SIGHUP, and its default action
killed the service on the spot (a `systemctl reload` right after a start); any other command gets it then, as it
would have.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

_held_hup = False  # a SIGHUP came while it was held
_holding = False


def hold_hup(signum: int, frame: FrameType | None) -> None:
    global _held_hup
    _held_hup = True


def take_held_hup() -> bool:
    """For `miner run`, whose handlers are now in place: whether a SIGHUP came while it was held."""
    global _held_hup, _holding
    held, _held_hup, _holding = _held_hup, False, False
    return held


def release_hup() -> None:
    """For any other command: SIGHUP's default action back, and a SIGHUP held meanwhile delivered now."""
    global _holding
    if _holding:
        _holding = False
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        if take_held_hup():
            os.kill(os.getpid(), signal.SIGHUP)


def main() -> None:
    global _holding
    if signal.getsignal(signal.SIGHUP) == signal.SIG_DFL:  # ignored (nohup): `miner run` takes it all the same
        signal.signal(signal.SIGHUP, hold_hup)
        _holding = True
    try:
        from miner.cli import main as cli
    except KeyboardInterrupt:
        sys.stderr.write(f"Interrupted by {signal.Signals.SIGINT.name}\n")
        raise SystemExit(128 + signal.SIGINT) from None
    cli()

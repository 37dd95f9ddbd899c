"""The `miner` command's entry point (and `python -m miner`'s).

Loading the command line takes most of a second (numpy, httpx, ONNX Runtime's bindings), before the commands'
own SIGINT handling (miner/cli/stopping.py) is in place: a Ctrl-C then ended in a KeyboardInterrupt traceback.
It ends as an interrupted command does: one line and exit 130.

A SIGHUP in that time is held until the command is known: `miner run` reloads at SIGHUP, and its default action
killed the service on the spot (a `systemctl reload` right after a start); any other command gets it then, as it
would have. Held too when the process started with SIGHUP ignored (`nohup`): `miner run` reloads at a SIGHUP all the
same once started, and one sent while it started was dropped; any other command goes on ignoring it.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

_held_hup = False  # a SIGHUP came while it was held
_holding = False
_ignored = False  # SIGHUP was ignored when the process started (nohup)


def hold_hup(signum: int, frame: FrameType | None) -> None:
    global _held_hup
    _held_hup = True


def take_held_hup() -> bool:
    """For `miner run`, whose handlers are now in place: whether a SIGHUP came while it was held."""
    global _held_hup, _holding
    held, _held_hup, _holding = _held_hup, False, False
    return held


def unheld() -> signal.Handlers:
    """What SIGHUP did before the hold: what a command puts back once it no longer takes SIGHUP itself."""
    return signal.SIG_IGN if _ignored else signal.SIG_DFL


def release_hup() -> None:
    """For any other command: SIGHUP's disposition before the hold back, and a SIGHUP held meanwhile delivered now
    (dropped where it was ignored, as it would have been)."""
    global _holding
    if _holding:
        _holding = False
        signal.signal(signal.SIGHUP, unheld())
        if take_held_hup() and not _ignored:
            os.kill(os.getpid(), signal.SIGHUP)


def main() -> None:
    global _holding, _ignored
    before = signal.getsignal(signal.SIGHUP)
    if before in (signal.SIG_DFL, signal.SIG_IGN):  # not one a program embedding miner set
        _ignored = before == signal.SIG_IGN
        signal.signal(signal.SIGHUP, hold_hup)
        _holding = True
    try:
        from miner.cli import main as cli
    except KeyboardInterrupt:
        sys.stderr.write(f"Interrupted by {signal.Signals.SIGINT.name}\n")
        raise SystemExit(128 + signal.SIGINT) from None
    cli()

"""A second SIGINT or SIGTERM stops a command that stops gracefully (miner.cli.stopping.stop_on_signal) at once, with
the second's exit status, wherever it lands in the main thread's handling of the first.

Python runs a signal's handler between two bytecodes of the main thread, those of another signal's handler too. The
interleavings are stepped here, not left to chance: a profile hook raises the second signal at each call and return
the first's handling makes, which is where the main thread runs pending handlers. In a subprocess, so that a handler
waiting for ever fails this test rather than hanging the suite."""

from __future__ import annotations

import textwrap

from signal_steps import not_ending, stepped

STEPS = textwrap.dedent("""
    import signal, sys
    from miner.cli.stopping import Interrupted, stop_on_signal

    signal.signal(signal.SIGINT, signal.default_int_handler)  # as from a terminal, whatever this was started with
    signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def run(step):
        # The first signal, SIGINT, and at the step-th event of its handling (0: none) a SIGTERM.
        events, block_ended = [0], False

        def hook(frame, event, arg):
            events[0] += 1
            if events[0] == step:
                signal.raise_signal(signal.SIGTERM)  # its handler runs here, as the first's makes this call

        try:
            with stop_on_signal("it stops"):
                sys.setprofile(hook)
                try:
                    signal.raise_signal(signal.SIGINT)
                finally:
                    sys.setprofile(None)
                block_ended = True
        except Interrupted as exc:
            return events[0], f"{signal.Signals(exc.signum).name} {'at the end' if block_ended else 'at once'}"
        return events[0], "not interrupted"

    # The first event is raise_signal's call, before the SIGINT is raised; the last its return, once it is handled.
    last, alone = run(0)
    print("alone:", alone)
    for step in range(2, last):
        print(f"{step}/{last}:", run(step)[1], flush=True)
""")


def test_a_second_signal_in_the_first_ones_handler_stops_at_once_with_its_own_status() -> None:
    # A SIGTERM landing before the SIGINT's handler had set the stop was taken for a first: the SIGINT's handler then
    # found the stop set, and the command exited 130 at once as if the SIGINT had come second (or it stopped after
    # the grace, 130 too); one landing while it set the stop waited on the stop's lock for ever, whatever signal came
    # next.
    alone, steps = stepped(STEPS)
    assert alone == "SIGINT at the end"  # one signal: the block ran to its end, and exits as interrupted
    assert not_ending(steps, "SIGTERM at once") == []

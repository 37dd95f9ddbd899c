"""A first SIGINT or SIGTERM stops a command that stops gracefully (miner.cli.stopping.stop_on_signal) at the end of
its step, wherever it lands in the command's own wait on the stop: `miner collect` waits on it between rounds.

As in test_second_signal: a profile hook raises the signal at each call and return the wait makes, which is where the
main thread runs pending handlers; in a subprocess, so that a handler waiting for ever fails this test rather than
hanging the suite."""

from __future__ import annotations

import textwrap

from signal_steps import not_ending, stepped

STEPS = textwrap.dedent("""
    import signal, sys
    from miner.cli.stopping import Interrupted, stop_on_signal

    signal.signal(signal.SIGINT, signal.default_int_handler)  # as from a terminal, whatever this was started with

    def run(step):
        # A wait on the stop, and at the step-th event of it (0: none) a SIGINT.
        events, block_ended = [0], False

        def hook(frame, event, arg):
            events[0] += 1
            if events[0] == step:
                signal.raise_signal(signal.SIGINT)  # its handler runs here, as the wait makes this call

        try:
            with stop_on_signal("it stops") as stop:
                sys.setprofile(hook)
                try:
                    stop.wait(0.01)
                finally:
                    sys.setprofile(None)
                block_ended = stop.is_set()
        except Interrupted as exc:
            return events[0], f"{signal.Signals(exc.signum).name} {'at the end' if block_ended else 'at once'}"
        return events[0], "not interrupted"

    last, alone = run(0)
    print("alone:", alone)
    for step in range(1, last + 1):
        print(f"{step}/{last}:", run(step)[1], flush=True)
""")


def test_a_first_signal_in_the_commands_wait_on_the_stop_stops_it_at_the_end_of_its_step() -> None:
    # threading.Event's lock is not reentrant: a SIGINT whose handler ran while the wait held it (as it starts or ends
    # waiting) set the stop, which took the same lock again, and the command hung until a second signal.
    alone, steps = stepped(STEPS)
    assert alone == "not interrupted"
    assert not_ending(steps, "SIGINT at the end") == []

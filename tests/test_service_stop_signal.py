"""`miner run`'s SIGTERM (or SIGINT) stops the service wherever it lands in the main thread's wait for the stop, which
it starts and ends once a second (Service.run_started).

As in test_second_signal: a profile hook raises the signal at each call and return the wait makes, which is where the
main thread runs pending handlers, here miner.service_reload's; in a subprocess, so that a handler waiting for ever
fails this test rather than hanging the suite."""

from __future__ import annotations

import textwrap
from pathlib import Path

from signal_steps import not_ending, stepped

STEPS = textwrap.dedent("""
    import signal, sys
    from pathlib import Path
    from miner.config import load_config
    from miner.service import Service, ServiceOptions
    from miner.service_reload import Signals

    folder = Path(sys.argv[1])
    config = load_config(folder / "feeds.toml")

    def run(step):
        # The wait of run_started, and at the step-th event of it (0: none) a SIGTERM.
        service = Service(config, folder / "miner.sqlite", ServiceOptions(jobs=(), http=False))
        signals = Signals()
        signals.service = service  # as service_reload sets it once the service has started
        events = [0]

        def hook(frame, event, arg):
            events[0] += 1
            if events[0] == step:
                signal.raise_signal(signal.SIGTERM)  # its handler runs here, as the wait makes this call

        with signals.installed():
            sys.setprofile(hook)
            try:
                service._stop.wait(0.01)
            finally:
                sys.setprofile(None)
        return events[0], "stopping" if signals.stop and service._stop.is_set() else "running"

    last, alone = run(0)
    print("alone:", alone)
    for step in range(1, last + 1):
        print(f"{step}/{last}:", run(step)[1], flush=True)
""")


def test_a_sigterm_in_the_services_wait_for_the_stop_stops_it(tmp_path: Path) -> None:
    # threading.Event's lock is not reentrant: a SIGTERM whose handler ran while the wait held it (as it starts or
    # ends waiting, once a second) set the stop, which took the same lock again, and the service hung, every later
    # signal's handler with it, until systemd's SIGKILL lost its held polls.
    db = tmp_path / "miner.sqlite"
    (tmp_path / "feeds.toml").write_text(f'[store]\npath = "{db}"\n\n[[services]]\nname = "MTN"\n')
    alone, steps = stepped(STEPS, str(tmp_path))
    assert alone == "running"
    assert not_ending(steps, "stopping") == []

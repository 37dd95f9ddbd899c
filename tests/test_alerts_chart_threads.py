"""Charts drawn from short-lived threads, as the alert job's are after every reload, keep no font files open."""

from __future__ import annotations

import os
import threading
from datetime import timedelta
from pathlib import Path

from test_alerts_support import T0, open_incident, resolve, settings

from miner.alerts.charts import incident_chart
from miner.alerts.content import IncidentView, incident_view
from miner.store import Store


def _open_font_files() -> int:
    """Open fds of this process that point at a TrueType/OpenType font file."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the fd listdir itself used, closed since
            continue
        count += Path(target).suffix.lower() in (".ttf", ".otf")
    return count


def _charts_in_threads(view: IncidentView, threads: int) -> list[bytes]:
    """One chart from each of this many threads, all ended on return. Each waits for the others before it ends:
    an ended thread's id can be the next one's, and the service's threads of successive reloads have ids of their
    own (the threads of jobs that are not reloaded, and the HTTP server's, are alive in between)."""
    out: list[bytes] = []
    drawn = threading.Barrier(threads)

    def draw() -> None:
        out.append(incident_chart(view, T0 + timedelta(hours=2)))
        drawn.wait(timeout=60)

    workers = [threading.Thread(target=draw) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(out) == threads and all(png.startswith(b"\x89PNG") for png in out)
    return out


def test_charts_from_short_lived_threads_keep_no_more_font_files_open(store: Store) -> None:
    # matplotlib caches each thread's open fonts, keyed by thread id, and the cache outlives the thread: every
    # reload's new alert-job thread kept two more font files open (2 -> 12 fds over 13 reloads in a soak run).
    iid = open_incident(store, "WhatsApp", T0)
    resolve(store, iid, T0 + timedelta(minutes=40))
    view = incident_view(store, settings(), iid, T0 + timedelta(hours=2))
    assert view is not None
    _charts_in_threads(view, 1)
    first = _open_font_files()
    assert first > 0  # the count sees the fonts matplotlib holds, or the test would prove nothing
    _charts_in_threads(view, 8)
    assert _open_font_files() == first

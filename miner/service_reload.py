"""`miner run`'s signals: SIGTERM and SIGINT stop the service (SIGINT unless it was ignored at the start, as a script's
`miner run &` starts it), SIGHUP reloads its config.

At a SIGHUP the config file is read and checked again as `miner config check` checks it, while the service goes on
running. A config refused changes nothing: one error in the log, with the message `config check` gives (the key
and the line), and the service runs on with the config it has. A restart under a supervisor was the only way to
apply a change before, and a broken feeds.toml then left the service down, failing at every start.

A config accepted is first given a new service with its model loaded, its HTTP endpoint's socket bound if it
listens at another address, and its store's lock taken if it runs on another store, while the service runs on and
answers (:mod:`miner.service_switch`); a model refused there, a port taken or a store another process holds changes
nothing either, and is logged the same way, as nginx and Prometheus keep running with their old config when a new
one cannot be applied. Only then is
the service stopped as SIGTERM stops it (jobs finish their batch, held polls are stored, the HTTP server stops
accepting), but for the store lock, the polls still held, the report clients' rate limits and reporter key, and the
HTTP endpoint's listening socket if the new config listens at the same address (its new connections wait in the
backlog, for milliseconds), handed to the new service (:mod:`miner.service_handover`), which starts in the same
process: new scheduler, sources, routes, HTTP settings and model, as a restart would have them. The requests the
service stopped was still answering are waited for once the new one accepts, and its store closed then.
If that new service fails at start all the same (its store unreadable, or needing an upgrade it cannot have, or its
address taken by the service before under another name, as `localhost` for `127.0.0.1`, bound only once that one
has closed), the error is logged and the service starts again with the config it ran before: the config that ran a
moment ago is the one most likely to start, and a process that exited would be started again by its supervisor on
the new file, to fail the same way. Only when that start fails too does the command exit 1.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType

from miner.config import Config
from miner.entry import hold_hup, take_held_hup, unheld
from miner.errors import MinerError, StoreError
from miner.metrics import Metrics
from miner.service import Service
from miner.service_handover import Handover

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Signals:
    """What the signals asked for. :meth:`handle` is the handler (and a test's way to send one to a service run in
    a thread, where no handler can be set)."""

    def __init__(self) -> None:
        self.stop = False
        self.reload = False
        self.service: Service | None = None  # the one running, which a stop signal stops at once

    def handle(self, signum: int, frame: FrameType | None = None) -> None:
        if signum == signal.SIGHUP:
            # Read at the service's next tick (within a second): not in the handler, which may interrupt anything.
            self.reload = True
            return
        self.stop = True
        if (service := self.service) is not None:
            service.request_stop()

    @contextlib.contextmanager
    def installed(self) -> Iterator[Signals]:
        """Within the block, the three signals call :meth:`handle`; the handlers before it are put back after."""
        if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
            yield self
            return
        # SIGHUP too when it was ignored (nohup): a reload is what it asks for, and its default action killed the
        # service on the spot, mid-batch and without releasing anything. Not SIGINT when it was ignored: a shell
        # starts a script's background jobs so (`miner run &`), for a Ctrl-C at the script's terminal, which reaches
        # them too, to leave them running. Taken once started, it stopped the service all the same, while one sent
        # as the command line loaded was dropped; the other commands leave it ignored (miner.cli.stopping).
        # SIGTERM (systemd's, kill's) stops it either way.
        previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
        if previous[signal.SIGINT] == signal.SIG_IGN:
            del previous[signal.SIGINT]
        for sig in previous:
            signal.signal(sig, self.handle)
        if take_held_hup():  # one came while the command line loaded (miner/entry.py)
            self.reload = True
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                # The entry point's hold only bridged the start: after the service, a SIGHUP does what it did
                # before it (ignored under nohup).
                signal.signal(sig, unheld() if handler is hold_hup else handler)


@dataclasses.dataclass
class _Counts:
    """The reloads since the start, shown by each service's /metrics in turn (a new service has new metrics)."""

    success: int = 0
    failure: int = 0
    last_ok: bool = True
    last_success: float = dataclasses.field(default_factory=time.time)  # the start counts, as in Prometheus

    def show(self, metrics: Metrics) -> None:
        metrics.set("miner_config_reloads_total", float(self.success), result="success")
        metrics.set("miner_config_reloads_total", float(self.failure), result="failure")
        metrics.set("miner_config_last_reload_successful", 1.0 if self.last_ok else 0.0)
        metrics.set("miner_config_last_reload_success_timestamp_seconds", self.last_success)

    def count(self, ok: bool, metrics: Metrics) -> None:
        if ok:
            self.success, self.last_success = self.success + 1, time.time()
        else:
            self.failure += 1
        self.last_ok = ok
        self.show(metrics)


def _described(exc: Exception) -> str:
    return str(exc) if isinstance(exc, MinerError) else f"internal error: {type(exc).__name__}: {exc}"


class Reloader:
    """Runs the service ``make`` builds for ``config``, and a new one for each config ``reread`` returns at a
    SIGHUP, until SIGTERM or SIGINT."""

    def __init__(self, config: Config, reread: Callable[[], Config], make: Callable[[Config], Service],
                 signals: Signals | None = None) -> None:
        self.config = config
        self.reread = reread
        self.make = make
        self.signals = signals or Signals()
        self._counts = _Counts()
        self._next: Service | None = None  # prepared with the new config at a SIGHUP, started once the one before stops

    def run(self) -> None:
        """Returns once stopped by a signal; raises what a first start, or a start with both configs, raised, and a
        running service's fatal error (its store lost)."""
        with self.signals.installed():
            try:
                service = self._start(self.make(self.config))  # a first start that fails is the command's error
            except StoreError as exc:
                if not self.signals.stop:
                    raise
                # A stop asked for while the start waited for the store's write lock (another process upgrading
                # it) ends the wait: a stop, not the store's failure.
                log.info("stopped before the service started, while it waited for the store: %s", exc)
                return
            while True:
                self._next = None
                try:
                    service.run_started(functools.partial(self._tick, service))
                except BaseException:
                    # Stopped for a reload, and kept the lock for the next service (the store lost: finished its stop).
                    if self._next is not None:
                        service.handover().release()
                        self._next.discard()
                    raise
                if self._next is None:
                    return
                handover = service.handover()
                if self.signals.stop:
                    service.options.notify.stopping()
                    service.finish_stop()
                    handover.release()
                    self._next.discard()
                    return
                stopped, service = service, self._restart(handover, service)
                # The stopped service's parts refer to one another (its jobs, its endpoints and their callbacks), so
                # only a full collection frees it and its model, which Python's collector runs seldom: each reload
                # kept 30 MB or more, 140 MB grew to 630 MB over 40 reloads. After the new service's start, which
                # took its model loaded already: collected between the stop and the start, the endpoint waited for
                # it too (50-80 ms).
                del stopped
                gc.collect()

    def _start(self, service: Service, handover: Handover | None = None) -> Service:
        if handover is not None:
            service.take_over(handover)
        self.signals.service = service  # before its start, so that a SIGTERM meanwhile stops it once started
        if self.signals.stop:
            service.request_stop()
        service.start()
        self._counts.show(service.metrics)
        return service

    def _restart(self, handover: Handover, stopped: Service) -> Service:
        """The service prepared at the SIGHUP started, or else one with the config before; then the requests that
        ``stopped`` was answering are waited for (see Service.finish_stop), before its store's lock may go."""
        assert self._next is not None
        config = self._next.config
        if (service := self._start_new(handover)) is not None:
            self.config = config
            self._counts.count(True, service.metrics)
            log.info("config reloaded from %s", config.path)
            stopped.finish_stop()
            handover.release_untaken()  # the lock and held polls of another store
            return service
        # The service that failed, and the model it had loaded (a port taken is found after that), refer to one
        # another: collected now, as the stopped one is (see run).
        self.signals.service = None
        gc.collect()
        try:
            service = self._start(self.make(self.config), handover)
        except Exception:
            stopped.finish_stop()
            handover.release()
            log.error("the service did not start with the config it ran before either: exiting")
            raise
        stopped.finish_stop()
        self._counts.count(False, service.metrics)
        log.info("config reload failed: running with the config read before")
        service.options.notify.ready("running with the config read before: the new one's service did not start "
                                     "(see the log)")
        return service

    def _start_new(self, handover: Handover) -> Service | None:
        """The service prepared started, or None (logged) if it failed to start (its port taken, its store locked);
        the error, whose traceback holds the service that failed, is gone once this returns."""
        service, self._next = self._next, None
        assert service is not None
        try:
            return self._start(service, handover)
        except Exception as exc:  # the new service stopped what it had started, and left the lock handed over
            service.discard()  # what its claim took and the start did not stop: a socket bound for another address
            log.error("config reload failed: the service did not start with the new config: %s; starting it again "
                      "with the config it ran before", _described(exc), exc_info=not isinstance(exc, MinerError))
            return None

    def _tick(self, service: Service) -> bool:
        """Whether the running service should stop: a stop signal, or a SIGHUP with a config to restart with."""
        if self.signals.stop:
            return True
        if not self.signals.reload:
            return False
        self.signals.reload = False
        service.options.notify.reloading()  # READY again once the new service has started, or the config refused
        log.info("SIGHUP: reading the config again from %s", self.config.path)
        try:
            config = self.reread()
        except Exception as exc:  # nothing has stopped: a config refused changes nothing
            self._refused(service, exc)
            return False
        if (prepared := self._prepared(config, service)) is None:
            return False
        if self.signals.stop:  # came while the new model loaded
            prepared.discard()
            return True
        self._next = prepared
        service.hand_over()
        return True

    def _prepared(self, config: Config, service: Service) -> Service | None:
        """The service for ``config`` with its model loaded (see :mod:`miner.service_switch`), while ``service``
        runs on; None (logged, counted) if that failed, which changes nothing, as a config refused does."""
        changed = [f.name for f in dataclasses.fields(Config)
                   if f.compare and getattr(config, f.name) != getattr(self.config, f.name)]
        if changed:
            log.info("SIGHUP: the config changed (%s): restarting the service with it", ", ".join(changed))
        else:
            # Restarted all the same: the model folder, the CA file and the store may have changed under it.
            log.info("SIGHUP: the config is unchanged: restarting the service all the same, which reads the model "
                     "and the files the config names again")
        prepared = None
        try:
            prepared = self.make(config)
            prepared.claim(service)  # first: a port taken is told without a model loaded for nothing
            prepared.prepare()
        except Exception as exc:  # nothing has stopped: the service before runs on, as for a config refused
            if prepared is not None:
                prepared.discard()
            self._refused(service, exc)
            return None
        return prepared

    def _refused(self, service: Service, exc: Exception) -> None:
        """Count and log a reload refused before anything stopped (its config, or the model or files it names)."""
        self._counts.count(False, service.metrics)
        log.error("config reload failed, still running with the config read before: %s", _described(exc),
                  exc_info=not isinstance(exc, MinerError))
        service.options.notify.ready("running with the config read before: the new one was refused (see the log)")

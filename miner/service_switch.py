"""What a reload (:mod:`miner.service_reload`) does on each service to switch from one to the next: the new one is
prepared while the one before still runs, then the one before stops and hands its parts over, and the new one starts.

:meth:`ServiceSwitch.prepare` is the slow part of a start: the named files checked, the model loaded and the
sources' poller made. Done at the start, after the service before had stopped, the HTTP endpoint's connections
waited in the listen backlog for all of it (0.29 s with nobody accepting on 2 cores with the default model, 0.17 s
of it the model; the more with a larger model or a busy machine), within reach of a health check's short timeout
(0.5 s, as Kubernetes' and Consul's often are). Prepared first, the service before answers meanwhile, and what is
left between its stop and the new start is quick (about 12 ms): the store opened, the listener taken, the jobs
scheduled. The requests the service before is still answering are waited for after that start (``finish_stop``):
before it, a client still sending its request head kept the endpoint from accepting for up to 5 s.
A model refused, or a CA file gone, is found in the preparation, before anything stopped: the service before runs on
untouched. The price: both models are in memory at once while the new one loads, as both configs' workers are in nginx.
So are a new HTTP address taken and another store's lock held by another process (:meth:`ServiceSwitch.claim`): both
found at the new service's start before, after the service before had stopped, which was then started again, its
jobs, connections and endpoint anew (on another port, for port 0), the clients of its endpoint refused meanwhile.

A mixin of :class:`miner.service.Service`, which owns the parts handed over.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import TYPE_CHECKING, Any

from miner.config import Config
from miner.errors import MinerError
from miner.held_polls import HeldPolls
from miner.http_listener import Listener, bind, listen_at
from miner.report_intake import ReportIntake
from miner.service_handover import Handover
from miner.service_lock import ServiceLock

if TYPE_CHECKING:
    from miner.service import Service, ServiceOptions


class ServiceSwitch:
    config: Config
    options: ServiceOptions
    lock: ServiceLock
    _held: HeldPolls
    _reports: ReportIntake
    _classifier: Any  # the Classifier loaded, None before prepare
    _poller: Any  # the sources' Poller, None before prepare and after the stop
    _listener: Listener | None
    _keep_listener: bool
    _bound_early: bool
    _handing_over: bool
    _finish_later: bool
    _bound_ahead = False  # _listener is the one claim bound, while the service before ran

    def prepare(self) -> None:
        """The start's slow part, which needs neither the store nor the port: the model folder and CA file checked
        (with their key and line), the model loaded and the poller made. :meth:`start` does it if it was not done;
        a reload does it before the service it replaces stops. Raises what the start would (ModelError, ...)."""
        from miner.config_files import check_named_files

        check_named_files(self.config)
        self.load_parts()

    def load_parts(self) -> None:
        """The model and the poller: :meth:`prepare` but for the files' check, which a first start makes before it
        waits for the store."""
        from miner.classify import load_classifier
        from miner.collectors.poller import Poller

        base = Path(self.config.path).parent if self.config.path else None
        self._classifier = load_classifier(self.config.classifier, base_dir=base)
        self._poller = Poller.from_config(self.config)

    @property
    def prepared(self) -> bool:
        return self._poller is not None

    def claim(self, running: Service) -> None:
        """Before ``running`` stops for a reload to this service: bind this one's HTTP endpoint if it listens at another
        address than ``running`` (the same one is handed over), and take its store's lock if it runs on another store.
        Raises MinerError (the port taken, the store another process's), which refuses the reload with ``running``
        untouched, as a config refused is."""
        if (at := self._listen_at()) is not None and at != running._listen_at():
            try:
                self._listener, self._bound_ahead = bind(*at), True
            except OSError as exc:
                # Maybe taken by ``running`` itself, under another name for its address (localhost for 127.0.0.1,
                # 0.0.0.0 beside it): bound at the start, once it has closed, as before.
                bound = running.http_address
                if exc.errno != errno.EADDRINUSE or bound is None or bound[1] != at[1]:
                    raise MinerError(f"cannot listen on {at[0]}:{at[1]} ({exc.strerror or exc})") from None
        if self.lock.path != running.lock.path:
            self.lock.acquire()

    def discard(self) -> None:
        """Let go of what :meth:`prepare` and :meth:`claim` took, for a service that will not start (a stop came first,
        or its start failed)."""
        if self._poller is not None:
            self._poller.close()
            self._poller = None
        self._classifier = None
        if self._bound_ahead and self._listener is not None:
            self._listener.close()
            self._listener, self._bound_ahead = None, False
        if not self._handing_over:  # a lock handed over is for the service started again with the config before
            self.lock.release()

    def hand_over(self) -> None:
        """The stop to come is a reload's: the store lock and the polls held are kept for :meth:`handover` to give
        the next service, and so is the HTTP endpoint's listening socket; the requests being answered are waited
        for, and the store closed, at ``finish_stop``, once the new service accepts."""
        self._handing_over = self._keep_listener = self._finish_later = True

    def handover(self) -> Handover:
        return Handover(self.lock, self._held, self._reports.clients, listener=self._listener)

    def take_over(self, handover: Handover) -> None:
        """Before :meth:`start`: take what the service before handed over: its reports' clients, its HTTP endpoint's
        listening socket if this one listens at the same host and port, and the rest if it ran on this store."""
        self._reports.take_over(handover.reports)
        given = handover.give_listener(self._listen_at())  # None where claim bound one: closed for it
        if not self._bound_ahead:
            self._listener = given
            self._keep_listener = given is not None  # until started: a start that fails leaves it for the next
        handover.taken = handover.lock.path == self.lock.path
        if handover.taken:
            self.lock, self._held = handover.lock, handover.held
            self._handing_over = True  # until started: a start that fails leaves it for the next

    def listen_on(self, listener: Listener) -> None:
        """Before a first :meth:`start`: serve on ``listener``, which `miner run` bound before its imports
        (http_listener.bind_early) where this service listens; the start opens its endpoint on it at once, as on a
        socket of its own (one a reload handed over is answered on only once started)."""
        at = self._listen_at()
        if at is not None and listener.serves(*at):
            self._listener, self._bound_early = listener, True
        else:
            listener.close()

    def _listen_at(self) -> tuple[str, int] | None:
        """Where the HTTP endpoint listens (host, port: as configured, 0 for any), None if it does not."""
        return listen_at(self.config.server, self.options.http, self.options.http_port)

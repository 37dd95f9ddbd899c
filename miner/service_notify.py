"""`miner run` tells systemd how it is getting on: the service notification protocol of sd_notify(3), without
libsystemd (a datagram to the unix socket ``$NOTIFY_SOCKET`` names, abstract when it starts with ``@``).

With ``Type=simple`` systemd held the service started the moment the process forked, though its start may take
minutes (a store's upgrade, a wait for another process's, the model's load): ``systemctl start`` returned before the
service was up, a unit ordered after it started too early, ``systemctl reload`` returned before the reload was done,
and a scheduler that had stopped running jobs, the process alive, was never noticed. Under ``Type=notify`` (or
``notify-reload``, systemd 253 and later) it now sends:

- ``STATUS=`` with each phase of the start (``upgrading the store: migration 0022_text_links (20 of 38)``), then a
  short line once started (``systemctl status`` shows it);
- ``EXTEND_TIMEOUT_USEC=`` every :data:`EXTEND_EVERY` s while the start goes on, so that ``TimeoutStartSec`` does not
  kill a long upgrade: each asks for :data:`EXTEND_CHANCES` intervals more, so a late one is no timeout. A phase that
  lasts past :data:`PHASE_CAP` is no longer extended (the store's wait for another process gives up after 15
  minutes, and the slowest migration takes seconds at a million posts), so a start hung for good is still
  ended by systemd;
- ``READY=1`` (and ``MAINPID``, the first time) once the store is open, the model loaded and the jobs scheduled;
- ``RELOADING=1`` with ``MONOTONIC_USEC`` at a SIGHUP's reload and ``READY=1`` when it is done, whether the config
  was applied or refused (the service runs on either way; ``STATUS`` says which);
- ``STOPPING=1`` as the service begins to stop;
- ``WATCHDOG=1`` every half of ``$WATCHDOG_USEC`` (``WatchdogSec=``), or every :data:`EXTEND_EVERY` s where that is
  sooner, once ready, only while the service gets on with its jobs (``Service.stuck``): a job whose run has not
  ended for longer than /healthz's limit (three of its intervals and a minute; for the process job, with no batch
  classified in that time either; for the alerts job, no part of a backlog sent, and a limit of at least what its
  run may take: Service._limit), or a scheduler that no longer starts them, stops the pings, and systemd restarts
  the service. A job that fails (a source down, a full disk, a corrupt store) does not: it ends its runs, /healthz
  and the log say what fails, and a restart would fix none of it, only lose the polls held in memory and start
  again into the same failure.

A socket that is gone or refuses is logged once and never stops the service; one whose queue is full holds a
message up :data:`SEND_WAIT` at most.
Without ``$NOTIFY_SOCKET`` (not under systemd, or ``Type=simple``) nothing is sent.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

log = logging.getLogger("miner.service")  # one logger for the service and its parts, as operators filter on it

EXTEND_EVERY = 10.0  # seconds between EXTEND_TIMEOUT_USEC messages while the service starts
EXTEND_CHANCES = 3  # intervals each asks for: a message or two late (a busy machine) is not a timeout
SEND_WAIT = 1.0  # seconds a message waits for room in the socket's queue, then is given up
PHASE_CAP = 3600.0  # seconds in one phase of the start after which its start is no longer extended

# Why the watchdog is not pinged now (a job stuck), None when the service gets on with its jobs.
Check = Callable[[], "str | None"]


def socket_address(value: str) -> str | None:
    """The address ``$NOTIFY_SOCKET``'s ``value`` names, None for one this does not speak (vsock, a relative path)."""
    if value.startswith("@"):
        return "\0" + value[1:]  # an abstract socket (Linux): no file, the name starts with a NUL byte
    return value if value.startswith("/") else None


class Notifier:
    """What `miner run` sends to systemd, across the services a reload starts one after another (thread-safe).

    ``address`` is the socket's (None: nothing is sent), ``watchdog`` the watchdog's interval in seconds (None: no
    pings)."""

    def __init__(self, address: str | None = None, watchdog: float | None = None,
                 extend_every: float = EXTEND_EVERY, phase_cap: float = PHASE_CAP) -> None:
        self._address = address
        self._watchdog = watchdog if address is not None else None
        self._extend_every = extend_every
        self._phase_cap = phase_cap
        self._guard = threading.Lock()
        self._state = "starting"  # starting, ready, reloading, stopping
        self._armed = False  # READY sent once: systemd's watchdog runs from then on
        self._phase_since = time.monotonic()
        self._extended = 0.0  # monotonic, the last EXTEND_TIMEOUT_USEC
        self._check: Check | None = None  # the service started's; None between a reload's stop and the next start
        self._withheld: str | None = None  # why the pings stopped, while they are
        self._words = "running"  # the status once ready
        self._failed = False  # a send failed: logged once
        self._sock: socket.socket | None = None
        self.ticks = 0  # the watchdog thread's rounds once ready: a test waits for some to have passed
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        if address is not None:
            try:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                # A full queue (systemd busy) is waited for a moment, so that
                # READY=1 is not lost; a receiver that reads nothing holds the service up no longer than that.
                self._sock.settimeout(SEND_WAIT)
            except (OSError, AttributeError) as exc:  # no AF_UNIX (Windows)
                log.warning("cannot tell systemd how the service gets on: %s", exc)
                self._address = self._watchdog = None
                return
            self._thread = threading.Thread(target=self._run, name="miner-notify", daemon=True)
            self._thread.start()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Notifier:
        """The notifier that ``$NOTIFY_SOCKET``, ``$WATCHDOG_USEC`` and ``$WATCHDOG_PID`` ask for."""
        value = environ.get("NOTIFY_SOCKET", "")
        if not value:
            return cls()
        address = socket_address(value)
        if address is None:
            log.warning("NOTIFY_SOCKET=%s is neither a path nor an abstract socket (@name): systemd is not told how "
                        "the service gets on", value)
            return cls()
        watchdog = None
        usec, pid = environ.get("WATCHDOG_USEC", ""), environ.get("WATCHDOG_PID", "")
        if usec and (not pid or pid == str(os.getpid())):  # another PID's: a process that started this one
            try:
                watchdog = int(usec) / 1e6 if int(usec) > 0 else None
            except ValueError:
                log.warning("WATCHDOG_USEC=%s is not a number of microseconds: the watchdog is not pinged", usec)
        return cls(address, watchdog)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, *fields: str) -> bool:
        """One message of ``fields`` (``READY=1``, ...), one a line; whether the socket took it."""
        if self._sock is None or self._address is None:
            return False
        try:
            self._sock.sendto("\n".join(fields).encode("utf-8", "replace"), self._address)
        except OSError as exc:  # gone (systemd restarted without it), refused, full: the service runs on regardless
            if not self._failed:
                log.warning("cannot tell systemd how the service gets on (NOTIFY_SOCKET): %s; it runs on, and this "
                            "is logged once", exc)
            else:
                log.debug("NOTIFY_SOCKET: %s", exc)
            self._failed = True
            return False
        return True

    def status(self, words: str) -> None:
        """The start (or a reload's) is now at the phase ``words`` say; its timeout extended."""
        with self._guard:
            if self._state not in ("starting", "reloading"):
                return
            self._phase_since = self._extended = time.monotonic()
        self.send(f"STATUS={words}", *self._extend())

    def ready(self, words: str) -> None:
        """Started (or reloaded, or a reload refused): ``words`` are the status shown from now on."""
        with self._guard:
            first, self._armed, self._state, self._words = not self._armed, True, "ready", words
        self.send("READY=1", f"STATUS={words}", *([f"MAINPID={os.getpid()}"] if first else []))

    def reloading(self) -> None:
        with self._guard:
            self._state, self._phase_since = "reloading", time.monotonic()
        # CLOCK_MONOTONIC (time.monotonic_ns's on Linux): systemd takes the message as this reload's only if it is
        # dated after it sent the signal.
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}", "STATUS=reloading the config")

    def stopping(self) -> None:
        with self._guard:
            if self._state == "stopping":
                return
            self._state = "stopping"
        self.send("STOPPING=1", "STATUS=stopping: waiting for running jobs to finish their batch")

    def watch(self, check: Check) -> None:
        """Ping the watchdog while ``check`` (the service started's) finds nothing stuck."""
        with self._guard:
            self._check = check

    def unwatch(self, check: Check) -> None:
        """The service of ``check`` stopped: pings go on until the next one starts (a reload's switch, milliseconds)."""
        with self._guard:
            if self._check == check:
                self._check = None

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _extend(self) -> list[str]:
        return [f"EXTEND_TIMEOUT_USEC={round(EXTEND_CHANCES * self._extend_every * 1e6)}"]

    def _run(self) -> None:
        tick = min(self._extend_every, self._watchdog / 2 if self._watchdog is not None else self._extend_every)
        while not self._closed.wait(tick):
            now = time.monotonic()
            with self._guard:
                state, check, armed = self._state, self._check, self._armed
                extend = (state in ("starting", "reloading") and now - self._extended >= self._extend_every
                          and now - self._phase_since <= self._phase_cap)
                if extend:
                    self._extended = now
            if extend:
                self.send(*self._extend())
            if self._watchdog is not None and armed and state in ("ready", "reloading"):
                self._ping(check)
                self.ticks += 1

    def _ping(self, check: Check | None) -> None:
        try:
            why = None if check is None else check()
        except Exception as exc:  # a check that fails says nothing stuck: the pings go on, the error logged once
            why = None
            log.debug("the watchdog's check failed: %s", exc, exc_info=True)
        if why is None:
            if self._withheld is not None:
                log.warning("the service gets on with its jobs again: pinging systemd's watchdog again")
                self.send("WATCHDOG=1", f"STATUS={self._words}")
                self._withheld = None
            else:
                self.send("WATCHDOG=1")
            return
        if self._withheld is None:
            log.error("not pinging systemd's watchdog, which restarts the service: %s", why)
            self.send(f"STATUS=not pinging the watchdog: {why}")
        self._withheld = why

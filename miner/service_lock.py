"""One service per store: an exclusive advisory lock on ``<store>.lock`` holding the owner's PID and role.

`miner run` holds it, and so do `miner replay` and `miner demo`, which run the same stages on a simulated clock.
The lock is released by the kernel when the process dies, even by SIGKILL, so a crash never leaves a stale
lock behind; the PID and role in the file are only there to name the owner in the error. The file is emptied on a
clean release but keeps them after a SIGKILL, so whether a service holds the store is asked of the lock
(:func:`lock_owner`), never of that PID, which the system may since have given to another process.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from miner.errors import MinerError
from miner.urls import escape_controls

# A `miner status` asking whether the lock is held takes it shared for a moment (lock_owner): a service starting
# then finds it taken. Only a holder that is shared alone is such a question, never a rival (they hold it
# exclusive), so acquire asks again this many times, this far apart, before refusing.
PROBE_RETRIES = 50
PROBE_PAUSE_S = 0.01


class ServiceLock:
    def __init__(self, store_path: str | Path, role: str = "service") -> None:
        """``role``: what holds the lock, named to whoever is refused: service, replay or demo."""
        self.store_path = Path(store_path)
        # Beside the file the path leads to, as SQLite puts the -wal: a lock named after the path as given let a
        # replay naming the store by a symlink run beside the service that named it by its own name.
        self.path = Path(f"{os.path.realpath(store_path)}.lock")
        self.role = role
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            # E.g. a read-only folder: the service writes its store there too, so say what it needs.
            raise MinerError(
                f"cannot create the service lock {self.path} ({exc.strerror or exc}); "
                f"`miner {'run' if self.role == 'service' else self.role}` writes its store and this lock in that "
                "folder: check that it exists and is writable"
            ) from None
        if not _take_exclusive(fd):
            owner = os.pread(fd, 64, 0).decode("ascii", "replace").split()
            os.close(fd)
            # The file's text is anyone's who can write the store's folder: raw, an escape in it drove the terminal of
            # whoever was refused (as `miner status` writes it: status.running_text).
            pid = escape_controls(owner[0]) if owner else "unknown"
            role = escape_controls(owner[1]) if len(owner) > 1 else "service"  # an older miner's holds the PID alone
            raise MinerError(
                f"another miner {role} (pid {pid}) is already using {self.store_path}; "
                "stop it first, or give this one its own --db"
            ) from None
        os.ftruncate(fd, 0)
        # A full disk or quota: the lock is the flock, the PID only names its owner to a rival ("pid unknown").
        # Failing here was an "internal error" before the store could say what is wrong, and kept a service from
        # starting on a store it could run on once space is freed.
        with contextlib.suppress(OSError):
            os.pwrite(fd, f"{os.getpid()} {self.role}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ServiceLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def _take_exclusive(fd: int) -> bool:
    """Take the lock exclusive, False when a rival holds it. Refused while only shared holders hold it (a
    lock_owner asking), this asks again: else a `miner run` started as `miner status` asked would be refused."""
    for _ in range(PROBE_RETRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # held exclusive: a service, replay or demo
        fcntl.flock(fd, fcntl.LOCK_UN)
        time.sleep(PROBE_PAUSE_S)
    return False


def _lock_held(fd: int) -> bool | None:
    """Whether a process holds the lock open on ``fd``, asked by taking it shared without waiting and releasing it at
    once; None where the file system cannot say (flock refused: some NFS mounts without a lock daemon).

    An flock belongs to the open file, not the process: taken on this fd of its own, it never touches a holder's,
    even in the holder's own process (it is refused there as anywhere else), and closing this fd drops only this."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True  # alive, another user's
    except (OSError, OverflowError):  # OverflowError: a PID past what kill() takes
        return False
    return True


def lock_owner(store_path: str | Path) -> tuple[int | None, str] | None:
    """The PID and role of the process holding the store's lock, as its file names them (the PID None when the
    file does not name one: the holder could not write it, a full disk); None when no process holds it.

    Asked of the lock, not of the PID: a service killed by SIGKILL leaves its PID in the file, and once the system
    gives that PID to another process, kill(pid, 0) found a service running. Only where the lock cannot be asked
    (flock refused on this file system) is the PID's process being alive taken for a holder, as before."""
    try:
        fd = os.open(f"{os.path.realpath(store_path)}.lock", os.O_RDONLY)
    except OSError:
        return None  # no lock file: no service ever ran here (or it cannot be read: nor can a holder be named)
    try:
        held = _lock_held(fd)
        # Read after asking: a holder writes its PID once it holds the lock, so one taken as this asks is named.
        owner = os.pread(fd, 64, 0).decode("ascii", "replace").split()
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        pid: int | None = int(owner[0])
    except (ValueError, IndexError):
        pid = None
    if pid is not None and pid <= 0:  # kill(0 or -N, 0) asks of a process group, or of every process
        pid = None
    if held is None:
        held = pid is not None and _pid_alive(pid)
    if not held:
        return None
    return pid, owner[1] if len(owner) > 1 else "service"

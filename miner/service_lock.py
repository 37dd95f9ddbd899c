"""One service per store: an exclusive advisory lock on ``<store>.lock`` holding the owner's PID and role.

`miner run` holds it, and so do `miner replay` and `miner demo`, which run the same stages on a simulated clock.
The lock is released by the kernel when the process dies, even by SIGKILL, so a crash never leaves a stale
lock behind; the PID and role in the file are only there to name the owner in the error.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType

from miner.errors import MinerError
from miner.urls import escape_controls


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
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
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


def lock_owner(store_path: str | Path) -> tuple[int, str] | None:
    """The PID and role of the live process holding the store's lock, as its file names them; None when none does.
    Read without taking the lock, even shared for a moment: a service starting meanwhile would be refused."""
    try:
        owner = Path(f"{os.path.realpath(store_path)}.lock").read_text("ascii", "replace").split()
        pid = int(owner[0])
        if pid <= 0:  # kill(0 or -N, 0) asks of a process group, or of every process: no one process's PID
            return None
        os.kill(pid, 0)  # a process killed with SIGKILL left its PID in the file (released, it is emptied)
    except PermissionError:
        pass  # alive, another user's
    except (OSError, ValueError, IndexError, OverflowError):  # OverflowError: a PID past what kill() takes
        return None
    return pid, owner[1] if len(owner) > 1 else "service"

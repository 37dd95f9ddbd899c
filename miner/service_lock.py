"""One service per store: an exclusive advisory lock on ``<store>.lock`` holding the owner's PID.

The lock is released by the kernel when the process dies, even by SIGKILL, so a crash never leaves a stale
lock behind; the PID in the file is only there to name the owner in the error.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from miner.errors import MinerError


class ServiceLock:
    def __init__(self, store_path: str | Path) -> None:
        self.path = Path(f"{store_path}.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            # E.g. a read-only folder: the service writes its store there too, so say what it needs.
            raise MinerError(
                f"cannot create the service lock {self.path} ({exc.strerror or exc}); `miner run` writes its store "
                "and this lock in that folder: check that it exists and is writable"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise MinerError(
                f"another miner service (pid {owner}) is already using {self.path.with_suffix('')}; "
                "stop it first, or give this one its own --db"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
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

"""The service's store connections, one per job, and the watch on the store file they all write to.

SQLite connections are not shared across threads, and each job (and the HTTP endpoint's reports and scrapes)
runs on its own: each gets its own connection, opened on first use and closed after the store failed it. The
endpoint answers each request on a thread of its own, so its connections are used by one request at a time (a lock
each: the reports', the read API's, the scrapes'). A store
file deleted or replaced under the running service is noticed at the next use of any of them, and the service is
asked to stop rather than write on into a file nobody will see again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from miner.errors import StoreError
from miner.store import Store
from miner.store.upgrade import OnPhase
from miner.timeutil import utcnow

log = logging.getLogger("miner.service")


class JobStores:
    """``on_lost`` is called once, when the store file is found deleted or replaced."""

    def __init__(self, db_path: str, on_lost: Callable[[], None], stop: threading.Event | None = None) -> None:
        self.db_path = db_path
        self._on_lost = on_lost
        self._stop = stop  # set: an open waiting for another process's upgrade of the store gives up
        self.open: dict[str, Store] = {}
        self._guard = threading.Lock()
        self._file_id: tuple[int, int] | None = None  # (st_dev, st_ino) of the store file opened at start-up
        self._sidecar_ids: dict[str, tuple[int, int]] = {}  # the same for its -wal and -shm
        self.lost_reason: str | None = None
        self._file_lost = False  # the store file itself, not only its -wal or -shm, is no longer the one opened
        self._lost_guard = threading.Lock()

    def watch_file(self) -> None:
        """Remember which file the store is, once it is open: from now on another file at its path is a lost store."""
        if self.db_path != ":memory:":
            st = os.stat(self.db_path)
            self._file_id = (st.st_dev, st.st_ino)
            # SQLite deletes the -wal and -shm only when the last connection closes, and the start-up connection
            # stays open while the service runs: another file there, or none, is someone's doing (the -wal and -shm
            # deleted as for a restore, with the service still running).
            for side in ("-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    st = os.stat(self.db_path + side)
                    self._sidecar_ids[side] = (st.st_dev, st.st_ino)

    def lost(self) -> str | None:
        """Why the store file at db_path (or its -wal or -shm) is no longer the one opened at start-up, or None while
        it is.

        Deleted or replaced under the service, the old file lives on in its open connections: jobs would keep
        writing to it unseen, /healthz would stay ok, and the next connection or restart would create an empty
        store in its place. The first time this finds it so, it logs the error and calls ``on_lost``.
        """
        if self._file_id is None or self.lost_reason is not None:
            return self.lost_reason
        what = ""
        for side, file_id in (("", self._file_id), *self._sidecar_ids.items()):
            try:
                st = os.stat(self.db_path + side)
                same = (st.st_dev, st.st_ino) == file_id
            except (FileNotFoundError, NotADirectoryError):
                same = False
            if not same:
                what = side
                break
        else:
            return None
        with self._lost_guard:
            if self.lost_reason is None:
                self._file_lost = not what
                if what:
                    # The -wal holds every commit not yet copied into the store file: new connections (a restart,
                    # a `miner status`) saw none of them and a crash lost them all; with another -shm beside the
                    # service's, two processes index the -wal apart, and the next checkpoint can damage the store.
                    self.lost_reason = (f"store {self.db_path}: its {what} file was deleted or replaced while the "
                                        "service was running, so a new connection (a restart, a `miner status`) "
                                        "would not see, or could damage, the commits still in its -wal; stopping "
                                        "so that nothing more is written where nobody will see it")
                else:
                    self.lost_reason = (f"store {self.db_path} was deleted or replaced while the service was "
                                        "running; stopping so that nothing more is written to the lost file")
                log.error("%s", self.lost_reason)
                self._on_lost()
        return self.lost_reason

    def get(self, job: str, on_phase: OnPhase | None = None) -> Store:
        """``job``'s connection, opened (and the store upgraded) if it has none; ``on_phase`` is told of the
        upgrade's migrations and waits."""
        if lost := self.lost():
            raise StoreError(lost, cause="lost")
        with self._guard:
            if job not in self.open:
                self.open[job] = Store.open(self.db_path, stop=self._stop, on_phase=on_phase)
            return self.open[job]

    def forget(self, job: str) -> None:
        """Close ``job``'s connection after the store failed it: its next use opens a fresh one.

        SQLite opens a file it cannot write read-only without a word, and the connection stays so: one opened while
        the store was read-only (permissions, a remount) refused every report until a restart, long after the file
        was writable again."""
        with self._guard:
            store = self.open.pop(job, None)
        if store is not None:
            store.close()

    def close_all(self) -> None:
        """Close every connection; a lost store's last state is first saved beside its path (see _save_lost), and
        its -wal and -shm then removed from there (see _drop_lost_sidecars)."""
        saved = False
        if self.lost_reason is not None:
            self.lost_reason, saved = self._save_lost(self.lost_reason)
        with self._moved_aside(), self._guard:
            for store in self.open.values():
                store.close()
            self.open.clear()
        if saved and self._file_lost:
            self._drop_lost_sidecars()

    @contextlib.contextmanager
    def _moved_aside(self) -> Iterator[None]:
        """With only the store's -wal or -shm lost, the store file moved aside while its connections close, then put
        back as it was. The last connection's close checkpoints its -wal into a file still at its path: after a
        backup copied over the store (`cp`, which keeps the file) and the -wal and -shm deleted, as a restore is
        done, with the service still running, that close copied the service's pages over the backup's. SQLite does
        not checkpoint into a file that has moved (as after a restore done with `mv`)."""
        if self.lost_reason is None or self._file_lost or self.db_path == ":memory:":
            yield
            return
        real = Path(os.path.realpath(self.db_path))  # SQLite follows a symlink to the file it opens
        aside = real.with_name(f".{real.name}.closing-{os.getpid()}")
        try:
            real.rename(aside)
        except OSError as exc:
            log.warning("store %s: could not move it aside while its connections closed (%s): the last one's close "
                        "may copy the service's -wal into it", self.db_path, exc)
            yield
            return
        try:
            yield
        finally:
            if real.exists():  # put there meanwhile: kept, and so is the file moved aside
                log.error("store %s: another file was put there while the service closed it; the file that was "
                          "there is kept as %s", self.db_path, aside)
            else:
                aside.rename(real)

    def _save_lost(self, reason: str) -> tuple[str, bool]:
        # A deleted file is gone for good once its last connection closes: keep a copy of what it held.
        store = self.open.get("startup")
        if store is None:
            return reason, False
        target = Path(f"{self.db_path}.lost-{utcnow():%Y%m%dT%H%M%SZ}")
        try:
            store.backup(target, check=False)  # complete or not there at all; damaged or not, all there is
        except StoreError as exc:
            return f"{reason}; saving a copy of it failed too: {exc}", False
        return f"{reason}; a copy of its last state is saved as {target}", True

    def _drop_lost_sidecars(self) -> None:
        """Remove the lost store file's -wal and -shm, which its connections leave at the path (SQLite checkpoints
        and deletes them only for a file still there): the next open, a restart or a `miner status`, read them as
        those of the file now there (a backup restored with `mv`) and copied the lost file's pages over its own.
        Their commits are in the copy _save_lost made; a -wal or -shm that another process put there is left."""
        for side, file_id in self._sidecar_ids.items():
            path = self.db_path + side
            with contextlib.suppress(FileNotFoundError):
                st = os.stat(path)
                if (st.st_dev, st.st_ino) == file_id:
                    os.unlink(path)

"""Ports for the tests' servers without a race: a port picked by binding port 0 and closing the socket is anybody's
until the server binds it (another test's server, the ephemeral port of any outgoing connection), and on a loaded CI
runner a test then failed by chance with "address already in use", or talked to someone else's server.

Where the server is miner's own endpoint, it is given port 0 (`[server] port = 0`, `--port 0`,
``ServiceOptions(http_port=0)``) and the test reads the port it bound: from ``Service.http_address`` in the test's
process, from its log line (``http endpoint on http://HOST:PORT``, :func:`endpoint_port`) for `miner run` in a
subprocess. Where the test must know the port before the server binds it (a reload to another port, a server started
again on its port, a port that must refuse connections), it holds it with :func:`reserved_port`.
"""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from miner.service import Service

_ENDPOINT = re.compile(r"http endpoint on http://(?:\[[0-9a-fA-F:.]+\]|[^\s:/\"]+):(\d+)")


def reserve() -> socket.socket:
    """A socket bound to a free port on 127.0.0.1 with SO_REUSEADDR, not listening (close it when done): connections
    to the port are refused; the kernel gives it to no other socket binding port 0 and to no outgoing connection,
    which avoid a port bound by another socket; and a server binding it with SO_REUSEADDR (miner's endpoint,
    http.server's, asyncio's, all of which set it) still can, as Linux lets a socket bind beside ones that do not
    listen when every one of them sets SO_REUSEADDR."""
    sock = socket.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
    except BaseException:
        sock.close()
        raise
    return sock


@contextmanager
def reserved_port() -> Iterator[int]:
    """A port on 127.0.0.1 held as :func:`reserve` holds it, while the ``with`` block runs."""
    with reserve() as sock:
        yield int(sock.getsockname()[1])


def bound_port(service: Service) -> int:
    """The port a service's HTTP endpoint listens on (for a configured port 0: the one it bound); it must listen."""
    address = service.http_address
    assert address is not None, "the service's HTTP endpoint does not listen"
    return address[1]


def endpoint_port(lines: Iterable[str]) -> int | None:
    """The port of the last ``http endpoint on`` line of a log (text or JSON), None where there is none: the port
    the service bound, which is the one it listens on (a config's port 0 included)."""
    port = None
    for line in lines:
        if found := _ENDPOINT.search(line):
            port = int(found[1])
    return port


class LogReader:
    """A process's stderr (its log) read line by line by a thread, as it comes: a test can wait for a line while the
    process runs (:meth:`port`), and have the whole of it once the process has ended (:meth:`text`)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None, "stderr=subprocess.PIPE"
        self.proc = proc
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def port(self, timeout: float = 120.0) -> int:
        """The port the HTTP endpoint listens on, as its log names it: waits for the line."""
        deadline = time.monotonic() + timeout
        while (port := endpoint_port(list(self.lines))) is None:
            if self.proc.poll() is not None:
                raise AssertionError(f"exited ({self.proc.returncode}) without listening: {self.text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for the endpoint's line; the log: {''.join(self.lines)}")
            time.sleep(0.05)
        return port

    def text(self) -> str:
        """What the process has written to stderr so far: all of it once it has ended."""
        if self.proc.poll() is not None:
            self._thread.join(timeout=30)
        return "".join(self.lines)

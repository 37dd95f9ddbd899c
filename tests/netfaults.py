"""Real network failures on 127.0.0.1 for tests: TLS servers with a certificate that fails (self-signed, expired,
for another name), a plain server spoken to with TLS, a port nobody listens on, a server that accepts and never
answers, one that resets the connection. Each server is a thread holding a listening socket; closing it ends it."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from ports import reserved_port
from smtp_server import TEST_CERT, TEST_KEY

TLS_FIXTURES = Path(__file__).parent / "fixtures" / "tls"
EXPIRED = TLS_FIXTURES / "expired.pem", TLS_FIXTURES / "expired.key"  # certificate, key
WRONG_NAME = TLS_FIXTURES / "wrong.pem", TLS_FIXTURES / "wrong.key"  # for wrong.example only


def self_signed(folder: Path) -> tuple[Path, Path]:
    """The files of the self-signed certificate for 127.0.0.1 that nothing trusts unless told to."""
    (folder / "self.pem").write_text(TEST_CERT)
    (folder / "self.key").write_text(TEST_KEY)
    return folder / "self.pem", folder / "self.key"


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A port nothing listens on while the ``with`` block runs: reserved (ports.reserve), so that the kernel refuses
    connections to it and gives it to no server meanwhile, as it could a port bound and closed."""
    with reserved_port() as port:
        yield port


def _ok(conn: socket.socket) -> None:
    conn.recv(65536)
    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok")


def _reset(conn: socket.socket) -> None:
    # SO_LINGER with a zero time: close() sends a RST instead of a FIN.
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


@contextlib.contextmanager
def serving(handle: Callable[[socket.socket], None] | None, tls: tuple[Path, Path] | None = None,
            tls_max: ssl.TLSVersion | None = None) -> Iterator[int]:
    """A server on 127.0.0.1 whose port is yielded. ``handle``: what it does with each connection (None: holds it
    open and says nothing); ``tls``: (certificate, key) it does a TLS handshake with first, at no TLS version above
    ``tls_max``."""
    ctx = None
    if tls is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*tls)
        if tls_max is not None:
            ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            ctx.maximum_version = tls_max
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    done = threading.Event()

    def one(conn: socket.socket) -> None:
        try:
            if ctx is not None:
                conn = ctx.wrap_socket(conn, server_side=True)
            if handle is not None:
                handle(conn)
                conn.close()
            else:
                held.append(conn)
                done.wait()
        except (OSError, ssl.SSLError):  # the client gave up on the handshake, as the tests expect
            conn.close()

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=one, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        done.set()
        listener.close()
        for conn in held:
            conn.close()


def ok_server(tls: tuple[Path, Path] | None = None,
              tls_max: ssl.TLSVersion | None = None) -> contextlib.AbstractContextManager[int]:
    return serving(_ok, tls, tls_max)


def silent_server() -> contextlib.AbstractContextManager[int]:
    """Accepts the connection and never sends a byte."""
    return serving(None)


def resetting_server(read_first: bool = True) -> contextlib.AbstractContextManager[int]:
    """Resets each connection: after reading the request (``read_first``), or at once (a greeting never comes)."""
    def handle(conn: socket.socket) -> None:
        if read_first:
            conn.recv(65536)
        _reset(conn)
    return serving(handle)


def _read_request(conn: socket.socket) -> None:
    """Read one HTTP request whole: a socket closed with bytes unread sends a RST, not the FIN a test asked for."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        body += conn.recv(65536)


def closing_server(read_first: bool = True) -> contextlib.AbstractContextManager[int]:
    """Closes each connection cleanly (a FIN, no RST) without a word: after reading the request (``read_first``), or
    at once."""
    def handle(conn: socket.socket) -> None:
        if read_first:
            _read_request(conn)
    return serving(handle)


NOT_FOUND = socket.gaierror(socket.EAI_NONAME, "Name or service not known")


@contextlib.contextmanager
def unresolvable(error: socket.gaierror = NOT_FOUND) -> Iterator[None]:
    """Names ending in ".invalid" fail to resolve with ``error``, without a DNS query: a real lookup would leave
    loopback (the resolver may ask its servers), and what it answers depends on the machine (EAI_NONAME where a
    resolver answers, EAI_AGAIN where none can be reached). Every other name resolves as usual."""
    real = socket.getaddrinfo

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        if isinstance(host, str) and host.endswith(".invalid"):
            raise error
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    try:
        yield
    finally:
        socket.getaddrinfo = real


def dns_failure(name: str) -> str:
    """How miner tells that ``name`` was not found (a lookup under :func:`unresolvable`)."""
    return f"host name {name} not found (DNS: Name or service not known)"

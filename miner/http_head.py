"""The HTTP endpoint's reader of a request's head: the request line and headers, capped in all at MAX_HEAD bytes;
its target as a path, what it expects (Expect), the body length it declares, whether the Content-Type it declares
is JSON, and whether the host it names is one the endpoint answers as; and its body, read within a deadline."""

from __future__ import annotations

import http.client
import io
import ipaddress
import re
import socket
import time
from dataclasses import dataclass
from email.message import Message

# Bytes of request line and headers, in all. The stdlib alone takes 100 header lines of 64 KB each: 32 clients
# sending 6.4 MB apiece made the service (collectors, detector and alerts share its process) grow by a GB.
MAX_HEAD = 32768
# Sent before a report's body is read, to a client that waits for it (Expect: 100-continue, which curl sends for a
# body over 1 MiB or when told): one that got none sent the body only after a second (curl's wait), or never.
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# A URI scheme (RFC 3986 3.1): a target that starts with one is in absolute form.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


class HeadReader(io.BufferedIOBase):
    """The connection's reader, with what is read by lines (the request line and headers) capped at MAX_HEAD bytes
    in all; the body is read by read1, as much as Content-Length says."""

    def __init__(self, raw: io.BufferedIOBase) -> None:
        super().__init__()
        self._raw = raw
        self._first = True
        self.left = MAX_HEAD
        self.over = False

    def readline(self, size: int | None = -1, /) -> bytes:
        if self._first:  # the request line: over 64 KB the stdlib answers 414 itself
            self._first = False
            line = self._raw.readline(-1 if size is None else size)
            # Empty lines before it are skipped (RFC 9112 2.2: a client may end a body with an extra CRLF); the
            # stdlib read one as an empty request line and closed the connection unanswered.
            while line in (b"\r\n", b"\n"):
                if len(line) > self.left:
                    self.over = True  # no request line: the handler answers 431
                    break
                self.left -= len(line)
                line = self._raw.readline(-1 if size is None else size)
        else:
            cap = self.left + 1 if size is None or size < 0 else min(size, self.left + 1)
            line = self._raw.readline(max(cap, 0))
            if len(line) > self.left:
                self.over = True  # parse_request answers 431 for it
                raise http.client.LineTooLong(f"request line and headers over {MAX_HEAD} bytes")
        self.left -= len(line)
        return line

    def read1(self, size: int = -1, /) -> bytes:
        return self._raw.read1(size)

    def read(self, size: int | None = -1, /) -> bytes:
        return self._raw.read(size)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._raw.close()
        super().close()


@dataclass(frozen=True)
class Target:
    """What a request's line and headers ask for, beyond what the stdlib reads."""

    path: str  # in origin form: the path and the query, if any
    host: str | None  # the host it is sent to: an absolute-form target's authority, else the Host header's
    expects_continue: bool  # a 100 Continue is due before its body is read


def read_target(target: str, headers: Message, version: str) -> Target | tuple[int, str]:
    """What a request for ``target`` (its request line's) with ``headers`` in HTTP ``version`` asks for; else the
    (status, message) that refuses it.

    A target in absolute form (``http://host:port/path``, as some proxies send) is accepted, as RFC 9112 3.2.2 has
    a server do, its path and query taken from it, and its authority taking the place of Host: the stdlib looked
    it up as a path (404). An authority with user info (``http://allowed@other/``, which reads as ``allowed`` at a
    glance) or none is refused, like another scheme, and so is a request with more than one Host, or an HTTP/1.1
    one with none. An expectation
    other than 100-continue is refused 417 (RFC 9110 10.1.1); 100-continue is ignored in an HTTP/1.0 request, whose
    client cannot take a 100."""
    path, host = target, headers.get("Host")
    # RFC 9112 3.2: one Host only. The first was taken, so `Host: allowed` then `Host: other` passed allowed_hosts
    # where a proxy or a cache in front may have gone by the other.
    if len(headers.get_all("Host") or []) > 1:
        return 400, "a request must have one Host header, not several"
    # And an HTTP/1.1 request without one (every HTTP/1.1 client sends it, empty for a target without a host) is a
    # 400 too, absolute form or not; HTTP/1.0 has none to require.
    if host is None and _version(version) >= (1, 1):
        return 400, "an HTTP/1.1 request must have a Host header"
    if not target.startswith("/") and (scheme := _SCHEME.match(target)) is not None:
        if scheme.group().lower() not in ("http:", "https:") or not target[scheme.end():].startswith("//"):
            return 400, "the request target must be a path or an http URL"
        rest = target[scheme.end() + 2:]
        end = min((at for at in map(rest.find, "/?#") if at >= 0), default=len(rest))
        host, path = rest[:end], rest[end:]
        if not host or "@" in host:
            return 400, "the request target's URL must name a host, without user info"
        # As the stdlib does for a path of its own: "//name" would read as another host to a client it is sent back to
        path = "/" + path.lstrip("/")
    expected = {value.strip().lower() for values in headers.get_all("Expect") or [] for value in values.split(",")}
    if unmet := sorted(expected - {"100-continue", ""}):
        return 417, f"cannot meet the expectation {unmet[0][:100]!r}: only 100-continue is known"
    return Target(path, host, "100-continue" in expected and _version(version) >= (1, 1))


def _version(version: str) -> tuple[int, int]:
    """``HTTP/1.1`` as (1, 1), as the stdlib read it (it answered 400 to one it could not): ``HTTP/1.01`` is 1.1."""
    major, _, minor = version.partition("/")[2].partition(".")
    return int(major), int(minor)


def is_json(content_type: str) -> bool:
    """``application/json``, with parameters or none, in any case; a charset other than UTF-8 is not JSON."""
    header = Message()
    header["Content-Type"] = content_type
    # get_content_type() falls back to text/plain for a value that is not a media type.
    charset = header.get_param("charset")
    return header.get_content_type() == "application/json" and str(charset or "utf-8").lower() in ("utf-8", "utf8")


def body_length(headers: Message, most: int) -> int | tuple[int, str]:
    """The body length ``headers`` declare, at most ``most``; else the (status, message) that refuses the request
    before a byte of the body is read."""
    if "Transfer-Encoding" in headers:
        return 411, "send the report with a Content-Length; chunked bodies are not accepted"
    values = headers.get_all("Content-Length") or []
    if not values:
        return 411, "Content-Length required"
    value = values[0].strip()
    # int() would also take "-1", "+5", "1_0" and non-ASCII digits; a length is ASCII digits only.
    if len(set(values)) > 1 or not (value.isascii() and value.isdigit()):
        return 400, "Content-Length must be one non-negative number"
    # Nor more than 4300 digits (a ValueError, which was a 500): a number of more digits than ``most`` is larger.
    digits = value.lstrip("0") or "0"
    length = int(digits) if len(digits) <= len(str(most)) else most + 1
    if length > most:
        return 413, f"report body larger than {most} bytes"
    return length


def host_name(value: str) -> str:
    """A Host header's value, or a name `server.allowed_hosts` lists, as compared: lowercase, without its port or
    a trailing dot, an IPv6 address without its brackets."""
    name = value.strip().lower()
    if name.startswith("["):  # an IPv6 address, with or without a port
        return name[1:].partition("]")[0]
    if name.count(":") == 1:
        name = name.partition(":")[0]
    return name.rstrip(".")


def host_allowed(value: str | None, allowed: frozenset[str]) -> bool:
    """Whether a request with this Host is answered: any, with nothing in ``allowed`` (host_name's forms). A rebinding
    page's Host is always its own DNS name, so an address (or localhost, which browsers never look up) is one too;
    so is an HTTP/1.0 request without one (read_target refuses an HTTP/1.1 one), or one with an empty one (HTTP/1.1's
    for a target without a host), which no browser sends."""
    if not allowed or value is None or not value.strip():
        return True
    name = host_name(value)
    if name == "localhost" or name in allowed:
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def read_body(rfile: io.BufferedIOBase, connection: socket.socket, length: int, within: float
              ) -> bytes | tuple[int, str]:
    """Exactly ``length`` bytes of ``rfile`` within ``within`` seconds in all, or the refusal's (status, message)."""
    deadline = time.monotonic() + within
    chunks: list[bytes] = []
    got = 0
    try:
        while got < length:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            connection.settimeout(left)
            chunk = rfile.read1(length - got)
            if not chunk:
                return 400, f"body ended after {got} of the {length} bytes in Content-Length"
            chunks.append(chunk)
            got += len(chunk)
    except TimeoutError:
        return 408, f"body not received within {within:g} s"
    return b"".join(chunks)

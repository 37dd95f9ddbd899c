"""A real threaded HTTP server on 127.0.0.1 for tests: recorded payloads, conditional GET, injected faults.

    with FakeServer() as server:
        server.serve_fixture("/feed.atom", "status/saucelabs_us-west-1_history.atom")
        server.fault("/broken", "429", retry_after="120")
        url = server.url + "/feed.atom"

Routes match the request path (the query string is recorded, not matched). A route is a fixed
:class:`Reply` or a function of the :class:`Recorded` request returning one. Every request is recorded
in ``server.requests``. Fault kinds are listed in :data:`FAULTS`. A :class:`ScriptedWebhook` answers a path
with the statuses a test scripts, as a webhook receiver would.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

FIXTURES = Path(__file__).parent / "fixtures" / "collectors"
FAULTS = (
    "500", "429", "503", "slow", "malformed_xml", "malformed_json", "huge", "huge_declared", "redirect_loop",
    "wrong_type", "truncated", "truncated_json", "deep_json", "long_number_json", "not_found", "unauthorized",
)
HUGE_BYTES = 50 * 1024 * 1024
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class Reply:
    """A response. ``body`` may be an iterable of chunks, produced lazily while sending.

    ``content_length``: None sends the real length of a bytes body (a chunk iterable is then close-delimited);
    an int is sent as is, even when it lies (to truncate). ``delay`` sleeps before the status line.
    ``raw``: chunks written to the socket as they come instead of all the above, then the connection is closed (a
    server that misbehaves below HTTP: headers sent a byte at a time, a broken status line).
    """

    status: int = 200
    body: bytes | Iterable[bytes] = b""
    headers: Mapping[str, str | list[str]] = field(default_factory=dict)  # a list: the header once per value
    content_type: str | None = None
    delay: float = 0.0
    content_length: int | None = None
    raw: Iterable[bytes] | None = None


Route = Reply | Callable[[Recorded], Reply]


def _lazy_bytes(total: int) -> Iterator[bytes]:
    chunk = b"<item>" + b"x" * (_CHUNK - 13) + b"</item>"
    sent = 0
    while sent < total:
        piece = chunk[: total - sent]
        sent += len(piece)
        yield piece


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        request = Recorded(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self.rfile.read(length) if length else b"",
        )
        fake = self.server.fake
        fake.record(request)
        route = fake.route_for(parts.path)
        if route is None:
            reply = Reply(404, b'{"error": "not found"}', content_type="application/json")
        else:
            reply = route(request) if callable(route) else route
        # The client may stop reading (size cap, timeout): that is what such a test wanted.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._send(reply)

    def _send(self, reply: Reply) -> None:
        if reply.delay:
            time.sleep(reply.delay)
        if reply.raw is not None:
            self.close_connection = True
            for chunk in reply.raw:
                self.wfile.write(chunk)
            return
        self.send_response(reply.status)
        headers: dict[str, str | list[str]] = dict(reply.headers)
        if reply.content_type:
            headers["Content-Type"] = reply.content_type
        close_delimited = False
        if isinstance(reply.body, bytes):
            body: Iterable[bytes] = [reply.body]
            headers["Content-Length"] = str(reply.content_length if reply.content_length is not None
                                             else len(reply.body))
        else:
            body = reply.body
            if reply.content_length is not None:
                headers["Content-Length"] = str(reply.content_length)
            else:
                close_delimited = True
        if close_delimited or reply.content_length is not None:
            headers["Connection"] = "close"
            self.close_connection = True
        for name, value in headers.items():
            for one in [value] if isinstance(value, str) else value:
                self.send_header(name, one)
        self.end_headers()
        if self.command == "HEAD":
            return
        for chunk in body:
            self.wfile.write(chunk)
        self.wfile.flush()

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a handler sleeping through a "slow" fault must not hold up stop()
    fake: FakeServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gives up (a timeout under test, a poll stopped) resets its connection: routine here, and
        # socketserver's traceback on stderr read like a failure in the test run's output.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeServer:
    def __init__(self, fixtures: Path = FIXTURES, port: int = 0) -> None:
        self.fixtures = fixtures
        self.port = port  # 0: any free one; a port held by ports.reserved_port, to be refused once this stops
        self.requests: list[Recorded] = []
        self._routes: dict[str, Route] = {}
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle
    def start(self) -> FakeServer:
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="fakeserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeServer is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # routing and recording
    def record(self, request: Recorded) -> None:
        with self._lock:
            self.requests.append(request)

    def route_for(self, path: str) -> Route | None:
        with self._lock:
            return self._routes.get(path)

    def requests_to(self, path: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def serve(self, path: str, route: Route) -> None:
        with self._lock:
            self._routes[path] = route

    def fixture_bytes(self, name: str) -> bytes:
        return (self.fixtures / name).read_bytes()

    def serve_fixture(
        self,
        path: str,
        name: str,
        content_type: str | None = None,
        *,
        validators: bool = True,
        status: int = 200,
    ) -> None:
        """Serve a fixture file; with ``validators``, send ETag/Last-Modified and answer 304 on a match.

        The body is gzipped when the client accepts gzip (as real servers do).
        """
        self.serve(path, self.fixture_reply(name, content_type, validators=validators, status=status))

    def fixture_reply(
        self, name: str, content_type: str | None = None, *, validators: bool = True, status: int = 200
    ) -> Callable[[Recorded], Reply]:
        body = self.fixture_bytes(name)
        ctype = content_type or _guess_type(name)
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        last_modified = formatdate(1_700_000_000, usegmt=True)

        def reply(request: Recorded) -> Reply:
            headers = {"ETag": etag, "Last-Modified": last_modified} if validators else {}
            if validators and (request.headers.get("if-none-match") == etag
                               or request.headers.get("if-modified-since") == last_modified):
                return Reply(304, b"", headers=headers)
            if "gzip" in request.headers.get("accept-encoding", ""):
                return Reply(status, gzip.compress(body), headers={**headers, "Content-Encoding": "gzip"},
                             content_type=ctype)
            return Reply(status, body, headers=headers, content_type=ctype)

        return reply

    def fault(self, path: str, kind: str, *, fixture: str | None = None, delay: float = 5.0,
              retry_after: str = "120") -> None:
        """Make ``path`` misbehave. ``fixture`` is the payload that slow/truncated faults (eventually) send."""
        self.serve(path, self.fault_reply(path, kind, fixture=fixture, delay=delay, retry_after=retry_after))

    def fault_reply(self, path: str, kind: str, *, fixture: str | None = None, delay: float = 5.0,
                    retry_after: str = "120") -> Route:
        payload = self.fixture_bytes(fixture) if fixture else b'{"ok": true}'
        ctype = _guess_type(fixture or "x.json")
        html = "text/html; charset=utf-8"
        if kind == "500":
            return Reply(500, b"<html><body>Internal Server Error</body></html>", content_type=html)
        if kind in ("429", "503"):
            return Reply(int(kind), b"slow down", headers={"Retry-After": retry_after}, content_type="text/plain")
        if kind == "slow":
            return Reply(200, payload, content_type=ctype, delay=delay)
        if kind == "malformed_xml":
            return Reply(200, b'<?xml version="1.0"?>\n<rss version="2.0"><channel><title>Status</title>'
                              b"<description>Incident &  history</descr<<>><item", content_type="application/rss+xml")
        if kind == "malformed_json":
            return Reply(200, b'{"items": [1, 2,, ], "next": }', content_type="application/json")
        if kind == "huge":
            return Reply(200, _lazy_bytes(HUGE_BYTES), content_type=ctype)
        if kind == "huge_declared":
            return Reply(200, _lazy_bytes(HUGE_BYTES), content_type=ctype, content_length=HUGE_BYTES)
        if kind == "redirect_loop":
            return Reply(302, b"", headers={"Location": path})
        if kind == "wrong_type":
            return Reply(200, b"<!DOCTYPE html><html><head><title>Sign in</title></head><body><form>"
                              b"<input name=user></form></body></html>", content_type=html)
        if kind == "truncated":
            return Reply(200, payload[: len(payload) // 2], content_type=ctype, content_length=len(payload))
        if kind == "truncated_json":
            return Reply(200, payload[: len(payload) // 2], content_type="application/json")
        if kind == "deep_json":  # nested past the JSON parser's recursion limit
            return Reply(200, b"[" * 5000 + b"]" * 5000, content_type="application/json")
        if kind == "long_number_json":  # an integer past the digits Python converts (sys.get_int_max_str_digits)
            return Reply(200, b"[" + b"9" * 5000 + b"]", content_type="application/json")
        if kind == "not_found":
            return Reply(404, b"<html>Not Found</html>", content_type=html)
        if kind == "unauthorized":
            return Reply(401, b'{"error": "unauthorized"}', content_type="application/json")
        raise ValueError(f"unknown fault {kind!r} (known: {', '.join(FAULTS)})")


class ScriptedWebhook:
    """A webhook receiver at ``path``: answers each request with the next scripted status, 202 when the script is
    empty; a (status, retry_after) entry sends that Retry-After too. What each answer holds is the subclass's
    ``answer``."""

    def __init__(self, server: FakeServer, path: str) -> None:
        self.server = server
        self.path = path
        self.script: list[int | tuple[int, str]] = []
        server.serve(path, self._answer)

    def answer(self, request: Recorded, status: int) -> tuple[bytes, str | None]:
        """The body of an answer of ``status`` to ``request``, and its Content-Type (None: none sent)."""
        raise NotImplementedError

    def _answer(self, request: Recorded) -> Reply:
        reply = self.script.pop(0) if self.script else 202
        status, retry_after = reply if isinstance(reply, tuple) else (reply, "")
        body, content_type = self.answer(request, status)
        headers = {"Retry-After": retry_after} if retry_after else {}
        return Reply(status, body, headers=headers, content_type=content_type)

    @property
    def requests(self) -> list[Recorded]:
        return self.server.requests_to(self.path)


def _guess_type(name: str) -> str:
    if name.endswith(".json"):
        return "application/json; charset=utf-8"
    if name.endswith(".atom"):
        return "application/atom+xml; charset=utf-8"
    if name.endswith((".rss", ".xml")):
        return "application/rss+xml; charset=utf-8"
    return "application/octet-stream"

"""The service's small HTTP endpoint: GET (or HEAD) /healthz, /metrics, the read API (/api/v1/...) and the status
board's pages (/, /services/NAME), POST /report.

Bound to 127.0.0.1 by default; put a reverse proxy in front to expose /report to the public. Request heads and
bodies are capped and read with a deadline, reports are rate-limited per client address, and every error is a JSON
object with a message (but for the board's pages, which answer HTML). A reload keeps its socket (http_listener).
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from miner import http_head, status_board
from miner.client_address import DEFAULT_IPV6_PREFIX, ClientKeys
from miner.errors import InputError, MinerError, RateLimited, ReportsBusy
from miner.http_cache import Answers, Reply, json_text
from miner.http_conns import BUSY_BODY, LISTEN_BACKLOG, PROBE_CONNECTIONS, OpenConnections, sent_path, turn_away
from miner.http_endpoints import Endpoints as Endpoints  # where the service and the tests have it
from miner.http_gzip import accepts_gzip
from miner.http_head import CONTINUE, MAX_HEAD, HeadReader, body_length, host_allowed, host_name, is_json, read_target
from miner.http_listener import HandedListener
from miner.read_api import ENDPOINTS as READ_ENDPOINTS
from miner.read_api import PREFIX as READ_PREFIX
from miner.timeutil import counted

log = logging.getLogger(__name__)

MAX_BODY = 4096
# A client that stops sending (or declares more body than it sends) loses its connection after this long, so it
# cannot hold a handler thread: in all for the request line and headers, and again in all for the body.
READ_TIMEOUT = 5.0
# Connections handled at once (a thread each) but for the probes' PROBE_CONNECTIONS: beyond it, one still sending its
# request makes way (http_conns), or, all being answered, the new one is answered 503 at once. Without a cap, many
# slow clients meant as many threads.
MAX_CONNECTIONS = 32
# Seconds a stop waits for the requests being answered: a slow client's head and body, and SQLite's busy timeout.
STOP_WAIT = 2 * READ_TIMEOUT + 10.0
# C0 and C1 controls as \xHH, a backslash doubled, as http.server's log_message writes them: its own table is a
# private attribute that Python 3.11.0 lacks (it came in 3.11.1), where every reply raised AttributeError unsent.
_LOG_ESCAPES = str.maketrans({c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))} | {ord("\\"): "\\\\"})


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "miner"
    sys_version = ""  # the Python version is nobody's business

    def version_string(self) -> str:
        # The stdlib joins the two with a space, which sent "Server: miner " with its trailing blank.
        return self.server_version

    timeout = READ_TIMEOUT  # socketserver sets it on the connection before the request line is read
    # The stdlib's default, HTTP/0.9, answers a request line it cannot parse (a bad version, binary junk) with a
    # bare body and no status line.
    default_request_version = "HTTP/1.0"

    def setup(self) -> None:
        super().setup()
        self._replied = False  # a status line was sent: a fault after it can only end the connection
        self._continue = False  # a 100 Continue is due before the body is read
        self.rfile = HeadReader(self.rfile)
        # The socket timeout bounds each read, so a client sending a header byte every few seconds could hold
        # the thread for as long as it liked: at the deadline the read side is shut, the pending read ends as
        # if the client had closed, and the request is dropped like one that stalled.
        self._head_lock = threading.Lock()
        self._head_done = self._head_late = False
        self._head_timer = threading.Timer(READ_TIMEOUT, self._head_expired)
        self._head_timer.daemon = True
        self._head_timer.start()

    def _head_expired(self) -> None:
        with self._head_lock:
            if self._head_done:
                return
            self._head_late = True
        log.debug("http: request line and headers not received within %g s", READ_TIMEOUT)
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RD)

    def parse_request(self) -> bool:
        ok = super().parse_request()  # reads the headers
        with self._head_lock:
            self._head_done = True
            late = self._head_late
        self._head_timer.cancel()
        conns = self.server.connections
        # A POST may still be sending its body: received once that is read, or when it is answered (_send).
        shut = conns.evicted(self.connection) if self.command == "POST" else not conns.received(self.connection)
        if late or shut:
            self.close_connection = True
            return False
        if not ok:
            if isinstance(self.rfile, HeadReader) and self.rfile.over and not self._replied:
                self.send_error(431)  # nothing but empty lines, MAX_HEAD bytes of them
            return False
        target = read_target(self.path, self.headers, self.request_version)
        if isinstance(target, tuple):
            self._refuse(*target)
            return False
        if not host_allowed(target.host, self.server.allowed_hosts):
            self._refuse(421, "this endpoint does not answer as that host name (server.allowed_hosts)")
            return False
        if target.path.split("?", 1)[0] not in self.server.probes and not conns.claim(self.connection, MAX_CONNECTIONS):
            conns.turned_away(MAX_CONNECTIONS, others=True)  # the rest are the probes'
            self.close_connection = True
            self._send(503, BUSY_BODY, headers={"Retry-After": "1", "Connection": "close"})
            return False
        self.path, self._continue = target.path, target.expects_continue
        return True

    def finish(self) -> None:
        self._head_timer.cancel()
        super().finish()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # The stdlib's own refusals (a malformed request line, too long a URL or header, an unknown method) would
        # be an HTML page: answered like every other error, as a JSON object with a message.
        text = message or self.responses.get(code, ("error",))[0]
        if isinstance(self.rfile, HeadReader) and self.rfile.over:
            text = f"request line and headers larger than {MAX_HEAD} bytes"
        self.log_error("code %d, message %s", code, text)
        self.close_connection = True
        self._json(code, {"error": text[:200]}, {"Connection": "close"})

    def log_message(self, format: str, *args: Any) -> None:
        # The request line is the client's bytes: escaped as the stdlib's own log_message does, so an escape
        # sequence in a path cannot rewrite the operator's terminal or forge a log line.
        # The client's address is left out: for a report it is the reporter's, which is used in memory only (the rate
        # limit, the reporter's hash of the day: docs/collectors.md), never written anywhere.
        message = (format % args).translate(_LOG_ESCAPES)
        log.debug("http %s", message)

    def _send(self, status: int, body: str | bytes, ctype: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        # Being answered, it is no longer one a newcomer may shut: a POST refused with its body unread (404, 405, 411,
        # 413, 415) was, as its answer went out. One shut already has nobody to answer.
        if not self.server.connections.received(self.connection):
            self.close_connection = True
            return
        data = body if isinstance(body, bytes) else body.encode("utf-8")  # bytes: gzipped (http_cache)
        self._replied = True
        self.send_response(status)
        self.send_header("Content-Type", f"{ctype}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        # A browser must take the declared type (nosniff): the bodies quote request data, which sniffed as HTML could
        # run. Nothing is cached but what http_cache says may be, for as long.
        for k, v in {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", **(headers or {})}.items():
            self.send_header(k, v)
        # Until written, shut for a newcomer at the cap if the client stops taking it (http_conns).
        conns = self.server.connections
        conns.sending(self.connection)
        try:
            self.end_headers()
            if self.command != "HEAD":
                conns.write(self.connection, data, READ_TIMEOUT)
        finally:
            conns.sending(self.connection, False)

    def _json(self, status: int, obj: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._send(status, json_text(obj), headers=headers)

    def _guarded(self, answer: Callable[[], None]) -> None:
        """``answer``, or a 500 for a fault of ours before it replied: the connection was closed without a word (a
        proxy in front says 502, as if the service were down), and the traceback went to the log only."""
        try:
            answer()
        except (ConnectionError, TimeoutError):
            raise  # the client went away or stalled: handle_error logs it
        except Exception:
            if self._replied:
                raise
            log.exception("http: unexpected error answering %s", self.requestline.translate(_LOG_ESCAPES)[:300])
            self.close_connection = True
            self._json(500, {"error": "internal error: the service's log has the details"})

    def do_GET(self) -> None:
        self._guarded(self._get)

    do_HEAD = do_GET  # _send leaves the body out

    def _get(self) -> None:
        path, _, query = self.path.partition("?")
        read, board = self.server.endpoints.read, self.server.endpoints.board
        if path == "/report":
            self._read_only()
        elif (early := self._early(path)) is not None:
            self._send(*early)
        elif path == "/healthz":
            ok, detail = self.server.endpoints.health()
            self._json(200 if ok else 503, detail)
        elif path == "/metrics":
            self._send(200, self.server.endpoints.metrics(), "text/plain; version=0.0.4")
        elif (answer := self.server.answers.get(path, query, accepts_gzip(self.headers.get("Accept-Encoding")))):
            self._send(*answer)
        else:
            endpoints = [*self.server.probes, "POST /report", *(READ_ENDPOINTS if read is not None else ()),
                         *(status_board.PAGES if board is not None else ())]
            self._json(404, {"error": f"no such endpoint {path[:100]}", "endpoints": endpoints})

    def _early(self, path: str) -> Reply | None:
        return None if (early := self.server.endpoints.early) is None else early(path)

    def _read_only(self) -> None:
        """A method other than GET or HEAD on a probe, the read API or the board, or other than POST on /report: 405;
        elsewhere the stdlib's 501, as before."""
        what = self._read_only_part()
        if self.path.split("?", 1)[0] == "/report":  # GET and HEAD were a 404, as if there were no such endpoint
            self._not_allowed("POST", "/report takes reports by POST only")
        elif what is None:
            self.send_error(501, f"Unsupported method ({self.command!r})")
        else:
            self._not_allowed("GET, HEAD", f"{what} is read-only (GET or HEAD)")

    def _not_allowed(self, allow: str, why: str) -> None:
        self.close_connection = True  # a body, if any, is left unread
        self._json(405, {"error": f"{self.command} is not allowed: {why}"}, {"Allow": allow, "Connection": "close"})

    def _read_only_part(self) -> str | None:
        # A probe's was 404 "POST is accepted on /report only", as if there were no such resource.
        if (path := self.path.split("?", 1)[0]) in self.server.probes:
            return path
        if self.path.startswith(READ_PREFIX) and self.server.endpoints.read is not None:
            return "the API"
        if status_board.is_page(path) and self.server.endpoints.board is not None:
            return "the status board"
        return None

    do_PUT = do_DELETE = do_PATCH = _read_only

    def do_POST(self) -> None:
        self._guarded(self._post)

    def _post(self) -> None:
        if self._read_only_part() is not None:
            self._read_only()
            return
        if self.path.split("?", 1)[0] != "/report":
            self._json(404, {"error": "POST is accepted on /report only"})
            return
        if (early := self._early("/report")) is not None:  # the service is starting: its body is left unread
            self.close_connection = True
            self._send(*early)
            return
        length = self._body_length()
        if length is None:
            return
        if not is_json(self.headers.get("Content-Type", "")):
            self._json(415, {"error": "send the report as application/json"})
            return
        if self._continue and length:
            self.wfile.write(CONTINUE)  # not before a refusal above: a client that waits for it sends no body
        raw = self._read_body(length)
        if raw is None:
            return
        if not self.server.connections.received(self.connection):
            # Shut for a newcomer as its body came in: stored, it went unanswered, and the client's retry counted twice.
            self.close_connection = True
            return
        try:
            payload = json.loads(raw.decode("utf-8-sig"))  # one BOM before it is dropped, as JSON parsers commonly do
            result = self.server.endpoints.report(payload, self._client())
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):  # the last: nested too deeply
            self._json(400, {"error": "body is not valid JSON"})
        except InputError as exc:
            self._json(400, {"error": str(exc)})
        except RateLimited as exc:
            self._json(429, {"error": str(exc)}, {"Retry-After": str(int(exc.retry_after) + 1)})
        except MinerError as exc:
            (log.debug if isinstance(exc, ReportsBusy) else log.error)("report intake failed: %s", exc)
            self._json(503, {"error": "cannot store reports right now"})
        else:
            self._json(202, result)

    def _client(self) -> str:
        return self.server.clients.key(self.client_address[0], self.headers.get_all("X-Forwarded-For") or [],
                                       self.headers.get_all("Forwarded") or [])

    def _refuse(self, status: int, message: str) -> None:
        # The body (if any) is left unread, so the connection cannot carry another request.
        self.close_connection = True
        self._json(status, {"error": message})

    def _read_body(self, length: int) -> bytes | None:
        """Exactly ``length`` bytes within READ_TIMEOUT in all, or None after refusing the request."""
        raw = http_head.read_body(self.rfile, self.connection, length, READ_TIMEOUT)
        if isinstance(raw, tuple):
            self._refuse(*raw)
            return None
        return raw

    def _body_length(self) -> int | None:
        """The declared body length, or None after refusing the request: checked before a byte is read."""
        length = body_length(self.headers, MAX_BODY)
        if isinstance(length, tuple):
            self._refuse(*length)
            return None
        return length


class _Server(HandedListener, ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int], endpoints: Endpoints, clients: ClientKeys,
                 allowed_hosts: Sequence[str] = (), cache_seconds: int = 0, sock: socket.socket | None = None) -> None:
        self.endpoints = endpoints
        self.answers = Answers(endpoints.read, endpoints.board, cache_seconds)
        self.clients = clients
        self.allowed_hosts = frozenset(host_name(name) for name in allowed_hosts)
        self.connections = OpenConnections()
        self.probes = ("/healthz", *(("/livez", "/readyz") if endpoints.early is not None else ()), "/metrics")
        if ":" in address[0]:  # an IPv6 address ("::1", "::"): the stdlib's server is IPv4 unless told otherwise
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler, listening=sock)

    def process_request(self, request: Any, client_address: Any) -> None:
        # At a cap, a request line in already tells a probe from another request (http_conns): another is turned away
        # here while other requests hold their connections, without a thread; a probe may take PROBE_CONNECTIONS more.
        conns, cap = self.connections, MAX_CONNECTIONS + PROBE_CONNECTIONS
        path = sent_path(request) if conns.crowded(MAX_CONNECTIONS, cap) else None
        other = path not in (None, *self.probes) and conns.claimed(MAX_CONNECTIONS)
        limit = cap + PROBE_CONNECTIONS if path in self.probes else cap
        if other or not conns.take(limit, request):
            conns.turned_away(MAX_CONNECTIONS if other else limit, other)
            turn_away(request)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.connections.release(request)  # no thread was started to release it
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.connections.release(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver would print the traceback to stderr, past the log format; a client that hangs up
        # mid-reply is routine, anything else is a bug worth its traceback in the log. Neither names the client:
        # a reporter's address is kept in memory only (see log_message).
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            log.debug("http client went away: %s", exc)
        else:
            log.exception("http: unexpected error answering a request")


class HttpApi:
    """Runs the endpoint in a background thread; on ``listening`` if given: a socket :meth:`stop` kept (``keep``)."""

    def __init__(self, host: str, port: int, endpoints: Endpoints, trusted_proxies: Sequence[str] = (),
                 ipv6_prefix: int = DEFAULT_IPV6_PREFIX, allowed_hosts: Sequence[str] = (), cache_seconds: int = 0,
                 listening: socket.socket | None = None) -> None:
        try:
            self._server = _Server((host, port), endpoints, ClientKeys(trusted_proxies, ipv6_prefix), allowed_hosts,
                                   cache_seconds, listening)
        except OSError as exc:
            raise MinerError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
        self._thread = threading.Thread(target=self._server.serve_forever, name="miner-http", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()

    def stop(self, keep: bool = False, wait: bool = True) -> socket.socket | None:
        """Stop accepting, then, with ``wait``, :meth:`wait_answered`."""
        self._server.shutdown()
        kept = self._server.close_keeping(keep)
        self._thread.join(timeout=5)
        if wait:
            self.wait_answered()
        return kept

    def wait_answered(self) -> None:
        """Wait (STOP_WAIT at most) for the requests being answered: the service closes the store after this, and a
        request answered meanwhile failed or opened a connection of its own."""
        if left := self._server.connections.wait_closed(STOP_WAIT):
            log.warning("http: %s still being answered %g s into the stop; stopping without them",
                        counted(left, "request"), STOP_WAIT)

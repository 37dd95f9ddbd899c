"""RFC 7239's Forwarded header on the report endpoint's real 127.0.0.1 socket: behind a trusted proxy that sends it
(alone, or beside X-Forwarded-For), a report is rate-limited and counted by the client the proxy forwarded."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from miner.http_api import Endpoints, HttpApi

PROXIES = ["127.0.0.0/8", "10.0.0.0/8"]


@pytest.fixture
def served() -> Iterator[tuple[HttpApi, list[str]]]:
    """An endpoint behind trusted proxies on loopback, and the client key of each report it accepts."""
    clients: list[str] = []
    server = HttpApi("127.0.0.1", 0, Endpoints(lambda: (True, {}), lambda: "", lambda payload, client: (
        clients.append(client) or {"accepted": True})), PROXIES)
    server.start()
    yield server, clients
    server.stop()


def report(server: HttpApi, *headers: str) -> None:
    """POST a report with these header lines (name: value), as the proxy in front would pass it on."""
    head = "".join(f"{line}\r\n" for line in headers)
    request = f"POST /report HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n{head}\r\n"
    request += "{}"
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(request.encode())
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.split(b" ", 2)[1] == b"202", reply


def test_a_proxy_that_sends_only_forwarded_has_its_clients_counted_apart(
        served: tuple[HttpApi, list[str]], caplog: pytest.LogCaptureFixture) -> None:
    # Only X-Forwarded-For was read: behind a proxy that sends Forwarded alone (HAProxy's option forwarded, an nginx
    # told to), every report was the proxy's, all the public sharing one client's limit and counting as one reporter.
    server, clients = served
    for value in ("for=203.0.113.7",
                  "for=203.0.113.8;proto=https;by=10.0.0.1",
                  'For="[2001:db8:1:2::1]:4711"',  # an IPv6 client in brackets and quotes, with its port
                  'for="[2001:db8:2::1]"',
                  'for="203.0.113.9:51234"',
                  'for="[2001:db8:3::1]:_f00"',  # an obfuscated port
                  "for=198.51.100.1, for=203.0.113.10",  # a client can put anything first; the proxy appends last
                  "for=198.51.100.1, for=203.0.113.11;proto=https, for=10.1.1.1",  # through two proxies, both trusted
                  'for="a, b; c=d", for=203.0.113.12',  # , and ; in a quoted string separate nothing
                  "for=203.0.113.13,, ",  # empty elements
                  'for="[::ffff:192.0.2.5]"'):
        report(server, f"Forwarded: {value}")
    report(server, "Forwarded: for=198.51.100.1", "Forwarded: for=203.0.113.14")  # two header lines: one list
    assert clients == ["203.0.113.7", "203.0.113.8", "2001:db8:1::/56", "2001:db8:2::/56", "203.0.113.9",
                       "2001:db8:3::/56", "203.0.113.10", "203.0.113.11", "203.0.113.12", "203.0.113.13", "192.0.2.5",
                       "203.0.113.14"]
    assert "trusted_proxies does not list" not in caplog.text


@pytest.mark.parametrize("value", [
    "for=unknown", 'for="_hidden"', "for=_gazonk", "for=203.0.113.7, for=unknown",  # the proxy hides its client
    "proto=https;by=10.0.0.1",  # an element without for=
    'for="203.0.113.7', "for=203.0.113.7 x", "for=203.0.113.7;for=203.0.113.8",  # malformed
    "for=203.0.113.7:65536", 'for="[203.0.113.7]"', "for=not-an-address"])
def test_a_forwarded_element_that_names_no_address_is_counted_as_the_proxy(
        served: tuple[HttpApi, list[str]], value: str) -> None:
    # Not what a trusted proxy appends for a client it names: the proxy's one limit, as for X-Forwarded-For (and not
    # the address before it, which the client may have written).
    server, clients = served
    report(server, "Forwarded: for=203.0.113.50")
    report(server, f"Forwarded: for=203.0.113.51, {value}")
    assert clients == ["203.0.113.50", "127.0.0.1"]


def test_forwarded_from_a_peer_that_is_not_trusted_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    clients: list[str] = []
    server = HttpApi("127.0.0.1", 0, Endpoints(lambda: (True, {}), lambda: "", lambda payload, client: (
        clients.append(client) or {"accepted": True})), ["10.0.0.0/8"])
    server.start()
    try:
        for n in range(2):  # a client talking to the endpoint directly cannot choose its address
            report(server, f"Forwarded: for=203.0.113.{n}")
    finally:
        server.stop()
    assert clients == ["127.0.0.1", "127.0.0.1"]
    assert sum("server.trusted_proxies does not list 127.0.0.1" in r.getMessage() for r in caplog.records) == 1


def test_with_both_headers_a_report_is_the_clients_only_where_they_agree(
        served: tuple[HttpApi, list[str]], caplog: pytest.LogCaptureFixture) -> None:
    # A proxy that appends to one header passes the other on as the client wrote it: taken over the one the proxy
    # wrote, it would let every report name an address of its own, each a fresh limit and a complainer of its own.
    server, clients = served
    report(server, "X-Forwarded-For: 203.0.113.7", "Forwarded: for=203.0.113.7")  # a proxy that sets both
    report(server, "X-Forwarded-For: 203.0.113.8", 'Forwarded: for="203.0.113.8:4711";proto=https')
    # A trusted CDN sent Forwarded, the trusted proxy behind it appended the CDN's address to X-Forwarded-For.
    report(server, "X-Forwarded-For: 10.2.2.2", "Forwarded: for=203.0.113.9")
    report(server, "X-Forwarded-For: 2001:db8:1:2::1", 'Forwarded: for="[2001:db8:1:3::1]"')  # one /56
    assert "named one client" not in caplog.text
    report(server, "X-Forwarded-For: 203.0.113.10", "Forwarded: for=198.51.100.1")  # the client wrote one
    report(server, "X-Forwarded-For: 198.51.100.2", "Forwarded: for=203.0.113.11")
    report(server, "X-Forwarded-For: 203.0.113.12", "Forwarded: for=_hidden")
    assert clients == ["203.0.113.7", "203.0.113.8", "203.0.113.9", "2001:db8:1::/56", *["127.0.0.1"] * 3]
    warnings = [r.getMessage() for r in caplog.records if "named one client" in r.getMessage()]
    assert len(warnings) == 1 and "127.0.0.1" in warnings[0]
    for address in ("203.0.113", "198.51.100"):  # the log names no reporter
        assert address not in caplog.text

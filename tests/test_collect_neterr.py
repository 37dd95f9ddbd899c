"""How a source's network failure is told (miner/net_errors.py), from real failures on 127.0.0.1: each names the host
and what to check, and a TLS failure says so in its first words, which `miner status` shows."""

from __future__ import annotations

import logging
import socket
import ssl
from pathlib import Path

import pytest
from netfaults import (
    EXPIRED,
    WRONG_NAME,
    dns_failure,
    ok_server,
    refused_port,
    resetting_server,
    self_signed,
    serving,
    silent_server,
    unresolvable,
)

from miner.collectors.poller import Poller
from miner.collectors.settings import CollectSettings
from miner.config import SourceConfig
from miner.errors import SourceError

pytestmark = pytest.mark.usefixtures("no_proxy_nor_trust")


def _failure(url: str, connect_timeout: float = 10.0) -> SourceError:
    # The client reads SSL_CERT_FILE and the proxies when it is made: a poller per case.
    with (Poller(CollectSettings(connect_timeout=connect_timeout), hash_key=b"k", environ={}) as poller,
          pytest.raises(SourceError) as info):
        poller.poll(SourceConfig("feed", "rss", url=url, timeout=5))
    return info.value


def test_a_self_signed_certificate_is_told_as_one_with_what_to_do(tmp_path: Path) -> None:
    # Was "cannot connect to 127.0.0.1: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: ...".
    with ok_server(tls=self_signed(tmp_path)) as port:
        error = _failure(f"https://127.0.0.1:{port}/feed.rss")
    assert str(error).startswith(f"TLS certificate of 127.0.0.1:{port} not trusted (self-signed certificate): ")
    assert "SSL_CERT_FILE" in str(error) and "certifi" in str(error)
    assert error.needs_action and not error.permanent  # a fix (or the server's renewal) is picked up by the next poll


def test_an_expired_certificate_says_the_server_must_renew_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(EXPIRED[0]))  # trusted: what fails is its date
    with ok_server(tls=EXPIRED) as port:
        error = _failure(f"https://127.0.0.1:{port}/feed.rss")
    assert str(error) == (f"TLS certificate of 127.0.0.1:{port} has expired (certificate has expired): the server "
                          "must renew it (or this machine's clock is wrong)")
    assert error.needs_action


def test_a_certificate_for_another_name_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(WRONG_NAME[0]))
    with ok_server(tls=WRONG_NAME) as port:
        error = _failure(f"https://127.0.0.1:{port}/feed.rss")
    assert str(error).startswith(f"TLS certificate of 127.0.0.1:{port} is for another name (IP address mismatch, "
                                 "certificate is not valid for '127.0.0.1'): use the host name the certificate names")
    assert error.needs_action


def test_https_to_a_plain_http_port_is_a_handshake_failure_naming_the_port() -> None:
    with ok_server() as port:
        error = _failure(f"https://127.0.0.1:{port}/feed.rss")
    assert str(error) == (f"TLS handshake with 127.0.0.1:{port} failed: the server does not speak TLS there (wrong "
                          f"version number): is 127.0.0.1:{port} an http:// server, or is its https on another port?")
    assert error.needs_action


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1 is deprecated:DeprecationWarning")
def test_a_server_offering_only_tls_1_0_is_told_as_no_version_in_common(monkeypatch: pytest.MonkeyPatch) -> None:
    # Was "cannot connect to 127.0.0.1: [SSL: SSLV3_ALERT_HANDSHAKE_FAILURE] sslv3 alert handshake failure ...".
    monkeypatch.setenv("SSL_CERT_FILE", str(EXPIRED[0]))  # whatever the certificate: no handshake reaches it
    with ok_server(tls=EXPIRED, tls_max=ssl.TLSVersion.TLSv1) as port:
        error = _failure(f"https://127.0.0.1:{port}/feed.rss")
    assert str(error).startswith(f"TLS handshake with 127.0.0.1:{port} failed: no TLS version or cipher in common (")
    assert str(error).endswith("): the server may offer only TLS 1.0/1.1 or old ciphers, which this machine's "
                               "OpenSSL refuses: its TLS setup must be updated")
    assert error.needs_action


def test_a_refused_connection_names_host_and_port() -> None:
    with refused_port() as port:
        error = _failure(f"http://127.0.0.1:{port}/feed.rss")
    assert str(error) == (f"connection refused by 127.0.0.1:{port}: nothing listens on that port: check that the "
                          "server is up and the port is right")
    assert not error.needs_action


def test_a_name_that_does_not_resolve_is_told_as_such() -> None:
    with unresolvable():
        error = _failure("http://status.nowhere.invalid/feed.rss")
    # Was "cannot connect to status.nowhere.invalid: [Errno -2] Name or service not known".
    assert str(error) == dns_failure("status.nowhere.invalid") + ": check the name for a typo"
    assert not error.needs_action


def test_a_resolver_that_cannot_be_reached_is_told_apart_from_a_name_not_found() -> None:
    # A machine without network answers EAI_AGAIN for every name: the name may be right, the resolver is the fault.
    with unresolvable(socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")):
        error = _failure("http://status.nowhere.invalid/feed.rss")
    assert str(error) == ("DNS lookup of status.nowhere.invalid failed (Temporary failure in name resolution): check "
                          "this machine's DNS resolver and network")


def test_a_tls_handshake_that_never_ends_is_not_called_a_server_that_is_down() -> None:
    # Was "timed out after 0.5 s connecting to 127.0.0.1", as for a server that never took the connection.
    with silent_server() as port:
        error = _failure(f"https://127.0.0.1:{port}/feed.rss", connect_timeout=0.5)
    assert str(error) == (f"timed out after 0.5 s in the TLS handshake with 127.0.0.1:{port}: it took the connection "
                          "and never finished the handshake: is that port's service one that speaks TLS, or is the "
                          "server overloaded?")
    assert not error.needs_action


def test_a_reset_connection_is_told_as_one() -> None:
    # Was "request to http://127.0.0.1:PORT/feed.rss failed: [Errno 104] Connection reset by peer".
    with resetting_server() as port:
        error = _failure(f"http://127.0.0.1:{port}/feed.rss")
    assert str(error).startswith(f"connection to 127.0.0.1:{port} reset: ")


def test_a_proxy_that_refuses_is_named_rather_than_the_source(monkeypatch: pytest.MonkeyPatch) -> None:
    # Was "cannot connect to status.example.com: [Errno 111] Connection refused": the source's host, never tried.
    with refused_port() as port:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
        error = _failure("http://status.example.com/feed.rss")
    assert str(error) == (f"connection refused by proxy 127.0.0.1:{port} (for status.example.com): nothing listens on "
                          "that port: check the proxy settings (HTTPS_PROXY, HTTP_PROXY, NO_PROXY)")


def test_a_proxy_refusing_the_tunnel_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbid(conn: socket.socket) -> None:
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")

    with serving(forbid) as port:
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
        error = _failure("https://status.example.com/feed.rss")
    assert str(error).startswith(f"proxy 127.0.0.1:{port} refused the tunnel to status.example.com (403 Forbidden): ")


def test_a_failure_needing_action_is_logged_as_an_error_and_an_outage_as_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def unauthorized(conn: socket.socket) -> None:
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n")

    with ok_server(tls=self_signed(tmp_path)) as tls_port, serving(unauthorized) as auth_port, refused_port() as port, \
            Poller(CollectSettings(), hash_key=b"k", environ={}) as poller:
        caplog.set_level(logging.WARNING, logger="miner.collectors.poller")
        poller.poll_isolated(SourceConfig("certs", "rss", url=f"https://127.0.0.1:{tls_port}/feed.rss"))
        poller.poll_isolated(SourceConfig("token", "rss", url=f"http://127.0.0.1:{auth_port}/feed.rss"))
        poller.poll_isolated(SourceConfig("down", "rss", url=f"http://127.0.0.1:{port}/feed.rss"))
    levels = {r.getMessage().split(" failed")[0]: r.levelname for r in caplog.records}
    assert levels == {"source certs": "ERROR", "source token": "ERROR", "source down": "WARNING"}


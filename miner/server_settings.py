"""The `[server]` table: the small HTTP endpoint's settings (/healthz, /metrics, POST /report)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from miner.client_address import DEFAULT_IPV6_PREFIX
from miner.http_head import host_name
from miner.settings import SettingsError
from miner.urls import control_char, is_ip

MAX_CACHE_SECONDS = 60  # the board's pages reload every 60 s


@dataclass(frozen=True)
class ServerSettings:
    """The small HTTP endpoint: /healthz, /metrics, POST /report, the read API (/api/v1/). Loopback-only by default."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8787
    report_rate_per_hour: int = 10  # user reports accepted per client address per hour
    # Reverse proxies in front of the endpoint (addresses or networks): a report one forwards is rate-limited and
    # counted by the client address it appended to X-Forwarded-For or Forwarded, not by the proxy's, which every
    # client would share.
    trusted_proxies: tuple[str, ...] = ()
    # An IPv6 client is the network of this prefix length (128: address by address): one subscriber's, as its ISP
    # delegates it, so that one household is not hundreds of clients and complainers.
    report_ipv6_prefix: int = DEFAULT_IPV6_PREFIX
    # The host names requests may name in their Host header (IP addresses and localhost always may): a web page that
    # rebinds its own name to the endpoint's address (DNS rebinding) is answered 421. Empty: any Host.
    allowed_hosts: tuple[str, ...] = ()
    # Seconds a status board page or read API answer is kept and shared by every client asking for it (and may be kept
    # by a proxy in front: Cache-Control: max-age), so that the crowd opening the board in an outage costs one store
    # read per page every few seconds rather than one each, most answered 503. 0: every request reads the store.
    cache_seconds: int = 5

    def validate(self) -> None:
        if not self.host.strip():  # the socket layer reads "" as every interface, not as the default
            raise ValueError("host: must not be empty (the default is 127.0.0.1; 0.0.0.0 listens on every interface)")
        if self.host != self.host.strip() or control_char(self.host):
            raise ValueError("host: must be a host name or address without spaces or control characters")
        if ":" in self.host and not is_ip(self.host):
            raise ValueError("host: give the port in `port`, not as host:port")
        if not 0 <= self.port <= 65535:
            raise ValueError("port: must be 0..65535")
        if self.report_rate_per_hour < 1:  # the service would refuse to start
            raise ValueError("report_rate_per_hour: must be at least 1")
        # Shorter than a /32, the least an ISP is allocated, one key would join the subscribers of whole ISPs.
        if not 32 <= self.report_ipv6_prefix <= 128:
            raise ValueError(f"report_ipv6_prefix: must be 32..128 (56: a household's /56, 64: each /64, 128: each "
                             f"address), got {self.report_ipv6_prefix}")
        # Longer, a new incident would wait as long to show, behind a proxy as long again unless it honoured Age.
        if not 0 <= self.cache_seconds <= MAX_CACHE_SECONDS:
            raise ValueError(f"cache_seconds: must be 0..{MAX_CACHE_SECONDS} (0: no caching), got {self.cache_seconds}")
        for i, proxy in enumerate(self.trusted_proxies):
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise SettingsError(f"trusted_proxies[{i}]",
                                    f"must be an IP address or network such as 10.0.0.0/8, got {proxy!r}") from None
        for i, name in enumerate(self.allowed_hosts):
            if not name.strip() or control_char(name) or any(c in name for c in " /@?#") or host_name(name) != (
                    name.lower().strip("[]").rstrip(".")):
                raise SettingsError(f"allowed_hosts[{i}]", "must be a host name such as status.example.org, without "
                                    f"a scheme, port or path, got {name!r}")
            # A Host header names one host, ASCII: a browser sends an international name as its xn-- form, so
            # "bücher.example" matched no request (and was called a pattern).
            if not name.isascii():
                raise SettingsError(f"allowed_hosts[{i}]", f"must be ASCII: give an international name in the form "
                                    f"browsers send ({_ascii_form(name)!r}), got {name!r}")
            # A pattern ("*", ".example.org", as Django's ALLOWED_HOSTS takes) matched none, and every request was
            # answered 421.
            if not is_ip(host_name(name)) and not all(label.isascii() and label.replace("-", "").replace("_", "")
                                                      .isalnum() for label in host_name(name).split(".")):
                raise SettingsError(f"allowed_hosts[{i}]", "must be a host name or address, not a pattern: list each "
                                    f"name (leave the list empty to answer any Host), got {name!r}")


def _ascii_form(name: str) -> str:
    """A host name as a browser sends it in Host (IDNA, xn-- labels), or as given where it has none."""
    try:
        return name.strip(".").encode("idna").decode("ascii")
    except UnicodeError:
        return "xn--..."

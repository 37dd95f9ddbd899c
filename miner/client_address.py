"""The client a report is rate-limited as: the peer's address or, behind a trusted proxy, the address the proxy
forwarded; an IPv4-mapped IPv6 address as the IPv4 one it stands for, and an IPv6 address by its network
(server.report_ipv6_prefix, a /56 by default)."""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Callable, Sequence

# The endpoint's logger, where this warning has always been: a filter on it keeps working.
log = logging.getLogger("miner.http_api")

# One subscriber's network, as residential ISPs delegate it: RIPE-690 recommends a /56 (or a /48) per customer, and a
# router hands each of its LANs a /64 of that, so keyed by /64 one household was 256 clients (and 256 complainers).
# A phone's carrier gives each phone a /64 of its own; a /56 may join up to 256 of them, as a carrier-grade NAT joins
# IPv4 subscribers. express-rate-limit keys by /56 too (GitLab's per-IP limits by /64, Let's Encrypt's accounts per
# network by /48).
DEFAULT_IPV6_PREFIX = 56

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# An address with its port, as some load balancers append it (Azure's: 192.0.2.5:51234, [2001:db8::1]:443): an IPv4
# address, or an IPv6 one in brackets (bare, its last group could be taken for a port), with 1-5 ASCII digits.
_WITH_PORT = re.compile(r"(?:(?P<v4>[0-9.]+)|\[(?P<v6>[^\]]+)\])(?::(?P<port>[0-9]{1,5}))?", re.ASCII)


class ClientKeys:
    """An endpoint's way of keying its clients: its trusted proxies, its IPv6 prefix, and the warning, once, about a
    peer that forwards without being trusted."""

    def __init__(self, trusted_proxies: Sequence[str] = (), ipv6_prefix: int = DEFAULT_IPV6_PREFIX) -> None:
        self.proxies = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]
        self.ipv6_prefix = ipv6_prefix
        self._warned = False

    def key(self, peer_ip: str, forwarded_for: Sequence[str]) -> str:
        return client_key(peer_ip, forwarded_for, self.proxies, self._warn_untrusted_forward, self.ipv6_prefix)

    def _warn_untrusted_forward(self, peer: str) -> None:
        if self._warned:
            return
        self._warned = True
        log.warning("http: a report from %s came with X-Forwarded-For, but server.trusted_proxies does not list %s: "
                    "reports are rate-limited and counted by that address, so clients behind a proxy there share one "
                    "limit and count as one reporter", peer, peer)


def client_key(peer_ip: str, forwarded_for: Sequence[str], proxies: Sequence[Network],
               warn_untrusted_forward: Callable[[str], None], ipv6_prefix: int = DEFAULT_IPV6_PREFIX) -> str:
    """The address a report is rate-limited by: the peer's or, for a request from a trusted proxy, the last
    address in X-Forwarded-For that is not a trusted proxy's (the one the proxy appended), with or without a port.

    ``forwarded_for``: the X-Forwarded-For headers' values; ``warn_untrusted_forward`` is called with the peer's
    address when it sent some but is not a trusted proxy; an IPv6 client is keyed by its first ``ipv6_prefix`` bits."""
    # Listening on IPv6 ("::"), an IPv4 peer is ::ffff:a.b.c.d: as such it matched no IPv4 trusted proxy, and
    # an IPv6 peer was limited address by address, not by its network as a forwarded one is.
    peer_addr = _unmapped(ipaddress.ip_address(peer_ip))
    peer = _limit_key(peer_addr, ipv6_prefix)
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
    if not _within(peer_addr, proxies):
        if hops:
            warn_untrusted_forward(str(peer_addr))
        return peer
    for hop in reversed(hops):
        addr = _hop_address(hop)
        if addr is None:
            break  # not what a proxy appends: rate-limited as the proxy
        if not _within(addr, proxies):
            return _limit_key(addr, ipv6_prefix)
    return peer


def _hop_address(hop: str) -> Address | None:
    """The address of one X-Forwarded-For entry: an address, or one with a port; None for anything else."""
    try:
        return _unmapped(ipaddress.ip_address(hop))
    except ValueError:
        pass
    match = _WITH_PORT.fullmatch(hop)
    if match is None or int(match["port"] or 0) > 65535:
        return None
    try:
        addr = ipaddress.IPv4Address(match["v4"]) if match["v4"] else ipaddress.IPv6Address(match["v6"])
    except ValueError:
        return None
    return _unmapped(addr)


def _within(addr: ipaddress.IPv4Address | ipaddress.IPv6Address, networks: Sequence[Network]) -> bool:
    return any(addr in net for net in networks)  # False across IP versions


def _unmapped(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The IPv4 address an IPv4-mapped IPv6 one (::ffff:192.0.2.5) stands for; any other as it is."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _limit_key(addr: ipaddress.IPv4Address | ipaddress.IPv6Address, ipv6_prefix: int) -> str:
    addr = _unmapped(addr)
    if isinstance(addr, ipaddress.IPv6Address):
        # A subscriber is given a whole network (DEFAULT_IPV6_PREFIX): counted address by address, or /64 by /64 of
        # a /56, one client could send as many times as many reports, and count as as many complainers.
        return str(ipaddress.IPv6Network((addr, ipv6_prefix), strict=False))
    return str(addr)

"""The client a report is rate-limited as: the peer's address or, behind a trusted proxy, the address the proxy
forwarded; an IPv4-mapped IPv6 address as the IPv4 one it stands for, and an IPv6 address by its /64."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# An address with its port, as some load balancers append it (Azure's: 192.0.2.5:51234, [2001:db8::1]:443): an IPv4
# address, or an IPv6 one in brackets (bare, its last group could be taken for a port), with 1-5 ASCII digits.
_WITH_PORT = re.compile(r"(?:(?P<v4>[0-9.]+)|\[(?P<v6>[^\]]+)\])(?::(?P<port>[0-9]{1,5}))?", re.ASCII)


def client_key(peer_ip: str, forwarded_for: Sequence[str], proxies: Sequence[Network],
               warn_untrusted_forward: Callable[[str], None]) -> str:
    """The address a report is rate-limited by: the peer's or, for a request from a trusted proxy, the last
    address in X-Forwarded-For that is not a trusted proxy's (the one the proxy appended), with or without a port.

    ``forwarded_for``: the X-Forwarded-For headers' values; ``warn_untrusted_forward`` is called with the peer's
    address when it sent some but is not a trusted proxy."""
    # Listening on IPv6 ("::"), an IPv4 peer is ::ffff:a.b.c.d: as such it matched no IPv4 trusted proxy, and
    # an IPv6 peer was limited address by address, not by its /64 as a forwarded one is.
    peer_addr = _unmapped(ipaddress.ip_address(peer_ip))
    peer = _limit_key(peer_addr)
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
            return _limit_key(addr)
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


def _limit_key(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    addr = _unmapped(addr)
    if isinstance(addr, ipaddress.IPv6Address):
        # A subscriber is usually given a whole /64: counted address by address, one client could send 2**64 times
        # as many reports.
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)

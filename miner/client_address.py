"""The client a report is rate-limited as: the peer's address or, behind a trusted proxy, the address the proxy
forwarded in X-Forwarded-For or RFC 7239's Forwarded; an IPv4-mapped IPv6 address as the IPv4 one it stands for, and
an IPv6 address by its network (server.report_ipv6_prefix, a /56 by default)."""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Sequence

# The endpoint's logger, where these warnings have always been: a filter on it keeps working.
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
# One parameter of a Forwarded element (RFC 7239): a token, "=", and a token or a quoted string, which may hold the
# , ; and : that separate elements, parameters and a port.
_PAIR = re.compile(r'[ \t]*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)=("(?:[^"\\]|\\.)*"|[!#$%&\'*+.^_`|~0-9A-Za-z:\[\]-]*)[ \t]*',
                   re.ASCII)
# An obfuscated port ("_8080" in for="[2001:db8::1]:_8080"), left off before the address is read.
_OBFUSCATED_PORT = re.compile(r":_[A-Za-z0-9._-]+\Z", re.ASCII)


class ClientKeys:
    """An endpoint's way of keying its clients: its trusted proxies, its IPv6 prefix, and its warnings, once each,
    about a peer that forwards without being trusted and a proxy whose two headers name different clients."""

    def __init__(self, trusted_proxies: Sequence[str] = (), ipv6_prefix: int = DEFAULT_IPV6_PREFIX) -> None:
        self.proxies = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]
        self.ipv6_prefix = ipv6_prefix
        self._warned: set[str] = set()

    def key(self, peer_ip: str, forwarded_for: Sequence[str], forwarded: Sequence[str] = ()) -> str:
        """The key a report is rate-limited and counted by: the peer's address or, for a request from a trusted
        proxy, the last address in X-Forwarded-For (``forwarded_for``, the headers' values) or in Forwarded's for=
        (``forwarded``) that is not a trusted proxy's (the one the proxy appended), with or without a port.

        With both headers, neither is taken over the other: a proxy that sets one passes on the other as the client
        sent it, any address at all. What they name must agree, or the report is the proxy's, as is one whose header
        ends in something other than an address (an obfuscated for=_hidden, unknown, a malformed header)."""
        # Listening on IPv6 ("::"), an IPv4 peer is ::ffff:a.b.c.d: as such it matched no IPv4 trusted proxy, and
        # an IPv6 peer was limited address by address, not by its network as a forwarded one is.
        peer_addr = _unmapped(ipaddress.ip_address(peer_ip))
        peer = _limit_key(peer_addr, self.ipv6_prefix)
        xff = [_hop_address(hop.strip()) for value in forwarded_for for hop in value.split(",")]
        fwd = [hop for value in forwarded for hop in _forwarded_for(value)]
        if not _within(peer_addr, self.proxies):
            if xff or fwd:
                self._warn("untrusted", "http: a report from %s came with X-Forwarded-For or Forwarded, but "
                           "server.trusted_proxies does not list %s: reports are rate-limited and counted by that "
                           "address, so clients behind a proxy there share one limit and count as one reporter",
                           peer_addr)
            return peer
        named = {key for hops in (xff, fwd) if (key := self._client(hops, peer)) is not None}
        if len(named) > 1:
            # No client address in the log: the warning names the proxy only.
            self._warn("disagree", "http: a report forwarded by %s named one client in X-Forwarded-For and another in "
                       "Forwarded: counted as the proxy's; have the proxy at %s set one of them and remove the other",
                       peer_addr)
            return peer
        return named.pop() if named else peer

    def _client(self, hops: list[Address | None], peer: str) -> str | None:
        """The client one header names: the last hop that is not a trusted proxy; the peer for a hop that is no
        address (not what a proxy appends); None where every hop is a trusted proxy's, or there is none."""
        for addr in reversed(hops):
            if addr is None:
                return peer
            if not _within(addr, self.proxies):
                return _limit_key(addr, self.ipv6_prefix)
        return None

    def _warn(self, kind: str, message: str, peer: Address) -> None:
        if kind in self._warned:
            return
        self._warned.add(kind)
        log.warning(message, peer, peer)


def _forwarded_for(value: str) -> list[Address | None]:
    """The for= address of each element of one Forwarded header (RFC 7239), in order: None for an element without
    one, with "unknown" or an obfuscated identifier ("_hidden"), and for the rest of a header that is malformed."""
    hops: list[Address | None] = []
    node: str | None = None
    names: set[str] = set()  # of the element being read
    pos = 0
    while pos < len(value):
        if value[pos] in " \t;":
            pos += 1
            continue
        if value[pos] == ",":  # the end of an element, or an empty one, which a list may hold (RFC 9110, 5.6.1)
            if names:
                hops.append(_node_address(node))
            node, names = None, set()
            pos += 1
            continue
        pair = _PAIR.match(value, pos)
        if pair is None or pair[1].lower() in names:  # a parameter twice in one element is as malformed
            return [*hops, None]
        name, raw = pair[1].lower(), pair[2]
        names.add(name)
        if name == "for":
            node = re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw.startswith('"') else raw
        pos = pair.end()
        if pos < len(value) and value[pos] not in ";,":
            return [*hops, None]
    if names:
        hops.append(_node_address(node))
    return hops


def _node_address(node: str | None) -> Address | None:
    if node is None or node.lower() == "unknown" or node.startswith("_"):
        return None
    return _hop_address(_OBFUSCATED_PORT.sub("", node))


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

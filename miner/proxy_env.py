"""The proxies the environment names for miner's HTTP (httpx reads HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and NO_PROXY,
the lower-case names first), which of them httpx cannot use, and clients that fail only the requests such a proxy
would carry, with a message that names its variable and what to do.

httpx builds a transport for every proxy of the environment when a client is made: a SOCKS proxy without the
socksio package raised ImportError, an unknown scheme (``ftp://proxy``, ``socks4://``) ValueError and a port that is
no number InvalidURL there, so `miner collect` stopped with an internal error and every webhook POST was retried
until give_up_after. A port out of range passed and failed at each request, as a refused connection or an
OverflowError. Found here, such a proxy fails only what would have gone through it, for good (nothing changes until
someone fixes the environment and restarts miner), and `config check` and `miner run` warn about it up front.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx

from miner.net_errors import url_host
from miner.urls import control_char, idna_problem

T = TypeVar("T")

_SCHEMES = ("http", "https", "socks5", "socks5h")


@dataclass(frozen=True)
class EnvProxy:
    """One proxy httpx takes from the environment: ``pattern`` is the URLs it serves as httpx mounts it ("http://",
    "https://", "all://"), ``url`` as httpx reads it (http:// put before one without a scheme). ``problem``: why httpx
    cannot use it, the whole message ("" when it can)."""

    pattern: str
    variable: str
    url: str
    problem: str


def env_proxies() -> list[EnvProxy]:
    """The proxies of this process's environment (httpx reads os.environ, whatever environ a caller was given), as
    httpx reads them: none at all for NO_PROXY=*."""
    from httpx._utils import get_environment_proxies

    out = []
    for pattern, url in get_environment_proxies().items():
        if url is None:  # a NO_PROXY host, reached directly
            continue
        variable = _variable(pattern.removesuffix("://"))
        out.append(EnvProxy(pattern, variable, url, _problem(variable, url)))
    return out


def proxy_problems() -> list[str]:
    """What is wrong with each proxy of the environment httpx cannot use (empty when all can be)."""
    return [proxy.problem for proxy in env_proxies() if proxy.problem]


def _variable(scheme: str) -> str:
    """The variable httpx took the proxy for ``scheme`` from, as it is spelled (urllib's reading: the lower-case name
    wins over any other spelling)."""
    lower = f"{scheme}_proxy"
    if os.environ.get(lower):
        return lower
    return next((name for name, value in os.environ.items() if name.lower() == lower and value), lower.upper())


def _problem(variable: str, url: str) -> str:
    if url != url.strip() or control_char(url):
        return (f"{variable} starts or ends with a space or holds a control character (a stray line break?): miner's "
                "HTTP cannot use that proxy; fix it or unset it and restart miner")
    try:
        parsed = httpx.URL(url)
        port = parsed.port
    except httpx.InvalidURL as exc:  # its words quote a port or a character, never the user or password
        return f"{variable} is not a proxy URL miner's HTTP can read ({exc}); fix it or unset it and restart miner"
    scheme = parsed.scheme
    # Shown without its user and password: a proxy login is a secret.
    shown = f"{variable} ({scheme}://{url_host(url)})"
    if scheme not in _SCHEMES:
        return (f"{shown} names a proxy of scheme {scheme or 'none'!r}, which miner's HTTP (httpx) cannot use: give "
                "an http://, https:// or socks5:// proxy URL, or unset it, and restart miner")
    host = parsed.raw_host.decode("ascii", "replace")
    if not host:
        return f"{variable} names no proxy host; fix it or unset it and restart miner"
    if port is not None and not 0 < port <= 65535:
        return f"{variable}: proxy port {port} is out of range (1 to 65535); fix it and restart miner"
    if reason := idna_problem(host):
        return (f"{variable}: proxy host {host} is not a valid internationalised domain name ({reason}); fix it and "
                "restart miner")
    if scheme.startswith("socks") and importlib.util.find_spec("socksio") is None:  # httpx imports it for one
        return (f"{shown} is a SOCKS proxy, which needs the socksio package, not installed: pip install "
                f"'httpx[socks]' in miner's environment (or unset {variable}), and restart miner")
    return ""


def mounts(make: Callable[[str], T], refuse: Callable[[str], T]) -> dict[str, T | None] | None:
    """A client's transports by the URLs they serve, each of the environment's proxies through ``make(its url)`` or,
    one httpx cannot use, ``refuse(its problem)``, and NO_PROXY's hosts direct (None); or None when every proxy can be
    used, for httpx to read the environment itself as it always does. A client given these needs ``transport=`` for
    its direct one (httpx reads no proxy from the environment then)."""
    proxies = env_proxies()
    if not any(proxy.problem for proxy in proxies):
        return None
    from httpx._utils import get_environment_proxies

    out: dict[str, T | None] = {pattern: None for pattern, url in get_environment_proxies().items() if url is None}
    for proxy in proxies:
        out[proxy.pattern] = refuse(proxy.problem) if proxy.problem else make(proxy.url)
    return out


class ProxyUnusable(Exception):
    """A request that would have gone through a proxy of the environment httpx cannot use; the message says which
    and what to do. Not an httpx error: it would be told as a network failure, which passes by itself."""


class RefusedProxy(httpx.BaseTransport):
    """The transport of a proxy httpx cannot use: every request it would carry fails with ProxyUnusable."""

    def __init__(self, problem: str) -> None:
        self.problem = problem

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        raise ProxyUnusable(self.problem)


class AsyncRefusedProxy(httpx.AsyncBaseTransport):
    """RefusedProxy for an async client."""

    def __init__(self, problem: str) -> None:
        self.problem = problem

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise ProxyUnusable(self.problem)

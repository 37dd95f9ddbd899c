"""The one place collectors talk HTTP: a shared httpx client, capped streaming reads, and clear errors.

Every failure becomes a :class:`~miner.errors.SourceError` whose message is fit to show as a source's
``last_error``; a 429/503 carries the server's Retry-After so the scheduler can honour it.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import idna

from miner.collectors.deadline import deadline_at, hold_to_deadlines
from miner.collectors.decoding import decoded
from miner.collectors.poll_notes import note
from miner.collectors.ratelimit import rate_limit_wait
from miner.collectors.settings import CollectSettings
from miner.collectors.trailer import warn_no_trailer
from miner.collectors.utf8 import json_text, without_surrogates
from miner.errors import BadContent, SourceError
from miner.net_errors import HTTPX_TRUST, describe, env_proxy, url_host
from miner.proxy_env import ProxyUnusable, RefusedProxy, mounts
from miner.timeutil import parse_retry_after
from miner.urls import REDACTED, shown_host, shown_url, without_url

log = logging.getLogger(__name__)
_PERMANENT_STATUSES = frozenset({400, 401, 403, 404, 405, 410, 451})
_PARTIAL_TAIL = re.compile(r"[\w.+\-]*")
_ERROR_BODY_BYTES = 65_536  # enough for an API's error document; the rest of an error page is not read


@dataclass(frozen=True)
class Response:
    """A fully read (and size-capped) response. ``headers`` keys are lower case."""

    url: str
    status: int
    headers: Mapping[str, str]
    body: bytes
    secret_url: bool = False  # fetched for a url_env source: messages show no more than its scheme and host
    moved: str | None = None  # the warning for a URL that redirected permanently (see `moved_warning`)
    unchecked: bool = False  # compressed, its trailer (checksum) missing: read, its validators not kept (`state_after`)

    def __repr__(self) -> str:
        # The URL as messages show it: the real one may hold a key (in its query, or as its path for url_env).
        return f"Response({self.where!r}, status={self.status}, {len(self.body)} bytes)"

    @property
    def where(self) -> str:
        """The URL as messages show it (`shown_url`)."""
        return shown_url(self.url, secret=self.secret_url)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


def make_client(settings: CollectSettings) -> httpx.Client:
    """The shared client: our User-Agent, gzip, bounded redirects, pooled connections (thread-safe), and every
    socket read and write held to the deadline of the `fetch` it serves (collectors/deadline.py)."""
    limits = httpx.Limits(max_connections=max(10, settings.max_workers * 2), max_keepalive_connections=10)
    # A proxy of the environment httpx cannot use failed the client's making, and so every source (miner.proxy_env):
    # it fails the sources it would carry.
    proxies = mounts(lambda url: httpx.HTTPTransport(proxy=url, limits=limits), RefusedProxy)
    client = httpx.Client(
        headers={"User-Agent": settings.user_agent, "Accept-Encoding": "gzip, deflate"},
        follow_redirects=True,
        max_redirects=settings.max_redirects,
        timeout=httpx.Timeout(20.0, connect=settings.connect_timeout),
        limits=limits,
        # Given a transport, httpx reads no proxy from the environment: `mounts` holds them all.
        transport=None if proxies is None else httpx.HTTPTransport(limits=limits),
        mounts=proxies,
    )
    hold_to_deadlines(client)
    return client


def host_of(url: str, secret: bool = False) -> str:
    """``url``'s host; ``secret`` (a URL from the environment, or one it redirected to): as messages show it
    (`shown_host`), without the labels that read as a key."""
    host = urlsplit(url).hostname
    if secret:
        return shown_host(host) if host else REDACTED
    return host or url


def fetch(
    client: httpx.Client,
    settings: CollectSettings,
    url: str,
    *,
    timeout: float,
    now: Callable[[], datetime],
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str | int] | None = None,
    json_body: Any = None,
    auth: tuple[str, str] | None = None,
    form: Mapping[str, str] | None = None,
    ok_statuses: frozenset[int] = frozenset(),
    secret_url: bool = False,
) -> Response:
    """One request, body read in chunks and refused past ``settings.max_body_bytes``.

    Returns 2xx and 304 responses (and any status in ``ok_statuses``, for APIs whose error documents the
    caller must read); raises SourceError for everything else. ``now``: the poll's clock (`PollContext.now`), which
    an HTTP-date Retry-After is read against. ``secret_url``: the URL came from the environment
    (`SourceConfig.secret_url`), so no message shows its path, nor that of a URL it redirects to.
    """
    cap = settings.max_body_bytes
    deadline = time.monotonic() + timeout
    request_timeout = httpx.Timeout(timeout, connect=min(settings.connect_timeout, timeout))
    # A 307/308 redirect re-sends the body, and httpx drops only the Authorization header when the host changes:
    # a login (Bluesky's app password in JSON, Reddit's form) would reach whatever host the redirect names.
    follow = json_body is None and form is None and auth is None
    try:
        with deadline_at(deadline), client.stream(
            method, url, headers=headers, params=params, json=json_body, auth=auth, data=form,
            timeout=request_timeout, follow_redirects=follow,
        ) as resp:
            final_url = str(resp.url)
            where = shown_url(final_url, secret=secret_url)
            good = 200 <= resp.status_code < 300 or resp.status_code == 304 or resp.status_code in ok_statuses
            limit = cap if good else _ERROR_BODY_BYTES
            declared = resp.headers.get("content-length", "")
            if good and declared.isdigit() and int(declared) > cap:
                raise SourceError(f"body larger than {cap} bytes from {where}")
            chunks: list[bytes] = []
            total = 0
            no_trailer: list[str] = []
            for chunk in decoded(resp, whole=good, no_trailer=no_trailer):
                total += len(chunk)
                if total > limit:
                    if good:
                        raise SourceError(f"body larger than {cap} bytes from {where}")
                    break
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise SourceError(f"timed out after {timeout:g} s reading {where}")
            result = Response(
                url=final_url,
                status=resp.status_code,
                headers=_headers(resp.headers),
                body=b"".join(chunks),
                secret_url=secret_url,
                moved=moved_warning(url, [*resp.history, resp], secret_url),
                unchecked=bool(no_trailer),
            )
            if no_trailer:
                warn_no_trailer(where, no_trailer)
    except httpx.TooManyRedirects:
        raise SourceError(
            f"too many redirects (more than {settings.max_redirects}) from {shown_url(url, secret=secret_url)}"
        ) from None
    except (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout) as exc:
        failed, via = _failed_hop(exc, url, secret_url)
        shown = shown_url(failed, secret=secret_url)
        raise SourceError(f"timed out after {timeout:g} s reading {shown}{via}") from None
    except httpx.RemoteProtocolError as exc:
        failed, via = _failed_hop(exc, url, secret_url)
        said = _unquoted(str(exc), url, failed, secret_url)
        raise SourceError(f"truncated or broken response from {host_of(failed, secret_url)}{via}: {said}") from None
    except httpx.DecodingError as exc:
        failed, via = _failed_hop(exc, url, secret_url)
        said = _unquoted(str(exc), url, failed, secret_url)
        raise SourceError(f"cannot decode response from {host_of(failed, secret_url)}{via}: {said}") from None
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        # Shortened as every other message: the full URL may carry a key in its query or user:password.
        where = shown_url(url, secret=secret_url)
        target = _redirected_to(exc, url)
        if target is not None:
            # The configured URL is fine; "bad URL <it>" sent the operator to check feeds.toml for nothing.
            raise SourceError(f"{where} redirects to {shown_url(target, secret=secret_url)}, which is not an http(s) "
                              f"URL: {exc}", permanent=True) from None
        if isinstance(exc, httpx.InvalidURL) and _web_url(url):
            # A Location with a scheme but no "//host" (mailto:, javascript:, data:, "http:login") is refused as httpx
            # builds the redirect, so no request names it; the URL asked, a web URL, was sent.
            raise SourceError(f"{where} redirects to a Location that is not an http(s) URL: {exc}",
                              permanent=True) from None
        raise SourceError(f"bad URL {where}: {exc}", permanent=True) from None
    except ProxyUnusable as exc:
        raise SourceError(str(exc), permanent=True) from None
    except idna.IDNAError as exc:
        # Not an httpx error: raised as httpx reads the host of the URL, or of a redirect's Location.
        where = shown_url(url, secret=secret_url)
        if _idna_host(url):
            said = without_url(str(exc), url, secret=secret_url)  # IDNA's words quote the label they refuse
            raise SourceError(f"host {host_of(url, secret_url)} is not a valid internationalised domain name (IDNA: "
                              f"{said}): check the source's url ({where})", permanent=True) from None
        said = without_url(str(exc), url, secret=secret_url)
        raise SourceError(f"{where} redirects to a host that is not a valid internationalised domain name (IDNA: "
                          f"{said})", permanent=True) from None
    except (httpx.LocalProtocolError, UnicodeEncodeError):
        # A header value HTTP cannot carry (a line break or non-ASCII character in a token the server sent): httpx's
        # message quotes the whole value, token and all, and its UnicodeEncodeError was an internal error.
        raise SourceError(f"request to {shown_url(url, secret=secret_url)} could not be sent: a header holds a "
                          "character HTTP does not allow (in a token the server sent?)") from None
    except httpx.HTTPError as exc:  # a connection refused, reset or cut, a TLS, DNS or proxy failure
        failed, via = _failed_hop(exc, url, secret_url)
        raise _network_error(exc, failed, via, min(settings.connect_timeout, timeout), secret_url) from None
    if 200 <= result.status < 300 or result.status == 304 or result.status in ok_statuses:
        return result
    raise status_error(result, now())


def _network_error(exc: httpx.HTTPError, url: str, via: str, timeout: float, secret: bool) -> SourceError:
    """A failure at ``url``'s host as what it was (miner.net_errors), or in httpx's words for a cause it knows not."""
    host = url_host(url, secret=secret)
    failure = describe(exc, host, trust=HTTPX_TRUST, timeout=timeout, proxy=env_proxy(url),
                       not_tls=f"is {host} an http:// server, or is its https on another port?")
    if failure is not None:
        return SourceError(failure.text(via), needs_action=failure.needs_action)
    said = without_url(str(exc), url, secret=secret)  # httpx's words may name the host, or quote the request
    return SourceError(f"request to {shown_url(url, secret=secret)}{via} failed: {said}")


def _redirected_to(exc: Exception, url: str) -> str | None:
    """The URL a redirect named, when that (not ``url`` itself) is the one whose request failed."""
    try:
        target: httpx.URL = exc.request.url  # type: ignore[attr-defined]  # an httpx.RequestError's; InvalidURL has none
        asked = httpx.URL(url)
    except (AttributeError, RuntimeError, httpx.InvalidURL):  # raised before a request was built: the URL was bad
        return None
    # Compared as httpx wrote the request, host lower-cased and path encoded: "https://Status.example.com/feed"
    # failing at its own host read as redirected from itself.
    same = (target.scheme, target.host, target.port, target.path) == (asked.scheme, asked.host, asked.port, asked.path)
    return None if same else str(target)


def _idna_host(url: str) -> bool:
    """Whether httpx fails to read ``url``'s own host as IDNA (rather than a redirect's)."""
    try:
        _ = httpx.URL(url).host
    except (httpx.InvalidURL, UnicodeError):
        return True
    return False


def _web_url(url: str) -> bool:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return False
    return parsed.scheme in ("http", "https") and bool(parsed.host)


def _unquoted(said: str, url: str, failed: str, secret: bool) -> str:
    """httpx's words for a response it could not read, which quote the line it found malformed: a server (or what
    listens on a wrong port) that echoed the request line put the URL's key in it, path and query, as `shown_url`
    never shows them."""
    return without_url(without_url(said, failed, secret=secret), url, secret=secret)


def _failed_hop(exc: Exception, url: str, secret: bool) -> tuple[str, str]:
    """The URL whose request failed, and what to add to a message naming it: where it was redirected from. A
    redirect to a host that is down was reported as the source's own host being down."""
    target = _redirected_to(exc, url)
    if target is None:
        return url, ""
    return target, f" (redirected from {shown_url(url, secret=secret)})"


def moved_warning(url: str, hops: list[httpx.Response], secret: bool) -> str | None:
    """What to tell the operator when ``url`` redirects permanently (301 or 308 from the first hop on): the source
    should be pointed at where it went. Following it on every poll costs a request each time, and the old URL tends
    to stop redirecting one day (a domain given up), when the source fails for no reason the operator can see."""
    moved_to, status = None, 0
    for hop, after in itertools.pairwise(hops):
        if hop.status_code not in (301, 308):
            break  # a temporary redirect: the URL is still the one to ask
        moved_to, status = str(after.url), status or hop.status_code
    if moved_to is None:
        return None
    return (f"{shown_url(url, secret=secret)} has moved for good (HTTP {status}) to "
            f"{shown_url(moved_to, secret=secret)}: update the source's url")


def status_error(resp: Response, now: datetime) -> SourceError:
    """The SourceError for a non-success status, with Retry-After for 429/503 (an HTTP date counted from ``now``)."""
    host = host_of(resp.url, resp.secret_url)
    retry_after = None
    message = f"HTTP {resp.status} from {host}"
    if resp.headers.get("cf-mitigated", "").strip().lower() == "challenge":
        # Cloudflare's bot check (a "Just a moment..." page, usually a 403): "check the source's credentials" sent the
        # operator after a key the source does not have.
        message += " (a Cloudflare bot challenge: the site lets no automated client through; ask its owner to allow "
        message += "miner's User-Agent, or find another URL for the feed)"
    elif resp.status in (429, 503):
        retry_after = parse_retry_after(resp.headers.get("retry-after"), now)
        if retry_after is None and resp.status == 429:
            # Mastodon's 429 (as other throttles') says when its limit resets in rate-limit headers only: without them
            # the source was retried on its backoff, sooner than the reset (Mastodon's windows last up to 15 min).
            retry_after = rate_limit_wait(resp.headers, now)
        if retry_after is not None:
            message += f" (retry after {retry_after:.0f} s)"
    elif resp.status in (401, 403):
        message += " (check the source's credentials and URL)"
    elif resp.status == 410:
        # The server says the resource was removed on purpose and will not come back (a forum's feed turned off, a
        # community deleted): nothing to wait out or investigate, so the message says what to do, in its first words
        # as `miner status` cuts it. Still polled every backoff_max, as any permanent error: a 410 sent by mistake
        # (a site moved to a new CMS) and then fixed brings the source back without anyone having to notice.
        message += f" (gone for good: remove the source from feeds.toml, or give it the feed's new url; {resp.where})"
    elif resp.status == 404:
        message += f" (no such resource: {resp.where})"
    elif 300 <= resp.status < 400 and (location := resp.headers.get("location")):
        # Only a request carrying a login is not redirected (see fetch): say where to point the source instead.
        shown = shown_url(location, secret=resp.secret_url)
        message += f" (a login is not sent on to a redirect; it points to {shown})"
    return SourceError(message, retry_after=retry_after, permanent=resp.status in _PERMANENT_STATUSES,
                       http_status=resp.status)


def empty_body(resp: Response) -> SourceError:
    """The error for a 2xx answer without a body (a CDN or cache that lost it, a 204), which was reported as "not an
    RSS/Atom feed" or "invalid JSON": that sent the operator to check the URL."""
    return BadContent(f"empty response (HTTP {resp.status}, no body) from {resp.where}", http_status=resp.status)


def read_json(resp: Response) -> Any:
    """The response body as JSON, or a SourceError naming what came instead. A permanent redirect to it is noted for
    the poll's warnings (logged outside a poll), for every JSON collector and page alike."""
    if resp.moved and not note("moved", resp.moved):
        log.warning("%s", resp.moved)
    if not resp.body.strip():
        raise empty_body(resp)
    ctype = resp.content_type
    if ctype and not ("json" in ctype or ctype in ("text/plain", "text/javascript", "application/javascript")):
        raise BadContent(f"expected JSON from {resp.where}, got {ctype}")
    if resp.body[:512].lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        # A login wall, captive portal or proxy error page sent without a type, or labelled JSON: "invalid JSON:
        # Expecting value at line 1 column 1" did not say what came.
        raise BadContent(f"expected JSON from {resp.where}, got an HTML or XML page ({ctype or 'no content type'})")
    if resp.body.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in resp.body[:4]:
        # JSON's first characters are ASCII: a NUL among its first bytes is UTF-16 or UTF-32, which U+FFFD would hide.
        raise BadContent(f"invalid JSON from {resp.where}: not UTF-8 text (UTF-16 or UTF-32)")
    text = json_text(resp.body, resp.where)
    try:
        return without_surrogates(json.loads(text))
    except json.JSONDecodeError as exc:
        # Cut short: the error sits at the end, after at most a partial literal or number ("nu", "12").
        cut = bool(_PARTIAL_TAIL.fullmatch(text[exc.pos:].strip())) or exc.msg.startswith("Unterminated string")
        hint = " (truncated body?)" if cut else ""
        raise BadContent(
            f"invalid JSON from {resp.where}: {exc.msg} at line {exc.lineno} column {exc.colno}{hint}"
        ) from None
    except RecursionError:
        raise BadContent(f"invalid JSON from {resp.where}: nested too deeply") from None
    except ValueError:
        # An integer longer than Python converts (sys.get_int_max_str_digits) is a bare ValueError, which failed the
        # poll as an internal error of the collector, with a traceback logged at every poll.
        raise BadContent(f"invalid JSON from {resp.where}: a number of more than {sys.get_int_max_str_digits()} "
                         "digits") from None


# Headers that hold one value. One sent twice (by a proxy and the application behind it) came joined with ", " by
# httpx ("120, 120"): its first value is kept, as other clients read it; Retry-After stays joined, since
# parse_retry_after takes the longest of its values.
_ONE_VALUE = frozenset({"etag", "last-modified", "location", "x-ratelimit-remaining", "x-ratelimit-reset",
                        "ratelimit-remaining", "ratelimit-reset"})


def _headers(headers: httpx.Headers) -> dict[str, str]:
    return {name: headers.get_list(name)[0] if name in _ONE_VALUE else value
            for name, value in ((k.lower(), v) for k, v in headers.items())}


def json_object(resp: Response) -> dict[str, Any]:
    data = read_json(resp)
    if not isinstance(data, dict):
        raise BadContent(f"unexpected JSON from {resp.where}: expected an object, got {type(data).__name__}")
    return data

"""The webhook sender: a POST of the JSON body to the URL in the webhook's environment variable (generic JSON, Slack,
Teams, PagerDuty), its answer told as delivery.py's senders tell theirs; and the senders the dispatcher uses by
default."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
import idna

from miner.alerts.channel_settings import PAGERDUTY_URL, SmtpSettings, WebhookSettings
from miner.alerts.delivery import DeliveryError, Senders, SendStopped, SmtpSender, required_env
from miner.alerts.send_failures import webhook_failure
from miner.alerts.webhooks import PostStopped, post_json
from miner.env_names import shown_name
from miner.net_errors import url_host
from miner.proxy_env import ProxyUnusable
from miner.redaction import cut_text, redact, without_cut_secret
from miner.timeutil import parse_retry_after, utcnow
from miner.urls import control_char, idna_problem, url_pieces, without_url


class HttpWebhookSender:
    """POSTs JSON to the URL in the webhook's env var (or a pagerduty webhook's endpoint). Redirects are not followed
    (the URL holds a secret). A pagerduty event gets its ``routing_key`` here, from the environment, and only here.
    ``stop``: set when the service is asked to stop; a POST whose body has not gone out whole STOP_GRACE s after is
    cut (webhooks.post_json), as an email's session is."""

    def __init__(self, environ: Mapping[str, str] | None = None, user_agent: str = "miner-alerts/1",
                 stop: threading.Event | None = None) -> None:
        self.environ = os.environ if environ is None else environ
        self.user_agent = user_agent
        self.stop = stop

    def __call__(self, webhook: WebhookSettings, body: dict[str, Any]) -> str:
        url = webhook_url(webhook, self.environ)
        key = ""
        if webhook.format == "pagerduty":
            key = required_env(webhook.routing_key_env, f"webhook {webhook.name}: routing key", self.environ)
            body = {"routing_key": key, **body}
        try:
            resp = post_json(url, body, timeout=webhook.timeout, user_agent=self.user_agent, stop=self.stop)
        except PostStopped as exc:
            # Not a timeout of the receiver's: due at once, and no attempt of the message's (SendStopped).
            raise SendStopped(f"webhook {webhook.name}: POST {exc}: sent again at the next start") from None
        except httpx.InvalidURL:  # not an HTTPError; webhook_url() should have caught it
            raise DeliveryError(f"webhook {webhook.name}: {shown_name(webhook.url_env) or 'url'} is not a valid URL",
                                permanent=True) from None
        except ProxyUnusable as exc:
            raise DeliveryError(f"webhook {webhook.name}: {exc}", permanent=True) from None
        except idna.IDNAError as exc:  # not an httpx error: a host that webhook_url passed and httpx cannot read
            what = f"webhook {webhook.name}: {shown_name(webhook.url_env) or 'url'}"
            raise DeliveryError(_not_idna(what, url, f"IDNA: {exc}"), permanent=True) from None
        except (TimeoutError, httpx.HTTPError) as exc:
            said, needs_action = webhook_failure(webhook, url, exc)  # never the URL: it is the secret
            raise DeliveryError(said, unreachable=True, needs_action=needs_action) from None
        if 200 <= resp.status < 300:
            return f"HTTP {resp.status}"
        # Redact before cutting: a cut could leave part of the secret that no longer matches it. A PagerDuty error
        # may quote the event, routing key and all. The answer itself was cut at BODY_LIMIT: a secret it quotes across
        # that cut starts its last bytes, and each "[redacted]" before it is shorter than what it took out, so those
        # bytes came within the snippet's 200 characters.
        secrets = [key, *url_pieces(url)]
        snippet = cut_text(resp.body, resp.cut)
        if resp.cut:  # first: a "[redacted]" within that start (its path's word) would hide which it is
            snippet = without_cut_secret(snippet, secrets)
        snippet = redact(snippet, secrets)
        snippet = snippet[:200].replace("\n", " ")
        message = f"webhook {webhook.name}: HTTP {resp.status} {snippet}".strip()
        if resp.status == 429 or resp.status >= 500:
            # Seconds or an HTTP date: the date is read against the real clock, as the server meant it.
            retry_after = parse_retry_after(resp.headers.get("Retry-After"), utcnow())
            raise DeliveryError(message, retry_after=retry_after,
                                throttled=resp.status == 429 or retry_after is not None)
        if 300 <= resp.status < 400:
            # "HTTP 301" alone left the user to guess why a URL that answers fails: an http:// URL of a receiver
            # that moved to https:// is the common case. The Location is not shown: it holds the secret too.
            message += (f" (a redirect, which is not followed, since the URL holds the secret: set "
                        f"{shown_name(webhook.url_env) or 'url'} to the URL it redirects to)")
        raise DeliveryError(message, permanent=True)


def webhook_url(webhook: WebhookSettings, environ: Mapping[str, str]) -> str:
    """The webhook's URL from its environment variable, or a permanent DeliveryError naming the variable; a
    pagerduty webhook without url_env: its url, or PagerDuty's endpoint (both checked by the config).

    A URL that cannot be sent to (a stray newline, a broken IPv6 bracket, two ports) stays so until someone fixes
    the environment: retrying for give_up_after cannot help. The URL holds the secret, so no message shows it.
    """
    if not webhook.url_env:
        return webhook.url or PAGERDUTY_URL
    url = required_env(webhook.url_env, f"webhook {webhook.name}", environ)
    what = f"webhook {webhook.name}: {shown_name(webhook.url_env)}"
    if not url.startswith(("http://", "https://")):
        raise DeliveryError(f"{what} is not an http(s) URL", permanent=True)
    if any(ch.isspace() for ch in url) or control_char(url):
        raise DeliveryError(f"{what} contains whitespace or a control character (a trailing newline?)",
                            permanent=True)
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:  # a broken IPv6 bracket: httpx's InvalidURL below says so
        host = ""
    if reason := idna_problem(host):  # before httpx, which refuses the one and raises idna's error for the other
        raise DeliveryError(_not_idna(what, url, reason), permanent=True)
    try:
        parsed = httpx.URL(url)
        port = parsed.port
    except httpx.InvalidURL:
        raise DeliveryError(f"{what} is not a valid URL (check its host and port)", permanent=True) from None
    if not parsed.raw_host:  # raw: its host property decodes IDNA, raising for a name that is not valid
        raise DeliveryError(f"{what} is not a valid URL (no host)", permanent=True)
    if port is not None and not 0 < port <= 65535:
        raise DeliveryError(f"{what} is not a valid URL (port out of range)", permanent=True)
    return url


def _not_idna(what: str, url: str, reason: str) -> str:
    # IDNA's words quote the label they refuse, which may be the key (https://<token>.hooks.example/).
    return (f"{what}: host {url_host(url, secret=True)} is not a valid internationalised domain name "
            f"({without_url(reason, url)})")


def default_senders(smtp: SmtpSettings, stop: threading.Event | None = None) -> Senders:
    return Senders(email=SmtpSender(smtp, stop=stop), webhook=HttpWebhookSender(stop=stop))

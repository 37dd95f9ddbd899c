"""How alert messages leave: the `[alerts.smtp]` server and the `[[alerts.webhooks]]` (generic JSON, Slack,
Microsoft Teams, PagerDuty). They hold the *names* of the environment variables with the secrets, never the secrets."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

from miner.alerts.text import safe_url
from miner.env_names import ENV_NAME
from miner.settings import Conflict
from miner.source_settings import MAX_TIMEOUT
from miner.urls import control_char, credentials_in_url, is_ip, url_problem

# A webhook's or route's name: it is shown in messages and used in outbox keys.
NAME = re.compile(r"[A-Za-z0-9_.\-]+")


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "localhost"
    port: int = 587
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username_env: str = ""  # env var holding the login user; empty = no login
    password_env: str = ""  # env var holding the password
    timeout: float = 30.0  # seconds for connect and each SMTP command
    ca_file: str = ""  # PEM bundle of CAs to trust instead of the system's (a relay with a private CA)

    def validate(self) -> None:
        if not self.host or self.host != self.host.strip() or control_char(self.host):
            raise ValueError("host: must be a host name or address without spaces or control characters")
        if ":" in self.host and not is_ip(self.host):
            raise ValueError("host: give the port in `port`, not as host:port")
        if not 0 < self.port <= 65535:
            raise ValueError("port: must be 1..65535")
        for key in ("username_env", "password_env"):
            value = getattr(self, key)
            if value and not ENV_NAME.fullmatch(value):
                raise ValueError(f"{key}: must name an environment variable, not hold the secret itself")
        # At the key the file sets, with its line: it named password_env when only username_env was set, at the
        # [alerts.smtp] header's line.
        if self.username_env and not self.password_env:
            raise ValueError("username_env: needs password_env too: set both username_env and password_env, or neither")
        if self.password_env and not self.username_env:
            raise ValueError("password_env: needs username_env too: set both username_env and password_env, or neither")
        if not 0 < self.timeout <= MAX_TIMEOUT:
            raise ValueError(f"timeout: must be more than 0 and at most {MAX_TIMEOUT:.0f} seconds")

    @property
    def login_in_clear(self) -> bool:
        """Whether the login would cross the network unencrypted: security "none" to a host not on this machine."""
        if self.security != "none" or not self.username_env:
            return False
        try:
            return not ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host.lower() != "localhost"


PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
Severity = Literal["critical", "error", "warning", "info"]


@dataclass(frozen=True)
class WebhookSettings:
    name: str
    url_env: str = ""  # env var holding the URL (webhook URLs embed their secret); required but for pagerduty
    format: Literal["json", "slack", "pagerduty", "teams"] = "json"
    timeout: float = 10.0
    # pagerduty only: the secret is the routing key, sent in the body, so its endpoint may be written out (an EU
    # endpoint, a proxy); empty is PAGERDUTY_URL, unless url_env names a variable holding it.
    url: str = ""
    routing_key_env: str = ""  # pagerduty only: env var holding the integration (routing) key
    severity: Severity = "error"  # pagerduty only: payload.severity of its triggers (Alertmanager's default)

    def validate(self) -> None:
        if not NAME.fullmatch(self.name):
            raise ValueError("name: use letters, digits and . _ - only")
        pagerduty = self.format == "pagerduty"
        if self.url_env and not ENV_NAME.fullmatch(self.url_env):
            raise ValueError("url_env: must name an environment variable (the URL itself is a secret)")
        if not pagerduty:
            # Before url_env's absence: a Slack URL pasted into url was answered "url_env: required", at the table's
            # line, and the key the file did set went unnamed.
            for key in ("url", "routing_key_env"):
                if getattr(self, key):
                    raise Conflict(f"{key}: only a webhook with format = \"pagerduty\" takes it"
                                   + (f" (a {self.format} webhook's URL is its secret: give it in url_env)"
                                      if key == "url" else ""), also=("format",))
            if not self.url_env:
                raise Conflict(f"url_env: required for format = \"{self.format}\": the environment variable holding "
                               "the webhook's URL (the URL itself is a secret)", also=("format",))
        else:
            if not self.routing_key_env:
                raise Conflict("routing_key_env: required for format = \"pagerduty\": the environment variable "
                               "holding the integration's routing key (never the key itself)", also=("format",))
            if not ENV_NAME.fullmatch(self.routing_key_env):
                raise ValueError("routing_key_env: must name an environment variable, not hold the routing key itself")
            if self.url and self.url_env:
                raise Conflict("url: give the endpoint in url or in url_env, not both", also=("url_env",))
            # A url is for an endpoint that holds no secret (PagerDuty's EU one, a proxy): feeds.toml is committed.
            if self.url and safe_url(self.url) != self.url:
                raise ValueError("url: must be an http:// or https:// URL with a host, without spaces, quotes, control "
                                 "characters or a user name (a URL holding a credential goes in url_env)")
            if self.url and (problem := url_problem(self.url)):
                raise ValueError(f"url: {problem}")
            if self.url and (found := credentials_in_url(self.url)):
                raise ValueError(f"url: holds what looks like a credential ({', '.join(found)}); put the URL in an "
                                 "environment variable and name it in url_env")
        if not 0 < self.timeout <= MAX_TIMEOUT:
            raise ValueError(f"timeout: must be more than 0 and at most {MAX_TIMEOUT:.0f} seconds")

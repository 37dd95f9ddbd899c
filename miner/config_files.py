"""Checks of what a feeds.toml names outside itself (the model folder, the SMTP CA bundle, the environment
variables alerts read), for `config check` and `miner run`.

Not part of loading the config: commands that use neither (query, backup, prune) run where they are missing.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

from miner.config import Config, load_config
from miner.config_lines import locate
from miner.env_names import shown_name
from miner.errors import ConfigError


def load_checked(path: Path | str | None) -> Config:
    """The config as `config check` accepts it, and `miner run` at a reload: read, validated, and the files it
    names there. Raises ConfigError naming the key and line."""
    config = load_config(path)
    check_named_files(config)
    return config


def check_named_files(config: Config) -> None:
    """The folder and file the config names are there, as ``miner run`` uses them; else ConfigError with the key
    and line.

    A missing model folder stopped ``miner run`` naming only the path, and a missing or bad ``smtp.ca_file``
    failed every email at its send, permanently, while ``config check`` said OK.
    """
    if (model_dir := config.classifier.model_dir) is not None:
        folder = Path(model_dir).expanduser()
        if not folder.is_absolute() and config.path:  # as the classifier reads it: from the config's folder
            folder = Path(config.path).parent / folder
        if not folder.is_dir():
            _refuse(config, "classifier.model_dir",
                    f"{folder}: no such folder (leave model_dir out for the model shipped in models/)")
    smtp = config.alerts.smtp
    if config.alerts.enabled and smtp.ca_file and smtp.security != "none":
        try:
            ssl.create_default_context(cafile=smtp.ca_file)
        except (OSError, ssl.SSLError) as exc:  # the path as the sender opens it: from the working directory
            # Named as opened: a relative one is read from where the command runs, so `config check` in a shell and
            # the service (systemd's WorkingDirectory) may read two files, and the error named neither.
            where = smtp.ca_file if os.path.isabs(smtp.ca_file) else (
                f"{os.path.abspath(smtp.ca_file)}: a relative path is read from the working directory")
            _refuse(config, "alerts.smtp.ca_file", f"cannot be read as a PEM file of CA certificates: {exc} ({where})")


def _line(config: Config, key: str, *, exact: bool = False) -> int | None:
    try:
        return locate(Path(config.path).read_text(encoding="utf-8-sig"), key, exact=exact) if config.path else None
    except (OSError, UnicodeDecodeError):
        return None


def _refuse(config: Config, key: str, message: str) -> NoReturn:
    raise ConfigError(message, path=config.path, key=key, line=_line(config, key))


def alert_env(config: Config) -> list[tuple[str, str]]:
    """(variable, key) for each environment variable that sending alerts reads: none while alerts are disabled."""
    if not config.alerts.enabled:
        return []
    smtp = config.alerts.smtp
    named = [(smtp.username_env, "alerts.smtp.username_env"), (smtp.password_env, "alerts.smtp.password_env")]
    for i, w in enumerate(config.alerts.webhooks):
        named += [(w.url_env, f"alerts.webhooks[{i}].url_env"),
                  (w.routing_key_env, f"alerts.webhooks[{i}].routing_key_env")]
    return [(var, key) for var, key in named if var]


def unset_alert_env(config: Config, environ: Mapping[str, str] | None = None) -> list[str]:
    """A line for each variable alerts need that is unset or empty, saying what follows: `miner run` logs them at its
    start (warn_unset_alert_env), `miner config check` prints them. The check named the variable alone ("env not
    set: ..."), and the failed emails that follow were left to be found in `miner outbox`."""
    env = os.environ if environ is None else environ
    return [f"{key}: {shown_name(var)} is not set: every "
            f"{'email' if key.startswith('alerts.smtp') else 'alert to this webhook'} fails until miner is started "
            "with it" for var, key in alert_env(config) if not env.get(var)]


def warn_unset_alert_env(config: Config, log: logging.Logger, environ: Mapping[str, str] | None = None) -> None:
    """A warning at `miner run`'s start for each variable alerts need that is unset or empty: read at each send, it
    failed the first alert of an outage for good (a permanent error), which was the first the operator heard."""
    for line in unset_alert_env(config, environ):
        log.warning("%s", line)


def unalerted(config: Config) -> str | None:
    """What no alert route tells anyone of, in words, or None: with alerts enabled, no ``[[alerts.routes]]`` at all, or
    configured services that every route leaves out of its ``services``. Their incidents are detected and stored, and
    no alert or digest names them: the shipped feeds.toml has no route, and a service added to a file whose routes
    list theirs was watched in silence, with nothing saying so."""
    alerts = config.alerts
    if not alerts.enabled or not config.services:
        return None
    if not alerts.routes:
        return ("no [[alerts.routes]]: incidents are detected and stored, but no one is told of them; add a route "
                "with email recipients or webhooks (docs/alerts.md)")
    left = [s.name for s in config.services if not any(route.matches(s.name) for route in alerts.routes)]
    if not left:
        return None
    return (f"alerts.routes: no route lists {', '.join(left)} in its services: their incidents alert no one and are "
            "in no digest; add them to a route's services (or leave a route's services out: it hears of all)")


def warn_unalerted(config: Config, log: logging.Logger) -> None:
    """At `miner run`'s start, what `config check` warns of: services whose incidents no route tells anyone of."""
    if (said := unalerted(config)) is not None:
        log.warning("%s", said)


# The ports whose servers speak the other TLS mode: 465 takes TLS at once, 587 and 25 plain text, then STARTTLS. Plain
# text ("none") is what 587 and 25 take first too (a relay may refuse a login before STARTTLS, which
# warn_smtp_setup's login warning is for), but not 465, which waits for a TLS handshake that never comes.
_OTHER_MODE = {"ssl": {587: "starttls", 25: "starttls"}, "starttls": {465: "ssl"}, "none": {465: "ssl"}}
# The port that usually speaks each mode, offered as the other fix.
_USUAL_PORT = {"ssl": 465, "starttls": 587, "none": 25}


def smtp_port_mismatch(config: Config) -> str | None:
    """With alerts enabled, a ``security`` the usual server on ``port`` does not speak, in words (the key and line
    first, as an error names them), or None. The file loaded, `config check` said OK, and the first email failed at
    its send (ssl to 587: a TLS error; starttls to 465: a wait for the greeting until ``timeout``), maybe at 3 a.m.
    none to 465 waited for the greeting as starttls did. A warning, not an error: a relay may take either on a port of
    its own."""
    smtp = config.alerts.smtp
    if not config.alerts.enabled or (other := _OTHER_MODE.get(smtp.security, {}).get(smtp.port)) is None:
        return None
    # The key the file sets: the other one is left at its default, which matches its own.
    key = "alerts.smtp.security"
    if (line := _line(config, key, exact=True)) is None:
        key = "alerts.smtp.port"
        line = _line(config, key)
    where = f"{config.path or 'config'}{f':{line}' if line is not None else ''}: {key}"
    usual = _USUAL_PORT[smtp.security]
    return (f'{where}: security = "{smtp.security}" with port {smtp.port}, where servers expect {other}: every email '
            f'is likely to fail at its send; use security = "{other}", or port {usual} for {smtp.security} (a relay '
            "that takes it on this port may ignore this)")


def warn_smtp_setup(config: Config, log: logging.Logger) -> None:
    """At `miner run`'s start, what `config check` warns of about the SMTP settings: a ``security`` that the server
    on ``port`` usually does not speak, and security "none" with a login to another host, which sends the password
    across the network unencrypted at every email. The service said nothing, and a service's log is what its
    operator reads (`config check` is run by hand, if at all)."""
    if (said := smtp_port_mismatch(config)) is not None:
        log.warning("%s", said)
    smtp = config.alerts.smtp
    if config.alerts.enabled and smtp.login_in_clear:
        log.warning('alerts.smtp: security = "none" sends the login (%s) to %s unencrypted; use starttls or ssl '
                    "(none is for a relay on this machine)", shown_name(smtp.password_env), smtp.host)


def warn_unusable_proxies(config: Config, log: logging.Logger) -> None:
    """At `miner run`'s start, what `config check` warns of: a proxy of the environment that miner's HTTP (httpx)
    cannot use (miner.proxy_env), which fails every source it would carry and every webhook POST it would, for good."""
    if not (config.sources or (config.alerts.enabled and config.alerts.webhooks)):
        return
    from miner.proxy_env import proxy_problems  # imports httpx

    for problem in proxy_problems():
        log.error("%s; until then the sources and webhooks it would carry fail", problem)

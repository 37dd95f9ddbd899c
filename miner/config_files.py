"""Checks of the files a feeds.toml names (the model folder, the SMTP CA bundle), for `config check` and `miner run`.

Not part of loading the config: commands that use neither (query, backup, prune) run where they are missing.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import NoReturn

from miner.config import Config
from miner.config_lines import locate
from miner.errors import ConfigError


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
            _refuse(config, "alerts.smtp.ca_file", f"cannot be read as a PEM file of CA certificates: {exc}")


def _refuse(config: Config, key: str, message: str) -> NoReturn:
    try:
        line = locate(Path(config.path).read_text(encoding="utf-8-sig"), key) if config.path else None
    except (OSError, UnicodeDecodeError):
        line = None
    raise ConfigError(message, path=config.path, key=key, line=line)

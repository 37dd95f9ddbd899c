"""What a `*_env` setting holds: the name of an environment variable, never the secret itself."""

from __future__ import annotations

import re

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # what a *_env setting holds: a name, never the secret


def secret_like(name: str) -> bool:
    """Whether a *_env value that ENV_NAME takes still reads as the secret itself, not a variable's name.

    Variable names are upper-case words (SMTP_PASSWORD); a password (hunter2), a GitHub token (ghp_...) or an AWS
    key id (20 capitals and digits in one run) is not. Only for what `config check` shows of an unset variable:
    a lower-case name is legal, so this never refuses one.
    """
    return any(ch.islower() for ch in name) or any(
        any(ch.isdigit() for ch in run) for run in re.findall(r"[A-Z0-9]{20,}", name))


def shown_name(var: str) -> str:
    """``var`` as a message may show it: not at all when it reads as the secret itself (a message about an unset
    variable is logged and stored, in a source's last error or a delivery's detail)."""
    return "a variable whose name is not shown (it reads as the secret itself)" if secret_like(var) else var

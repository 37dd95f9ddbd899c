"""Logging for the service: one line per event, as text for people or JSON for log shippers."""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime

from miner.urls import escape_controls, json_escape_controls

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...extra}`` per line; extras come from ``log.info(..., extra={})``."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        # A message quotes others' text: a C1 control (xterm takes U+009B for CSI) or a bidi override would reach
        # whoever reads the log in a terminal, as the text format's escaping keeps ESC from it.
        return json_escape_controls(json.dumps(out, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    """``2026-11-28T04:50:00.123Z LEVEL logger: message``. In UTC, as every other time miner shows, those in the
    messages too: logging's default is the machine's local time with no zone, which reads as UTC beside them."""

    @staticmethod
    def converter(seconds: float | None) -> time.struct_time:
        return time.gmtime(seconds)

    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03dZ"

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        # One line per event, whatever the message quotes: a source's or a webhook receiver's error answer, a
        # feed's text. Its ESC sequences would drive the terminal tailing the log, a line break forge a line.
        # A traceback, added after this, keeps its lines.
        return escape_controls(super().formatMessage(record))


class BareFormatter(logging.Formatter):
    """The message alone, as Python's last-resort handler prints it, with the text format's escaping."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record))


def escape_last_resort() -> None:
    """Every command but `miner run` logs no handler of its own: a warning (a source's failure in `miner collect`, a
    send's in `miner outbox send`) is printed by Python's last-resort handler as it is, and quotes anyone's text, a
    feed server's Content-Type or a receiver's error answer. Its ESC sequences drove the terminal (``\x1b[8m`` hid
    all that followed) and a line break forged a line; they are written escaped, as in the service's log."""
    if logging.lastResort is not None:
        logging.lastResort.setFormatter(BareFormatter())


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # APScheduler logs every job run at INFO; our jobs log what they did themselves.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # httpx logs every request's full URL at INFO (a key in its query or path), and httpcore's debug trace quotes
    # response headers and a failed request's exception, which can hold the Authorization header's token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)

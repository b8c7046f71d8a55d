"""How every openfdi process logs (the server and its worker processes): one `configure()`.

`OPENFDI_LOG_FORMAT=json` writes one JSON object a line (python-json-logger), for a log
collector; anything else, or unset, writes text. Either way a record carries the id of the HTTP
request it was logged in (`request_id`, the `X-Request-Id` the client sees) and, where the engine
passes them, the `task_id` and `run_id` of the run it concerns.
"""

from __future__ import annotations

import contextvars
import logging
import os
import sys

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

FORMAT_ENV = "OPENFDI_LOG_FORMAT"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
IDS = ("request_id", "task_id", "run_id")
"""Context a record may carry, as attributes (set with `extra=` or by `ContextFilter`)."""

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "openfdi_request_id", default=None
)
"""The id of the HTTP request being handled (set by the API's request middleware)."""

# uvicorn's loggers have handlers of their own and do not propagate: in JSON they are sent to
# the root handler instead, so that every line of the process is JSON.
_SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


class ContextFilter(logging.Filter):
    """Adds the current request id to a record that has none (a handler filter: it sees every
    record the handler writes, whichever logger it came from)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            rid = request_id.get()
            if rid is not None:
                record.request_id = rid
        return True


class TextFormatter(logging.Formatter):
    """The text line, followed by whichever of the ids the record carries (`run_id=...`)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = [f"{name}={value}" for name in IDS if (value := getattr(record, name, None))]
        if not ids:
            return line
        first, newline, rest = line.partition("\n")  # after the message, before a traceback
        return f"{first} [{' '.join(ids)}]{newline}{rest}"


def json_formatter() -> logging.Formatter:
    """One JSON object a record: time (ISO 8601, UTC), level, logger, message, the ids the
    record carries and any other `extra=` field; a traceback as `exc_info` text."""
    return JsonFormatter(
        "%(levelname)s %(name)s %(message)s",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
        reserved_attrs=[*RESERVED_ATTRS, "color_message"],  # uvicorn's, with terminal colours
        json_ensure_ascii=False,
    )


def wants_json() -> bool:
    return os.environ.get(FORMAT_ENV, "").strip().lower() == "json"


def configure(level: str | int | None = None) -> None:
    """Send the process's logs to stderr in the chosen format; idempotent.

    Replaces the handler a previous call (or `logging.basicConfig`) installed on the root logger,
    and leaves any other (a test framework's capture) alone. `level` sets the root level; None
    keeps it.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "openfdi", False) or type(handler) is logging.StreamHandler:
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.openfdi = True  # type: ignore[attr-defined]
    json_lines = wants_json()
    handler.setFormatter(json_formatter() if json_lines else TextFormatter())
    handler.addFilter(ContextFilter())
    root.addHandler(handler)
    if level is not None:
        root.setLevel(level.upper() if isinstance(level, str) else level)
    if json_lines:
        for name in _SERVER_LOGGERS:
            server_logger = logging.getLogger(name)
            if server_logger.handlers:  # none: a logger uvicorn turned off (--no-access-log)
                server_logger.handlers.clear()
                server_logger.propagate = True

"""Connector error tree and the one seam where driver exceptions become it (layer: connectors).

    ConnectorError                      retryable = False unless a subclass says otherwise
    ├── TransientConnectorError         retryable: lost connection, timeout, deadlock, busy
    ├── SliceRefusedError               a pass-through slice held a row the target refused
    └── TerminalConnectorError          fail the run: syntax, permission, missing table, auth
        ├── InvalidContentError         the datasource content cannot describe a connection
        ├── TableNotFoundError          the named table or view does not exist
        ├── QueryCancelledError         `Connector.cancel()` interrupted the work
        ├── ConnectorNotFoundError      no connector is registered for a datasource type
        └── ConnectorUnavailableError   registered, but its driver cannot be imported

Each driver package wraps its calls in its own `map_driver_errors()`, built on `translating()`
here. Messages keep the driver's reason (users need it to fix a datasource) but pass through
`redact()` first, so a password can never reach a run remark, an API answer or a log line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import ClassVar

__all__ = [
    "ConnectorError",
    "ConnectorNotFoundError",
    "ConnectorUnavailableError",
    "InvalidContentError",
    "QueryCancelledError",
    "SliceRefusedError",
    "TableNotFoundError",
    "TerminalConnectorError",
    "TransientConnectorError",
    "redact",
    "translating",
]

MASK = "******"


class ConnectorError(Exception):
    """An error raised by a connector. The engine records `code`, the message and `retryable`."""

    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        """The driver's own code (SQLSTATE, MySQL errno, SQLite error name), when it has one."""


class TransientConnectorError(ConnectorError):
    """The same work may succeed if tried again later."""

    retryable = True


class TerminalConnectorError(ConnectorError):
    """Trying again will fail the same way until someone changes the datasource or the task."""


class InvalidContentError(TerminalConnectorError):
    """The datasource `content` is missing a field or has one of the wrong form."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        """The content field at fault, when known (answered as `content.<field>`)."""


class TableNotFoundError(TerminalConnectorError):
    """The table (or view) does not exist, or the user may not see it."""


class QueryCancelledError(TerminalConnectorError):
    """The running statement was interrupted because `Connector.cancel()` was called."""


class SliceRefusedError(ConnectorError):
    """A pass-through target refused some row of a slice (see `PassThrough.write_raw`); the slice
    was undone, and its rows should be written one batch at a time to find the bad ones."""


class ConnectorNotFoundError(TerminalConnectorError):
    """No connector is registered for this datasource type."""


class ConnectorUnavailableError(TerminalConnectorError):
    """A connector is registered, but its driver could not be imported."""


# Credentials that drivers sometimes echo back inside connection strings or URLs.
_INLINE_SECRETS = (
    re.compile(r"(?i)(password\s*=\s*)('[^']*'|\"[^\"]*\"|\S+)"),
    re.compile(r"(?i)(://[^:/@\s]+:)([^@\s]+)(@)"),
)


def redact(text: str, secrets: Iterable[str]) -> str:
    """Return `text` with every known secret value, and inline `password=`/URL credentials, masked.

    Args:
        text: A message that may contain secrets (typically a driver's exception text).
        secrets: The secret values of the datasource; empty strings are ignored.
    """
    # Longest first, so a secret that contains a shorter one is masked whole.
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _INLINE_SECRETS[0].sub(lambda m: m.group(1) + MASK, text)
    return _INLINE_SECRETS[1].sub(lambda m: m.group(1) + MASK + m.group(3), text)


@contextmanager
def translating(
    translate: Callable[[BaseException], ConnectorError | None],
    secrets: Iterable[str] = (),
) -> Iterator[None]:
    """Turn exceptions raised in the block into `ConnectorError`s, with secrets redacted.

    Args:
        translate: Maps a driver exception to a `ConnectorError` (with an unredacted message),
            or returns None for exceptions that are not the driver's (those propagate as they are:
            they are bugs, not datasource problems).
        secrets: Secret values to mask in the message.
    """
    secret_list = [s for s in secrets if s]
    try:
        yield
    except ConnectorError as exc:
        exc.message = redact(exc.message, secret_list)
        exc.args = (exc.message,)
        raise
    except Exception as exc:
        mapped = translate(exc)
        if mapped is None:
            raise
        mapped.message = redact(mapped.message, secret_list)
        mapped.args = (mapped.message,)
        # Keep the driver exception as the cause for debugging, unless its own text holds a
        # secret: a logged traceback prints every exception in the chain.
        leaks = redact(str(exc), secret_list) != str(exc)
        raise mapped from (None if leaks else exc)

"""redis-py exceptions -> connector errors (layer: connectors), with the server's reason."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager

import redis.exceptions as rx

from openfdi.connectors.errors import (
    ConnectorError,
    TerminalConnectorError,
    TransientConnectorError,
    translating,
)

# Refusals that stay until someone changes the data source, the task or the data: trying again
# fails the same way. AuthenticationError is a ConnectionError subclass, so it is tested first.
_TERMINAL: tuple[type[Exception], ...] = (
    rx.AuthenticationError,
    rx.AuthorizationError,
    rx.NoPermissionError,
    rx.ReadOnlyError,
    rx.DataError,
    rx.ExecAbortError,
)
# A server busy, loading, out of memory or briefly unreachable may answer later.
_TRANSIENT: tuple[type[Exception], ...] = (
    rx.ConnectionError,
    rx.TimeoutError,
    rx.BusyLoadingError,
    rx.TryAgainError,
    rx.OutOfMemoryError,
)


def _code(exc: BaseException) -> str | None:
    """The first word of a server error (WRONGTYPE, NOGROUP, ERR), when it is one."""
    if isinstance(exc, rx.ResponseError):
        word = str(exc).split(" ", 1)[0]
        return word if word.isupper() else None
    return None


def translate(exc: BaseException) -> ConnectorError | None:
    if not isinstance(exc, rx.RedisError):
        return None
    message = f"Redis: {str(exc).strip() or type(exc).__name__}"
    if isinstance(exc, _TERMINAL):
        return TerminalConnectorError(message, code=_code(exc))
    if isinstance(exc, _TRANSIENT):
        return TransientConnectorError(message, code=_code(exc))
    if isinstance(exc, rx.ResponseError):  # WRONGTYPE, NOGROUP, a bad argument: the same again
        return TerminalConnectorError(message, code=_code(exc))
    return TransientConnectorError(message)  # a broken reply, a dropped pipeline: reconnect


def map_driver_errors(secrets: Iterable[str]) -> AbstractContextManager[None]:
    return translating(translate, secrets)

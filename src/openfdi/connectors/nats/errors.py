"""nats-py exceptions -> connector errors (layer: connectors), with the server's reason."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from contextlib import AbstractContextManager

import nats.errors
import nats.js.errors

from openfdi.connectors.errors import (
    ConnectorError,
    TableNotFoundError,
    TerminalConnectorError,
    TransientConnectorError,
    translating,
)

# Errors that say the request itself (or the account, or the TLS setup) is wrong: asking again
# fails the same way until someone changes the data source or the task.
_TERMINAL = (
    nats.errors.AuthorizationError,
    nats.errors.BadSubjectError,
    nats.errors.BadHeaderError,
    nats.errors.BadTimeoutError,
    nats.errors.MaxPayloadError,
    nats.errors.InvalidUserCredentialsError,
    nats.errors.InvalidCallbackTypeError,
    nats.errors.SecureConnRequiredError,
    nats.errors.SecureConnWantedError,
    nats.errors.SecureConnFailedError,
    nats.errors.BadSubscriptionError,
    nats.errors.ProtocolError,
    nats.errors.NotJSMessageError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.TooManyStalledMsgsError,
)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, nats.js.errors.APIError):
        description = getattr(exc, "description", None)
        return str(description or f"JetStream answered {getattr(exc, 'code', None)}")
    if isinstance(exc, nats.js.errors.NoStreamResponseError):
        return "no stream captures the subject (no JetStream answer to the publish)"
    if isinstance(exc, nats.js.errors.Error) and getattr(exc, "description", None):
        return str(exc.description)
    try:
        text = str(exc).strip()
    except Exception:  # some nats-py errors format fields that may be missing or None
        text = ""
    return text.removeprefix("nats: ") or type(exc).__name__


def translate(exc: BaseException) -> ConnectorError | None:
    """The connector error of a nats-py (or socket, or timeout) exception; None for others."""
    if isinstance(exc, nats.js.errors.APIError):
        # Not every APIError subclass sets the fields (the key-value ones skip its __init__).
        code = str(getattr(exc, "err_code", None) or getattr(exc, "code", None) or "") or None
        message = f"NATS: {_reason(exc)}"
        if isinstance(exc, nats.js.errors.NotFoundError):
            return TableNotFoundError(message, code=code)
        if isinstance(exc, nats.js.errors.ServiceUnavailableError | nats.js.errors.ServerError):
            return TransientConnectorError(message, code=code)
        return TerminalConnectorError(message, code=code)
    if isinstance(exc, _TERMINAL):
        return TerminalConnectorError(f"NATS: {_reason(exc)}")
    if isinstance(exc, nats.errors.Error | OSError | asyncio.TimeoutError | TimeoutError):
        # Lost or refused connections, timeouts, slow consumers: the next try may work.
        return TransientConnectorError(f"NATS: {type(exc).__name__}: {_reason(exc)}")
    return None


def map_driver_errors(secrets: Iterable[str]) -> AbstractContextManager[None]:
    return translating(translate, secrets)
